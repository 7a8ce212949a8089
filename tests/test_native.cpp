// `--backend native` against the reference forward pass, on every code path this CPU can run
// (scalar, AVX2, AVX-512): max |logit diff| <= 1e-4 and the same argmax on all 10 000 MNIST test
// images; rows whose k-th and (k+1)-th gate probabilities nearly tie may route differently and are
// counted and reported, not compared.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "model/checkpoint.h"
#include "data/dataset.h"
#include "base/errors.h"
#include "bench/evaluate.h"
#include "model/reference.h"
#include "native/native_classifier.h"
#include "parity_util.h"
#include "test_util.h"

namespace moe {
namespace {

using test::Outputs;
using test::run_all;

std::vector<Isa> paths_here() {
  std::vector<Isa> v;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (cpu_supports(isa)) v.push_back(isa);
    else std::printf("native path %s: compiled, not tested (this CPU lacks it)\n", to_string(isa).c_str());
  return v;
}

const std::vector<float>& mnist_test_images() {
  static const std::vector<float> x = load_dataset("mnist", test::mnist_dir(), "test").to_float();
  return x;
}

// The formulations of the embedding that exist for this model on this path (sparse always; int16
// reads bytes only: forced for float input, the float rule runs). The AVX-512 integer ones run
// emulated in test_native_int8.cpp.
std::vector<Embed> embeds_here(const FoldedModel& folded, Isa isa) {
  std::vector<Embed> v = {Embed::sparse};
  const PackedModel m = pack_model(folded, isa);
  if (dense_available(m)) v.push_back(Embed::dense);
  if (int16_fits(m)) v.push_back(Embed::int16);
  return v;
}

// Every path x every formulation x float and byte input, 1 and 2 threads, batches 1000 and 37 (a
// remainder that splits unevenly and leaves partial dense tiles), against the reference (for bytes:
// the reference on bytes / 255).
void expect_parity(const Checkpoint& ck, const std::vector<float>& x, const std::string& what) {
  const int64_t n = int64_t(x.size() / 784), C = ck.meta.model.n_classes, E = ck.meta.model.n_experts, K = ck.meta.model.top_k;
  ReferenceClassifier ref(ck);
  const Outputs want = run_all(ref, x, n, 1000);
  const std::vector<uint8_t> bytes = test::to_bytes(x);
  std::vector<float> from_bytes(x.size());
  for (size_t i = 0; i < x.size(); ++i) from_bytes[i] = float(bytes[i]) / 255.f;
  const Outputs want_u8 = from_bytes == x ? want : run_all(ref, from_bytes, n, 1000);
  const FoldedModel folded = fold_model(ck);
  for (Isa isa : paths_here())
    for (Embed embed : embeds_here(folded, isa))
      for (bool u8 : {false, true})
        for (int threads : {1, 2})
          for (int64_t batch : {int64_t(1000), int64_t(37)}) {
            auto m = make_native_classifier(folded, NativeOptions{threads, isa, embed});
            const Outputs got = u8 ? run_all(*m, bytes, n, batch) : run_all(*m, x, n, batch);
            const Outputs& w = u8 ? want_u8 : want;
            const std::string path = to_string(isa) + " " + to_string(embed) + (u8 ? " uint8" : " fp32");
            // The integer embedding quantizes the weights to 16 bits: the AVX-512 integer kernels' bounds.
            const test::ParityBounds& bounds = u8 && embed == Embed::int16 ? test::kInt8Bounds : test::kFloatBounds;
            test::expect_parity_within(got, w, n, C, E, K, bounds,
                                       what + ": native " + path + ", " + std::to_string(threads) + " thread(s), batch " +
                                           std::to_string(batch));
          }
}

TEST(NativeParity, RandomModelOnAllMnistTestImagesEveryPath) {
  expect_parity(test::random_checkpoint(ModelConfig{}, 13), mnist_test_images(), "random 8x16 top-2");
}

// Other sizes reach the kernel's other register blockings (1, 2 and 4 vectors per row) and the
// general one (more than 4 vectors), and k = 1 and k = 4.
TEST(NativeParity, OtherModelSizes) {
  const std::vector<float> x(mnist_test_images().begin(), mnist_test_images().begin() + 2000 * 784);
  struct Size { int64_t E, K, D, C; };
  for (Size s : {Size{4, 1, 4, 10}, Size{4, 4, 12, 10}, Size{16, 4, 16, 10}, Size{16, 2, 40, 3}, Size{1, 1, 7, 2}}) {
    ModelConfig c;
    c.n_experts = s.E, c.top_k = s.K, c.emb_size = s.D, c.n_classes = s.C;
    expect_parity(test::random_checkpoint(c, 7, 0.2f), x,
                  "random E" + std::to_string(s.E) + " k" + std::to_string(s.K) + " D" + std::to_string(s.D) + " C" + std::to_string(s.C));
  }
}

// The trained checkpoint of the CLI tests, when CTest names it (full build, after the train test).
TEST(NativeParity, TrainedCheckpoint) {
  const char* dir = std::getenv("MOE_MNIST_NATIVE_CHECKPOINT");
  if (!dir) GTEST_SKIP() << "MOE_MNIST_NATIVE_CHECKPOINT not set (the full build's CTest sets it)";
  expect_parity(load_checkpoint(dir), mnist_test_images(), "trained");
}

// Within one formulation an image's outputs are the same bits whatever batch (full or partial
// dense tile) and threads it runs with.
TEST(Native, ThreadsAndBatchSizesGiveTheSameBits) {
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 3);
  const std::vector<float> x = test::random_images(100, 5);
  const std::vector<uint8_t> bytes = test::to_bytes(x);
  for (Embed embed : embeds_here(fold_model(ck), best_isa())) {
    auto one = make_native_classifier(fold_model(ck), NativeOptions{1, best_isa(), embed});
    auto two = make_native_classifier(fold_model(ck), NativeOptions{2, best_isa(), embed});
    const Outputs a = run_all(*one, x, 100, 100), a8 = run_all(*one, bytes, 100, 100);
    for (int64_t batch : {1, 3, 9, 16, 17, 63, 100}) {
      const Outputs b = run_all(*two, x, 100, batch), b8 = run_all(*two, bytes, 100, batch);
      EXPECT_EQ(a.logits, b.logits) << to_string(embed) << " batch " << batch;
      EXPECT_EQ(a.probs, b.probs) << to_string(embed) << " batch " << batch;
      EXPECT_EQ(a8.logits, b8.logits) << to_string(embed) << " bytes, batch " << batch;
      EXPECT_EQ(a8.probs, b8.probs) << to_string(embed) << " bytes, batch " << batch;
    }
  }
}

// A non-finite pixel (the server accepts any IEEE-754 value, as Triton does) gives that image NaN
// logits on every path and formulation, never a crash or an out-of-range expert, and leaves the
// other images of its batch, routed side by side with it, exactly as they are alone.
TEST(Native, NonFinitePixelsStayInTheirImage) {
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 3);
  std::vector<float> x = test::random_images(20, 7);
  const float bad[] = {std::nanf(""), INFINITY, -INFINITY};
  for (int i = 0; i < 3; ++i) x[size_t((3 + 5 * i) * 784 + 400)] = bad[i];  // images 3, 8, 13
  for (Isa isa : paths_here())
    for (Embed embed : embeds_here(fold_model(ck), isa)) {
      auto m = make_native_classifier(fold_model(ck), NativeOptions{1, isa, embed});
      const Outputs all = run_all(*m, x, 20, 20);
      for (int64_t i = 0; i < 20; ++i) {
        const bool poisoned = i == 3 || i == 8 || i == 13;
        const std::vector<float> one(x.begin() + i * 784, x.begin() + (i + 1) * 784);
        const Outputs alone = run_all(*m, one, 1, 1);
        for (int64_t c = 0; c < 10; ++c) {
          const float got = all.logits[size_t(i * 10 + c)];
          if (poisoned) EXPECT_TRUE(std::isnan(got)) << to_string(isa) << " " << to_string(embed) << " image " << i << " class " << c << ": " << got;
          else EXPECT_EQ(got, alone.logits[size_t(c)]) << to_string(isa) << " " << to_string(embed) << " image " << i << " class " << c;
        }
      }
    }
}

