#include "serve/batcher.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>

#include "model/routing.h"
#include "serve/kserve.h"

namespace moe::serve {

namespace {
// A reply callback runs on a worker thread: nothing it throws may end the thread (and the process).
void deliver(const std::function<void(BatchResult&&)>& done, BatchResult&& r) noexcept {
  try {
    done(std::move(r));
  } catch (...) {
  }
}
}  // namespace

Batcher::Batcher(BatcherOptions options, std::vector<std::unique_ptr<Classifier>> engines, ModelMetrics& metrics, ModelStats& stats)
    : options_(options),
      engines_(std::move(engines)),
      metrics_(metrics),
      stats_(stats),
      n_classes_(engines_.at(0)->n_classes()),
      n_experts_(engines_.at(0)->n_experts()),
      top_k_(engines_.at(0)->top_k()) {
  try {
    for (auto& e : engines_) workers_.emplace_back([this, engine = e.get()] { work(*engine); });
  } catch (...) {  // a thread that cannot start: stop the ones that did, then report (no joinable thread left behind)
    stop();
    throw;
  }
}

Batcher::~Batcher() { stop(); }

Batcher::Submitted Batcher::submit(std::vector<float> images, int64_t n, Done done, int64_t timeout_us) {
  if (options_.uint8_input) throw std::logic_error("Batcher::submit: floats given to the batcher of a UINT8 model");
  const int64_t limit = timeout_us > 0 ? std::min(timeout_us, options_.timeout_us) : options_.timeout_us;
  return enqueue({std::move(images), {}, n, std::move(done), clock::now(), std::chrono::microseconds(limit)});
}

Batcher::Submitted Batcher::submit(std::vector<uint8_t> images, int64_t n, Done done, int64_t timeout_us) {
  if (!options_.uint8_input) throw std::logic_error("Batcher::submit: bytes given to the batcher of an FP32 model");
  const int64_t limit = timeout_us > 0 ? std::min(timeout_us, options_.timeout_us) : options_.timeout_us;
  return enqueue({{}, std::move(images), n, std::move(done), clock::now(), std::chrono::microseconds(limit)});
}

Batcher::Submitted Batcher::enqueue(Job job) {
  const int64_t n = job.n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Submitted::stopping;
    if (queued_images_ + n > options_.max_queue_images && !queue_.empty()) return Submitted::queue_full;
    queue_.push_back(std::move(job));
    queued_images_ += n;
  }
  cv_.notify_all();
  return Submitted::ok;
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

int64_t Batcher::queued_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int64_t(queue_.size());
}

int64_t Batcher::queued_images() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_images_;
}

int64_t Batcher::idle_workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_workers_;
}

void Batcher::work(Classifier& engine) {
  const auto delay = std::chrono::microseconds(options_.max_delay_us);
  std::vector<Job> jobs;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_workers_;
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    --idle_workers_;
    if (queue_.empty()) return;  // stopping, and everything queued has run
    // Wait for the batch to fill, but never past the oldest request's deadline: for as many requests
    // as AdaptiveWait says (adaptive_wait.h), or with --fixed-delay for a full batch, as Triton's
    // max_queue_delay does.
    const size_t target = options_.adaptive_delay ? adaptive_.target() : SIZE_MAX;
    if (options_.max_delay_us > 0 && target > 1) {
      const auto deadline = queue_.front().enqueued + delay;
      const size_t before = queue_.size();
      const auto waited_from = clock::now();
      while (!stopping_ && !queue_.empty() && queued_images_ < options_.max_batch && queue_.size() < target && clock::now() < deadline)
        cv_.wait_until(lock, deadline);
      if (queue_.empty()) continue;  // another worker took them
      // Judged only when the wait had most of the delay to itself: one that began near the oldest
      // request's deadline (the worker was busy meanwhile) had no time to gather anyone.
      if (queue_.size() > before) adaptive_.waited(true);
      else if (clock::now() - waited_from >= delay / 2) adaptive_.waited(false);
    }
    jobs.clear();
    int64_t n = 0;
    const auto now = clock::now();
    // How many queued requests this run takes (docs/service-protocol.md measures the choice):
    // - workers that are idle now share what queued, so requests that free engines would run side by
    //   side without batching are not run one after the other in one batch while an engine waits;
    // - never waiting (the default), the newest queued request is left for the next run: the worker
    //   computes it while this run's answers are written and their clients send again. Taking all
    //   made every answer leave at once and the clients send at once, so with a few clients the
    //   worker and the HTTP threads took turns instead of overlapping (2 connections: p50 +10%,
    //   0.89-0.96x the requests/s of no batching; leaving one: 1.0x, as it then runs one at a time).
    size_t share = (queue_.size() + size_t(idle_workers_)) / (size_t(idle_workers_) + 1);
    if (options_.max_delay_us == 0 && queue_.size() >= 2) share = std::min(share, queue_.size() - 1);
    while (!queue_.empty()) {
      Job& j = queue_.front();
      if (!jobs.empty() && (n + j.n > options_.max_batch || jobs.size() >= share)) break;
      queued_images_ -= j.n;
      if (now - j.enqueued > j.timeout) {
        BatchResult r;
        r.timed_out = true;
        r.error = "timed out after " + std::to_string(j.timeout.count()) + " us in the queue";
        Done done = std::move(j.done);
        const auto enqueued = j.enqueued;
        queue_.pop_front();
        lock.unlock();
        stats_.failure(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - enqueued).count()));
        deliver(done, std::move(r));
        lock.lock();
        continue;
      }
      n += j.n;
      jobs.push_back(std::move(j));
      queue_.pop_front();
    }
    if (jobs.empty()) continue;
    adaptive_.ran(jobs.size());
    lock.unlock();
    for (const Job& j : jobs) metrics_.queue_wait(std::chrono::duration<double>(now - j.enqueued).count());
    run(engine, jobs, n, now);
    jobs.clear();  // let go of the answered requests' callbacks now: what they hold (a model version being unloaded) waits for that
    lock.lock();
  }
}

