#include "data/dataset.h"

#include <cstdlib>
#include <filesystem>

#include "base/errors.h"
#include "data/idx.h"

namespace moe {

std::vector<float> Dataset::to_float() const {
  std::vector<float> out(pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) out[i] = pixels[i] * (1.0f / 255.0f);
  return out;
}

std::string user_data_dir() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return std::string(xdg) + "/moe-mnist";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.local/share/moe-mnist";
  return "";
}

std::string resolve_data_dir(const std::string& dataset, const std::string& data_dir) {
  if (dataset != "mnist" && dataset != "fashion-mnist")
    throw InputError("--dataset: unknown dataset '" + dataset + "', expected mnist or fashion-mnist");
  if (!data_dir.empty()) return data_dir;  // an explicit choice is used as given, and named if it is wrong
  if (const char* env = std::getenv("MOE_MNIST_DATA"); env && *env) return env;
  const std::string local = "data/" + dataset;
  if (std::filesystem::is_directory(local)) return local;
  const std::string user = user_data_dir().empty() ? "" : user_data_dir() + "/" + dataset;
  if (!user.empty() && std::filesystem::is_directory(user)) return user;
  throw InputError("no " + dataset + " data: --data not given, $MOE_MNIST_DATA not set, no ./" + local +
                   (user.empty() ? std::string(" (and no $HOME for the per-user folder)") : ", no " + user) +
                   "; run scripts/setup.sh or pass --data DIR");
}

namespace {

std::string find_file(const std::string& dir, const std::string& base) {
  for (const std::string& candidate : {dir + "/" + base, dir + "/" + base + ".gz"})
    if (std::filesystem::exists(candidate)) return candidate;
  throw InputError(dir + "/" + base + ": missing (also tried .gz); run scripts/setup.sh or pass --data DIR");
}

}  // namespace

Dataset load_dataset(const std::string& dataset, const std::string& dir, const std::string& split) {
  if (split != "train" && split != "test")
    throw InputError("--split: unknown split '" + split + "', expected train or test");
  const std::string prefix = split == "train" ? "train" : "t10k";
  const std::string images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");
  IdxImages images = read_idx_images(images_path);
  std::vector<uint8_t> labels = read_idx_labels(labels_path);
  if (images.n == 0) throw InputError(images_path + ": holds 0 images; a split needs at least one");
  if (int64_t(labels.size()) != images.n)
    throw InputError(labels_path + ": " + std::to_string(labels.size()) + " labels but " + images_path + " has " +
                     std::to_string(images.n) + " images");
  Dataset d;
  d.name = dataset;
  d.split = split;
  d.n = images.n;
  d.pixels = std::move(images.pixels);
  d.labels = std::move(labels);
  return d;
}

}  // namespace moe
