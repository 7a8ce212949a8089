#include "libtorch/model.h"

#include "base/errors.h"

namespace moe {

namespace F = torch::nn::functional;

ExpertImpl::ExpertImpl(int64_t emb) {
  fc1 = register_module("fc1", torch::nn::Linear(emb, emb));
  fc2 = register_module("fc2", torch::nn::Linear(emb, emb));
}

torch::Tensor ExpertImpl::forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }

MoEImpl::MoEImpl(const ModelConfig& c) : config(c) {
  gate = register_module("gate", torch::nn::Linear(c.emb_size, c.n_experts));
  noise = register_module("noise", torch::nn::Linear(c.emb_size, c.n_experts));
  experts = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < c.n_experts; ++e) experts->push_back(Expert(c.emb_size));
}

// Every expert on every row, as two matrix products over the experts' weights laid side by side,
// with a combine matrix that is zero for the experts a row did not choose. Zero weights give zero
// outputs and zero gradients, so this is the sparse model's function and gradients (up to float
// summation order) in ~10 LibTorch ops instead of ~4 per expert plus sorting and gathering; the E/k
// times more multiply-adds cost less than the ops they replace at emb 16.
torch::Tensor MoEImpl::batched_experts(const torch::Tensor& x, const torch::Tensor& top_i, const torch::Tensor& top_w) {
  const int64_t B = x.size(0), E = config.n_experts, emb = config.emb_size;
  Stacked s = stacked;
  if (!s.w1.defined()) {
    std::vector<torch::Tensor> w1, b1, w2, b2;
    for (int64_t e = 0; e < E; ++e) {
      const auto& ex = experts[e]->as<Expert>();
      w1.push_back(ex->fc1->weight);
      b1.push_back(ex->fc1->bias);
      w2.push_back(ex->fc2->weight);
      b2.push_back(ex->fc2->bias);
    }
    s = {torch::stack(w1), torch::stack(b1), torch::stack(w2), torch::stack(b2)};
  }
  torch::Tensor combine = torch::zeros({B, E}, x.options()).scatter(1, top_i, top_w);                        // [B, E]
  torch::Tensor h = torch::relu(torch::addmm(s.b1.reshape({E * emb}), x, s.w1.reshape({E * emb, emb}).t()));  // [B, E*emb]
  h = (h.view({B, E, emb}) * combine.unsqueeze(2)).view({B, E * emb});                                        // [B, E*emb]
  torch::Tensor w2_rows = s.w2.transpose(1, 2).reshape({E * emb, emb});                                     // [E*emb, emb]
  return torch::addmm(torch::mm(combine, s.b2), h, w2_rows);                                               // [B, emb]
}

MoEOutput MoEImpl::forward(const torch::Tensor& x, TorchStyle style) {
  const int64_t B = x.size(0), k = config.top_k, E = config.n_experts;
  MoEOutput o;
  o.gate_probs = torch::softmax(gate(x), 1);  // [B, E]
  torch::Tensor scores = o.gate_probs;
  if (is_training() && config.noisy_gating)  // noisy top-k gating: exploration noise whose scale the model learns
    scores = scores + torch::randn_like(scores) * F::softplus(noise(x));
  auto [top_v, top_i] = scores.topk(k, 1);  // [B, k]
  o.top_idx = top_i;
  o.top_w = torch::softmax(top_v, 1);       // [B, k]

  torch::Tensor y;                          // [B, emb]
  if (style == TorchStyle::batched) {
    y = batched_experts(x, top_i, o.top_w);
  } else if (style == TorchStyle::loop) {
    y = torch::zeros_like(x);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t j = 0; j < k; ++j) {
        torch::Tensor rows = (top_i.select(1, j) == e).nonzero().squeeze(1);
        if (rows.numel() == 0) continue;
        torch::Tensor w = o.top_w.select(1, j).index_select(0, rows).unsqueeze(1);
        y.index_add_(0, rows, w * experts[e]->as<Expert>()->forward(x.index_select(0, rows)));
      }
  } else {
    y = torch::zeros_like(x);
    // Sort the B*k (row, expert) slots by expert so each expert runs once on a contiguous slice.
    torch::Tensor flat_e = top_i.reshape({-1});                                  // [B*k]
    torch::Tensor order = flat_e.argsort();
    torch::Tensor rows = torch::arange(B, x.options().dtype(torch::kLong)).repeat_interleave(k).index_select(0, order);
    torch::Tensor w = o.top_w.reshape({-1}).index_select(0, order).unsqueeze(1);  // [B*k, 1]
    torch::Tensor xs = x.index_select(0, rows);                                   // [B*k, emb]
    torch::Tensor counts = torch::bincount(flat_e, {}, E).cpu();
    const int64_t* n_rows = counts.data_ptr<int64_t>();
    std::vector<torch::Tensor> outs;
    int64_t start = 0;
    for (int64_t e = 0; e < E; ++e) {
      if (n_rows[e] == 0) continue;
      outs.push_back(experts[e]->as<Expert>()->forward(xs.narrow(0, start, n_rows[e])));
      start += n_rows[e];
    }
    y.index_add_(0, rows, torch::cat(outs) * w);
  }
  o.y = y;

  if (is_training() && E > 1) {
    // Importance loss: squared coefficient of variation of each expert's summed gate probability.
    torch::Tensor importance = o.gate_probs.sum(0);  // [E]
    o.importance_loss = config.w_importance * (importance.std() / importance.mean()).pow(2);
  } else {
    o.importance_loss = torch::zeros({}, x.options());
  }
  return o;
}

NetImpl::NetImpl(const ModelConfig& c) : config(c) {
  c.validate();
  embedding = register_module("embedding", torch::nn::Linear(c.input_size, c.emb_size));
  moe = register_module("moe", MoE(c));
  classifier = register_module("classifier", torch::nn::Linear(c.emb_size, c.n_classes));
}

NetOutput NetImpl::forward(const torch::Tensor& images, TorchStyle style) {
  NetOutput o;
  o.moe = moe(embedding(images), style);
  o.logits = classifier(o.moe.y);
  return o;
}

torch::Device parse_device(const std::string& s, const std::string& flag) {
  std::unique_ptr<torch::Device> d;
  try {
    d = std::make_unique<torch::Device>(s);
  } catch (const c10::Error&) {
    throw InputError(flag + ": expected cpu or cuda[:N], got '" + s + "'");
  }
  if (!d->is_cpu() && !d->is_cuda()) throw InputError(flag + ": expected cpu or cuda[:N], got '" + s + "'");
  if (d->is_cuda() && !torch::cuda::is_available())
    throw UnavailableError(flag + " " + s + ": this LibTorch has no usable CUDA (build against a CUDA LibTorch, see docs/gpu.md)");
  return *d;
}

Weights weights_from(Net& net) {
  Weights w;
  for (const auto& p : net->named_parameters()) {
    torch::Tensor t = p.value().detach().to(torch::kCPU, torch::kFloat).contiguous();
    Tensor out;
    out.shape = t.sizes().vec();
    out.data.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    w.emplace(p.key(), std::move(out));
  }
  return w;
}

void load_into(Net& net, const Weights& weights, const std::string& where) {
  check_weights(weights, net->config, where);
  torch::NoGradGuard no_grad;
  for (auto& p : net->named_parameters()) {
    const Tensor& src = weights.at(p.key());
    torch::Tensor t = torch::from_blob(const_cast<float*>(src.data.data()), src.shape, torch::kFloat);
    p.value().copy_(t);
  }
}

}  // namespace moe
