#include "cli/options.h"

namespace moe {

void add_model_options(CLI::App* cmd, ModelConfig& c) {
  cmd->add_option("--experts", c.n_experts, "Number of experts E")->capture_default_str();
  cmd->add_option("--top", c.top_k, "Experts chosen per image (1..E)")->capture_default_str();
  cmd->add_option("--emb-size", c.emb_size, "Embedding / expert width")->capture_default_str();
  cmd->add_option("--w-importance", c.w_importance, "Weight of the importance (load-balancing) loss")->capture_default_str();
}

void add_data_options(CLI::App* cmd, std::string& dataset, std::string& data_dir) {
  cmd->add_option("--dataset", dataset, "mnist or fashion-mnist")
      ->check(CLI::IsMember({"mnist", "fashion-mnist"}))
      ->capture_default_str();
  cmd->add_option("--data", data_dir, "Folder with the IDX files (default: $MOE_MNIST_DATA, else ./data/<dataset>, else "
                  "${XDG_DATA_HOME:-~/.local/share}/moe-mnist/<dataset>)")->envname("MOE_MNIST_DATA");
}

void add_split_option(CLI::App* cmd, std::string& split, const std::string& help) {
  cmd->add_option("--split", split, help)->check(CLI::IsMember({"train", "test"}))->capture_default_str();
}

}  // namespace moe
