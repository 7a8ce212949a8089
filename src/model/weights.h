// Named float32 tensors, stored as a safetensors file (8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}}, then the raw data). This is how a checkpoint's weights
// travel from LibTorch to the exporter and the reference forward pass without either needing LibTorch.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace moe {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;  // row-major, size == product of shape

  int64_t numel() const;
};

using Weights = std::map<std::string, Tensor>;

void save_weights(const std::string& path, const Weights& weights);  // atomic
Weights load_weights(const std::string& path);                      // throws InputError on a malformed file

// Parameter names follow the LibTorch module tree, e.g. "moe.experts.3.fc1.weight" ([out, in]).
std::string expert_param(int64_t i_expert, const char* layer, const char* kind);

// The full list of (name, shape) a model of this config has, in a fixed order.
std::vector<std::pair<std::string, std::vector<int64_t>>> expected_params(const ModelConfig& config);

// Returns weights.at(name) after checking its shape; throws InputError naming `where` otherwise.
const Tensor& get_param(const Weights& weights, const std::string& name, const std::vector<int64_t>& shape,
                        const std::string& where);

// Checks every expected parameter is present with the right shape.
// The checkpoint's identity: FNV-1a 64 over every tensor's name, shape and float bytes, as
// "fnv1a64:<16 hex digits>". export writes it into the ONNX metadata ("weights_hash"), so a model can
// be matched with the checkpoint it came from.
std::string weights_hash(const Weights& weights);

void check_weights(const Weights& weights, const ModelConfig& config, const std::string& where);

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace moe
