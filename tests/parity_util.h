// What the parity tests share: running a Classifier over many images in batches, and the rule for
// rows whose chosen experts may legitimately differ between engines.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "model/classifier.h"

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

// Rows whose k-th and (k+1)-th gate probabilities are within 1e-6: the chosen experts may differ.
inline bool near_tie(const float* p, int64_t E, int64_t k) {
  std::vector<float> s(p, p + E);
  std::sort(s.begin(), s.end(), std::greater<float>());
  return k < E && s[size_t(k - 1)] - s[size_t(k)] < 1e-6f;
}

}  // namespace moe::test
