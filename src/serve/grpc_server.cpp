#include "serve/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>

#include "base/errors.h"
#include "grpc_service.grpc.pb.h"
#include "serve/classification.h"

namespace moe::serve {

namespace {

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

StatusCode code_of(int http_status) {
  switch (http_status) {
    case 404: return StatusCode::NOT_FOUND;
    case 413: return StatusCode::RESOURCE_EXHAUSTED;
    case 503: return StatusCode::UNAVAILABLE;
    case 500: return StatusCode::INTERNAL;
    default: return StatusCode::INVALID_ARGUMENT;
  }
}

Status error(const HttpError& e) { return Status(code_of(e.status), e.what()); }

const char* output_name(Output o) { return o == Output::logits ? "logits" : "gate_probs"; }

// The model and version a request names, checked with the HTTP routes' messages.
void check_model(const std::string& name, const std::string& version, const ModelInfo& m) {
  if (name != m.name) throw HttpError(404, "unknown model '" + name + "' (this server serves '" + m.name + "')");
  if (!version.empty() && version != m.version)
    throw HttpError(404, "model '" + m.name + "' has no version '" + version + "' (it has version " + m.version + ")");
}

std::string describe(const inference::InferParameter& p) {
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam: return p.bool_param() ? "true" : "false";
    case inference::InferParameter::kInt64Param: return std::to_string(p.int64_param());
    case inference::InferParameter::kStringParam: return "\"" + p.string_param().substr(0, 40) + "\"";
    case inference::InferParameter::kDoubleParam: return std::to_string(p.double_param());
    default: return "nothing";
  }
}

// A ModelInferRequest as the batcher's input and the response's plan; the same checks and messages
// as parse_infer_request on the HTTP side.
InferRequest parse(const inference::ModelInferRequest& q, const ModelInfo& m) {
  check_model(q.model_name(), q.model_version(), m);
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
  if (in.datatype() != "FP32" && in.datatype() != "UINT8")
    throw HttpError(400, "inputs[0].datatype: expected \"FP32\" or \"UINT8\", got \"" + in.datatype().substr(0, 40) + "\"");
  const bool uint8 = in.datatype() == "UINT8";
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
  r.images.resize(count);
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
      for (size_t i = 0; i < count; ++i) r.images[i] = float(uint8_t(raw[i])) / 255.0f;
    } else {
      std::memcpy(r.images.data(), raw.data(), want);  // little-endian, as the wire format; NaN and inf pass
    }
  } else if (uint8) {
    if (size_t(c.uint_contents_size()) != count || typed != count)
      throw HttpError(400, "inputs[0].contents: expected " + std::to_string(count) + " uint_contents for UINT8 " + shape);
    for (size_t i = 0; i < count; ++i) {
      const uint32_t v = c.uint_contents(int(i));
      if (v > 255) throw HttpError(400, "inputs[0].contents.uint_contents[" + std::to_string(i) + "]: expected 0..255 for UINT8, got " + std::to_string(v));
      r.images[i] = float(v) / 255.0f;
    }
  } else {
    if (size_t(c.fp32_contents_size()) != count || typed != count)
      throw HttpError(400, "inputs[0].contents: expected " + std::to_string(count) + " fp32_contents for FP32 " + shape);
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

// The batch result as a ModelInferResponse: every output in raw_output_contents, as Triton sends them.
void respond(const InferRequest& r, const ModelInfo& m, const BatchResult& b, inference::ModelInferResponse* out) {
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

void fill_duration(inference::StatisticDuration* d, const Duration& s) {
  d->set_count(s.count);
  d->set_ns(s.ns);
}

}  // namespace

struct GrpcServer::Impl final : inference::GRPCInferenceService::Service {
  const ModelInfo& m;
  Batcher& batcher;
  ModelStats& stats;
  const std::atomic<bool>& draining;
  std::unique_ptr<grpc::Server> server;
  std::once_flag stopped;

  Impl(const ModelInfo& m_, Batcher& b, ModelStats& s, const std::atomic<bool>& d) : m(m_), batcher(b), stats(s), draining(d) {}

  // Submits one request; `done` gets the response or the error, on a worker thread (or here when refused).
  void infer(const inference::ModelInferRequest& q, std::function<void(Status, inference::ModelInferResponse*)> done) {
    std::shared_ptr<InferRequest> r;
    try {
      if (draining) throw HttpError(503, "the server is shutting down");
      r = std::make_shared<InferRequest>(parse(q, m));
    } catch (const HttpError& e) {
      return done(error(e), nullptr);
    }
    std::vector<float> images = std::move(r->images);
    auto cb = std::make_shared<std::function<void(Status, inference::ModelInferResponse*)>>(std::move(done));
    const auto s = batcher.submit(std::move(images), r->n, [this, r, cb](BatchResult&& b) {
      if (b.timed_out) return (*cb)(Status(StatusCode::UNAVAILABLE, b.error), nullptr);
      if (!b.error.empty()) return (*cb)(Status(StatusCode::INTERNAL, b.error), nullptr);
      inference::ModelInferResponse resp;
      respond(*r, m, b, &resp);
      (*cb)(Status::OK, &resp);
    }, r->timeout_us);
    if (s == Batcher::Submitted::queue_full) (*cb)(Status(StatusCode::UNAVAILABLE, "the batching queue is full; retry later"), nullptr);
    if (s == Batcher::Submitted::stopping) (*cb)(Status(StatusCode::UNAVAILABLE, "the server is shutting down"), nullptr);
  }

  Status ServerLive(ServerContext*, const inference::ServerLiveRequest*, inference::ServerLiveResponse* out) override {
    out->set_live(true);
    return Status::OK;
  }
  Status ServerReady(ServerContext*, const inference::ServerReadyRequest*, inference::ServerReadyResponse* out) override {
    out->set_ready(!draining);
    return Status::OK;
  }
  Status ModelReady(ServerContext*, const inference::ModelReadyRequest* q, inference::ModelReadyResponse* out) override {
    try {
      check_model(q->name(), q->version(), m);
    } catch (const HttpError& e) {
      return error(e);
    }
    out->set_ready(!draining);
    return Status::OK;
  }
  Status ServerMetadata(ServerContext*, const inference::ServerMetadataRequest*, inference::ServerMetadataResponse* out) override {
    out->set_name("moe-mnist");
    out->set_version(MOE_MNIST_VERSION);
    for (const char* e : {"classification", "model_configuration", "parameters", "statistics"}) out->add_extensions(e);
    return Status::OK;
  }
  Status ModelMetadata(ServerContext*, const inference::ModelMetadataRequest* q, inference::ModelMetadataResponse* out) override {
    try {
      check_model(q->name(), q->version(), m);
    } catch (const HttpError& e) {
      return error(e);
    }
    out->set_name(m.name);
    out->add_versions(m.version);
    out->set_platform("onnxruntime_onnx");
    auto tensor = [](auto* t, const char* name, std::vector<int64_t> shape) {
      t->set_name(name);
      t->set_datatype("FP32");
      for (int64_t d : shape) t->add_shape(d);
    };
    tensor(out->add_inputs(), "input", {-1, 1, 28, 28});
    tensor(out->add_outputs(), "logits", {-1, m.n_classes});
    tensor(out->add_outputs(), "gate_probs", {-1, m.n_experts});
    return Status::OK;
  }
  Status ModelConfig(ServerContext*, const inference::ModelConfigRequest* q, inference::ModelConfigResponse* out) override {
    try {
      check_model(q->name(), q->version(), m);
    } catch (const HttpError& e) {
      return error(e);
    }
    auto* c = out->mutable_config();
    c->set_name(m.name);
    c->set_platform("onnxruntime_onnx");
    c->set_backend("onnxruntime");
    c->set_max_batch_size(int32_t(m.max_batch_request));
    auto tensor = [](auto* t, const char* name, std::vector<int64_t> dims) {
      t->set_name(name);
      t->set_data_type(inference::TYPE_FP32);
      for (int64_t d : dims) t->add_dims(d);
    };
    tensor(c->add_input(), "input", {1, 28, 28});
    tensor(c->add_output(), "logits", {m.n_classes});
    tensor(c->add_output(), "gate_probs", {m.n_experts});
    c->mutable_dynamic_batching()->add_preferred_batch_size(int32_t(m.preferred_batch));
    c->mutable_dynamic_batching()->set_max_queue_delay_microseconds(uint64_t(m.max_queue_delay_us));
    auto* g = c->add_instance_group();
    g->set_kind(inference::ModelInstanceGroup::KIND_CPU);
    g->set_count(1);
    return Status::OK;
  }
  Status ModelStatistics(ServerContext*, const inference::ModelStatisticsRequest* q, inference::ModelStatisticsResponse* out) override {
    if (!q->name().empty()) {  // an empty name asks for every model, as on Triton
      try {
        check_model(q->name(), q->version(), m);
      } catch (const HttpError& e) {
        return error(e);
      }
    }
    const ModelStats::Snapshot s = stats.snapshot();
    auto* st = out->add_model_stats();
    st->set_name(m.name);
    st->set_version(m.version);
    st->set_last_inference(s.last_inference_ms);
    st->set_inference_count(s.inference_count);
    st->set_execution_count(s.execution_count);
    auto* is = st->mutable_inference_stats();
    fill_duration(is->mutable_success(), s.success);
    fill_duration(is->mutable_fail(), s.fail);
    fill_duration(is->mutable_queue(), s.queue);
    fill_duration(is->mutable_compute_input(), s.input);
    fill_duration(is->mutable_compute_infer(), s.infer);
    fill_duration(is->mutable_compute_output(), s.output);
    is->mutable_cache_hit();
    is->mutable_cache_miss();
    for (const auto& [size, b] : s.batches) {
      auto* bs = st->add_batch_stats();
      bs->set_batch_size(uint64_t(size));
      fill_duration(bs->mutable_compute_input(), b.input);
      fill_duration(bs->mutable_compute_infer(), b.infer);
      fill_duration(bs->mutable_compute_output(), b.output);
    }
    return Status::OK;
  }
  Status ModelInfer(ServerContext*, const inference::ModelInferRequest* q, inference::ModelInferResponse* out) override {
    std::promise<Status> result;
    infer(*q, [&](Status s, inference::ModelInferResponse* resp) {
      if (resp) out->Swap(resp);
      result.set_value(std::move(s));
    });
    return result.get_future().get();
  }
  // Requests are submitted as they arrive (so one stream fills batches too); each answer is written
  // when it is ready, in completion order with its id, as Triton's decoupled-free streaming does.
  Status ModelStreamInfer(ServerContext*, grpc::ServerReaderWriter<inference::ModelStreamInferResponse, inference::ModelInferRequest>* stream) override {
    std::mutex mu;
    std::condition_variable cv;
    int64_t pending = 0;
    inference::ModelInferRequest q;
    while (stream->Read(&q)) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ++pending;
      }
      infer(q, [&, id = q.id()](Status s, inference::ModelInferResponse* resp) {
        inference::ModelStreamInferResponse w;
        if (resp) {
          w.mutable_infer_response()->Swap(resp);
        } else {
          w.set_error_message(s.error_message());
          w.mutable_infer_response()->set_id(id);
        }
        std::lock_guard<std::mutex> lock(mu);
        stream->Write(w);
        if (--pending == 0) cv.notify_all();
      });
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return pending == 0; });
    return Status::OK;
  }

  // The extensions not served answer UNIMPLEMENTED with the reason, as the HTTP routes answer 501.
