// `moe-mnist train`: Adam/AdamW over shuffled mini-batches with the recipe's lr schedule and
// augmentation (core/recipe.h), a seeded validation hold-out that chooses the kept model, per-epoch
// accuracy and expert load, data-parallel ranks (distributed.h), atomic checkpoints, resume, and a
// clean save on Ctrl-C.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "base/atomic_file.h"
#include "model/checkpoint.h"
#include "data/dataset.h"
#include "base/errors.h"
#include "base/progress.h"
#include "model/recipe.h"
#include "model/routing.h"
#include "libtorch/distributed.h"
#include "libtorch/model.h"
#include "libtorch/torch_api.h"

namespace moe {

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted = true; }

struct Split {
  torch::Tensor x;  // [n, 784] float in [0, 1]
  torch::Tensor y;  // [n] int64
};

Split load_split(const TrainOptions& o, const std::string& split, const torch::Device& device) {
  const Dataset d = load_dataset(o.dataset, resolve_data_dir(o.dataset, o.data_dir), split);
  torch::Tensor pixels = torch::from_blob(const_cast<uint8_t*>(d.pixels.data()), {d.n, 784}, torch::kUInt8);
  torch::Tensor labels = torch::from_blob(const_cast<uint8_t*>(d.labels.data()), {d.n}, torch::kUInt8);
  return {pixels.to(torch::kFloat).div_(255.0f).to(device), labels.to(torch::kLong).to(device)};
}

// Holds `n_val` images of the training split out for model selection: a permutation seeded with
// `seed` picks them; the rest, in file order, are trained on. Returns {train, validation}.
std::pair<Split, Split> hold_out(const Split& all, int64_t n_val, uint64_t seed) {
  const int64_t n = all.x.size(0);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed * 7919ULL + 17);
  std::shuffle(order.begin(), order.end(), rng);
  std::sort(order.begin(), order.begin() + n_val);
  std::sort(order.begin() + n_val, order.end());
  auto take = [&](int64_t from, int64_t count) {
    torch::Tensor idx = torch::from_blob(order.data() + from, {count}, torch::kLong).to(all.x.device());
    return Split{all.x.index_select(0, idx), all.y.index_select(0, idx)};
  };
  return {take(n_val, n - n_val), take(0, n_val)};
}

struct Quality {
  double accuracy = 0;
  RoutingStats routing;  // load, CVs, entropy, dead experts from the gate's probabilities
};

Quality measure(Net& net, const Split& s) {
  net->eval();
  torch::NoGradGuard no_grad;
  const int64_t n = s.x.size(0), E = net->config.n_experts;
  int64_t correct = 0;
  std::vector<float> probs(static_cast<size_t>(n * E));  // [n, E]
  for (int64_t i = 0; i < n; i += 1000) {
    const int64_t b = std::min<int64_t>(1000, n - i);
    NetOutput o = net->forward(s.x.narrow(0, i, b), TorchStyle::sparse);
    correct += o.logits.argmax(1).eq(s.y.narrow(0, i, b)).sum().item<int64_t>();
    torch::Tensor p = o.moe.gate_probs.to(torch::kCPU, torch::kFloat).contiguous();
    std::copy(p.data_ptr<float>(), p.data_ptr<float>() + b * E, probs.begin() + i * E);
  }
  net->train();
  Quality q;
  q.accuracy = n ? double(correct) / double(n) : 0.0;
  q.routing = routing_stats(probs.data(), n, E, net->config.top_k);
  return q;
}

// The run's per-epoch history: one history.csv line per epoch, kept in history.csv only. config.json
// once held it too and passed the tool's own 1 MiB read limit after ~2,000 epochs (issue #20), so a
// long run wrote a checkpoint that export and --resume refused; config.json now stays the same size
// however many epochs a run has.
using History = std::vector<std::pair<int64_t, std::string>>;  // epoch, its history.csv line

std::string history_path(const std::string& dir) { return dir + "/history.csv"; }

