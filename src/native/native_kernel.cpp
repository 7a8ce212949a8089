#include "native/native_kernel.h"

#include <cstdlib>

#include "base/errors.h"
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

PackedModel pack_model(const FoldedModel& f, Isa isa) {
  f.check("native model");
  PackedModel m;
  m.isa = isa;
  m.I = f.I, m.D = f.D, m.E = f.E, m.K = f.K, m.C = f.C;
  const int64_t L = lanes(isa);
  m.GP = round_up(f.D + f.E, L), m.DP = round_up(f.D, L), m.CP = round_up(f.C, L);
  m.embed_gate_w = pad_rows(f.embed_gate_w, f.I, f.D + f.E, m.GP);
  m.embed_gate_b = pad_rows(f.embed_gate_b, 1, f.D + f.E, m.GP);
  m.fc1_w = pad_rows(f.fc1_w, f.E * f.D, f.D, m.DP);
  m.fc1_b = pad_rows(f.fc1_b, f.E, f.D, m.DP);
  m.out_w = pad_rows(f.out_w, f.E * f.D, f.C, m.CP);
  m.out_b_expert = pad_rows(f.out_b_expert, f.E, f.C, m.CP);
  m.out_b = pad_rows(f.out_b, 1, f.C, m.CP);
  return m;
}

void native_forward(const PackedModel& m, const float* images, int64_t n, float* logits, float* gate_probs) {
  const native_paths::PackedView v{m.I, m.D, m.E, m.K, m.C, m.GP, m.DP, m.CP,
                                   m.embed_gate_w.data(), m.embed_gate_b.data(), m.fc1_w.data(), m.fc1_b.data(),
                                   m.out_w.data(), m.out_b_expert.data(), m.out_b.data()};
  switch (m.isa) {
#if defined(__x86_64__)
    case Isa::avx512: native_paths::forward_avx512(v, images, n, logits, gate_probs); return;
    case Isa::avx2: native_paths::forward_avx2(v, images, n, logits, gate_probs); return;
#endif
    default: native_paths::forward_scalar(v, images, n, logits, gate_probs); return;
  }
}

}  // namespace moe
