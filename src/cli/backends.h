// Opening any backend by name, with one set of flags shared by eval, predict and bench.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "model/backend_options.h"
#include "model/checked_classifier.h"
#include "model/classifier.h"

namespace moe {

// --backend --threads --opt-level --device-id --cuda-graph --trt-fp16 --trt-cache --save-optimized --torch-device
void add_backend_options(CLI::App* cmd, BackendOptions& o);

// `model` is a checkpoint directory for torch, an .onnx file for the ONNX Runtime backends.
// Throws UnavailableError when the backend is not in this build or cannot run on this machine.
// Outputs are checked as `when` says (see CheckedClassifier); the model is probed at load either way.
std::unique_ptr<Classifier> open_backend(const std::string& model, const BackendOptions& o,
                                         OutputCheck when = OutputCheck::every_call);

// Warns once per model on stderr when it does not match what it is used with: an ONNX model whose
// "weights_hash" differs from the checkpoint in its folder (exported before a retrain), or a model
// trained on another dataset than `dataset`.
void warn_if_mismatched(const Classifier& model, const std::string& model_path, const std::string& dataset);

// Which backends this build has (whether or not this machine can run them).
std::vector<std::string> built_backends();

// Versions of the engines in this build, e.g. {"onnxruntime", "1.29.0"}.
std::vector<std::pair<std::string, std::string>> engine_versions();

}  // namespace moe
