// Micro-benchmarks of the hot pieces with Google Benchmark (not run by CTest; timings belong here,
// not in tests). Random weights of the default config; inputs shaped like MNIST (~80% zeros).
//   build/bin/micro_bench --benchmark_filter=Ort
#include <benchmark/benchmark.h>

#include <filesystem>

#include "model/reference.h"
#include "onnx_export/export.h"
#include "ort/ort_classifier.h"
#include "random_model.h"  // tests/

namespace moe {
namespace {

// Exports the random checkpoint once per variant into the temp folder.
std::string model_file(Precision precision, Routing routing, Int8Input int8_input) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("moe-micro-" + model_file_name(precision, routing, int8_input))).string();
  if (!std::filesystem::exists(path)) {
    ExportOptions o;
    o.precision = precision;
    o.routing = routing;
    o.int8_input = int8_input;
    export_onnx(test::random_checkpoint(ModelConfig{}, 1), o, path);
  }
  return path;
}

void run(benchmark::State& state, Classifier& m) {
  const int64_t n = state.range(0);
  const auto x = test::random_images(n, 2);
  std::vector<float> logits(static_cast<size_t>(n * 10));
  for (auto _ : state) {
    m.classify(x.data(), n, logits.data(), nullptr);
    benchmark::DoNotOptimize(logits.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void Reference(benchmark::State& state) {
  ReferenceClassifier m(test::random_checkpoint(ModelConfig{}, 1));
  run(state, m);
}

void Ort(benchmark::State& state, Precision precision, Routing routing, Int8Input int8_input) {
  BackendOptions o;
  o.threads = 1;
  auto m = make_ort_classifier(model_file(precision, routing, int8_input), o);
  run(state, *m);
}

BENCHMARK(Reference)->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, fp32_dense, Precision::fp32, Routing::dense, Int8Input::dynamic)->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, fp32_gather, Precision::fp32, Routing::gather, Int8Input::dynamic)->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, fp32_moe, Precision::fp32, Routing::moe, Int8Input::dynamic)->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, int8_dynamic, Precision::int8, Routing::dense, Int8Input::dynamic)->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, int8_static, Precision::int8, Routing::dense, Int8Input::static_scale)->Arg(1)->Arg(64)->Arg(1024);

}  // namespace
}  // namespace moe

BENCHMARK_MAIN();
