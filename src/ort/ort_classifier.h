// ONNX Runtime sessions (CPU, CUDA and TensorRT execution providers) behind the Classifier interface.
#pragma once
#include <memory>
#include <string>

#include "core/classifier.h"

namespace moe {

struct OrtOptions {
  std::string backend = "cpu";   // cpu | cuda | tensorrt
  int threads = 0;               // intra-op threads; 0 = ONNX Runtime's default (one per core)
  std::string opt_level = "all"; // graph optimisation: disable | basic | extended | all
  int device_id = 0;             // cuda / tensorrt: which GPU
  bool cuda_graph = false;       // cuda: capture a CUDA graph (needs a fixed batch size)
  bool trt_fp16 = false;         // tensorrt: let TensorRT pick fp16 kernels
  std::string trt_cache;         // tensorrt: engine cache folder ("" = no cache)
  int64_t max_batch = 1024;      // tensorrt: optimisation profile covers batch 1..max_batch
  std::string save_optimized;    // write the graph ONNX Runtime runs after its optimisations ("" = no)
};

// Opens `model_path` (.onnx). Throws InputError for a missing/invalid model or bad options, and
// UnavailableError when the provider cannot run here, with the reason ONNX Runtime gave (e.g. a
// missing libcudart / libnvinfer), or when the CPU EP lacks kernels for an fp16 model.
std::unique_ptr<Classifier> make_ort_classifier(const std::string& model_path, const OrtOptions& options);

std::string ort_version();

}  // namespace moe
