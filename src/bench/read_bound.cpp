#include "bench/read_bound.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "report/stats.h"

namespace moe {

namespace {

// "32768K" / "16M" / "512" -> bytes; 0 when unreadable.
int64_t parse_size(const std::string& s) {
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (v <= 0 || end == s.c_str()) return 0;
  if (*end == 'K') return v << 10;
  if (*end == 'M') return v << 20;
  if (*end == 'G') return v << 30;
  return v;
}

volatile uint64_t g_read_sink = 0;

}  // namespace

int64_t last_level_cache_bytes() {
  int best_level = 0;
  int64_t best = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), size_file(dir + "size"), type_file(dir + "type");
    int level = 0;
    std::string size, type;
    if (!(level_file >> level) || !(size_file >> size)) continue;
    type_file >> type;
    if (type == "Instruction") continue;
    const int64_t bytes = parse_size(size);
    if (bytes > 0 && (level > best_level || (level == best_level && bytes > best))) best_level = level, best = bytes;
  }
  if (best > 0) return best;
#ifdef _SC_LEVEL3_CACHE_SIZE
  for (int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long v = sysconf(name);
    if (v > 0) return v;
  }
#endif
  return 0;
}

int64_t read_bound_bytes(int64_t image_bytes, int64_t n_images) {
  const int64_t llc = last_level_cache_bytes();
  // At most 1 GiB beyond the images themselves: a CPU reporting a huge cache must not make bench
  // allocate without bound (4 x 96 MiB, a large per-die L3 today, is well below).
  const int64_t want = std::max(image_bytes * n_images, std::min(4 * (llc > 0 ? llc : int64_t(64) << 20), int64_t(1) << 30));
  return (want + image_bytes - 1) / image_bytes * image_bytes;
}

ReadBound::ReadBound(const void* images, int64_t image_bytes, int64_t n_images)
    : image_bytes_(image_bytes), bytes_(read_bound_bytes(image_bytes, n_images)), buf_(size_t(bytes_ / 8)) {
  const int64_t src_bytes = image_bytes * n_images;
  for (int64_t off = 0; off < bytes_; off += src_bytes)
    std::memcpy(reinterpret_cast<char*>(buf_.data()) + off, images, size_t(std::min(src_bytes, bytes_ - off)));
}

double ReadBound::run(int threads, int64_t passes) {
  const size_t n = buf_.size();
  std::vector<uint64_t> sink(size_t(threads) * 8, 0);  // one cache line per thread
  auto read_share = [&](int t) {
    const uint64_t* p = buf_.data();
    const size_t begin = n * size_t(t) / size_t(threads), end = n * size_t(t + 1) / size_t(threads);
    uint64_t acc = 0;
    for (int64_t pass = 0; pass < passes; ++pass)
      for (size_t i = begin; i < end; ++i) acc ^= p[i];
    sink[size_t(t) * 8] ^= acc;
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(read_share, t);
  read_share(0);
  for (auto& th : pool) th.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (uint64_t s : sink) g_read_sink = g_read_sink ^ s;  // the sums are used, so the reads cannot be optimised away
  return double(bytes_ / image_bytes_) * double(passes) / seconds;
}

std::string ReadBound::describe(int64_t passes) const {
  const int64_t llc = last_level_cache_bytes();
  return std::to_string(bytes_ >> 20) + " MiB = " + std::to_string(bytes_ / image_bytes_) + " images x " + std::to_string(passes) +
         " passes; LLC " + (llc > 0 ? std::to_string(llc >> 20) + " MiB" : "unknown");
}

BenchRow measure_read_bound(ReadBound& bound, int threads, int64_t repeats, int64_t passes) {
  BenchRow row = BenchRow::of("memory", bound.image_bytes() == 784 ? "uint8" : "fp32", "read-bound", "intra", threads, 0);
  bound.run(threads, passes);  // warm-up
  std::vector<double> ips;
  for (int64_t r = 0; r < repeats; ++r) ips.push_back(bound.run(threads, passes));
  row.images_per_second = median(ips);
  row.seconds = double(bound.images()) * double(passes) / row.images_per_second;
  row.ips_min = *std::min_element(ips.begin(), ips.end());
  row.ips_max = *std::max_element(ips.begin(), ips.end());
  row.working_set = bound.describe(passes);
  return row;
}

BenchRow measure_read_bound(int threads, int64_t repeats, int64_t passes, const void* images, int64_t image_bytes,
                            int64_t n_images) {
  ReadBound bound(images, image_bytes, n_images);
  return measure_read_bound(bound, threads, repeats, passes);
}

}  // namespace moe
