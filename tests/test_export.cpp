// The exporter: checker-valid static graphs for many configs and precisions, run by ONNX Runtime
// at several batch sizes and compared with the hand-written reference forward pass.
#include <nlohmann/json.hpp>
#include <set>

#include "bench/bench.h"
#include "base/errors.h"
#include "model/reference.h"
#include "onnx_export/export_model.h"
#include "ort/ort_classifier.h"
#include "parity_util.h"
#include "test_util.h"
#if MOE_MNIST_HAVE_SERVE
#include "serve/service.h"
#endif

namespace moe {
namespace {

struct Case {
  int64_t n_experts, top_k, emb_size;
};

ModelConfig config_of(const Case& c) {
  ModelConfig m;
  m.n_experts = c.n_experts;
  m.top_k = c.top_k;
  m.emb_size = c.emb_size;
  return m;
}

const Case kCases[] = {{8, 2, 16}, {4, 1, 16}, {16, 4, 16}, {8, 2, 32}};

TEST(Export, CheckerPassesAndGraphIsStaticForEveryConfigAndPrecision) {
  const std::set<std::string> forbidden = {"Loop", "If", "NonZero", "Scan", "Where"};
  for (const Case& c : kCases)
    for (const Precision precision : {Precision::fp32, Precision::fp16, Precision::int8})
      for (const Routing routing : {Routing::dense, Routing::gather, Routing::moe}) {
        if (routing == Routing::moe && precision == Precision::fp16) continue;
        ExportOptions o;
        o.precision = precision;
        o.routing = routing;
        const onnx::ModelProto m = build_onnx_model(test::random_checkpoint(config_of(c), 7), o);
        EXPECT_NO_THROW(check_onnx_model(m)) << to_string(precision) << " " << to_string(routing) << " E=" << c.n_experts;
        for (const auto& n : m.graph().node()) EXPECT_EQ(forbidden.count(n.op_type()), 0u) << n.op_type();
        EXPECT_EQ(m.graph().input(0).type().tensor_type().shape().dim(0).dim_param(), "N");
      }
}

TEST(Export, StaticInt8InputIsTwoFusedNodesAndPassesTheChecker) {
  ExportOptions o;
  o.precision = Precision::int8;
  o.int8_input = Int8Input::static_scale;
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
  o.precision = Precision::fp16;
  o.routing = Routing::moe;
  EXPECT_THROW(build_onnx_model(test::random_checkpoint(ModelConfig{}, 1), o), InputError);
  // Unknown spellings stop at the edge, with the flag named.
  EXPECT_THROW(parse_choice<Precision>("bf16", "--precision"), InputError);
  try {
    parse_choice<Routing>("sparse", "--routing");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_TRUE(test::contains(e.what(), "--routing")) << e.what();
    EXPECT_TRUE(test::contains(e.what(), "dense, gather, moe")) << e.what();
  }
}

// One function names the exported files; bench and export agree through it.
TEST(Export, ModelFileNames) {
  EXPECT_EQ(model_file_name(Precision::fp32), "model.fp32.onnx");
  EXPECT_EQ(model_file_name(Precision::fp16), "model.fp16.onnx");
  EXPECT_EQ(model_file_name(Precision::int8), "model.int8.onnx");
  EXPECT_EQ(model_file_name(Precision::int8, Routing::dense, Int8Input::static_scale), "model.int8-static.onnx");
  EXPECT_EQ(model_file_name(Precision::fp32, Routing::gather), "model.fp32-gather.onnx");
  EXPECT_EQ(model_file_name(Precision::fp32, Routing::moe), "model.fp32-moe.onnx");
  EXPECT_EQ(model_file_name(Precision::fp32, Routing::dense, Int8Input::dynamic, true), "model.fp32-u8.onnx");
  EXPECT_EQ(model_file_name(Precision::fp32, Routing::fused, Int8Input::dynamic, true), "model.fp32-fused-u8.onnx");
}

// Issue #24, UINT8 end to end through the CLI a user types: export --input uint8 (dense and fused),
// eval --input uint8 on them and on native gives the same accuracy as float eval; the byte-reading
// engines say nothing about a float copy, a float graph fed bytes says it copies; a routing without
// a byte graph is refused by name.
TEST(Export, Uint8InputEndToEndThroughTheCli) {
  const auto dir = test::temp_dir("u8cli");
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 3);
  save_checkpoint_meta(dir, ck.meta);
  save_weights(weights_path(dir), ck.weights);
  const std::string data = " --data " + test::mnist_dir() + " --threads 1 --json";
  for (const char* args : {"", " --input uint8", " --routing fused --input uint8"}) {
    const test::CliResult r = test::run_cli("export --checkpoint " + dir + args);
    ASSERT_EQ(r.code, 0) << args << r.err;
  }
  auto accuracy = [&](const std::string& args, bool expect_copy_note) {
    const test::CliResult r = test::run_cli("eval " + args + data);
    EXPECT_EQ(r.code, 0) << args << r.err;
    EXPECT_EQ(test::contains(r.err, "copied to floats"), expect_copy_note) << args << r.err;
    return nlohmann::json::parse(r.out)["accuracy"].get<double>();
  };
  const double want = accuracy("--model " + dir + "/model.fp32.onnx", false);
  EXPECT_EQ(accuracy("--model " + dir + "/model.fp32.onnx --input uint8", true), want);
  EXPECT_EQ(accuracy("--model " + dir + "/model.fp32-u8.onnx --input uint8", false), want);
  EXPECT_EQ(accuracy("--model " + dir + "/model.fp32-u8.onnx", false), want);  // floats rounded to the bytes
  // Where native (and the fused operator, its kernel) reads bytes through an integer embedding (16-bit
  // weights: AVX2, or AVX-512 with VNNI or AMX) a row whose top classes or experts nearly tie may
  // flip, so a few images' worth of difference.
  const double integer_tolerance = test::bytes_take_integer_embedding() ? 5e-4 : 0.0;
  EXPECT_NEAR(accuracy("--model " + dir + "/model.fp32-fused-u8.onnx --input uint8", false), want, integer_tolerance);
  EXPECT_NEAR(accuracy("--backend native --model " + dir + " --input uint8", false), want, integer_tolerance);
  const test::CliResult bad = test::run_cli("export --checkpoint " + dir + " --routing gather --input uint8");
  EXPECT_EQ(bad.code, 1);
  EXPECT_TRUE(test::contains(bad.err, "--input uint8")) << bad.err;
  EXPECT_TRUE(test::contains(bad.err, "gather")) << bad.err;
}

#if MOE_MNIST_HAVE_SERVE
// `serve` declares the input datatype the graph takes: UINT8 for a graph exported with --input
// uint8 (its own model, as a KServe v2 input has one datatype), FP32 otherwise.
TEST(Export, ServedModelDeclaresItsGraphsInputDatatype) {
  const auto dir = test::temp_dir("served-dtype");
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 5);
  for (const bool uint8 : {false, true}) {
    ExportOptions o;
    o.uint8_input = uint8;
    const std::string path = dir + (uint8 ? "/u8.onnx" : "/f.onnx");
    export_onnx(ck, o, path);
    std::vector<std::unique_ptr<Classifier>> engines;
    engines.push_back(make_ort_classifier(path, BackendOptions{}));
    serve::ServiceOptions so;
    so.http.port = 0;
    serve::Service s(so, std::move(engines));
    EXPECT_EQ(s.model().input_datatype, uint8 ? "UINT8" : "FP32");
  }
}
#endif

