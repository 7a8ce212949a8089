// The MoE routing rule in one place: top-k of the gate's probabilities, then a softmax over the k
// chosen probabilities gives each chosen expert's combine weight. The LibTorch model and the ONNX
// graph builder implement the same rule in their own ops and are tested against this; the reference
// forward pass, `predict`, `experts`, training's statistics and the server call it.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace moe {

// gate_probs: [n_experts] softmax probabilities of one image. Writes the k chosen expert indices
// (highest probability first; ties go to the lower index, as TopK does) and their weights, which sum
// to 1. Requires 1 <= k <= n_experts.
void route(const float* gate_probs, int64_t n_experts, int64_t k, int64_t* experts, float* weights);

// Routing statistics over n rows of gate output, the numbers MoE libraries report.
struct RoutingStats {
  int64_t n_rows = 0, n_experts = 0, k = 0, n_classes = 0;
  std::vector<double> load;         // [E] share of the n*k top-k slots each expert got; sums to 1
  std::vector<double> importance;   // [E] mean gate probability; sums to 1
  std::vector<double> mean_weight;  // [E] mean combine weight over the slots it got (0 when none)
  std::vector<int64_t> rows_served; // [E] rows that chose the expert among their k
  std::vector<double> accuracy;     // [E] accuracy of the rows it served (-1: none served or no labels)
  // Coefficient of variation std/mean over experts, with the sample (E-1) std as LibTorch's
  // Tensor::std(): importance_cv^2 is exactly what the training loss multiplies by w_importance.
  double load_cv = 0, importance_cv = 0;
  double gate_entropy = 0;          // mean over rows of the gate distribution's entropy, nats (max ln E)
  double load_entropy = 0;          // entropy of `load`, nats (ln E when perfectly balanced)
  double mean_margin = 0;           // mean over rows of top-1 minus top-2 gate probability (top-1 when E = 1)
  std::vector<int64_t> dead;        // experts with load < 1%
  std::vector<std::vector<double>> class_expert;  // [C][E] per label: share of its top-k slots per expert (rows sum to 1)
  std::vector<int64_t> class_rows;                // [C] rows per label
  std::vector<std::vector<int64_t>> co_selection; // [E][E] rows choosing both i and j; diagonal = rows_served
  std::vector<std::pair<std::pair<int64_t, int64_t>, int64_t>> top_pairs;  // (i < j), count; most frequent first
  std::vector<std::vector<int64_t>> top_rows;     // [E] row indices with the highest combine weight, best first
  double accuracy_all = -1;         // accuracy over all rows (-1 without labels)
};

// gate_probs: [n, E]. labels / predictions: [n] or null (then no per-class matrix / accuracies);
// n_classes sizes the class matrix. n_examples: rows kept per expert in top_rows (ties: lower row).
// Requires 1 <= k <= E.
RoutingStats routing_stats(const float* gate_probs, int64_t n, int64_t n_experts, int64_t k, const uint8_t* labels = nullptr,
                           const int64_t* predictions = nullptr, int64_t n_classes = 10, int64_t n_examples = 0);

// std/mean with the (n-1) sample std; 0 for fewer than 2 values or a zero mean.
double coefficient_of_variation(const std::vector<double>& v);
// -sum p ln p over the entries > 0, nats.
double entropy(const double* p, int64_t n);

// Forces expert `dropped`'s probability to 0 and re-normalises the rest to sum 1 (in place, [n_experts]),
// the ablation `experts --drop-expert` runs. Leaves a row alone when nothing else is left.
void drop_expert(float* gate_probs, int64_t n_experts, int64_t dropped);

}  // namespace moe
