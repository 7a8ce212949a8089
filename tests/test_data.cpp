// IDX reading and the data set layout: real MNIST loads, and every kind of bad file is a clear error.
#include <zlib.h>

#include <cstdlib>
#include <filesystem>

#include "data/dataset.h"
#include "base/errors.h"
#include "data/idx.h"
#include "test_util.h"

namespace moe {
namespace {

std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

std::string images_file(uint32_t n, uint32_t rows, uint32_t cols, size_t payload) {
  return be32(0x803) + be32(n) + be32(rows) + be32(cols) + std::string(payload, '\x7f');
}

std::string labels_file(uint32_t n, size_t payload) { return be32(0x801) + be32(n) + std::string(payload, '\x03'); }

// Expects InputError whose message contains every one of `parts`.
template <typename F>
void expect_error(F f, std::initializer_list<std::string> parts) {
  try {
    f();
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one-line message expected";
  }
}

TEST(Idx, ReadsAWellFormedFile) {
  const auto dir = test::temp_dir("ok");
  test::write_bytes(dir + "/i", images_file(3, 28, 28, 3 * 784));
  test::write_bytes(dir + "/l", labels_file(3, 3));
  const IdxImages im = read_idx_images(dir + "/i");
  EXPECT_EQ(im.n, 3);
  EXPECT_EQ(im.pixels.size(), 3u * 784);
  EXPECT_EQ(im.pixels[100], 0x7f);
  EXPECT_EQ(read_idx_labels(dir + "/l"), std::vector<uint8_t>(3, 3));
}

TEST(Idx, MissingFile) { expect_error([] { read_idx_images("/nonexistent/x-idx3-ubyte"); }, {"/nonexistent/x-idx3-ubyte", "cannot open"}); }

TEST(Idx, WrongMagic) {
  const auto dir = test::temp_dir("magic");
  test::write_bytes(dir + "/l", labels_file(3, 3));
  expect_error([&] { read_idx_images(dir + "/l"); }, {dir + "/l", "wrong magic 0x00000801", "expected 0x00000803"});
  test::write_bytes(dir + "/i", images_file(1, 28, 28, 784));
  expect_error([&] { read_idx_labels(dir + "/i"); }, {dir + "/i", "wrong magic"});
}

TEST(Idx, TruncatedPayloadAndHeader) {
  const auto dir = test::temp_dir("trunc");
  test::write_bytes(dir + "/i", images_file(3, 28, 28, 2 * 784 + 5));
  expect_error([&] { read_idx_images(dir + "/i"); }, {dir + "/i", "truncated payload"});
  test::write_bytes(dir + "/h", be32(0x803) + be32(1));
  expect_error([&] { read_idx_images(dir + "/h"); }, {dir + "/h", "truncated IDX header"});
  test::write_bytes(dir + "/l", labels_file(10, 4));
  expect_error([&] { read_idx_labels(dir + "/l"); }, {dir + "/l", "truncated payload"});
}

TEST(Idx, DimsNot28x28) {
  const auto dir = test::temp_dir("dims");
  test::write_bytes(dir + "/i", images_file(2, 32, 32, 2 * 32 * 32));
  expect_error([&] { read_idx_images(dir + "/i"); }, {dir + "/i", "32x32", "expected 28x28"});
}

TEST(Idx, LabelOutOfRange) {
  const auto dir = test::temp_dir("label");
  test::write_bytes(dir + "/l", be32(0x801) + be32(2) + std::string("\x01\x0c", 2));
  expect_error([&] { read_idx_labels(dir + "/l"); }, {dir + "/l", "label 12 at index 1"});
}

TEST(Idx, ReadsGzip) {
  const auto dir = test::temp_dir("gz");
  const std::string raw = images_file(2, 28, 28, 2 * 784);
  gzFile f = gzopen((dir + "/i.gz").c_str(), "wb");
  gzwrite(f, raw.data(), unsigned(raw.size()));
  gzclose(f);
  EXPECT_EQ(read_idx_images(dir + "/i.gz").n, 2);
  test::write_bytes(dir + "/bad.gz", std::string("\x1f\x8b\x08\x00garbage", 12));
  EXPECT_THROW(read_idx_images(dir + "/bad.gz"), InputError);
}

TEST(Dataset, CountMismatchNamesBothFiles) {
  const auto dir = test::temp_dir("mismatch");
  test::write_bytes(dir + "/t10k-images-idx3-ubyte", images_file(3, 28, 28, 3 * 784));
  test::write_bytes(dir + "/t10k-labels-idx1-ubyte", labels_file(2, 2));
  expect_error([&] { load_dataset("mnist", dir, "test"); }, {"2 labels", "3 images", "t10k-images-idx3-ubyte"});
}

TEST(Dataset, MissingFolderSaysHowToFix) {
  expect_error([] { load_dataset("mnist", "/nonexistent/data", "test"); }, {"/nonexistent/data/t10k-images-idx3-ubyte", "setup.sh"});
  expect_error([] { load_dataset("mnist", "/tmp", "validation"); }, {"validation", "train or test"});
  expect_error([] { resolve_data_dir("cifar", ""); }, {"cifar", "mnist or fashion-mnist"});
}

// --data, then $MOE_MNIST_DATA, then ./data/<dataset>, then the per-user folder; the error names all.
TEST(Dataset, DataFolderIsResolvedInOrderAndTheErrorNamesEveryPlace) {
  const auto dir = test::temp_dir("resolve");
  const auto old_cwd = std::filesystem::current_path();
  const char* old_env = std::getenv("MOE_MNIST_DATA");
  const char* old_xdg = std::getenv("XDG_DATA_HOME");
  const std::string saved_env = old_env ? old_env : "", saved_xdg = old_xdg ? old_xdg : "";
  std::filesystem::create_directories(dir + "/cwd");
  std::filesystem::current_path(dir + "/cwd");
  ::unsetenv("MOE_MNIST_DATA");
  ::setenv("XDG_DATA_HOME", (dir + "/xdg").c_str(), 1);

  expect_error([] { resolve_data_dir("mnist", ""); },
               {"--data", "MOE_MNIST_DATA", "./data/mnist", dir + "/xdg/moe-mnist/mnist", "setup.sh"});
  std::filesystem::create_directories(dir + "/xdg/moe-mnist/mnist");
  EXPECT_EQ(resolve_data_dir("mnist", ""), dir + "/xdg/moe-mnist/mnist");
  std::filesystem::create_directories("data/mnist");
  EXPECT_EQ(resolve_data_dir("mnist", ""), "data/mnist");
  ::setenv("MOE_MNIST_DATA", "/from/env", 1);
  EXPECT_EQ(resolve_data_dir("mnist", ""), "/from/env");
  EXPECT_EQ(resolve_data_dir("mnist", "/from/flag"), "/from/flag");

  std::filesystem::current_path(old_cwd);
  if (old_env) ::setenv("MOE_MNIST_DATA", saved_env.c_str(), 1); else ::unsetenv("MOE_MNIST_DATA");
  if (old_xdg) ::setenv("XDG_DATA_HOME", saved_xdg.c_str(), 1); else ::unsetenv("XDG_DATA_HOME");
}

TEST(Dataset, RealMnistLoads) {
  const Dataset train = load_dataset("mnist", test::mnist_dir(), "train");
  const Dataset test = load_dataset("mnist", test::mnist_dir(), "test");
  EXPECT_EQ(train.n, 60000);
  EXPECT_EQ(test.n, 10000);
  EXPECT_EQ(test.labels[0], 7);  // the first MNIST test digit is a 7
  const auto x = test.to_float();
  EXPECT_EQ(x.size(), 10000u * 784);
  EXPECT_FLOAT_EQ(*std::max_element(x.begin(), x.end()), 1.0f);
}

TEST(Dataset, FashionMnistLoadsFromDebiansGzippedFiles) {
  const std::string dir = std::string(MOE_MNIST_SOURCE_DIR) + "/data/fashion-mnist";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " missing (scripts/setup.sh --fashion)";
  const Dataset test = load_dataset("fashion-mnist", dir, "test");
  EXPECT_EQ(test.n, 10000);
  EXPECT_EQ(test.labels[0], 9);  // the first Fashion-MNIST test item is an ankle boot
}

}  // namespace
}  // namespace moe
