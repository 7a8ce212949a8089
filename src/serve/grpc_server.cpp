#include "serve/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <deque>
#include <mutex>

#include <future>

#include "base/errors.h"
#include "grpc_service.grpc.pb.h"
#include "serve/grpc_convert.h"
#include "serve/model_registry.h"
#include "serve/repository_manager.h"

namespace moe::serve {

namespace {

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

Status error(const HttpError& e) { return grpc_status(e); }

void fill_duration(inference::StatisticDuration* d, const Duration& s) {
  d->set_count(s.count);
  d->set_ns(s.ns);
}

}  // namespace

// ModelInfer and ModelStreamInfer use gRPC's callback API: a call waits in the batcher without a
// thread, and the batcher's done callback finishes it (measured against the synchronous form in
// docs/service-protocol.md: a blocked thread per call halved the throughput at 64 streams). The
// other RPCs answer at once and stay synchronous.
using AsyncInferService = inference::GRPCInferenceService::WithCallbackMethod_ModelInfer<
    inference::GRPCInferenceService::WithCallbackMethod_ModelStreamInfer<inference::GRPCInferenceService::Service>>;

struct GrpcServer::Impl final : AsyncInferService {
  const ModelRegistry& registry;
  RepositoryManager* repository;  // null: one model, fixed at start
  const std::atomic<bool>& draining;
  std::unique_ptr<grpc::Server> server;
  std::once_flag stopped;

  Impl(const ModelRegistry& r, RepositoryManager* repo, const std::atomic<bool>& d) : registry(r), repository(repo), draining(d) {}

  // The one place a model is found by name and version (empty: the latest ready one); throws
  // HttpError (404 unknown, 503 not ready) with the HTTP routes' messages. The caller holds the
  // version until its answer is written, whatever is swapped meanwhile.
  std::shared_ptr<ServedModel> find(const std::string& name, const std::string& version) { return registry.find(name, version); }

  // Submits one request. On success the response is written into *out before `done` gets OK; `done`
  // runs exactly once, on a batcher worker (or here, when the request is refused). `q` is read only
  // during this call.
  void infer(const inference::ModelInferRequest& q, inference::ModelInferResponse* out, std::function<void(Status)> done) {
    std::shared_ptr<InferRequest> r;
    std::shared_ptr<ServedModel> model;
    try {
      if (draining) throw HttpError(503, "the server is shutting down");
      model = find(q.model_name(), q.model_version());
      r = std::make_shared<InferRequest>(parse_grpc_infer(q, model->info()));
    } catch (const HttpError& e) {
      return done(grpc_status(e));
    } catch (const std::exception& e) {  // e.g. out of memory: the call still ends
      return done(Status(StatusCode::INTERNAL, std::string("internal error: ") + e.what()));
    }
    auto cb = std::make_shared<std::function<void(Status)>>(std::move(done));
    Batcher& b = model->batcher();
    const bool bytes = takes_uint8(model->info());
    Batcher::Done answer = [r, model, out, cb](BatchResult&& res) {
      if (res.timed_out) return (*cb)(Status(StatusCode::UNAVAILABLE, res.error));
      if (!res.error.empty()) return (*cb)(Status(StatusCode::INTERNAL, res.error));
      Status st = Status::OK;
      try {
        grpc_infer_response(*r, model->info(), res, out);
      } catch (const std::exception& e) {  // e.g. out of memory: the call still ends
        st = Status(StatusCode::INTERNAL, std::string("internal error: ") + e.what());
      }
      (*cb)(std::move(st));
    };
    Batcher::Submitted s;
    try {
      s = bytes ? b.submit(std::move(r->bytes), r->n, std::move(answer), r->timeout_us)
                : b.submit(std::move(r->images), r->n, std::move(answer), r->timeout_us);
    } catch (const std::exception& e) {  // not queued, so `answer` will never run
      return (*cb)(Status(StatusCode::INTERNAL, std::string("internal error: ") + e.what()));
    }
    if (s == Batcher::Submitted::queue_full) (*cb)(Status(StatusCode::UNAVAILABLE, "the batching queue is full; retry later"));
    if (s == Batcher::Submitted::stopping) (*cb)(Status(StatusCode::UNAVAILABLE, "the server is shutting down"));
  }

  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* c, const inference::ModelInferRequest* q,
                                       inference::ModelInferResponse* out) override {
    grpc::ServerUnaryReactor* reactor = c->DefaultReactor();
    infer(*q, out, [reactor](Status s) { reactor->Finish(std::move(s)); });
    return reactor;
  }

  // One ModelStreamInfer call. Requests are submitted as they arrive (so one stream fills batches
  // too); each answer is written when it is ready, in completion order with its id, as Triton's
  // non-decoupled streaming does; per-request errors go into error_message. The call finishes once
  // the client has stopped writing and every answer is written (or the client is gone).
  class Stream final : public grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse> {
   public:
    explicit Stream(Impl& impl) : impl_(impl) { StartRead(&in_); }

