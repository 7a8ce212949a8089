#include "serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace moe::serve {

namespace {

// Latency buckets from 25 us to 10 s: a single-image request on CPU takes tens of microseconds.
std::vector<double> latency_buckets() {
  return {25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 2.5, 10};
}

std::vector<double> batch_buckets() { return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}; }

void header(std::string& out, const char* name, const char* type, const char* help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  auto it = std::back_inserter(out);
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    fmt::format_to(it, "{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, bounds_[i], cumulative);
  }
  cumulative += counts_.back();
  fmt::format_to(it, "{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, cumulative);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  fmt::format_to(it, "{}_sum{} {}\n{}_count{} {}\n", name, braces, sum_, name, braces, count_);
}

ModelMetrics::ModelMetrics(int64_t n_experts)
    : queue_seconds_(latency_buckets()),
      model_seconds_(latency_buckets()),
      batch_images_(batch_buckets()),
      expert_slots_(size_t(n_experts), 0) {}

void ModelMetrics::queue_wait(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_seconds_.observe(seconds);
}

void ModelMetrics::model_run(double seconds, int64_t images, const std::vector<uint64_t>& expert_slots) {
  std::lock_guard<std::mutex> lock(mu_);
  model_seconds_.observe(seconds);
  batch_images_.observe(double(images));
  images_ += uint64_t(images);
  ++model_runs_;
  for (size_t e = 0; e < expert_slots_.size() && e < expert_slots.size(); ++e) expert_slots_[e] += expert_slots[e];
}

void Metrics::request(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
  request_seconds_.try_emplace(route, latency_buckets()).first->second.observe(seconds);
}

ModelMetrics& Metrics::model(const std::string& name, const std::string& version, int64_t n_experts) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& m = models_[{name, version}];
  if (!m) m = std::make_unique<ModelMetrics>(n_experts);
  return *m;
}

std::string Metrics::render(const Gauges& g) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto it = std::back_inserter(out);
  header(out, "moe_mnist_http_requests_total", "counter", "HTTP requests answered, by route and status code.");
  for (const auto& [key, n] : requests_)
    fmt::format_to(it, "moe_mnist_http_requests_total{{route=\"{}\",code=\"{}\"}} {}\n", key.first, key.second, n);
  header(out, "moe_mnist_http_request_duration_seconds", "histogram",
         "Time from the full request body to the response being queued, by route.");
  for (const auto& [route, h] : request_seconds_) h.render(out, "moe_mnist_http_request_duration_seconds", "route=\"" + route + "\"");
  // Every model version's series, one family at a time (the exposition format wants a family's lines together).
  std::vector<std::pair<std::string, std::unique_lock<std::mutex>>> models;
  for (const auto& [key, m] : models_)
    models.emplace_back("model=\"" + key.first + "\",version=\"" + key.second + "\"", std::unique_lock<std::mutex>(m->mu_));
  auto each = [&](auto&& write) {
    size_t i = 0;
    for (const auto& [key, m] : models_) write(models[i++].first, *m);
  };
  header(out, "moe_mnist_queue_wait_seconds", "histogram", "Time a request's images waited in the batching queue.");
  each([&](const std::string& l, const ModelMetrics& m) { m.queue_seconds_.render(out, "moe_mnist_queue_wait_seconds", l); });
  header(out, "moe_mnist_model_run_seconds", "histogram", "Time of one engine call over a formed batch.");
  each([&](const std::string& l, const ModelMetrics& m) { m.model_seconds_.render(out, "moe_mnist_model_run_seconds", l); });
  header(out, "moe_mnist_batch_images", "histogram", "Images per model run (the dynamic batch size).");
  each([&](const std::string& l, const ModelMetrics& m) { m.batch_images_.render(out, "moe_mnist_batch_images", l); });
  header(out, "moe_mnist_images_total", "counter", "Images classified.");
  each([&](const std::string& l, const ModelMetrics& m) { fmt::format_to(it, "moe_mnist_images_total{{{}}} {}\n", l, m.images_); });
  header(out, "moe_mnist_model_runs_total", "counter", "Model runs (formed batches).");
  each([&](const std::string& l, const ModelMetrics& m) { fmt::format_to(it, "moe_mnist_model_runs_total{{{}}} {}\n", l, m.model_runs_); });
  header(out, "moe_mnist_expert_slots_total", "counter", "Top-k routing slots each expert received.");
  each([&](const std::string& l, const ModelMetrics& m) {
    for (size_t e = 0; e < m.expert_slots_.size(); ++e)
      fmt::format_to(it, "moe_mnist_expert_slots_total{{{},expert=\"{}\"}} {}\n", l, e, m.expert_slots_[e]);
  });
  header(out, "moe_mnist_queue_requests", "gauge", "Requests waiting in the batching queue, per loaded model version.");
  for (const QueueGauge& q : g.queues)
    fmt::format_to(it, "moe_mnist_queue_requests{{model=\"{}\",version=\"{}\"}} {}\n", q.model, q.version, q.queued_requests);
  header(out, "moe_mnist_queue_images", "gauge", "Images waiting in the batching queue, per loaded model version.");
  for (const QueueGauge& q : g.queues)
    fmt::format_to(it, "moe_mnist_queue_images{{model=\"{}\",version=\"{}\"}} {}\n", q.model, q.version, q.queued_images);
  header(out, "moe_mnist_in_flight_requests", "gauge", "Requests received and not yet answered.");
  fmt::format_to(it, "moe_mnist_in_flight_requests {}\n", g.in_flight_requests);
  header(out, "moe_mnist_http_body_bytes", "gauge", "Bytes held by request bodies being received or handled (--max-inflight-bytes budget).");
  fmt::format_to(it, "moe_mnist_http_body_bytes {}\n", g.body_bytes);
  header(out, "moe_mnist_http_connections_closed_total", "counter",
         "Connections the server closed: headers or body not delivered in time (timeout), or idle ones closed to make room (evicted).");
  fmt::format_to(it, "moe_mnist_http_connections_closed_total{{reason=\"timeout\"}} {}\n", g.closed_timeout);
  fmt::format_to(it, "moe_mnist_http_connections_closed_total{{reason=\"evicted\"}} {}\n", g.closed_evicted);
  return out;
}

}  // namespace moe::serve
