// Micro-benchmarks of the hot pieces with Google Benchmark (not run by CTest; timings belong here,
// not in tests). Random weights of the default config; inputs shaped like MNIST (~80% zeros).
//   build/bin/micro_bench --benchmark_filter=Ort
#include <benchmark/benchmark.h>

#include <filesystem>
#include <random>

#include "core/reference.h"
#include "onnx_export/export.h"
#include "ort/ort_classifier.h"

namespace moe {
namespace {

Checkpoint random_checkpoint() {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  Checkpoint ck;
  for (const auto& [name, shape] : expected_params(ck.meta.model)) {
    Tensor t;
    t.shape = shape;
    t.data.resize(static_cast<size_t>(t.numel()));
    for (auto& v : t.data) v = u(rng);
    ck.weights[name] = std::move(t);
  }
  return ck;
}

std::vector<float> images(int64_t n) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n * 784));
  for (auto& v : x) v = u(rng) < 0.8f ? 0.f : u(rng);
  return x;
}

// Exports the random checkpoint once per variant into the temp folder.
std::string model_file(const std::string& precision, const std::string& routing, const std::string& int8_input) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("moe-micro-" + precision + "-" + routing + "-" + int8_input + ".onnx")).string();
  if (!std::filesystem::exists(path)) {
    ExportOptions o;
    o.precision = precision;
    o.routing = routing;
    o.int8_input = int8_input;
    export_onnx(random_checkpoint(), o, path);
  }
  return path;
}

void run(benchmark::State& state, Classifier& m) {
  const int64_t n = state.range(0);
  const auto x = images(n);
  std::vector<float> logits(static_cast<size_t>(n * 10));
  for (auto _ : state) {
    m.classify(x.data(), n, logits.data(), nullptr);
    benchmark::DoNotOptimize(logits.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void Reference(benchmark::State& state) {
  ReferenceClassifier m(random_checkpoint());
  run(state, m);
}

void Ort(benchmark::State& state, const std::string& precision, const std::string& routing, const std::string& int8_input) {
  OrtOptions o;
  o.threads = 1;
  auto m = make_ort_classifier(model_file(precision, routing, int8_input), o);
  run(state, *m);
}

BENCHMARK(Reference)->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, fp32_dense, "fp32", "dense", "dynamic")->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, fp32_gather, "fp32", "gather", "dynamic")->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, fp32_moe, "fp32", "moe", "dynamic")->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, int8_dynamic, "int8", "dense", "dynamic")->Arg(1)->Arg(64)->Arg(1024);
BENCHMARK_CAPTURE(Ort, int8_static, "int8", "dense", "static")->Arg(1)->Arg(64)->Arg(1024);

}  // namespace
}  // namespace moe

BENCHMARK_MAIN();
