// ONNX Runtime sessions (CPU, CUDA and TensorRT execution providers) behind the Classifier interface.
#pragma once
#include <memory>
#include <string>

#include "model/backend_options.h"
#include "model/classifier.h"

namespace moe {

// Opens `model_path` (.onnx) on options.backend (cpu, cuda or tensorrt; the torch_* fields are not
// read). Throws InputError for a missing/invalid model or bad options, and
// UnavailableError when the provider cannot run here, with the reason ONNX Runtime gave (e.g. a
// missing libcudart / libnvinfer), or when the CPU EP lacks kernels for an fp16 model.
std::unique_ptr<Classifier> make_ort_classifier(const std::string& model_path, const BackendOptions& options);

// Throws UnavailableError when `backend` cannot run a model of `precision` (int8 is a CPU variant);
// make_ort_classifier applies it before loading any GPU provider. `path` names the model in the message.
void check_backend_runs_precision(Backend backend, Precision precision, const std::string& path);

std::string ort_version();

}  // namespace moe
