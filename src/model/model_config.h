// The model's sizes: the one description shared by LibTorch, the ONNX exporter and every backend.
#pragma once
#include <initializer_list>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace moe {

// Upper bounds on the model's sizes, checked by ModelConfig::validate() before anything is allocated,
// whether a size comes from a flag, a config.json, a safetensors header or an ONNX file's metadata.
// They are far above what MNIST needs and low enough that a typo or a hostile file cannot ask for
// gigabytes: the largest model they allow has ~70M parameters (~270 MiB in fp32).
inline constexpr int64_t kMaxExperts = 256;          // the gate's width; dense routing runs every expert
inline constexpr int64_t kMaxEmbSize = 1024;         // each expert is two [D, D] matrices
inline constexpr int64_t kMaxClasses = 1000;         // MNIST-style labels are 0..9; ImageNet has 1000
inline constexpr int64_t kInputSize = 784;           // the model reads 28x28 images, flattened
inline constexpr int64_t kMaxParameters = int64_t(1) << 26;  // 67M floats = 256 MiB

struct ModelConfig {
  int64_t input_size = 784;    // flattened 28x28 image
  int64_t n_experts = 8;       // E (config.json and flag: "experts")
  int64_t top_k = 2;           // k (config.json and flag: "top") experts chosen per image, 1..E
  int64_t emb_size = 16;       // embedding width, also each expert's width
  int64_t n_classes = 10;
  double w_importance = 0.01;  // weight of the importance (load-balancing) loss in training
  bool noisy_gating = true;    // training adds learned-scale Gaussian noise to the gate before top-k

  // Throws InputError naming the field when a size is out of range (see the limits above).
  void validate() const;
  // Number of float parameters of the LibTorch model (embedding, gate, noise, experts, classifier).
  int64_t n_parameters() const;
};

nlohmann::json to_json(const ModelConfig& c);
// Reads the fields present in `j` over the defaults; `where` names the source for error messages.
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where);

// Throws InputError naming `where` and the field when any of `keys` present in the object `j` is not
// a whole number (8.5, "8", 1e3) or does not fit in int64.
void check_integer_fields(const nlohmann::json& j, std::initializer_list<const char*> keys, const std::string& where);

}  // namespace moe
