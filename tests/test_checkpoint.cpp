// Model config validation and the safetensors checkpoint format.
#include "model/checkpoint.h"

#include <cmath>
#include <functional>
#include <memory>

#include "base/atomic_file.h"
#include "base/errors.h"
#include "model/checked_classifier.h"
#include "model/reference.h"
#include "random_model.h"
#include "test_util.h"

namespace moe {
namespace {

TEST(ModelConfig, RejectsOutOfRangeSizes) {
  ModelConfig c;
  EXPECT_NO_THROW(c.validate());
  c.top_k = 9;
  EXPECT_THROW(c.validate(), InputError);
  c.top_k = 0;
  EXPECT_THROW(c.validate(), InputError);
  c = ModelConfig{};
  c.emb_size = 0;
  try {
    c.validate();
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("emb_size"), std::string::npos);
  }
}

TEST(Weights, RoundTripsThroughSafetensors) {
  const auto dir = test::temp_dir("rt");
  ModelConfig c;
  c.n_experts = 4;
  c.top_k = 1;
  Checkpoint ck = test::random_checkpoint(c, 1);
  save_weights(dir + "/w.safetensors", ck.weights);
  const Weights back = load_weights(dir + "/w.safetensors");
  ASSERT_EQ(back.size(), ck.weights.size());
  for (const auto& [name, t] : ck.weights) {
    EXPECT_EQ(back.at(name).shape, t.shape) << name;
    EXPECT_EQ(back.at(name).data, t.data) << name;
  }
  EXPECT_NO_THROW(check_weights(back, c, "w"));
  c.emb_size = 32;
  EXPECT_THROW(check_weights(back, c, "w"), InputError);
}

TEST(Weights, MalformedFilesAreClearErrors) {
  const auto dir = test::temp_dir("bad");
  test::write_bytes(dir + "/short", "abc");
  EXPECT_THROW(load_weights(dir + "/short"), InputError);
  test::write_bytes(dir + "/huge", std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10));
  EXPECT_THROW(load_weights(dir + "/huge"), InputError);
  const std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})";
  std::string bytes(8, '\0');
  bytes[0] = char(header.size());
  test::write_bytes(dir + "/offsets", bytes + header + std::string(8, '\0'));
  try {
    load_weights(dir + "/offsets");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'a'"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, MissingPiecesAreNamed) {
  const auto dir = test::temp_dir("ck");
  EXPECT_THROW(load_checkpoint(dir + "/nope"), InputError);
  try {
    load_checkpoint(dir);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
  test::write_bytes(dir + "/config.json", R"({"model":{"experts":2,"top":3}})");
  try {
    load_checkpoint(dir);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("top"), std::string::npos) << e.what();
  }
}

// Hand-computable routing: zero embedding weights make h = embedding bias, the gate bias decides
// the experts, and each expert adds a constant so its contribution is visible in the logits.
TEST(Reference, TopTwoExpertsAndWeightsAreTheHandComputedOnes) {
  ModelConfig c;
  c.n_experts = 4;
  c.top_k = 2;
  c.emb_size = 2;
  c.n_classes = 2;
  Checkpoint ck = test::random_checkpoint(c, 3);
  for (auto& [name, t] : ck.weights) std::fill(t.data.begin(), t.data.end(), 0.f);
  ck.weights["moe.gate.bias"].data = {0.f, 2.f, 1.f, -1.f};  // experts 1 and 2 win
  for (int e = 0; e < 4; ++e) ck.weights[expert_param(e, "fc2", "bias")].data = {float(e + 1), 0.f};
  ck.weights["classifier.weight"].data = {1.f, 0.f, 0.f, 1.f};  // identity
  ReferenceClassifier ref(ck);
  std::vector<float> x(784, 0.5f), logits(2), probs(4);
  ref.classify(x.data(), 1, logits.data(), probs.data());
  const double z = std::exp(0.0) + std::exp(2.0) + std::exp(1.0) + std::exp(-1.0);
  EXPECT_NEAR(probs[1], std::exp(2.0) / z, 1e-6);
  // weights = softmax(p1, p2) over the selected probabilities; output = w1 * 2 + w2 * 3
  const double p1 = std::exp(2.0) / z, p2 = std::exp(1.0) / z;
  const double w1 = std::exp(p1) / (std::exp(p1) + std::exp(p2));
  EXPECT_NEAR(logits[0], w1 * 2 + (1 - w1) * 3, 1e-5);
  EXPECT_NEAR(logits[1], 0.0, 1e-6);
}