TEST(Export, OrtMatchesReferenceAtBatch1_7_64_1000) {
  const auto dir = test::temp_dir("ort");
  for (const Case& c : kCases)
    for (const Routing routing : {Routing::dense, Routing::gather, Routing::moe}) {
      const Checkpoint ck = test::random_checkpoint(config_of(c), 11);
      ExportOptions o;
      o.routing = routing;
      const std::string path = dir + "/m.onnx";
      export_onnx(ck, o, path);
      BackendOptions oo;
      oo.threads = 1;
      auto ort = make_ort_classifier(path, oo);
      ReferenceClassifier ref(ck);
      EXPECT_EQ(ort->top_k(), c.top_k);
      for (int64_t n : {1, 7, 64, 1000}) {
        const auto x = test::random_images(n, unsigned(n));
        std::vector<float> a(static_cast<size_t>(n * 10)), b(static_cast<size_t>(n * 10)), pa(static_cast<size_t>(n * c.n_experts)), pb(static_cast<size_t>(n * c.n_experts));
        ort->classify(x.data(), n, a.data(), pa.data());
        ref.classify(x.data(), n, b.data(), pb.data());
        float diff = 0, pdiff = 0;
        for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(a[i] - b[i]));
        for (size_t i = 0; i < pa.size(); ++i) pdiff = std::max(pdiff, std::fabs(pa[i] - pb[i]));
        EXPECT_LT(diff, 1e-4f) << to_string(routing) << " E=" << c.n_experts << " top=" << c.top_k << " emb=" << c.emb_size << " n=" << n;
        EXPECT_LT(pdiff, 1e-5f);
      }
    }
}

