// `moe-mnist plot-train`: loss, test accuracy and routing balance over the epochs of a training run.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "base/atomic_file.h"
#include "base/errors.h"
#include "report/plot.h"

namespace moe {

void add_plot_train_command(CLI::App& app) {
  struct Args {
    std::string run_dir, out;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("plot-train", "Draw loss, test and validation accuracy and expert load CV over the epochs of a run (history.csv)");
  cmd->add_option("RUN_DIR", a->run_dir, "Checkpoint directory that 'train --out' wrote")->required();
  cmd->add_option("--out", a->out, "Output base name; writes BASE.png and BASE.svg (default: RUN_DIR/train)");
  cmd->callback([a] {
    const std::string csv = a->run_dir + "/history.csv";
    std::ifstream in(csv);
    if (!in) throw InputError(csv + ": cannot read it (train writes history.csv after each epoch; is " + a->run_dir + " a run folder?)");
    {
      const std::string base = a->out.empty() ? a->run_dir + "/train" : a->out;
      const std::string flag = a->out.empty() ? "plot-train output" : "--out";
      for (const char* ext : {"png", "svg"}) check_output_file(base + "." + ext, flag, {ext}, {csv});
      check_input_file(csv, kMaxHistoryBytes, "history.csv");
    }
    std::string line;
    std::getline(in, line);
    if (line.rfind("epoch,seconds,loss,test_accuracy,load_cv", 0) != 0)
      throw InputError(csv + ": unexpected header '" + line + "' (expected epoch,seconds,loss,test_accuracy,load_cv,...)");
    LinePanelsSpec spec;
    spec.title = std::filesystem::path(a->run_dir).filename().string() + ": training";
    spec.x_label = "epoch";
    spec.panel_titles = {"training loss", "test accuracy %", "expert load CV (test set)", "validation accuracy %"};
    spec.y.resize(4);
    int line_no = 1;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.empty()) continue;
      std::vector<double> f;
      std::stringstream ss(line);
      std::string cell;
      while (std::getline(ss, cell, ',')) {
        try {
          f.push_back(std::stod(cell));
        } catch (const std::exception&) {
          throw InputError(csv + ":" + std::to_string(line_no) + ": '" + cell + "' is not a number");
        }
      }
      if (f.size() < 5) throw InputError(csv + ":" + std::to_string(line_no) + ": expected at least 5 fields, found " + std::to_string(f.size()));
      spec.x.push_back(f[0]);
      spec.y[0].push_back(f[2]);
      spec.y[1].push_back(100 * f[3]);
      spec.y[2].push_back(f[4]);
      spec.y[3].push_back(f.size() >= 9 ? 100 * f[8] : NAN);  // val_accuracy: runs since --val; nan without one
    }
    // No validation panel for runs without a held-out split (or from before --val).
    if (std::none_of(spec.y[3].begin(), spec.y[3].end(), [](double v) { return std::isfinite(v); })) {
      spec.y.pop_back();
      spec.panel_titles.pop_back();
    }
    if (spec.x.empty()) throw InputError(csv + ": no epochs recorded yet");
    const std::string base = a->out.empty() ? a->run_dir + "/train" : a->out;
    for (const auto& f : plot_line_panels(spec, base)) std::fprintf(stderr, "plot-train: wrote %s\n", f.c_str());
  });
}

}  // namespace moe
