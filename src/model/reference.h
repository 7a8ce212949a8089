// A straightforward hand-written forward pass of the model (plain loops, no framework): the
// yardstick `bench` compares the engines against, and an independent check of the exporter.
#pragma once
#include <vector>

#include "model/checkpoint.h"
#include "model/classifier.h"

namespace moe {

class ReferenceClassifier final : public Classifier {
 public:
  explicit ReferenceClassifier(const Checkpoint& checkpoint);

  void classify(const float* images, int64_t n, float* logits, float* gate_probs) override;
  int64_t n_classes() const override { return c_.n_classes; }
  int64_t n_experts() const override { return c_.n_experts; }
  int64_t top_k() const override { return c_.top_k; }
  std::string backend() const override { return "reference"; }
  std::string precision() const override { return "fp32"; }

  // Ablation: expert e's gate probability is forced to 0 and the others re-normalised before
  // routing (and gate_probs reports the re-normalised values); -1 restores the model. InputError
  // for an expert the model does not have.
  void set_dropped_expert(int64_t e);

 private:
  ModelConfig c_;
  int64_t dropped_ = -1;
  // Weights transposed to [in, out] so the inner loops run over contiguous outputs.
  std::vector<float> emb_w_, emb_b_, gate_w_, gate_b_, cls_w_, cls_b_;
  std::vector<std::vector<float>> fc1_w_, fc1_b_, fc2_w_, fc2_b_;
};

}  // namespace moe
