#include "core/model_config.h"

#include <nlohmann/json.hpp>

#include "core/errors.h"

namespace moe {

void ModelConfig::validate() const {
  auto positive = [](const char* name, int64_t v) {
    if (v <= 0) throw InputError(std::string("model config: ") + name + " must be > 0, got " + std::to_string(v));
  };
  positive("input_size", input_size);
  positive("experts", experts);
  positive("emb_size", emb_size);
  positive("n_classes", n_classes);
  if (top < 1 || top > experts)
    throw InputError("model config: top must be in 1..experts (" + std::to_string(experts) + "), got " +
                     std::to_string(top));
  if (!(w_importance >= 0.0)) throw InputError("model config: w_importance must be >= 0");
}

nlohmann::json to_json(const ModelConfig& c) {
  return {{"input_size", c.input_size}, {"experts", c.experts},     {"top", c.top},
          {"emb_size", c.emb_size},     {"n_classes", c.n_classes}, {"w_importance", c.w_importance},
          {"noisy_gating", c.noisy_gating}};
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where) {
  ModelConfig c;
  if (!j.is_object()) throw InputError(where + ": model config must be a JSON object");
  try {
    if (j.contains("input_size")) c.input_size = j.at("input_size").get<int64_t>();
    if (j.contains("experts")) c.experts = j.at("experts").get<int64_t>();
    if (j.contains("top")) c.top = j.at("top").get<int64_t>();
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
