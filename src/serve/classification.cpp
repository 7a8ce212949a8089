#include "serve/classification.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moe::serve {

std::vector<std::string> class_labels(const std::string& dataset, int64_t n_classes) {
  if (n_classes != 10) return {};
  if (dataset == "mnist") return {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  // The Fashion-MNIST label order, from the dataset's own description.
  if (dataset == "fashion-mnist")
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  return {};
}

std::vector<std::string> top_k_classes(const float* scores, int64_t n, int64_t k, const std::vector<std::string>& labels) {
  std::vector<int64_t> idx(size_t(std::max<int64_t>(n, 0)));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [scores](int64_t a, int64_t b) {
    const float x = scores[a], y = scores[b];
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return x > y;
  });
  std::vector<std::string> out;
  for (int64_t j = 0; j < std::min(k, n); ++j) {
    const int64_t c = idx[size_t(j)];
    std::string s = std::to_string(scores[c]) + ":" + std::to_string(c);
    if (size_t(c) < labels.size()) s += ":" + labels[size_t(c)];
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace moe::serve
