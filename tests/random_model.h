// Random weights and MNIST-like inputs, shared by the tests and bench/micro_bench (no GoogleTest here).
#pragma once
#include <random>
#include <vector>

#include "model/checkpoint.h"

namespace moe::test {

// A checkpoint with random weights (uniform in +-scale) for a given config.
inline Checkpoint random_checkpoint(const ModelConfig& c, unsigned seed, float scale = 0.3f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  Checkpoint ck;
  ck.meta.model = c;
  for (const auto& [name, shape] : expected_params(c)) {
    Tensor t;
    t.shape = shape;
    t.data.resize(size_t(t.numel()));
    for (auto& v : t.data) v = u(rng);
    ck.weights[name] = std::move(t);
  }
  return ck;
}

// `n` random MNIST-like images in [0, 1], about 80% zeros like real digits.
inline std::vector<float> random_images(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(size_t(n * 784));
  for (auto& v : x) v = u(rng) < 0.8f ? 0.f : u(rng);
  return x;
}

}  // namespace moe::test
