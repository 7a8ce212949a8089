// The integer embedding of byte input (src/native/kernel_int8.h): AVX-512 VNNI and AMX-INT8. No CPU
// here has them, so their algorithm runs in CI through an emulation of the instructions
// (native_emulated.h, the same source as the real kernels), against the reference forward pass on
// all 10,000 MNIST test images; the real instructions are forced and tested the same way where the
// CPU has them. Also: the weight split, the choice between formulations, and a refused AMX
// permission falling back cleanly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/errors.h"
#include "bench/evaluate.h"
#include "data/dataset.h"
#include "model/checkpoint.h"
#include "model/reference.h"
#include "native/native_classifier.h"
#include "native_emulated.h"
#include "parity_util.h"
#include "test_util.h"

namespace moe {
namespace {

using test::Outputs;
using test::run_all;

// The bounds measured for the integer embedding (test::kInt8Bounds, parity_util.h; the figures are
// printed by the tests below). Rows whose k-th and (k+1)-th gate probabilities lie within its tie
// gap may route differently after the weights' rounding: counted, not compared.
constexpr test::ParityBounds kBound = test::kInt8Bounds;

const std::vector<uint8_t>& mnist_test_bytes() {
  static const std::vector<uint8_t> x = test::to_bytes(load_dataset("mnist", test::mnist_dir(), "test").to_float());
  return x;
}

float expect_close(const Outputs& got, const Outputs& want, int64_t n, int64_t C, int64_t E, int64_t K,
                   const std::string& what) {
  return test::expect_parity_within(got, want, n, C, E, K, kBound, what);
}

// The emulated VNNI and AMX kernels (and the real ones where this CPU has them) against the
// reference on bytes / 255; VNNI and AMX compute the same integer sums, so their outputs are equal.
void expect_int8_parity(const Checkpoint& ck, const std::vector<uint8_t>& bytes, const std::string& what) {
  const int64_t n = int64_t(bytes.size() / 784), C = ck.meta.model.n_classes, E = ck.meta.model.n_experts,
                K = ck.meta.model.top_k;
  std::vector<float> x(bytes.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(bytes[i]) / 255.f;
  ReferenceClassifier ref(ck);
  const Outputs want = run_all(ref, x, n, 1000);
  const FoldedModel folded = fold_model(ck);
  const PackedModel m = pack_model(folded, Isa::avx512, Embed::auto_, Int8Support{});
  ASSERT_TRUE(int8_fits(m)) << what;
  const Outputs vnni = test::run_batches([&](const uint8_t* p, int64_t b, float* l, float* g) { test::forward_vnni_emulated(m, p, b, l, g); },
                                 bytes, n, C, E, 1000);
  expect_close(vnni, want, n, C, E, K, what + ": emulated vnni, batch 1000");
  for (int64_t batch : {int64_t(1000), int64_t(37)}) {
    const Outputs amx = test::run_batches([&](const uint8_t* p, int64_t b, float* l, float* g) { test::forward_amx_emulated(m, p, b, l, g); },
                                  bytes, n, C, E, batch);
    EXPECT_EQ(amx.logits, vnni.logits) << what << ": emulated amx and vnni differ, batch " << batch;
    EXPECT_EQ(amx.probs, vnni.probs) << what << ": emulated amx and vnni differ, batch " << batch;
  }
  const Outputs vnni37 = test::run_batches([&](const uint8_t* p, int64_t b, float* l, float* g) { test::forward_vnni_emulated(m, p, b, l, g); },
                                   bytes, n, C, E, 37);
  EXPECT_EQ(vnni37.logits, vnni.logits) << what << ": vnni depends on the batch";
  // The real instructions, forced through the classifier (1 and 2 threads), where this CPU has them.
  const Int8Support here = int8_support();
  std::vector<Outputs> real;  // batch 1000, 1 thread, per real path run
  for (Embed e : {Embed::vnni, Embed::amx}) {
    if (!(e == Embed::vnni ? here.vnni : here.amx)) {
      std::printf("native path avx512 %s: compiled, not tested (this CPU lacks it%s)\n", to_string(e).c_str(),
                  e == Embed::amx && cpu_has_amx_int8() ? ", or Linux refused its permission" : "");
      continue;
    }
    for (int threads : {1, 2}) {
      auto c = make_native_classifier(folded, NativeOptions{threads, Isa::avx512, e});
      for (int64_t batch : {int64_t(1000), int64_t(37)}) {
        const Outputs got = run_all(*c, bytes, n, batch);
        expect_close(got, want, n, C, E, K,
                     what + ": real " + to_string(e) + ", " + std::to_string(threads) + " thread(s), batch " + std::to_string(batch));
        if (threads == 1 && batch == 1000) real.push_back(got);
      }
    }
  }
  if (real.size() == 2) {
    EXPECT_EQ(real[0].logits, real[1].logits) << what << ": real vnni and amx differ";
    EXPECT_EQ(real[0].probs, real[1].probs) << what << ": real vnni and amx differ";
  }
}

TEST(NativeInt8, EmulatedKernelsOnAllMnistTestImages) {
  expect_int8_parity(test::random_checkpoint(ModelConfig{}, 13), mnist_test_bytes(), "random 8x16 top-2");
}

// The trained checkpoint of the CLI tests, when CTest names it (full build, after the train test).
TEST(NativeInt8, TrainedCheckpoint) {
  const char* dir = std::getenv("MOE_MNIST_NATIVE_CHECKPOINT");
  if (!dir) GTEST_SKIP() << "MOE_MNIST_NATIVE_CHECKPOINT not set (the full build's CTest sets it)";
  expect_int8_parity(load_checkpoint(dir), mnist_test_bytes(), "trained");
}

// The other column counts (16, 48 and 64 columns: 1, 3 and 4 blocks of 16) on 2,000 images.
TEST(NativeInt8, OtherModelSizes) {
  const std::vector<uint8_t> x(mnist_test_bytes().begin(), mnist_test_bytes().begin() + 2000 * 784);
  struct Size { int64_t E, K, D, C; };
  for (Size s : {Size{4, 1, 4, 10}, Size{8, 2, 40, 10}, Size{16, 4, 48, 3}}) {
    ModelConfig c;
    c.n_experts = s.E, c.top_k = s.K, c.emb_size = s.D, c.n_classes = s.C;
    expect_int8_parity(test::random_checkpoint(c, 7, 0.2f), x,
                       "random E" + std::to_string(s.E) + " k" + std::to_string(s.K) + " D" + std::to_string(s.D));
  }
}

// The 16-bit weights split into two int8 that recombine exactly, within half a step of the float
// weight (and float rounding); a column's largest weight gets the largest step count (32639), which still splits.
TEST(NativeInt8, WeightSplit) {
  const FoldedModel f = fold_model(test::random_checkpoint(ModelConfig{}, 5));
  const PackedModel m = pack_model(f, Isa::avx512, Embed::auto_, Int8Support{});
  ASSERT_EQ(m.GQ, 32);
  for (int64_t c = 0; c < m.GQ; ++c) {
    int32_t max_q = 0;
    for (int64_t p = 0; p < m.I; ++p) {
      const int64_t at = (p / 4) * 2 * m.GQ * 4 + c * 4 + p % 4;
      const int32_t wq = 256 * m.embed_gate_q[size_t(at)] + m.embed_gate_q[size_t(at + m.GQ * 4)];
      max_q = std::max(max_q, std::abs(wq));
      const float w = c < f.D + f.E ? m.embed_gate_w_u8[size_t(p * m.GP + c)] : 0.f;
      ASSERT_LE(std::fabs(double(wq) * m.embed_gate_qscale[size_t(c)] - w), 0.505 * m.embed_gate_qscale[size_t(c)])
          << "column " << c << " pixel " << p;
    }
    EXPECT_EQ(max_q, c < f.D + f.E ? 32639 : 0) << "column " << c;
  }
}

int requests = 0;
bool refuse() { return ++requests, false; }
bool grant() { return ++requests, true; }

// AMX, else VNNI, for byte input from a tile up, on what the process may run; a refused permission
// leaves VNNI or the float kernels, and forcing a path the process cannot run is a clear error.
TEST(NativeInt8, ChoiceAndRefusedPermission) {
  requests = 0;
  EXPECT_FALSE(int8_support_with(true, true, &refuse).amx);
  EXPECT_TRUE(int8_support_with(true, true, &refuse).vnni);
  EXPECT_EQ(requests, 2);
  EXPECT_FALSE(int8_support_with(true, false, &grant).amx) << "no CPU support: the permission is not asked";
  EXPECT_EQ(requests, 2);
  EXPECT_TRUE(int8_support_with(false, true, &grant).amx);
  if (!cpu_has_amx_int8()) {
    EXPECT_FALSE(request_amx_permission()) << "Linux granted tile state on a CPU without AMX";
  }

  const FoldedModel f = fold_model(test::random_checkpoint(ModelConfig{}, 3));
  const PackedModel both = pack_model(f, Isa::avx512, Embed::auto_, Int8Support{true, true});
  EXPECT_EQ(choose_embed(both, 64, true), Embed::amx);
  EXPECT_EQ(choose_embed(both, 8, true), Embed::vnni);
  EXPECT_EQ(choose_embed(both, 1, true), Embed::sparse);
  EXPECT_EQ(choose_embed(both, 64, false), Embed::dense) << "float input never takes the integer embedding";
  const PackedModel refused = pack_model(f, Isa::avx512, Embed::auto_, int8_support_with(true, true, &refuse));
  EXPECT_EQ(choose_embed(refused, 64, true), Embed::vnni);
  const PackedModel none = pack_model(f, Isa::avx512, Embed::auto_, int8_support_with(false, true, &refuse));
  EXPECT_EQ(choose_embed(none, 64, true), Embed::dense);
  EXPECT_EQ(choose_embed(pack_model(f, Isa::avx512, Embed::vnni, Int8Support{true, false}), 64, false), Embed::dense);
  try {
    pack_model(f, Isa::avx512, Embed::amx, int8_support_with(true, true, &refuse));
    ADD_FAILURE() << "amx was accepted with the permission refused";
  } catch (const UnavailableError& e) {
    EXPECT_TRUE(test::contains(e.what(), "permission")) << e.what();
  }
  EXPECT_THROW(pack_model(f, Isa::avx2, Embed::vnni, Int8Support{true, true}), UnavailableError);
  ModelConfig wide;
  wide.emb_size = 64;  // 72 outputs: more than 64 columns
  EXPECT_THROW(pack_model(fold_model(test::random_checkpoint(wide, 3)), Isa::avx512, Embed::vnni, Int8Support{true, true}),
               UnavailableError);
  // This process, as detected: forcing what it lacks is refused by the classifier, with the reason.
  const Int8Support here = int8_support();
  if (!here.amx) {
    EXPECT_THROW(make_native_classifier(f, NativeOptions{1, best_isa(), Embed::amx}), UnavailableError);
  }
  if (!here.vnni) {
    EXPECT_THROW(make_native_classifier(f, NativeOptions{1, best_isa(), Embed::vnni}), UnavailableError);
  }
  // native_forward asked for amx or vnni on a model packed without them runs the float kernels' rule.
  const PackedModel plain = pack_model(f, best_isa(), Embed::auto_, Int8Support{});
  const std::vector<uint8_t> x(mnist_test_bytes().begin(), mnist_test_bytes().begin() + 40 * 784);
  std::vector<float> a(40 * 10), b(40 * 10), c(40 * 10);
  native_forward(plain, x.data(), 40, a.data(), nullptr, Embed::amx);
  native_forward(plain, x.data(), 40, b.data(), nullptr, Embed::vnni);
  native_forward(plain, x.data(), 40, c.data(), nullptr, dense_available(plain) ? Embed::dense : Embed::sparse);
  EXPECT_EQ(a, c);
  EXPECT_EQ(b, c);

  ::setenv("MOE_MNIST_NATIVE_EMBED", "amx", 1);
  EXPECT_EQ(embed_from_env(), Embed::amx);
  ::setenv("MOE_MNIST_NATIVE_EMBED", "vnni", 1);
  EXPECT_EQ(embed_from_env(), Embed::vnni);
  ::unsetenv("MOE_MNIST_NATIVE_EMBED");
}

}  // namespace
}  // namespace moe
