// The KServe v2 / Triton gRPC protocol (inference.GRPCInferenceService, from proto/triton/) on the
// same batcher, statistics and model as the HTTP routes, so one request gives bit-identical outputs
// over either protocol. Errors carry the HTTP side's messages as gRPC status codes (INVALID_ARGUMENT,
// NOT_FOUND, UNAVAILABLE, RESOURCE_EXHAUSTED, INTERNAL); ModelStreamInfer reports per-request errors
// in error_message, as Triton does.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "serve/kserve.h"

namespace moe::serve {

class ModelRegistry;
class RepositoryManager;

struct GrpcOptions {
  int port = -1;                                // -1: no gRPC endpoint; 0: any free port (see GrpcServer::port)
  int64_t max_message_bytes = 16 << 20;         // request and response messages; larger: RESOURCE_EXHAUSTED
  int max_concurrent_streams = 1024;            // HTTP/2 streams per connection
  int keepalive_time_ms = 7'200'000;            // server pings an idle connection after this (gRPC's default)
  int keepalive_timeout_ms = 20'000;            // and closes it when the ping is not answered within this
};

class GrpcServer {
 public:
  // Listens on host:port; throws InputError when it cannot. `draining` turns new calls into UNAVAILABLE.
  // The models are those of `registry` (every model and version it holds); `repository` (null: one
  // model, fixed at start) serves the repository RPCs.
  GrpcServer(const std::string& host, GrpcOptions options, const ModelRegistry& registry, RepositoryManager* repository,
             const std::atomic<bool>& draining);
  ~GrpcServer();
  int port() const { return port_; }
  // Waits at most grace_s for calls in progress, then cancels the rest. Idempotent.
  void shutdown(double grace_s);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace moe::serve