// A resumed run's earlier epochs: from history.csv, or from config.json's "history" array in a
// checkpoint written before history.csv was the only record.
History read_history(const std::string& dir, const nlohmann::json& training) {
  History h;
  if (training.contains("history") && training["history"].is_array()) {
    for (const auto& j : training["history"]) {
      if (!j.is_object()) continue;
      EpochStats e;
      e.epoch = j.value("epoch", int64_t(0));
      e.seconds = j.value("seconds", 0.0);
      e.mean_loss = j.value("loss", 0.0);
      e.test_accuracy = j.value("test_accuracy", 0.0);
      e.val_accuracy = j.contains("val_accuracy") && j["val_accuracy"].is_number() ? j["val_accuracy"].get<double>() : NAN;
      e.lr = j.value("lr", 0.0);
      e.load_cv = j.value("load_cv", 0.0);
      e.importance_cv = j.value("importance_cv", 0.0);
      e.gate_entropy = j.value("gate_entropy", 0.0);
      e.dead_experts = j.value("dead_experts", std::vector<int64_t>{});
      h.emplace_back(e.epoch, history_csv_line(e));
    }
    return h;
  }
  if (!std::filesystem::exists(history_path(dir))) return h;  // a run interrupted in its first epoch
  std::istringstream in(read_file(history_path(dir), kMaxHistoryBytes, "history.csv"));
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    char* end = nullptr;
    const long long epoch = std::strtoll(line.c_str(), &end, 10);
    if (end == line.c_str() || *end != ',' || epoch <= 0)
      throw InputError(history_path(dir) + ": line " + std::to_string(h.size() + 2) + " does not start with an epoch number; "
                       "the file is damaged (start again with --force)");
    h.emplace_back(epoch, line + "\n");
  }
  return h;
}

void write_history_csv(const std::string& dir, const History& history) {
  std::string csv = history_csv_header();
  for (const auto& [epoch, line] : history) csv += line;
  write_atomically(history_path(dir), [&](const std::string& tmp) { std::ofstream(tmp) << csv; });
}

// The epoch with the best validation accuracy so far; with --keep best, its weights (in memory, and
// as weights.safetensors whenever the checkpoint is saved).
struct Best {
  int64_t epoch = 0;  // 0 = none yet
  double val_accuracy = -1, test_accuracy = 0;
  Weights weights;
};

// With --keep best, the weights of the run's latest step, which --resume continues from.
std::string last_weights_path(const std::string& dir) { return dir + "/last.safetensors"; }

void save(Net& net, torch::optim::Optimizer& opt, const TrainOptions& o, const CheckpointMeta& meta, const History& history, const Best& best) {
  std::filesystem::create_directories(o.out);
  const Weights now = weights_from(net);
  if (o.keep == Keep::best) {
    save_weights(last_weights_path(o.out), now);
    save_weights(weights_path(o.out), best.epoch > 0 ? best.weights : now);
  } else {
    save_weights(weights_path(o.out), now);
    std::filesystem::remove(last_weights_path(o.out));  // a stale one from an earlier --keep best run
  }
  write_atomically(train_state_path(o.out), [&](const std::string& tmp) { torch::save(opt, tmp); });
  write_history_csv(o.out, history);
  save_checkpoint_meta(o.out, meta);  // last, so config.json never points at older weights
}

// Puts every parameter and its gradient into two flat buffers (the parameters become views), so
// one Adam step is ~10 tensor ops instead of ~10 per parameter tensor: with 4E+8 small tensors,
// the per-tensor version was the largest cost of a step. Gradients of experts that got no rows
// in a batch are zeros rather than undefined, as with PyTorch's default zero_grad() in 1.13.
constexpr const char* kParamLayout = "experts-stacked";  // flatten()'s order, which train_state.pt follows

struct FlatParams {
  torch::Tensor params;  // [P], a leaf whose .grad() is `grads`
  torch::Tensor grads;   // [P]
};

