#include "model/model_config.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "base/errors.h"

namespace moe {

void ModelConfig::validate() const {
  auto in_range = [](const char* name, int64_t v, int64_t lo, int64_t hi, const char* why) {
    if (v < lo || v > hi)
      throw InputError(std::string("model config: ") + name + " must be in " + std::to_string(lo) + ".." +
                       std::to_string(hi) + " (" + why + "), got " + std::to_string(v));
  };
  if (input_size != kInputSize)
    throw InputError("model config: input_size must be " + std::to_string(kInputSize) + " (28x28 images), got " +
                     std::to_string(input_size));
  in_range("experts", n_experts, 1, kMaxExperts, "the limit of this tool");
  in_range("emb_size", emb_size, 1, kMaxEmbSize, "the limit of this tool");
  in_range("n_classes", n_classes, 2, kMaxClasses, "a classifier needs 2 or more classes");
  if (top_k < 1 || top_k > n_experts)
    throw InputError("model config: top must be in 1..experts (" + std::to_string(n_experts) + "), got " +
                     std::to_string(top_k));
  if (!(w_importance >= 0.0) || !std::isfinite(w_importance))
    throw InputError("model config: w_importance must be a finite number >= 0");
  if (n_parameters() > kMaxParameters)
    throw InputError("model config: " + std::to_string(n_parameters()) + " parameters (experts " + std::to_string(n_experts) +
                     ", emb_size " + std::to_string(emb_size) + "), more than the limit of " +
                     std::to_string(kMaxParameters));
}

int64_t ModelConfig::n_parameters() const {
  // Every factor is bounded by validate()'s range checks before this is trusted, so no overflow.
  const int64_t D = emb_size, E = n_experts;
  return D * input_size + D + 2 * (E * D + E) + E * 2 * (D * D + D) + n_classes * D + n_classes;
}

nlohmann::json to_json(const ModelConfig& c) {
  return {{"input_size", c.input_size}, {"experts", c.n_experts},     {"top", c.top_k},
          {"emb_size", c.emb_size},     {"n_classes", c.n_classes}, {"w_importance", c.w_importance},
          {"noisy_gating", c.noisy_gating}};
}

void check_integer_fields(const nlohmann::json& j, std::initializer_list<const char*> keys, const std::string& where) {
  for (const char* key : keys) {
    if (!j.is_object() || !j.contains(key)) continue;
    const nlohmann::json& v = j.at(key);
    // nlohmann's get<int64_t>() turns 8.5 into 8 and 2^64-1 into -1; a count must be written as one.
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
      throw InputError(where + ": field '" + key + "' has the wrong type: expected a whole number (64-bit), got " + v.dump());
  }
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where) {
  ModelConfig c;
  if (!j.is_object()) throw InputError(where + ": model config must be a JSON object");
  check_integer_fields(j, {"input_size", "experts", "top", "emb_size", "n_classes"}, where);
  try {
    if (j.contains("input_size")) c.input_size = j.at("input_size").get<int64_t>();
    if (j.contains("experts")) c.n_experts = j.at("experts").get<int64_t>();
    if (j.contains("top")) c.top_k = j.at("top").get<int64_t>();
    if (j.contains("emb_size")) c.emb_size = j.at("emb_size").get<int64_t>();
    if (j.contains("n_classes")) c.n_classes = j.at("n_classes").get<int64_t>();
    if (j.contains("w_importance")) c.w_importance = j.at("w_importance").get<double>();
    if (j.contains("noisy_gating")) c.noisy_gating = j.at("noisy_gating").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + ": bad model config field (" + e.what() + ")");
  }
  try {
    c.validate();
  } catch (const InputError& e) {
    throw InputError(where + ": " + e.what());
  }
  return c;
}

}  // namespace moe
