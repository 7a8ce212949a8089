#include "native/native_kernel.h"

#include <cstdlib>

#include "base/errors.h"
#include "model/model_config.h"
#include "native/kernel_paths.h"
#include "native/quantize_int16.h"
#include "native/quantize_int8.h"

namespace moe {

std::string to_string(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

bool cpu_supports(Isa isa) {
#if defined(__x86_64__)
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512: return __builtin_cpu_supports("avx512f");
  }
  return false;
#else
  return isa == Isa::scalar;
#endif
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2})
    if (cpu_supports(isa)) return isa;
  return Isa::scalar;
}

Isa isa_from_env() {
  const char* v = std::getenv("MOE_MNIST_NATIVE_ISA");
  if (!v || !*v) return best_isa();
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (to_string(isa) == v) {
      if (!cpu_supports(isa))
        throw UnavailableError(std::string("MOE_MNIST_NATIVE_ISA=") + v + ": this CPU cannot run that path (it has up to " +
                               to_string(best_isa()) + ")");
      return isa;
    }
  throw InputError(std::string("MOE_MNIST_NATIVE_ISA: expected one of scalar, avx2, avx512, got '") + v + "'");
}

std::string to_string(Embed embed) {
  switch (embed) {
    case Embed::auto_: return "auto";
    case Embed::sparse: return "sparse";
    case Embed::dense: return "dense";
    case Embed::int16: return "int16";
    case Embed::vnni: return "vnni";
    case Embed::amx: return "amx";
  }
  return "?";
}

Embed embed_from_env() {
  const char* v = std::getenv("MOE_MNIST_NATIVE_EMBED");
  if (!v || !*v) return Embed::auto_;
  for (Embed e : {Embed::auto_, Embed::sparse, Embed::dense, Embed::int16, Embed::vnni, Embed::amx})
    if (to_string(e) == v) return e;
  throw InputError(std::string("MOE_MNIST_NATIVE_EMBED: expected one of auto, sparse, dense, int16, vnni, amx, got '") + v + "'");
}

