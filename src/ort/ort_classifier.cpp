#include "ort/ort_classifier.h"

#include <onnxruntime_cxx_api.h>

#include <dlfcn.h>

#include <filesystem>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/model_config.h"

namespace moe {

namespace {

Ort::Env& env() {
  static Ort::Env e(ORT_LOGGING_LEVEL_ERROR, "moe-mnist");
  return e;
}

GraphOptimizationLevel ort_level(OptLevel level) {
  switch (level) {
    case OptLevel::disable: return ORT_DISABLE_ALL;
    case OptLevel::basic: return ORT_ENABLE_BASIC;
    case OptLevel::extended: return ORT_ENABLE_EXTENDED;
    case OptLevel::all: break;
  }
  return ORT_ENABLE_ALL;
}

// Provider options go through ONNX Runtime's string key/value API, the same for CUDA and TensorRT.
template <typename Options, typename Update>
void update_options(Options* p, const std::vector<std::pair<std::string, std::string>>& kv, Update update) {
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : kv) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  Ort::ThrowOnError(update(p, keys.data(), values.data(), keys.size()));
}

// The folder holding libonnxruntime.so: ONNX Runtime and `setup.sh --gpu` keep provider libraries there.
std::string ort_library_dir() {
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(&OrtGetApiBase), &info) && info.dli_fname)
    return std::filesystem::path(info.dli_fname).parent_path().string();
  return ".";
}

// The npm package's ONNX Runtime core is a CPU build without the built-in CUDA bridge, so the CUDA
// provider library is loaded as a plugin execution provider (it exports CreateEpFactories) and its
// devices are taken from the environment.
void append_cuda(Ort::SessionOptions& so, const BackendOptions& o) {
  const std::string lib = ort_library_dir() + "/libonnxruntime_providers_cuda.so";
  if (!std::filesystem::exists(lib))
    throw UnavailableError(lib + " not found: CUDA EP unavailable (run scripts/setup.sh --gpu)");
  static std::once_flag once;
  static std::string load_error;
  std::call_once(once, [&] {
    try {
      env().RegisterExecutionProviderLibrary("moe-mnist-cuda", lib);
    } catch (const Ort::Exception& e) {
      load_error = e.what();
    }
  });
  if (!load_error.empty()) throw UnavailableError("CUDA EP unavailable: " + load_error);
  std::vector<Ort::ConstEpDevice> devices;
  for (const auto& d : env().GetEpDevices())
    if (std::string(d.EpName()) == "CUDAExecutionProvider") devices.push_back(d);
  if (devices.empty()) throw UnavailableError("CUDA EP loaded from " + lib + " but it reports no CUDA device");
  if (o.device_id < 0 || o.device_id >= int(devices.size()))
    throw InputError("--device-id " + std::to_string(o.device_id) + ": " + std::to_string(devices.size()) +
                     " CUDA device(s) found (0.." + std::to_string(devices.size() - 1) + ")");
  so.AppendExecutionProvider_V2(env(), {devices[size_t(o.device_id)]},
                                std::unordered_map<std::string, std::string>{
                                    {"enable_cuda_graph", o.cuda_graph ? "1" : "0"}});
}

void append_tensorrt(Ort::SessionOptions& so, const BackendOptions& o) {
  if (void* h = ::dlopen("libnvinfer.so.10", RTLD_NOW | RTLD_LOCAL))
    ::dlclose(h);
  else
    throw UnavailableError("libnvinfer.so.10 not found: TensorRT EP unavailable (install TensorRT 10 and add it to LD_LIBRARY_PATH)");
  const OrtApi& api = Ort::GetApi();
  OrtTensorRTProviderOptionsV2* trt = nullptr;
  Ort::ThrowOnError(api.CreateTensorRTProviderOptions(&trt));
  std::unique_ptr<OrtTensorRTProviderOptionsV2, void (*)(OrtTensorRTProviderOptionsV2*)> guard(trt, api.ReleaseTensorRTProviderOptions);
  const std::string mx = std::to_string(o.max_batch);
  std::vector<std::pair<std::string, std::string>> kv = {
      {"device_id", std::to_string(o.device_id)},
      {"trt_fp16_enable", o.trt_fp16 ? "1" : "0"},
      {"trt_profile_min_shapes", "input:1x1x28x28"},
      {"trt_profile_opt_shapes", "input:64x1x28x28"},
      {"trt_profile_max_shapes", "input:" + mx + "x1x28x28"},
  };
  if (!o.trt_cache.empty()) {
    std::filesystem::create_directories(o.trt_cache);
    kv.push_back({"trt_engine_cache_enable", "1"});
    kv.push_back({"trt_engine_cache_path", o.trt_cache});
  }
  update_options(trt, kv, api.UpdateTensorRTProviderOptions);
  so.AppendExecutionProvider_TensorRT_V2(*trt);
  try {
    append_cuda(so, o);  // what TensorRT rejects falls back to CUDA, not the CPU
  } catch (const UnavailableError& e) {
    throw UnavailableError(std::string("TensorRT EP needs the CUDA EP: ") + e.what());
  }
}

// The "precision" metadata of a model, read through a plain CPU session without optimisations, so a
// GPU backend can refuse a CPU-only model before it loads (or fails to load) any provider library.
Precision precision_metadata(const std::string& path) {
  Ort::SessionOptions so;
  so.SetGraphOptimizationLevel(ORT_DISABLE_ALL);
  so.SetIntraOpNumThreads(1);
  try {
    Ort::Session session(env(), path.c_str(), so);
    Ort::AllocatorWithDefaultOptions alloc;
    if (auto p = session.GetModelMetadata().LookupCustomMetadataMapAllocated("precision", alloc))
      return parse_choice<Precision>(p.get(), path + " metadata 'precision'");
  } catch (const Ort::Exception& e) {
    throw InputError(path + ": ONNX Runtime cannot load it (" + std::string(e.what()) + ")");
  }
  return Precision::fp32;
}

