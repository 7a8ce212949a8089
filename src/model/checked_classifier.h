// The one place where every model output is checked before anything shows or sends it (issue #20):
// a Classifier that wraps another and refuses, with an InputError naming the model, any logit that
// is NaN or infinite and any gate probability that is not finite, not in [0, 1], or whose row does
// not sum to 1. eval, predict, experts, bench and serve all get their engines through it.
#pragma once
#include <memory>
#include <string>

#include "model/classifier.h"

namespace moe {

inline constexpr int64_t kMnistClasses = 10;  // MNIST and Fashion-MNIST

// When the outputs are checked: on every call (eval, predict, bench, experts), or only on the probe
// at load (serve: a KServe v2 server returns what the model computes from any IEEE-754 input, as
// Triton does, so NaN in or 1e30 in may rightly give NaN or Inf out; the weights were checked at load).
enum class OutputCheck { every_call, at_load_only };

class CheckedClassifier : public Classifier {
 public:
  // Checks what can be checked when a model opens: 10 classes, and on a probe image (a drawn bar)
  // finite logits and gate probabilities that sum to 1. `what` names the model (its path).
  // What cannot be checked here: that the graph really routes to top-k experts as its metadata says
  // (only the probabilities are observable), and weights that no image reaches (the weight checks at
  // load do that for checkpoints).
  CheckedClassifier(std::unique_ptr<Classifier> inner, std::string what, OutputCheck when = OutputCheck::every_call);

  void classify(const float* images, int64_t n, float* logits, float* gate_probs) override;
  void classify_u8(const uint8_t* images, int64_t n, float* logits, float* gate_probs) override;
  bool reads_uint8() const override { return inner_->reads_uint8(); }
  int64_t n_classes() const override { return inner_->n_classes(); }
  int64_t n_experts() const override { return inner_->n_experts(); }
  int64_t top_k() const override { return inner_->top_k(); }
  std::string backend() const override { return inner_->backend(); }
  std::string precision() const override { return inner_->precision(); }
  std::string provenance(const std::string& key) const override { return inner_->provenance(key); }

  Classifier& inner() { return *inner_; }

 private:
  std::unique_ptr<Classifier> inner_;
  std::string what_;
  bool check_every_call_ = true;
};

// Wraps `model` in a CheckedClassifier (the probe runs now).
std::unique_ptr<Classifier> checked(std::unique_ptr<Classifier> model, const std::string& what,
                                    OutputCheck when = OutputCheck::every_call);

// The checks themselves, for outputs that do not come through a Classifier: throws InputError
// starting with `what` when a value is not finite, or a gate row is not a probability distribution.
void check_outputs(const float* logits, const float* gate_probs, int64_t n, int64_t n_classes, int64_t n_experts,
                   const std::string& what);

}  // namespace moe