// The automatic choice is one of the formulations, per path and batch size; forcing one is honoured,
// and forcing dense where the model does not fit it is refused with the reason.
TEST(Native, EmbeddingChoice) {
  const FoldedModel f = fold_model(test::random_checkpoint(ModelConfig{}, 3));
  for (Isa isa : paths_here()) {
    const PackedModel m = pack_model(f, isa);
    for (int64_t batch : {1, 4, 8, 64, 1024}) {
      const Embed e = choose_embed(m, batch);
      EXPECT_TRUE(e == Embed::sparse || (e == Embed::dense && dense_available(m))) << to_string(isa) << " batch " << batch;
    }
    EXPECT_EQ(choose_embed(m, 1), Embed::sparse) << "one image never pays for a padded tile";
    for (Embed forced : embeds_here(f, isa)) EXPECT_EQ(choose_embed(pack_model(f, isa, forced), 64, forced == Embed::int16), forced);
    if (int16_fits(m)) {
      for (int64_t batch : {1, 64}) EXPECT_EQ(choose_embed(m, batch, true), Embed::int16) << "bytes on " << to_string(isa);
      EXPECT_EQ(choose_embed(pack_model(f, isa, Embed::int16), 64, false), Embed::sparse) << "floats never take the integer embedding";
    }
  }
  ModelConfig wide;
  wide.emb_size = 64;  // 64 + 8 outputs: more than 4 vectors on every path
  try {
    pack_model(fold_model(test::random_checkpoint(wide, 3)), Isa::avx2, Embed::dense);
    ADD_FAILURE() << "dense was accepted for a model it does not fit";
  } catch (const UnavailableError& e) {
    EXPECT_TRUE(test::contains(e.what(), "dense")) << e.what();
  }
  ::setenv("MOE_MNIST_NATIVE_EMBED", "dense", 1);
  EXPECT_EQ(embed_from_env(), Embed::dense);
  ::setenv("MOE_MNIST_NATIVE_EMBED", "blocked", 1);
  EXPECT_THROW(embed_from_env(), InputError);
  ::unsetenv("MOE_MNIST_NATIVE_EMBED");
  EXPECT_EQ(embed_from_env(), Embed::auto_);
}

