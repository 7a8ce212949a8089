// The MoE routing rule in one place: top-k of the gate's probabilities, then a softmax over the k
// chosen probabilities gives each chosen expert's combine weight. The LibTorch model and the ONNX
// graph builder implement the same rule in their own ops and are tested against this.
#pragma once
#include <cstdint>

namespace moe {

// gate_probs: [n_experts] softmax probabilities of one image. Writes the k chosen expert indices
// (highest probability first; ties go to the lower index, as TopK does) and their weights, which sum
// to 1. Requires 1 <= k <= n_experts.
void route(const float* gate_probs, int64_t n_experts, int64_t k, int64_t* experts, float* weights);

}  // namespace moe
