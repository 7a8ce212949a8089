// `moe-mnist train`: Adam over shuffled mini-batches, per-epoch test accuracy and expert load,
// atomic checkpoints, resume, and a clean save on Ctrl-C.
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

#include "core/atomic_file.h"
#include "core/checkpoint.h"
#include "core/dataset.h"
#include "core/errors.h"
#include "core/progress.h"
#include "core/routing.h"
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

void write_history_csv(const std::string& dir, const nlohmann::json& history) {
  std::string csv = history_csv_header();
  for (const auto& h : history) {
    EpochStats e;
    e.epoch = h.value("epoch", int64_t(0));
    e.seconds = h.value("seconds", 0.0);
    e.mean_loss = h.value("loss", 0.0);
    e.test_accuracy = h.value("test_accuracy", 0.0);
    e.load_cv = h.value("load_cv", 0.0);
    e.importance_cv = h.value("importance_cv", 0.0);
    e.gate_entropy = h.value("gate_entropy", 0.0);
    e.dead_experts = h.value("dead_experts", std::vector<int64_t>{});
    csv += history_csv_line(e);
  }
  write_atomically(dir + "/history.csv", [&](const std::string& tmp) { std::ofstream(tmp) << csv; });
}

void save(Net& net, torch::optim::Adam& opt, const TrainOptions& o, const CheckpointMeta& meta) {
  std::filesystem::create_directories(o.out);
  save_weights(weights_path(o.out), weights_from(net));
  write_atomically(train_state_path(o.out), [&](const std::string& tmp) { torch::save(opt, tmp); });
  if (meta.training.contains("history")) write_history_csv(o.out, meta.training["history"]);
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

std::string load_string(const std::vector<double>& load) {
  std::string s;
  char buf[16];
  for (double v : load) {
    std::snprintf(buf, sizeof buf, "%s%.1f", s.empty() ? "" : " ", 100.0 * v);
    s += buf;
  }
  return "[" + s + "] %";
}

}  // namespace

nlohmann::json to_json(const EpochStats& e) {
  return {{"epoch", e.epoch},         {"seconds", e.seconds},
          {"loss", e.mean_loss},      {"test_accuracy", e.test_accuracy},
          {"expert_load", e.expert_load}, {"load_cv", e.load_cv},
          {"importance_cv", e.importance_cv}, {"gate_entropy", e.gate_entropy},
          {"dead_experts", e.dead_experts}};
}

std::string history_csv_header() { return "epoch,seconds,loss,test_accuracy,load_cv,importance_cv,gate_entropy,dead_experts\n"; }

std::string history_csv_line(const EpochStats& e) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%lld,%.4f,%.6f,%.6f,%.6f,%.6f,%.6f,%zu\n", (long long)e.epoch, e.seconds, e.mean_loss,
                e.test_accuracy, e.load_cv, e.importance_cv, e.gate_entropy, e.dead_experts.size());
  return buf;
}

