// A small fixed thread pool that splits one batch into chunks with no allocation per call. Threads
// claim chunks from a shared counter, the caller included, so the work finishes even when a worker
// is not scheduled (on a busy 2-core machine the caller then does it all) rather than waiting a
// scheduler tick for it. Workers spin briefly on the counter before sleeping: at batch 64 one call
// takes tens of microseconds, about what waking a sleeping thread costs.
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
  // Runs fn(ctx, chunk) for every chunk in [0, n_chunks) on whichever threads get there, and returns
  // when all are done. One run at a time (the Classifier interface is single-caller).
  void run(void (*fn)(void* ctx, int64_t chunk), void* ctx, int64_t n_chunks);

 private:
  void work();
  void claim_chunks(uint64_t epoch);

  std::vector<std::thread> workers_;
  std::atomic<uint64_t> next_{0};       // (epoch << 32) | next unclaimed chunk of the current run
  std::atomic<int64_t> n_chunks_{0};
  std::atomic<int64_t> done_{0};        // chunks finished in the current run
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  uint64_t epoch_ = 0;                  // the caller's count of runs
  void (*fn_)(void*, int64_t) = nullptr;
  void* ctx_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace moe
