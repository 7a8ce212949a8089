// How to open an inference engine: one struct for every backend, filled by the CLI flags (or a
// server's config) and read by make_ort_classifier / make_torch_classifier through open_backend.
#pragma once
#include <cstdint>
#include <string>

#include "core/choices.h"

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
  TorchStyle torch_style = TorchStyle::sparse;
  std::string torch_device = "cpu";    // torch: cpu or cuda[:N] (needs a CUDA LibTorch)
};

}  // namespace moe