namespace {

int64_t lanes(Isa isa) { return isa == Isa::avx512 ? 16 : isa == Isa::avx2 ? 8 : 1; }
int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// src [rows, cols] -> [rows, padded] with zero columns on the right.
std::vector<float> pad_rows(const std::vector<float>& src, int64_t rows, int64_t cols, int64_t padded) {
  std::vector<float> out(size_t(rows * padded), 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[size_t(r * padded + c)] = src[size_t(r * cols + c)];
  return out;
}

}  // namespace

PackedModel pack_model(const FoldedModel& f, Isa isa, Embed embed) {
  return pack_model(f, isa, embed, isa == Isa::avx512 ? int8_support() : Int8Support{});
}

PackedModel pack_model(const FoldedModel& f, Isa isa, Embed embed, Int8Support support) {
  f.check("native model");
  PackedModel m;
  m.isa = isa;
  m.embed = embed;
  m.I = f.I, m.D = f.D, m.E = f.E, m.K = f.K, m.C = f.C;
  const int64_t L = lanes(isa);
  m.GP = round_up(f.D + f.E, L), m.DP = round_up(f.D, L), m.CP = round_up(f.C, L);
  m.embed_gate_w = pad_rows(f.embed_gate_w, f.I, f.D + f.E, m.GP);
  m.embed_gate_w_u8 = m.embed_gate_w;
  for (float& w : m.embed_gate_w_u8) w /= 255.f;
  m.embed_gate_b = pad_rows(f.embed_gate_b, 1, f.D + f.E, m.GP);
  m.fc1_w = pad_rows(f.fc1_w, f.E * f.D, f.D, m.DP);
  m.fc1_b = pad_rows(f.fc1_b, f.E, f.D, m.DP);
  m.out_w = pad_rows(f.out_w, f.E * f.D, f.C, m.CP);
  m.out_b_expert = pad_rows(f.out_b_expert, f.E, f.C, m.CP);
  m.out_b = pad_rows(f.out_b, 1, f.C, m.CP);
  if (embed == Embed::dense && !dense_available(m))
    throw UnavailableError("native: the dense embedding needs " + std::to_string(kInputSize) +
                           " inputs and at most 4 vectors of embedding + gate outputs; this model has " +
                           std::to_string(m.I) + " inputs and " + std::to_string(m.GP / L) + " vectors (" +
                           to_string(isa) + ")");
  m.int8 = isa == Isa::avx512 ? support : Int8Support{};
  if (isa == Isa::avx512 && m.I == kInputSize && f.D + f.E <= 64) {  // the integer kernels finish on AVX-512
    QuantizedEmbed q = quantize_embed(m.embed_gate_w_u8.data(), m.I, m.GP, f.D + f.E, m.embed_gate_b.data());
    m.GQ = q.GQ;
    m.embed_gate_q = std::move(q.w);
    m.embed_gate_qscale = std::move(q.scale);
    m.embed_gate_qbias = std::move(q.bias);
  }
  if (isa == Isa::avx2 && m.I == kInputSize && m.GP <= 32) {  // GP is a multiple of 8 on this path
    PairQuantizedEmbed q = quantize_pairs16(m.embed_gate_w_u8.data(), m.I, m.GP);
    m.embed_gate_q16 = std::move(q.w);
    m.embed_gate_q16_scale = std::move(q.scale);
  }
  if (embed == Embed::int16 && !int16_fits(m))
    throw UnavailableError("native: the int16 embedding (integer, byte input) runs on the avx2 path with " + std::to_string(kInputSize) +
                           " inputs and at most 32 embedding + gate outputs; this is the " + to_string(isa) + " path, " +
                           std::to_string(m.I) + " inputs and " + std::to_string(f.D + f.E) + " outputs");
  if (embed == Embed::vnni || embed == Embed::amx) {
    const std::string what = "native: the " + to_string(embed) + " embedding (integer, byte input) ";
    if (isa != Isa::avx512)
      throw UnavailableError(what + "runs on the avx512 path only, not " + to_string(isa));
    if (!int8_fits(m))
      throw UnavailableError(what + "needs " + std::to_string(kInputSize) + " inputs and at most 64 embedding + gate outputs; this model has " +
                             std::to_string(m.I) + " inputs and " + std::to_string(f.D + f.E) + " outputs");
    if (embed == Embed::vnni && !m.int8.vnni)
      throw UnavailableError(what + "needs AVX-512 VNNI, which this CPU lacks");
    if (embed == Embed::amx && !m.int8.amx)
      throw UnavailableError(what + "needs AMX-INT8 and the kernel's permission for its tile state: this CPU lacks it, "
                             "or Linux refused (arch_prctl ARCH_REQ_XCOMP_PERM; Linux >= 5.16)");
  }
  return m;
}

bool dense_available(const PackedModel& m) {
  const int64_t nv = m.GP / lanes(m.isa);
  return m.I == kInputSize && nv >= 1 && nv <= 4;
}

bool int16_fits(const PackedModel& m) { return !m.embed_gate_q16.empty(); }

bool int8_fits(const PackedModel& m) { return m.GQ >= 16 && m.GQ <= 64 && m.I == kInputSize; }

Embed choose_embed(const PackedModel& m, int64_t batch, bool bytes) {
  const bool integer = m.embed == Embed::int16 || m.embed == Embed::vnni || m.embed == Embed::amx;
  if (m.embed != Embed::auto_ && (bytes || !integer)) return m.embed;
  // Byte input: AMX from one tile (16 images), else VNNI from batch 8 (where the AVX-512 float path
  // turns dense). Never measured (no such CPU was at hand): chosen by instruction count. A dpbusd
  // does 64 byte multiply-adds, 32 weight products once hi and lo are both counted, where an FMA
  // does 16, and reads the bytes as they are; an AMX TDPBUSD does 16 x 16 x 64. To be confirmed on
  // such a machine (docs/benchmarks.md).
  if (bytes && m.embed == Embed::auto_ && int8_fits(m)) {
    if (m.int8.amx && batch >= 16) return Embed::amx;
    if (m.int8.vnni && batch >= 8) return Embed::vnni;
  }
  // Byte input on AVX2: the integer embedding at every batch size, half the weight bytes of the
  // float sweep (measured 1.2-1.3x faster, docs/benchmarks.md).
  if (bytes && m.embed == Embed::auto_ && int16_fits(m)) return Embed::int16;
  if (!dense_available(m)) return Embed::sparse;
  // AVX-512 (32 registers of 16 floats): a tile of 8 images over every pixel; issue #24 measured such
  // a dense blocked kernel at 2.0M images/s against 1.27M for the per-image sparse sweep (Xeon, batch
  // 64). AVX2 (16 registers of 8): the tile is 4 images and measured no faster than the sparse sweep
  // here (docs/benchmarks.md), so sparse stays. Below a full tile the dense pass computes padding rows.
  switch (m.isa) {
    case Isa::avx512: return batch >= 8 ? Embed::dense : Embed::sparse;
    default: return Embed::sparse;
  }
}

namespace {

template <class X>
void forward_any(const PackedModel& m, const X* images, int64_t n, float* logits, float* gate_probs, Embed embed) {
  const native_paths::PackedView v = native_paths::view_of(m);
#if defined(__x86_64__)
  if constexpr (sizeof(X) == 1) {
    if (m.isa == Isa::avx512 && int8_fits(m)) {
      if (embed == Embed::amx && m.int8.amx) return native_paths::forward_amx(v, images, n, logits, gate_probs);
      if (embed == Embed::vnni && m.int8.vnni) return native_paths::forward_vnni(v, images, n, logits, gate_probs);
    }
    if (embed == Embed::int16 && int16_fits(m)) return native_paths::forward_avx2_int16(v, images, n, logits, gate_probs);
  }
#endif
  const bool dense = embed == Embed::dense || ((embed == Embed::vnni || embed == Embed::amx) && dense_available(m));
  switch (m.isa) {
#if defined(__x86_64__)
    case Isa::avx512: native_paths::forward_avx512(v, images, n, logits, gate_probs, dense); return;
    case Isa::avx2: native_paths::forward_avx2(v, images, n, logits, gate_probs, dense); return;
#endif
    default: native_paths::forward_scalar(v, images, n, logits, gate_probs, dense); return;
  }
}

}  // namespace

namespace native_paths {

PackedView view_of(const PackedModel& m) {
  return PackedView{m.I, m.D, m.E, m.K, m.C, m.GP, m.DP, m.CP,
                    m.embed_gate_w.data(), m.embed_gate_b.data(), m.fc1_w.data(), m.fc1_b.data(),
                    m.out_w.data(), m.out_b_expert.data(), m.out_b.data(), m.embed_gate_w_u8.data(),
                    m.GQ, m.embed_gate_q.data(), m.embed_gate_qscale.data(), m.embed_gate_qbias.data(),
                    m.embed_gate_q16.data(), m.embed_gate_q16_scale.data()};
}

}  // namespace native_paths

void native_forward(const PackedModel& m, const float* images, int64_t n, float* logits, float* gate_probs, Embed embed) {
  forward_any(m, images, n, logits, gate_probs, embed);
}

void native_forward(const PackedModel& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs, Embed embed) {
  forward_any(m, images, n, logits, gate_probs, embed);
}

}  // namespace moe
