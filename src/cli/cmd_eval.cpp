// `moe-mnist eval`
#include <algorithm>
#include <cstdio>
#include <memory>
#include <thread>
#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "cli/backends.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "data/dataset.h"
#include "base/errors.h"
#include "bench/evaluate.h"
#include "ort/ort_profile.h"

namespace moe {

void add_eval_command(CLI::App& app) {
  struct Args {
    std::string model = "runs/mnist/model.fp32.onnx", dataset = "mnist", data_dir, split = "test", mode = "streams", input = "float";
    int64_t passes = 1, batch = 64;
    bool json = false;
    BackendOptions backend;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "eval",
      "Accuracy and speed of one backend on a dataset split. The timed region covers inference over\n"
      "pre-loaded tensors (classify + argmax), after one untimed warm-up batch; loading the data and\n"
      "creating the session are reported separately.");
  cmd->add_option("--model", a->model, "An exported .onnx file, or for --backend torch the checkpoint directory")->capture_default_str();
  add_backend_options(cmd, a->backend);
  add_data_options(cmd, a->dataset, a->data_dir);
  add_split_option(cmd, a->split);
  cmd->add_option("--passes", a->passes, "Passes over the split (the original timed 10 over the 60 000 training images)")->capture_default_str();
  cmd->add_option("--batch", a->batch, "Batch size; the last partial batch runs at its own size")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print one JSON object on stdout (logs stay on stderr)");
  cmd->add_option("--input", a->input,
                  "What the engine is given: float (pixels / 255) or uint8 (the image bytes: native reads them directly, as "
                  "does a model exported with --input uint8; other engines get a float copy, which is said)")
      ->check(CLI::IsMember({"float", "uint8"}))
      ->capture_default_str();
  cmd->add_option("--mode", a->mode,
                  "How the --threads are used by --backend cpu and native: streams (one single-threaded engine per thread, "
                  "batches dealt out between them) or intra (one engine with that many intra-op threads). streams is the "
                  "default because it measured faster at batch 64 on this 2-core machine (docs/benchmarks.md); "
                  "torch, cuda and tensorrt always run one engine")
      ->check(CLI::IsMember({"streams", "intra"}))
      ->capture_default_str();
  cmd->add_option("--profile", a->backend.profile,
                  "ONNX Runtime backends: write ONNX Runtime's profiling JSON (every node of every Run) to this .json file "
                  "and print where the time went, per node and per op type");
  cmd->callback([a] {
    if (a->batch <= 0) throw InputError("--batch must be > 0, got " + std::to_string(a->batch));
    if (a->passes <= 0) throw InputError("--passes must be > 0, got " + std::to_string(a->passes));
    const Dataset d = load_dataset(a->dataset, resolve_data_dir(a->dataset, a->data_dir), a->split);
    // ONNX Runtime's profiler records every node of every run and stops at 1,000,000 events (a 552 MB
    // trace, issue #20), after which the summary would describe only the first runs.
    constexpr int64_t kMaxProfiledRuns = 10000;
    const int64_t batches = (d.n + a->batch - 1) / a->batch;
    if (!a->backend.profile.empty() && batches > 0 && a->passes > kMaxProfiledRuns / batches)
      throw InputError("--profile records every node of every batch: " + std::to_string(a->passes) + " pass(es) of " +
                       std::to_string(batches) + " batches is more than the " + std::to_string(kMaxProfiledRuns) +
                       " runs a profile holds whole (ONNX Runtime stops at 1,000,000 events); lower --passes or raise --batch");
    const std::vector<float> x = d.to_float();
    // The first call (first-run allocations, lazy initialisation) is the warm-up, outside the timing.
    const bool streams = a->mode == "streams" && (a->backend.backend == Backend::cpu || a->backend.backend == Backend::native);
    check_threads(a->backend.threads, "--threads");
    const int threads = a->backend.threads > 0 ? a->backend.threads : std::max(1, int(std::thread::hardware_concurrency()));
    const int n_engines = streams ? threads : 1;
    if (n_engines > 1 && !a->backend.profile.empty() && a->backend.backend != Backend::native)  // native: open_backend refuses it
      throw InputError("--profile records one session: add --mode intra (or --threads 1)");
    BackendOptions options = a->backend;
    if (streams) options.threads = 1;
    OpenedEngines opened = open_timed(n_engines, [&] { return open_backend(a->model, options); }, x, a->batch);
    Classifier* model = opened.engines[0].get();
    warn_if_mismatched(*model, a->model, a->dataset);
    const double t_session = opened.session_ms / 1e3;
    std::vector<Classifier*> engines;
    for (auto& e : opened.engines) engines.push_back(e.get());
    const bool uint8_input = a->input == "uint8";
    if (uint8_input && !model->reads_uint8())
      std::fprintf(stderr, "eval: --input uint8: %s %s does not read bytes; each batch is copied to floats first\n",
                   model->backend().c_str(), model->precision().c_str());
    const EvalResult r = uint8_input ? evaluate_parallel(engines, d.pixels, d.labels, a->batch, a->passes, false)
                                     : evaluate_parallel(engines, x, d.labels, a->batch, a->passes, false);
    const std::string how = streams ? std::to_string(n_engines) + " single-threaded engine(s)" : "1 engine, " + std::to_string(threads) + " thread(s)";
    if (a->json) {
      nlohmann::json j = {{"backend", model->backend()}, {"precision", model->precision()}, {"split", a->split},
                          {"images", r.images},           {"correct", r.correct},            {"accuracy", r.accuracy()},
                          {"seconds", r.seconds},         {"images_per_second", r.images_per_second()},
                          {"batch", a->batch},            {"passes", a->passes},             {"session_seconds", t_session},
                          {"mode", streams ? "streams" : "intra"}, {"engines", n_engines}, {"input", a->input}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%s %s on %s/%s (%s input): %lld images, batch %lld, %lld pass%s, %s (session%s created in %.1f ms)\n",
                  model->backend().c_str(), model->precision().c_str(), a->dataset.c_str(), a->split.c_str(), a->input.c_str(),
                  (long long)r.images, (long long)a->batch, (long long)a->passes, a->passes == 1 ? "" : "es", how.c_str(),
                  n_engines > 1 ? "s" : "", 1e3 * t_session);
      std::printf("accuracy: %.2f%% time: %.2f s (%.0f images/s)\n", 100.0 * r.accuracy(), r.seconds, r.images_per_second());
    }
    // Light images and a poor score: the IDX files are most likely inverted (MNIST's mean pixel is 0.13,
    // Fashion-MNIST's 0.29; inverted, 0.87 and 0.71).
    if (r.accuracy() < 0.5) {
      double mean = 0;
      for (uint8_t p : d.pixels) mean += p;
      mean /= double(std::max<size_t>(d.pixels.size(), 1)) * 255.0;
      if (mean > 0.5)
        std::fprintf(stderr, "moe-mnist: warning: accuracy %.2f%% on images that are mostly light (mean pixel %.2f; MNIST is white "
                     "digits on black, mean 0.13): are these IDX files inverted?\n", 100.0 * r.accuracy(), mean);
    }
    if (!a->backend.profile.empty()) {
      opened.engines.clear();  // closing the session writes the profile
      std::fprintf(a->json ? stderr : stdout, "profile %s (the timed passes and the warm-up batch; profiling slows the run):\n%s",
                   a->backend.profile.c_str(), to_text(summarize_profile(a->backend.profile)).c_str());
    }
  });
}

}  // namespace moe
