#include "serve/service.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "base/errors.h"
#include "data/image.h"
#include "model/checked_classifier.h"
#include "model/routing.h"
#include "serve/classification.h"
#include "serve/response_compression.h"

namespace moe::serve {

namespace {

using clock = std::chrono::steady_clock;

HttpResponse json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse error(int status, const std::string& message) { return json_response(status, error_json(message)); }

HttpResponse method_not_allowed(const std::string& allow) {
  HttpResponse r = error(405, "method not allowed here; allowed: " + allow);
  r.headers.push_back({"Allow", allow});
  return r;
}

// The label of a request path in the metrics, from a fixed set so a scanner cannot grow it.
std::string route_label(const std::vector<std::string>& p) {
  if (p.empty()) return "page";
  if (p[0] == "metrics") return "metrics";
  if (p[0] == "v1" && p.size() == 2 && p[1] == "predict") return "predict";
  if (p[0] != "v2") return p.size() == 1 ? "page" : "other";
  if (p.size() >= 2 && p[1] == "health") return "health";
  if (p.size() >= 3 && p[1] == "models") {
    if (p.back() == "infer") return "infer";
    if (p.back() == "ready") return "health";
    return "metadata";
  }
  return "metadata";
}

// Undoes a request's Content-Encoding (gzip or deflate, as Triton's clients send with
// request_compression_algorithm), never producing more than `limit` bytes: a small compressed body
// must not become an unbounded one.
std::string decompress(const std::string& body, const std::string& encoding, int64_t limit) {
  z_stream z{};
  // 15 + 32: zlib or gzip header, detected; raw deflate (some clients' "deflate") is -15.
  if (inflateInit2(&z, encoding == "gzip" ? 15 + 16 : 15 + 32) != Z_OK) throw HttpError(500, "zlib: cannot start inflating");
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  z.avail_in = uInt(body.size());
  char buf[16384];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&z);
      throw HttpError(400, "Content-Encoding " + encoding + ": the body is not valid " + encoding + " data");
    }
    out.append(buf, sizeof buf - z.avail_out);
    if (int64_t(out.size()) > limit) {
      inflateEnd(&z);
      throw HttpError(413, "Content-Encoding " + encoding + ": the body inflates to over the limit of " + std::to_string(limit) +
                               " bytes (--max-body)");
    }
    if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
      inflateEnd(&z);
      throw HttpError(400, "Content-Encoding " + encoding + ": the body ends inside the compressed stream");
    }
  }
  inflateEnd(&z);
  return out;
}

// The model /v1/predict runs: ?model=NAME[&version=V], or the only model served.
std::shared_ptr<ServedModel> predict_model(const ModelRegistry& registry, const std::string* name, const std::string* version) {
  if (name) return registry.find(*name, version ? *version : "");
  if (version) throw HttpError(400, "version: give model= with it");
  std::vector<std::string> names;
  for (const auto& m : registry.ready())
    if (names.empty() || names.back() != m->info().name) names.push_back(m->info().name);
  if (names.empty()) throw HttpError(503, "no model is ready");
  if (names.size() > 1) {
    std::string list;
    for (const std::string& n : names) list += (list.empty() ? "'" : ", '") + n + "'";
    throw HttpError(400, "model: this server serves several models (" + list + "); name one with ?model=NAME");
  }
  return registry.find(names[0]);
}

}  // namespace

Service::Service(ServiceOptions options, std::vector<std::unique_ptr<Classifier>> engines) : options_(std::move(options)) {
  if (!valid_model_name(options_.model.name))
    throw InputError("--name: '" + options_.model.name +
                     "' cannot be a path segment of /v2/models/{name}; use 1-64 letters, digits, '.', '_' or '-' (not '.' or '..')");
  if (parse_version(options_.model.version) < 1)
    throw InputError("model version '" + options_.model.version + "': expected a number >= 1");
  registry_.publish(std::make_shared<ServedModel>(options_.model, options_.batching, std::move(engines), metrics_, options_.input_datatype));
  start_listening();
}

