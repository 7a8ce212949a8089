#include "serve/kserve.h"

#include "serve/classification.h"
#include "serve/json_nonfinite.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <type_traits>

namespace moe::serve {

namespace {

using json = nlohmann::json;

constexpr int kMaxJsonDepth = 16;  // a [N,1,28,28] nested array is 5 deep inside 3 levels of request

const char* output_name(Output o) { return o == Output::logits ? "logits" : "gate_probs"; }

int64_t output_width(Output o, const ModelInfo& m) { return o == Output::logits ? m.n_classes : m.n_experts; }

// A value quoted in an error message, cut short: the message must stay one readable line.
std::string brief(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 48 ? s.substr(0, 45) + "..." : s;
}

// An optional boolean field of an optional "parameters" object.
bool bool_parameter(const json& owner, const char* key, const std::string& where) {
  const auto p = owner.find("parameters");
  if (p == owner.end()) return false;
  if (!p->is_object()) throw HttpError(400, where + ".parameters: expected an object");
  const auto v = p->find(key);
  if (v == p->end()) return false;
  if (!v->is_boolean()) throw HttpError(400, where + ".parameters." + key + ": expected true or false");
  return v->get<bool>();
}

// Requested-output parameters: binary_data and classification; anything else (shared memory, a
// typo) is refused rather than silently ignored. Returns the classification count, 0 for none.
int64_t classification_parameter(const json& output, const std::string& where, int64_t classes) {
  const auto p = output.find("parameters");
  if (p == output.end()) return 0;
  if (!p->is_object()) throw HttpError(400, where + ".parameters: expected an object");
  int64_t k = 0;
  for (const auto& [key, v] : p->items()) {
    if (key == "binary_data") continue;  // checked by bool_parameter
    if (key != "classification")
      throw HttpError(400, where + ".parameters." + key + ": not supported here (binary_data, classification)");
    if (!v.is_number_unsigned() || v.get<uint64_t>() > uint64_t(1) << 31)
      throw HttpError(400, where + ".parameters.classification: expected a class count (an unsigned integer), got " + brief(v));
    k = std::min<int64_t>(int64_t(v.get<uint64_t>()), classes);  // Triton caps k at the class count
  }
  return k;
}

// The request-level parameters Triton documents, type-checked as Triton does (wrong type: 400);
// others are custom parameters, which must be scalars. Returns "timeout" in microseconds (0 = none).
int64_t check_request_parameters(const json& p) {
  if (!p.is_object()) throw HttpError(400, "parameters: expected an object");
  int64_t timeout = 0;
  for (const auto& [key, v] : p.items()) {
    const std::string where = "parameters." + key;
    if (key == "priority" || key == "timeout") {
      if (!v.is_number_unsigned()) throw HttpError(400, where + ": expected an unsigned integer, got " + brief(v));
      if (key == "timeout") timeout = int64_t(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(1) << 62));
    } else if (key == "sequence_id") {
      if (!v.is_number_unsigned() && !v.is_string()) throw HttpError(400, where + ": expected an unsigned integer or a string, got " + brief(v));
    } else if (key == "sequence_start" || key == "sequence_end" || key == "binary_data_output") {
      if (!v.is_boolean()) throw HttpError(400, where + ": expected true or false, got " + brief(v));
    } else if (!v.is_primitive() || v.is_null()) {
      throw HttpError(400, where + ": expected a string, number or boolean, got " + brief(v));
    }
  }
  return timeout;
}

// Flattens `data` (flat or nested, row-major) into `out` (float for FP32, uint8_t for UINT8),
// checking every element.
template <typename T>
void flatten(const json& data, std::vector<T>& out, size_t limit, const std::string& where) {
  if (data.is_array()) {
    for (const auto& v : data) flatten(v, out, limit, where);
    return;
  }
  if (out.size() >= limit) throw HttpError(400, where + ": more elements than the shape holds (" + std::to_string(limit) + ")");
  if constexpr (std::is_same_v<T, uint8_t>) {
    if (!data.is_number_integer() || data.get<int64_t>() < 0 || data.get<int64_t>() > 255)
      throw HttpError(400, where + "[" + std::to_string(out.size()) + "]: expected an integer 0..255 for UINT8, got " + brief(data));
    out.push_back(uint8_t(data.get<int64_t>()));
  } else {
    // Any IEEE-754 value, as Triton takes it: NaN / Infinity tokens, and a double beyond the FP32
    // range becomes +-inf when narrowed. What the model makes of it is returned.
    double v = 0;
    if (data.is_number()) v = data.get<double>();
    else if (!nonfinite_marker(data, &v))
      throw HttpError(400, where + "[" + std::to_string(out.size()) + "]: expected a number, got " + brief(data));
    out.push_back(float(v));
  }
}

void append_floats(std::string& s, const float* v, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (i) s.push_back(',');
    append_json_float(s, v[i]);
  }
}

