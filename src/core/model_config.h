// The model's sizes: the one description shared by LibTorch, the ONNX exporter and every backend.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace moe {

struct ModelConfig {
  int64_t input_size = 784;    // flattened 28x28 image
  int64_t experts = 8;         // E
  int64_t top = 2;             // k experts chosen per image, 1..E
  int64_t emb_size = 16;       // embedding width, also each expert's width
  int64_t n_classes = 10;
  double w_importance = 0.01;  // weight of the importance (load-balancing) loss in training
  bool noisy_gating = true;    // training adds learned-scale Gaussian noise to the gate before top-k

  // Throws InputError naming the field when a size is out of range.
  void validate() const;
};

nlohmann::json to_json(const ModelConfig& c);
// Reads the fields present in `j` over the defaults; `where` names the source for error messages.
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace moe