Service::Service(ServiceOptions options, RepositoryOptions repository, EngineFactory open_engine) : options_(std::move(options)) {
  repository_ = std::make_unique<RepositoryManager>(std::move(repository), std::move(open_engine), registry_, metrics_,
                                                    [](const std::string& line) { std::fprintf(stderr, "moe-mnist serve: %s\n", line.c_str()); });
  repository_->start();
  start_listening();
}

void Service::start_listening() {
  http_ = std::make_unique<HttpServer>(options_.http, [this](HttpRequest& req, Reply reply) { handle(req, std::move(reply)); });
  if (options_.grpc.port >= 0) {
#if MOE_MNIST_WITH_GRPC
    grpc_ = std::make_unique<GrpcServer>(options_.http.host, options_.grpc, registry_, repository_.get(), http_->draining_);
#else
    throw InputError("--grpc-port: this build has no gRPC (configure with libgrpc++-dev and -DMOE_MNIST_WITH_GRPC=ON)");
#endif
  }
}

Service::~Service() { shutdown(0); }

ModelInfo Service::model() const {
  const auto models = registry_.ready();
  for (auto m = models.begin(); m != models.end(); ++m)
    if (std::next(m) == models.end() || (*std::next(m))->info().name != (*m)->info().name) return (*m)->info();
  return options_.model;
}

void Service::shutdown(double grace_s) {
  if (stopped_) return;
  stopped_ = true;
  http_->draining_ = true;  // new requests get 503 from here on
  // Run what is queued, so every waiting request gets its answer.
  if (repository_) repository_->stop();
  for (const auto& m : registry_.ready()) m->batcher().stop();
  http_->shutdown(grace_s);
#if MOE_MNIST_WITH_GRPC
  if (grpc_) grpc_->shutdown(grace_s);
#endif
}

void Service::stop_ready() { not_ready_ = true; }

bool Service::ready() const { return !not_ready_ && !http_->draining(); }

