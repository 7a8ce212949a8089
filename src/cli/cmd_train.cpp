// `moe-mnist train`
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "base/atomic_file.h"
#include "base/dir_lock.h"
#include "model/checkpoint.h"
#include "base/errors.h"
#include "model/recipe.h"

#ifdef MOE_MNIST_HAVE_TORCH
#include "cli/train_ranks.h"
#include "libtorch/torch_api.h"
#endif

namespace moe {

#ifdef MOE_MNIST_HAVE_TORCH
namespace {

// Everything about --out that can be known before training starts, so a run is never lost at the
// end: the folder can be written, an existing checkpoint is not replaced unasked, and --resume does
// not silently ignore sizes given on the command line.
void check_train_out(const TrainOptions& o, bool force, const CLI::App& cmd) {
  check_output_dir(o.out, "--out");
  const bool has_checkpoint = std::filesystem::exists(config_path(o.out));
  if (o.resume && force) throw InputError("--resume and --force contradict each other (continue, or replace?)");
  if (o.resume) {
    const CheckpointMeta meta = load_checkpoint_meta(o.out);
    auto same = [&](const char* flag, const std::string& given, const std::string& saved) {
      if (cmd.count(flag) && given != saved)
        throw InputError(std::string(flag) + " " + given + " contradicts the checkpoint in " + o.out + " (" + saved +
                         "); --resume keeps the checkpoint's settings, so drop the flag");
    };
    same("--experts", std::to_string(o.model.n_experts), std::to_string(meta.model.n_experts));
    same("--top", std::to_string(o.model.top_k), std::to_string(meta.model.top_k));
    same("--emb-size", std::to_string(o.model.emb_size), std::to_string(meta.model.emb_size));
    same("--w-importance", std::to_string(o.model.w_importance), std::to_string(meta.model.w_importance));
    same("--dataset", o.dataset, meta.dataset);
    // The split, the batches and the recipe are the checkpoint's too (train() reads them from it).
    const nlohmann::json& t = meta.training;
    auto same_json = [&](const char* flag, const char* key, const nlohmann::json& given) {
      if (t.contains(key)) same(flag, given.dump(), t[key].dump());
    };
    same_json("--seed", "seed", o.seed);
    same_json("--batch", "batch", o.batch);
    same_json("--val", "val", o.val);
    same_json("--limit", "limit", o.limit);
    same_json("--keep", "keep", to_string(o.keep));
    same_json("--lr-schedule", "lr_schedule", to_string(o.lr_schedule));
    same_json("--warmup", "warmup", o.warmup);
    same_json("--weight-decay", "weight_decay", o.weight_decay);
    same_json("--augment", "augment", augment_string(o.augment_shift));
    same_json("--label-smoothing", "label_smoothing", o.label_smoothing);
    if (cmd.count("--recipe")) throw InputError("--recipe with --resume: the checkpoint's recipe continues, so drop --recipe");
    return;
  }
  if (!has_checkpoint) return;
  if (!force)
    throw InputError("--out " + o.out + " already holds a checkpoint (config.json); add --resume to continue it or --force to replace it");
  // Exports of the old weights would sit beside the new ones and be benchmarked as if they belonged.
  for (const auto& entry : std::filesystem::directory_iterator(o.out)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("model", 0) == 0 && entry.path().extension() == ".onnx") {
      std::filesystem::remove(entry.path());
      std::fprintf(stderr, "train --force: removed %s (exported from the replaced weights)\n", entry.path().c_str());
    }
  }
}

// --recipe original: the original project's training, so the comparison is one flag away. Flags
// given explicitly still win.
void apply_recipe(const std::string& recipe, TrainOptions& o, const CLI::App& cmd) {
  if (recipe != "original") return;
  auto set = [&](const char* flag, auto& field, auto value) {
    if (!cmd.count(flag)) field = value;
  };
  set("--epochs", o.epochs, int64_t(50));
  set("--batch", o.batch, int64_t(128));
  set("--lr", o.lr, 1e-3);
  set("--lr-schedule", o.lr_schedule, LrSchedule::constant);
  set("--warmup", o.warmup, 0.0);
  set("--weight-decay", o.weight_decay, 0.0);
  set("--augment", o.augment_shift, int64_t(0));
  set("--label-smoothing", o.label_smoothing, 0.0);
  set("--val", o.val, int64_t(0));
  set("--keep", o.keep, Keep::last);
  set("--patience", o.patience, int64_t(0));
}

}  // namespace
#endif

