#include "serve/grpc_convert.h"

#include <algorithm>
#include <cstring>

#include "serve/classification.h"

namespace moe::serve {

namespace {

grpc::StatusCode code_of(int http_status) {
  switch (http_status) {
    case 404: return grpc::StatusCode::NOT_FOUND;
    case 413: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case 503: return grpc::StatusCode::UNAVAILABLE;
    case 500: return grpc::StatusCode::INTERNAL;
    default: return grpc::StatusCode::INVALID_ARGUMENT;
  }
}

const char* output_name(Output o) { return o == Output::logits ? "logits" : "gate_probs"; }

std::string describe(const inference::InferParameter& p) {
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam: return p.bool_param() ? "true" : "false";
    case inference::InferParameter::kInt64Param: return std::to_string(p.int64_param());
    case inference::InferParameter::kStringParam: return "\"" + p.string_param().substr(0, 40) + "\"";
    case inference::InferParameter::kDoubleParam: return std::to_string(p.double_param());
    default: return "nothing";
  }
}

}  // namespace

grpc::Status grpc_status(const HttpError& e) { return grpc::Status(code_of(e.status), e.what()); }

InferRequest parse_grpc_infer(const inference::ModelInferRequest& q, const ModelInfo& m) {
  InferRequest r;
  r.id = q.id();
  for (const auto& [key, v] : q.parameters()) {
    const std::string where = "parameters." + key;
    if (key == "priority" || key == "timeout") {
      const bool ok = v.parameter_choice_case() == inference::InferParameter::kInt64Param && v.int64_param() >= 0;
      if (!ok) throw HttpError(400, where + ": expected an unsigned integer, got " + describe(v));
      if (key == "timeout") r.timeout_us = v.int64_param();
    } else if (key == "sequence_start" || key == "sequence_end") {
      if (v.parameter_choice_case() != inference::InferParameter::kBoolParam)
        throw HttpError(400, where + ": expected true or false, got " + describe(v));
    } else if (key == "sequence_id") {
      const auto c = v.parameter_choice_case();
      if (!((c == inference::InferParameter::kInt64Param && v.int64_param() >= 0) || c == inference::InferParameter::kStringParam))
        throw HttpError(400, where + ": expected an unsigned integer or a string, got " + describe(v));
    } else if (v.parameter_choice_case() == inference::InferParameter::PARAMETER_CHOICE_NOT_SET) {
      throw HttpError(400, where + ": expected a string, number or boolean, got nothing");
    }
  }
  if (q.inputs_size() != 1)
    throw HttpError(400, "inputs: the model has one input ('input'), got " + std::to_string(q.inputs_size()) + " tensors");
  const auto& in = q.inputs(0);
  if (in.name() != "input") throw HttpError(400, "inputs[0].name: expected \"input\", got \"" + in.name().substr(0, 40) + "\"");
  check_input_datatype(in.datatype(), m);
  const bool uint8 = takes_uint8(m);
  std::string shape;
  for (int i = 0; i < in.shape_size(); ++i) shape += (i ? "," : "") + std::to_string(in.shape(i));
  shape = "[" + shape + "]";
  if (in.shape_size() != 4 || in.shape(1) != 1 || in.shape(2) != 28 || in.shape(3) != 28 || in.shape(0) < 1)
    throw HttpError(400, "inputs[0].shape: expected [N,1,28,28] with 1 <= N <= " + std::to_string(m.max_batch_request) + ", got " + shape);
  const int64_t n = in.shape(0);
  if (n > m.max_batch_request)
    throw HttpError(400, "inputs[0].shape: batch " + std::to_string(n) + " is above the limit of " + std::to_string(m.max_batch_request) +
                             " images per request (--max-batch-request)");
  for (const auto& [key, v] : in.parameters())
    throw HttpError(400, "inputs[0].parameters." + key + ": not supported here (shared memory is not served)");
  r.n = n;
  const size_t count = size_t(n * kPixels);
  const bool has_raw = q.raw_input_contents_size() > 0;
  const auto& c = in.contents();
  const size_t typed = size_t(c.fp32_contents_size() + c.uint_contents_size() + c.bool_contents_size() + c.int_contents_size() +
                              c.int64_contents_size() + c.uint64_contents_size() + c.fp64_contents_size() + c.bytes_contents_size());
  if (has_raw == (typed > 0)) throw HttpError(400, "inputs[0]: give exactly one of contents and raw_input_contents");
  if (has_raw) {
    if (q.raw_input_contents_size() != 1)
      throw HttpError(400, "raw_input_contents: expected 1 entry (one input), got " + std::to_string(q.raw_input_contents_size()));
    const std::string& raw = q.raw_input_contents(0);
    const size_t want = count * (uint8 ? 1 : 4);
    if (raw.size() != want)
      throw HttpError(400, "raw_input_contents[0]: expected " + std::to_string(want) + " bytes for " + in.datatype() + " " + shape + ", got " +
                               std::to_string(raw.size()));
    if (uint8) {
      r.bytes.assign(raw.begin(), raw.end());
    } else {
      r.images.resize(count);
      std::memcpy(r.images.data(), raw.data(), want);  // little-endian, as the wire format; NaN and inf pass
    }
  } else if (uint8) {
    if (size_t(c.uint_contents_size()) != count || typed != count)
      throw HttpError(400, "inputs[0].contents: expected " + std::to_string(count) + " uint_contents for UINT8 " + shape);
    r.bytes.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const uint32_t v = c.uint_contents(int(i));
      if (v > 255) throw HttpError(400, "inputs[0].contents.uint_contents[" + std::to_string(i) + "]: expected 0..255 for UINT8, got " + std::to_string(v));
      r.bytes[i] = uint8_t(v);
    }
  } else {
    if (size_t(c.fp32_contents_size()) != count || typed != count)
      throw HttpError(400, "inputs[0].contents: expected " + std::to_string(count) + " fp32_contents for FP32 " + shape);
    r.images.resize(count);
    std::memcpy(r.images.data(), c.fp32_contents().data(), count * 4);
  }
  for (int i = 0; i < q.outputs_size(); ++i) {
    const auto& o = q.outputs(i);
    const std::string where = "outputs[" + std::to_string(i) + "]";
    Output which;
    if (o.name() == "logits") which = Output::logits;
    else if (o.name() == "gate_probs") which = Output::gate_probs;
    else throw HttpError(400, where + ".name: expected \"logits\" or \"gate_probs\", got \"" + o.name().substr(0, 40) + "\"");
    for (const auto& prev : r.outputs)
      if (prev.which == which) throw HttpError(400, where + ".name: \"" + o.name() + "\" is requested twice");
    int64_t k = 0;
    for (const auto& [key, v] : o.parameters()) {
      if (key == "binary_data") continue;  // meaningless on gRPC (outputs are always raw), as Triton ignores it
      if (key != "classification")
        throw HttpError(400, where + ".parameters." + key + ": not supported here (classification)");
      if (v.parameter_choice_case() != inference::InferParameter::kInt64Param || v.int64_param() < 0)
        throw HttpError(400, where + ".parameters.classification: expected a class count (an unsigned integer), got " + describe(v));
      k = std::min<int64_t>(v.int64_param(), which == Output::logits ? m.n_classes : m.n_experts);
    }
    r.outputs.push_back({which, true, k});
  }
  if (r.outputs.empty()) r.outputs = {{Output::logits, true, 0}, {Output::gate_probs, true, 0}};
  return r;
}

