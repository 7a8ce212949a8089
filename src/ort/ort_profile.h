// ONNX Runtime's profiling JSON (SessionOptions::EnableProfiling, a Chrome trace) summarised per node
// and per op type: where a graph spends its time. `eval --profile` and `bench --profile` print it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct ProfileEntry {
  std::string name;   // node name, or op type in ProfileSummary::ops
  std::string op;     // op type
  int64_t calls = 0;
  double total_us = 0;
};

struct ProfileSummary {
  int64_t n_runs = 0;       // Session::Run calls recorded ("model_run" events)
  double run_us = 0;        // their total duration
  double kernel_us = 0;     // total of every node's kernel time; run_us - kernel_us is the per-Run overhead
  std::vector<ProfileEntry> nodes;  // by total time, largest first
  std::vector<ProfileEntry> ops;    // the same grouped by op type
};

// Reads the JSON at `path`. InputError naming the file when it is unreadable or not a trace.
ProfileSummary summarize_profile(const std::string& path);

// The summary as text: runs, time per run, overhead outside kernels, and the top `n_top` nodes and
// op types with their share of the kernel time.
std::string to_text(const ProfileSummary& s, size_t n_top = 10);

}  // namespace moe
