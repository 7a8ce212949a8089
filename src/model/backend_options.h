// How to open an inference engine: one struct for every backend, filled by the CLI flags (or a
// server's config) and read by make_ort_classifier / make_torch_classifier through open_backend.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>

#include "base/choices.h"
#include "base/errors.h"

namespace moe {

struct BackendOptions {
  Backend backend = Backend::cpu;
  int threads = 0;                     // intra-op threads; 0 = the engine's default (one per core)
  OptLevel opt_level = OptLevel::all;  // ONNX Runtime graph optimisation
  int device_id = 0;                   // cuda / tensorrt: which GPU
  bool cuda_graph = false;             // cuda: capture a CUDA graph (needs a fixed batch size)
  bool trt_fp16 = false;               // tensorrt: let TensorRT pick fp16 kernels
  std::string trt_cache;               // tensorrt: engine cache folder ("" = no cache)
  int64_t max_batch = 1024;            // tensorrt: optimisation profile covers batch 1..max_batch
  std::string save_optimized;          // ONNX Runtime: write the graph it runs after its optimisations ("" = no)
  std::string profile;                 // ONNX Runtime: write its profiling JSON here when the engine closes ("" = no)
  TorchStyle torch_style = TorchStyle::sparse;
  std::string torch_device = "cpu";    // torch: cpu or cuda[:N] (needs a CUDA LibTorch)
};

// The most threads one engine (or train) may use: 4x this machine's cores, at least 16. More only
// adds start-up time (1 000 ONNX Runtime threads take ~20 s to create) and then contention.
inline int max_threads() { return std::max(16, 4 * int(std::thread::hardware_concurrency())); }

// Throws InputError naming `flag` unless 0 <= threads <= max_threads() (0 = the engine's default).
inline void check_threads(int64_t threads, const std::string& flag) {
  if (threads < 0 || threads > max_threads())
    throw InputError(flag + " " + std::to_string(threads) + ": expected 0 (one per core) to " + std::to_string(max_threads()) +
                     " (4x the " + std::to_string(std::thread::hardware_concurrency()) + " cores here, at least 16)");
}

}  // namespace moe
