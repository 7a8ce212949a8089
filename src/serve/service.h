// The inference service: KServe v2 routes, our /v1/predict, /metrics and the drawing page, wired to
// the dynamic batcher. One object owns the engines, the batcher, the metrics and the HTTP server, so
// a test can start a real server on a free port in a few lines.
#pragma once
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/classifier.h"
#include "serve/batcher.h"
#include "serve/grpc_server.h"
#include "serve/http_server.h"
#include "serve/kserve.h"
#include "serve/metrics.h"
#include "serve/model_registry.h"
#include "serve/model_stats.h"
#include "serve/repository_manager.h"

namespace moe::serve {

struct ServiceOptions {
  ModelInfo model;          // name, version, limits; sizes are filled from the engine
  BatcherOptions batching;
  HttpOptions http;
  GrpcOptions grpc;  // port -1: no gRPC endpoint; it listens on http.host
  bool log_requests = false;  // one access-log line per request on stderr
  int64_t max_image_pixels = 16 << 20;  // /v1/predict: larger images are refused before decoding
  // The model's input datatype: "" = what the engine's graph takes (declared_input_datatype), or
  // "FP32" / "UINT8" for an engine that reads either (native).
  std::string input_datatype;
};

// A static file of the page: path ("/", "/app.js", ...) -> content type and bytes.
struct StaticFile {
  std::string content_type, bytes;
};
// The page built into the binary (web/ in the source tree).
const std::map<std::string, StaticFile>& builtin_page();

class Service {
 public:
  // One model (options.model's name and version): `engines`, one per batcher worker, all of the same
  // model. Starts listening.
  Service(ServiceOptions options, std::vector<std::unique_ptr<Classifier>> engines);
  // A model repository: loads what `repository`'s control mode says (failures are reported in the
  // index and on stderr, the server starts anyway, as Triton with --exit-on-error=false), then listens.
  Service(ServiceOptions options, RepositoryOptions repository, EngineFactory open_engine);
  ~Service();
  int port() const { return http_->port(); }
#if MOE_MNIST_WITH_GRPC
  int grpc_port() const { return grpc_ ? grpc_->port() : -1; }
#else
  int grpc_port() const { return -1; }
#endif
  // The first ready model (by name, then its latest version); options.model when none is.
  ModelInfo model() const;
  const ModelRegistry& models() const { return registry_; }
  const HttpServer& http() const { return *http_; }
  // Graceful stop: refuse new work (503), run what is queued, answer everything, close.
  void shutdown(double grace_s = 10);
  // The first step of a drain: the health and model "ready" routes answer 503 so that a load balancer
  // or Kubernetes stops sending new work, while every route, inference included, goes on answering.
  void stop_ready();
  bool ready() const;

 private:
  void handle(HttpRequest& req, Reply reply);
  void start_listening();
  void infer(const std::shared_ptr<ServedModel>& m, HttpRequest& req, Reply reply);
  void predict(HttpRequest& req, Reply reply);
  void repository(const std::vector<std::string>& p, HttpRequest& req, Reply reply);
  // Queues the request's images on model m (its floats, or its bytes for a UINT8 model: they are
  // moved out); `respond` turns the batch result into the response (on a worker thread). The request
  // holds m until it is answered. r.timeout_us > 0: the request's own queue time limit.
  void submit(const std::shared_ptr<ServedModel>& m, InferRequest& r, Reply reply, std::function<HttpResponse(BatchResult&)> respond);

  ServiceOptions options_;
  Metrics metrics_;
  ModelRegistry registry_;
  std::unique_ptr<RepositoryManager> repository_;  // null: one model, fixed at start
  std::unique_ptr<HttpServer> http_;
#if MOE_MNIST_WITH_GRPC
  std::unique_ptr<GrpcServer> grpc_;  // after the batcher and the HTTP server: destroyed first
#endif
  bool stopped_ = false;
  std::atomic<bool> not_ready_{false};
};

}  // namespace moe::serve
