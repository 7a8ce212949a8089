// LibTorch eager inference behind the Classifier interface, plus LibTorch-wide settings.
#include <dlfcn.h>

#include <cstring>

#include "model/backend_options.h"
#include "model/checkpoint.h"
#include "base/errors.h"
#include <torch/version.h>

#include "libtorch/model.h"
#include "libtorch/torch_api.h"

namespace moe {

namespace {

class TorchClassifier final : public Classifier {
 public:
  TorchClassifier(const std::string& dir, const std::string& device, TorchStyle style)
      : device_(parse_device(device, "--torch-device")), style_(style) {
    const Checkpoint c = load_checkpoint(dir);
    net_ = Net(c.meta.model);
    load_into(net_, c.weights, weights_path(dir));
    net_->to(device_);
    net_->eval();
  }

  void classify(const float* images, int64_t n, float* logits, float* gate_probs) override {
    c10::InferenceMode guard;
    const auto& c = net_->config;
    torch::Tensor x = torch::from_blob(const_cast<float*>(images), {n, c.input_size}, torch::kFloat);
    if (device_.is_cuda()) x = x.to(device_);
    NetOutput o = net_->forward(x, style_);
    torch::Tensor l = o.logits.cpu().contiguous();
    std::memcpy(logits, l.data_ptr<float>(), sizeof(float) * size_t(n * c.n_classes));
    if (gate_probs) {
      torch::Tensor g = o.moe.gate_probs.cpu().contiguous();
      std::memcpy(gate_probs, g.data_ptr<float>(), sizeof(float) * size_t(n * c.n_experts));
    }
  }

  int64_t n_classes() const override { return net_->config.n_classes; }
  int64_t n_experts() const override { return net_->config.n_experts; }
  int64_t top_k() const override { return net_->config.top_k; }
  std::string backend() const override { return device_.is_cuda() ? "torch-cuda" : "torch"; }
  std::string precision() const override { return "fp32"; }

 private:
  torch::Device device_;
  TorchStyle style_;
  Net net_{nullptr};
};

}  // namespace

std::unique_ptr<Classifier> make_torch_classifier(const std::string& dir, const std::string& device, TorchStyle style) {
  return std::make_unique<TorchClassifier>(dir, device, style);
}

void set_torch_threads(int n) {
  check_threads(n, "--threads");
  if (n == 0) return;
  torch::set_num_threads(n);
  // Debian's LibTorch calls whichever libblas.so.3 is installed; OpenBLAS keeps its own count.
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." + std::to_string(TORCH_VERSION_PATCH);
}

bool torch_cuda_available() { return torch::cuda::is_available(); }

}  // namespace moe
