#include "native/spin_pool.h"

namespace moe {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

constexpr int kSpinsBeforeYield = 256;  // then let a thread that shares this core run
constexpr int kSpinsBeforeSleep = 1 << 14;

uint64_t epoch_of(uint64_t v) { return v >> 32; }

}  // namespace

SpinPool::SpinPool(int n_threads) {
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { work(); });
}

SpinPool::~SpinPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

// Claims and runs chunks of run `epoch` until none is left or another run has started. fn_ and
// ctx_ are read only after a successful claim: the caller cannot start another run before that
// chunk is done.
void SpinPool::claim_chunks(uint64_t epoch) {
  for (;;) {
    uint64_t v = next_.load(std::memory_order_acquire);
    if (epoch_of(v) != epoch) return;
    const int64_t chunk = int64_t(v & 0xffffffffu);
    if (chunk >= n_chunks_.load(std::memory_order_relaxed)) return;
    if (!next_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) continue;
    fn_(ctx_, chunk);
    done_.fetch_add(1, std::memory_order_release);
  }
}

void SpinPool::run(void (*fn)(void*, int64_t), void* ctx, int64_t n_chunks) {
  if (workers_.empty() || n_chunks <= 1) {
    for (int64_t c = 0; c < n_chunks; ++c) fn(ctx, c);
    return;
  }
  fn_ = fn;
  ctx_ = ctx;
  n_chunks_.store(n_chunks, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  const uint64_t epoch = ++epoch_;
  next_.store(epoch << 32);  // publishes the run (seq_cst, ordered before reading sleepers_)
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_all();
  }
  claim_chunks(epoch);
  for (int spins = 1; done_.load(std::memory_order_acquire) < n_chunks; ++spins)
    if (spins % kSpinsBeforeYield == 0) std::this_thread::yield();
    else cpu_relax();
}

void SpinPool::work() {
  uint64_t seen = 0;
  for (;;) {
    uint64_t epoch = epoch_of(next_.load(std::memory_order_acquire));
    for (int spins = 1; epoch == seen && spins < kSpinsBeforeSleep && !stop_.load(std::memory_order_relaxed); ++spins) {
      if (spins % kSpinsBeforeYield == 0) std::this_thread::yield();
      else cpu_relax();
      epoch = epoch_of(next_.load(std::memory_order_acquire));
    }
    if (epoch == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, [&] { return stop_.load() || epoch_of(next_.load()) != seen; });
      sleepers_.fetch_sub(1);
      epoch = epoch_of(next_.load(std::memory_order_acquire));
    }
    if (stop_.load()) return;
    seen = epoch;
    claim_chunks(epoch);
  }
}

}  // namespace moe