void add_train_command(CLI::App& app) {
#ifdef MOE_MNIST_HAVE_TORCH
  auto* cmd = app.add_subcommand("train", "Train the MoE classifier with LibTorch and write a checkpoint directory");
  auto o = std::make_shared<TrainOptions>();
  auto json = std::make_shared<bool>(false);
  auto force = std::make_shared<bool>(false);
  add_model_options(cmd, o->model);
  add_data_options(cmd, o->dataset, o->data_dir);
  cmd->add_option("--epochs", o->epochs, "Passes over the training set")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Mini-batch size")->capture_default_str();
  cmd->add_option("--lr", o->lr, "Peak learning rate (Adam, or AdamW with --weight-decay)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed for initialisation, shuffling and gate noise")
      ->capture_default_str()
      ->check(whole_number(0, INT64_MAX));
  cmd->add_option("--threads", o->threads,
                  "Threads for LibTorch and OpenBLAS (0 = all cores). 1 by default: this model's ops are too small to "
                  "share; on a 2-core machine 2 threads gave no gain when it was quiet and were 9x slower (12.2 s "
                  "against 1.4 s per epoch) while other processes kept the cores busy")
      ->capture_default_str();
  add_choice_option(cmd, "--forward", o->forward,
                    "MoE forward in training steps: batched (every expert on every row, weighted by a combine matrix: "
                    "the fewest ops, fastest here), sparse (rows sorted by expert) or loop (the original's per-expert "
                    "masks); same outputs and gradients");
  cmd->add_option("--out", o->out, "Checkpoint directory (config.json, weights.safetensors, train_state.pt)")->capture_default_str();
  cmd->add_option("--save-every", o->save_every, "Save the checkpoint every N iterations (0 = only at the end)")->capture_default_str();
  cmd->add_flag("--resume", o->resume, "Continue from the checkpoint in --out (weights, optimizer state, iteration)");
  cmd->add_option("--device", o->device, "cpu, or cuda[:N] with a CUDA LibTorch")->capture_default_str();
  cmd->add_flag_callback("--no-noise", [o] { o->model.noisy_gating = false; },
                         "Train without noisy top-k gating (the gate's probabilities decide alone)");
  cmd->add_flag("--json", *json, "Print a JSON summary on stdout (logs stay on stderr)");
  cmd->add_flag("--force", *force,
                "Replace a checkpoint already in --out (its model*.onnx exports, made from the old weights, are removed)");
  auto recipe = std::make_shared<std::string>("default");
  cmd->add_option("--recipe", *recipe,
                  "default (the flags' defaults: batch 128, cosine from 3e-3, AdamW 1e-4, shift:1; chosen on validation "
                  "accuracy by scripts/study-recipe.sh, see docs/training.md) or original (Adam 1e-3, "
                  "batch 128, 50 epochs, constant rate, no augmentation, no validation split, --keep last: the "
                  "original project's training); flags given explicitly win")
      ->check(CLI::IsMember({"default", "original"}))
      ->capture_default_str();
  cmd->add_option("--val", o->val,
                  "Training images held out for model selection (a permutation seeded by --seed picks them; never "
                  "trained on). 5000 by default, as MNIST's usual 55k/5k split; 0 = train on all")
      ->capture_default_str();
  add_choice_option(cmd, "--keep", o->keep,
                    "Weights the checkpoint keeps: best (by validation accuracy; the test set chooses nothing) or last");
  cmd->add_option("--patience", o->patience,
                  "Stop after this many epochs without a better validation accuracy (0 = run every epoch)")
      ->capture_default_str();
  cmd->add_option("--limit", o->limit, "Use only the first N training images (0 = all): quick runs and tests")
      ->capture_default_str()
      ->check(whole_number(0, INT64_MAX));
  add_choice_option(cmd, "--lr-schedule", o->lr_schedule,
                    "constant, cosine (to 0 at the end) or onecycle (lr/25 up to --lr over --warmup epochs or 30% of "
                    "the run, then down to lr/25e4)");
  cmd->add_option("--warmup", o->warmup, "Epochs of linear warm-up to --lr (onecycle: the rise)")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "> 0: AdamW with this decoupled weight decay instead of Adam")
      ->capture_default_str();
  cmd->add_option_function<std::string>(
         "--augment", [o](const std::string& v) { o->augment_shift = parse_augment(v); },
         "none, or shift:N: translate each training image by up to N pixels (random per image and step)")
      ->default_str(augment_string(o->augment_shift));
  cmd->add_option("--label-smoothing", o->label_smoothing, "Label smoothing of the cross-entropy, in [0, 1)")->capture_default_str();
  add_distributed_options(cmd, o->dist);
  cmd->callback([o, json, force, cmd, recipe] {
    apply_recipe(*recipe, *o, *cmd);
    check_distributed_options(o->dist);
    if (o->dist.nproc > 1) return launch_local_ranks(o->dist);  // its rank 0 does the rest
    // One rank looks at (and may clean) --out, holding a lock on it so a second run into the same
    // folder is refused rather than overwriting this one's checkpoint.
    std::unique_ptr<DirLock> lock;
    if (o->dist.rank <= 0) {
      check_output_dir(o->out, "--out");
      lock = std::make_unique<DirLock>(o->out, "--out");
      check_train_out(*o, *force, *cmd);
    }
    const TrainSummary s = train(*o);
    if (*json && o->dist.rank <= 0) {
      nlohmann::json epochs = nlohmann::json::array();
      for (const auto& e : s.history) epochs.push_back(to_json(e));
      nlohmann::json j = {{"epochs", s.epochs},
                          {"iterations", s.iterations},
                          {"seconds", s.seconds},
                          {"train_accuracy", s.train_accuracy},
                          {"test_accuracy", s.test_accuracy},
                          {"val_accuracy", std::isnan(s.val_accuracy) ? nlohmann::json(nullptr) : nlohmann::json(s.val_accuracy)},
                          {"kept_epoch", s.kept_epoch},
                          {"expert_load", s.expert_load},
                          {"history", epochs},
                          {"out", o->out}};
      std::printf("%s\n", j.dump(2).c_str());
    }
  });
#else
  app.add_subcommand("train", "Train the model (unavailable: built without LibTorch)")->callback([] {
    throw UnavailableError("train: this build has no LibTorch (apt install libtorch-dev and rebuild)");
  });
#endif
}

}  // namespace moe