// The int8 guard itself, then through make_ort_classifier: an int8 model is refused on cuda and
// tensorrt before any provider library is loaded, so the reason is the same with or without a GPU.
TEST(Export, ForbidsInt8OnGpuBackends) {
  EXPECT_THROW(check_backend_runs_precision(Backend::cuda, Precision::int8, "m.onnx"), UnavailableError);
  EXPECT_THROW(check_backend_runs_precision(Backend::tensorrt, Precision::int8, "m.onnx"), UnavailableError);
  EXPECT_NO_THROW(check_backend_runs_precision(Backend::cpu, Precision::int8, "m.onnx"));
  EXPECT_NO_THROW(check_backend_runs_precision(Backend::cuda, Precision::fp32, "m.onnx"));
  EXPECT_NO_THROW(check_backend_runs_precision(Backend::tensorrt, Precision::fp16, "m.onnx"));

  const auto dir = test::temp_dir("int8");
  ExportOptions o;
  o.precision = Precision::int8;
  export_onnx(test::random_checkpoint(ModelConfig{}, 2), o, dir + "/m.onnx");
  for (const std::string backend : {"cuda", "tensorrt"}) {
    BackendOptions oo;
    oo.backend = parse_choice<Backend>(backend, "backend");
    try {
      make_ort_classifier(dir + "/m.onnx", oo);
      ADD_FAILURE() << backend << " accepted an int8 model";
    } catch (const UnavailableError& e) {
      EXPECT_NE(std::string(e.what()).find("CPU variant"), std::string::npos) << e.what();
    }
  }
}

// Without the provider the message names it; with it, the model runs and matches the reference.
TEST(Export, GpuBackendsNameTheMissingProviderOrRun) {
  const auto dir = test::temp_dir("gpu");
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 2);
  export_onnx(ck, ExportOptions{}, dir + "/m.onnx");
  ReferenceClassifier ref(ck);
  const auto x = test::random_images(64, 5);
  std::vector<float> want(64 * 10);
  ref.classify(x.data(), 64, want.data(), nullptr);
  for (const std::string backend : {"cuda", "tensorrt"}) {
    BackendOptions oo;
    oo.backend = parse_choice<Backend>(backend, "backend");
    std::unique_ptr<Classifier> gpu;
    try {
      gpu = make_ort_classifier(dir + "/m.onnx", oo);
    } catch (const UnavailableError& e) {
      EXPECT_TRUE(test::contains_nocase(e.what(), backend)) << e.what();
      if (test::gpu_required()) ADD_FAILURE() << "MOE_MNIST_REQUIRE_GPU is set, but: " << e.what();
      continue;
    }
    std::vector<float> got(64 * 10);
    gpu->classify(x.data(), 64, got.data(), nullptr);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-3f) << backend << " logit " << i;
  }
}

// The bench engine as a library: a config, an engine factory, a report; a model that was not
// exported is a row that says so, not a failure.
TEST(Export, BenchLibraryMeasuresEveryAvailableVariant) {
  const auto dir = test::temp_dir("bench");
  const Checkpoint ck = test::random_checkpoint(ModelConfig{}, 3);
  save_checkpoint_meta(dir, ck.meta);
  save_weights(weights_path(dir), ck.weights);
  export_onnx(ck, ExportOptions{}, dir + "/" + model_file_name(Precision::fp32));
  BenchConfig c;
  c.model_dir = dir;
  c.data_dir = test::mnist_dir();
  c.split = "test";
  c.limit = 100;
  c.passes = 1;
  c.repeats = 2;
  c.batches = {1, 64};
  c.threads = {1};
  c.backends = {"reference", "cpu"};
  auto open = [](const std::string& model, const BackendOptions& o) -> std::unique_ptr<Classifier> {
    if (o.backend == Backend::torch) throw UnavailableError("no LibTorch here");  // as open_backend without it
    return make_ort_classifier(model, o);
  };
  const BenchReport r = run_bench(c, open, {{"onnxruntime", ort_version()}});
  EXPECT_EQ(r.context.images_per_pass, 100);
  int measured = 0, unavailable = 0;
  for (const BenchRow& row : r.rows) {
    if (!row.available) {
      ++unavailable;
      EXPECT_TRUE(test::contains(row.reason, "not found")) << row.reason;
      continue;
    }
    ++measured;
    EXPECT_GT(row.images_per_second, 0) << row.name();
    EXPECT_LE(row.p50_us, row.p99_us) << row.name();
    EXPECT_GT(row.session_ms, 0) << row.name();
  }
  EXPECT_EQ(measured, 4);     // reference and cpu fp32 dense, at batch 1 and 64
  EXPECT_EQ(unavailable, 5);  // gather, moe, fused, int8, int8-static were not exported
  EXPECT_FALSE(to_markdown(r).empty());
}

TEST(Export, MissingOrGarbageModelIsAnInputError) {
  const auto dir = test::temp_dir("bad");
  EXPECT_THROW(make_ort_classifier(dir + "/missing.onnx", BackendOptions{}), InputError);
  test::write_bytes(dir + "/garbage.onnx", "not a model");
  EXPECT_THROW(make_ort_classifier(dir + "/garbage.onnx", BackendOptions{}), InputError);
}

}  // namespace
}  // namespace moe