TEST(Native, PathChoiceFromTheEnvironment) {
  ::setenv("MOE_MNIST_NATIVE_ISA", "scalar", 1);
  EXPECT_EQ(isa_from_env(), Isa::scalar);
  ::setenv("MOE_MNIST_NATIVE_ISA", "sse9", 1);
  try {
    isa_from_env();
    ADD_FAILURE() << "an unknown path name was accepted";
  } catch (const InputError& e) {
    EXPECT_TRUE(test::contains(e.what(), "MOE_MNIST_NATIVE_ISA")) << e.what();
    EXPECT_TRUE(test::contains(e.what(), "avx2")) << e.what();
  }
  if (!cpu_supports(Isa::avx512)) {
    ::setenv("MOE_MNIST_NATIVE_ISA", "avx512", 1);
    EXPECT_THROW(isa_from_env(), UnavailableError);
  }
  ::unsetenv("MOE_MNIST_NATIVE_ISA");
  EXPECT_EQ(isa_from_env(), best_isa());
}

TEST(Native, RejectsInconsistentFoldedWeights) {
  FoldedModel f = fold_model(test::random_checkpoint(ModelConfig{}, 1));
  f.fc1_b.pop_back();
  try {
    make_native_classifier(f, NativeOptions{1, Isa::scalar});
    ADD_FAILURE() << "a short tensor was accepted";
  } catch (const InputError& e) {
    EXPECT_TRUE(test::contains(e.what(), "fc1 bias")) << e.what();
  }
}

}  // namespace
}  // namespace moe
