// `moe-mnist experts`: routing statistics of a model over a dataset split, pictures, and the
// drop-one-expert ablation.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/backends.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "base/atomic_file.h"
#include "model/checked_classifier.h"
#include "model/checkpoint.h"
#include "data/dataset.h"
#include "base/errors.h"
#include "bench/evaluate.h"
#include "report/plot.h"
#include "model/reference.h"
#include "model/routing.h"

namespace moe {

namespace {

constexpr int64_t kExamples = 12;  // example digits per expert in the picture and the JSON

struct Pass {
  std::vector<float> gate_probs;    // [n, E]
  std::vector<int64_t> predictions; // [n]
};

Pass run_model(Classifier& model, const std::vector<float>& x, int64_t n) {
  const int64_t E = model.n_experts(), C = model.n_classes(), B = 1000;
  Pass p;
  p.gate_probs.resize(size_t(n * E));
  p.predictions.resize(size_t(n));
  std::vector<float> logits(size_t(B * C));
  for (int64_t i = 0; i < n; i += B) {
    const int64_t b = std::min(B, n - i);
    model.classify(x.data() + i * 784, b, logits.data(), p.gate_probs.data() + i * E);
    for (int64_t r = 0; r < b; ++r) p.predictions[size_t(i + r)] = argmax(logits.data() + r * C, C);
  }
  return p;
}

double accuracy_of(const std::vector<int64_t>& pred, const std::vector<uint8_t>& labels) {
  int64_t ok = 0;
  for (size_t i = 0; i < pred.size(); ++i) ok += pred[i] == labels[i];
  return pred.empty() ? 0.0 : double(ok) / double(pred.size());
}

std::vector<int64_t> parse_drop(const std::string& s, int64_t E) {
  std::vector<int64_t> r;
  if (s == "all") {
    for (int64_t e = 0; e < E; ++e) r.push_back(e);
    return r;
  }
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    size_t used = 0;
    int64_t e = -1;
    try {
      e = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != part.size() || part.empty())
      throw InputError("--drop-expert: expected 'all' or expert numbers like 3 or 1,5, got '" + s + "'");
    if (e < 0 || e >= E)
      throw InputError("--drop-expert " + part + ": the model has " + std::to_string(E) + " experts (0.." + std::to_string(E - 1) + ")");
    r.push_back(e);
  }
  return r;
}

std::string pct(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", 100.0 * v);
  return b;
}

void print_table(const RoutingStats& s, const std::string& what) {
  const int64_t E = s.n_experts;
  std::printf("%s\n", what.c_str());
  std::printf("expert  load %%  importance %%  mean weight  images served  accuracy %%\n");
  for (int64_t e = 0; e < E; ++e) {
    const size_t u = size_t(e);
    std::printf("%6lld  %6.1f  %12.1f  %11.3f  %13lld  %10s\n", (long long)e, 100 * s.load[u], 100 * s.importance[u],
                s.mean_weight[u], (long long)s.rows_served[u], s.accuracy[u] < 0 ? "-" : pct(s.accuracy[u]).c_str());
  }
  std::printf("load CV %.3f, importance CV %.3f (the importance loss is w * CV^2 = w * %.4f)\n", s.load_cv, s.importance_cv,
              s.importance_cv * s.importance_cv);
  std::printf("routing entropy: %.3f nats per image (gate), %.3f nats over the load (uniform: %.3f); mean top-1 margin %.3f\n",
              s.gate_entropy, s.load_entropy, std::log(double(E)), s.mean_margin);
  std::string dead;
  for (int64_t e : s.dead) dead += (dead.empty() ? "" : ", ") + std::to_string(e);
  std::printf("dead experts (load < 1%%): %s\n", dead.empty() ? "none" : dead.c_str());
  if (!s.class_expert.empty()) {
    std::printf("class x expert (share of each class's top-k slots, %%):\nclass");
    for (int64_t e = 0; e < E; ++e) std::printf(" %5lld", (long long)e);
    std::printf("\n");
    for (size_t c = 0; c < s.class_expert.size(); ++c) {
      std::printf("%5zu", c);
      for (double v : s.class_expert[c]) std::printf(" %5.1f", 100 * v);
      std::printf("\n");
    }
  }
  if (!s.top_pairs.empty()) {
    std::printf("most frequent expert pairs (share of images):");
    for (size_t i = 0; i < std::min<size_t>(5, s.top_pairs.size()); ++i)
      std::printf(" %lld+%lld %s%%", (long long)s.top_pairs[i].first.first, (long long)s.top_pairs[i].first.second,
                  pct(double(s.top_pairs[i].second) / double(s.n_rows)).c_str());
    std::printf("\n");
  }
}

nlohmann::json stats_json(const RoutingStats& s) {
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& [ij, count] : s.top_pairs) pairs.push_back({{"experts", {ij.first, ij.second}}, {"images", count}});
  nlohmann::json experts = nlohmann::json::array();
  for (int64_t e = 0; e < s.n_experts; ++e) {
    const size_t u = size_t(e);
    experts.push_back({{"expert", e}, {"load", s.load[u]}, {"importance", s.importance[u]}, {"mean_weight", s.mean_weight[u]},
                       {"images_served", s.rows_served[u]},
                       {"accuracy", s.accuracy[u] < 0 ? nlohmann::json(nullptr) : nlohmann::json(s.accuracy[u])},
                       {"top_images", s.top_rows[u]}});
  }
  return {{"images", s.n_rows},          {"n_experts", s.n_experts},         {"top_k", s.k},
          {"accuracy", s.accuracy_all},  {"experts", experts},               {"load_cv", s.load_cv},
          {"importance_cv", s.importance_cv}, {"gate_entropy", s.gate_entropy}, {"load_entropy", s.load_entropy},
          {"max_entropy", std::log(double(s.n_experts))}, {"mean_top1_margin", s.mean_margin}, {"dead_experts", s.dead},
          {"class_expert", s.class_expert}, {"class_images", s.class_rows}, {"co_selection", s.co_selection},
          {"top_pairs", pairs}};
}

