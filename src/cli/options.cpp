#include "cli/options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace moe {

CLI::Validator non_empty() {
  return CLI::Validator([](std::string& v) { return v.empty() ? std::string("expected a name, got an empty string") : std::string(); },
                        "", "non-empty");
}

CLI::Validator whole_number(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) {
        const std::string expected = "expected a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got " + v;
        const size_t digits_from = !v.empty() && v[0] == '-' ? 1 : 0;
        if (v.size() == digits_from || v.find_first_not_of("0123456789", digits_from) != std::string::npos) return expected;
        errno = 0;
        const long long n = std::strtoll(v.c_str(), nullptr, 10);
        if (errno == ERANGE || n < lo || n > hi) return expected;
        return std::string();
      },
      "", "whole-number");
}

CLI::Validator finite_number(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || !std::isfinite(x) || x < lo || x > hi) {
          char range[96];
          std::snprintf(range, sizeof range, "%g to %g", lo, hi);
          return "expected a number from " + std::string(range) + ", got " + v;
        }
        return std::string();
      },
      "", "finite-number");
}

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
                  "${XDG_DATA_HOME:-~/.local/share}/moe-mnist/<dataset>)")->envname("MOE_MNIST_DATA")->check(non_empty());
}

void add_split_option(CLI::App* cmd, std::string& split, const std::string& help) {
  cmd->add_option("--split", split, help)->check(CLI::IsMember({"train", "test"}))->capture_default_str();
}

}  // namespace moe
