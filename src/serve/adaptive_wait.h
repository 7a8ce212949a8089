// The batcher's rule for how long a worker holds the oldest queued request for company (the
// adaptive delay; Batcher::work keeps the time limit, --max-delay-us, and does the waiting).
// - Target: as many requests as the last model run joined. The clients that were concurrent then are
//   expected back, so the worker runs as soon as they are queued; a lone client (last run 1) never
//   waits, and a few clients never wait for a batch they cannot fill.
// - Back-off: a wait that ran out its time (at least half the delay) with nobody joining means
//   requests arrive further apart than the delay (a few clients, or JSON bodies that take longer to
//   parse than the delay), where waiting only adds latency. The next 1, then 2, 4 ... 64 waits are
//   skipped (the worker runs at once, as without batching); a wait that gathers someone ends the
//   back-off, and the skipped ones keep probing whether the load has changed. Measured in
//   docs/service-protocol.md.
// Not thread-safe: the batcher calls it under its queue lock.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace moe::serve {

class AdaptiveWait {
 public:
  static constexpr int64_t kMaxSkipped = 64;

  // How many queued requests to wait for before this run; 0 or 1 = run now (consumes a skip).
  size_t target() {
    if (last_run_requests_ <= 1) return 1;
    if (skip_ > 0) {
      --skip_;
      return 1;
    }
    return last_run_requests_;
  }
  // A wait ended: whether anyone joined the queue during it (the batcher reports a wait that gathered
  // nobody only when it lasted at least half the delay).
  void waited(bool someone_joined) {
    if (someone_joined) {
      backoff_ = 0;
    } else {
      backoff_ = std::min<int64_t>(kMaxSkipped, std::max<int64_t>(1, backoff_ * 2));
      skip_ = backoff_;
    }
  }
  // A model run took `requests` requests.
  void ran(size_t requests) { last_run_requests_ = std::max<size_t>(1, requests); }

 private:
  size_t last_run_requests_ = 1;
  int64_t backoff_ = 0;  // the skips that the next wait gathering nobody sets
  int64_t skip_ = 0;     // waits still to skip
};

}  // namespace moe::serve