std::vector<std::string> write_plots(const RoutingStats& s, const Dataset& d, const std::string& dir, const std::string& name) {
  const int64_t E = s.n_experts;
  std::vector<std::string> experts, classes, files;
  for (int64_t e = 0; e < E; ++e) experts.push_back(std::to_string(e));
  for (int64_t c = 0; c < s.n_classes; ++c) classes.push_back(std::to_string(c));
  auto add = [&](const std::vector<std::string>& f) { files.insert(files.end(), f.begin(), f.end()); };

  HeatmapSpec cls;
  cls.title = name + ": share of each class's top-" + std::to_string(s.k) + " slots per expert (%)";
  cls.x_label = "expert";
  cls.y_label = d.name == "mnist" ? "digit" : "class";
  cls.x_names = experts;
  cls.y_names = classes;
  for (const auto& row : s.class_expert) {
    cls.values.emplace_back();
    for (double v : row) cls.values.back().push_back(100 * v);
  }
  cls.cell_format = "%.0f";
  add(plot_heatmap(cls, dir + "/class_expert"));

  BarSpec bars;
  char cvs[96];
  std::snprintf(cvs, sizeof cvs, " (load CV %.3f, importance CV %.3f)", s.load_cv, s.importance_cv);
  bars.title = name + ": expert load and importance" + cvs;
  bars.x_label = "expert";
  bars.y_label = "%";
  bars.categories = experts;
  bars.series = {"load (share of top-k slots)", "importance (mean gate probability)"};
  bars.values.resize(2);
  for (int64_t e = 0; e < E; ++e) {
    bars.values[0].push_back(100 * s.load[size_t(e)]);
    bars.values[1].push_back(100 * s.importance[size_t(e)]);
  }
  bars.reference = 100.0 / double(E);
  bars.reference_name = "uniform";
  add(plot_bars(bars, dir + "/load_importance"));

  HeatmapSpec co;
  co.title = name + ": % of images routed to both (diagonal: to that one)";
  co.x_label = co.y_label = "expert";
  co.x_names = co.y_names = experts;
  for (const auto& row : s.co_selection) {
    co.values.emplace_back();
    for (int64_t v : row) co.values.back().push_back(100.0 * double(v) / double(std::max<int64_t>(s.n_rows, 1)));
  }
  co.cell_format = "%.1f";
  add(plot_heatmap(co, dir + "/co_selection"));

  ImageGridSpec grid;
  grid.title = name + ": the images each expert weighs highest";
  for (int64_t e = 0; e < E; ++e) {
    grid.row_names.push_back("expert " + std::to_string(e));
    grid.images.emplace_back();
    for (int64_t r : s.top_rows[size_t(e)]) {
      std::vector<float> img(784);
      for (size_t i = 0; i < 784; ++i) img[i] = d.pixels[size_t(r) * 784 + i] / 255.0f;
      grid.images.back().push_back(std::move(img));
    }
  }
  add(plot_image_grid(grid, dir + "/examples"));
  return files;
}

}  // namespace

