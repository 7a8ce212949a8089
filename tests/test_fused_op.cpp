// `export --routing fused` and the ai.moe_mnist.MoeMnist custom operator: the one-node model passes
// what the ONNX checker can check, runs through ONNX Runtime (registered by moe-mnist, and loaded
// as libmoe_mnist_ops.so the way other ONNX Runtime users would) and matches the reference forward
// pass: max |logit diff| <= 1e-4, the same argmax on all 10 000 MNIST test images (near-tie rows
// of the gate reported, not compared).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "data/dataset.h"
#include "base/errors.h"
#include "bench/evaluate.h"
#include "model/reference.h"
#include "onnx_export/export.h"
#include "onnx_export/export_model.h"
#include "ort/ort_classifier.h"
#include "parity_util.h"
#include "test_util.h"

namespace moe {
namespace {

const std::vector<float>& mnist_test_images() {
  static const std::vector<float> x = load_dataset("mnist", test::mnist_dir(), "test").to_float();
  return x;
}

std::string export_fused(const Checkpoint& ck, const std::string& tag, Routing routing = Routing::fused, bool uint8_input = false) {
  ExportOptions o;
  o.routing = routing;
  o.uint8_input = uint8_input;
  const std::string path = test::temp_dir(tag) + "/" + model_file_name(Precision::fp32, routing, Int8Input::dynamic, uint8_input);
  export_onnx(ck, o, path);
  return path;
}

const std::vector<uint8_t>& mnist_test_bytes() {
  static const std::vector<uint8_t> x = load_dataset("mnist", test::mnist_dir(), "test").pixels;
  return x;
}


// uint8_input: the images go in as their bytes (Classifier::classify_u8), which a --input uint8
// model reads as they are; the reference runs on bytes / 255, which are the float images exactly.
void expect_parity(const Checkpoint& ck, const std::string& model, const std::string& what, bool uint8_input = false) {
  const std::vector<float>& x = mnist_test_images();
  const int64_t n = int64_t(x.size() / 784), C = ck.meta.model.n_classes, E = ck.meta.model.n_experts, K = ck.meta.model.top_k;
  ReferenceClassifier ref(ck);
  test::Outputs want{std::vector<float>(size_t(n * C)), std::vector<float>(size_t(n * E))};
  ref.classify(x.data(), n, want.logits.data(), want.probs.data());
  // Byte input through an integer embedding (AVX2 int16, AVX-512 VNNI or AMX): its bounds.
  const test::ParityBounds bound = uint8_input && test::bytes_take_integer_embedding() ? test::kInt8Bounds : test::kFloatBounds;
  for (int threads : {1, 2})
    for (int64_t batch : {int64_t(1000), int64_t(1), int64_t(37)}) {
      BackendOptions o;
      o.threads = threads;
      auto m = make_ort_classifier(model, o);
      ASSERT_EQ(m->reads_uint8(), uint8_input) << what;
      const int64_t rows = batch == 1 ? 500 : n;  // batch 1 on the first 500 images keeps the test short
      const test::Outputs got = uint8_input ? test::run_all(*m, mnist_test_bytes(), rows, batch) : test::run_all(*m, x, rows, batch);
      test::expect_parity_within(got, want, rows, C, E, K, bound,
                                 what + ": through ONNX Runtime, " + std::to_string(threads) + " thread(s), batch " + std::to_string(batch));
    }
}

TEST(FusedOp, ExportIsOneCheckedNodeInTheCustomDomain) {
  const onnx::ModelProto m = [] {
    ExportOptions o;
    o.routing = Routing::fused;
    return build_onnx_model(test::random_checkpoint(ModelConfig{}, 3), o);
  }();
  EXPECT_NO_THROW(check_onnx_model(m));
  ASSERT_EQ(m.graph().node_size(), 1);
  EXPECT_EQ(m.graph().node(0).domain(), "ai.moe_mnist");
  EXPECT_EQ(m.graph().node(0).op_type(), "MoeMnist");
  EXPECT_EQ(m.graph().initializer_size(), 7);
  bool imports_domain = false;
  for (const auto& o : m.opset_import()) imports_domain |= o.domain() == "ai.moe_mnist" && o.version() == 1;
  EXPECT_TRUE(imports_domain);
  // A node reading a tensor nothing defines is caught, though the checker has no schema for it.
  onnx::ModelProto broken = m;
  broken.mutable_graph()->mutable_node(0)->set_input(7, "missing.bias");
  EXPECT_THROW(check_onnx_model(broken), InputError);
}

TEST(FusedOp, ExportRefusesOtherPrecisions) {
  ExportOptions o;
  o.routing = Routing::fused;
  o.precision = Precision::int8;
  try {
    build_onnx_model(test::random_checkpoint(ModelConfig{}, 3), o);
    ADD_FAILURE() << "int8 fused was accepted";
  } catch (const InputError& e) {
    EXPECT_TRUE(test::contains(e.what(), "fp32")) << e.what();
  }
}

TEST(FusedOp, MatchesTheReferenceOnAllMnistTestImages) {
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 13);
  expect_parity(ck, export_fused(ck, "random"), "random 8x16 top-2");
}

// export --input uint8: the fused op reading bytes (MoeMnistU8) and the portable dense graph (Cast,
// 1/255 in the embedding weights), both fed the bytes, against the reference on all test images.
TEST(FusedOp, Uint8InputMatchesTheReferenceOnAllMnistTestImages) {
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 13);
  expect_parity(ck, export_fused(ck, "u8-fused", Routing::fused, true), "fused, uint8 input", true);
  expect_parity(ck, export_fused(ck, "u8-dense", Routing::dense, true), "dense, uint8 input", true);
}

