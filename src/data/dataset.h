// MNIST-style datasets: which folder, which files, and the images as model input.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct Dataset {
  std::string name;             // "mnist" or "fashion-mnist"
  std::string split;            // "train" or "test"
  int64_t n = 0;                // number of images
  std::vector<uint8_t> pixels;  // [n, 784]
  std::vector<uint8_t> labels;  // [n]

  // Images scaled to [0, 1] as float32 [n, 784], the model's input.
  std::vector<float> to_float() const;
};

// The folder to read, the first of: `data_dir` (--data) if given, $MOE_MNIST_DATA if set,
// ./data/<dataset> (the source tree's layout), user_data_dir()/<dataset> (which scripts/setup.sh
// also fills), when it exists. Throws InputError naming every place tried when none does.
std::string resolve_data_dir(const std::string& dataset, const std::string& data_dir);

// The per-user data folder: ${XDG_DATA_HOME:-~/.local/share}/moe-mnist ("" without $HOME).
std::string user_data_dir();

// Loads one split ("train" or "test") from `dir`, accepting plain or ".gz" IDX files.
// Throws InputError on unknown names, missing files, bad files or an image/label count mismatch.
Dataset load_dataset(const std::string& dataset, const std::string& dir, const std::string& split);

}  // namespace moe
