// libFuzzer target: the connection layer (issue #20). Each input is sent as raw bytes (request line,
// headers, query string, body: whatever they are) over a loopback socket to a real Service (the
// reference model behind libmicrohttpd and our callbacks), and the client then shuts its sending
// side. The server must either answer with a well-formed status line or close the connection, within
// a bound, and never with 500 (an exception caught at a callback's boundary); ASan/UBSan watch meanwhile.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../random_model.h"
#include "model/reference.h"
#include "serve/service.h"

namespace {

moe::serve::Service& service() {
  static moe::serve::Service* s = [] {  // one server for the whole run; never destroyed (its threads outlive main)
    static const moe::Checkpoint ck = moe::test::random_checkpoint(moe::ModelConfig{}, 5);
    std::vector<std::unique_ptr<moe::Classifier>> engines;
    engines.push_back(std::make_unique<moe::ReferenceClassifier>(ck));
    moe::serve::ServiceOptions o;
    o.http.port = 0;
    o.http.max_body = 64 << 10;
    o.http.max_inflight_bytes = 1 << 20;
    o.http.header_timeout_s = 2;
    o.model.max_batch_request = 4;
    return new moe::serve::Service(o, std::move(engines));
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static unsigned source = 0;
  const int port = service().port();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  // Many source addresses and no TIME_WAIT (linger 0): thousands of connections a second for minutes.
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_addr.s_addr = htonl(0x7f000002u + (source++ % 200));
  ::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from);
  const linger no_linger{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof no_linger);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return 0;
  }
  size_t off = 0;
  while (off < size) {
    const ssize_t n = ::send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server closed early (a refused request): fine
    off += size_t(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string got;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(8);
  for (;;) {
    if (std::chrono::steady_clock::now() > until) __builtin_trap();  // neither answered nor closed: a hang
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    if (got.size() < 65536) got.append(buf, size_t(n));
  }
  ::close(fd);
  if (!got.empty()) {
    // The first answer's status line (later ones, for pipelined requests, cannot be told apart from
    // input echoed in an error message without knowing which were HEAD requests).
    if (got.size() < 12 || got.compare(0, 7, "HTTP/1.") != 0) __builtin_trap();
    const int status = std::atoi(got.c_str() + 9);
    if (status < 100 || status > 599) __builtin_trap();
    if (status == 500) __builtin_trap();  // an exception reached a callback's boundary
  }
  return 0;
}
