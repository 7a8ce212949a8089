#include "ort/ort_classifier.h"

#include <onnxruntime_cxx_api.h>

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include <filesystem>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "model/model_config.h"
#include "ort/ort_errors.h"
#include "ort_op/moe_mnist_op.h"

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
      load_error = strip_ort_message(e.what());
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

// A tensor shape as ONNX Runtime reports it, e.g. [1,1,28,28] or [N,10] (N for a free dimension).
std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + (shape[i] < 0 ? std::string("N") : std::to_string(shape[i]));
  return s + "]";
}

// The "precision" metadata of a model, read through a plain CPU session without optimisations, so a
// GPU backend can refuse a CPU-only model before it loads (or fails to load) any provider library.
Precision precision_metadata(const std::string& path) {
  Ort::SessionOptions so;
  so.SetGraphOptimizationLevel(ORT_DISABLE_ALL);
  so.SetIntraOpNumThreads(1);
  add_moe_mnist_ops(so);
  try {
    Ort::Session session(env(), path.c_str(), so);
    Ort::AllocatorWithDefaultOptions alloc;
    if (auto p = session.GetModelMetadata().LookupCustomMetadataMapAllocated("precision", alloc))
      return parse_choice<Precision>(p.get(), path + " metadata 'precision'");
  } catch (const Ort::Exception& e) {
    throw InputError(explain_ort_load_error(path, e.what()));
  } catch (const std::bad_alloc&) {
    throw InputError(explain_ort_load_error(path, "std::bad_alloc"));
  }
  return Precision::fp32;
}

class OrtClassifier final : public Classifier {
 public:
  OrtClassifier(const std::string& path, const BackendOptions& o) : backend_(to_string(o.backend)) {
    if (o.backend == Backend::torch) throw InputError("--backend torch is not an ONNX Runtime backend");
    check_input_file(path, kMaxOnnxBytes, "ONNX model");
    if (std::filesystem::file_size(path) == 0) throw InputError(path + ": empty file, expected an ONNX model");
    // ONNX Runtime would say "system error number 13"; say it in words before it opens the file.
    if (::access(path.c_str(), R_OK) != 0) throw InputError(path + ": cannot read the ONNX model (" + std::strerror(errno) + ")");
    if (!o.save_optimized.empty()) check_output_file(o.save_optimized, "--save-optimized", {"onnx", "ort"}, {path});
    if (is_gpu(o.backend)) check_backend_runs_precision(o.backend, precision_metadata(path), path);
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(o.threads);
    so.SetInterOpNumThreads(1);
    so.SetGraphOptimizationLevel(ort_level(o.opt_level));
    add_moe_mnist_ops(so);  // `export --routing fused` models: the ai.moe_mnist domain
    if (!o.save_optimized.empty()) so.SetOptimizedModelFilePath(o.save_optimized.c_str());
    if (!o.profile.empty()) {
      check_output_file(o.profile, "--profile", {"json"}, {path});
      profile_ = o.profile;
      so.EnableProfiling((o.profile + ".ort").c_str());  // ONNX Runtime adds a date; moved to `profile` on close
    }
    try {
      if (o.backend == Backend::cuda) append_cuda(so, o);
      if (o.backend == Backend::tensorrt) append_tensorrt(so, o);
    } catch (const Ort::Exception& e) {
      throw UnavailableError(backend_ + " execution provider: " + strip_ort_message(e.what()));
    }
    try {
      session_ = Ort::Session(env(), path.c_str(), so);
    } catch (const std::bad_alloc&) {
      throw InputError(explain_ort_load_error(path, "std::bad_alloc"));
    } catch (const Ort::Exception& e) {
      const std::string why = strip_ort_message(e.what());
      if (why.find("NOT_IMPLEMENTED") != std::string::npos || why.find("Could not find an implementation") != std::string::npos)
        throw UnavailableError(path + ": ONNX Runtime's " + backend_ + " execution provider has no kernel for part of this model (" +
                               why + ")" + (o.backend == Backend::cpu ? "; fp16 models need --backend cuda or tensorrt" : ""));
      if (is_gpu(o.backend) && (why.find("CUDA") != std::string::npos || why.find(".so") != std::string::npos))
        throw UnavailableError(backend_ + " execution provider: " + why);
      throw InputError(explain_ort_load_error(path, e.what()));
    }
    Ort::AllocatorWithDefaultOptions alloc;
    Ort::ModelMetadata meta = session_.GetModelMetadata();
    if (auto p = meta.LookupCustomMetadataMapAllocated("precision", alloc)) precision_ = p.get();
    for (const char* key : {"dataset", "weights_hash", "model_config"})
      if (auto p = meta.LookupCustomMetadataMapAllocated(key, alloc)) provenance_[key] = p.get();
    if (session_.GetInputCount() != 1 || session_.GetOutputCount() != 2)
      throw InputError(path + ": expected 1 input and 2 outputs (logits, gate_probs), found " +
                       std::to_string(session_.GetInputCount()) + " and " + std::to_string(session_.GetOutputCount()));
    check_io(path, meta, alloc);
  }