void Service::handle(HttpRequest& req, Reply reply) {
  const auto t0 = clock::now();
  const std::vector<std::string> p = split_path(req.path);
  const std::string route = route_label(p);
  Reply measured = [this, route, t0, reply = std::move(reply), method = req.method, path = req.path,
                    encoding = pick_encoding(req.header("accept-encoding"))](HttpResponse r) {
    if (!encoding.empty() && r.body.size() >= kMinCompressBytes) {
      r.body = compress(r.body, encoding);
      r.headers.push_back({"Content-Encoding", encoding});
    }
    const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
    metrics_.request(route, r.status, seconds);
    if (options_.log_requests)
      std::fprintf(stderr, "%s %s %d %zu %.0fus\n", method.c_str(), path.c_str(), r.status, r.body.size(), seconds * 1e6);
    reply(std::move(r));
  };
  const bool get = req.method == "GET", post = req.method == "POST";
  if (http_->draining_ && !(get && route == "health"))
    return measured(error(503, "the server is shutting down"));

  if (p.empty() || (p.size() == 1 && builtin_page().count("/" + p[0]))) {
    if (!get) return measured(method_not_allowed("GET, HEAD"));
    const StaticFile& f = builtin_page().at(p.empty() ? "/" : "/" + p[0]);
    HttpResponse r;
    r.body = f.bytes;
    r.content_type = f.content_type;
    return measured(std::move(r));
  }
  if (route == "metrics" && p.size() == 1) {
    if (!get) return measured(method_not_allowed("GET, HEAD"));
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    Metrics::Gauges g{{}, http_->in_flight(), http_->body_bytes(), http_->timed_out_connections(), http_->evicted_connections()};
    for (const auto& m : registry_.ready())
      g.queues.push_back({m->info().name, m->info().version, m->batcher().queued_requests(), m->batcher().queued_images()});
    r.body = metrics_.render(g);
    return measured(std::move(r));
  }
  if (route == "predict") {
    if (!post) return measured(method_not_allowed("POST"));
    return predict(req, std::move(measured));
  }
  if (p.size() >= 1 && p[0] == "v2") {
    if (p.size() == 1)
      return get ? measured(json_response(200, server_metadata_json(repository_ != nullptr))) : measured(method_not_allowed("GET, HEAD"));
    if (p[1] == "health" && p.size() == 3 && (p[2] == "live" || p[2] == "ready")) {
      if (!get) return measured(method_not_allowed("GET, HEAD"));
      if (p[2] == "live") return measured(json_response(200, R"({"live":true})"));
      return ready() ? measured(json_response(200, R"({"ready":true})")) : measured(json_response(503, R"({"ready":false})"));
    }
    if (p[1] == "repository" && repository_) return repository(p, req, std::move(measured));
    if (p[1] == "models" && p.size() == 3 && p[2] == "stats") {  // every model's statistics (Triton's route)
      if (!get) return measured(method_not_allowed("GET, HEAD"));
      std::string elements;
      for (const auto& m : registry_.ready())
        elements += (elements.empty() ? "" : ",") + m->stats().json(m->info().name, m->info().version);
      return measured(json_response(200, model_stats_document(elements)));
    }
    if (p[1] == "models" && p.size() >= 3) {
      // /v2/models/{name}[/versions/{v}][/ready|/config|/stats|/infer]
      const std::string& name = p[2];
      std::string version;
      size_t i = 3;
      if (p.size() >= 5 && p[3] == "versions") {
        version = p[4];
        i = 5;
      }
      const std::string tail = i < p.size() ? p[i] : "";
      if (i + 1 < p.size() || (p.size() == 4 && p[3] == "versions")) return measured(error(404, "no such route: " + req.path));
      if (tail != "" && tail != "ready" && tail != "config" && tail != "stats" && tail != "infer")
        return measured(error(404, "no such route: " + req.path));
      if (tail == "infer" ? !post : !get) return measured(method_not_allowed(tail == "infer" ? "POST" : "GET, HEAD"));
      std::shared_ptr<ServedModel> m;
      try {
        if (tail == "stats" && version.empty()) {  // every ready version of the model, as Triton answers
          if (!registry_.knows(name)) registry_.find(name);  // throws the 404 naming the models served
          std::string elements;
          for (const auto& v : registry_.ready(name)) elements += (elements.empty() ? "" : ",") + v->stats().json(name, v->info().version);
          return measured(json_response(200, model_stats_document(elements)));
        }
        m = registry_.find(name, version);
      } catch (const HttpError& e) {
        if (tail == "ready" && e.status == 503)
          return measured(json_response(503, nlohmann::json{{"name", name}, {"ready", false}, {"reason", e.what()}}.dump()));
        return measured(error(e.status, e.what()));
      }
      const ModelInfo& info = m->info();
      if (tail.empty()) return measured(json_response(200, model_metadata_json(info, registry_.ready_versions(name))));
      if (tail == "ready")
        return measured(json_response(ready() ? 200 : 503, nlohmann::json{{"name", name}, {"version", info.version}, {"ready", ready()}}.dump()));
      if (tail == "stats") return measured(json_response(200, model_stats_document(m->stats().json(name, info.version))));
      if (tail == "config") return measured(json_response(200, model_config_json(info)));
      return infer(m, req, std::move(measured));
    }
  }
  if (p.size() >= 2 && p[0] == "v2") {  // Triton's extensions that are not served: 501 with the reason, as Triton's UNSUPPORTED
    static const std::map<std::string, std::string> unserved_routes = {
        {"repository", "model_repository"}, {"systemsharedmemory", "system_shared_memory"},
        {"cudasharedmemory", "cuda_shared_memory"}, {"trace", "trace"}, {"logging", "logging"}};
    if (const auto u = unserved_routes.find(p[1]); u != unserved_routes.end()) return measured(error(501, unserved(u->second)));
  }
  measured(error(404, "no such route: " + req.method + " " + req.path));
}

