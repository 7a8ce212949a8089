// The batcher's rules for what a free worker takes, with engines that report the batches they were
// given: requests that free engines could run side by side are not put in one batch on one engine,
// and never waiting, the newest queued request is left for the next run.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "serve/batcher.h"

namespace moe::serve {
namespace {

// Every engine records the batch sizes it ran, and waits (at most `patience`) inside classify until
// `expected` engines are inside at once: engines that ran side by side all return at once, an engine
// that ran alone returns after the patience.
struct Rendezvous {
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0, inside = 0, expected = 0, most_inside = 0;
  std::chrono::milliseconds patience{2000};

  void enter() {
    std::unique_lock<std::mutex> lock(mu);
    ++arrived;
    most_inside = std::max(most_inside, ++inside);
    cv.notify_all();
    cv.wait_for(lock, patience, [&] { return arrived >= expected; });
  }
  void leave() {
    std::lock_guard<std::mutex> lock(mu);
    --inside;
  }
};

// An engine that answers zeros and uniform gate probabilities and records the batch sizes it ran
// (`batches`, read after the batcher stopped); `ran` says what a run does first.
class FakeEngine : public Classifier {
 public:
  void classify(const float*, int64_t n, float* logits, float* gate_probs) final {
    ran(n);
    std::fill(logits, logits + n * n_classes(), 0.f);
    if (gate_probs) std::fill(gate_probs, gate_probs + n * n_experts(), 1.f / float(n_experts()));
  }
  int64_t n_classes() const override { return 10; }
  int64_t n_experts() const override { return 8; }
  int64_t top_k() const override { return 2; }
  std::string backend() const override { return "fake"; }
  std::string precision() const override { return "fp32"; }
  std::vector<int64_t> batches;

 protected:
  virtual void ran(int64_t n) = 0;  // records n
};

// Meets the other engines at a Rendezvous in every run.
class RecordingEngine : public FakeEngine {
 public:
  explicit RecordingEngine(Rendezvous& r) : r_(r) {}

 private:
  void ran(int64_t n) override {
    r_.enter();
    batches.push_back(n);
    r_.leave();
  }
  Rendezvous& r_;
};

// Submits `requests` single images at once to a batcher of `workers` idle engines; returns each
// engine's batch sizes and how many engines were ever inside at once.
struct Outcome {
  std::vector<std::vector<int64_t>> batches;
  int most_inside = 0;
};
Outcome submit_at_once(int workers, int requests, int expected_inside) {
  Rendezvous r;
  r.expected = expected_inside;
  std::vector<std::unique_ptr<Classifier>> engines;
  std::vector<RecordingEngine*> seen;
  for (int i = 0; i < workers; ++i) {
    engines.push_back(std::make_unique<RecordingEngine>(r));
    seen.push_back(static_cast<RecordingEngine*>(engines.back().get()));
  }
  ModelMetrics metrics(8);
  ModelStats stats;
  BatcherOptions options;  // batching on, never waiting (serve's default)
  Batcher batcher(options, std::move(engines), metrics, stats);
  // The workers start idle (a thread may take a while to start on a loaded machine).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (batcher.idle_workers() < workers && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(batcher.idle_workers(), workers);
  std::atomic<int> answered{0};
  for (int i = 0; i < requests; ++i)
    EXPECT_EQ(batcher.submit(std::vector<float>(784, 0.f), 1, [&](BatchResult&& b) {
      EXPECT_TRUE(b.error.empty()) << b.error;
      ++answered;
    }), Batcher::Submitted::ok);
  batcher.stop();  // runs what is queued, then joins the workers
  EXPECT_EQ(answered.load(), requests);
  Outcome o;
  for (auto* e : seen) o.batches.push_back(e->batches);
  o.most_inside = r.most_inside;
  return o;
}

TEST(Batcher, IdleWorkersShareWhatQueuedInsteadOfOneBatchingIt) {
  // Two requests submitted back to back, two idle engines: without batching they run side by side;
  // batching must not make them one batch of 2 on one engine while the other waits.
  const Outcome o = submit_at_once(2, 2, 2);
  EXPECT_EQ(o.most_inside, 2) << "the two requests did not run side by side";
  ASSERT_EQ(o.batches.size(), 2u);
  EXPECT_EQ(o.batches[0], std::vector<int64_t>{1});
  EXPECT_EQ(o.batches[1], std::vector<int64_t>{1});
}

// An engine whose runs wait until the test opens the gate, so requests queue meanwhile.
class GatedEngine : public FakeEngine {
 public:
  std::mutex mu;  // guards `open` and `batches`
  std::condition_variable cv;
  bool open = false;

 private:
  void ran(int64_t n) override {
    std::unique_lock<std::mutex> lock(mu);
    batches.push_back(n);
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return open; });
  }
};

TEST(Batcher, AFreeWorkerRunsWhatQueuedButTheNewestWhichRunsNext) {
  // Never waiting (the default), a worker that becomes free takes all queued requests but the
  // newest, so it computes that one while the batch's answers go out (docs/service-protocol.md).
  auto owned = std::make_unique<GatedEngine>();
  GatedEngine& engine = *owned;
  std::vector<std::unique_ptr<Classifier>> engines;
  engines.push_back(std::move(owned));
  ModelMetrics metrics(8);
  ModelStats stats;
  Batcher batcher(BatcherOptions{}, std::move(engines), metrics, stats);
  std::atomic<int> answered{0};
  auto submit = [&] {
    EXPECT_EQ(batcher.submit(std::vector<float>(784, 0.f), 1, [&](BatchResult&&) { ++answered; }), Batcher::Submitted::ok);
  };
  submit();
  {
    std::unique_lock<std::mutex> lock(engine.mu);  // the first request is running
    ASSERT_TRUE(engine.cv.wait_for(lock, std::chrono::seconds(10), [&] { return !engine.batches.empty(); }));
  }
  for (int i = 0; i < 3; ++i) submit();  // queue while the worker is busy
  {
    std::lock_guard<std::mutex> lock(engine.mu);
    engine.open = true;
  }
  engine.cv.notify_all();
  batcher.stop();
  EXPECT_EQ(answered.load(), 4);
  EXPECT_EQ(engine.batches, (std::vector<int64_t>{1, 2, 1}));
}

TEST(Batcher, OneWorkerBatchesWhatQueued) {
  // Nothing to share with: whatever queued while the worker woke runs as one batch (or, when the
  // worker woke between the submissions, as more than one); every request is answered once.
  const Outcome o = submit_at_once(1, 6, 1);
  ASSERT_EQ(o.batches.size(), 1u);
  int64_t images = 0;
  for (int64_t n : o.batches[0]) images += n;
  EXPECT_EQ(images, 6);
}

}  // namespace
}  // namespace moe::serve