// Layout: the experts' parameters first, grouped by kind over the experts (every fc1.weight, every
// fc1.bias, every fc2.weight, every fc2.bias), so each group is one [E, ...] block that becomes a leaf
// of its own (MoEImpl::stacked) for the batched forward; then every other parameter in module order.
// train_state.pt (Adam's moments) follows this order, hence kParamLayout in config.json.
FlatParams flatten(Net& net) {
  MoEImpl& moe = *net->moe;
  const int64_t E = moe.config.n_experts;
  std::vector<std::vector<torch::Tensor>> groups(4);  // [kind][expert]
  std::set<const void*> grouped;
  for (int64_t e = 0; e < E; ++e) {
    const auto& ex = moe.experts[e]->as<Expert>();
    int kind = 0;
    for (const torch::Tensor& p : {ex->fc1->weight, ex->fc1->bias, ex->fc2->weight, ex->fc2->bias}) {
      groups[size_t(kind++)].push_back(p);
      grouped.insert(p.unsafeGetTensorImpl());
    }
  }
  std::vector<torch::Tensor> rest;
  for (const auto& p : net->parameters())
    if (!grouped.count(p.unsafeGetTensorImpl())) rest.push_back(p);
  int64_t total = 0;
  for (const auto& p : net->parameters()) total += p.numel();
  FlatParams f;
  f.params = torch::empty({total}, rest.front().options().requires_grad(false));
  f.grads = torch::zeros({total}, rest.front().options().requires_grad(false));
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  auto place = [&](torch::Tensor p) {
    const int64_t n = p.numel();
    torch::Tensor slot = f.params.narrow(0, offset, n).view(p.sizes());
    slot.copy_(p);
    p.set_data(slot);
    p.mutable_grad() = f.grads.narrow(0, offset, n).view(p.sizes());
    offset += n;
  };
  torch::Tensor* stacked[4] = {&moe.stacked.w1, &moe.stacked.b1, &moe.stacked.w2, &moe.stacked.b2};
  for (size_t kind = 0; kind < 4; ++kind) {
    const int64_t start = offset;
    for (const auto& p : groups[kind]) place(p);
    std::vector<int64_t> shape = groups[kind].front().sizes().vec();
    shape.insert(shape.begin(), E);
    torch::Tensor leaf = torch::empty({0}, f.params.options());
    leaf.set_data(f.params.narrow(0, start, offset - start).view(shape));
    leaf.set_requires_grad(true);
    leaf.mutable_grad() = f.grads.narrow(0, start, offset - start).view(shape);
    *stacked[kind] = leaf;
  }
  for (const auto& p : rest) place(p);
  f.params.set_requires_grad(true);
  f.params.mutable_grad() = f.grads;
  return f;
}

// The split, the batches and the recipe of a run being resumed are the checkpoint's (cmd_train refuses
// contradicting flags); a checkpoint from before --val trained on every image and kept its last weights.
// Returns the iteration to continue from. A field of the wrong type is the file's fault, said so.
int64_t resume_settings(const nlohmann::json& t, const std::string& where, TrainOptions& o) {
  check_integer_fields(t, {"batch", "val", "limit", "epochs", "iterations", "best_epoch", "patience"}, where + " training");
  if (t.contains("seed") && !t["seed"].is_number_unsigned() && !(t["seed"].is_number_integer() && t["seed"].get<int64_t>() >= 0))
    throw InputError(where + ": training field 'seed' has the wrong type: expected a whole number >= 0, got " + t["seed"].dump() +
                     "; the file is damaged, start again with --force");
  try {
    o.seed = t.value("seed", o.seed);
    o.batch = t.value("batch", o.batch);
    o.val = t.value("val", int64_t(0));
    o.limit = t.value("limit", int64_t(0));
    o.keep = parse_choice<Keep>(t.value("keep", std::string("last")), where + " training.keep");
    o.lr_schedule = parse_choice<LrSchedule>(t.value("lr_schedule", std::string("constant")), where + " training.lr_schedule");
    o.warmup = t.value("warmup", 0.0);
    o.weight_decay = t.value("weight_decay", 0.0);
    o.augment_shift = parse_augment(t.value("augment", std::string("none")));
    o.label_smoothing = t.value("label_smoothing", 0.0);
    // Read again later in train(); their types are checked here so those reads cannot throw.
    (void)t.value("epochs", o.epochs);
    (void)t.value("best_epoch", int64_t(0));
    (void)t.value("best_val_accuracy", 0.0);
    (void)t.value("best_test_accuracy", 0.0);
    (void)t.value("param_layout", std::string());
    const int64_t iteration = t.value("iterations", int64_t(0));
    if (iteration < 0) throw InputError(where + ": training.iterations must be >= 0, got " + std::to_string(iteration));
    return iteration;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + ": a training field has the wrong type (" + e.what() + "); the file is damaged, start again with --force");
  }
}

