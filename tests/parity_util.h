// What the parity tests share: running a Classifier over many images in batches, the rule for rows
// whose chosen experts may legitimately differ between engines, and the comparison with its bounds.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "model/classifier.h"
#include "native/native_kernel.h"

namespace moe::test {

struct Outputs {
  std::vector<float> logits;  // [n, C]
  std::vector<float> probs;   // [n, E] gate probabilities
};

// The n images of x (784 floats or bytes each), `batch` at a time, through fwd(rows, b, logits,
// probs). Each batch is copied into a buffer of exactly its size, so a kernel reading past the
// caller's rows reads outside the allocation (and fails under the sanitizer build).
template <class X, class Forward>
Outputs run_batches(const Forward& fwd, const std::vector<X>& x, int64_t n, int64_t C, int64_t E, int64_t batch) {
  Outputs o{std::vector<float>(size_t(n * C)), std::vector<float>(size_t(n * E))};
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t b = std::min(batch, n - i);
    const std::vector<X> rows(x.begin() + i * 784, x.begin() + (i + b) * 784);
    fwd(rows.data(), b, o.logits.data() + i * C, o.probs.data() + i * E);
  }
  return o;
}

inline Outputs run_all(Classifier& m, const std::vector<float>& x, int64_t n, int64_t batch = 1000) {
  return run_batches([&](const float* p, int64_t b, float* l, float* g) { m.classify(p, b, l, g); }, x, n, m.n_classes(),
                     m.n_experts(), batch);
}

// The same for image bytes (Classifier::classify_u8).
inline Outputs run_all(Classifier& m, const std::vector<uint8_t>& x, int64_t n, int64_t batch = 1000) {
  return run_batches([&](const uint8_t* p, int64_t b, float* l, float* g) { m.classify_u8(p, b, l, g); }, x, n, m.n_classes(),
                     m.n_experts(), batch);
}

// Float images in [0, 1] as the bytes 0..255 they round to (values outside clamped).
inline std::vector<uint8_t> to_bytes(const std::vector<float>& x) {
  std::vector<uint8_t> b(x.size());
  for (size_t i = 0; i < x.size(); ++i) b[i] = uint8_t(std::lround(std::clamp(x[i], 0.f, 1.f) * 255.f));
  return b;
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

// `got` against `want` (the reference's outputs) over their first `rows` images, top-k routing over
// E experts: every image that is not a near tie (bounds.tie_gap) predicts the same class, and the
// largest logit and gate-probability differences and the number of near ties are within `bounds`.
// Prints the figures after `what`; returns the largest logit difference.
inline float expect_parity_within(const Outputs& got, const Outputs& want, int64_t rows, int64_t C, int64_t E, int64_t K,
                                  const ParityBounds& bounds, const std::string& what) {
  int64_t ties = 0, wrong = 0, first_wrong = -1;
  float max_logit = 0, max_prob = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* gp = &got.probs[size_t(i * E)];
    const float* wp = &want.probs[size_t(i * E)];
    for (int64_t e = 0; e < E; ++e) max_prob = std::max(max_prob, std::fabs(gp[e] - wp[e]));
    if (near_tie(wp, E, K, bounds.tie_gap)) {
      ++ties;
      continue;
    }
    const float* gl = &got.logits[size_t(i * C)];
    const float* wl = &want.logits[size_t(i * C)];
    for (int64_t c = 0; c < C; ++c) max_logit = std::max(max_logit, std::fabs(gl[c] - wl[c]));
    if (std::max_element(gl, gl + C) - gl != std::max_element(wl, wl + C) - wl && wrong++ == 0) first_wrong = i;
  }
  std::printf("%s: max |logit diff| %.2e, max |gate prob diff| %.2e over %lld images; %lld near-tie rows (gap < %.0e) "
              "reported, not compared\n",
              what.c_str(), double(max_logit), double(max_prob), (long long)rows, (long long)ties, double(bounds.tie_gap));
  EXPECT_EQ(wrong, 0) << what << ": predictions differ from the reference's, the first at image " << first_wrong;
  EXPECT_LE(max_logit, bounds.logit_limit(want.logits)) << what;
  EXPECT_LE(max_prob, bounds.prob) << what;
  EXPECT_LE(ties, bounds.max_ties(rows)) << what;
  return max_logit;
}

// Whether `native` (and the fused operator) with the path from the environment reads byte input
// through an integer embedding (16-bit weights) on this CPU: the AVX2 path (int16), or the AVX-512
// path with VNNI or AMX, not forced off it.
inline bool bytes_take_integer_embedding() {
  const Embed e = embed_from_env();
  const Isa isa = isa_from_env();
  if (isa == Isa::avx2) return e == Embed::auto_ || e == Embed::int16;
  return isa == Isa::avx512 && (int8_support().vnni || int8_support().amx) && (e == Embed::auto_ || e == Embed::vnni || e == Embed::amx);
}

}  // namespace moe::test
