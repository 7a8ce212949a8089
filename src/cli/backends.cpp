#include "cli/backends.h"

#include <cstdio>
#include <filesystem>
#include <set>

#include "cli/options.h"
#include "model/checked_classifier.h"
#include "model/checkpoint.h"
#include "base/errors.h"
#include "native/native_classifier.h"

#ifdef MOE_MNIST_HAVE_TORCH
#include "libtorch/torch_api.h"
#endif
#ifdef MOE_MNIST_HAVE_ORT
#include "ort/ort_classifier.h"
#endif

namespace moe {

void add_backend_options(CLI::App* cmd, BackendOptions& o) {
  add_choice_option(cmd, "--backend", o.backend, "torch or native (checkpoint dir), cpu, cuda or tensorrt (.onnx file)");
  cmd->add_option("--threads", o.threads,
                  "Threads (0 = one per core): one engine's intra-op threads, or for eval --mode streams one single-threaded "
                  "engine each")->capture_default_str();
  add_choice_option(cmd, "--opt-level", o.opt_level, "ONNX Runtime graph optimisation: disable, basic, extended, all");
  cmd->add_option("--device-id", o.device_id, "GPU index for cuda / tensorrt")->capture_default_str();
  cmd->add_flag("--cuda-graph", o.cuda_graph, "cuda: capture a CUDA graph (fixed batch size only)");
  cmd->add_flag("--trt-fp16", o.trt_fp16, "tensorrt: allow fp16 kernels");
  cmd->add_option("--trt-cache", o.trt_cache, "tensorrt: engine cache folder, so a second start skips the build");
  cmd->add_option("--save-optimized", o.save_optimized,
                  "Write the graph ONNX Runtime actually runs, after its optimisations, to this .onnx file");
  cmd->add_option("--torch-device", o.torch_device, "torch: cpu, or cuda[:N] with a CUDA LibTorch")->capture_default_str();
}

namespace {

std::unique_ptr<Classifier> open_unchecked(const std::string& model, const BackendOptions& o) {
  check_threads(o.threads, "--threads");
  // A flag that does nothing in the chosen mode is refused rather than silently ignored.
  auto only_for = [&](bool given, const char* flag, const char* backends) {
    if (given) throw InputError(std::string(flag) + " applies to --backend " + backends + " only, not " + to_string(o.backend));
  };
  only_for(o.cuda_graph && o.backend != Backend::cuda, "--cuda-graph", "cuda");
  only_for(o.trt_fp16 && o.backend != Backend::tensorrt, "--trt-fp16", "tensorrt");
  only_for(!o.trt_cache.empty() && o.backend != Backend::tensorrt, "--trt-cache", "tensorrt");
  only_for(!o.save_optimized.empty() && (o.backend == Backend::torch || o.backend == Backend::native), "--save-optimized",
           "cpu, cuda or tensorrt");
  only_for(o.torch_device != "cpu" && o.backend != Backend::torch, "--torch-device", "torch");
  only_for(!o.profile.empty() && (o.backend == Backend::torch || o.backend == Backend::native), "--profile", "cpu, cuda or tensorrt");
  if (o.backend == Backend::native) {
    if (!std::filesystem::is_directory(model))
      throw InputError(model + ": the native backend reads a checkpoint directory (what 'train --out' wrote), not a file");
    return make_native_classifier(model, NativeOptions{o.threads, isa_from_env(), embed_from_env()});
  }
  if (o.backend == Backend::torch) {
#ifdef MOE_MNIST_HAVE_TORCH
    if (!std::filesystem::is_directory(model))
      throw InputError(model + ": the torch backend reads a checkpoint directory (what 'train --out' wrote), not a file");
    set_torch_threads(o.threads);
    return make_torch_classifier(model, o.torch_device, o.torch_style);
#else
    throw UnavailableError("torch: this build has no LibTorch");
#endif
  }
#ifdef MOE_MNIST_HAVE_ORT
  if (std::filesystem::is_directory(model))
    throw InputError(model + ": the " + to_string(o.backend) + " backend needs an exported .onnx file (see 'moe-mnist export')");
  return make_ort_classifier(model, o);
#else
  throw UnavailableError(to_string(o.backend) + ": this build has no ONNX Runtime (run scripts/setup.sh and rebuild)");
#endif
}

}  // namespace

std::unique_ptr<Classifier> open_backend(const std::string& model, const BackendOptions& o, OutputCheck when) {
  return checked(open_unchecked(model, o), model, when);
}

void warn_if_mismatched(const Classifier& model, const std::string& model_path, const std::string& dataset) {
  static std::set<std::string> warned;
  if (!warned.insert(model_path).second) return;
  std::string trained_on = model.provenance("dataset");
  if (model.backend() == "torch" && trained_on.empty()) trained_on = load_checkpoint_meta(model_path).dataset;
  if (!trained_on.empty() && trained_on != dataset)
    std::fprintf(stderr, "moe-mnist: warning: %s was trained on %s, but the data is %s: accuracy will mean little\n",
                 model_path.c_str(), trained_on.c_str(), dataset.c_str());
  const bool exported_graph = model.backend() != "torch" && model.backend() != "native";
  if (exported_graph && model.provenance("model_config").empty())
    std::fprintf(stderr, "moe-mnist: warning: %s has no model_config metadata (not written by 'moe-mnist export'?): its top-k "
                 "(taken as %lld) and its routing cannot be checked, only that its outputs are 10 finite logits and gate "
                 "probabilities that sum to 1\n", model_path.c_str(), (long long)model.top_k());
  const std::string hash = model.provenance("weights_hash");
  const std::string dir = std::filesystem::path(model_path).parent_path().string();
  const std::string weights = weights_path(dir.empty() ? "." : dir);
  if (hash.empty() || !std::filesystem::is_regular_file(weights)) return;
  try {
    if (weights_hash(load_weights(weights)) != hash)
      std::fprintf(stderr, "moe-mnist: warning: %s was exported from other weights than %s (retrained since?); re-export it\n",
                   model_path.c_str(), weights.c_str());
  } catch (const InputError&) {
    // An unreadable checkpoint beside the model is not this command's business.
  }
}

std::vector<std::string> built_backends() {
  std::vector<std::string> b = {"native"};
#ifdef MOE_MNIST_HAVE_TORCH
  b.push_back("torch");
#endif
#ifdef MOE_MNIST_HAVE_ORT
  for (Backend ort : {Backend::cpu, Backend::cuda, Backend::tensorrt}) b.push_back(to_string(ort));
#endif
  return b;
}

std::vector<std::pair<std::string, std::string>> engine_versions() {
  std::vector<std::pair<std::string, std::string>> v;
#ifdef MOE_MNIST_HAVE_TORCH
  v.push_back({"libtorch", torch_version()});
#endif
#ifdef MOE_MNIST_HAVE_ORT
  v.push_back({"onnxruntime", ort_version()});
#endif
  return v;
}

}  // namespace moe
