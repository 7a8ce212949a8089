// A small HTTP/1.1 server on libmicrohttpd's event loop (poll, a fixed pool of threads), with
// asynchronous replies: a handler may answer later from another thread (the connection is suspended
// meanwhile), so thousands of keep-alive connections wait on the batcher without a thread each.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

struct MHD_Daemon;

namespace moe::serve {

struct HttpRequest {
  std::string method;  // GET, POST, ... (HEAD is passed as GET; the server drops the body)
  std::string path;    // as sent (still percent-encoded), without the query string; see split_path
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::vector<std::pair<std::string, std::string>> query;
  const std::string* header(const std::string& lower_name) const;
  const std::string* query_value(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// Call exactly once, from any thread.
using Reply = std::function<void(HttpResponse)>;
using Handler = std::function<void(HttpRequest&, Reply)>;

// The memory all request bodies being received may hold together, by default: a quarter of the
// machine's memory, at most 1 GiB.
int64_t default_max_inflight_bytes();

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                    // 0 = any free port (see HttpServer::port)
  int threads = 1;                    // event-loop threads
  int64_t max_body = 16 << 20;        // bytes; larger bodies get 413 without being read
  // Bodies grow with the bytes received (never reserved from Content-Length); all bodies in flight
  // share this budget, and a request that would pass it gets 503.
  int64_t max_inflight_bytes = default_max_inflight_bytes();
  unsigned max_connections = 1024;    // further connections wait in the listen backlog
  unsigned idle_timeout_s = 60;       // idle keep-alive connections are closed after this
  // A connection must deliver a request's complete headers within this many seconds of connecting,
  // and a body must not stall for longer: slow or silent clients cannot hold connections.
  unsigned header_timeout_s = 5;
  unsigned max_per_address = 0;       // open connections from one IP address; 0 = no cap (behind a load balancer)
};

class HttpServer {
 public:
  // Starts listening; throws InputError when the address cannot be bound.
  HttpServer(HttpOptions options, Handler handler);
  ~HttpServer();
  int port() const { return port_; }
  int64_t in_flight() const { return pending_; }

  // Graceful stop: no new connections, requests already received are answered (new requests on open
  // connections get 503 via `draining()`), waiting at most `grace_s` for replies, then closes.
  void shutdown(double grace_s);
  bool draining() const { return draining_; }

  // Bytes held by request bodies being received or handled (for tests and /metrics).
  int64_t body_bytes() const { return body_bytes_; }
  // Connections closed by the server for missing --header-timeout-s, or to make room (for tests).
  int64_t timed_out_connections() const { return timed_out_; }
  int64_t evicted_connections() const { return evicted_; }

  // Internal: the libmicrohttpd callbacks.
  struct Connection;
  struct Tracker;
  Handler handler_;
  HttpOptions options_;
  std::atomic<int64_t> pending_{0};
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> body_bytes_{0}, timed_out_{0}, evicted_{0};
  std::unique_ptr<Tracker> tracker_;

 private:
  void stop_sweeper();
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

// "a/b%2Fc/d" -> {"a","b/c","d"}: split on '/', then each segment percent-decoded; empty segments dropped.
std::vector<std::string> split_path(const std::string& path);

}  // namespace moe::serve
