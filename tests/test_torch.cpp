// The LibTorch model (routing, gradients, determinism) and, with the checkpoint the training test
// wrote, logits parity between LibTorch and every ONNX Runtime CPU variant over all 10 000 test images.
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <set>

#include "data/dataset.h"
#include "base/errors.h"
#include "bench/evaluate.h"
#include "model/recipe.h"
#include "model/reference.h"
#include "model/routing.h"
#include "libtorch/model.h"
#include "libtorch/torch_api.h"
#include "ort/ort_classifier.h"
#include "parity_util.h"
#include "test_util.h"

namespace moe {
namespace {

Net small_net(int64_t experts = 8, int64_t top = 2) {
  torch::manual_seed(0);
  ModelConfig c;
  c.n_experts = experts;
  c.top_k = top;
  return Net(c);
}

TEST(Model, OutputShapes) {
  Net net = small_net();
  net->eval();
  for (int64_t b : {1, 7, 64}) {
    NetOutput o = net->forward(torch::rand({b, 784}), TorchStyle::sparse);
    EXPECT_EQ(o.logits.sizes(), (std::vector<int64_t>{b, 10}));
    EXPECT_EQ(o.moe.gate_probs.sizes(), (std::vector<int64_t>{b, 8}));
    EXPECT_EQ(o.moe.top_idx.sizes(), (std::vector<int64_t>{b, 2}));
    EXPECT_EQ(o.moe.importance_loss.dim(), 0);
  }
}

TEST(Model, EachRowUsesExactlyTopDistinctExpertsWithWeightsSummingToOne) {
  for (int64_t top : {1, 2, 3}) {
    Net net = small_net(8, top);
    net->train();  // with gate noise
    NetOutput o = net->forward(torch::rand({64, 784}), TorchStyle::sparse);
    torch::Tensor combine = torch::zeros({64, 8}).scatter(1, o.moe.top_idx, o.moe.top_w);  // [B, E]
    EXPECT_TRUE((combine.gt(0).sum(1) == top).all().item<bool>()) << "top=" << top;
    EXPECT_TRUE(torch::allclose(combine.sum(1), torch::ones({64}), 1e-5, 1e-6));
  }
}

// The module's topk + softmax is the one rule of core/routing.h: same experts, same weights, and the
// statistics of training (routing_stats over gate_probs) see the slots the model used.
TEST(Model, RoutingMatchesCoreRouteAndTheNoiseFlagIsHonoured) {
  for (int64_t top : {1, 2, 4}) {
    Net net = small_net(8, top);
    net->eval();
    torch::NoGradGuard no_grad;
    NetOutput o = net->forward(torch::rand({128, 784}), TorchStyle::sparse);
    torch::Tensor p = o.moe.gate_probs.contiguous(), idx = o.moe.top_idx.contiguous(), w = o.moe.top_w.contiguous();
    std::vector<int64_t> chosen(static_cast<size_t>(top));
    std::vector<float> weights(static_cast<size_t>(top));
    for (int64_t r = 0; r < 128; ++r) {
      route(p.data_ptr<float>() + r * 8, 8, top, chosen.data(), weights.data());
      for (int64_t j = 0; j < top; ++j) {
        EXPECT_EQ(idx[r][j].item<int64_t>(), chosen[size_t(j)]) << "row " << r << " top=" << top;
        EXPECT_NEAR(w[r][j].item<float>(), weights[size_t(j)], 1e-6);
      }
    }
  }
  ModelConfig c;
  c.noisy_gating = false;
  torch::manual_seed(0);
  Net quiet(c);
  quiet->train();  // training mode, but no noise: the choice is the eval-mode choice
  const torch::Tensor x = torch::rand({64, 784});
  torch::NoGradGuard no_grad;
  const torch::Tensor train_idx = quiet->forward(x).moe.top_idx;
  quiet->eval();
  EXPECT_TRUE(torch::equal(train_idx, quiet->forward(x).moe.top_idx));
}

TEST(Model, ForcedGateRoutesEverythingToThatExpert) {
  Net net = small_net();
  net->eval();
  torch::NoGradGuard no_grad;
  net->moe->gate->weight.zero_();
  net->moe->gate->bias.zero_();
  net->moe->gate->bias[5] = 20.f;
  // Expert 5 outputs a large constant; everything else is small, so it must dominate y.
  auto* e5 = net->moe->experts[5]->as<Expert>();
  e5->fc2->bias.fill_(100.f);
  NetOutput o = net->forward(torch::rand({32, 784}), TorchStyle::sparse);
  EXPECT_TRUE((o.moe.top_idx.select(1, 0) == 5).all().item<bool>());
  EXPECT_TRUE((o.moe.top_w.select(1, 0) > 0.7).all().item<bool>());
  EXPECT_TRUE((o.moe.y.mean(1) > 50.f).all().item<bool>());
}

TEST(Model, GradientsReachGateNoiseAndEverySelectedExpertOnly) {
  Net net = small_net();
  net->train();
  NetOutput o = net->forward(torch::rand({16, 784}), TorchStyle::sparse);
  (torch::cross_entropy_loss(o.logits, torch::randint(0, 10, {16})) + o.moe.importance_loss).backward();
  EXPECT_GT(net->moe->gate->weight.grad().abs().sum().item<float>(), 0.f);
  EXPECT_GT(net->moe->noise->weight.grad().abs().sum().item<float>(), 0.f);
  EXPECT_GT(net->embedding->weight.grad().abs().sum().item<float>(), 0.f);
  torch::Tensor used = torch::bincount(o.moe.top_idx.reshape({-1}), {}, 8);
  for (int64_t e = 0; e < 8; ++e) {
    const torch::Tensor g = net->moe->experts[e]->as<Expert>()->fc2->bias.grad();
    const bool has_grad = g.defined() && g.abs().sum().item<float>() > 0.f;
    EXPECT_EQ(has_grad, used[e].item<int64_t>() > 0) << "expert " << e;
  }
}

TEST(Model, EvalIsDeterministicTrainIsNoisy) {
  Net net = small_net();
  torch::Tensor x = torch::rand({64, 784});
  net->eval();
  EXPECT_TRUE(torch::equal(net->forward(x, TorchStyle::sparse).logits, net->forward(x, TorchStyle::sparse).logits));
  net->train();
  EXPECT_FALSE(torch::equal(net->forward(x, TorchStyle::sparse).moe.top_idx, net->forward(x, TorchStyle::sparse).moe.top_idx));
}

TEST(Model, LoopAndSparseDispatchAndReferenceAgree) {
  Net net = small_net();
  net->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::rand({100, 784});
  torch::Tensor sparse = net->forward(x, TorchStyle::sparse).logits, loop = net->forward(x, TorchStyle::loop).logits;
  EXPECT_LT((sparse - loop).abs().max().item<float>(), 1e-5f);
  Checkpoint ck;
  ck.meta.model = net->config;
  ck.weights = weights_from(net);
  ReferenceClassifier ref(ck);
  std::vector<float> logits(1000);
  ref.classify(x.contiguous().data_ptr<float>(), 100, logits.data(), nullptr);
  torch::Tensor r = torch::from_blob(logits.data(), {100, 10});
  EXPECT_LT((sparse - r).abs().max().item<float>(), 1e-5f);
}

// The batched style (every expert on every row, a combine matrix zero for unchosen experts) is the
// sparse model: same logits, same loss, and the same gradient for every parameter, including zero
// for experts no row chose. Routing is made deterministic (no gate noise) so both see the same
// experts; the importance loss stays in.
TEST(Model, BatchedExpertsGiveTheSparseOutputsAndGradients) {
  for (int64_t top : {1, 2, 3}) {
    for (int64_t batch : {1, 5, 64}) {
      ModelConfig c;
      c.top_k = top;
      c.noisy_gating = false;
      torch::manual_seed(7);
      Net net(c);
      net->train();
      torch::Tensor x = torch::rand({batch, 784}), labels = torch::randint(0, 10, {batch});
      std::map<TorchStyle, std::vector<torch::Tensor>> grads;
      std::map<TorchStyle, torch::Tensor> logits;
      for (TorchStyle style : {TorchStyle::sparse, TorchStyle::loop, TorchStyle::batched}) {
        net->zero_grad();
        NetOutput o = net->forward(x, style);
        (torch::cross_entropy_loss(o.logits, labels) + o.moe.importance_loss).backward();
        logits[style] = o.logits.detach();
        for (const auto& p : net->parameters()) grads[style].push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
      }
      const auto names = net->named_parameters().keys();
      for (TorchStyle style : {TorchStyle::loop, TorchStyle::batched}) {
        EXPECT_LT((logits[style] - logits[TorchStyle::sparse]).abs().max().item<float>(), 1e-5f) << to_string(style);
        for (size_t i = 0; i < names.size(); ++i) {
          const torch::Tensor& want = grads[TorchStyle::sparse][i];
          const torch::Tensor& got = grads[style][i];
          EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-6))
              << to_string(style) << " top " << top << " batch " << batch << " " << names[i] << ": max diff "
              << (got - want).abs().max().item<float>();
          // An expert no row chose gets exactly zero, not a rounding residue.
          if (want.abs().max().item<float>() == 0.f) {
            EXPECT_EQ(got.abs().max().item<float>(), 0.f) << names[i];
          }
        }
      }
    }
  }
}

