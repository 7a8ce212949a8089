// Model config validation and the safetensors checkpoint format.
#include "model/checkpoint.h"
#include "base/errors.h"
#include "model/reference.h"
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

}  // namespace
}  // namespace moe
