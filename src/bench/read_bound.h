// The memory read bound `bench` holds every backend against: how fast this machine can merely read
// images that are not in any cache. The images are repeated into a working set several times the
// last-level cache (so each pass reads them from memory, as 60,000 training images x 10 passes do),
// and `threads` threads each XOR a contiguous share of it, `passes` times per timed run.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "report/bench_report.h"

namespace moe {

// The last-level cache of this CPU in bytes (sysfs' highest cache level of cpu0, else sysconf); 0 when unknown.
int64_t last_level_cache_bytes();

// The working set's size: the images' own size, raised to at least 4x the last-level cache (64 MiB
// when that is unknown; at most 1 GiB), in whole images.
int64_t read_bound_bytes(int64_t image_bytes, int64_t n_images);

// The working set of images of `image_bytes` each (784 x 4 or 784), repeated to read_bound_bytes,
// and one timed read of it.
class ReadBound {
 public:
  ReadBound(const void* images, int64_t image_bytes, int64_t n_images);
  // Images/s of one run: `threads` threads each XOR their share, `passes` times.
  double run(int threads, int64_t passes);
  // "179 MiB = 60000 images x 2 passes; LLC 32 MiB"
  std::string describe(int64_t passes) const;
  int64_t image_bytes() const { return image_bytes_; }
  int64_t images() const { return bytes_ / image_bytes_; }  // in the working set

 private:
  int64_t image_bytes_, bytes_;
  std::vector<uint64_t> buf_;  // 64-bit words (every image size here is a multiple of 8 bytes)
};

// The row "memory fp32|uint8 read-bound": a warm-up run, then `repeats` timed runs.
BenchRow measure_read_bound(ReadBound& bound, int threads, int64_t repeats, int64_t passes);
BenchRow measure_read_bound(int threads, int64_t repeats, int64_t passes, const void* images, int64_t image_bytes,
                            int64_t n_images);

}  // namespace moe