// --- recipe pieces (core/recipe.h) ---------------------------------------------------------------

TEST(Recipe, LearningRateSchedules) {
  const int64_t n = 1000;
  for (int64_t i : {0, 500, 999}) EXPECT_DOUBLE_EQ(lr_at(LrSchedule::constant, 1e-3, i, n, 0), 1e-3);
  EXPECT_NEAR(lr_at(LrSchedule::constant, 1e-3, 49, n, 100), 0.5e-3, 1e-12);  // linear warm-up
  EXPECT_NEAR(lr_at(LrSchedule::cosine, 1e-3, 0, n, 0), 1e-3, 1e-12);
  EXPECT_NEAR(lr_at(LrSchedule::cosine, 1e-3, 500, n, 0), 0.5e-3, 1e-12);
  EXPECT_LT(lr_at(LrSchedule::cosine, 1e-3, 999, n, 0), 1e-8);
  EXPECT_NEAR(lr_at(LrSchedule::onecycle, 1e-3, 0, n, 0), 1e-3 / 25, 1e-12);
  EXPECT_NEAR(lr_at(LrSchedule::onecycle, 1e-3, 300, n, 0), 1e-3, 1e-12);  // the peak at 30%
  EXPECT_NEAR(lr_at(LrSchedule::onecycle, 1e-3, 999, n, 0), 1e-3 / 25 / 1e4, 1e-12);
  double previous = 1;
  for (int64_t i = 300; i < n; ++i) {  // never rises after the peak
    const double lr = lr_at(LrSchedule::onecycle, 1e-3, i, n, 0);
    EXPECT_LE(lr, previous);
    previous = lr;
  }
}

