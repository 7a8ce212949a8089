// `moe-mnist serve`: the KServe v2 inference service (see src/serve/).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <new>
#include <system_error>
#include <thread>

#include "cli/backends.h"
#include "cli/options.h"
#include "cli/commands.h"
#include "base/errors.h"
#include "base/user_tasks.h"
#include "serve/service.h"

namespace moe {

namespace {

// ONNX Runtime ends the process (std::terminate on one of its own threads) when it cannot create a
// pool thread, so the threads asked for are checked against the process's limits before any session
// starts: each thread reserves a stack (RLIMIT_STACK, 8 MiB by default) of address space, and half
// of an address-space limit is left for the models, the heap and request bodies.
void check_thread_room(int workers, int intra_threads, int http_threads) {
  const int64_t intra = intra_threads > 0 ? intra_threads : std::max(1, int(std::thread::hardware_concurrency()));
  const int64_t threads = int64_t(workers) * (intra + 1) + http_threads + 2;  // + batcher workers, the sweeper, main
  const std::string asked = "--workers " + std::to_string(workers) + " x --threads " + std::to_string(intra) +
                            " intra-op, --http-threads " + std::to_string(http_threads) + ": " + std::to_string(threads) + " threads";
  rlimit stack{}, as{}, nproc{};
  int64_t stack_bytes = int64_t(8) << 20;
  if (::getrlimit(RLIMIT_STACK, &stack) == 0 && stack.rlim_cur != RLIM_INFINITY) stack_bytes = int64_t(stack.rlim_cur);
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY && threads * stack_bytes > int64_t(as.rlim_cur / 2))
    throw InputError(asked + " of " + std::to_string(stack_bytes >> 20) + " MiB stack each need " +
                     std::to_string((threads * stack_bytes) >> 20) + " MiB of address space, over half the limit of " +
                     std::to_string(as.rlim_cur >> 20) + " MiB (ulimit -v); lower them, or raise the limit");
  // ulimit -u counts all the user's threads (root is exempt); ONNX Runtime hangs when one cannot start.
  const int64_t held = ::getuid() == 0 ? 0 : std::max<int64_t>(0, tasks_of_user(::getuid()));
  if (::getrlimit(RLIMIT_NPROC, &nproc) == 0 && nproc.rlim_cur != RLIM_INFINITY && threads + held > int64_t(nproc.rlim_cur))
    throw InputError(asked + (held ? " plus the " + std::to_string(held) + " this user already runs" : "") +
                     " are over the process limit of " + std::to_string(nproc.rlim_cur) + " (ulimit -u); lower them");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  struct Args {
    std::string model = "runs/mnist/model.fp32.onnx";
    serve::RepositoryOptions repository;
    std::string control = "none";
    serve::ServiceOptions service;
    BackendOptions backend;
    int workers = 1;
    double grace_s = 10;
    double drain_s = 0;
  };
  auto a = std::make_shared<Args>();
  a->backend.threads = 1;
  a->service.http.threads = 2;
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve an exported model (--model), or a Triton model repository of several models and versions swapped live\n"
      "(--model-repository, docs/model-repository.md), over HTTP and gRPC: the KServe v2 protocol as Triton speaks it (JSON, Triton's binary tensor,\n"
      "statistics and classification extensions) at /v2 and on --grpc-port (docs/service-protocol.md),\n"
      "POST /v1/predict for a PNG/JPEG, Prometheus metrics at /metrics and a drawing page at /.\n"
      "Requests are batched dynamically: a free worker runs what queued while it was busy, up to --max-batch images,\n"
      "but the newest request, which runs next, and never waits for more (so batching never holds a request back);\n"
      "idle workers share the queue. With --max-delay-us N it waits up to N us for\n"
      "as many requests as its last batch joined (skipping waits for a while after one that gathered nobody);\n"
      "--fixed-delay waits for a full batch.\n"
      "Defaults were measured on a 2-core machine (docs/service.md):\n"
      "one worker with one intra-op thread (a second worker or intra-op thread was slower), and two HTTP threads\n"
      "(+15-50% requests/s at 64-256 connections over one).\n"
      "SIGINT/SIGTERM stop it gracefully: no new connections, queued requests answered, exit 0.\n"
      "With --drain-s S, SIGTERM first turns /v2/health/ready to 503 and goes on answering everything for S seconds\n"
      "(a load balancer or Kubernetes takes the replica out of rotation meanwhile), then stops as above;\n"
      "a second signal ends the drain early.");
  auto* model = cmd->add_option("--model", a->model, "Exported .onnx file (fp32, int8; fp16 needs --backend cuda/tensorrt)")
                    ->capture_default_str();
  auto* name = cmd->add_option("--name", a->service.model.name, "Model name in the /v2/models/{name} routes")->capture_default_str();
  auto* repo = cmd->add_option("--model-repository", a->repository.dir,
                               "Serve a Triton model repository instead of --model: DIR/<model>/config.pbtxt and\n"
                               "DIR/<model>/<version>/model.onnx, as `export --triton-repo` writes (docs/model-repository.md)");
  repo->excludes(model)->excludes(name);
  cmd->add_option("--model-control-mode", a->control,
                  "none: load every model at start; poll: follow the folder (new versions load, removed ones unload);\n"
                  "explicit: load/unload through POST /v2/repository/models/{m}/load|unload (Triton's modes)")
      ->capture_default_str()->check(CLI::IsMember({"none", "poll", "explicit"}))->needs(repo);
  cmd->add_option("--repository-poll-secs", a->repository.poll_s, "--model-control-mode poll: seconds between two reads of the folder")
      ->capture_default_str()->check(finite_number(0.1, 86400))->needs(repo);
  cmd->add_option("--load-model", a->repository.load_at_start, "--model-control-mode explicit: a model loaded at start ('*': every one); repeatable")
      ->needs(repo);
  cmd->add_option("--max-engines", a->repository.max_engines,
                  "Inference engines of every loaded model version together (a version being replaced counts until it is unloaded)")
      ->capture_default_str()->check(CLI::Range(1, 1024))->needs(repo);
  cmd->add_option("--host", a->service.http.host, "IPv4 address to listen on (0.0.0.0 for every interface)")->capture_default_str();
  cmd->add_option("--port", a->service.http.port, "TCP port (0 = any free port, printed at start)")->capture_default_str();
#if MOE_MNIST_WITH_GRPC
  a->service.grpc.port = 8001;
#else
  a->service.grpc.port = 0;  // this build has no gRPC: off unless asked for (then a clear error)
#endif
  cmd->add_option("--grpc-port", a->service.grpc.port, "gRPC port (KServe v2 / Triton inference.GRPCInferenceService; 0 = off)")
      ->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--grpc-max-message", a->service.grpc.max_message_bytes, "gRPC message size limit in bytes; beyond, RESOURCE_EXHAUSTED")
      ->capture_default_str()->check(CLI::Range(int64_t(4096), int64_t(1) << 30));
  cmd->add_option("--grpc-max-streams", a->service.grpc.max_concurrent_streams, "Concurrent gRPC streams per connection")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--grpc-keepalive-ms", a->service.grpc.keepalive_time_ms, "Ping an idle gRPC connection after this long")
      ->capture_default_str()->check(CLI::Range(1000, 1 << 30));
  cmd->add_option("--grpc-keepalive-timeout-ms", a->service.grpc.keepalive_timeout_ms, "Close it when the ping is not answered within this")
      ->capture_default_str()->check(CLI::Range(100, 1 << 30));
  add_backend_options(cmd, a->backend);
  cmd->add_option("--workers", a->workers, "Inference engines (one batching worker thread each)")->capture_default_str()->check(CLI::Range(1, 64));
  cmd->add_option("--http-threads", a->service.http.threads, "HTTP event-loop threads")->capture_default_str()->check(CLI::Range(1, 64));
  cmd->add_option("--max-batch", a->service.batching.max_batch, "Images per model run when batching (1 = no batching)")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--max-delay-us", a->service.batching.max_delay_us,
                  "How long the oldest queued request may wait for others to join its batch (0 = never wait: a free worker\n"
                  "runs what queued while it was busy, the newest request next; measured the better rule, docs/service-protocol.md)")
      ->capture_default_str()->check(CLI::Range(0, 1'000'000));
  cmd->add_flag("!--fixed-delay", a->service.batching.adaptive_delay,
                "Hold the oldest queued request up to --max-delay-us for a full batch (Triton's max_queue_delay); by default\n"
                "the worker waits only until as many requests are queued as its last batch joined (docs/service-protocol.md)");
  cmd->add_option("--max-queue", a->service.batching.max_queue_images, "Images that may wait in the queue; beyond, 503")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-batch-request", a->service.model.max_batch_request, "Images one request may carry; beyond, 400")
      ->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--max-body", a->service.http.max_body, "Request body limit in bytes; beyond, 413")
      ->capture_default_str()->check(CLI::Range(int64_t(1024), int64_t(1) << 30));
  cmd->add_option("--max-inflight-bytes", a->service.http.max_inflight_bytes,
                  "Memory all request bodies being received may hold together (bodies grow with the bytes that arrive);\n"
                  "a request that would pass it gets 503. Default: a quarter of the memory (or of the address-space limit), at most 1 GiB")
      ->capture_default_str()->check(CLI::Range(int64_t(1024), int64_t(1) << 40));
  cmd->add_option("--max-connections", a->service.http.max_connections,
                  "Open connections; near the limit the longest-idle keep-alive connections are closed to make room")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--header-timeout-s", a->service.http.header_timeout_s,
                  "A connection must send a request's complete headers within this of connecting, and a body must not\n"
                  "stall for longer; slow or silent clients are disconnected")
      ->capture_default_str()->check(CLI::Range(1, 600));
  cmd->add_option("--max-per-address", a->service.http.max_per_address,
                  "Open connections from one client IP address; more are refused (0 = no cap, e.g. behind a load balancer)")
      ->capture_default_str()->check(CLI::Range(0, 100000));
  auto* timeout = cmd->add_option("--request-timeout-ms", "A request still queued after this gets 503 (default 10000)")
                      ->check(CLI::Range(1, 3'600'000));
  cmd->add_option("--idle-timeout-s", a->service.http.idle_timeout_s, "Close keep-alive connections idle this long")
      ->capture_default_str()->check(CLI::Range(1, 3600));
  cmd->add_option("--grace-s", a->grace_s, "On SIGINT/SIGTERM, wait at most this long for in-flight requests")
      ->capture_default_str()
      ->check(finite_number(0, 3600));
  cmd->add_option("--drain-s", a->drain_s,
                  "On SIGTERM, report not-ready but keep serving this long before stopping (set it above the load\n"
                  "balancer's health-check detection time; 0 = stop at once)")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  cmd->add_flag("--log-requests", a->service.log_requests, "One access-log line per request on stderr");
  cmd->callback([a, timeout] {
    if (*timeout) a->service.batching.timeout_us = timeout->as<int64_t>() * 1000;
    if (a->service.grpc.port == 0) a->service.grpc.port = -1;  // 0 = off on the command line
    if (a->backend.cuda_graph && a->backend.backend != Backend::cuda)
      throw InputError("--cuda-graph: only with --backend cuda");
    // Block the stop signals in every thread we start, and wait for them here.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    if (!serve::valid_model_name(a->service.model.name))
      throw InputError("--name: '" + a->service.model.name +
                       "' cannot be a path segment of /v2/models/{name}; use 1-64 letters, digits, '.', '_' or '-' (not '.' or '..')");
    check_thread_room(a->workers, a->backend.threads, a->service.http.threads);
    std::vector<std::unique_ptr<Classifier>> engines;
    std::string what;
    std::unique_ptr<serve::Service> started;
    const bool from_repository = !a->repository.dir.empty();
    try {
      if (from_repository) {
        serve::RepositoryOptions& r = a->repository;
        r.control = a->control == "poll" ? serve::ModelControl::poll
                    : a->control == "explicit" ? serve::ModelControl::explicit_ : serve::ModelControl::none;
        if (!r.load_at_start.empty() && r.control != serve::ModelControl::explicit_)
          throw InputError("--load-model: only with --model-control-mode explicit (the other modes load every model)");
        r.batching = a->service.batching;
        r.instances = a->workers;
        if (r.instances > r.max_engines)
          throw InputError("--workers " + std::to_string(r.instances) + " is over --max-engines " + std::to_string(r.max_engines));
        started = std::make_unique<serve::Service>(a->service, r, [backend = a->backend](const std::string& file) {
          return open_backend(file, backend, OutputCheck::at_load_only);
        });
      } else {
        for (int i = 0; i < a->workers; ++i) engines.push_back(open_backend(a->model, a->backend, OutputCheck::at_load_only));
        what = engines[0]->backend() + " " + engines[0]->precision();
        started = std::make_unique<serve::Service>(a->service, std::move(engines));
      }
    } catch (const std::system_error& e) {  // a thread (or its stack) the system would not give
      throw InputError("cannot start the threads asked for (--workers " + std::to_string(a->workers) + " x --threads " +
                       std::to_string(a->backend.threads) + " intra-op, --http-threads " + std::to_string(a->service.http.threads) +
                       "): " + e.what() + "; lower them, or raise the process's limits (ulimit -v, -u)");
    } catch (const std::bad_alloc&) {
      throw InputError("out of memory starting --workers " + std::to_string(a->workers) + " x --threads " +
                       std::to_string(a->backend.threads) + " (each worker is one model session); lower them, or raise ulimit -v");
    }
    serve::Service& service = *started;
    if (from_repository) {
      int ready = 0, other = 0;
      for (const auto& v : service.models().index()) (v.state == "READY" ? ready : other) += 1;
      std::fprintf(stderr, "moe-mnist serve: model repository %s (--model-control-mode %s): %d version(s) ready, %d not\n",
                   a->repository.dir.c_str(), a->control.c_str(), ready, other);
    } else {
      const serve::ModelInfo m = service.model();
      std::fprintf(stderr, "moe-mnist serve: model '%s' (%s, %lld experts, top-%lld) from %s\n", m.name.c_str(), what.c_str(),
                   (long long)m.n_experts, (long long)m.top_k, a->model.c_str());
    }
    std::fprintf(stderr, "listening on http://%s:%d  (KServe v2 at /v2, page at /, metrics at /metrics; Ctrl-C stops)\n",
                 a->service.http.host.c_str(), service.port());
    if (service.grpc_port() >= 0)
      std::fprintf(stderr, "gRPC (inference.GRPCInferenceService) on %s:%d\n", a->service.http.host.c_str(), service.grpc_port());
    int sig = 0;
    sigwait(&stop, &sig);
    if (sig == SIGTERM && a->drain_s > 0) {
      service.stop_ready();
      std::fprintf(stderr, "moe-mnist serve: SIGTERM received, not ready; serving for %.3g s more while the balancer drains it\n",
                   a->drain_s);
      const auto whole = static_cast<time_t>(a->drain_s);
      const timespec wait{whole, static_cast<long>((a->drain_s - double(whole)) * 1e9)};
      if (sigtimedwait(&stop, nullptr, &wait) > 0) std::fprintf(stderr, "moe-mnist serve: second signal, drain cut short\n");
    }
    std::fprintf(stderr, "moe-mnist serve: %s received, finishing in-flight requests\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    service.shutdown(a->grace_s);
    std::fprintf(stderr, "moe-mnist serve: stopped\n");
  });
}

}  // namespace moe
