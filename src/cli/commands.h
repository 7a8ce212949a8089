// Each subcommand registers its options (one table, defaults shown by --help) and its action.
#pragma once
#include <CLI/CLI.hpp>

namespace moe {

void add_train_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_graph_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_experts_command(CLI::App& app);
void add_plot_train_command(CLI::App& app);
void add_serve_command(CLI::App& app);  // only in builds with MOE_MNIST_HAVE_SERVE

}  // namespace moe