void check_options(const TrainOptions& o) {
  // history.csv, one line per epoch, must stay readable (kMaxHistoryBytes) by --resume and plot-train.
  if (o.epochs <= 0 || o.epochs > kMaxEpochs)
    throw InputError("--epochs must be 1 to " + std::to_string(kMaxEpochs) + ", got " + std::to_string(o.epochs));
  if (o.batch <= 0) throw InputError("--batch must be > 0, got " + std::to_string(o.batch));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw InputError("--lr must be a finite number > 0");
  if (o.save_every < 0) throw InputError("--save-every must be >= 0");
  if (o.val < 0) throw InputError("--val must be >= 0 (images held out), got " + std::to_string(o.val));
  if (o.patience < 0) throw InputError("--patience must be >= 0 (0 = never stop early), got " + std::to_string(o.patience));
  if (o.limit < 0) throw InputError("--limit must be >= 0 (0 = all images), got " + std::to_string(o.limit));
  if (!(o.warmup >= 0) || !std::isfinite(o.warmup)) throw InputError("--warmup must be a finite number of epochs >= 0");
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) throw InputError("--weight-decay must be a finite number >= 0");
  if (!(o.label_smoothing >= 0 && o.label_smoothing < 1)) throw InputError("--label-smoothing must be in [0, 1)");
}

// Adam as the original; with --weight-decay, AdamW (decay decoupled from the adaptive step).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o, const FlatParams& flat) {
  if (o.weight_decay > 0)
    return std::make_unique<torch::optim::AdamW>(std::vector<torch::Tensor>{flat.params},
                                                 torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  return std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{flat.params}, torch::optim::AdamOptions(o.lr));
}

// One step's rows: batch `it` of the epoch's permutation, shifted with --augment, and with data
// parallelism only this rank's shard of it.
struct Batch {
  torch::Tensor images;  // [rows, 784]
  torch::Tensor labels;  // [rows]
  int64_t n_global = 0;  // rows of the global batch; a rank computes rows [shard_begin, +shard_rows) of it
  int64_t shard_begin = 0, shard_rows = 0;
};

Batch take_batch(const TrainOptions& o, const DataParallel* dp, const Split& train_set, const torch::Tensor& perm,
                 int64_t it, int64_t iteration) {
  const int64_t n = train_set.x.size(0);
  torch::Tensor idx = perm.narrow(0, it * o.batch, std::min(o.batch, n - it * o.batch));
  Batch b;
  b.n_global = idx.size(0);
  std::tie(b.shard_begin, b.shard_rows) = dp ? dp->shard(b.n_global) : std::pair<int64_t, int64_t>{0, b.n_global};
  // --augment draws the shifts in batch order, so then every rank shifts the whole batch and keeps
  // its rows afterwards: the same images as in one process.
  if (dp && o.augment_shift == 0) idx = idx.narrow(0, b.shard_begin, b.shard_rows);
  b.images = train_set.x.index_select(0, idx);  // [b, 784]
  if (o.augment_shift > 0) {  // on the CPU copy: a few microseconds per image
    torch::Tensor cpu = b.images.to(torch::kCPU).contiguous();
    shift_images(cpu.data_ptr<float>(), cpu.size(0), o.augment_shift, o.seed * 0x9E3779B97F4A7C15ULL + uint64_t(iteration));
    b.images = cpu.to(b.images.device());
  }
  if (dp && o.augment_shift > 0) {
    b.images = b.images.narrow(0, b.shard_begin, b.shard_rows);
    idx = idx.narrow(0, b.shard_begin, b.shard_rows);
  }
  b.labels = train_set.y.index_select(0, idx);
  return b;
}

std::string load_string(const std::vector<double>& load) {
  std::string s;
  char buf[16];
  for (double v : load) {
    std::snprintf(buf, sizeof buf, "%s%.1f", s.empty() ? "" : " ", 100.0 * v);
    s += buf;
  }
  return "[" + s + "] %";
}