class OrtClassifier final : public Classifier {
 public:
  OrtClassifier(const std::string& path, const BackendOptions& o) : backend_(to_string(o.backend)) {
    if (o.backend == Backend::torch) throw InputError("--backend torch is not an ONNX Runtime backend");
    if (!std::filesystem::is_regular_file(path)) throw InputError(path + ": no such ONNX model file");
    if (is_gpu(o.backend)) check_backend_runs_precision(o.backend, precision_metadata(path), path);
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(o.threads);
    so.SetInterOpNumThreads(1);
    so.SetGraphOptimizationLevel(ort_level(o.opt_level));
    if (!o.save_optimized.empty()) so.SetOptimizedModelFilePath(o.save_optimized.c_str());
    try {
      if (o.backend == Backend::cuda) append_cuda(so, o);
      if (o.backend == Backend::tensorrt) append_tensorrt(so, o);
    } catch (const Ort::Exception& e) {
      throw UnavailableError(backend_ + " execution provider: " + e.what());
    }
    try {
      session_ = Ort::Session(env(), path.c_str(), so);
    } catch (const Ort::Exception& e) {
      const std::string why = e.what();
      if (why.find("NOT_IMPLEMENTED") != std::string::npos || why.find("Could not find an implementation") != std::string::npos)
        throw UnavailableError(path + ": ONNX Runtime's " + backend_ + " execution provider has no kernel for part of this model (" +
                               why + ")" + (o.backend == Backend::cpu ? "; fp16 models need --backend cuda or tensorrt" : ""));
      if (is_gpu(o.backend) && (why.find("CUDA") != std::string::npos || why.find(".so") != std::string::npos))
        throw UnavailableError(backend_ + " execution provider: " + why);
      throw InputError(path + ": ONNX Runtime cannot load it (" + why + ")");
    }
    Ort::AllocatorWithDefaultOptions alloc;
    Ort::ModelMetadata meta = session_.GetModelMetadata();
    if (auto p = meta.LookupCustomMetadataMapAllocated("precision", alloc)) precision_ = p.get();
    if (session_.GetInputCount() != 1 || session_.GetOutputCount() != 2)
      throw InputError(path + ": expected 1 input and 2 outputs (logits, gate_probs), found " +
                       std::to_string(session_.GetInputCount()) + " and " + std::to_string(session_.GetOutputCount()));
    auto dim1 = [&](size_t i) { return session_.GetOutputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape().at(1); };
    n_classes_ = dim1(0);
    n_experts_ = dim1(1);
    if (auto p = meta.LookupCustomMetadataMapAllocated("model_config", alloc)) {
      const auto j = nlohmann::json::parse(p.get(), nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) throw InputError(path + ": metadata 'model_config' is not valid JSON");
      top_k_ = model_config_from_json(j, path + " metadata 'model_config'").top;
    }
  }

  void classify(const float* images, int64_t n, float* logits, float* gate_probs) override {
    if (!gate_probs) {
      if (int64_t(scratch_.size()) < n * n_experts_) scratch_.resize(size_t(n * n_experts_));
      gate_probs = scratch_.data();
    }
    const int64_t in_shape[] = {n, 1, 28, 28};
    const int64_t logits_shape[] = {n, n_classes_};
    const int64_t probs_shape[] = {n, n_experts_};
    Ort::Value input = Ort::Value::CreateTensor<float>(mem_, const_cast<float*>(images), size_t(n * 784), in_shape, 4);
    Ort::Value outputs[2] = {Ort::Value::CreateTensor<float>(mem_, logits, size_t(n * n_classes_), logits_shape, 2),
                             Ort::Value::CreateTensor<float>(mem_, gate_probs, size_t(n * n_experts_), probs_shape, 2)};
    static const char* in_names[] = {"input"};
    static const char* out_names[] = {"logits", "gate_probs"};
    try {
      session_.Run(run_options_, in_names, &input, 1, out_names, outputs, 2);
    } catch (const Ort::Exception& e) {
      throw InputError(std::string("ONNX Runtime run failed: ") + e.what());
    }
  }

  int64_t n_classes() const override { return n_classes_; }
  int64_t n_experts() const override { return n_experts_; }
  int64_t top_k() const override { return top_k_; }
  std::string backend() const override { return backend_; }
  std::string precision() const override { return precision_; }

 private:
  std::string backend_, precision_ = "fp32";
  Ort::Session session_{nullptr};
  Ort::RunOptions run_options_;
  Ort::MemoryInfo mem_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  int64_t n_classes_ = 0, n_experts_ = 0, top_k_ = 0;
  std::vector<float> scratch_;
};

}  // namespace

void check_backend_runs_precision(Backend backend, Precision precision, const std::string& path) {
  if (precision == Precision::int8 && backend != Backend::cpu)
    throw UnavailableError(path + ": the int8 model (DynamicQuantizeLinear + MatMulInteger) is a CPU variant; "
                           "use --backend cpu, or the fp32/fp16 model on " + to_string(backend));
}

std::unique_ptr<Classifier> make_ort_classifier(const std::string& model_path, const BackendOptions& options) {
  return std::make_unique<OrtClassifier>(model_path, options);
}

std::string ort_version() { return Ort::GetVersionString(); }

}  // namespace moe
