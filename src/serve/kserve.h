// The KServe v2 / Open Inference Protocol over HTTP, as Triton speaks it: request parsing (JSON and
// the binary tensor data extension), response writing, and the metadata / config documents.
// Pure functions of bytes, so they are unit-tested and fuzzed without a socket.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace moe::serve {

// Answered as HTTP `status` with the body {"error": message}.
struct HttpError : std::runtime_error {
  int status;
  HttpError(int status_, const std::string& message) : std::runtime_error(message), status(status_) {}
};

// The served model as clients see it.
struct ModelInfo {
  std::string name = "moe-mnist";
  std::string version = "1";
  int64_t n_classes = 10, n_experts = 8, top_k = 2;
  int64_t max_batch_request = 1024;  // images per request
  int64_t max_queue_delay_us = 200;  // the dynamic batcher's delay, reported in the config
  int64_t preferred_batch = 64;      // the dynamic batcher's target batch, reported in the config
  std::string precision = "fp32", backend = "cpu";
  // The datatype of the model's one input, declared in metadata and config; a request with another
  // is refused. "UINT8": a graph exported with --input uint8, whose requests reach the engine as the
  // bytes they are (Classifier::classify_u8, no float copy); else "FP32".
  std::string input_datatype = "FP32";
  std::vector<std::string> labels;   // class labels for the classification extension; empty: none
};

constexpr int64_t kPixels = 784;  // one image: [1, 28, 28]

enum class Output { logits, gate_probs };
struct RequestedOutput {
  Output which;
  bool binary;  // raw little-endian bytes after the JSON header instead of a JSON "data" array
  int64_t classification = 0;  // > 0: the top-k classes as BYTES "score:index[:label]" (Triton's extension)
};

struct InferRequest {
  std::string id;                        // echoed when not empty
  int64_t n = 0;                         // images
  std::vector<float> images;             // FP32 model: [n, 784], the values as sent
  std::vector<uint8_t> bytes;            // UINT8 model: [n, 784] 0..255, as sent
  std::vector<RequestedOutput> outputs;  // in response order
  int64_t timeout_us = 0;                // request parameter "timeout": queue time limit, 0 = the server's
};

// Whether the model takes UINT8 input (ModelInfo::input_datatype).
inline bool takes_uint8(const ModelInfo& m) { return m.input_datatype == "UINT8"; }

// Throws HttpError(400) unless `datatype` is the model's input datatype (both protocols' message).
inline void check_input_datatype(const std::string& datatype, const ModelInfo& m) {
  if (datatype != m.input_datatype)
    throw HttpError(400, "inputs[0].datatype: expected \"" + m.input_datatype + "\" (the input datatype of model '" + m.name + "'), got \"" +
                             datatype.substr(0, 40) + "\"");
}

// body: the whole request body. header_length: the Inference-Header-Content-Length header's value, or
// -1 when the header is absent (then the whole body is JSON). 0 means a raw binary request: the body
// is one image in the model's datatype and every output comes back binary. Throws HttpError(400)
// naming the field.
InferRequest parse_infer_request(std::string_view body, int64_t header_length, const ModelInfo& m);

struct HttpBody {
  std::string bytes;
  std::string content_type = "application/json";
  int64_t header_length = -1;  // Inference-Header-Content-Length to send, -1 for none
};

// logits: [n, n_classes], gate_probs: [n, n_experts].
HttpBody infer_response(const InferRequest& r, const ModelInfo& m, const float* logits, const float* gate_probs);

// GET /v2 (model_repository: list that extension), GET /v2/models/{name} (versions: the ready
// versions, ascending; empty: m.version alone), GET /v2/models/{name}/config.
std::string server_metadata_json(bool model_repository = false);
std::string model_metadata_json(const ModelInfo& m, const std::vector<int64_t>& versions = {});
std::string model_config_json(const ModelInfo& m);

// Why an extension this server does not serve (model_repository, system_shared_memory, ...) is refused.
std::string unserved(const std::string& extension);

// {"error": message}
std::string error_json(const std::string& message);

// The deepest array/object nesting in a JSON text (strings skipped); used to refuse absurd nesting
// before the parser builds it.
int json_depth(std::string_view text);

}  // namespace moe::serve
