// The model with every linear map that meets another without a nonlinearity folded together (in
// double precision), the form the `native` backend and the fused ONNX Runtime operator run:
//   [h | gate logits] = x @ embed_gate_w + embed_gate_b          // the gate reads the embedding
//   logits = out_b + sum_j w_j * (relu(h @ fc1_w[e_j] + fc1_b[e_j]) @ out_w[e_j] + out_b_expert[e_j])
// where out_w[e] = (classifier.W @ fc2_e.W)^T and out_b_expert[e] = classifier.W @ fc2_e.b: the
// combine weights w_j sum to 1, so the classifier distributes over the weighted sum of experts.
// These seven tensors are also the initialisers of the one-node `export --routing fused` model.
#pragma once
#include <cstdint>
#include <vector>

#include "model/checkpoint.h"

namespace moe {

struct FoldedModel {
  int64_t I = 0, D = 0, E = 0, K = 0, C = 0;  // input size, embedding width, experts, top-k, classes
  std::vector<float> embed_gate_w;  // [I, D+E]  (input-major: one row per pixel)
  std::vector<float> embed_gate_b;  // [D+E]
  std::vector<float> fc1_w;         // [E, D, D] each expert's fc1 as [in, out]
  std::vector<float> fc1_b;         // [E, D]
  std::vector<float> out_w;         // [E, D, C] classifier folded into each expert's fc2, as [in, out]
  std::vector<float> out_b_expert;  // [E, C]    classifier applied to each expert's fc2 bias
  std::vector<float> out_b;         // [C]       the classifier's bias

  // Throws InputError naming `where` when a size is out of range or a tensor has the wrong length.
  void check(const std::string& where) const;
};

// Checks the checkpoint's parameters (InputError naming them) and folds them.
FoldedModel fold_model(const Checkpoint& checkpoint);

}  // namespace moe