  // What classify() relies on, checked once when the session opens: input `input` float [N,1,28,28],
  // outputs `logits` float [N,C] and `gate_probs` float [N,E], with C and E in range and agreeing
  // with the model_config metadata (which also gives k; without it k is taken as min(2, E)).
  void check_io(const std::string& path, Ort::ModelMetadata& meta, Ort::AllocatorWithDefaultOptions& alloc) {
    auto fail = [&](const std::string& what) { throw InputError(path + ": " + what + "; not a model exported by 'moe-mnist export'"); };
    auto shape_of = [](Ort::TypeInfo info) {
      auto t = info.GetTensorTypeAndShapeInfo();
      return std::make_pair(t.GetElementType(), t.GetShape());
    };
    if (std::string(session_.GetInputNameAllocated(0, alloc).get()) != "input") fail("its input is not named 'input'");
    const auto [in_type, in_shape] = shape_of(session_.GetInputTypeInfo(0));
    if ((in_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && in_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) || in_shape.size() != 4 ||
        in_shape[1] != 1 || in_shape[2] != 28 || in_shape[3] != 28)
      fail("input 'input' is not float or uint8 [N,1,28,28], found " + shape_text(in_shape));
    // Every caller batches (eval, bench, the server's batcher): a fixed batch would load and then fail
    // on the first batch of another size, so it is refused here, where the file is named.
    if (in_shape[0] >= 0)
      throw InputError(path + ": input 'input' has a fixed batch of " + std::to_string(in_shape[0]) + " (" + shape_text(in_shape) +
                       "), expected a free batch dimension [N,1,28,28] as 'moe-mnist export' writes");
    input_uint8_ = in_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    int64_t dims[2] = {0, 0};
    const char* names[2] = {"logits", "gate_probs"};
    for (size_t i = 0; i < 2; ++i) {
      if (std::string(session_.GetOutputNameAllocated(i, alloc).get()) != names[i])
        fail(std::string("output ") + std::to_string(i) + " is not named '" + names[i] + "'");
      const auto [type, shape] = shape_of(session_.GetOutputTypeInfo(i));
      if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || shape.size() != 2)
        fail(std::string("output '") + names[i] + "' is not a float [N, n] tensor, found " + shape_text(shape));
      if (shape[0] >= 0)
        throw InputError(path + ": output '" + names[i] + "' has a fixed batch of " + std::to_string(shape[0]) + " (" +
                         shape_text(shape) + "), expected a free batch dimension [N, n] as 'moe-mnist export' writes");
      dims[i] = shape[1];
    }
    ModelConfig c;
    bool have_config = false;
    if (auto p = meta.LookupCustomMetadataMapAllocated("model_config", alloc)) {
      const auto j = nlohmann::json::parse(p.get(), nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) throw InputError(path + ": metadata 'model_config' is not valid JSON");
      c = model_config_from_json(j, path + " metadata 'model_config'");  // validates the sizes and their limits
      have_config = true;
    }
    for (int i = 0; i < 2; ++i) {
      const int64_t want = i == 0 ? c.n_classes : c.n_experts;
      if (dims[i] < 0 && have_config) dims[i] = want;  // a symbolic dimension: the metadata says
      if (have_config && dims[i] != want)
        fail(std::string("output '") + names[i] + "' has " + std::to_string(dims[i]) + " columns but its model_config says " +
             std::to_string(want));
    }
    if (dims[0] < 2 || dims[0] > kMaxClasses)
      fail("output 'logits' has " + std::to_string(dims[0]) + " classes, expected 2.." + std::to_string(kMaxClasses));
    if (dims[1] < 1 || dims[1] > kMaxExperts)
      fail("output 'gate_probs' has " + std::to_string(dims[1]) + " experts, expected 1.." + std::to_string(kMaxExperts));
    n_classes_ = dims[0];
    n_experts_ = dims[1];
    top_k_ = have_config ? c.top_k : std::min<int64_t>(2, n_experts_);
  }

  // Ends profiling and moves ONNX Runtime's file to the path asked for (a destructor must not throw:
  // a failure is reported on stderr).
  ~OrtClassifier() override {
    if (profile_.empty() || !session_) return;
    try {
      Ort::AllocatorWithDefaultOptions alloc;
      const std::string written = session_.EndProfilingAllocated(alloc).get();
      std::filesystem::rename(written, profile_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "moe-mnist: could not write the profile %s: %s\n", profile_.c_str(), e.what());
    }
  }

  // A model exported with --input uint8 takes the bytes; floats in [0, 1] are rounded to them.
  void classify(const float* images, int64_t n, float* logits, float* gate_probs) override {
    if (input_uint8_) {
      bytes_.resize(size_t(n * 784));
      for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = uint8_t(std::clamp(images[i], 0.f, 1.f) * 255.f + 0.5f);
      run(bytes_.data(), n, logits, gate_probs);
      return;
    }
    run(images, n, logits, gate_probs);
  }

  void classify_u8(const uint8_t* images, int64_t n, float* logits, float* gate_probs) override {
    if (!input_uint8_) return Classifier::classify_u8(images, n, logits, gate_probs);
    run(images, n, logits, gate_probs);
  }
  bool reads_uint8() const override { return input_uint8_; }

  template <class X>
  void run(const X* images, int64_t n, float* logits, float* gate_probs) {
    if (!gate_probs) {
      if (int64_t(scratch_.size()) < n * n_experts_) scratch_.resize(size_t(n * n_experts_));
      gate_probs = scratch_.data();
    }
    const int64_t in_shape[] = {n, 1, 28, 28};
    const int64_t logits_shape[] = {n, n_classes_};
    const int64_t probs_shape[] = {n, n_experts_};
    Ort::Value input = Ort::Value::CreateTensor<X>(mem_, const_cast<X*>(images), size_t(n * 784), in_shape, 4);
    Ort::Value outputs[2] = {Ort::Value::CreateTensor<float>(mem_, logits, size_t(n * n_classes_), logits_shape, 2),
                             Ort::Value::CreateTensor<float>(mem_, gate_probs, size_t(n * n_experts_), probs_shape, 2)};
    static const char* in_names[] = {"input"};
    static const char* out_names[] = {"logits", "gate_probs"};
    try {
      session_.Run(run_options_, in_names, &input, 1, out_names, outputs, 2);
    } catch (const Ort::Exception& e) {
      throw InputError(std::string("ONNX Runtime run failed: ") + strip_ort_message(e.what()));
    }
  }

  int64_t n_classes() const override { return n_classes_; }
  int64_t n_experts() const override { return n_experts_; }
  int64_t top_k() const override { return top_k_; }
  std::string backend() const override { return backend_; }
  std::string precision() const override { return precision_; }
  std::string provenance(const std::string& key) const override {
    auto it = provenance_.find(key);
    return it == provenance_.end() ? "" : it->second;
  }

 private:
  std::string backend_, precision_ = "fp32", profile_;
  Ort::Session session_{nullptr};
  Ort::RunOptions run_options_;
  Ort::MemoryInfo mem_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  int64_t n_classes_ = 0, n_experts_ = 0, top_k_ = 0;
  std::vector<float> scratch_;
  std::vector<uint8_t> bytes_;  // floats rounded to bytes for a --input uint8 model
  bool input_uint8_ = false;    // the model takes UINT8 images
  std::unordered_map<std::string, std::string> provenance_;
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
