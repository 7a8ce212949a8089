// Dynamic batching: requests join one bounded queue; each worker owns one inference engine and runs
// the requests that arrive within `max_delay_us` of the oldest waiting one as a single batch of up to
// `max_batch` images, then hands every request its own rows back. Idle workers share the queue, so
// batching never puts in one batch what free engines would run side by side.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/classifier.h"
#include "serve/adaptive_wait.h"
#include "serve/metrics.h"
#include "serve/model_stats.h"

namespace moe::serve {

struct BatcherOptions {
  int64_t max_batch = 64;            // images per model run (a larger request runs alone, whole)
  // How long the oldest request may wait for others. 0 (the default) = never wait: a worker that
  // becomes free runs what queued meanwhile (up to max_batch) as one batch, all but the newest
  // request, which runs next, so a request that finds the worker idle runs at once, as without
  // batching, and batches form only from requests that would have waited anyway (measured against
  // waiting rules and taking all in docs/service-protocol.md). max_batch 1 = no batching at all.
  int64_t max_delay_us = 0;
  // true: wait (at most max_delay_us) only for as many requests as the last batch joined, and skip
  // waits for a while after one that gathered nobody (AdaptiveWait, adaptive_wait.h). false: wait
  // for a full batch or the delay (what Triton's max_queue_delay does).
  bool adaptive_delay = true;
  int64_t max_queue_images = 16384;  // submissions beyond this are refused (the caller answers 503)
  int64_t timeout_us = 10'000'000;   // a request still queued after this is answered with an error
  // The model takes bytes (input datatype UINT8): requests are submitted as bytes and run with
  // Classifier::classify_u8, with no float copy. false: floats and Classifier::classify.
  bool uint8_input = false;
};

struct BatchResult {
  std::vector<float> logits;      // [n, n_classes]
  std::vector<float> gate_probs;  // [n, n_experts]
  std::string error;              // not empty: the request failed (timeout, engine error)
  bool timed_out = false;
};

class Batcher {
 public:
  using Done = std::function<void(BatchResult&&)>;  // called exactly once, from a worker thread
  enum class Submitted { ok, queue_full, stopping };

  // One worker thread per engine; engines must all serve the same model.
  // `stats` receives Triton's per-model statistics of every run and request.
  Batcher(BatcherOptions options, std::vector<std::unique_ptr<Classifier>> engines, ModelMetrics& metrics, ModelStats& stats);
  ~Batcher();

  // images: [n, 784]. Refuses (without calling `done`) when the queue is full or the batcher stops.
  // timeout_us > 0: this request's own queue time limit (the request parameter "timeout", as Triton
  // honours it with dynamic batching), never longer than the server's.
  Submitted submit(std::vector<float> images, int64_t n, Done done, int64_t timeout_us = 0);
  // The same for a batcher of a UINT8 model (BatcherOptions::uint8_input): images as bytes [n, 784]
  // 0..255. Submitting floats to a UINT8 batcher, or bytes to an FP32 one, throws std::logic_error.
  Submitted submit(std::vector<uint8_t> images, int64_t n, Done done, int64_t timeout_us = 0);

  // Runs what is queued, then stops the workers. Idempotent.
  void stop();

  int64_t queued_requests() const;
  int64_t queued_images() const;
  int64_t idle_workers() const;  // workers waiting for work

 private:
  using clock = std::chrono::steady_clock;
  struct Job {
    std::vector<float> images;   // FP32 model
    std::vector<uint8_t> bytes;  // UINT8 model
    int64_t n;
    Done done;
    clock::time_point enqueued;
    std::chrono::microseconds timeout;
  };
  Submitted enqueue(Job job);
  void work(Classifier& engine);
  void run(Classifier& engine, std::vector<Job>& jobs, int64_t n_images, clock::time_point started);

  const BatcherOptions options_;
  std::vector<std::unique_ptr<Classifier>> engines_;
  ModelMetrics& metrics_;
  ModelStats& stats_;
  const int64_t n_classes_, n_experts_, top_k_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  int64_t queued_images_ = 0;
  int64_t idle_workers_ = 0;  // workers waiting for work (the share of the queue a worker takes)
  AdaptiveWait adaptive_;  // how many requests to wait for (with adaptive_delay)
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace moe::serve
