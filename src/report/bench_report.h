// `bench` results: one struct, several printers (terminal table, Markdown, JSON, CSV, SVG plot).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>
#include "report/plot.h"

namespace moe {

struct BenchRow {
  std::string backend;     // reference | native | torch | cpu | cuda | tensorrt | memory (the read bound)
  std::string precision;   // fp32 | fp16 | int8 | uint8 (native reading the image bytes)
  std::string variant;     // graph or code path: dense, moe (contrib op), sparse, loop (original style), plain
  std::string mode;        // intra: one engine, intra-op threads; streams: one engine per thread, batches split
  int threads = 1;
  int64_t batch = 0;
  bool available = true;
  std::string reason;      // why not available
  double accuracy = 0;
  double seconds = 0;                     // median duration of one timed run
  double images_per_second = 0;           // median over repeats
  double ips_min = 0, ips_max = 0;        // spread over repeats
  // images/s over native's in the same configuration: measured in alternation with it when bench had
  // native (each timed run right after one of native's), else over the best native row at the same
  // batch and threads (0: no native)
  double vs_native = 0;
  // images/s over the memory read bound (the "memory ... read-bound" row) at the same threads, for
  // the same input type (uint8 rows over the uint8 bound, the others over the float bound); 0: none
  double vs_read_bound = 0;
  // native rows: the read bound timed in alternation with this row (images/s, median), whose ratio
  // vs_read_bound then is; 0 where it was not (the ratio comes from the memory row)
  double read_bound_ips = 0;
  std::string working_set;  // read-bound rows: what was read (bytes, how it compares with the LLC)
  double p50_us = 0, p90_us = 0, p99_us = 0;  // latency of one batch
  double session_ms = 0;   // creating the engine(s): session / engine build / weight loading
  double first_run_ms = 0; // the first classify() call, cold

  std::string name() const;  // e.g. "cpu fp32 dense"
  static BenchRow of(std::string backend, std::string precision, std::string variant, std::string mode, int threads,
                     int64_t batch);
};

struct BenchContext {
  std::string cpu, date, commit, build_type, split;
  int cores = 0;
  int64_t images_per_pass = 0, passes = 0, repeats = 0;
  std::vector<std::pair<std::string, std::string>> versions;
};

struct BenchReport {
  BenchContext context;
  std::vector<BenchRow> rows;
  std::vector<std::string> summary;  // derived ratio lines, computed from rows
  std::vector<std::string> profiles; // bench --profile: one per-node time summary per graph (core/ort_profile.h)
};

// The context of this machine and build (CPU model, cores, date, the commit CMake configured from).
BenchContext machine_context();

std::string to_table(const BenchReport& r);
std::string to_markdown(const BenchReport& r);
std::string to_json(const BenchReport& r);
std::string to_csv(const BenchReport& r);
// Throughput against batch size, one line per backend/precision/variant (best over threads and
// modes), for plot_series (core/plot.h).
SeriesSpec throughput_series(const BenchReport& r);

// Sets vs_native, where not measured in pairs, from the native rows (best over modes at the same batch and threads).
void set_native_ratios(std::vector<BenchRow>& rows);

// Sets vs_read_bound from the memory rows (see BenchRow::vs_read_bound).
void set_read_bound_ratios(std::vector<BenchRow>& rows);

// Ratio lines for the report: best ORT CPU fp32 vs reference and vs torch, int8 vs fp32, batch-1
// latency, and issue #13's targets against `native` (met / missed).
std::vector<std::string> summarize(const std::vector<BenchRow>& rows);

}  // namespace moe