void Service::submit(const std::shared_ptr<ServedModel>& m, InferRequest& req, Reply reply,
                     std::function<HttpResponse(BatchResult&)> respond) {
  auto shared_reply = std::make_shared<Reply>(reply);
  // The callback holds the model version: one being replaced answers what it took before it goes.
  Batcher::Done done = [m, shared_reply, respond = std::move(respond)](BatchResult&& r) {
    try {
      if (r.timed_out) return (*shared_reply)(error(503, r.error));
      if (!r.error.empty()) return (*shared_reply)(error(500, r.error));
      (*shared_reply)(respond(r));
    } catch (const std::exception& e) {  // e.g. out of memory writing the response: the client still gets an answer
      (*shared_reply)(error(500, std::string("internal error: ") + e.what()));
    }
  };
  const auto s = takes_uint8(m->info()) ? m->batcher().submit(std::move(req.bytes), req.n, std::move(done), req.timeout_us)
                                        : m->batcher().submit(std::move(req.images), req.n, std::move(done), req.timeout_us);
  if (s == Batcher::Submitted::queue_full) return reply(error(503, "the batching queue is full; retry later"));
  if (s == Batcher::Submitted::stopping) return reply(error(503, "the server is shutting down"));
}

void Service::infer(const std::shared_ptr<ServedModel>& m, HttpRequest& req, Reply reply) {
  if (const std::string* enc = req.header("content-encoding"); enc && *enc != "identity") {
    if (*enc != "gzip" && *enc != "deflate") {
      HttpResponse r = error(501, "Content-Encoding '" + *enc + "' is not supported (gzip, deflate or identity)");
      r.headers.push_back({"Accept-Encoding", "gzip, deflate"});
      return reply(std::move(r));
    }
    try {
      req.body = decompress(req.body, *enc, options_.http.max_body);
    } catch (const HttpError& e) {
      return reply(error(e.status, e.what()));
    }
  }
  int64_t header_length = -1;
  if (const std::string* h = req.header("inference-header-content-length")) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(h->c_str(), &end, 10);
    if (h->empty() || *end != '\0' || errno || v < 0)
      return reply(error(400, "Inference-Header-Content-Length: expected a byte count, got '" + *h + "'"));
    header_length = v;
  }
  InferRequest r;
  try {
    r = parse_infer_request(req.body, header_length, m->info());
  } catch (const HttpError& e) {
    return reply(error(e.status, e.what()));
  }
  auto parsed = std::make_shared<InferRequest>(std::move(r));
  submit(m, *parsed, std::move(reply), [m, parsed](BatchResult& b) {
    HttpBody body = infer_response(*parsed, m->info(), b.logits.data(), b.gate_probs.data());
    HttpResponse resp;
    resp.body = std::move(body.bytes);
    resp.content_type = body.content_type;
    if (body.header_length >= 0) resp.headers.push_back({"Inference-Header-Content-Length", std::to_string(body.header_length)});
    return resp;
  });
}

