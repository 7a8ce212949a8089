// `moe-mnist bench`: the flags of the bench engine (src/bench/bench.h) and the report printer to use.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "bench/bench.h"
#include "cli/backends.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "base/atomic_file.h"
#include "base/errors.h"

#ifdef MOE_MNIST_HAVE_ONNX
#include "onnx_export/export.h"
#endif

namespace moe {

void add_bench_command(CLI::App& app) {
  struct Args {
    BenchConfig config;
    std::string plot;
    bool markdown = false, json = false, csv = false;
  };
  auto a = std::make_shared<Args>();
  BenchConfig& c = a->config;
  auto* cmd = app.add_subcommand(
      "bench",
      "Every available backend x precision x batch size x threads, side by side on the same images.\n"
      "Per configuration: engine creation and the first call timed separately, one untimed warm-up\n"
      "pass, then --repeats timed runs of --passes passes; median images/s, min-max, batch latency p50/p90/p99.");
  cmd->add_option("--model-dir", c.model_dir, "Checkpoint directory holding model.{fp32,fp32-gather,fp32-moe,fp32-fused,fp16,int8,int8-static}.onnx")->capture_default_str();
  cmd->add_option("--batches", c.batches, "Batch sizes")->delimiter(',')->capture_default_str();
  cmd->add_option("--threads", c.threads, "CPU thread counts")->delimiter(',')->capture_default_str();
  cmd->add_option("--modes", c.modes,
                  "How CPU threads are used: intra (one engine, intra-op threads) and/or streams (one single-threaded "
                  "engine per thread, batches split between them)")
      ->delimiter(',')
      ->check(CLI::IsMember({"intra", "streams"}))
      ->capture_default_str();
  cmd->add_option("--backends", c.backends,
                  "Which of reference, native, torch, cpu, cuda, tensorrt. native (the fused hand-written kernel) is the "
                  "yardstick: every ONNX Runtime row's 'x native' is its images/s over native's in the same configuration "
                  "(single-threaded engines: timed in alternation with native, so both see the same machine load; "
                  "intra-op threads: native's own row). With native: native on the image bytes too (row 'native uint8', whose 'x native' "
                  "is over native on floats, timed in alternation with one thread), ONNX "
                  "Runtime on bytes where model.fp32[-fused]-u8.onnx were exported (export --input uint8), and the memory read "
                  "bound for float and byte images on a working set >= 4x the last-level cache ('x read bound' column; native's "
                  "rows are timed in alternation with it; "
                  "docs/benchmarks.md)")
      ->delimiter(',')
      ->check(CLI::IsMember({"reference", "native", "torch", "cpu", "cuda", "tensorrt"}))
      ->capture_default_str();
  cmd->add_option("--repeats", c.repeats, "Timed runs per configuration")->capture_default_str();
  cmd->add_option("--passes", c.passes, "Passes over the split per timed run (the original: 10 over the training set)")->capture_default_str();
  add_split_option(cmd, c.split);
  cmd->add_option("--limit", c.limit, "Use only the first N images of the split (0 = all)")
      ->capture_default_str()
      ->check(whole_number(0, INT64_MAX));
  add_data_options(cmd, c.dataset, c.data_dir);
  auto* md = cmd->add_flag("--markdown", a->markdown, "Print a Markdown table (for the README)");
  auto* js = cmd->add_flag("--json", a->json, "Print JSON");
  auto* cs = cmd->add_flag("--csv", a->csv, "Print CSV");
  md->excludes(js)->excludes(cs);
  js->excludes(cs);
  cmd->add_flag("--cpu-fp16", c.cpu_fp16,
                "Also time the fp16 model on the CPU EP, which has no fast fp16 kernels on x86 (hundreds of times slower)");
  cmd->add_option("--plot", a->plot, "Also write throughput vs batch size as FILE.svg or FILE.png");
  cmd->add_option("--profile", c.profile,
                  "After the timing, run each ONNX Runtime CPU fp32 graph (dense, gather, moe, fused) for 100 batches with "
                  "ONNX Runtime's profiler on, write FILE.<variant>.json and print where the time went, per node and op type");
  cmd->callback([a] {
    if (!a->config.profile.empty() && std::filesystem::path(a->config.profile).extension() != ".json")
      throw InputError("--profile " + a->config.profile + ": expected a .json file name");
    if (!a->plot.empty()) {  // before minutes of timing
      const std::string ext = std::filesystem::path(a->plot).extension().string();
      if (ext != ".svg" && ext != ".png") throw InputError("--plot " + a->plot + ": expected a .svg or .png file name");
      check_output_file(a->plot, "--plot", {"svg", "png"});
    }
    std::vector<std::pair<std::string, std::string>> versions = engine_versions();
#ifdef MOE_MNIST_HAVE_ONNX
    versions.push_back({"onnx", onnx_version()});
#endif
    const std::string dataset = a->config.dataset;
    auto open = [dataset](const std::string& model, const BackendOptions& o) {
      auto engine = open_backend(model, o);
      warn_if_mismatched(*engine, model, dataset);
      return engine;
    };
    const BenchReport report = run_bench(a->config, open, versions);
    if (a->json)
      std::printf("%s", to_json(report).c_str());
    else if (a->csv)
      std::printf("%s", to_csv(report).c_str());
    else if (a->markdown)
      std::printf("%s", to_markdown(report).c_str());
    else
      std::printf("%s", to_table(report).c_str());
    if (!a->json && !a->csv)
      for (const std::string& p : report.profiles) std::printf("\n%s", p.c_str());
    if (!a->plot.empty()) {
      write_plot(report, a->plot);
      std::fprintf(stderr, "bench: wrote %s\n", a->plot.c_str());
    }
  });
}

}  // namespace moe
