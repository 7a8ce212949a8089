// Triton's statistics extension (GET /v2/models[/{m}[/versions/{v}]]/stats): per-model counters with
// Triton's fields and semantics (core src/infer_stats.cc): each successful request adds 1 and its
// end-to-end time to `success`, its wait to `queue`, and the whole batch's phase times to
// compute_input / compute_infer / compute_output (so the three compute counts stay equal, which
// perf_analyzer requires); `inference_count` adds the images, `execution_count` the model runs, and
// `batch_stats` counts the runs and phase times per batch size. Thread-safe, one short lock per update.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace moe::serve {

struct Duration {
  uint64_t count = 0, ns = 0;
  // One more event that took `took_ns`.
  void add(uint64_t took_ns) {
    ++count;
    ns += took_ns;
  }
};

// The phase times of one model run, nanoseconds.
struct RunTimes {
  uint64_t input_ns = 0;   // gathering the requests' images into one batch
  uint64_t infer_ns = 0;   // the engine
  uint64_t output_ns = 0;  // splitting the batch's outputs back into the requests' rows
};

class ModelStats {
 public:
  // One model run over `images` images.
  void execution(int64_t images, const RunTimes& t);
  // One request answered by a run with phase times `t`, after `queue_ns` queued and `total_ns` in all.
  void success(uint64_t queue_ns, uint64_t total_ns, const RunTimes& t);
  // One request that failed after `total_ns` (queue timeout, engine error).
  void failure(uint64_t total_ns);

  // One element of "model_stats" as JSON text.
  std::string json(const std::string& name, const std::string& version) const;

  struct BatchStats {
    Duration input, infer, output;
  };
  struct Snapshot {
    uint64_t last_inference_ms = 0, inference_count = 0, execution_count = 0;
    Duration success, fail, queue, input, infer, output;
    std::map<int64_t, BatchStats> batches;  // by batch size
  };
  // A consistent copy of every counter (the gRPC ModelStatistics answer is built from it).
  Snapshot snapshot() const;
  // Back to zero (after a model version's warm-up request, which no client sent).
  void reset() {
    std::lock_guard<std::mutex> lock(mu_);
    s_ = Snapshot{};
  }

 private:
  mutable std::mutex mu_;
  Snapshot s_;
};

// {"model_stats":[...]} from elements made by ModelStats::json.
std::string model_stats_document(const std::string& elements);

}  // namespace moe::serve
