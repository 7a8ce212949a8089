// The MoE MNIST classifier as a LibTorch module tree. Parameter names ("moe.experts.3.fc1.weight")
// are the ones used by the safetensors checkpoint, the ONNX initialisers and the graph picture.
#pragma once
#include <torch/torch.h>

#include "base/choices.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace moe {

struct ExpertImpl : torch::nn::Module {
  explicit ExpertImpl(int64_t emb);
  torch::Tensor forward(const torch::Tensor& x);  // [n, emb] -> [n, emb]
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Expert);

struct MoEOutput {
  torch::Tensor y;           // [B, emb]
  torch::Tensor gate_probs;  // [B, E] softmax of the gate (before noise)
  torch::Tensor top_idx;     // [B, k] chosen experts
  torch::Tensor top_w;       // [B, k] their renormalised weights
  torch::Tensor importance_loss;  // scalar; zero outside training
};

struct MoEImpl : torch::nn::Module {
  explicit MoEImpl(const ModelConfig& c);
  // style: sparse (sort rows by expert, run each expert once on its rows), loop (the original's
  // per-expert, per-slot NonZero masks) or batched (every expert on every row, weighted by a combine
  // matrix that is zero for unchosen experts). All three compute the same function and gradients.
  MoEOutput forward(const torch::Tensor& x, TorchStyle style = TorchStyle::sparse);
  // x [B, emb], top_i/top_w [B, k] -> [B, emb]: the batched style's expert mixture.
  torch::Tensor batched_experts(const torch::Tensor& x, const torch::Tensor& top_i, const torch::Tensor& top_w);
  // The experts' parameters stacked over the experts, each a leaf whose memory the per-expert
  // parameters share (training's flat buffer sets them up): the batched style then uses them as they
  // are instead of stacking E tensors per step and splitting the gradient back. Undefined = stack.
  struct Stacked {
    torch::Tensor w1, b1, w2, b2;  // [E, emb, emb] ([out, in] per expert), [E, emb], [E, emb, emb], [E, emb]
  } stacked;
  ModelConfig config;
  torch::nn::Linear gate{nullptr}, noise{nullptr};
  torch::nn::ModuleList experts;
};
TORCH_MODULE(MoE);

struct NetOutput {
  torch::Tensor logits;      // [B, n_classes]
  MoEOutput moe;
};

struct NetImpl : torch::nn::Module {
  explicit NetImpl(const ModelConfig& c);
  NetOutput forward(const torch::Tensor& images, TorchStyle style = TorchStyle::sparse);  // images [B, 784]
  ModelConfig config;
  torch::nn::Linear embedding{nullptr};
  MoE moe{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(Net);

// "cpu" or "cuda[:N]" -> a device; InputError naming `flag` otherwise, UnavailableError without CUDA.
torch::Device parse_device(const std::string& s, const std::string& flag);

// Copies between the module's parameters and the framework-free Weights map (always on CPU).
Weights weights_from(Net& net);
void load_into(Net& net, const Weights& weights, const std::string& where);

}  // namespace moe