TEST(Recipe, ShiftMovesEachImageByAtMostNPixelsAndKeepsItsInk) {
  std::vector<float> images(50 * 784, 0.f);
  for (int i = 0; i < 50; ++i) images[size_t(i * 784 + 14 * 28 + 14)] = 1.f;  // one dot in the middle
  shift_images(images.data(), 50, 2, 123);
  std::set<std::pair<int, int>> offsets;
  for (int i = 0; i < 50; ++i) {
    int found = 0;
    for (int p = 0; p < 784; ++p)
      if (images[size_t(i * 784 + p)] == 1.f) {
        ++found;
        const int dy = p / 28 - 14, dx = p % 28 - 14;
        EXPECT_LE(std::abs(dx), 2);
        EXPECT_LE(std::abs(dy), 2);
        offsets.insert({dx, dy});
      }
    EXPECT_EQ(found, 1) << "image " << i;
  }
  EXPECT_GT(offsets.size(), 10u);  // random, not one fixed shift
  std::vector<float> again(50 * 784, 0.f);
  for (int i = 0; i < 50; ++i) again[size_t(i * 784 + 14 * 28 + 14)] = 1.f;
  shift_images(again.data(), 50, 2, 123);
  EXPECT_EQ(images, again);  // the seed decides
  // A dot at the border leaves the image rather than wrapping around.
  std::vector<float> edge(784, 0.f);
  edge[27] = 1.f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<float> e = edge;
    shift_images(e.data(), 1, 3, seed);
    for (int p = 0; p < 784; ++p)
      if (e[size_t(p)] == 1.f) {
        EXPECT_GE(p % 28, 24);
      }
  }
  EXPECT_EQ(parse_augment("shift:3"), 3);
  EXPECT_EQ(parse_augment("none"), 0);
  EXPECT_THROW(parse_augment("shift:0"), InputError);
  EXPECT_THROW(parse_augment("shift"), InputError);
}

// --- parity on the trained checkpoint (CTest fixture: train + export ran first) ---------------

using test::near_tie;
using test::Outputs;
using test::run_all;

