// The memory read bound `bench` holds every backend against: how fast this machine can merely read
// images that are not in any cache. The images are repeated into a working set several times the
// last-level cache (so each pass reads them from memory, as 60,000 training images x 10 passes do),
// and `threads` threads each XOR a contiguous share of it, `passes` times per timed run.
#pragma once
#include <cstdint>
#include <vector>

#include "report/bench_report.h"

namespace moe {

// The last-level cache of this CPU in bytes (sysfs' highest cache level of cpu0, else sysconf); 0 when unknown.
int64_t last_level_cache_bytes();

// The working set's size: the images' own size, raised to at least 4x the last-level cache (64 MiB
// when that is unknown; at most 1 GiB), in whole images.
int64_t read_bound_bytes(int64_t image_bytes, int64_t n_images);

// The row "memory fp32|uint8 read-bound" for images of `image_bytes` each (784 x 4 or 784).
BenchRow measure_read_bound(int threads, int64_t repeats, int64_t passes, const void* images, int64_t image_bytes,
                            int64_t n_images);

}  // namespace moe
