// What the LibTorch part offers the rest of the project, without exposing LibTorch headers
// (so only src/libtorch/*.cpp pay for compiling them).
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "base/choices.h"
#include "model/classifier.h"
#include "model/model_config.h"

namespace moe {

// Data-parallel training (src/libtorch/distributed.h): `train --nproc N` starts N ranks of this
// program on one machine; ranks started by hand (several machines) give rank, world_size, master.
struct DistOptions {
  int nproc = 1;                // ranks to start on this machine (the launcher; 1 = no c10d)
  int rank = -1;                // this process's rank, 0..world_size-1; -1 = not a rank
  int world_size = 1;
  std::string master;           // "ADDR:PORT" of rank 0's TCPStore
  double timeout_s = 60;        // rendezvous and every collective must finish within this
};

struct TrainOptions {
  ModelConfig model;
  std::string dataset = "mnist";
  std::string data_dir;         // "" = resolve_data_dir default
  std::string out = "runs/mnist";
  int64_t epochs = 50;
  // The default recipe: scripts/study-recipe.sh's choice on validation accuracy (README, `train`).
  int64_t batch = 128;
  double lr = 3e-3;             // peak rate of the schedule
  uint64_t seed = 42;
  int threads = 1;              // 0 = LibTorch's default (all cores); see train --help for why 1
  TorchStyle forward = TorchStyle::batched;  // the MoE forward used in training steps
  int64_t save_every = 1000;    // iterations between checkpoints; 0 = only at the end
  bool resume = false;
  std::string device = "cpu";   // "cpu" or "cuda[:N]" when LibTorch has CUDA
  // Model selection: `val` training images (chosen by a permutation seeded with `seed`) are held
  // out and never trained on; `keep` picks the checkpoint's weights by their accuracy.
  int64_t val = 5000;           // 0 = train on the whole split (then keep must be last)
  Keep keep = Keep::best;       // best validation accuracy, or the last epoch
  int64_t patience = 0;         // stop after this many epochs without a better validation accuracy; 0 = never
  int64_t limit = 0;            // use only the first N images of the training split (0 = all): quick runs, tests
  // Recipe.
  LrSchedule lr_schedule = LrSchedule::cosine;
  double warmup = 0;            // epochs of linear warm-up to --lr (onecycle: its rise; 0 there = 30% of the run)
  double weight_decay = 1e-4;   // > 0: AdamW with this decoupled weight decay, else Adam
  int64_t augment_shift = 1;    // translate each training image by up to N pixels (random per image and step)
  double label_smoothing = 0;
  DistOptions dist;             // world_size > 1: this process is one rank of a data-parallel run
};

struct EpochStats {
  int64_t epoch = 0;            // 1-based
  double seconds = 0;           // training time of this epoch (excludes evaluation)
  double mean_loss = 0;         // cross-entropy + importance, averaged over the epoch's iterations
  double test_accuracy = 0;     // information only: nothing is chosen on it
  double val_accuracy = NAN;    // on the held-out validation images; NaN without --val
  double lr = 0;                // learning rate of the epoch's last step
  std::vector<double> expert_load;  // share of top-k slots per expert on the test set, sums to 1
  // Routing on the test set (core/routing.h routing_stats): CV of load and of importance over the
  // experts, mean gate entropy per image (nats), experts with load < 1%.
  double load_cv = 0, importance_cv = 0, gate_entropy = 0;
  std::vector<int64_t> dead_experts;
};

struct TrainSummary {
  int64_t epochs = 0, iterations = 0;
  double seconds = 0;           // training time, all epochs of this run (excludes evaluation)
  double train_accuracy = 0, test_accuracy = 0;  // of the kept model
  double val_accuracy = NAN;    // of the kept model; NaN without --val
  int64_t kept_epoch = 0;       // the epoch whose weights the checkpoint holds
  std::vector<double> expert_load;
  std::vector<EpochStats> history;  // this run's epochs (config.json and history.csv keep a resumed run's earlier ones too)
};

// One epoch as a JSON object / a history.csv line (header: history_csv_header()).
nlohmann::json to_json(const EpochStats& e);
std::string history_csv_header();
std::string history_csv_line(const EpochStats& e);

// Trains (or resumes) and writes the checkpoint to opts.out. Progress and logs go to stderr.
// Throws Interrupted after saving when SIGINT arrives.
TrainSummary train(const TrainOptions& opts);

// LibTorch eager inference from a checkpoint directory. device: "cpu" or "cuda[:N]".
// TorchStyle::sparse dispatches each image to its chosen experts (as in training); loop is the
// original Python project's per-expert loop with NonZero masks, kept as a baseline for bench.
std::unique_ptr<Classifier> make_torch_classifier(const std::string& checkpoint_dir, const std::string& device = "cpu",
                                                  TorchStyle style = TorchStyle::sparse);

// Sets LibTorch's intra-op threads and OpenBLAS's (OpenMP build) together; 0 leaves the defaults.
void set_torch_threads(int n);
std::string torch_version();
bool torch_cuda_available();

}  // namespace moe
