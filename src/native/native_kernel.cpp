#include "native/native_kernel.h"

#include <cstdlib>

#include "base/errors.h"
#include "model/model_config.h"
#include "native/kernel_paths.h"

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
  }
  return "?";
}

Embed embed_from_env() {
  const char* v = std::getenv("MOE_MNIST_NATIVE_EMBED");
  if (!v || !*v) return Embed::auto_;
  for (Embed e : {Embed::auto_, Embed::sparse, Embed::dense})
    if (to_string(e) == v) return e;
  throw InputError(std::string("MOE_MNIST_NATIVE_EMBED: expected one of auto, sparse, dense, got '") + v + "'");
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
  return m;
}

bool dense_available(const PackedModel& m) {
  const int64_t nv = m.GP / lanes(m.isa);
  return m.I == kInputSize && nv >= 1 && nv <= 4;
}

Embed choose_embed(const PackedModel& m, int64_t batch) {
  if (m.embed != Embed::auto_) return m.embed;
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
  const native_paths::PackedView v{m.I, m.D, m.E, m.K, m.C, m.GP, m.DP, m.CP,
                                   m.embed_gate_w.data(), m.embed_gate_b.data(), m.fc1_w.data(), m.fc1_b.data(),
                                   m.out_w.data(), m.out_b_expert.data(), m.out_b.data(), m.embed_gate_w_u8.data()};
  const bool dense = embed == Embed::dense;
  switch (m.isa) {
#if defined(__x86_64__)
    case Isa::avx512: native_paths::forward_avx512(v, images, n, logits, gate_probs, dense); return;
    case Isa::avx2: native_paths::forward_avx2(v, images, n, logits, gate_probs, dense); return;
#endif
    default: native_paths::forward_scalar(v, images, n, logits, gate_probs, dense); return;
  }
}

}  // namespace

void native_forward(const PackedModel& m, const float* images, int64_t n, float* logits, float* gate_probs, Embed embed) {
  forward_any(m, images, n, logits, gate_probs, embed);
}

void native_forward(const PackedModel& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs, Embed embed) {
  forward_any(m, images, n, logits, gate_probs, embed);
}

}  // namespace moe
