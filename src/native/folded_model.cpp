#include "native/folded_model.h"

#include <string>

#include "base/errors.h"

namespace moe {

void FoldedModel::check(const std::string& where) const {
  ModelConfig c;
  c.input_size = I;
  c.emb_size = D;
  c.n_experts = E;
  c.top_k = K;
  c.n_classes = C;
  c.validate();
  auto expect = [&](const std::vector<float>& v, int64_t n, const char* name) {
    if (int64_t(v.size()) != n)
      throw InputError(where + ": " + name + " has " + std::to_string(v.size()) + " values, expected " + std::to_string(n));
  };
  expect(embed_gate_w, I * (D + E), "embed_gate weight");
  expect(embed_gate_b, D + E, "embed_gate bias");
  expect(fc1_w, E * D * D, "experts fc1 weight");
  expect(fc1_b, E * D, "experts fc1 bias");
  expect(out_w, E * D * C, "experts fc2+classifier weight");
  expect(out_b_expert, E * C, "experts fc2+classifier bias");
  expect(out_b, C, "classifier bias");
}

FoldedModel fold_model(const Checkpoint& ck) {
  const ModelConfig& c = ck.meta.model;
  c.validate();
  const Weights& w = ck.weights;
  const std::string where = "checkpoint";
  FoldedModel f;
  f.I = c.input_size, f.D = c.emb_size, f.E = c.n_experts, f.K = c.top_k, f.C = c.n_classes;
  const int64_t I = f.I, D = f.D, E = f.E, C = f.C, G = D + E;
  const auto& We = get_param(w, "embedding.weight", {D, I}, where).data;
  const auto& be = get_param(w, "embedding.bias", {D}, where).data;
  const auto& Wg = get_param(w, "moe.gate.weight", {E, D}, where).data;
  const auto& bg = get_param(w, "moe.gate.bias", {E}, where).data;
  const auto& Wc = get_param(w, "classifier.weight", {C, D}, where).data;
  const auto& bc = get_param(w, "classifier.bias", {C}, where).data;

  f.embed_gate_w.assign(size_t(I * G), 0.f);
  f.embed_gate_b.assign(size_t(G), 0.f);
  for (int64_t i = 0; i < I; ++i) {
    for (int64_t d = 0; d < D; ++d) f.embed_gate_w[size_t(i * G + d)] = We[size_t(d * I + i)];
    for (int64_t e = 0; e < E; ++e) {
      double s = 0;
      for (int64_t d = 0; d < D; ++d) s += double(Wg[size_t(e * D + d)]) * We[size_t(d * I + i)];
      f.embed_gate_w[size_t(i * G + D + e)] = float(s);
    }
  }
  for (int64_t d = 0; d < D; ++d) f.embed_gate_b[size_t(d)] = be[size_t(d)];
  for (int64_t e = 0; e < E; ++e) {
    double s = bg[size_t(e)];
    for (int64_t d = 0; d < D; ++d) s += double(Wg[size_t(e * D + d)]) * be[size_t(d)];
    f.embed_gate_b[size_t(D + e)] = float(s);
  }

  f.fc1_w.assign(size_t(E * D * D), 0.f);
  f.fc1_b.assign(size_t(E * D), 0.f);
  f.out_w.assign(size_t(E * D * C), 0.f);
  f.out_b_expert.assign(size_t(E * C), 0.f);
  f.out_b.assign(bc.begin(), bc.end());
  for (int64_t e = 0; e < E; ++e) {
    const auto& W1 = get_param(w, expert_param(e, "fc1", "weight"), {D, D}, where).data;  // [out, in]
    const auto& b1 = get_param(w, expert_param(e, "fc1", "bias"), {D}, where).data;
    const auto& W2 = get_param(w, expert_param(e, "fc2", "weight"), {D, D}, where).data;
    const auto& b2 = get_param(w, expert_param(e, "fc2", "bias"), {D}, where).data;
    for (int64_t i = 0; i < D; ++i)
      for (int64_t o = 0; o < D; ++o) f.fc1_w[size_t((e * D + i) * D + o)] = W1[size_t(o * D + i)];
    for (int64_t o = 0; o < D; ++o) f.fc1_b[size_t(e * D + o)] = b1[size_t(o)];
    for (int64_t j = 0; j < D; ++j)
      for (int64_t k = 0; k < C; ++k) {  // (Wc @ W2_e)[k, j]
        double s = 0;
        for (int64_t m = 0; m < D; ++m) s += double(Wc[size_t(k * D + m)]) * W2[size_t(m * D + j)];
        f.out_w[size_t((e * D + j) * C + k)] = float(s);
      }
    for (int64_t k = 0; k < C; ++k) {
      double s = 0;
      for (int64_t m = 0; m < D; ++m) s += double(Wc[size_t(k * D + m)]) * b2[size_t(m)];
      f.out_b_expert[size_t(e * C + k)] = float(s);
    }
  }
  return f;
}

}  // namespace moe
