// Issue #24: bench's memory read bound is measured on a working set several times the last-level
// cache, for float and byte images, and each row's ratio is taken against the bound of its own
// input type at its own thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "bench/read_bound.h"
#include "report/bench_report.h"

namespace moe {
namespace {

TEST(ReadBound, WorkingSetIsAtLeastFourTimesTheLastLevelCache) {
  const int64_t llc = last_level_cache_bytes();
  std::printf("last-level cache: %lld bytes\n", (long long)llc);
  const int64_t floor = std::min(4 * (llc > 0 ? llc : int64_t(64) << 20), int64_t(1) << 30);
  for (int64_t image_bytes : {int64_t(784), int64_t(784 * 4)}) {
    const int64_t small = read_bound_bytes(image_bytes, 100);  // 100 images: far below the cache
    EXPECT_GE(small, floor) << image_bytes;
    EXPECT_EQ(small % image_bytes, 0) << "whole images";
    EXPECT_LT(small, floor + image_bytes);
    const int64_t many = floor / image_bytes + 1000;  // already larger than the floor: read as it is
    EXPECT_EQ(read_bound_bytes(image_bytes, many), many * image_bytes);
  }
}

TEST(ReadBound, MeasuresBothInputTypesAndSaysWhatItRead) {
  std::vector<uint8_t> bytes(784 * 10, 7);
  std::vector<float> floats(784 * 10, 0.5f);
  const BenchRow u = measure_read_bound(1, 1, 1, bytes.data(), 784, 10);
  const BenchRow f = measure_read_bound(2, 1, 1, floats.data(), 784 * 4, 10);
  EXPECT_EQ(u.precision, "uint8");
  EXPECT_EQ(f.precision, "fp32");
  EXPECT_EQ(f.threads, 2);
  for (const BenchRow* r : {&u, &f}) {
    EXPECT_EQ(r->backend, "memory");
    EXPECT_GT(r->images_per_second, 0);
    EXPECT_LE(r->ips_min, r->images_per_second);
    EXPECT_NE(r->working_set.find("MiB"), std::string::npos) << r->working_set;
    EXPECT_NE(r->working_set.find("LLC"), std::string::npos) << r->working_set;
  }
}

TEST(ReadBound, RatiosAreAgainstTheBoundOfTheSameInputAndThreads) {
  auto row = [](const char* backend, const char* precision, int threads, double ips) {
    BenchRow r = BenchRow::of(backend, precision, "x", "intra", threads, 64);
    r.images_per_second = ips;
    return r;
  };
  std::vector<BenchRow> rows = {row("memory", "fp32", 1, 1000), row("memory", "fp32", 2, 2000), row("memory", "uint8", 1, 4000),
                                row("native", "fp32", 1, 500),  row("native", "fp32", 2, 500),  row("native", "uint8", 1, 1000),
                                row("cpu", "int8", 1, 250)};
  set_read_bound_ratios(rows);
  EXPECT_DOUBLE_EQ(rows[3].vs_read_bound, 0.5);
  EXPECT_DOUBLE_EQ(rows[4].vs_read_bound, 0.25);
  EXPECT_DOUBLE_EQ(rows[5].vs_read_bound, 0.25);  // bytes against the byte bound
  EXPECT_DOUBLE_EQ(rows[6].vs_read_bound, 0.25);  // a float-input graph against the float bound
  EXPECT_EQ(rows[0].vs_read_bound, 0);            // the bound itself has none
  // A ratio measured in alternation with the bound (bench does so for native's rows) is kept.
  rows[3].read_bound_ips = 800, rows[3].vs_read_bound = 500.0 / 800;
  set_read_bound_ratios(rows);
  EXPECT_DOUBLE_EQ(rows[3].vs_read_bound, 0.625);
}

// The working set once, read as often as asked: what bench times in alternation with native.
TEST(ReadBound, OneWorkingSetTimedRunByRun) {
  std::vector<float> floats(784 * 10, 0.5f);
  ReadBound bound(floats.data(), 784 * 4, 10);
  EXPECT_EQ(bound.images() * 784 * 4, read_bound_bytes(784 * 4, 10));
  for (int threads : {1, 2}) EXPECT_GT(bound.run(threads, 1), 0) << threads;
  EXPECT_NE(bound.describe(3).find("x 3 passes"), std::string::npos) << bound.describe(3);
}

}  // namespace
}  // namespace moe
