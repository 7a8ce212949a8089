#include "model/weights.h"

#include <cmath>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace moe {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

void save_weights(const std::string& path, const Weights& weights) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : weights) {
    const uint64_t bytes = t.data.size() * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  header["__metadata__"] = {{"format", "moe-mnist"}};
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // keep the data 8-byte aligned, as the format recommends
  std::string out(8, '\0');
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += h;
  for (const auto& [name, t] : weights)
    out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
  write_file_atomically(path, out);
}

Weights load_weights(const std::string& path) {
  const std::string bytes = read_file(path, kMaxWeightsBytes, "safetensors");
  if (bytes.size() < 8) throw InputError(path + ": not a safetensors file (shorter than its 8-byte header length)");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  if (n > bytes.size() - 8) throw InputError(path + ": safetensors header length " + std::to_string(n) + " exceeds the file");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, n));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": safetensors header is not valid JSON (" + e.what() + ")");
  }
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;
  Weights w;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    try {
      if (info.at("dtype") != "F32") throw InputError(path + ": tensor '" + name + "' has dtype " + info.at("dtype").dump() + ", expected \"F32\"");
      Tensor t;
      t.shape = info.at("shape").get<std::vector<int64_t>>();
      // Bound every dimension before multiplying, so a hostile header cannot overflow or allocate.
      if (t.shape.size() > 8) throw InputError(path + ": tensor '" + name + "' has " + std::to_string(t.shape.size()) + " dimensions, at most 8 expected");
      for (int64_t d : t.shape)
        if (d < 0 || d > kMaxParameters)
          throw InputError(path + ": tensor '" + name + "' has shape " + shape_string(t.shape) + ", a dimension outside 0.." +
                           std::to_string(kMaxParameters));
      int64_t numel = 1;
      for (int64_t d : t.shape) {
        numel *= d;
        if (numel > kMaxParameters)
          throw InputError(path + ": tensor '" + name + "' has shape " + shape_string(t.shape) + ", more than " +
                           std::to_string(kMaxParameters) + " values");
      }
      const auto off = info.at("data_offsets").get<std::vector<uint64_t>>();
      if (off.size() != 2 || off[0] > off[1] || off[1] > data_size ||
          off[1] - off[0] != uint64_t(t.numel()) * sizeof(float))
        throw InputError(path + ": tensor '" + name + "' has data offsets that do not match its shape " + shape_string(t.shape));
      t.data.resize(t.numel());
      std::memcpy(t.data.data(), data + off[0], off[1] - off[0]);
      w.emplace(name, std::move(t));
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path + ": tensor '" + name + "' has a malformed header entry (" + e.what() + ")");
    }
  }
  return w;
}

std::string expert_param(int64_t i_expert, const char* layer, const char* kind) {
  return "moe.experts." + std::to_string(i_expert) + "." + layer + "." + kind;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> expected_params(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> p = {
      {"embedding.weight", {c.emb_size, c.input_size}}, {"embedding.bias", {c.emb_size}},
      {"moe.gate.weight", {c.n_experts, c.emb_size}},     {"moe.gate.bias", {c.n_experts}},
      {"moe.noise.weight", {c.n_experts, c.emb_size}},    {"moe.noise.bias", {c.n_experts}},
  };
  for (int64_t e = 0; e < c.n_experts; ++e)
    for (const char* layer : {"fc1", "fc2"}) {
      p.push_back({expert_param(e, layer, "weight"), {c.emb_size, c.emb_size}});
      p.push_back({expert_param(e, layer, "bias"), {c.emb_size}});
    }
  p.push_back({"classifier.weight", {c.n_classes, c.emb_size}});
  p.push_back({"classifier.bias", {c.n_classes}});
  return p;
}

const Tensor& get_param(const Weights& weights, const std::string& name, const std::vector<int64_t>& shape,
                        const std::string& where) {
  auto it = weights.find(name);
  if (it == weights.end()) throw InputError(where + ": missing parameter '" + name + "'");
  if (it->second.shape != shape)
    throw InputError(where + ": parameter '" + name + "' has shape " + shape_string(it->second.shape) +
                     ", expected " + shape_string(shape) + " for this model config");
  return it->second;
}

std::string weights_hash(const Weights& weights) {
  uint64_t h = 14695981039346656037ULL;
  auto mix = [&](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  };
  for (const auto& [name, t] : weights) {
    mix(name.data(), name.size() + 1);
    mix(t.shape.data(), t.shape.size() * sizeof(int64_t));
    mix(t.data.data(), t.data.size() * sizeof(float));
  }
  char hex[32];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  return std::string("fnv1a64:") + hex;
}

void check_weights(const Weights& weights, const ModelConfig& config, const std::string& where) {
  for (const auto& [name, shape] : expected_params(config)) {
    const Tensor& t = get_param(weights, name, shape, where);
    // A NaN or infinite weight is refused at load, by every command and backend: otherwise only the
    // images whose route touches it would show it, and export would carry it into the graph.
    for (size_t i = 0; i < t.data.size(); ++i)
      if (!std::isfinite(t.data[i])) {
        size_t bad = 0;
        for (float v : t.data) bad += !std::isfinite(v);
        throw InputError(where + ": tensor '" + name + "' holds " + std::to_string(bad) + " non-finite value" + (bad == 1 ? "" : "s") +
                         " (the first, " + (std::isnan(t.data[i]) ? "nan" : t.data[i] > 0 ? "inf" : "-inf") + ", at index " +
                         std::to_string(i) + " of " + std::to_string(t.data.size()) +
                         "): the weights are damaged or come from a diverged run; retrain or restore them");
      }
  }
}

}  // namespace moe
