// The bench engine: per configuration, engine creation and the first (cold) call are timed on
// their own, then one untimed warm-up pass, then `repeats` timed runs of `passes` passes.
#include "bench/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "base/atomic_file.h"
#include "model/backend_options.h"
#include "model/checked_classifier.h"
#include "model/checkpoint.h"
#include "data/dataset.h"
#include "base/errors.h"
#include "bench/evaluate.h"
#include "bench/read_bound.h"
#include "ort/ort_profile.h"
#include "report/plot.h"
#include "base/process.h"
#include "model/reference.h"
#include "report/stats.h"

namespace moe {

namespace {

bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }
bool has_batch(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// One engine configuration to measure.
struct Variant {
  std::string backend, precision, variant, model;
  BackendOptions options;
  bool uint8_input = false;  // fed the image bytes (Classifier::classify_u8), not floats
};

std::vector<Variant> variants(const BenchConfig& a) {
  std::vector<Variant> v;
  auto want = [&](const std::string& b) { return has(a.backends, b); };
  auto onnx = [&](Backend backend, Precision precision, const std::string& variant, const std::string& file,
                  bool trt_fp16 = false) {
    Variant x{to_string(backend), to_string(precision), variant, a.model_dir + "/" + file, {}};
    x.options.backend = backend;
    x.options.trt_fp16 = trt_fp16;
    v.push_back(x);
  };
  if (want("reference")) v.push_back({"reference", "fp32", "plain", a.model_dir, {}});
  if (want("native")) {
    Variant x{"native", "fp32", "fused", a.model_dir, {}};
    x.options.backend = Backend::native;
    v.push_back(x);
    x.precision = "uint8";  // the same kernel reading the bytes: a quarter of the memory traffic
    x.uint8_input = true;
    v.push_back(x);
  }
  if (want("torch"))
    for (TorchStyle style : {TorchStyle::sparse, TorchStyle::loop}) {
      Variant x{"torch", "fp32", to_string(style), a.model_dir, {}};
      x.options.backend = Backend::torch;
      x.options.torch_style = style;
      v.push_back(x);
    }
  const std::string fp32 = model_file_name(Precision::fp32), fp16 = model_file_name(Precision::fp16);
  if (want("cpu")) {
    onnx(Backend::cpu, Precision::fp32, "dense", fp32);
    onnx(Backend::cpu, Precision::fp32, "gather", model_file_name(Precision::fp32, Routing::gather));
    onnx(Backend::cpu, Precision::fp32, "moe", model_file_name(Precision::fp32, Routing::moe));
    onnx(Backend::cpu, Precision::fp32, "fused", model_file_name(Precision::fp32, Routing::fused));
    // The graphs exported with --input uint8, fed the image bytes: rows only where they were exported.
    for (Routing r : {Routing::dense, Routing::fused}) {
      const std::string file = model_file_name(Precision::fp32, r, Int8Input::dynamic, true);
      if (!std::filesystem::exists(a.model_dir + "/" + file)) continue;
      onnx(Backend::cpu, Precision::fp32, to_string(r), file);
      v.back().precision = "uint8";
      v.back().uint8_input = true;
    }
    if (a.cpu_fp16) onnx(Backend::cpu, Precision::fp16, "dense", fp16);
    onnx(Backend::cpu, Precision::int8, "dense", model_file_name(Precision::int8));
    onnx(Backend::cpu, Precision::int8, "static-in", model_file_name(Precision::int8, Routing::dense, Int8Input::static_scale));
  }
  if (want("cuda")) {
    onnx(Backend::cuda, Precision::fp32, "dense", fp32);
    onnx(Backend::cuda, Precision::fp16, "dense", fp16);
  }
  if (want("tensorrt")) {
    onnx(Backend::tensorrt, Precision::fp32, "dense", fp32);
    onnx(Backend::tensorrt, Precision::fp16, "dense", fp32, true);  // TensorRT picks fp16 kernels itself
  }
  return v;
}

std::unique_ptr<Classifier> open_variant(const Variant& v, int threads, const OpenEngine& open) {
  if (v.backend == "reference") return checked(std::make_unique<ReferenceClassifier>(load_checkpoint(v.model)), v.model);
  if (v.backend != "torch" && v.backend != "native" && !std::filesystem::exists(v.model))
    throw UnavailableError(v.model + " not found (run: moe-mnist export --checkpoint " +
                           std::filesystem::path(v.model).parent_path().string() + " ...)");
  BackendOptions o = v.options;
  o.threads = threads;
  return open(v.model, o);
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return 1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// With a `yardstick` (native), each timed run of `v` is paired with a timed run of the yardstick in
// the same configuration just before it, and vs_native is the ratio of the two medians: on a shared
// machine whose load drifts over minutes, rows measured minutes apart are not comparable, pairs are.
// Only single-threaded engines are paired: with intra-op threads, one engine's pool still spinning
// after its run takes a core from the other's (measured: native 40% slower right after ONNX Runtime).
// With a `bound`, each timed run is also paired with a timed read of the memory read bound's working
// set at the same thread count, and vs_read_bound is the ratio of the two medians (read_bound_ips
// says it was measured so): the read bound's own row is timed minutes later, and this machine's
// speed drifted 1.3x over such a span.
BenchRow measure(const Variant& v, const std::string& mode, int threads, int64_t batch, const BenchConfig& a,
                 const OpenEngine& open, const std::vector<float>& x, const std::vector<uint8_t>& bytes,
                 const std::vector<uint8_t>& y, const Variant* yardstick = nullptr, ReadBound* bound = nullptr) {
  auto run = [&](const std::vector<Classifier*>& engines, int64_t passes, bool record, bool uint8_input) {
    return uint8_input ? evaluate_parallel(engines, bytes, y, batch, passes, record)
                       : evaluate_parallel(engines, x, y, batch, passes, record);
  };
  BenchRow row = BenchRow::of(v.backend, v.precision, v.variant, mode, threads, batch);
  const int n_engines = mode == "streams" ? threads : 1;
  const int engine_threads = mode == "streams" ? 1 : threads;
  const OpenedEngines opened = open_timed(n_engines, [&] { return open_variant(v, engine_threads, open); }, x, batch);
  row.session_ms = opened.session_ms;
  row.first_run_ms = opened.first_run_ms;
  std::vector<Classifier*> ptrs;
  for (auto& e : opened.engines) ptrs.push_back(e.get());

  OpenedEngines paired;
  std::vector<Classifier*> paired_ptrs;
  if (engine_threads > 1) yardstick = nullptr;
  if (yardstick) {
    paired = open_timed(n_engines, [&] { return open_variant(*yardstick, engine_threads, open); }, x, batch);
    for (auto& e : paired.engines) paired_ptrs.push_back(e.get());
    run(paired_ptrs, 1, false, yardstick->uint8_input);
  }
  run(ptrs, 1, false, v.uint8_input);  // warm-up pass, untimed
  std::vector<double> ips, seconds, latencies, paired_ips, bound_ips;
  int64_t correct = 0, images = 0;
  if (bound) bound->run(threads, a.passes);  // warm-up
  for (int64_t r = 0; r < a.repeats; ++r) {
    if (yardstick) paired_ips.push_back(run(paired_ptrs, a.passes, false, yardstick->uint8_input).images_per_second());
    if (bound) bound_ips.push_back(bound->run(threads, a.passes));
    const EvalResult e = run(ptrs, a.passes, true, v.uint8_input);
    ips.push_back(e.images_per_second());
    seconds.push_back(e.seconds);
    latencies.insert(latencies.end(), e.batch_seconds.begin(), e.batch_seconds.end());
    correct += e.correct;
    images += e.images;
  }
  row.accuracy = double(correct) / double(images);
  row.seconds = median(seconds);
  row.images_per_second = median(ips);
  row.ips_min = *std::min_element(ips.begin(), ips.end());
  row.ips_max = *std::max_element(ips.begin(), ips.end());
  if (yardstick) row.vs_native = row.images_per_second / median(paired_ips);
  if (bound) {
    row.read_bound_ips = median(bound_ips);
    row.vs_read_bound = row.images_per_second / row.read_bound_ips;
  }
  row.p50_us = 1e6 * quantile(latencies, 0.5);
  row.p90_us = 1e6 * quantile(latencies, 0.9);
  row.p99_us = 1e6 * quantile(latencies, 0.99);
  return row;
}

// The reference row is the yardstick only if it computes what LibTorch computes.
void check_reference(const BenchConfig& a, const OpenEngine& open, const std::vector<float>& x, int64_t n) {
  std::unique_ptr<Classifier> torch;
  try {
    BackendOptions o;
    o.backend = Backend::torch;
    torch = open(a.model_dir, o);
  } catch (const UnavailableError&) {
    std::fprintf(stderr, "bench: no LibTorch in this build, the reference row is not cross-checked\n");
    return;
  }
  ReferenceClassifier ref(load_checkpoint(a.model_dir));
  const int64_t m = std::min<int64_t>(n, 2000), C = ref.n_classes();
  std::vector<float> l1(static_cast<size_t>(m * C)), l2(static_cast<size_t>(m * C));
  ref.classify(x.data(), m, l1.data(), nullptr);
  torch->classify(x.data(), m, l2.data(), nullptr);
  float diff = 0;
  for (size_t i = 0; i < l1.size(); ++i) diff = std::max(diff, std::fabs(l1[i] - l2[i]));
  if (!(diff <= 1e-4f))
    throw InputError("bench: the reference forward pass disagrees with LibTorch (max |logit diff| " + std::to_string(diff) +
                     " > 1e-4 on " + std::to_string(m) + " images); not benchmarking against a wrong yardstick");
  std::fprintf(stderr, "bench: reference vs LibTorch: max |logit diff| %.1e on %lld images\n", double(diff), (long long)m);
}

// The native row is the yardstick of the ONNX Runtime rows only if it computes what the reference
// computes (rows whose k-th and (k+1)-th gate probabilities tie within 1e-6 may route differently).
void check_native(const BenchConfig& a, const OpenEngine& open, const std::vector<float>& x, int64_t n) {
  BackendOptions o;
  o.backend = Backend::native;
  o.threads = 1;
  std::unique_ptr<Classifier> native = open(a.model_dir, o);
  ReferenceClassifier ref(load_checkpoint(a.model_dir));
  const int64_t m = std::min<int64_t>(n, 2000), C = ref.n_classes(), E = ref.n_experts(), K = ref.top_k();
  std::vector<float> l1(size_t(m * C)), l2(size_t(m * C)), p1(size_t(m * E)), p2(size_t(m * E));
  ref.classify(x.data(), m, l1.data(), p1.data());
  native->classify(x.data(), m, l2.data(), p2.data());
  float diff = 0;
  for (int64_t i = 0; i < m; ++i) {
    std::vector<float> p(p1.begin() + i * E, p1.begin() + (i + 1) * E);
    std::sort(p.rbegin(), p.rend());
    if (K < E && p[size_t(K - 1)] - p[size_t(K)] < 1e-6f) continue;
    for (int64_t c = 0; c < C; ++c) diff = std::max(diff, std::fabs(l1[size_t(i * C + c)] - l2[size_t(i * C + c)]));
  }
  if (!(diff <= 1e-4f))
    throw InputError("bench: the native forward pass disagrees with the reference (max |logit diff| " + std::to_string(diff) +
                     " > 1e-4 on " + std::to_string(m) + " images); not benchmarking against a wrong yardstick");
  std::fprintf(stderr, "bench: native vs reference: max |logit diff| %.1e on %lld images\n", double(diff), (long long)m);
}

// bench --profile: each ONNX Runtime CPU fp32 graph once more with the profiler on (see BenchConfig::profile).
void profile_graphs(const BenchConfig& a, const std::vector<Variant>& vs, const OpenEngine& open, const std::vector<float>& x,
                    const std::vector<uint8_t>& y, BenchReport& report) {
  const int64_t batch = has_batch(a.batches, 64) ? 64 : a.batches.front();
  const int threads = *std::max_element(a.threads.begin(), a.threads.end());
  const int64_t n = std::min<int64_t>(int64_t(y.size()), 100 * batch);
  const std::vector<float> xs(x.begin(), x.begin() + n * 784);
  const std::vector<uint8_t> ys(y.begin(), y.begin() + n);
  const std::string stem = a.profile.size() > 5 && a.profile.substr(a.profile.size() - 5) == ".json"
                               ? a.profile.substr(0, a.profile.size() - 5) : a.profile;
  for (const Variant& v : vs) {
    if (v.backend != "cpu" || v.precision != "fp32") continue;
    BackendOptions o = v.options;
    o.threads = threads;
    o.profile = stem + "." + v.variant + ".json";
    try {
      std::unique_ptr<Classifier> engine = open(v.model, o);
      evaluate(*engine, xs, ys, batch, 1);
    } catch (const UnavailableError&) {
      continue;  // listed as not available in the table already
    }
    report.profiles.push_back("profile " + o.profile + ": cpu fp32 " + v.variant + ", batch " + std::to_string(batch) + ", " +
                              std::to_string(threads) + " intra-op thread(s), " + std::to_string(n) + " images\n" +
                              to_text(summarize_profile(o.profile)));
    std::fprintf(stderr, "bench: wrote %s\n", o.profile.c_str());
  }
}

}  // namespace

void write_plot(const BenchReport& report, const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext != ".svg" && ext != ".png") throw InputError("--plot " + path + ": expected a .svg or .png file name");
  plot_series(throughput_series(report), path.substr(0, path.size() - ext.size()), {ext.substr(1)});
}

OpenedEngines open_timed(int n_engines, const std::function<std::unique_ptr<Classifier>()>& open,
                         const std::vector<float>& x, int64_t batch) {
  OpenedEngines o;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n_engines; ++i) o.engines.push_back(open());
  o.session_ms = ms_since(t0);
  const int64_t b = std::min<int64_t>(batch, int64_t(x.size() / 784));
  std::vector<float> logits(static_cast<size_t>(b * o.engines[0]->n_classes()));
  t0 = std::chrono::steady_clock::now();
  o.engines[0]->classify(x.data(), b, logits.data(), nullptr);
  o.first_run_ms = ms_since(t0);
  return o;
}

