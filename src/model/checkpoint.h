// A checkpoint is a directory: config.json (model config, dataset, training summary),
// weights.safetensors (see weights.h) and, for resuming, train_state.pt (LibTorch optimizer state).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "model/model_config.h"
#include "model/weights.h"

namespace moe {

struct CheckpointMeta {
  ModelConfig model;
  std::string dataset = "mnist";
  nlohmann::json training = nlohmann::json::object();  // epochs, iterations, accuracies, ...
};

struct Checkpoint {
  CheckpointMeta meta;
  Weights weights;
};

std::string config_path(const std::string& dir);
std::string weights_path(const std::string& dir);
std::string train_state_path(const std::string& dir);

CheckpointMeta load_checkpoint_meta(const std::string& dir);
void save_checkpoint_meta(const std::string& dir, const CheckpointMeta& meta);  // atomic

// Loads config + weights and checks every parameter's shape against the config.
Checkpoint load_checkpoint(const std::string& dir);

}  // namespace moe
