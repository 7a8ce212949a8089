#include "serve/http_server.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "base/errors.h"
#include "serve/kserve.h"

namespace moe::serve {

const std::string* HttpRequest::header(const std::string& lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return &v;
  return nullptr;
}

const std::string* HttpRequest::query_value(const std::string& name) const {
  for (const auto& [k, v] : query)
    if (k == name) return &v;
  return nullptr;
}

// Percent-decoding, libmicrohttpd's own (which leaves '+' alone, as before).
static std::string unescape(std::string s) {
  s.resize(MHD_http_unescape(s.data()));
  return s;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(unescape(path.substr(i, j - i)));
    i = j + 1;
  }
  return parts;
}

namespace {
using clock = std::chrono::steady_clock;
}  // namespace

int64_t default_max_inflight_bytes() {
  int64_t limit = int64_t(1) << 30;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) limit = std::min(limit, int64_t(pages) * page / 4);
  rlimit as{};  // under an address-space limit (prlimit --as), a quarter of that
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) limit = std::min(limit, int64_t(as.rlim_cur / 4));
  return std::max(limit, int64_t(16) << 20);
}

// One request's state, alive from its first callback until libmicrohttpd reports it complete. The
// reply may come from a worker thread, so it is shared with the Reply closure.
struct HttpServer::Connection {
  std::mutex mu;
  HttpServer* server = nullptr;
  MHD_Connection* connection = nullptr;
  HttpRequest request;
  bool too_large = false, over_budget = false, handled = false, suspended = false, ready = false, closed = false;
  bool counted = false;  // in the server's pending_ count: taken off by the reply, or by the close if that comes first
  int64_t charged = 0;  // bytes of the shared body budget this request's body holds
  HttpResponse response;

  ~Connection() { release(); }
  void release() {
    if (server && charged) server->body_bytes_ -= charged;
    charged = 0;
  }
  // Room for `add` more body bytes: the buffer grows geometrically with what has arrived (never to
  // what Content-Length announces), each growth charged to the server-wide budget first.
  bool grow(size_t add) {
    std::string& b = request.body;
    const size_t need = b.size() + add;
    if (need <= b.capacity()) return true;
    const size_t cap = std::max({need, std::min(b.capacity() * 2, size_t(server->options_.max_body)), size_t(4096)});
    const int64_t delta = int64_t(cap) - charged;
    if (server->body_bytes_.fetch_add(delta) + delta > server->options_.max_inflight_bytes) {
      server->body_bytes_ -= delta;
      return false;
    }
    charged += delta;
    b.reserve(cap);
    return true;
  }
};

// Every open connection and what it is doing, so that connections which do not deliver a request in
// time are closed (the sweeper thread), and idle ones make room when a worker's table fills. A
// connection is closed by shutdown(2) of its socket: libmicrohttpd then reads EOF and cleans up in its
// own thread. The socket stays valid while it is listed here: the CLOSED notification, which takes
// it off the list under the same mutex, comes before libmicrohttpd closes the descriptor.
struct HttpServer::Tracker {
  enum class Phase { waiting, body, handling };  // for headers; receiving a body; being answered
  struct Entry {
    int fd;
    MHD_Daemon* daemon;
    Phase phase;
    clock::time_point since, deadline;
    bool closing;
  };
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::unordered_map<MHD_Connection*, Entry> open;
  std::unordered_map<MHD_Daemon*, unsigned> per_daemon;
  std::thread sweeper;

  static void close(Entry& e) {
    if (e.closing) return;
    e.closing = true;
    ::shutdown(e.fd, SHUT_RDWR);
  }
  void set(MHD_Connection* c, Phase phase, clock::time_point deadline) {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = open.find(c);
    if (it == open.end()) return;
    if (it->second.phase != phase) it->second.since = clock::now();
    it->second.phase = phase;
    it->second.deadline = deadline;
  }
};