std::string json_string(const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

int json_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

InferRequest parse_infer_request(std::string_view body, int64_t header_length, const ModelInfo& m) {
  InferRequest r;
  const bool uint8 = takes_uint8(m);
  if (header_length == 0) {  // raw binary request: the whole body is the one input, batch 1
    const size_t want = size_t(kPixels) * (uint8 ? 1 : 4);
    if (body.size() != want)
      throw HttpError(400, "raw binary request (Inference-Header-Content-Length: 0): expected one " + m.input_datatype +
                               " [1,1,28,28] image of " + std::to_string(want) + " bytes, got " + std::to_string(body.size()));
    r.n = 1;
    if (uint8) r.bytes.assign(body.begin(), body.end());
    else {
      r.images.resize(kPixels);
      std::memcpy(r.images.data(), body.data(), body.size());
    }
    r.outputs = {{Output::logits, true}, {Output::gate_probs, true}};
    return r;
  }
  if (header_length > int64_t(body.size()))
    throw HttpError(400, "Inference-Header-Content-Length " + std::to_string(header_length) + " is larger than the body (" +
                             std::to_string(body.size()) + " bytes)");
  const std::string_view head = header_length < 0 ? body : body.substr(0, size_t(header_length));
  std::string_view blobs = header_length < 0 ? std::string_view() : body.substr(size_t(header_length));
  if (json_depth(head) > kMaxJsonDepth)
    throw HttpError(400, "request JSON is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  const std::string text = quote_nonfinite_tokens(head);
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw HttpError(400, "request body is not valid JSON");
  if (!j.is_object()) throw HttpError(400, "request body: expected a JSON object");

  if (const auto id = j.find("id"); id != j.end()) {
    if (!id->is_string()) throw HttpError(400, "id: expected a string");
    r.id = id->get<std::string>();
  }
  const bool binary_default = bool_parameter(j, "binary_data_output", "request");
  if (const auto p = j.find("parameters"); p != j.end()) r.timeout_us = check_request_parameters(*p);

  const auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_array()) throw HttpError(400, "inputs: expected an array with one tensor named 'input'");
  if (inputs->size() != 1)
    throw HttpError(400, "inputs: the model has one input ('input'), got " + std::to_string(inputs->size()) + " tensors");
  const json& in = (*inputs)[0];
  if (!in.is_object()) throw HttpError(400, "inputs[0]: expected an object");
  const auto name = in.find("name");
  if (name == in.end() || !name->is_string() || *name != "input")
    throw HttpError(400, "inputs[0].name: expected \"input\", got " + (name == in.end() ? std::string("nothing") : brief(*name)));
  const auto dt = in.find("datatype");
  if (dt == in.end() || !dt->is_string())
    throw HttpError(400, "inputs[0].datatype: expected \"" + m.input_datatype + "\", got " + (dt == in.end() ? std::string("nothing") : brief(*dt)));
  check_input_datatype(dt->get<std::string>(), m);
  const auto shape = in.find("shape");
  const std::string shape_hint = "expected [N,1,28,28] with 1 <= N <= " + std::to_string(m.max_batch_request);
  if (shape == in.end() || !shape->is_array() || shape->size() != 4)
    throw HttpError(400, "inputs[0].shape: " + shape_hint + ", got " + (shape == in.end() ? std::string("nothing") : brief(*shape)));
  for (const auto& d : *shape)
    if (!d.is_number_integer()) throw HttpError(400, "inputs[0].shape: " + shape_hint + ", got " + brief(*shape));
  const int64_t n = (*shape)[0].get<int64_t>();
  if ((*shape)[1] != 1 || (*shape)[2] != 28 || (*shape)[3] != 28 || n < 1)
    throw HttpError(400, "inputs[0].shape: " + shape_hint + ", got " + brief(*shape));
  if (n > m.max_batch_request)
    throw HttpError(400, "inputs[0].shape: batch " + std::to_string(n) + " is above the limit of " +
                             std::to_string(m.max_batch_request) + " images per request (--max-batch-request)");
  r.n = n;
  const size_t count = size_t(n * kPixels);

  const auto data = in.find("data");
  const auto params = in.find("parameters");
  const bool has_size = params != in.end() && params->is_object() && params->contains("binary_data_size");
  if ((data != in.end()) == has_size)
    throw HttpError(400, "inputs[0]: give exactly one of \"data\" and parameters.binary_data_size");
  if (has_size) {
    const json& size = (*params)["binary_data_size"];
    const size_t want = count * (uint8 ? 1 : 4);
    if (!size.is_number_unsigned() || size.get<uint64_t>() != want)
      throw HttpError(400, "inputs[0].parameters.binary_data_size: expected " + std::to_string(want) + " bytes for " +
                               dt->get<std::string>() + " " + brief(*shape) + ", got " + brief(size));
    if (blobs.size() < want)
      throw HttpError(400, "inputs[0]: binary data is " + std::to_string(blobs.size()) + " bytes, expected " + std::to_string(want));
    if (uint8) {
      r.bytes.assign(blobs.begin(), blobs.begin() + long(want));
    } else {
      // x86-64 is little-endian, as the wire format; NaN and inf pass through, as on Triton.
      r.images.resize(count);
      std::memcpy(r.images.data(), blobs.data(), want);
    }
    blobs.remove_prefix(want);
  } else {
    size_t got = 0;
    if (uint8) {
      r.bytes.reserve(count);
      flatten(*data, r.bytes, count, "inputs[0].data");
      got = r.bytes.size();
    } else {
      r.images.reserve(count);
      flatten(*data, r.images, count, "inputs[0].data");
      got = r.images.size();
    }
    if (got != count)
      throw HttpError(400, "inputs[0].data: " + std::to_string(got) + " elements, expected " + std::to_string(count) + " for shape " +
                               brief(*shape));
  }
  if (!blobs.empty())
    throw HttpError(400, std::to_string(blobs.size()) + " bytes after the JSON header are not claimed by any input's binary_data_size");

  if (const auto outs = j.find("outputs"); outs != j.end()) {
    if (!outs->is_array()) throw HttpError(400, "outputs: expected an array");
    for (size_t i = 0; i < outs->size(); ++i) {
      const json& o = (*outs)[i];
      const std::string where = "outputs[" + std::to_string(i) + "]";
      if (!o.is_object()) throw HttpError(400, where + ": expected an object");
      const auto on = o.find("name");
      Output which;
      if (on != o.end() && *on == "logits") which = Output::logits;
      else if (on != o.end() && *on == "gate_probs") which = Output::gate_probs;
      else throw HttpError(400, where + ".name: expected \"logits\" or \"gate_probs\", got " + (on == o.end() ? std::string("nothing") : brief(*on)));
      for (const auto& prev : r.outputs)
        if (prev.which == which) throw HttpError(400, where + ".name: " + brief(*on) + " is requested twice");
      // As Triton does: a listed output is binary only if it says so itself.
      r.outputs.push_back({which, bool_parameter(o, "binary_data", where), classification_parameter(o, where, output_width(which, m))});
    }
  }
  if (r.outputs.empty()) r.outputs = {{Output::logits, binary_default}, {Output::gate_probs, binary_default}};
  return r;
}

HttpBody infer_response(const InferRequest& r, const ModelInfo& m, const float* logits, const float* gate_probs) {
  HttpBody b;
  std::string& s = b.bytes;
  std::string blobs;
  s = "{\"model_name\":" + json_string(m.name) + ",\"model_version\":" + json_string(m.version);
  if (!r.id.empty()) s += ",\"id\":" + json_string(r.id);
  s += ",\"outputs\":[";
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    const Output o = r.outputs[i].which;
    const int64_t w = output_width(o, m);
    const float* v = o == Output::logits ? logits : gate_probs;
    if (i) s += ',';
    if (const int64_t k = r.outputs[i].classification; k > 0) {
      fmt::format_to(std::back_inserter(s), "{{\"name\":\"{}\",\"datatype\":\"BYTES\",\"shape\":[{},{}],", output_name(o), r.n, k);
      static const std::vector<std::string> no_labels;  // the class labels name logits columns, not experts
      std::string blob, data;
      for (int64_t row = 0; row < r.n; ++row)
        for (const std::string& c : top_k_classes(v + row * w, w, k, o == Output::logits ? m.labels : no_labels)) {
          const uint32_t len = uint32_t(c.size());  // BYTES element: 4-byte little-endian length, then the bytes
          blob.append(reinterpret_cast<const char*>(&len), 4);
          blob += c;
          if (!data.empty()) data += ',';
          data += json_string(c);
        }
      if (r.outputs[i].binary) {
        fmt::format_to(std::back_inserter(s), "\"parameters\":{{\"binary_data_size\":{}}}}}", blob.size());
        blobs += blob;
      } else {
        s += "\"data\":[" + data + "]}";
      }
      continue;
    }
    fmt::format_to(std::back_inserter(s), "{{\"name\":\"{}\",\"datatype\":\"FP32\",\"shape\":[{},{}],", output_name(o), r.n, w);
    if (r.outputs[i].binary) {
      const size_t bytes = size_t(r.n * w) * sizeof(float);
      fmt::format_to(std::back_inserter(s), "\"parameters\":{{\"binary_data_size\":{}}}}}", bytes);
      blobs.append(reinterpret_cast<const char*>(v), bytes);
    } else {
      s += "\"data\":[";
      append_floats(s, v, r.n * w);
      s += "]}";
    }
  }
  s += "]}";
  if (!blobs.empty()) {
    b.header_length = int64_t(s.size());
    b.content_type = "application/octet-stream";
    s += blobs;
  }
  return b;
}