namespace {
uint64_t ns_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}
}  // namespace

void Batcher::run(Classifier& engine, std::vector<Job>& jobs, int64_t n_images, clock::time_point started) {
  const int64_t C = n_classes_, E = n_experts_;
  std::vector<float> logits(size_t(n_images * C)), probs(size_t(n_images * E));
  std::string error;
  RunTimes times;
  const auto t0 = clock::now();
  auto t1 = t0;
  try {
    if (jobs.size() == 1) {
      if (options_.uint8_input) engine.classify_u8(jobs[0].bytes.data(), n_images, logits.data(), probs.data());
      else engine.classify(jobs[0].images.data(), n_images, logits.data(), probs.data());
    } else if (options_.uint8_input) {
      std::vector<uint8_t> x(size_t(n_images * kPixels));
      int64_t row = 0;
      for (const Job& j : jobs) {
        std::memcpy(x.data() + row * kPixels, j.bytes.data(), size_t(j.n * kPixels));
        row += j.n;
      }
      t1 = clock::now();
      engine.classify_u8(x.data(), n_images, logits.data(), probs.data());
    } else {
      std::vector<float> x(size_t(n_images * kPixels));
      int64_t row = 0;
      for (const Job& j : jobs) {
        std::memcpy(x.data() + row * kPixels, j.images.data(), size_t(j.n * kPixels) * sizeof(float));
        row += j.n;
      }
      t1 = clock::now();
      engine.classify(x.data(), n_images, logits.data(), probs.data());
    }
  } catch (const std::exception& e) {
    error = std::string("inference failed: ") + e.what();
  }
  const auto t2 = clock::now();
  times.input_ns = ns_between(t0, t1);
  times.infer_ns = ns_between(t1, t2);
  const double seconds = std::chrono::duration<double>(t2 - t0).count();
  if (error.empty()) {
    std::vector<uint64_t> slots(size_t(E), 0);
    std::vector<int64_t> chosen(static_cast<size_t>(top_k_));
    std::vector<float> weights(static_cast<size_t>(top_k_));
    for (int64_t i = 0; i < n_images; ++i) {
      route(probs.data() + i * E, E, top_k_, chosen.data(), weights.data());
      for (int64_t e : chosen) ++slots[size_t(e)];
    }
    metrics_.model_run(seconds, n_images, slots);
  }
  std::vector<BatchResult> results(jobs.size());
  int64_t row = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    BatchResult& r = results[i];
    r.error = error;
    if (error.empty()) {
      r.logits.assign(logits.begin() + row * C, logits.begin() + (row + jobs[i].n) * C);
      r.gate_probs.assign(probs.begin() + row * E, probs.begin() + (row + jobs[i].n) * E);
    }
    row += jobs[i].n;
  }
  times.output_ns = ns_between(t2, clock::now());
  if (error.empty()) stats_.execution(n_images, times);
  // Counted before answering, so a client that reads the statistics after its answer sees itself.
  for (size_t i = 0; i < jobs.size(); ++i) {
    const uint64_t total = ns_between(jobs[i].enqueued, clock::now());
    if (error.empty()) stats_.success(ns_between(jobs[i].enqueued, started), total, times);
    else stats_.failure(total);
    deliver(jobs[i].done, std::move(results[i]));
  }
}

}  // namespace moe::serve
