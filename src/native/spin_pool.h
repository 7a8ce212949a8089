// A small fixed thread pool for splitting one batch by rows with no allocation per call. Workers
// spin briefly on an epoch counter before sleeping: at batch 64 one call takes tens of
// microseconds, about what waking a sleeping thread costs.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace moe {

class SpinPool {
 public:
  // n_threads in total, the caller included: n_threads - 1 workers are started.
  explicit SpinPool(int n_threads);
  ~SpinPool();
  SpinPool(const SpinPool&) = delete;
  SpinPool& operator=(const SpinPool&) = delete;

  int n_threads() const { return int(workers_.size()) + 1; }
  // Runs fn(ctx, part) for part in [0, n_threads()) and returns when all are done; part 0 runs on
  // the calling thread. One run at a time (the Classifier interface is single-caller).
  void run(void (*fn)(void* ctx, int part), void* ctx);

 private:
  void work(int part);

  std::vector<std::thread> workers_;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace moe
