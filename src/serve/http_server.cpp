#include "serve/http_server.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <unistd.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

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

// One request's state, alive from its first callback until libmicrohttpd reports it complete. The
// reply may come from a worker thread, so it is shared with the Reply closure.
struct HttpServer::Connection {
  std::mutex mu;
  MHD_Connection* connection = nullptr;
  HttpRequest request;
  bool too_large = false, handled = false, suspended = false, ready = false, closed = false;
  HttpResponse response;
};

namespace {

struct Holder {
  std::shared_ptr<HttpServer::Connection> c;
};

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

MHD_Result on_request(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                      const char* upload_data, size_t* upload_data_size, void** req_cls) {
  auto* server = static_cast<HttpServer*>(cls);
  auto* holder = static_cast<Holder*>(*req_cls);
  if (!holder) {  // first call: headers are in, the body (if any) is not
    holder = new Holder{std::make_shared<HttpServer::Connection>()};
    *req_cls = holder;
    auto& c = *holder->c;
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
      c.request.body.reserve(size_t(n));
    }
    return MHD_YES;
  }
  auto c = holder->c;
  if (*upload_data_size > 0) {  // a piece of the body
    if (!c->too_large && c->request.body.size() + *upload_data_size > size_t(server->options_.max_body)) {
      c->too_large = true;
      std::string().swap(c->request.body);
    }
    if (!c->too_large) c->request.body.append(upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  std::unique_lock<std::mutex> lock(c->mu);
  if (c->ready) return send(connection, c->response, server->draining_);
  if (c->handled) return MHD_YES;  // resumed spuriously; the reply is still coming
  c->handled = true;
  if (c->too_large)
    return send(connection, error_response(413, "request body is over the limit of " + std::to_string(server->options_.max_body) +
                                                    " bytes (--max-body)"), true);
  ++server->pending_;
  lock.unlock();
  Reply reply = [c, server](HttpResponse r) {
    std::lock_guard<std::mutex> guard(c->mu);
    if (c->closed || c->ready) return;
    c->response = std::move(r);
    c->ready = true;
    --server->pending_;
    if (c->suspended) {
      c->suspended = false;
      MHD_resume_connection(c->connection);
    }
  };
  try {
    server->handler_(c->request, reply);
  } catch (const std::exception& e) {
    reply(error_response(500, std::string("internal error: ") + e.what()));
  }
  lock.lock();
  if (c->ready) return send(connection, c->response, server->draining_);
  c->suspended = true;
  MHD_suspend_connection(connection);
  return MHD_YES;
}

void on_completed(void*, MHD_Connection*, void** req_cls, MHD_RequestTerminationCode) {
  auto* holder = static_cast<Holder*>(*req_cls);
  if (!holder) return;
  {
    std::lock_guard<std::mutex> guard(holder->c->mu);
    holder->c->closed = true;
  }
  delete holder;
  *req_cls = nullptr;
}

}  // namespace

HttpServer::HttpServer(HttpOptions options, Handler handler) : handler_(std::move(handler)), options_(std::move(options)) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(options_.port));
  if (::inet_pton(AF_INET, options_.host.c_str(), &addr.sin_addr) != 1)
    throw InputError("--host: expected an IPv4 address such as 127.0.0.1 or 0.0.0.0, got '" + options_.host + "'");
  if (options_.port < 0 || options_.port > 65535) throw InputError("--port: expected 0..65535, got " + std::to_string(options_.port));
  // poll(), not epoll: with Debian's libmicrohttpd 0.9.75 the epoll loop left keep-alive connections
  // unread (256 connections: ~30-90 requests/s, then none at all after 768), while poll() served
  // 22 000 requests/s from 256 to 1000 connections on one thread (README, "serve": how it was chosen).
  const unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  const unsigned threads = unsigned(std::max(1, options_.threads));
  daemon_ = MHD_start_daemon(flags, uint16_t(options_.port), nullptr, nullptr, &on_request, this,
                             MHD_OPTION_SOCK_ADDR, &addr,
                             MHD_OPTION_NOTIFY_COMPLETED, &on_completed, this,
                             MHD_OPTION_CONNECTION_LIMIT, options_.max_connections,
                             MHD_OPTION_CONNECTION_TIMEOUT, options_.idle_timeout_s,
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, size_t(64 * 1024),
                             MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                             MHD_OPTION_UNESCAPE_CALLBACK, &keep_escaped, nullptr,
                             threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads,
                             MHD_OPTION_END);
  if (!daemon_)
    throw InputError("cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                     " (port in use, or not allowed; try another --port)");
  const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
  port_ = info ? int(info->port) : options_.port;
}

HttpServer::~HttpServer() { shutdown(0); }

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
