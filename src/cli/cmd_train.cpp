// `moe-mnist train`
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/errors.h"

#ifdef MOE_MNIST_HAVE_TORCH
#include "libtorch/torch_api.h"
#endif

namespace moe {

void add_train_command(CLI::App& app) {
#ifdef MOE_MNIST_HAVE_TORCH
  auto* cmd = app.add_subcommand("train", "Train the MoE classifier with LibTorch and write a checkpoint directory");
  auto o = std::make_shared<TrainOptions>();
  auto json = std::make_shared<bool>(false);
  add_model_options(cmd, o->model);
  add_data_options(cmd, o->dataset, o->data_dir);
  cmd->add_option("--epochs", o->epochs, "Passes over the training set")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Mini-batch size")->capture_default_str();
  cmd->add_option("--lr", o->lr, "Adam learning rate")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed for initialisation, shuffling and gate noise")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads for LibTorch and OpenBLAS (0 = all cores)")->capture_default_str();
  cmd->add_option("--out", o->out, "Checkpoint directory (config.json, weights.safetensors, train_state.pt)")->capture_default_str();
  cmd->add_option("--save-every", o->save_every, "Save the checkpoint every N iterations (0 = only at the end)")->capture_default_str();
  cmd->add_flag("--resume", o->resume, "Continue from the checkpoint in --out (weights, optimizer state, iteration)");
  cmd->add_option("--device", o->device, "cpu, or cuda[:N] with a CUDA LibTorch")->capture_default_str();
  cmd->add_flag_callback("--no-noise", [o] { o->model.noisy_gating = false; },
                         "Train without noisy top-k gating (the gate's probabilities decide alone)");
  cmd->add_flag("--json", *json, "Print a JSON summary on stdout (logs stay on stderr)");
  cmd->callback([o, json] {
    const TrainSummary s = train(*o);
    if (*json) {
      nlohmann::json epochs = nlohmann::json::array();
      for (const auto& e : s.history) epochs.push_back(to_json(e));
      nlohmann::json j = {{"epochs", s.epochs},
                          {"iterations", s.iterations},
                          {"seconds", s.seconds},
                          {"train_accuracy", s.train_accuracy},
                          {"test_accuracy", s.test_accuracy},
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