// Issue #20, cause 6: a NaN or infinite weight is refused when the weights are checked, naming the
// tensor, whether or not an image would reach it.
TEST(Weights, NonFiniteValuesAreRefusedNamingTheTensor) {
  ModelConfig c;
  c.n_experts = 4;
  c.top_k = 1;
  c.emb_size = 8;
  for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    Checkpoint ck = test::random_checkpoint(c, 1);
    ck.weights[expert_param(3, "fc1", "weight")].data[7] = bad;
    try {
      check_weights(ck.weights, c, "w.safetensors");
      FAIL() << "accepted " << bad;
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("w.safetensors: tensor '" + expert_param(3, "fc1", "weight") + "' holds 1 non-finite value"), std::string::npos) << msg;
      EXPECT_NE(msg.find("at index 7"), std::string::npos) << msg;
    }
    EXPECT_THROW(ReferenceClassifier{ck}, InputError);
  }
}

// A Classifier that answers what it is told to, for the output checks.
class Scripted : public Classifier {
 public:
  int64_t classes = 10, experts = 4;
  float logit = 0.5f, prob = 0.25f;  // every output value
  int64_t bad_row = -1;              // this row's first gate probability becomes NaN
  void classify(const float*, int64_t n, float* logits, float* gate_probs) override {
    std::fill(logits, logits + n * classes, logit);
    if (!gate_probs) return;
    std::fill(gate_probs, gate_probs + n * experts, prob);
    if (bad_row >= 0 && bad_row < n) gate_probs[bad_row * experts] = std::nanf("");
  }
  int64_t n_classes() const override { return classes; }
  int64_t n_experts() const override { return experts; }
  int64_t top_k() const override { return 1; }
  std::string backend() const override { return "scripted"; }
  std::string precision() const override { return "fp32"; }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(CheckedClassifier, RefusesWhatCanBeSeenWrongAtLoad) {
  auto make = [](auto edit) {
    auto m = std::make_unique<Scripted>();
    edit(*m);
    return error_of([&] { CheckedClassifier(std::move(m), "m.onnx"); });
  };
  EXPECT_EQ(make([](Scripted&) {}), "");
  EXPECT_NE(make([](Scripted& m) { m.classes = 5; }).find("m.onnx: the model has 5 classes"), std::string::npos);
  EXPECT_NE(make([](Scripted& m) { m.logit = INFINITY; }).find("non-finite logit (inf)"), std::string::npos);
  EXPECT_NE(make([](Scripted& m) { m.prob = 2.5f; }).find("gate probability of 2.5"), std::string::npos);
  EXPECT_NE(make([](Scripted& m) { m.prob = 0.5f; }).find("summing to 2"), std::string::npos);  // raw scores
  EXPECT_NE(make([](Scripted& m) { m.bad_row = 0; }).find("non-finite gate probability (nan)"), std::string::npos);
}

TEST(CheckedClassifier, NamesTheImageWhoseGateIsNaNEvenWithFiniteLogits) {
  auto inner = std::make_unique<Scripted>();
  Scripted* s = inner.get();
  CheckedClassifier m(std::move(inner), "m.onnx");
  std::vector<float> x(3 * 784), logits(30), probs(12);
  EXPECT_NO_THROW(m.classify(x.data(), 3, logits.data(), probs.data()));
  s->bad_row = 2;
  const std::string msg = error_of([&] { m.classify(x.data(), 3, logits.data(), probs.data()); });
  EXPECT_NE(msg.find("m.onnx (scripted fp32) gives a non-finite gate probability (nan) for image 2, expert 0"), std::string::npos) << msg;
  EXPECT_NO_THROW(m.classify(x.data(), 3, logits.data(), nullptr));  // no gate asked for: the logits are fine
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {
// `train --out --help` trained into a folder named "--help": an output path that starts with '-' is a
// flag that lost its value, refused naming the flag; ./-name still means that name.
TEST(OutputPaths, AFlagLikeValueIsRefusedNotCreated) {
  for (const char* path : {"--help", "-o"}) {
    try {
      check_output_dir(path, "--out");
      ADD_FAILURE() << path << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--out: '" + std::string(path) + "' looks like a flag"), std::string::npos) << e.what();
    }
    EXPECT_THROW(check_output_file(std::string(path) + ".onnx", "--out", {"onnx"}), InputError);
  }
  EXPECT_NO_THROW(check_output_dir("./--help-is-a-name", "--out"));
}
}  // namespace
}  // namespace moe
