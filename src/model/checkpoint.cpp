#include "model/checkpoint.h"

#include <filesystem>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace moe {

std::string config_path(const std::string& dir) { return dir + "/config.json"; }
std::string weights_path(const std::string& dir) { return dir + "/weights.safetensors"; }
std::string train_state_path(const std::string& dir) { return dir + "/train_state.pt"; }

CheckpointMeta load_checkpoint_meta(const std::string& dir) {
  if (!std::filesystem::is_directory(dir))
    throw InputError(dir + ": not a checkpoint directory (expected the folder that 'train --out' wrote)");
  const std::string path = config_path(dir);
  if (!std::filesystem::exists(path)) throw InputError(path + ": missing (is " + dir + " a checkpoint written by 'train'?)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path, kMaxConfigBytes, "config.json"));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("model")) throw InputError(path + ": expected an object with a \"model\" field");
  CheckpointMeta m;
  m.model = model_config_from_json(j["model"], path);
  if (j.contains("dataset")) {
    if (!j["dataset"].is_string()) throw InputError(path + ": \"dataset\" must be a string");
    m.dataset = j["dataset"].get<std::string>();
  }
  if (j.contains("training")) {
    if (!j["training"].is_object()) throw InputError(path + ": \"training\" must be an object");
    m.training = j["training"];
  }
  return m;
}

void save_checkpoint_meta(const std::string& dir, const CheckpointMeta& meta) {
  std::filesystem::create_directories(dir);
  nlohmann::json j = {{"model", to_json(meta.model)}, {"dataset", meta.dataset}, {"training", meta.training}};
  write_file_atomically(config_path(dir), j.dump(2) + "\n");
}

Checkpoint load_checkpoint(const std::string& dir) {
  Checkpoint c;
  c.meta = load_checkpoint_meta(dir);
  c.weights = load_weights(weights_path(dir));
  check_weights(c.weights, c.meta.model, weights_path(dir));
  return c;
}

}  // namespace moe