void add_experts_command(CLI::App& app) {
  struct Args {
    std::string model = "runs/mnist", dataset = "mnist", data_dir, split = "test", plot_dir, drop;
    int64_t limit = 0;
    bool json = false;
    BackendOptions backend;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("experts", "Routing statistics: expert load, importance, balance, class x expert, "
                                            "co-selection, example images, drop-one-expert ablation");
  cmd->add_option("--model", a->model,
                  "An exported .onnx file (its gate_probs output, --backend cpu|cuda|tensorrt) or a checkpoint directory "
                  "(the reference forward pass, LibTorch with --backend torch, the fused kernel with --backend native)")
      ->capture_default_str();
  add_split_option(cmd, a->split, "Which split to route: train or test");
  add_data_options(cmd, a->dataset, a->data_dir);
  add_backend_options(cmd, a->backend);
  cmd->add_option("--limit", a->limit, "Use only the first N images of the split (0 = all)")
      ->capture_default_str()
      ->check(whole_number(0, INT64_MAX));
  cmd->add_flag("--json", a->json, "Print every number as JSON on stdout instead of the table");
  cmd->add_option("--plot", a->plot_dir,
                  "Write class_expert, load_importance, co_selection and examples as .png and .svg into DIR (gnuplot)");
  cmd->add_option("--drop-expert", a->drop,
                  "Ablation: E, E1,E2,... or all; re-run with each expert's gate probability forced to 0 (the rest "
                  "re-normalised) and report the accuracy change. Needs a checkpoint directory (reference forward pass)")
      ->check(non_empty());
  cmd->callback([a] {
    if (a->limit < 0) throw InputError("--limit must be >= 0, got " + std::to_string(a->limit));
    if (!a->plot_dir.empty()) check_output_dir(a->plot_dir, "--plot");  // before the work
    const bool is_dir = std::filesystem::is_directory(a->model);
    if (!is_dir && !std::filesystem::exists(a->model))
      throw InputError(a->model + ": no such file or directory (give an exported .onnx file or a checkpoint directory)");
    const bool other_engine = a->backend.backend == Backend::torch || a->backend.backend == Backend::native;
    if (!a->drop.empty() && (!is_dir || other_engine))
      throw InputError("--drop-expert needs a checkpoint directory and the reference forward pass: the exported ONNX graph "
                       "routes inside a static graph, so pass the checkpoint folder (without --backend torch or native) instead of " +
                       a->model);
    std::unique_ptr<Classifier> model;
    ReferenceClassifier* reference = nullptr;
    if (is_dir && !other_engine) {
      auto ref = std::make_unique<ReferenceClassifier>(load_checkpoint(a->model));
      reference = ref.get();
      model = checked(std::move(ref), a->model);
    } else {
      model = open_backend(a->model, a->backend);
    }
    Dataset d = load_dataset(a->dataset, resolve_data_dir(a->dataset, a->data_dir), a->split);
    if (a->limit > 0 && a->limit < d.n) {
      d.n = a->limit;
      d.pixels.resize(size_t(d.n * 784));
      d.labels.resize(size_t(d.n));
    }
    const std::vector<float> x = d.to_float();
    const int64_t E = model->n_experts(), k = std::clamp<int64_t>(model->top_k(), 1, E);
    const std::vector<int64_t> drops = a->drop.empty() ? std::vector<int64_t>{} : parse_drop(a->drop, E);
    const Pass pass = run_model(*model, x, d.n);
    const RoutingStats s = routing_stats(pass.gate_probs.data(), d.n, E, k, d.labels.data(), pass.predictions.data(),
                                         model->n_classes(), kExamples);
    const std::string source = model->backend() + " " + model->precision();

    nlohmann::json ablation = nlohmann::json::array();
    for (int64_t e : drops) {
      reference->set_dropped_expert(e);
      const Pass dropped = run_model(*model, x, d.n);
      const double acc = accuracy_of(dropped.predictions, d.labels);
      ablation.push_back({{"expert", e}, {"accuracy", acc}, {"delta_points", 100.0 * (acc - s.accuracy_all)}});
    }
    if (reference) reference->set_dropped_expert(-1);

    std::vector<std::string> files;
    if (!a->plot_dir.empty()) {
      std::filesystem::create_directories(a->plot_dir);
      files = write_plots(s, d, a->plot_dir, std::filesystem::path(a->model).filename().string());
    }
    if (a->json) {
      nlohmann::json j = stats_json(s);
      j["model"] = a->model;
      j["engine"] = source;
      j["dataset"] = d.name;
      j["split"] = d.split;
      j["ablation"] = ablation;
      j["plots"] = files;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      char head[512];
      std::snprintf(head, sizeof head, "experts: %s (%s) on %s/%s: %lld images, E=%lld, k=%lld, accuracy %.2f%%",
                    a->model.c_str(), source.c_str(), d.name.c_str(), d.split.c_str(), (long long)d.n, (long long)E,
                    (long long)k, 100 * s.accuracy_all);
      print_table(s, head);
      if (!ablation.empty()) {
        std::printf("drop one expert (gate probability forced to 0, the rest re-normalised):\nexpert  accuracy %%  change (points)\n");
        for (const auto& r : ablation)
          std::printf("%6lld  %10.2f  %+15.2f\n", (long long)r["expert"].get<int64_t>(), 100 * r["accuracy"].get<double>(),
                      r["delta_points"].get<double>());
      }
    }
    for (const auto& f : files) std::fprintf(stderr, "experts: wrote %s\n", f.c_str());
  });
}

}  // namespace moe
