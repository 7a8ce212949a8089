#include "model/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace moe {

void route(const float* gate_probs, int64_t n_experts, int64_t k, int64_t* experts, float* weights) {
  // E is small (8 by default); a partial selection sort keeps this allocation-free and stable.
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < n_experts; ++e) {
      if (std::find(experts, experts + j, e) != experts + j) continue;
      if (best < 0 || gate_probs[e] > gate_probs[best]) best = e;
    }
    experts[j] = best;
  }
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += std::exp(double(gate_probs[experts[j]]) - gate_probs[experts[0]]);
  for (int64_t j = 0; j < k; ++j)
    weights[j] = float(std::exp(double(gate_probs[experts[j]]) - gate_probs[experts[0]]) / sum);
}

double coefficient_of_variation(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  if (mean == 0.0) return 0.0;
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / double(v.size() - 1)) / mean;
}

double entropy(const double* p, int64_t n) {
  double h = 0;
  for (int64_t i = 0; i < n; ++i)
    if (p[i] > 0) h -= p[i] * std::log(p[i]);
  return h;
}

void drop_expert(float* p, int64_t n_experts, int64_t dropped) {
  double rest = 0;
  for (int64_t e = 0; e < n_experts; ++e)
    if (e != dropped) rest += p[e];
  if (!(rest > 0)) return;
  for (int64_t e = 0; e < n_experts; ++e) p[e] = e == dropped ? 0.f : float(p[e] / rest);
}

RoutingStats routing_stats(const float* gate_probs, int64_t n, int64_t E, int64_t k, const uint8_t* labels,
                           const int64_t* predictions, int64_t n_classes, int64_t n_examples) {
  if (E < 1 || k < 1 || k > E)
    throw std::invalid_argument("routing_stats: need 1 <= k <= E, got k=" + std::to_string(k) + " E=" + std::to_string(E));
  RoutingStats s;
  s.n_rows = n;
  s.n_experts = E;
  s.k = k;
  const bool labelled = labels != nullptr;
  s.n_classes = labelled ? n_classes : 0;
  const size_t uE = size_t(E);
  std::vector<int64_t> slots(uE, 0), served_correct(uE, 0);
  std::vector<double> prob_sum(uE, 0.0), weight_sum(uE, 0.0), row_p(uE);
  std::vector<std::vector<int64_t>> class_slots(size_t(s.n_classes), std::vector<int64_t>(uE, 0));
  s.class_rows.assign(size_t(s.n_classes), 0);
  s.co_selection.assign(uE, std::vector<int64_t>(uE, 0));
  s.rows_served.assign(uE, 0);
  std::vector<std::vector<std::pair<float, int64_t>>> best(uE);  // (weight, row) candidates per expert
  std::vector<int64_t> chosen(static_cast<size_t>(k));
  std::vector<float> w(static_cast<size_t>(k));
  double entropy_sum = 0, margin_sum = 0;
  int64_t correct = 0;

  for (int64_t r = 0; r < n; ++r) {
    const float* p = gate_probs + r * E;
    route(p, E, k, chosen.data(), w.data());
    for (int64_t e = 0; e < E; ++e) prob_sum[size_t(e)] += row_p[size_t(e)] = p[e];
    entropy_sum += entropy(row_p.data(), E);
    // route() ranks the chosen ones; the margin needs the runner-up even when k = 1.
    int64_t second = -1;
    for (int64_t e = 0; e < E; ++e)
      if (e != chosen[0] && (second < 0 || p[e] > p[second])) second = e;
    margin_sum += p[chosen[0]] - (second < 0 ? 0.f : p[second]);
    const bool ok = labelled && predictions && predictions[r] == labels[r];
    correct += ok;
    const int64_t c = labelled ? labels[r] : -1;
    if (c >= s.n_classes) throw std::invalid_argument("routing_stats: label " + std::to_string(c) + " >= n_classes");
    if (c >= 0) ++s.class_rows[size_t(c)];
    for (int64_t j = 0; j < k; ++j) {
      const size_t e = size_t(chosen[size_t(j)]);
      ++slots[e];
      weight_sum[e] += w[size_t(j)];
      ++s.rows_served[e];
      served_correct[e] += ok;
      if (c >= 0) ++class_slots[size_t(c)][e];
      for (int64_t i = 0; i < k; ++i) ++s.co_selection[e][size_t(chosen[size_t(i)])];
      if (n_examples > 0) {
        auto& b = best[e];
        b.push_back({w[size_t(j)], r});
        if (int64_t(b.size()) >= 4 * n_examples) {  // keep the candidate lists short
          std::nth_element(b.begin(), b.begin() + n_examples, b.end(),
                           [](const auto& x, const auto& y) { return x.first > y.first || (x.first == y.first && x.second < y.second); });
          b.resize(size_t(n_examples));
        }
      }
    }
  }

  const double total_slots = double(n * k);
  for (size_t e = 0; e < uE; ++e) {
    s.load.push_back(n ? double(slots[e]) / total_slots : 0.0);
    s.importance.push_back(n ? prob_sum[e] / double(n) : 0.0);
    s.mean_weight.push_back(slots[e] ? weight_sum[e] / double(slots[e]) : 0.0);
    s.accuracy.push_back(labelled && predictions && s.rows_served[e] ? double(served_correct[e]) / double(s.rows_served[e]) : -1.0);
    if (s.load.back() < 0.01) s.dead.push_back(int64_t(e));
    auto& b = best[e];
    std::sort(b.begin(), b.end(), [](const auto& x, const auto& y) { return x.first > y.first || (x.first == y.first && x.second < y.second); });
    std::vector<int64_t> rows;
    for (size_t i = 0; i < b.size() && int64_t(i) < n_examples; ++i) rows.push_back(b[i].second);
    s.top_rows.push_back(std::move(rows));
  }
  s.load_cv = coefficient_of_variation(s.load);
  s.importance_cv = coefficient_of_variation(s.importance);
  s.gate_entropy = n ? entropy_sum / double(n) : 0.0;
  s.load_entropy = entropy(s.load.data(), E);
  s.mean_margin = n ? margin_sum / double(n) : 0.0;
  s.accuracy_all = labelled && predictions && n ? double(correct) / double(n) : -1.0;
  for (size_t c = 0; c < class_slots.size(); ++c) {
    std::vector<double> row(uE, 0.0);
    const double t = double(s.class_rows[c] * k);
    for (size_t e = 0; e < uE; ++e) row[e] = t > 0 ? double(class_slots[c][e]) / t : 0.0;
    s.class_expert.push_back(std::move(row));
  }
  for (int64_t i = 0; i < E; ++i)
    for (int64_t j = i + 1; j < E; ++j)
      if (s.co_selection[size_t(i)][size_t(j)] > 0) s.top_pairs.push_back({{i, j}, s.co_selection[size_t(i)][size_t(j)]});
  std::stable_sort(s.top_pairs.begin(), s.top_pairs.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return s;
}

}  // namespace moe