std::string server_metadata_json(bool model_repository) {
  json extensions = {"binary_tensor_data", "classification", "model_configuration", "parameters", "statistics"};
  if (model_repository) extensions.push_back("model_repository");
  return json{{"name", "moe-mnist"}, {"version", MOE_MNIST_VERSION}, {"extensions", extensions}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string model_metadata_json(const ModelInfo& m, const std::vector<int64_t>& versions) {
  json listed = json::array();
  for (int64_t v : versions) listed.push_back(std::to_string(v));
  if (listed.empty()) listed.push_back(m.version);
  auto tensor = [](const char* name, const std::string& datatype, std::vector<int64_t> shape) {
    return json{{"name", name}, {"datatype", datatype}, {"shape", shape}};
  };
  return json{{"name", m.name},
              {"versions", listed},
              {"platform", "onnxruntime_onnx"},
              {"inputs", {tensor("input", m.input_datatype, {-1, 1, 28, 28})}},
              {"outputs", {tensor("logits", "FP32", {-1, m.n_classes}), tensor("gate_probs", "FP32", {-1, m.n_experts})}}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string model_config_json(const ModelInfo& m) {
  auto tensor = [](const char* name, const std::string& datatype, std::vector<int64_t> dims) {
    return json{{"name", name}, {"data_type", "TYPE_" + datatype}, {"dims", dims}};
  };
  return json{{"name", m.name},
              {"platform", "onnxruntime_onnx"},
              {"backend", "onnxruntime"},
              {"max_batch_size", m.max_batch_request},
              {"input", {tensor("input", m.input_datatype, {1, 28, 28})}},
              {"output", {tensor("logits", "FP32", {m.n_classes}), tensor("gate_probs", "FP32", {m.n_experts})}},
              {"dynamic_batching",
               {{"preferred_batch_size", {m.preferred_batch}}, {"max_queue_delay_microseconds", m.max_queue_delay_us}}},
              {"instance_group", {{{"kind", "KIND_CPU"}, {"count", 1}}}}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string unserved(const std::string& extension) {
  if (extension == "model_repository")
    return "the model_repository extension is not served: this server runs one model, fixed at start (serve --model-repository DIR "
           "serves a Triton model repository; GET /v2 lists the extensions served)";
  return "the " + extension + " extension is not served (GET /v2 lists the extensions this server serves)";
}

std::string error_json(const std::string& message) { return json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace moe::serve
