// One interface for every inference engine: LibTorch, ONNX Runtime (CPU/CUDA/TensorRT) and the
// hand-written reference forward pass.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

class Classifier {
 public:
  virtual ~Classifier() = default;

  // images: [n, 784] float32 in [0, 1]. Writes logits [n, n_classes] and, when gate_probs is not
  // null, the gate's softmax probabilities [n, n_experts]. Not thread-safe: use one instance per
  // thread. Buffers are the implementation's business (the reference allocates a few per call).
  virtual void classify(const float* images, int64_t n, float* logits, float* gate_probs) = 0;

  // The same for images as bytes [n, 784] 0..255 (x / 255 is the float input). Engines that read
  // bytes themselves override it (no float copy); this default makes the float copy and classifies it.
  virtual void classify_u8(const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
    std::vector<float> x(size_t(n) * 784);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(images[i]) / 255.f;
    classify(x.data(), n, logits, gate_probs);
  }
  // Whether classify_u8 reads the bytes directly (else it makes a float copy).
  virtual bool reads_uint8() const { return false; }

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