#define MOE_UNSERVED(Rpc, what)                                                                   \
  Status Rpc(ServerContext*, const inference::Rpc##Request*, inference::Rpc##Response*) override { \
    return Status(StatusCode::UNIMPLEMENTED, unserved(what));                                      \
  }
  MOE_UNSERVED(RepositoryIndex, "model_repository")
  MOE_UNSERVED(RepositoryModelLoad, "model_repository")
  MOE_UNSERVED(RepositoryModelUnload, "model_repository")
  MOE_UNSERVED(SystemSharedMemoryStatus, "system_shared_memory")
  MOE_UNSERVED(SystemSharedMemoryRegister, "system_shared_memory")
  MOE_UNSERVED(SystemSharedMemoryUnregister, "system_shared_memory")
  MOE_UNSERVED(CudaSharedMemoryStatus, "cuda_shared_memory")
  MOE_UNSERVED(CudaSharedMemoryRegister, "cuda_shared_memory")
  MOE_UNSERVED(CudaSharedMemoryUnregister, "cuda_shared_memory")
  MOE_UNSERVED(TraceSetting, "trace")
  MOE_UNSERVED(LogSettings, "logging")
#undef MOE_UNSERVED
};

GrpcServer::GrpcServer(const std::string& host, GrpcOptions o, const ModelInfo& model, Batcher& batcher, ModelStats& stats,
                       const std::atomic<bool>& draining)
    : impl_(std::make_unique<Impl>(model, batcher, stats, draining)) {
  if (o.port < 0 || o.port > 65535) throw InputError("--grpc-port: expected 0..65535, got " + std::to_string(o.port));
  grpc::ServerBuilder b;
  b.AddListeningPort(host + ":" + std::to_string(o.port), grpc::InsecureServerCredentials(), &port_);
  b.RegisterService(impl_.get());
  b.SetMaxReceiveMessageSize(int(o.max_message_bytes));
  b.SetMaxSendMessageSize(int(o.max_message_bytes));
  b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, o.max_concurrent_streams);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, o.keepalive_time_ms);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, o.keepalive_timeout_ms);
  impl_->server = b.BuildAndStart();
  if (!impl_->server || port_ == 0)
    throw InputError("cannot listen for gRPC on " + host + ":" + std::to_string(o.port) + " (port in use, or not allowed; try another --grpc-port)");
}

GrpcServer::~GrpcServer() { shutdown(0); }

void GrpcServer::shutdown(double grace_s) {
  std::call_once(impl_->stopped, [&] {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(int64_t(grace_s * 1000)));
    impl_->server->Wait();
  });
}

}  // namespace moe::serve