class Parity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(std::string(MOE_MNIST_TEST_RUN) + "/model.fp32.onnx")) return;
    const Dataset d = load_dataset("mnist", test::mnist_dir(), "test");
    x_ = new std::vector<float>(d.to_float());
    labels_ = new std::vector<uint8_t>(d.labels);
    auto torch_model = make_torch_classifier(MOE_MNIST_TEST_RUN);
    torch_ = new Outputs(run_all(*torch_model, *x_, 10000));
  }
  void SetUp() override {
    if (!x_) GTEST_SKIP() << "no exported model in " << MOE_MNIST_TEST_RUN << " (run the train/export tests first)";
  }
  static std::string model(const std::string& name) { return std::string(MOE_MNIST_TEST_RUN) + "/" + name; }
  static double accuracy(const Outputs& o) {
    int64_t correct = 0;
    for (int64_t i = 0; i < 10000; ++i) correct += argmax(&o.logits[size_t(i * 10)], 10) == (*labels_)[size_t(i)];
    return correct / 10000.0;
  }
  static void expect_fp32_parity(const std::string& file) {
    BackendOptions oo;
    oo.threads = 1;
    auto m = make_ort_classifier(model(file), oo);
    const Outputs o = run_all(*m, *x_, 10000);
    int64_t ties = 0, checked = 0;
    float max_diff = 0;
    for (int64_t i = 0; i < 10000; ++i) {
      if (near_tie(&torch_->probs[size_t(i * 8)], 8, m->top_k())) {
        ++ties;
        continue;
      }
      ++checked;
      for (int64_t c = 0; c < 10; ++c)
        max_diff = std::max(max_diff, std::fabs(o.logits[size_t(i * 10 + c)] - torch_->logits[size_t(i * 10 + c)]));
      ASSERT_EQ(argmax(&o.logits[size_t(i * 10)], 10), argmax(&torch_->logits[size_t(i * 10)], 10)) << "image " << i;
    }
    std::printf("%s vs torch: max |logit diff| %.2e over %lld images, %lld near-tie rows reported, not compared\n",
                file.c_str(), max_diff, (long long)checked, (long long)ties);
    EXPECT_LE(max_diff, 1e-4f);
    EXPECT_LE(ties, 10);
  }
  static std::vector<float>* x_;
  static std::vector<uint8_t>* labels_;
  static Outputs* torch_;
};
std::vector<float>* Parity::x_ = nullptr;
std::vector<uint8_t>* Parity::labels_ = nullptr;
Outputs* Parity::torch_ = nullptr;

TEST_F(Parity, OrtCpuFp32DenseMatchesTorchOnAllTestImages) { expect_fp32_parity("model.fp32.onnx"); }

TEST_F(Parity, OrtCpuContribMoEMatchesTorchOnAllTestImages) { expect_fp32_parity("model.fp32-moe.onnx"); }

TEST_F(Parity, OrtCpuGatherRoutingMatchesTorchOnAllTestImages) { expect_fp32_parity("model.fp32-gather.onnx"); }

TEST_F(Parity, Int8AccuracyWithinPointThreeOfFp32) {
  for (const char* file : {"model.int8.onnx", "model.int8-static.onnx"}) {
    BackendOptions oo;
    auto m = make_ort_classifier(model(file), oo);
    const double acc8 = accuracy(run_all(*m, *x_, 10000)), acc32 = accuracy(*torch_);
    std::printf("%s accuracy %.2f%% vs fp32 %.2f%%\n", file, 100 * acc8, 100 * acc32);
    EXPECT_NEAR(acc8, acc32, 0.003) << file;
  }
}

TEST_F(Parity, Fp16OnCpuRunsWithArgmaxAgreementOrSaysClearlyItCannot) {
  BackendOptions oo;
  std::unique_ptr<Classifier> m;
  try {
    m = make_ort_classifier(model("model.fp16.onnx"), oo);
  } catch (const UnavailableError& e) {
    const std::string why = e.what();
    EXPECT_NE(why.find("fp16"), std::string::npos) << why;
    EXPECT_NE(why.find("model.fp16.onnx"), std::string::npos) << why;
    GTEST_SKIP() << "CPU EP cannot run fp16 here: " << why;
  }
  const Outputs o = run_all(*m, *x_, 10000);
  int64_t agree = 0;
  for (int64_t i = 0; i < 10000; ++i)
    agree += argmax(&o.logits[size_t(i * 10)], 10) == argmax(&torch_->logits[size_t(i * 10)], 10);
  std::printf("fp16 on CPU: argmax agreement %.2f%%\n", agree / 100.0);
  EXPECT_GE(agree, 9990);
}

// GPU (label "gpu"): skips itself where ONNX Runtime's CUDA EP cannot run.
TEST_F(Parity, GpuCudaFp32ArgmaxMatchesCpuOnAllTestImages) {
  BackendOptions oo;
  oo.backend = Backend::cuda;
  std::unique_ptr<Classifier> m;
  try {
    m = make_ort_classifier(model("model.fp32.onnx"), oo);
  } catch (const UnavailableError& e) {
    EXPECT_TRUE(test::contains_nocase(e.what(), "cuda")) << e.what();
    if (test::gpu_required()) FAIL() << "MOE_MNIST_REQUIRE_GPU is set, but: " << e.what();
    GTEST_SKIP() << e.what();
  }
  const Outputs o = run_all(*m, *x_, 10000);
  for (int64_t i = 0; i < 10000; ++i)
    ASSERT_EQ(argmax(&o.logits[size_t(i * 10)], 10), argmax(&torch_->logits[size_t(i * 10)], 10)) << "image " << i;
}

}  // namespace
}  // namespace moe
