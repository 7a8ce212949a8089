#include "model/reference.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "base/errors.h"
#include "model/routing.h"

namespace moe {

namespace {

// [out, in] -> [in, out]
std::vector<float> transposed(const Tensor& t) {
  const int64_t out = t.shape[0], in = t.shape[1];
  std::vector<float> r(t.data.size());
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) r[i * out + o] = t.data[o * in + i];
  return r;
}

// y[out] = b + x[in] @ w[in, out]
void linear(const float* __restrict x, const float* __restrict w, const float* __restrict b, int64_t in, int64_t out,
            float* __restrict y) {
  std::copy(b, b + out, y);
  for (int64_t i = 0; i < in; ++i) {
    const float xi = x[i];
    if (xi == 0.f) continue;  // MNIST images are ~80% background
    const float* wi = w + i * out;
    for (int64_t o = 0; o < out; ++o) y[o] += xi * wi[o];
  }
}

void softmax(float* v, int64_t n) {
  const float mx = *std::max_element(v, v + n);
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += v[i] = std::exp(v[i] - mx);
  for (int64_t i = 0; i < n; ++i) v[i] /= s;
}

}  // namespace

ReferenceClassifier::ReferenceClassifier(const Checkpoint& ck) : c_(ck.meta.model) {
  const Weights& w = ck.weights;
  check_weights(w, c_, "reference");
  emb_w_ = transposed(w.at("embedding.weight"));
  emb_b_ = w.at("embedding.bias").data;
  gate_w_ = transposed(w.at("moe.gate.weight"));
  gate_b_ = w.at("moe.gate.bias").data;
  cls_w_ = transposed(w.at("classifier.weight"));
  cls_b_ = w.at("classifier.bias").data;
  for (int64_t e = 0; e < c_.n_experts; ++e) {
    fc1_w_.push_back(transposed(w.at(expert_param(e, "fc1", "weight"))));
    fc1_b_.push_back(w.at(expert_param(e, "fc1", "bias")).data);
    fc2_w_.push_back(transposed(w.at(expert_param(e, "fc2", "weight"))));
    fc2_b_.push_back(w.at(expert_param(e, "fc2", "bias")).data);
  }
}

void ReferenceClassifier::classify(const float* images, int64_t n, float* logits, float* gate_probs) {
  const int64_t I = c_.input_size, D = c_.emb_size, E = c_.n_experts, K = c_.top_k, C = c_.n_classes;
  std::vector<float> h(static_cast<size_t>(D)), p(static_cast<size_t>(E)), hidden(static_cast<size_t>(D)), out(static_cast<size_t>(D)), y(static_cast<size_t>(D)), w(static_cast<size_t>(K));
  std::vector<int64_t> chosen(static_cast<size_t>(K));
  for (int64_t r = 0; r < n; ++r) {
    linear(images + r * I, emb_w_.data(), emb_b_.data(), I, D, h.data());
    linear(h.data(), gate_w_.data(), gate_b_.data(), D, E, p.data());
    softmax(p.data(), E);
    if (dropped_ >= 0) drop_expert(p.data(), E, dropped_);
    if (gate_probs) std::copy(p.begin(), p.end(), gate_probs + r * E);
    route(p.data(), E, K, chosen.data(), w.data());
    std::fill(y.begin(), y.end(), 0.f);
    for (int64_t j = 0; j < K; ++j) {
      const int64_t e = chosen[j];
      linear(h.data(), fc1_w_[e].data(), fc1_b_[e].data(), D, D, hidden.data());
      for (auto& v : hidden) v = std::max(v, 0.f);
      linear(hidden.data(), fc2_w_[e].data(), fc2_b_[e].data(), D, D, out.data());
      for (int64_t d = 0; d < D; ++d) y[d] += w[j] * out[d];
    }
    linear(y.data(), cls_w_.data(), cls_b_.data(), D, C, logits + r * C);
  }
}

void ReferenceClassifier::set_dropped_expert(int64_t e) {
  if (e >= c_.n_experts) throw InputError("expert " + std::to_string(e) + " does not exist: the model has " +
                                        std::to_string(c_.n_experts) + " experts (0.." + std::to_string(c_.n_experts - 1) + ")");
  if (e >= 0 && c_.n_experts == 1) throw InputError("cannot drop the only expert of a 1-expert model");
  dropped_ = e < 0 ? -1 : e;
}

}  // namespace moe