    void OnReadDone(bool ok) override {
      std::unique_lock<std::mutex> lock(mu_);
      if (!ok) {
        reads_done_ = true;
        return finish_if_idle(lock);
      }
      ++pending_;
      lock.unlock();
      auto w = std::make_shared<inference::ModelStreamInferResponse>();
      impl_.infer(in_, w->mutable_infer_response(), [this, w, id = in_.id()](Status s) {
        if (!s.ok()) {
          w->Clear();
          w->set_error_message(s.error_message());
          w->mutable_infer_response()->set_id(id);
        }
        write(w);
      });
      StartRead(&in_);  // infer has copied what it needs from in_
    }

    void OnWriteDone(bool ok) override {
      std::unique_lock<std::mutex> lock(mu_);
      queue_.pop_front();
      if (!ok) {  // the client is gone: drop the rest, finish once the pending answers came back
        broken_ = true;
        queue_.clear();
      }
      if (queue_.empty()) {
        writing_ = false;
        return finish_if_idle(lock);
      }
      inference::ModelStreamInferResponse* next = queue_.front().get();
      lock.unlock();
      StartWrite(next);
    }

    void OnDone() override { delete this; }

   private:
    // One write at a time; gRPC may run a reaction inside StartWrite/Finish, so they are called
    // without the lock.
    void write(std::shared_ptr<inference::ModelStreamInferResponse> w) {
      std::unique_lock<std::mutex> lock(mu_);
      --pending_;
      if (broken_) return finish_if_idle(lock);
      queue_.push_back(std::move(w));
      if (writing_) return;
      writing_ = true;
      inference::ModelStreamInferResponse* next = queue_.front().get();
      lock.unlock();
      StartWrite(next);
    }

    void finish_if_idle(std::unique_lock<std::mutex>& lock) {
      if (!reads_done_ || pending_ > 0 || writing_ || finished_) return;
      finished_ = true;
      const bool broken = broken_;
      lock.unlock();
      Finish(broken ? Status(StatusCode::CANCELLED, "the client stopped reading") : Status::OK);
    }

