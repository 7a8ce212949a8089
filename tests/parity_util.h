// What the parity tests share: running a Classifier over many images in batches, and the rule for
// rows whose chosen experts may legitimately differ between engines.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "model/classifier.h"
#include "native/native_kernel.h"

namespace moe::test {

struct Outputs {
  std::vector<float> logits;  // [n, C]
  std::vector<float> probs;   // [n, E] gate probabilities
};

inline Outputs run_all(Classifier& m, const std::vector<float>& x, int64_t n, int64_t batch = 1000) {
  Outputs o{std::vector<float>(size_t(n * m.n_classes())), std::vector<float>(size_t(n * m.n_experts()))};
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t b = std::min(batch, n - i);
    m.classify(x.data() + i * 784, b, o.logits.data() + i * m.n_classes(), o.probs.data() + i * m.n_experts());
  }
  return o;
}

// Rows whose k-th and (k+1)-th gate probabilities are within `gap`: the chosen experts may differ.
inline bool near_tie(const float* p, int64_t E, int64_t k, float gap = 1e-6f) {
  std::vector<float> s(p, p + E);
  std::sort(s.begin(), s.end(), std::greater<float>());
  return k < E && s[size_t(k - 1)] - s[size_t(k)] < gap;
}

// How close an engine's outputs must be to the reference's: max |logit diff| <= logit_abs +
// logit_rel x (the largest |logit| of the reference), max |gate probability diff| <= prob, the
// gate gap below which a row counts as a near tie (reported, not compared), and how many such rows
// may be: ties_abs, or one row in ties_one_in when that is set.
struct ParityBounds {
  float logit_abs, logit_rel, prob, tie_gap;
  int64_t ties_abs, ties_one_in;
  int64_t max_ties(int64_t rows) const { return ties_one_in > 0 ? rows / ties_one_in : ties_abs; }
  float logit_limit(const std::vector<float>& want_logits) const {
    float mag = 0;
    for (float v : want_logits) mag = std::max(mag, v < 0 ? -v : v);
    return logit_abs + logit_rel * mag;
  }
};
// The float kernels: rounding only.
inline constexpr ParityBounds kFloatBounds{1e-4f, 0.f, 1e-5f, 1e-6f, 10, 0};
// The integer embedding of byte input (16-bit weights per column, so its logit error grows with the
// logits). tests/test_native_int8.cpp measured on the 10,000 test images: a random model (largest
// |logit| 2.3) 4.8e-5 and 3.5e-5 (logit, gate probability), the demo's trained checkpoint (largest
// |logit| 23) 3.0e-4 and 6.4e-5, i.e. about 2e-5 of the largest logit: limits about 4x that. A
// routing flip needs a gate gap under twice the probability error: the tie gap is 3e-4.
inline constexpr ParityBounds kInt8Bounds{1e-4f, 5e-5f, 3e-4f, 3e-4f, 0, 20};

// Whether `native` (and the fused operator) with the path from the environment reads byte input
// through the integer embedding on this CPU: the AVX-512 path with VNNI or AMX, not forced off it.
inline bool bytes_take_integer_embedding() {
  const Embed e = embed_from_env();
  return isa_from_env() == Isa::avx512 && (int8_support().vnni || int8_support().amx) &&
         (e == Embed::auto_ || e == Embed::vnni || e == Embed::amx);
}

}  // namespace moe::test
