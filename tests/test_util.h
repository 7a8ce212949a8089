// Small helpers shared by the tests.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/checkpoint.h"

namespace moe::test {

// A fresh empty directory under the system temp folder, unique per test.
inline std::string temp_dir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("moe-mnist-") + info->test_suite_name() + "-" + info->name() + "-" + tag;
  for (char& ch : name)
    if (ch == '/') ch = '_';
  const auto dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

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

// Data set folder prepared by scripts/setup.sh, relative to the source tree.
inline std::string mnist_dir() { return std::string(MOE_MNIST_SOURCE_DIR) + "/data/mnist"; }

}  // namespace moe::test