    Impl& impl_;
    inference::ModelInferRequest in_;
    std::mutex mu_;
    std::deque<std::shared_ptr<inference::ModelStreamInferResponse>> queue_;  // front: being written
    int64_t pending_ = 0;  // submitted, not yet answered
    bool reads_done_ = false, writing_ = false, broken_ = false, finished_ = false;
  };

  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>* ModelStreamInfer(
      grpc::CallbackServerContext*) override {
    return new Stream(*this);
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
      find(q->name(), q->version());
    } catch (const HttpError& e) {
      if (e.status != 503) return error(e);
      out->set_ready(false);  // known, not ready (loading, unloading, failed): an answer, not an error
      return Status::OK;
    }
    out->set_ready(!draining);
    return Status::OK;
  }
  Status ServerMetadata(ServerContext*, const inference::ServerMetadataRequest*, inference::ServerMetadataResponse* out) override {
    out->set_name("moe-mnist");
    out->set_version(MOE_MNIST_VERSION);
    for (const char* e : {"classification", "model_configuration", "parameters", "statistics"}) out->add_extensions(e);
    if (repository) out->add_extensions("model_repository");
    return Status::OK;
  }
  Status ModelMetadata(ServerContext*, const inference::ModelMetadataRequest* q, inference::ModelMetadataResponse* out) override {
    std::shared_ptr<ServedModel> served;
    try {
      served = find(q->name(), q->version());
    } catch (const HttpError& e) {
      return error(e);
    }
    const ModelInfo& m = served->info();
    out->set_name(m.name);
    for (int64_t v : registry.ready_versions(m.name)) out->add_versions(std::to_string(v));
    out->set_platform("onnxruntime_onnx");
    auto tensor = [](auto* t, const char* name, const std::string& datatype, std::vector<int64_t> shape) {
      t->set_name(name);
      t->set_datatype(datatype);
      for (int64_t d : shape) t->add_shape(d);
    };
    tensor(out->add_inputs(), "input", m.input_datatype, {-1, 1, 28, 28});
    tensor(out->add_outputs(), "logits", "FP32", {-1, m.n_classes});
    tensor(out->add_outputs(), "gate_probs", "FP32", {-1, m.n_experts});
    return Status::OK;
  }
  Status ModelConfig(ServerContext*, const inference::ModelConfigRequest* q, inference::ModelConfigResponse* out) override {
    std::shared_ptr<ServedModel> served;
    try {
      served = find(q->name(), q->version());
    } catch (const HttpError& e) {
      return error(e);
    }
    const ModelInfo& m = served->info();
    auto* c = out->mutable_config();
    c->set_name(m.name);
    c->set_platform("onnxruntime_onnx");
    c->set_backend("onnxruntime");
    c->set_max_batch_size(int32_t(m.max_batch_request));
    auto tensor = [](auto* t, const char* name, inference::DataType type, std::vector<int64_t> dims) {
      t->set_name(name);
      t->set_data_type(type);
      for (int64_t d : dims) t->add_dims(d);
    };
    tensor(c->add_input(), "input", takes_uint8(m) ? inference::TYPE_UINT8 : inference::TYPE_FP32, {1, 28, 28});
    tensor(c->add_output(), "logits", inference::TYPE_FP32, {m.n_classes});
    tensor(c->add_output(), "gate_probs", inference::TYPE_FP32, {m.n_experts});
    c->mutable_dynamic_batching()->add_preferred_batch_size(int32_t(m.preferred_batch));
    c->mutable_dynamic_batching()->set_max_queue_delay_microseconds(uint64_t(m.max_queue_delay_us));
    auto* g = c->add_instance_group();
    g->set_kind(inference::ModelInstanceGroup::KIND_CPU);
    g->set_count(1);
    return Status::OK;
  }
  Status ModelStatistics(ServerContext*, const inference::ModelStatisticsRequest* q, inference::ModelStatisticsResponse* out) override {
    // An empty name asks for every model, an empty version for every ready version, as on Triton.
    std::vector<std::shared_ptr<ServedModel>> models;
    try {
      if (q->name().empty()) models = registry.ready();
      else if (q->version().empty()) models = registry.ready(registry.find(q->name())->info().name);
      else models = {find(q->name(), q->version())};
    } catch (const HttpError& e) {
      return error(e);
    }
    for (const auto& served : models) add_statistics(*served, out);
    return Status::OK;
  }
  static void add_statistics(const ServedModel& served, inference::ModelStatisticsResponse* out) {
    const ModelInfo& m = served.info();
    const ModelStats::Snapshot s = served.stats().snapshot();
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
  }

  // Triton's model repository extension, as on HTTP (POST /v2/repository/...).
  Status RepositoryIndex(ServerContext*, const inference::RepositoryIndexRequest* q, inference::RepositoryIndexResponse* out) override {
    if (!repository) return Status(StatusCode::UNIMPLEMENTED, unserved("model_repository"));
    for (const VersionState& v : repository->index(q->ready())) {
      auto* m = out->add_models();
      m->set_name(v.name);
      if (v.version > 0) m->set_version(std::to_string(v.version));
      m->set_state(v.state);
      m->set_reason(v.reason);
    }
    return Status::OK;
  }
  // Load and unload run on the repository's thread; the call waits for them (as Triton's does).
  Status change(const std::string& action, const std::string& name, const google::protobuf::Map<std::string, inference::ModelRepositoryParameter>& params) {
    if (!repository) return Status(StatusCode::UNIMPLEMENTED, unserved("model_repository"));
    if (const std::string why = repository->refusal_of_explicit(action); !why.empty()) return Status(StatusCode::INVALID_ARGUMENT, why);
    for (const auto& [key, value] : params)
      if (const std::string why = RepositoryManager::refusal_of_parameter(action, key, value.has_bool_param()); !why.empty())
        return Status(StatusCode::INVALID_ARGUMENT, why);
    auto result = std::make_shared<std::promise<Status>>();
    auto done = [result](int status, const std::string& message) {
      result->set_value(status == 200 ? Status::OK : grpc_status(HttpError(status, message)));
    };
    if (action == "load") repository->load(name, done);
    else repository->unload(name, done);
    return result->get_future().get();
  }
  Status RepositoryModelLoad(ServerContext*, const inference::RepositoryModelLoadRequest* q, inference::RepositoryModelLoadResponse*) override {
    return change("load", q->model_name(), q->parameters());
  }
  Status RepositoryModelUnload(ServerContext*, const inference::RepositoryModelUnloadRequest* q,
                               inference::RepositoryModelUnloadResponse*) override {
    return change("unload", q->model_name(), q->parameters());
  }
  // The extensions not served answer UNIMPLEMENTED with the reason, as the HTTP routes answer 501.
#define MOE_UNSERVED(Rpc, what)                                                                   \
  Status Rpc(ServerContext*, const inference::Rpc##Request*, inference::Rpc##Response*) override { \
    return Status(StatusCode::UNIMPLEMENTED, unserved(what));                                      \
  }
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

GrpcServer::GrpcServer(const std::string& host, GrpcOptions o, const ModelRegistry& registry, RepositoryManager* repository,
                       const std::atomic<bool>& draining)
    : impl_(std::make_unique<Impl>(registry, repository, draining)) {
  if (o.port < 0 || o.port > 65535) throw InputError("--grpc-port: expected 0..65535, got " + std::to_string(o.port));
  grpc::ServerBuilder b;
  b.AddListeningPort(host + ":" + std::to_string(o.port), grpc::InsecureServerCredentials(), &port_);
  b.RegisterService(impl_.get());
  b.SetMaxReceiveMessageSize(int(o.max_message_bytes));
  b.SetMaxSendMessageSize(int(o.max_message_bytes));
  b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, o.max_concurrent_streams);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, o.keepalive_time_ms);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, o.keepalive_timeout_ms);
  // gRPC sets SO_REUSEPORT by default, so a second server on a busy port would silently share its
  // traffic with the first (as HTTP does not): refuse the port instead.
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
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