TEST(FusedOp, Uint8ExportDeclaresAByteInputAndRefusesOtherRoutings) {
  ExportOptions o;
  o.uint8_input = true;
  for (Routing r : {Routing::dense, Routing::fused}) {
    o.routing = r;
    const onnx::ModelProto m = build_onnx_model(test::random_checkpoint(ModelConfig{}, 2), o);
    EXPECT_EQ(m.graph().input(0).type().tensor_type().elem_type(), onnx::TensorProto::UINT8) << to_string(r);
  }
  o.routing = Routing::gather;
  try {
    build_onnx_model(test::random_checkpoint(ModelConfig{}, 2), o);
    ADD_FAILURE() << "--input uint8 accepted for gather routing";
  } catch (const InputError& e) {
    EXPECT_TRUE(test::contains(e.what(), "--input uint8")) << e.what();
  }
}

TEST(FusedOp, OtherSizesAndTopK) {
  ModelConfig c;
  c.n_experts = 16, c.top_k = 4, c.emb_size = 40, c.n_classes = 3;
  const Checkpoint ck = test::random_checkpoint(c, 9, 0.2f);
  expect_parity(ck, export_fused(ck, "sizes"), "random E16 k4 D40 C3");
}

TEST(FusedOp, TrainedCheckpoint) {
  const char* dir = std::getenv("MOE_MNIST_FUSED_CHECKPOINT");
  if (!dir) GTEST_SKIP() << "MOE_MNIST_FUSED_CHECKPOINT not set (CTest sets it after the train test)";
  const Checkpoint ck = load_checkpoint(dir);
  expect_parity(ck, export_fused(ck, "trained"), "trained");
}

// What another ONNX Runtime user does: a plain session that loads libmoe_mnist_ops.so. Without it
// the model cannot load, and ONNX Runtime's error names the op.
TEST(FusedOp, LoadsAsACustomOpLibraryInAPlainSession) {
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 21);
  const std::string model = export_fused(ck, "library");
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "test");
  {
    Ort::SessionOptions bare;
    try {
      Ort::Session s(env, model.c_str(), bare);
      ADD_FAILURE() << "the fused model loaded without its op library";
    } catch (const Ort::Exception& e) {
      EXPECT_TRUE(test::contains(e.what(), "MoeMnist")) << e.what();
    }
  }
  Ort::SessionOptions so;
  so.SetIntraOpNumThreads(1);
  so.RegisterCustomOpsLibrary(MOE_MNIST_OPS_LIBRARY);
  Ort::Session session(env, model.c_str(), so);
  const std::vector<float> x = test::random_images(5, 2);
  std::vector<float> logits(50), probs(40), want(50);
  const int64_t in_shape[] = {5, 1, 28, 28}, l_shape[] = {5, 10}, p_shape[] = {5, 8};
  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::Value in = Ort::Value::CreateTensor<float>(mem, const_cast<float*>(x.data()), x.size(), in_shape, 4);
  Ort::Value out[2] = {Ort::Value::CreateTensor<float>(mem, logits.data(), logits.size(), l_shape, 2),
                       Ort::Value::CreateTensor<float>(mem, probs.data(), probs.size(), p_shape, 2)};
  const char* in_names[] = {"input"};
  const char* out_names[] = {"logits", "gate_probs"};
  session.Run(Ort::RunOptions{}, in_names, &in, 1, out_names, out, 2);
  ReferenceClassifier(ck).classify(x.data(), 5, want.data(), nullptr);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(logits[i], want[i], 1e-4) << i;
}

// The op checks its input itself (another graph may feed it any shape): here the graph declares [N, 100].
TEST(FusedOp, WrongInputShapeIsAClearError) {
  ExportOptions o;
  o.routing = Routing::fused;
  onnx::ModelProto m = build_onnx_model(test::random_checkpoint(ModelConfig{}, 4), o);
  auto* shape = m.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
  shape->clear_dim();
  shape->add_dim()->set_dim_param("N");
  shape->add_dim()->set_dim_value(100);
  const std::string model = test::temp_dir("shape") + "/wrong.onnx";
  test::write_bytes(model, m.SerializeAsString());
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "test");
  Ort::SessionOptions so;
  so.RegisterCustomOpsLibrary(MOE_MNIST_OPS_LIBRARY);
  Ort::Session session(env, model.c_str(), so);
  std::vector<float> x(2 * 100, 0.f);
  const int64_t dims[] = {2, 100};
  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::Value in = Ort::Value::CreateTensor<float>(mem, x.data(), x.size(), dims, 2);
  const char* in_names[] = {"input"};
  const char* out_names[] = {"logits", "gate_probs"};
  try {
    session.Run(Ort::RunOptions{}, in_names, &in, 1, out_names, 2);
    ADD_FAILURE() << "a [2, 100] input was accepted";
  } catch (const Ort::Exception& e) {
    EXPECT_TRUE(test::contains(e.what(), "MoeMnist: input must be [N, 1, 28, 28] or [N, 784], got [2, 100]")) << e.what();
  }
}

}  // namespace
}  // namespace moe
