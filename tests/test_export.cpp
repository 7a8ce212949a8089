// The exporter: checker-valid static graphs for many configs and precisions, run by ONNX Runtime
// at several batch sizes and compared with the hand-written reference forward pass.
#include <set>

#include "core/errors.h"
#include "core/reference.h"
#include "onnx_export/export_model.h"
#include "ort/ort_classifier.h"
#include "test_util.h"

namespace moe {
namespace {

struct Case {
  int64_t experts, top, emb;
};

ModelConfig config_of(const Case& c) {
  ModelConfig m;
  m.experts = c.experts;
  m.top = c.top;
  m.emb_size = c.emb;
  return m;
}

const Case kCases[] = {{8, 2, 16}, {4, 1, 16}, {16, 4, 16}, {8, 2, 32}};

TEST(Export, CheckerPassesAndGraphIsStaticForEveryConfigAndPrecision) {
  const std::set<std::string> forbidden = {"Loop", "If", "NonZero", "Scan", "Where"};
  for (const Case& c : kCases)
    for (const std::string precision : {"fp32", "fp16", "int8"})
      for (const std::string routing : {"dense", "gather", "moe"}) {
        if (routing == "moe" && precision == "fp16") continue;
        ExportOptions o;
        o.precision = precision;
        o.routing = routing;
        const onnx::ModelProto m = build_onnx_model(test::random_checkpoint(config_of(c), 7), o);
        EXPECT_NO_THROW(check_onnx_model(m)) << precision << " " << routing << " E=" << c.experts;
        for (const auto& n : m.graph().node()) EXPECT_EQ(forbidden.count(n.op_type()), 0u) << n.op_type();
        EXPECT_EQ(m.graph().input(0).type().tensor_type().shape().dim(0).dim_param(), "N");
      }
}

TEST(Export, StaticInt8InputIsTwoFusedNodesAndPassesTheChecker) {
  ExportOptions o;
  o.precision = "int8";
  o.int8_input = "static";
  const onnx::ModelProto m = build_onnx_model(test::random_checkpoint(ModelConfig{}, 5), o);
  EXPECT_NO_THROW(check_onnx_model(m));
  std::multiset<std::string> ops;
  for (const auto& n : m.graph().node()) ops.insert(n.op_type());
  EXPECT_EQ(ops.count("QuantizeLinear"), 1u);
  EXPECT_EQ(ops.count("MatMulIntegerToFloat"), 1u);
  EXPECT_EQ(ops.count("DynamicQuantizeLinear"), 0u);
}

TEST(Export, RejectsUnsupportedCombinations) {
  ExportOptions o;
  o.precision = "fp16";
  o.routing = "moe";
  EXPECT_THROW(build_onnx_model(test::random_checkpoint(ModelConfig{}, 1), o), InputError);
  o.precision = "bf16";
  EXPECT_THROW(build_onnx_model(test::random_checkpoint(ModelConfig{}, 1), o), InputError);
}

TEST(Export, OrtMatchesReferenceAtBatch1_7_64_1000) {
  const auto dir = test::temp_dir("ort");
  for (const Case& c : kCases)
    for (const std::string routing : {"dense", "gather", "moe"}) {
      const Checkpoint ck = test::random_checkpoint(config_of(c), 11);
      ExportOptions o;
      o.routing = routing;
      const std::string path = dir + "/m.onnx";
      export_onnx(ck, o, path);
      OrtOptions oo;
      oo.threads = 1;
      auto ort = make_ort_classifier(path, oo);
      ReferenceClassifier ref(ck);
      EXPECT_EQ(ort->top_k(), c.top);
      for (int64_t n : {1, 7, 64, 1000}) {
        const auto x = test::random_images(n, unsigned(n));
        std::vector<float> a(static_cast<size_t>(n * 10)), b(static_cast<size_t>(n * 10)), pa(static_cast<size_t>(n * c.experts)), pb(static_cast<size_t>(n * c.experts));
        ort->classify(x.data(), n, a.data(), pa.data());
        ref.classify(x.data(), n, b.data(), pb.data());
        float diff = 0, pdiff = 0;
        for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(a[i] - b[i]));
        for (size_t i = 0; i < pa.size(); ++i) pdiff = std::max(pdiff, std::fabs(pa[i] - pb[i]));
        EXPECT_LT(diff, 1e-4f) << routing << " E=" << c.experts << " top=" << c.top << " emb=" << c.emb << " n=" << n;
        EXPECT_LT(pdiff, 1e-5f);
      }
    }
}

TEST(Export, ForbidsInt8OnGpuBackendsAndNamesTheMissingProvider) {
  const auto dir = test::temp_dir("gpu");
  ExportOptions o;
  export_onnx(test::random_checkpoint(ModelConfig{}, 2), o, dir + "/m.onnx");
  OrtOptions oo;
  oo.backend = "cuda";
  try {
    make_ort_classifier(dir + "/m.onnx", oo);
    SUCCEED() << "this machine runs CUDA";
  } catch (const UnavailableError& e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_ort_classifier(dir + "/missing.onnx", OrtOptions{}), InputError);
  test::write_bytes(dir + "/garbage.onnx", "not a model");
  EXPECT_THROW(make_ort_classifier(dir + "/garbage.onnx", OrtOptions{}), InputError);
}

}  // namespace
}  // namespace moe
