// Triton's classification extension: a requested output with parameters {"classification": k} comes
// back as a BYTES tensor [N, min(k, classes)] of "score:index[:label]" strings, highest score first,
// formatted as Triton's server does (src/classification.cc: std::to_string of the value, so six
// decimals, then the index, then the label when the model has labels).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe::serve {

// The class labels of a model trained on `dataset` ("mnist": the digits, "fashion-mnist": the
// article names), or none when the dataset is unknown or the class count does not match.
std::vector<std::string> class_labels(const std::string& dataset, int64_t n_classes);

// The top `k` (capped at n) of one row of `n` scores as Triton writes them. Ties keep the lower index
// first; NaN sorts last (Triton's std::sort with `>` leaves both unspecified).
std::vector<std::string> top_k_classes(const float* scores, int64_t n, int64_t k, const std::vector<std::string>& labels);

}  // namespace moe::serve
