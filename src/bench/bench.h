// The bench engine: every backend x precision x batch size x threads on the same pre-loaded images,
// timed the same way, into one BenchReport (core/bench_report.h has the printers). The CLI maps
// flags to a BenchConfig; `eval` and a server's load test reuse open_timed().
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/backend_options.h"
#include "report/bench_report.h"
#include "model/classifier.h"

namespace moe {

struct BenchConfig {
  std::string model_dir = "runs/mnist";  // checkpoint folder with the exported models (model_file_name)
  std::string dataset = "mnist", data_dir, split = "train";  // data_dir "" = resolve_data_dir's search
  std::vector<int64_t> batches = {1, 64, 1024};
  std::vector<int> threads = {1, 2};
  std::vector<std::string> backends = {"reference", "native", "torch", "cpu", "cuda", "tensorrt"};
  std::vector<std::string> modes = {"intra", "streams"};  // intra: intra-op threads; streams: an engine per thread
  int64_t repeats = 5;   // timed runs per configuration
  int64_t passes = 10;   // passes over the images per timed run
  int64_t limit = 0;     // only the first `limit` images (0 = all)
  bool cpu_fp16 = false; // also the fp16 model on the CPU provider (very slow on x86)
  // "" = no profiling; else, after the timing, each ONNX Runtime CPU fp32 graph runs 100 batches
  // (batch 64 when asked for, else the first batch size; the most threads asked for) with ONNX
  // Runtime's profiler on, into FILE with ".<variant>" before ".json", summarised in the report.
  std::string profile;
};

// Opens a model (.onnx file, or checkpoint folder for torch) with the given options; the CLI passes
// open_backend. Throws UnavailableError when the backend cannot run here.
using OpenEngine = std::function<std::unique_ptr<Classifier>(const std::string& model, const BackendOptions& options)>;

// Engines opened and warmed up, with the cold-start times kept out of every timed run.
struct OpenedEngines {
  std::vector<std::unique_ptr<Classifier>> engines;
  double session_ms = 0;    // creating all engines
  double first_run_ms = 0;  // the first classify() of engines[0] on min(batch, n) images, cold
};

// Opens `n_engines` with `open` (timed), then times one first call on the first images of `x`
// ([n, 784]); that call is the warm-up of first-run allocations and lazy initialisation.
OpenedEngines open_timed(int n_engines, const std::function<std::unique_ptr<Classifier>()>& open,
                         const std::vector<float>& x, int64_t batch);

// Runs the whole matrix and returns the report (rows, context, summary); progress goes to stderr.
// Backends that cannot run here become rows with available = false and the reason. `versions`
// names the engines in this build for the report's context. Throws InputError on a bad config.
BenchReport run_bench(const BenchConfig& config, const OpenEngine& open,
                      const std::vector<std::pair<std::string, std::string>>& versions);

// Writes the throughput plot as .svg or .png with gnuplot (core/plot.h; UnavailableError without it).
void write_plot(const BenchReport& report, const std::string& path);

}  // namespace moe