void grpc_infer_response(const InferRequest& r, const ModelInfo& m, const BatchResult& b, inference::ModelInferResponse* out) {
  out->set_model_name(m.name);
  out->set_model_version(m.version);
  out->set_id(r.id);
  static const std::vector<std::string> no_labels;
  for (const RequestedOutput& o : r.outputs) {
    const int64_t w = o.which == Output::logits ? m.n_classes : m.n_experts;
    const float* v = o.which == Output::logits ? b.logits.data() : b.gate_probs.data();
    auto* t = out->add_outputs();
    t->set_name(output_name(o.which));
    t->add_shape(r.n);
    std::string* raw = out->add_raw_output_contents();
    if (o.classification > 0) {
      t->set_datatype("BYTES");
      t->add_shape(o.classification);
      for (int64_t row = 0; row < r.n; ++row)
        for (const std::string& c : top_k_classes(v + row * w, w, o.classification, o.which == Output::logits ? m.labels : no_labels)) {
          const uint32_t len = uint32_t(c.size());
          raw->append(reinterpret_cast<const char*>(&len), 4);
          *raw += c;
        }
    } else {
      t->set_datatype("FP32");
      t->add_shape(w);
      raw->assign(reinterpret_cast<const char*>(v), size_t(r.n * w) * sizeof(float));
    }
  }
}

}  // namespace moe::serve