BenchReport run_bench(const BenchConfig& a, const OpenEngine& open,
                      const std::vector<std::pair<std::string, std::string>>& versions) {
  if (a.repeats <= 0 || a.passes <= 0) throw InputError("--repeats and --passes must be > 0");
  for (int64_t b : a.batches)
    if (b <= 0) throw InputError("--batches: batch sizes must be > 0, got " + std::to_string(b));
  for (int t : a.threads)
    if (t <= 0) throw InputError("--threads: thread counts must be > 0, got " + std::to_string(t));
    else check_threads(t, "--threads");
  load_checkpoint_meta(a.model_dir);  // a clear error early when DIR is not a model directory

  Dataset d = load_dataset(a.dataset, resolve_data_dir(a.dataset, a.data_dir), a.split);
  if (a.limit > 0 && a.limit < d.n) {
    d.n = a.limit;
    d.pixels.resize(static_cast<size_t>(d.n * 784));
    d.labels.resize(static_cast<size_t>(d.n));
  }
  const std::vector<float> x = d.to_float();

  BenchReport report;
  report.context = machine_context();
  report.context.split = a.split;
  report.context.images_per_pass = d.n;
  report.context.passes = a.passes;
  report.context.repeats = a.repeats;
  report.context.versions = versions;
  if (report.context.build_type != "Release")
    std::fprintf(stderr, "\n*** WARNING: this is a %s build; timings are not representative. ***\n\n",
                 report.context.build_type.c_str());
  if (has(a.backends, "reference")) check_reference(a, open, x, d.n);
  if (has(a.backends, "native")) check_native(a, open, x, d.n);

  const std::vector<Variant> vs = variants(a);
  std::string checkpoint_hash;  // "" when the folder has no checkpoint: then nothing can be matched
  if (std::filesystem::is_regular_file(weights_path(a.model_dir))) checkpoint_hash = weights_hash(load_weights(weights_path(a.model_dir)));
  const Variant *yardstick = nullptr, *yardstick_u8 = nullptr;  // native on floats, native on bytes
  for (const Variant& v : vs)
    if (v.backend == "native") (v.uint8_input ? yardstick_u8 : yardstick) = &v;
  // The memory read bound's working sets (float and byte images), built once: native's rows are
  // timed in alternation with them, and the memory rows at the end read them.
  std::unique_ptr<ReadBound> bound_fp32, bound_u8;
  if (has(a.backends, "native")) {
    bound_fp32 = std::make_unique<ReadBound>(x.data(), 784 * 4, d.n);
    bound_u8 = std::make_unique<ReadBound>(d.pixels.data(), 784, d.n);
  }
  for (const Variant& v : vs) {
    // GPU engines do not use CPU threads for the work; measure them once per batch size.
    const bool gpu = v.backend == "cuda" || v.backend == "tensorrt";
    const bool exported = v.backend != "reference" && v.backend != "native" && v.backend != "torch";
    auto skip = [&](const std::string& reason) {
      BenchRow row = BenchRow::of(v.backend, v.precision, v.variant, "-", 0, 0);
      row.available = false;
      row.reason = reason;
      report.rows.push_back(row);
      std::fprintf(stderr, "bench: %s not available: %s\n", report.rows.back().name().c_str(), reason.c_str());
    };
    try {
      const std::unique_ptr<Classifier> probe = open_variant(v, 1, open);
      // Only graphs exported from this folder's checkpoint are ranked: a foreign model planted under
      // an export's file name would otherwise be timed and crowned as if it were this model.
      if (exported && !checkpoint_hash.empty() && probe->provenance("weights_hash") != checkpoint_hash) {
        const std::string has = probe->provenance("weights_hash");
        skip(v.model + " was not exported from " + weights_path(a.model_dir) + " (" +
             (has.empty() ? std::string("it has no weights_hash metadata") : "its weights_hash is " + has) + "); re-export to bench it");
        continue;
      }
    } catch (const UnavailableError& e) {
      skip(e.what());
      continue;
    } catch (const InputError& e) {
      if (!exported) throw;
      skip(e.what());  // a damaged or foreign graph: said, not benchmarked
      continue;
    }
    for (int threads : gpu ? std::vector<int>{1} : a.threads) {
      for (const std::string& mode : a.modes) {
        if (threads == 1 && mode == "streams") continue;  // identical to intra with one thread
        if (v.backend == "reference" && mode == "intra" && threads > 1) continue;  // single-threaded code
        if (v.backend == "torch" && mode == "streams") continue;  // LibTorch's OpenMP pool is per process
        for (int64_t batch : a.batches) {
          std::fprintf(stderr, "bench: %-22s %-7s threads %d batch %-5lld ", (v.backend + " " + v.precision + " " + v.variant).c_str(),
                       mode.c_str(), threads, (long long)batch);
          const bool onnx_runtime = v.backend == "cpu" || v.backend == "cuda" || v.backend == "tensorrt";
          // ONNX Runtime rows against native on the same input; native on bytes against native on
          // floats (issue #24's byte target is that ratio), each timed in alternation with its yardstick.
          const bool native = v.backend == "native";
          const Variant* paired = onnx_runtime ? (v.uint8_input ? yardstick_u8 : yardstick) : native && v.uint8_input ? yardstick : nullptr;
          ReadBound* bound = native ? (v.uint8_input ? bound_u8 : bound_fp32).get() : nullptr;
          BenchRow row = measure(v, mode, threads, batch, a, open, x, d.pixels, d.labels, paired, bound);
          std::fprintf(stderr, "%12.0f images/s  accuracy %.2f%%\n", row.images_per_second, 100 * row.accuracy);
          report.rows.push_back(row);
        }
      }
    }
  }
  if (has(a.backends, "native"))
    for (bool uint8_input : {false, true})
      for (int threads : a.threads) {
        std::fprintf(stderr, "bench: %-22s %-7s threads %d             ", uint8_input ? "memory uint8 read-bound" : "memory fp32 read-bound",
                     "intra", threads);
        report.rows.push_back(measure_read_bound(uint8_input ? *bound_u8 : *bound_fp32, threads, a.repeats, a.passes));
        std::fprintf(stderr, "%12.0f images/s (%s)\n", report.rows.back().images_per_second, report.rows.back().working_set.c_str());
      }
  set_native_ratios(report.rows);
  set_read_bound_ratios(report.rows);
  report.summary = summarize(report.rows);
  if (!a.profile.empty()) profile_graphs(a, vs, open, x, d.labels, report);
  return report;
}

}  // namespace moe
