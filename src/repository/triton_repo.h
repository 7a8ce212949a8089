// A Triton Inference Server model repository for an exported model, so a user who outgrows one
// machine serves the same ONNX file with Triton (`tritonserver --model-repository DIR`) and keeps the
// same KServe v2 clients:  DIR/<name>/config.pbtxt  and  DIR/<name>/<version>/model.onnx.
#pragma once
#include <cstdint>
#include <string>

namespace moe {

struct TritonModelConfig {
  std::string name = "moe-mnist";
  int64_t n_classes = 10, n_experts = 8;
  int64_t max_batch = 1024;           // max_batch_size: the largest batch Triton forms or accepts
  int64_t preferred_batch = 64;       // dynamic_batching.preferred_batch_size
  int64_t max_queue_delay_us = 0;     // dynamic_batching.max_queue_delay_microseconds (serve's default)
  int64_t instances = 1;              // instance_group count (KIND_CPU)
  std::string version_policy = "latest:1";  // version_policy: "latest:N", "all" or "specific:V[,V...]"
  bool uint8_input = false;           // the graph takes the image bytes (export --input uint8): input TYPE_UINT8
};

// Throws InputError naming `flag` unless `policy` is "latest:N" (N >= 1), "all" or "specific:V[,V...]".
void check_version_policy(const std::string& policy, const std::string& flag);

// The name `export --triton-repo` gives a model without --name: moe-mnist, or moe-mnist-u8 for the
// graph that takes UINT8 (its own model: a KServe v2 input has one datatype).
std::string default_triton_model_name(bool uint8_input);

// config.pbtxt: inference.ModelConfig (Triton's model_config.proto) in protobuf text format, platform
// onnxruntime_onnx; dims exclude the batch dimension, which max_batch_size > 0 adds.
std::string triton_config_pbtxt(const TritonModelConfig& c);

// Throws InputError unless `name` is a usable folder name and URL segment: [A-Za-z0-9_.-], 1-64
// characters, not "." or "..".
void check_model_name(const std::string& name, const std::string& flag);

// DIR/<name>/<version>/model.onnx and DIR/<name>/config.pbtxt.
std::string triton_model_file(const std::string& repo, const std::string& name, int64_t version = 1);
std::string triton_config_file(const std::string& repo, const std::string& name);

}  // namespace moe
