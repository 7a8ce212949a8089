// Data-parallel training over PyTorch's c10d with the Gloo backend: a TCPStore rendezvous at
// --master, one ProcessGroupGloo, and the few collectives the trainer needs. Every rank holds the
// whole model; each computes the gradients of its shard of a global batch, one all-reduce sums
// them, and every rank takes the same Adam step, so the weights stay bit-identical across ranks.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "libtorch/model.h"
#include "libtorch/torch_api.h"

namespace c10d {
class ProcessGroupGloo;
class Store;
}

namespace moe {

// What one data-parallel step's all-reduce returns besides the summed gradients.
struct StepSums {
  double loss = 0;     // the global batch's loss (sum of every rank's part)
  bool stop = false;   // some rank was asked to stop (Ctrl-C)
};

class DataParallel {
 public:
  // Joins the group: rank 0 hosts the TCPStore at o.master (it listens on that port on every
  // interface), the others connect to it; then Gloo connects every pair. Throws InputError on bad
  // flags and when the others do not arrive (or the master cannot be reached) within o.timeout_s.
  explicit DataParallel(const DistOptions& o);
  ~DataParallel();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_root() const { return rank_ == 0; }

  // Refuses to train unless every rank's `fingerprint` (settings and hashes of data and initial
  // weights) is rank 0's: throws InputError naming the rank and the first field that differs.
  void check_same(const nlohmann::json& fingerprint);

  // Rows [begin, begin + count) of a global batch of n_rows that this rank computes: contiguous,
  // sizes differing by at most one, in rank order.
  std::pair<int64_t, int64_t> shard(int64_t n_rows) const;

  // This rank's part of the global batch's loss (cross-entropy over all n_global rows, plus the
  // importance loss of the global batch), built so that the gradients summed over ranks equal the
  // single-process gradients of the whole batch. logits [b, C] and labels [b] are this rank's rows.
  // The importance loss is not a sum over rows (CV^2 of per-expert sums), so this all-reduces the
  // [E] importance vector first and lets each rank's gradient flow through its own rows only.
  // *value_part receives this rank's share of the loss value (shares sum to the global loss).
  torch::Tensor shard_loss(const NetOutput& out, const torch::Tensor& labels, int64_t n_global,
                           const ModelConfig& config, double* value_part, double label_smoothing = 0);

  // Sums `grads` [P] over ranks in place, with the loss parts and the stop flags in the same
  // all-reduce (one collective per step). Throws InputError when a rank died or timed out.
  StepSums sum_gradients(torch::Tensor& grads, double loss_part, bool stop);

  // Rank 0's value of `flag` on every rank (e.g. "stop early" decided from rank 0's evaluation).
  bool root_decides(bool flag);

  // Gate noise: every rank keeps LibTorch's generator where the single process has it, so the rows
  // of the global batch get the same noise on whichever rank they land. Before the forward, a rank
  // draws (and drops) the noise of the rows before its shard; after it, that of the rows after.
  // LibTorch 1.13's CPU normal_ fills uniforms in order and transforms them in blocks of 16 values,
  // so the draws are exactly the single process's when every shard starts at a multiple of 16
  // values (rows x E; e.g. 2 ranks, batch 64 or 128, 8 experts); otherwise they are other, still
  // independent N(0, 1) draws.
  void skip_gate_noise(int64_t n_rows, int64_t n_experts, const torch::TensorOptions& options);

  // Seconds spent inside collectives since the last call (communication + waiting for the slowest rank).
  double take_comm_seconds();

 private:
  void allreduce_sum(torch::Tensor& t, const char* what);

  int rank_ = 0, world_size_ = 1;
  double timeout_s_ = 60;
  std::string master_;
  int64_t n_steps_ = 0;
  double comm_seconds_ = 0;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  c10::intrusive_ptr<c10d::Store> store_;  // the TCPStore, under the prefix "check/"
  torch::Tensor step_buffer_;              // [P + 2]: gradients, loss part, stop flag
};

// What every rank must share: the model, the training settings as the checkpoint records them
// (`settings`, config.json's "training": epochs, batch, lr, seed, the recipe, the resumed iteration
// and history), and FNV-1a hashes of the training pixels and labels and of the initial (or
// resumed) parameters. --out, --data, --threads and --device may differ between ranks.
nlohmann::json training_fingerprint(const TrainOptions& o, int world_size, const torch::Tensor& train_x, const torch::Tensor& train_y,
                                    const torch::Tensor& params, const nlohmann::json& settings);

}  // namespace moe
