// What moe-mnist honours of a model's config.pbtxt in a Triton model repository: the file is
// inference.ModelConfig (Triton's model_config.proto) in protobuf text format, read by protobuf
// itself, so a folder that Triton accepts reads the same here. Fields that are set but not honoured
// are listed, so `serve` can name them in a warning at load.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe::serve {

// version_policy: which of the version folders found are served.
struct VersionPolicy {
  enum class Kind { latest, all, specific } kind = Kind::latest;
  int64_t latest = 1;             // Kind::latest: the N highest versions
  std::vector<int64_t> versions;  // Kind::specific
  // The versions to serve among `found` (ascending).
  std::vector<int64_t> select(std::vector<int64_t> found) const;
  std::string describe() const;  // "latest 1", "all", "specific 2,3"
};

struct RepositoryModelConfig {
  std::string name;                   // the model's folder name
  bool from_file = false;             // the model folder has a config.pbtxt (set by the repository, which reads it)
  int64_t max_batch_size = 1024;      // images one request may carry (max_batch_size; 0 or absent: this)
  std::string input_datatype;         // "FP32", "UINT8", or "" when the config declares no input
  VersionPolicy policy;
  bool dynamic_batching = false;      // absent: every request runs alone, as on Triton
  int64_t max_queue_delay_us = 0;     // dynamic_batching.max_queue_delay_microseconds
  int64_t preferred_batch = 0;        // the largest dynamic_batching.preferred_batch_size, 0 = none given
  int64_t instances = 0;              // instance_group counts summed; 0 = not given (serve's --workers)
  std::string model_filename = "model.onnx";  // default_model_filename
  std::vector<std::string> ignored;   // fields set that moe-mnist does not honour, as dotted paths
};

// Parses config.pbtxt text; `path` names the file in messages. `text` empty (no config.pbtxt):
// the defaults, as Triton completes an ONNX model's configuration. Throws InputError naming the file,
// the line and what was expected.
RepositoryModelConfig parse_model_config(const std::string& text, const std::string& folder_name, const std::string& path);

}  // namespace moe::serve
