#include "model/checked_classifier.h"

#include <cmath>
#include <vector>

#include "base/errors.h"

namespace moe {

namespace {

// fp16 and int8 graphs compute the softmax in lower precision; a row of raw scores misses by far more.
constexpr double kSumTolerance = 1e-2;

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

void check_outputs(const float* logits, const float* gate_probs, int64_t n, int64_t n_classes, int64_t n_experts,
                   const std::string& what) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < n_classes; ++c)
      if (!std::isfinite(logits[i * n_classes + c]))
        throw InputError(what + " gives a non-finite logit (" + number(logits[i * n_classes + c]) + ") for image " + std::to_string(i) +
                         " of the batch, class " + std::to_string(c) + ": its weights are probably NaN or infinite (a diverged training run?)");
    if (!gate_probs) continue;
    double sum = 0;
    for (int64_t e = 0; e < n_experts; ++e) {
      const float p = gate_probs[i * n_experts + e];
      if (!std::isfinite(p))
        throw InputError(what + " gives a non-finite gate probability (" + number(p) + ") for image " + std::to_string(i) +
                         ", expert " + std::to_string(e) + ": its weights are probably NaN or infinite (a diverged training run?)");
      if (p < -1e-3f || p > 1.0f + 1e-3f)
        throw InputError(what + " gives a gate probability of " + number(p) + " for image " + std::to_string(i) + ", expert " +
                         std::to_string(e) + ", expected 0 to 1 (raw gate scores where probabilities belong?)");
      sum += p;
    }
    if (std::fabs(sum - 1.0) > kSumTolerance)
      throw InputError(what + " gives gate probabilities summing to " + number(sum) + " for image " + std::to_string(i) +
                       ", expected 1 (raw gate scores where probabilities belong, or a graph not exported by 'moe-mnist export')");
  }
}

CheckedClassifier::CheckedClassifier(std::unique_ptr<Classifier> inner, std::string what, OutputCheck when)
    : inner_(std::move(inner)), what_(std::move(what)) {
  if (inner_->n_classes() != kMnistClasses)
    throw InputError(what_ + ": the model has " + std::to_string(inner_->n_classes()) + " classes; MNIST and Fashion-MNIST have " +
                     std::to_string(kMnistClasses));
  // A vertical bar, the simplest digit-like input: enough to see the outputs' kind, not their quality.
  std::vector<float> probe(784, 0.0f);
  for (int y = 4; y < 24; ++y)
    for (int x = 12; x < 16; ++x) probe[size_t(y) * 28 + size_t(x)] = 1.0f;
  std::vector<float> logits(size_t(inner_->n_classes())), probs(size_t(inner_->n_experts()));
  classify(probe.data(), 1, logits.data(), probs.data());
  check_every_call_ = when == OutputCheck::every_call;
}

void CheckedClassifier::classify(const float* images, int64_t n, float* logits, float* gate_probs) {
  inner_->classify(images, n, logits, gate_probs);
  if (check_every_call_) check_outputs(logits, gate_probs, n, inner_->n_classes(), inner_->n_experts(), what_ + " (" + backend() + " " + precision() + ")");
}

void CheckedClassifier::classify_u8(const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  inner_->classify_u8(images, n, logits, gate_probs);
  if (check_every_call_) check_outputs(logits, gate_probs, n, inner_->n_classes(), inner_->n_experts(), what_ + " (" + backend() + " " + precision() + ")");
}

std::unique_ptr<Classifier> checked(std::unique_ptr<Classifier> model, const std::string& what, OutputCheck when) {
  return std::make_unique<CheckedClassifier>(std::move(model), what, when);
}

}  // namespace moe
