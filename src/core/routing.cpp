#include "core/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace moe {

void route(const float* gate_probs, int64_t n_experts, int64_t k, int64_t* experts, float* weights) {
  // E is small (8 by default); a partial selection sort keeps this allocation-free and stable.
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < n_experts; ++e) {
      if (std::find(experts, experts + j, e) != experts + j) continue;
      if (best < 0 || gate_probs[e] > gate_probs[best]) best = e;
    }
    experts[j] = best;
  }
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += std::exp(double(gate_probs[experts[j]]) - gate_probs[experts[0]]);
  for (int64_t j = 0; j < k; ++j)
    weights[j] = float(std::exp(double(gate_probs[experts[j]]) - gate_probs[experts[0]]) / sum);
}

}  // namespace moe