// Triton's model repository extension: POST /v2/repository/index, /v2/repository/models/{m}/load|unload.
void Service::repository(const std::vector<std::string>& p, HttpRequest& req, Reply reply) {
  if (req.method != "POST") return reply(method_not_allowed("POST"));
  nlohmann::json body = nlohmann::json::object();
  if (!req.body.empty()) {
    body = nlohmann::json::parse(req.body, nullptr, false);
    if (!body.is_object()) return reply(error(400, "repository request: the body must be a JSON object"));
  }
  if (p.size() == 3 && p[2] == "index") {
    bool ready_only = false;
    if (body.contains("ready")) {
      if (!body["ready"].is_boolean()) return reply(error(400, "ready: expected true or false"));
      ready_only = body["ready"].get<bool>();
    }
    nlohmann::json out = nlohmann::json::array();
    for (const VersionState& v : repository_->index(ready_only)) {
      nlohmann::json e = {{"name", v.name}};
      if (v.version > 0) e["version"] = std::to_string(v.version);
      if (!v.state.empty()) e["state"] = v.state;
      if (!v.state.empty()) e["reason"] = v.reason;
      out.push_back(e);
    }
    return reply(json_response(200, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  }
  if (p.size() == 5 && p[2] == "models" && (p[4] == "load" || p[4] == "unload")) {
    if (const std::string why = repository_->refusal_of_explicit(p[4]); !why.empty()) return reply(error(400, why));
    if (body.contains("parameters")) {
      if (!body["parameters"].is_object()) return reply(error(400, "parameters: expected a JSON object"));
      for (const auto& [key, value] : body["parameters"].items())
        if (const std::string why = RepositoryManager::refusal_of_parameter(p[4], key, value.is_boolean()); !why.empty())
          return reply(error(400, why));
    }
    auto shared = std::make_shared<Reply>(std::move(reply));
    auto done = [shared](int status, const std::string& message) {
      (*shared)(status == 200 ? json_response(200, "") : error(status, message));
    };
    if (p[4] == "load") repository_->load(p[3], done);
    else repository_->unload(p[3], done);
    return;
  }
  reply(error(404, "no such route: " + req.method + " " + req.path));
}

void Service::predict(HttpRequest& req, Reply reply) {
  std::shared_ptr<ServedModel> m;
  try {
    m = predict_model(registry_, req.query_value("model"), req.query_value("version"));
  } catch (const HttpError& e) {
    return reply(error(e.status, e.what()));
  }
  bool invert = false;
  if (const std::string* v = req.query_value("invert")) {
    if (*v == "1" || *v == "true") invert = true;
    else if (!(*v == "0" || *v == "false")) return reply(error(400, "invert: expected 0 or 1, got '" + *v + "'"));
  }
  GreyImage img;
  try {
    img = decode_grey_image(req.body, "request body", options_.max_image_pixels);
  } catch (const InputError& e) {
    return reply(error(400, e.what()));
  }
  DigitInput digit;
  try {  // the same judgement as `predict --image`: no ink is refused, naming the invert option
    digit = prepare_digit(img, invert, "request body", "?invert=1");
  } catch (const InputError& e) {
    return reply(error(422, e.what()));
  }
  const std::vector<float> x = std::move(digit.pixels);
  InferRequest image;
  image.n = 1;
  if (takes_uint8(m->info())) {  // the model takes the pixels as bytes
    image.bytes.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) image.bytes[i] = uint8_t(std::lround(std::clamp(x[i], 0.f, 1.f) * 255.f));
  } else {
    image.images = x;
  }
  submit(m, image, std::move(reply), [m, x, warning = digit.warning](BatchResult& b) {
    // An image is finite, so outputs that fail the project's one output check mean a broken model
    // (the KServe route instead returns whatever the model computes, as Triton does: its input may be NaN).
    const int64_t C = m->info().n_classes, E = m->info().n_experts, k = m->info().top_k;
    try {
      check_outputs(b.logits.data(), b.gate_probs.data(), 1, C, E, "model '" + m->info().name + "' version " + m->info().version);
    } catch (const InputError& e) {
      return error(500, e.what());
    }
    const float mx = *std::max_element(b.logits.begin(), b.logits.end());
    std::vector<double> prob(static_cast<size_t>(C));
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += prob[size_t(c)] = std::exp(double(b.logits[size_t(c)] - mx));
    for (double& v : prob) v /= sum;
    std::vector<int64_t> chosen(static_cast<size_t>(k));
    std::vector<float> weights(static_cast<size_t>(k));
    route(b.gate_probs.data(), E, k, chosen.data(), weights.data());
    nlohmann::json experts = nlohmann::json::array();
    for (int64_t j = 0; j < k; ++j)
      experts.push_back({{"id", chosen[size_t(j)]}, {"gate_probability", b.gate_probs[size_t(chosen[size_t(j)])]}, {"weight", weights[size_t(j)]}});
    std::vector<float> rounded(x.size());
    for (size_t i = 0; i < x.size(); ++i) rounded[i] = std::round(x[i] * 1000.f) / 1000.f;
    const int64_t top = std::max_element(prob.begin(), prob.end()) - prob.begin();
    nlohmann::json j = {{"digit", top},
                        {"probabilities", prob},
                        {"experts", experts},
                        {"gate_probs", b.gate_probs},
                        {"ink", true},  // kept for clients that read it: an image without ink is refused (422)
                        {"model", m->info().name},
                        {"version", m->info().version},
                        {"input", rounded}};
    if (size_t(top) < m->info().labels.size()) j["label"] = m->info().labels[size_t(top)];
    if (!warning.empty()) j["warning"] = warning;
    return json_response(200, j.dump());
  });
}

}  // namespace moe::serve