namespace {

struct Holder {
  std::shared_ptr<HttpServer::Connection> c;
};

clock::time_point after(unsigned seconds) { return clock::now() + std::chrono::seconds(seconds); }

MHD_Result collect(void* cls, MHD_ValueKind kind, const char* key, const char* value) {
  auto* r = static_cast<HttpRequest*>(cls);
  std::string k = key ? key : "";
  if (kind == MHD_HEADER_KIND) {
    std::transform(k.begin(), k.end(), k.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
    r->headers.emplace_back(std::move(k), value ? value : "");
  } else {  // kept escaped by keep_escaped: decoded here
    r->query.emplace_back(unescape(std::move(k)), unescape(value ? value : ""));
  }
  return MHD_YES;
}

// libmicrohttpd's unescape hook, as the identity: the path reaches the handler as sent, so that routing
// splits it before decoding (Triton routes on the raw path: %2F inside a segment is not a separator).
size_t keep_escaped(void*, MHD_Connection*, char* s) { return std::strlen(s); }

MHD_Result send(MHD_Connection* connection, const HttpResponse& r, bool close) {
  MHD_Response* resp = MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", r.content_type.c_str());
  for (const auto& [k, v] : r.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
  if (close) MHD_add_response_header(resp, "Connection", "close");
  const MHD_Result ok = MHD_queue_response(connection, unsigned(r.status), resp);
  MHD_destroy_response(resp);
  return ok;
}

HttpResponse error_response(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = error_json(message);
  return r;
}

HttpResponse over_budget_response(const HttpServer& server) {
  HttpResponse r = error_response(503, "the server is receiving too many request bodies at once (over --max-inflight-bytes " +
                                           std::to_string(server.options_.max_inflight_bytes) + "); retry later");
  r.headers.push_back({"Retry-After", "1"});
  return r;
}

// Query strings: libmicrohttpd keeps a record per argument in the connection's 64 KiB memory pool;
// thousands of arguments exhaust it and it drops the connection without a status. So the URI is
// looked at first (the URI-log callback runs before the arguments are parsed): past these limits the
// query string is cut off in libmicrohttpd's own buffer (no record is made) and the request is
// answered 414 naming the limit.
constexpr size_t kMaxQueryArguments = 256, kMaxUriBytes = 8192;
char too_long_uri;  // its address marks a request whose URI was cut off

void* on_uri(void*, const char* uri, MHD_Connection*) noexcept {
  const char* q = uri ? std::strchr(uri, '?') : nullptr;
  if (!q) return nullptr;
  const size_t args = size_t(std::count(q, q + std::strlen(q), '&')) + 1;
  if (args <= kMaxQueryArguments && std::strlen(uri) <= kMaxUriBytes) return nullptr;
  // The buffer is libmicrohttpd's read buffer (writable; only the pointer is const): an empty query.
  const_cast<char*>(q)[1] = '\0';
  return &too_long_uri;
}

MHD_Result handle_request(HttpServer* server, MHD_Connection* connection, const char* url, const char* method,
                          const char* upload_data, size_t* upload_data_size, void** req_cls) {
  if (*req_cls == &too_long_uri) {
    *req_cls = nullptr;
    return send(connection,
                error_response(414, "the URI has over " + std::to_string(kMaxQueryArguments) + " query arguments or over " +
                                        std::to_string(kMaxUriBytes) + " bytes; this server takes at most that"),
                true);
  }
  auto* holder = static_cast<Holder*>(*req_cls);
  HttpServer::Tracker& tracker = *server->tracker_;
  const unsigned stall_s = server->options_.header_timeout_s;
  if (!holder) {  // first call: headers are in, the body (if any) is not
    tracker.set(connection, HttpServer::Tracker::Phase::body, after(stall_s));
    holder = new Holder{std::make_shared<HttpServer::Connection>()};
    *req_cls = holder;
    auto& c = *holder->c;
    c.server = server;
    c.connection = connection;
    c.request.method = std::strcmp(method, "HEAD") == 0 ? "GET" : method;
    c.request.path = url;
    MHD_get_connection_values(connection, MHD_HEADER_KIND, collect, &c.request);
    MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, collect, &c.request);
    if (const std::string* len = c.request.header("content-length")) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(len->c_str(), &end, 10);
      if (n > uint64_t(server->options_.max_body))
        return send(connection,
                    error_response(413, "request body of " + *len + " bytes is over the limit of " +
                                            std::to_string(server->options_.max_body) + " bytes (--max-body)"),
                    true);
      // Nothing is reserved: the body's memory grows with the bytes that actually arrive.
    }
    return MHD_YES;
  }
  auto c = holder->c;
  if (*upload_data_size > 0) {  // a piece of the body
    tracker.set(connection, HttpServer::Tracker::Phase::body, after(stall_s));
    if (!c->too_large && !c->over_budget && c->request.body.size() + *upload_data_size > size_t(server->options_.max_body))
      c->too_large = true;
    if (!c->too_large && !c->over_budget && !c->grow(*upload_data_size)) c->over_budget = true;
    if (c->too_large || c->over_budget) {  // the rest is read and dropped; the answer says why
      std::string().swap(c->request.body);
      c->release();
    } else {
      c->request.body.append(upload_data, *upload_data_size);
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  std::unique_lock<std::mutex> lock(c->mu);
  if (c->ready) return send(connection, c->response, server->draining_);
  if (c->handled) {
    // The call after the one that ran the handler: suspend now. Not in that call, because
    // libmicrohttpd 0.9.75 does not update a suspended connection's poll interest: suspended there,
    // it would still be polled for reading after the resume, and a client that half-closed after its
    // request (nc -N) would have its EOF read before the answer, and the connection dropped. By now
    // the interest says "blocked on the application", so the resumed connection is not read.
    if (!c->suspended) {
      c->suspended = true;
      MHD_suspend_connection(connection);
    }
    return MHD_YES;
  }
  c->handled = true;
  tracker.set(connection, HttpServer::Tracker::Phase::handling, clock::time_point::max());
  if (c->too_large)
    return send(connection, error_response(413, "request body is over the limit of " + std::to_string(server->options_.max_body) +
                                                    " bytes (--max-body)"), true);
  if (c->over_budget) return send(connection, over_budget_response(*server), true);
  ++server->pending_;
  c->counted = true;
  lock.unlock();
  Reply reply = [c, server](HttpResponse r) {
    std::lock_guard<std::mutex> guard(c->mu);
    if (c->closed || c->ready) return;
    c->response = std::move(r);
    c->ready = true;
    if (c->counted) --server->pending_;
    c->counted = false;
    if (c->suspended) {
      c->suspended = false;
      MHD_resume_connection(c->connection);
    }
  };
  try {
    server->handler_(c->request, reply);
  } catch (const std::exception& e) {
    reply(error_response(500, std::string("internal error: ") + e.what()));
  } catch (...) {
    reply(error_response(500, "internal error: an exception that is not a std::exception"));
  }
  lock.lock();
  if (c->ready) return send(connection, c->response, server->draining_);
  return MHD_YES;  // libmicrohttpd calls again at once (no response yet, nothing to wait on): suspended then
}

// The C callbacks: no exception may cross into libmicrohttpd (it would abort the process). What
// cannot be handled is answered 500 when possible, else the connection alone is closed.
MHD_Result on_request(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                      const char* upload_data, size_t* upload_data_size, void** req_cls) noexcept {
  try {
    return handle_request(static_cast<HttpServer*>(cls), connection, url, method, upload_data, upload_data_size, req_cls);
  } catch (const std::exception& e) {
    try {
      *upload_data_size = 0;
      return send(connection, error_response(500, std::string("internal error: ") + e.what()), true);
    } catch (...) {
      return MHD_NO;
    }
  } catch (...) {
    return MHD_NO;
  }
}

void on_completed(void* cls, MHD_Connection* connection, void** req_cls, MHD_RequestTerminationCode) noexcept {
  auto* server = static_cast<HttpServer*>(cls);
  try {  // the connection may stay open for the next request (keep-alive): idle until it arrives
    server->tracker_->set(connection, HttpServer::Tracker::Phase::waiting, after(server->options_.idle_timeout_s));
  } catch (...) {
  }
  if (*req_cls == &too_long_uri) *req_cls = nullptr;  // answered (or dropped) before any state was made
  auto* holder = static_cast<Holder*>(*req_cls);
  if (!holder) return;
  {
    std::lock_guard<std::mutex> guard(holder->c->mu);
    holder->c->closed = true;
    if (holder->c->counted) --server->pending_;  // the client left before its answer: a drain must not wait for it
    holder->c->counted = false;
  }
  delete holder;
  *req_cls = nullptr;
}

void on_connection(void* cls, MHD_Connection* connection, void**, MHD_ConnectionNotificationCode code) noexcept {
  auto* server = static_cast<HttpServer*>(cls);
  HttpServer::Tracker& t = *server->tracker_;
  try {
    std::lock_guard<std::mutex> lock(t.mu);
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
      const auto it = t.open.find(connection);
      if (it == t.open.end()) return;
      --t.per_daemon[it->second.daemon];
      t.open.erase(it);
      return;
    }
    const MHD_ConnectionInfo* fd = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    const MHD_ConnectionInfo* d = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_DAEMON);
    if (!fd || !d) return;
    const auto now = clock::now();
    t.open[connection] = {fd->connect_fd, d->daemon, HttpServer::Tracker::Phase::waiting, now,
                          now + std::chrono::seconds(server->options_.header_timeout_s), false};
    // This event-loop thread's table (libmicrohttpd splits --max-connections between its threads):
    // near full, its longest-idle connections are closed so that new clients still get in.
    const unsigned share = std::max(1u, server->options_.max_connections / unsigned(std::max(1, server->options_.threads)));
    const unsigned room = std::max(1u, share / 8);
    if (++t.per_daemon[d->daemon] + room <= share) return;
    std::vector<std::pair<clock::time_point, HttpServer::Tracker::Entry*>> idle;
    for (auto& [conn, e] : t.open)
      if (conn != connection && e.daemon == d->daemon && e.phase == HttpServer::Tracker::Phase::waiting && !e.closing)
        idle.emplace_back(e.since, &e);
    const size_t n = std::min(idle.size(), size_t(room));
    std::partial_sort(idle.begin(), idle.begin() + std::ptrdiff_t(n), idle.end(),
                      [](const auto& a, const auto& b) { return a.first < b.first; });
    server->evicted_ += int64_t(n);
    for (size_t i = 0; i < n; ++i) HttpServer::Tracker::close(*idle[i].second);
  } catch (...) {  // untracked, the connection is still served; it only lacks the deadlines
  }
}

// Closes connections past their deadline: headers not complete in time, a stalled body, keep-alive
// idle for longer than --idle-timeout-s.
void sweep(HttpServer* server) {
  HttpServer::Tracker& t = *server->tracker_;
  std::unique_lock<std::mutex> lock(t.mu);
  while (!t.stop) {
    t.cv.wait_for(lock, std::chrono::milliseconds(200));
    const auto now = clock::now();
    for (auto& [conn, e] : t.open)
      if (!e.closing && e.phase != HttpServer::Tracker::Phase::handling && now > e.deadline) {
        ++server->timed_out_;  // counted first: the client may see the close before this thread goes on
        HttpServer::Tracker::close(e);
      }
  }
}

// libmicrohttpd's own messages (a refused connection, a client that hung up) come once per event; a
// flood of hostile connections must not become a flood of log lines, so at most 5 a second are
// written and the rest counted.
void on_log(void*, const char* format, va_list ap) noexcept {
  static std::mutex mu;
  static int64_t second = -1, written = 0, dropped = 0;
  char line[512];
  std::vsnprintf(line, sizeof line, format, ap);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(clock::now().time_since_epoch()).count();
  std::lock_guard<std::mutex> lock(mu);
  if (now != second) {
    if (dropped) std::fprintf(stderr, "moe-mnist serve: libmicrohttpd: %lld more messages in the last second, not shown\n", (long long)dropped);
    second = now;
    written = dropped = 0;
  }
  if (++written > 5) {
    ++dropped;
    return;
  }
  const size_t n = std::strlen(line);
  std::fprintf(stderr, "moe-mnist serve: libmicrohttpd: %s%s", line, n && line[n - 1] == '\n' ? "" : "\n");
}

// Whether host:port can be bound now (to tell a port in use from a failure to start threads).
bool can_bind(const sockaddr_in& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

HttpServer::HttpServer(HttpOptions options, Handler handler) : handler_(std::move(handler)), options_(std::move(options)) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(options_.port));
  if (::inet_pton(AF_INET, options_.host.c_str(), &addr.sin_addr) != 1)
    throw InputError("--host: expected an IPv4 address such as 127.0.0.1 or 0.0.0.0, got '" + options_.host + "'");
  if (options_.port < 0 || options_.port > 65535) throw InputError("--port: expected 0..65535, got " + std::to_string(options_.port));
  if (options_.max_inflight_bytes < options_.max_body)
    throw InputError("--max-inflight-bytes: " + std::to_string(options_.max_inflight_bytes) + " is below --max-body (" +
                     std::to_string(options_.max_body) + "): one request's body must fit");
  if (options_.header_timeout_s < 1) throw InputError("--header-timeout-s: expected at least 1 second");
  tracker_ = std::make_unique<Tracker>();
  tracker_->sweeper = std::thread(sweep, this);  // a thread that cannot start throws std::system_error here
  // poll(), not epoll: with Debian's libmicrohttpd 0.9.75 the epoll loop left keep-alive connections
  // unread (256 connections: ~30-90 requests/s, then none at all after 768), while poll() served
  // 22 000 requests/s from 256 to 1000 connections on one thread (README, "serve": how it was chosen).
  const unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  const unsigned threads = unsigned(std::max(1, options_.threads));
  daemon_ = MHD_start_daemon(flags, uint16_t(options_.port), nullptr, nullptr, &on_request, this,
                             MHD_OPTION_EXTERNAL_LOGGER, &on_log, this,  // first, so that every message goes through it
                             MHD_OPTION_SOCK_ADDR, &addr,
                             MHD_OPTION_NOTIFY_COMPLETED, &on_completed, this,
                             MHD_OPTION_NOTIFY_CONNECTION, &on_connection, this,
                             MHD_OPTION_URI_LOG_CALLBACK, &on_uri, this,
                             MHD_OPTION_CONNECTION_LIMIT, options_.max_connections,
                             MHD_OPTION_PER_IP_CONNECTION_LIMIT, options_.max_per_address,
                             MHD_OPTION_CONNECTION_TIMEOUT, options_.idle_timeout_s,
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, size_t(64 * 1024),
                             MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                             MHD_OPTION_UNESCAPE_CALLBACK, &keep_escaped, nullptr,
                             threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads,
                             MHD_OPTION_END);
  if (!daemon_) {
    stop_sweeper();
    if (can_bind(addr))
      throw InputError("cannot start the HTTP server's " + std::to_string(threads) +
                       " event-loop threads (--http-threads; see the message above): lower --http-threads, --workers or "
                       "--threads, or raise the process's limits (ulimit -v / -u)");
    throw InputError("cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                     " (port in use, or not allowed; try another --port)");
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
  port_ = info ? int(info->port) : options_.port;
}

HttpServer::~HttpServer() {
  shutdown(0);
  stop_sweeper();
}

void HttpServer::stop_sweeper() {
  if (!tracker_ || !tracker_->sweeper.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(tracker_->mu);
    tracker_->stop = true;
  }
  tracker_->cv.notify_all();
  tracker_->sweeper.join();
}

void HttpServer::shutdown(double grace_s) {
  if (!daemon_) return;
  draining_ = true;
  const int fd = MHD_quiesce_daemon(daemon_);  // stop accepting; open connections go on
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  while (pending_ > 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Let the last responses leave before the connections are closed.
  if (grace_s > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
  if (fd >= 0) ::close(fd);
}

}  // namespace moe::serve