void print_epoch(const EpochStats& es, const TrainOptions& o, bool improved, int64_t n_steps) {
  char val[48] = "";
  if (o.val > 0) std::snprintf(val, sizeof val, "val accuracy %.2f%%%s, ", 100.0 * es.val_accuracy, improved ? " (best)" : "");
  std::fprintf(stderr, "epoch %lld/%lld: loss %.4f, %stest accuracy %.2f%%, lr %.3g, %.2f s (%.0f it/s), expert load %s, load CV %.3f, dead %zu\n",
               (long long)es.epoch, (long long)o.epochs, es.mean_loss, val, 100.0 * es.test_accuracy, es.lr, es.seconds,
               double(n_steps) / std::max(es.seconds, 1e-9), load_string(es.expert_load).c_str(), es.load_cv,
               es.dead_experts.size());
}

}  // namespace

nlohmann::json to_json(const EpochStats& e) {
  return {{"epoch", e.epoch},         {"seconds", e.seconds},
          {"loss", e.mean_loss},      {"test_accuracy", e.test_accuracy},
          {"val_accuracy", std::isnan(e.val_accuracy) ? nlohmann::json(nullptr) : nlohmann::json(e.val_accuracy)},
          {"lr", e.lr},
          {"expert_load", e.expert_load}, {"load_cv", e.load_cv},
          {"importance_cv", e.importance_cv}, {"gate_entropy", e.gate_entropy},
          {"dead_experts", e.dead_experts}};
}

std::string history_csv_header() {
  return "epoch,seconds,loss,test_accuracy,load_cv,importance_cv,gate_entropy,dead_experts,val_accuracy,lr\n";
}

std::string history_csv_line(const EpochStats& e) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%lld,%.4f,%.6f,%.6f,%.6f,%.6f,%.6f,%zu,%.6f,%.3g\n", (long long)e.epoch, e.seconds, e.mean_loss,
                e.test_accuracy, e.load_cv, e.importance_cv, e.gate_entropy, e.dead_experts.size(), e.val_accuracy, e.lr);
  return buf;
}

