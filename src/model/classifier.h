// One interface for every inference engine: LibTorch, ONNX Runtime (CPU/CUDA/TensorRT) and the
// hand-written reference forward pass.
#pragma once
#include <cstdint>
#include <string>

namespace moe {

class Classifier {
 public:
  virtual ~Classifier() = default;

  // images: [n, 784] float32 in [0, 1]. Writes logits [n, n_classes] and, when gate_probs is not
  // null, the gate's softmax probabilities [n, n_experts]. Not thread-safe: use one instance per
  // thread. Buffers are the implementation's business (the reference allocates a few per call).
  virtual void classify(const float* images, int64_t n, float* logits, float* gate_probs) = 0;

  virtual int64_t n_classes() const = 0;
  virtual int64_t n_experts() const = 0;
  virtual int64_t top_k() const = 0;
  // e.g. "torch", "cpu", "cuda", "tensorrt", "reference"
  virtual std::string backend() const = 0;
  // "fp32", "fp16" or "int8"
  virtual std::string precision() const = 0;
  // Where the model came from, when it says: "dataset" and "weights_hash" (see weights_hash() in
  // weights.h). "" when unknown.
  virtual std::string provenance(const std::string& /*key*/) const { return ""; }
};

}  // namespace moe
