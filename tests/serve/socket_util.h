// Raw loopback sockets for the service tests that act as hostile or broken clients (what an HTTP client
// library will not do: announce a body and stop, hold a connection idle, half-close), and the RSS of
// a process, shared by test_service_limits.cpp and test_serve_cli.cpp.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <string>

namespace moe::test {

// A TCP connection to 127.0.0.1:port from `source` (any 127.x.y.z: loopback, so a test can be "another
// client address"); -1 when refused. `nonblocking`: the connect may still be in progress.
// `io_timeout_s` > 0: blocking sends and receives give up after that long (SO_SNDTIMEO, SO_RCVTIMEO).
inline int connect_from(int port, const char* source = nullptr, bool nonblocking = false, int io_timeout_s = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  if (source) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &a.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && !(nonblocking && errno == EINPROGRESS)) {
    ::close(fd);
    return -1;
  }
  if (io_timeout_s > 0) {
    timeval tv{io_timeout_s, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  return fd;
}

// Sends all of `s`; false when the peer closed or a send failed (never SIGPIPE).
inline bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += size_t(n);
  }
  return true;
}

// The resident set of process `pid` (0: this one) in KiB, -1 when it cannot be read.
inline int64_t rss_kib(pid_t pid = 0) {
  std::ifstream f(pid ? "/proc/" + std::to_string(pid) + "/status" : std::string("/proc/self/status"));
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

}  // namespace moe::test
