// http_probe: the same trivial route (GET /v2/health/live -> {"live":true}) on cpp-httplib's
// thread-pool server, to compare with `moe-mnist serve` (libmicrohttpd, epoll) under wrk at 16, 64
// and 256 keep-alive connections. This is how the service's HTTP library was chosen (README, serve).
//   http_probe PORT [THREADS]   (THREADS: cpp-httplib's pool size, default its own)
#include <httplib.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: http_probe PORT [THREADS]\n");
    return 2;
  }
  httplib::Server server;
  if (argc > 2) {
    const int threads = std::atoi(argv[2]);
    server.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  }
  server.set_tcp_nodelay(true);  // as libmicrohttpd does; without it every response waits for a delayed ACK
  server.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"live":true})", "application/json");
  });
  std::fprintf(stderr, "cpp-httplib %s listening on 127.0.0.1:%s\n", CPPHTTPLIB_VERSION, argv[1]);
  return server.listen("127.0.0.1", std::atoi(argv[1])) ? 0 : 1;
}