TrainSummary train(const TrainOptions& opts) {
  TrainOptions o = opts;
  if (o.epochs <= 0) throw InputError("--epochs must be > 0, got " + std::to_string(o.epochs));
  if (o.batch <= 0) throw InputError("--batch must be > 0, got " + std::to_string(o.batch));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw InputError("--lr must be a finite number > 0");
  if (o.save_every < 0) throw InputError("--save-every must be >= 0");
  set_torch_threads(o.threads);
  const torch::Device device = parse_device(o.device, "--device");
  // Data parallel (distributed.h): join the other ranks first, so an unreachable master fails fast.
  std::unique_ptr<DataParallel> dp;
  if (o.dist.world_size > 1) dp = std::make_unique<DataParallel>(o.dist);
  const bool root = !dp || dp->is_root();  // the rank that evaluates, logs and saves

  CheckpointMeta meta;
  int64_t iteration = 0;
  nlohmann::json history = nlohmann::json::array();
  if (o.resume) {
    meta = load_checkpoint_meta(o.out);
    o.model = meta.model;  // the checkpoint's sizes win over flags
    o.dataset = meta.dataset;
    iteration = meta.training.value("iterations", int64_t(0));
    if (meta.training.contains("history") && meta.training["history"].is_array()) history = meta.training["history"];
  }
  o.model.validate();
  meta.model = o.model;
  meta.dataset = o.dataset;

  const Split train_set = load_split(o, "train", device);
  const Split test_set = load_split(o, "test", device);
  const int64_t n = train_set.x.size(0);
  const int64_t iters_per_epoch = (n + o.batch - 1) / o.batch;
  const int64_t total_iters = iters_per_epoch * o.epochs;

  torch::manual_seed(o.seed);
  Net net(o.model);
  net->to(device);
  if (o.resume) load_into(net, load_weights(weights_path(o.out)), weights_path(o.out));
  FlatParams flat = flatten(net);
  torch::optim::Adam opt({flat.params}, torch::optim::AdamOptions(o.lr));
  if (o.resume) {
    if (!std::filesystem::exists(train_state_path(o.out)))
      throw InputError(train_state_path(o.out) + ": missing, cannot resume the optimizer state");
    if (meta.training.value("param_layout", std::string()) != kParamLayout)
      throw InputError(train_state_path(o.out) + ": written by an older moe-mnist whose optimizer state has another parameter order; "
                       "start again with --force");
    torch::load(opt, train_state_path(o.out));
    if (root) std::fprintf(stderr, "resuming %s at iteration %lld (epoch %lld)\n", o.out.c_str(), (long long)iteration,
                 (long long)(iteration / iters_per_epoch + 1));
  }
  meta.training = {{"epochs", o.epochs}, {"batch", o.batch}, {"lr", o.lr}, {"seed", o.seed},
                   {"iterations", iteration}, {"iterations_per_epoch", iters_per_epoch},
                   {"param_layout", kParamLayout}, {"history", history}};

  if (dp) {  // refuse to start unless every rank has these settings, this data and these weights
    dp->check_same(training_fingerprint(o, dp->world_size(), train_set.x, train_set.y, flat.params, meta.training));
    dp->seed_gate_noise(o.seed);
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
      torch::Tensor idx = perm.narrow(0, it * o.batch, std::min(o.batch, n - it * o.batch));
      const int64_t n_global = idx.size(0);  // this step's global batch; a rank computes its shard of it
      if (dp) idx = idx.narrow(0, dp->shard(n_global).first, dp->shard(n_global).second);
      NetOutput out = net->forward(train_set.x.index_select(0, idx), o.forward);
      double loss_value = 0;
      torch::Tensor loss = dp ? dp->shard_loss(out, train_set.y.index_select(0, idx), n_global, o.model, &loss_value)
                              : torch::cross_entropy_loss(out.logits, train_set.y.index_select(0, idx)) + out.moe.importance_loss;
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
        save(net, opt, o, meta);
        throw Interrupted("interrupted at iteration " + std::to_string(iteration) + "; checkpoint saved to " + o.out +
                          " (continue with --resume)");
      }
      if (root && o.save_every > 0 && iteration % o.save_every == 0 && iteration < total_iters) save(net, opt, o, meta);
    }
    if (root) progress.finish();
    EpochStats es;
    es.epoch = epoch + 1;
    es.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    es.mean_loss = loss_count ? loss_sum / double(loss_count) : 0.0;
    const Quality q = root ? measure(net, test_set) : Quality{};
    es.test_accuracy = q.accuracy;
    es.expert_load = q.routing.load;
    es.load_cv = q.routing.load_cv;
    es.importance_cv = q.routing.importance_cv;
    es.gate_entropy = q.routing.gate_entropy;
    es.dead_experts = q.routing.dead;
    if (root)
      std::fprintf(stderr, "epoch %lld/%lld: loss %.4f, test accuracy %.2f%%, %.2f s (%.0f it/s), expert load %s, load CV %.3f, dead %zu\n",
                 (long long)es.epoch, (long long)o.epochs, es.mean_loss, 100.0 * es.test_accuracy, es.seconds,
                 double(loss_count) / std::max(es.seconds, 1e-9), load_string(es.expert_load).c_str(), es.load_cv,
                 es.dead_experts.size());
    if (const double comm = dp ? dp->take_comm_seconds() : 0; dp && root)
      std::fprintf(stderr, "epoch %lld: %d ranks, all-reduce %.3f ms/step (%.1f%% of the epoch, waiting for the slowest rank included)\n",
                   (long long)es.epoch, dp->world_size(), 1e3 * comm / double(std::max<int64_t>(loss_count, 1)),
                   100.0 * comm / std::max(es.seconds, 1e-9));
    // Drop a partial epoch's entry left by an interrupted run, then record this one.
    nlohmann::json kept = nlohmann::json::array();
    for (const auto& h : meta.training["history"])
      if (h.value("epoch", int64_t(0)) < es.epoch) kept.push_back(h);
    kept.push_back(to_json(es));
    meta.training["history"] = kept;
    summary.seconds += es.seconds;
    summary.history.push_back(es);
  }

  if (!root) {  // rank 0 evaluates and saves; the weights here are the same
    summary.epochs = o.epochs;
    summary.iterations = iteration;
    return summary;
  }
  const Quality test_q = measure(net, test_set);
  const Quality train_q = measure(net, train_set);
  summary.epochs = o.epochs;
  summary.iterations = iteration;
  summary.test_accuracy = test_q.accuracy;
  summary.train_accuracy = train_q.accuracy;
  summary.expert_load = test_q.routing.load;
  meta.training["test_accuracy"] = summary.test_accuracy;
  meta.training["train_accuracy"] = summary.train_accuracy;
  meta.training["expert_load"] = summary.expert_load;
  save(net, opt, o, meta);
  std::fprintf(stderr, "saved %s: train accuracy %.2f%%, test accuracy %.2f%%\n", o.out.c_str(),
               100.0 * summary.train_accuracy, 100.0 * summary.test_accuracy);
  return summary;
}

}  // namespace moe
