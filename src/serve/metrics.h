// The service's Prometheus metrics: counters, gauges and histograms in base units (seconds), written
// in the text exposition format for GET /metrics. Thread-safe; each update takes one short lock.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace moe::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);  // caller holds the owner's lock
  // `name`_bucket{le=...}, `name`_sum, `name`_count, each with `labels` ("" or `a="b"`) prepended.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; +Inf last
  double sum_ = 0;
  uint64_t count_ = 0;
};

// One model version's series: queue wait, model runs, batch sizes and expert routing. Its batcher
// updates it; Metrics renders it with model and version labels.
class ModelMetrics {
 public:
  explicit ModelMetrics(int64_t n_experts);
  // One request's images left the queue after `seconds`.
  void queue_wait(double seconds);
  // One model run over `images` images took `seconds`; `expert_slots` [E] counts the top-k slots each
  // expert received in it.
  void model_run(double seconds, int64_t images, const std::vector<uint64_t>& expert_slots);

 private:
  friend class Metrics;
  mutable std::mutex mu_;
  Histogram queue_seconds_, model_seconds_, batch_images_;
  uint64_t images_ = 0, model_runs_ = 0;
  std::vector<uint64_t> expert_slots_;
};

class Metrics {
 public:
  // One finished HTTP request: `route` is a fixed label (infer, predict, metadata, ...).
  void request(const std::string& route, int status, double seconds);

  // The series of one model version, made on first use and kept for the process's life (Prometheus
  // counters must not go back when a version is unloaded and loaded again). The reference stays valid.
  ModelMetrics& model(const std::string& name, const std::string& version, int64_t n_experts);

  // Gauges are read at scrape time from the live objects.
  struct QueueGauge {
    std::string model, version;
    int64_t queued_requests = 0, queued_images = 0;
  };
  struct Gauges {
    std::vector<QueueGauge> queues;  // one per loaded model version
    int64_t in_flight_requests = 0;
    int64_t body_bytes = 0;                      // request bodies held (the --max-inflight-bytes budget in use)
    int64_t closed_timeout = 0, closed_evicted = 0;  // connections the server closed: deadline missed, room made
  };
  std::string render(const Gauges& g) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (route, status) -> count
  std::map<std::string, Histogram> request_seconds_;         // by route
  std::map<std::pair<std::string, std::string>, std::unique_ptr<ModelMetrics>> models_;  // (name, version)
};

}  // namespace moe::serve