TrainSummary train(const TrainOptions& opts) {
  TrainOptions o = opts;
  check_options(o);
  set_torch_threads(o.threads);
  const torch::Device device = parse_device(o.device, "--device");
  // Data parallel (distributed.h): join the other ranks first, so an unreachable master fails fast.
  std::unique_ptr<DataParallel> dp;
  if (o.dist.world_size > 1) dp = std::make_unique<DataParallel>(o.dist);
  const bool root = !dp || dp->is_root();  // the rank that evaluates, logs and saves

  CheckpointMeta meta;
  int64_t iteration = 0;
  History history;
  if (o.resume) {
    meta = load_checkpoint_meta(o.out);
    o.model = meta.model;  // the checkpoint's sizes win over flags
    o.dataset = meta.dataset;
    iteration = resume_settings(meta.training, config_path(o.out), o);
    history = read_history(o.out, meta.training);
    const int64_t planned = meta.training.value("epochs", o.epochs);
    if (planned != o.epochs && (o.lr_schedule != LrSchedule::constant || o.warmup > 0))
      std::fprintf(stderr, "warning: --epochs %lld where the run planned %lld: the --lr-schedule %s now spans %lld epochs\n",
                   (long long)o.epochs, (long long)planned, to_string(o.lr_schedule).c_str(), (long long)o.epochs);
  }
  if (o.val == 0 && o.keep == Keep::best)
    throw InputError("--keep best chooses on the validation split, but --val is 0; give --val N or --keep last");
  if (o.val == 0 && o.patience > 0) throw InputError("--patience counts epochs without validation improvement, but --val is 0");
  o.model.validate();
  meta.model = o.model;
  meta.dataset = o.dataset;

  Split all_train = load_split(o, "train", device);
  if (o.limit > 0 && o.limit < all_train.x.size(0))
    all_train = {all_train.x.narrow(0, 0, o.limit), all_train.y.narrow(0, 0, o.limit)};
  if (o.val >= all_train.x.size(0))
    throw InputError("--val " + std::to_string(o.val) + " leaves nothing to train on: the training split has " +
                     std::to_string(all_train.x.size(0)) + " images");
  const auto [train_set, val_set] = hold_out(all_train, o.val, o.seed);
  all_train = {};
  const Split test_set = load_split(o, "test", device);
  const int64_t n = train_set.x.size(0);
  const int64_t iters_per_epoch = (n + o.batch - 1) / o.batch;
  const int64_t total_iters = iters_per_epoch * o.epochs;

  torch::manual_seed(o.seed);
  Net net(o.model);
  net->to(device);
  Best best;
  if (o.resume) {
    const std::string from = o.keep == Keep::best && std::filesystem::exists(last_weights_path(o.out)) ? last_weights_path(o.out)
                                                                                                     : weights_path(o.out);
    load_into(net, load_weights(from), from);
    best.epoch = meta.training.value("best_epoch", int64_t(0));
    best.val_accuracy = meta.training.value("best_val_accuracy", -1.0);
    best.test_accuracy = meta.training.value("best_test_accuracy", 0.0);
    if (o.keep == Keep::best && best.epoch > 0) best.weights = load_weights(weights_path(o.out));
  }
  FlatParams flat = flatten(net);
  const std::unique_ptr<torch::optim::Optimizer> optimizer = make_optimizer(o, flat);
  torch::optim::Optimizer& opt = *optimizer;
  const int64_t n_warmup = std::llround(o.warmup * double(iters_per_epoch));
  const bool scheduled = o.lr_schedule != LrSchedule::constant || n_warmup > 0;
  double lr_now = o.lr;
  if (o.resume) {
    if (!std::filesystem::exists(train_state_path(o.out)))
      throw InputError(train_state_path(o.out) + ": missing, cannot resume the optimizer state");
    if (meta.training.value("param_layout", std::string()) != kParamLayout)
      throw InputError(train_state_path(o.out) + ": written by an older moe-mnist whose optimizer state has another parameter order; "
                       "start again with --force");
    try {
      torch::load(opt, train_state_path(o.out));
    } catch (const std::exception& e) {
      // LibTorch's text is a zip-reader message and an 18-line backtrace; the user needs the file.
      const auto* c10 = dynamic_cast<const c10::Error*>(&e);
      const std::string what = c10 ? c10->what_without_backtrace() : e.what();
      throw InputError(train_state_path(o.out) + ": not a readable optimizer state (" + what.substr(0, what.find('\n')) +
                       "); the file is damaged: restore it, or start again with --force");
    }
    if (root) std::fprintf(stderr, "resuming %s at iteration %lld (epoch %lld)\n", o.out.c_str(), (long long)iteration,
                 (long long)(iteration / iters_per_epoch + 1));
  }
  meta.training = {{"epochs", o.epochs}, {"batch", o.batch}, {"lr", o.lr}, {"seed", o.seed},
                   {"iterations", iteration}, {"iterations_per_epoch", iters_per_epoch},
                   {"param_layout", kParamLayout}, {"val", o.val}, {"limit", o.limit}, {"train_images", n}, {"keep", to_string(o.keep)},
                   {"patience", o.patience}, {"lr_schedule", to_string(o.lr_schedule)}, {"warmup", o.warmup},
                   {"weight_decay", o.weight_decay}, {"augment", augment_string(o.augment_shift)},
                   {"label_smoothing", o.label_smoothing}, {"best_epoch", best.epoch},
                   {"best_val_accuracy", best.val_accuracy}, {"best_test_accuracy", best.test_accuracy},
                   {"history_file", "history.csv"}};

  if (dp) {  // refuse to start unless every rank has these settings, this data and these weights
    dp->check_same(training_fingerprint(o, dp->world_size(), train_set.x, train_set.y, flat.params, meta.training));
    if (o.batch < dp->world_size() || (n % o.batch != 0 && n % o.batch < dp->world_size()))
      throw InputError("--batch " + std::to_string(o.batch) + ": every batch (the last has " + std::to_string(n % o.batch) +
                       " rows) must have at least one row per rank (" + std::to_string(dp->world_size()) + ")");
  }
  g_interrupted = false;
  auto previous = std::signal(SIGINT, on_sigint);
  struct Restore {
    decltype(previous) h;
    ~Restore() { std::signal(SIGINT, h); }
  } restore{previous};

  TrainSummary summary;
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t epoch = iteration / iters_per_epoch; epoch < o.epochs; ++epoch) {
    // A permutation that depends only on (seed, epoch), so a resumed run sees the same batches.
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(o.seed * 1000003ULL + uint64_t(epoch));
    std::shuffle(order.begin(), order.end(), rng);
    torch::Tensor perm = torch::from_blob(order.data(), {n}, torch::kLong).to(device);

    Progress progress("epoch " + std::to_string(epoch + 1), iters_per_epoch);
    double loss_sum = 0;
    int64_t loss_count = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t it = iteration % iters_per_epoch; it < iters_per_epoch; ++it) {
      if (scheduled) {
        lr_now = lr_at(o.lr_schedule, o.lr, iteration, total_iters, n_warmup);
        opt.param_groups()[0].options().set_lr(lr_now);
      }
      const Batch b = take_batch(o, dp.get(), train_set, perm, it, iteration);
      const bool noisy = dp && o.model.noisy_gating;  // each rank draws the gate noise of its own rows only
      if (noisy) dp->skip_gate_noise(b.shard_begin, o.model.n_experts, b.images.options());
      NetOutput out = net->forward(b.images, o.forward);
      if (noisy) dp->skip_gate_noise(b.n_global - b.shard_begin - b.shard_rows, o.model.n_experts, b.images.options());
      double loss_value = 0;
      torch::Tensor loss = dp ? dp->shard_loss(out, b.labels, b.n_global, o.model, &loss_value, o.label_smoothing)
                              : torch::cross_entropy_loss(out.logits, b.labels, {}, at::Reduction::Mean, -100, o.label_smoothing) +
                                    out.moe.importance_loss;
      if (!dp) loss_value = loss.item<double>();
      if (!std::isfinite(loss_value)) {
        progress.finish();
        // Nothing is saved: the checkpoint on disk (if any) is the last good one.
        throw InputError("training diverged: the loss is " + std::to_string(loss_value) + " at iteration " +
                         std::to_string(iteration + 1) + "; " +
                         (std::filesystem::exists(config_path(o.out)) ? "the last good checkpoint in " + o.out + " is kept"
                                                                     : std::string("nothing was saved")) +
                         " (try a lower --lr)");
      }
      flat.grads.zero_();
      loss.backward();
      bool stop = g_interrupted;
      if (dp) {  // sum the ranks' gradients (and loss parts, and stop requests) in one all-reduce
        const StepSums sums = dp->sum_gradients(flat.grads, loss_value, stop);
        loss_value = sums.loss;
        stop = sums.stop;  // every rank stops at the same step, whichever got the Ctrl-C
      }
      opt.step();
      ++iteration;
      loss_sum += loss_value;
      ++loss_count;
      char extra[48];
      std::snprintf(extra, sizeof extra, "loss %.4f", loss_sum / double(loss_count));
      if (root) progress.update(it + 1, extra);
      meta.training["iterations"] = iteration;
      if (dp ? stop : bool(g_interrupted)) {
        if (root) progress.finish();
        if (!root) throw Interrupted("rank " + std::to_string(dp->rank()) + " stopped at iteration " + std::to_string(iteration) + " (rank 0 saves)");
        save(net, opt, o, meta, history, best);
        throw Interrupted("interrupted at iteration " + std::to_string(iteration) + "; checkpoint saved to " + o.out +
                          " (continue with --resume)");
      }
      if (root && o.save_every > 0 && iteration % o.save_every == 0 && iteration < total_iters) save(net, opt, o, meta, history, best);
    }
    if (root) progress.finish();
    EpochStats es;
    es.epoch = epoch + 1;
    es.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    es.mean_loss = loss_count ? loss_sum / double(loss_count) : 0.0;
    es.lr = lr_now;
    // Every rank measures validation (same weights, same answer), so all stop at the same epoch.
    if (o.val > 0) es.val_accuracy = measure(net, val_set).accuracy;
    const Quality q = root ? measure(net, test_set) : Quality{};
    es.test_accuracy = q.accuracy;
    const bool improved = o.val > 0 && es.val_accuracy > best.val_accuracy;
    if (improved) {
      best.epoch = es.epoch;
      best.val_accuracy = es.val_accuracy;
      best.test_accuracy = es.test_accuracy;
      if (o.keep == Keep::best && root) best.weights = weights_from(net);
      meta.training["best_epoch"] = best.epoch;
      meta.training["best_val_accuracy"] = best.val_accuracy;
      meta.training["best_test_accuracy"] = best.test_accuracy;
    }
    es.expert_load = q.routing.load;
    es.load_cv = q.routing.load_cv;
    es.importance_cv = q.routing.importance_cv;
    es.gate_entropy = q.routing.gate_entropy;
    es.dead_experts = q.routing.dead;
    if (root) print_epoch(es, o, improved, loss_count);
    if (const double comm = dp ? dp->take_comm_seconds() : 0; dp && root)
      std::fprintf(stderr, "epoch %lld: %d ranks, all-reduce %.3f ms/step (%.1f%% of the epoch, waiting for the slowest rank included)\n",
                   (long long)es.epoch, dp->world_size(), 1e3 * comm / double(std::max<int64_t>(loss_count, 1)),
                   100.0 * comm / std::max(es.seconds, 1e-9));
    // Drop a partial epoch's entry left by an interrupted run, then record this one.
    history.erase(std::remove_if(history.begin(), history.end(), [&](const auto& h) { return h.first >= es.epoch; }), history.end());
    history.emplace_back(es.epoch, history_csv_line(es));
    summary.seconds += es.seconds;
    summary.history.push_back(es);
    if (o.patience > 0 && es.epoch - best.epoch >= o.patience && es.epoch < o.epochs) {
      if (root)
        std::fprintf(stderr, "stopping after epoch %lld: no better validation accuracy for %lld epochs (--patience), best %.2f%% at epoch %lld\n",
                     (long long)es.epoch, (long long)o.patience, 100.0 * best.val_accuracy, (long long)best.epoch);
      meta.training["stopped_early_after"] = es.epoch;
      break;
    }
  }
  const int64_t last_epoch = iteration / iters_per_epoch;

  if (!root) {  // rank 0 evaluates and saves; the weights here are the same
    summary.epochs = last_epoch;
    summary.iterations = iteration;
    return summary;
  }
  // The summary describes the kept model; the net goes back to the last weights for the save.
  const bool keep_best = o.keep == Keep::best && best.epoch > 0;
  const Weights last = weights_from(net);
  if (keep_best) load_into(net, best.weights, "the best epoch's weights");
  const Quality test_q = measure(net, test_set);
  const Quality train_q = measure(net, train_set);
  summary.epochs = last_epoch;
  summary.iterations = iteration;
  summary.kept_epoch = keep_best ? best.epoch : last_epoch;
  summary.test_accuracy = test_q.accuracy;
  summary.train_accuracy = train_q.accuracy;
  summary.val_accuracy = o.val > 0 ? measure(net, val_set).accuracy : NAN;
  summary.expert_load = test_q.routing.load;
  if (keep_best) load_into(net, last, "the last weights");
  meta.training["kept_epoch"] = summary.kept_epoch;
  meta.training["test_accuracy"] = summary.test_accuracy;
  meta.training["train_accuracy"] = summary.train_accuracy;
  meta.training["val_accuracy"] = o.val > 0 ? nlohmann::json(summary.val_accuracy) : nlohmann::json(nullptr);
  meta.training["expert_load"] = summary.expert_load;
  save(net, opt, o, meta, history, best);
  char val[64] = "";
  if (o.val > 0) std::snprintf(val, sizeof val, "validation accuracy %.2f%%, ", 100.0 * summary.val_accuracy);
  std::fprintf(stderr, "saved %s: kept epoch %lld (--keep %s), %strain accuracy %.2f%%, test accuracy %.2f%%\n", o.out.c_str(),
               (long long)summary.kept_epoch, to_string(o.keep).c_str(), val, 100.0 * summary.train_accuracy,
               100.0 * summary.test_accuracy);
  return summary;
}

}  // namespace moe
