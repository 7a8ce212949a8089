// Opening any backend by name, with one set of flags shared by eval, predict and bench.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/classifier.h"

namespace moe {

struct BackendOptions {
  std::string backend = "cpu";  // torch | cpu | cuda | tensorrt
  int threads = 0;              // 0 = the engine's default
  std::string opt_level = "all";
  int device_id = 0;
  bool cuda_graph = false;
  bool trt_fp16 = false;
  std::string trt_cache;
  std::string torch_style = "sparse";
  std::string torch_device = "cpu";
  std::string save_optimized;  // torch: cpu or cuda[:N] (needs a CUDA LibTorch)
};

// --backend --threads --opt-level --device-id --cuda-graph --trt-fp16 --trt-cache --torch-device
void add_backend_options(CLI::App* cmd, BackendOptions& o);

// `model` is a checkpoint directory for torch, an .onnx file for the ONNX Runtime backends.
// Throws UnavailableError when the backend is not in this build or cannot run on this machine.
std::unique_ptr<Classifier> open_backend(const std::string& model, const BackendOptions& o);

// Which backends this build has (whether or not this machine can run them).
std::vector<std::string> built_backends();

// Versions of the engines in this build, e.g. {"onnxruntime", "1.29.0"}.
std::vector<std::pair<std::string, std::string>> engine_versions();

}  // namespace moe
