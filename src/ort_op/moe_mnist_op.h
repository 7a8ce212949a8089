// The fused MoE operator for ONNX Runtime: domain "ai.moe_mnist", op "MoeMnist", version 1, the
// `native` kernel (src/native) as one node from pixels to logits and gate probabilities. It is what
// `export --routing fused` writes. moe-mnist adds it to every session (add_moe_mnist_ops); other ONNX
// Runtime users load libmoe_mnist_ops.so (SessionOptions::RegisterCustomOpsLibrary, or Python's
// SessionOptions.register_custom_ops_library), whose RegisterCustomOps does the same.
//
// Inputs (the folded tensors of src/native/folded_model.h, as the node's initialisers):
//   0 input                          float [N, 1, 28, 28] (or [N, 784])
//   1 embed_gate.weight              float [I, D+E]
//   2 embed_gate.bias                float [D+E]
//   3 experts.fc1.weight             float [E, D, D]   ([in, out])
//   4 experts.fc1.bias               float [E, D]
//   5 experts.fc2+classifier.weight  float [E, D, C]   ([in, out])
//   6 experts.fc2+classifier.bias    float [E, C]
//   7 classifier.bias                float [C]
// Attribute: top_k (int). Outputs: logits float [N, C], gate_probs float [N, E].
// Op "MoeMnistU8" is the same with input 0 uint8 [N, 1, 28, 28] 0..255 (`export --input uint8`): the
// kernel reads the bytes, with 1/255 folded into its packed embedding weights.
// The weights are packed once when the session is created (they are constant initialisers); the
// batch is split by rows over the session's intra-op threads.
#pragma once
#include <onnxruntime_cxx_api.h>

namespace moe {

inline constexpr const char* kFusedOpDomain = "ai.moe_mnist";
inline constexpr const char* kFusedOpName = "MoeMnist";
inline constexpr const char* kFusedOpNameU8 = "MoeMnistU8";
inline constexpr int kFusedOpVersion = 1;

// Adds the ai.moe_mnist domain to the session options (one domain object for the process).
void add_moe_mnist_ops(OrtSessionOptions* options);

}  // namespace moe
