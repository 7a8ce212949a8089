// `--backend native`: the fused hand-written forward pass (native_kernel.h) behind the Classifier
// interface, threads over row blocks of a batch. The in-run yardstick `bench` divides every ONNX
// Runtime row by.
#pragma once
#include <memory>
#include <string>

#include "model/classifier.h"
#include "native/native_kernel.h"

namespace moe {

struct NativeOptions {
  int threads = 1;         // threads per classify() call (the caller's included); 0 = one per core
  Isa isa = Isa::scalar;   // which code path; see isa_from_env()
  Embed embed = Embed::auto_;  // which embedding formulation; see embed_from_env()
};

// From a checkpoint folder (config.json + weights.safetensors). InputError for a bad checkpoint.
std::unique_ptr<Classifier> make_native_classifier(const std::string& checkpoint_dir, const NativeOptions& options);
// From folded weights (e.g. the fused ONNX model's initialisers, or a checkpoint already loaded).
std::unique_ptr<Classifier> make_native_classifier(const FoldedModel& model, const NativeOptions& options,
                                                   std::string provenance_dataset = "", std::string provenance_hash = "");

}  // namespace moe
