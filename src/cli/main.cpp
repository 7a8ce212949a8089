// moe-mnist: train a Mixture-of-Experts MNIST classifier in C++, export it to ONNX, run it anywhere.
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <exception>

#include "cli/commands.h"
#include "base/errors.h"

int main(int argc, char** argv) {
  CLI::App app{"moe-mnist " MOE_MNIST_VERSION ": train a Mixture-of-Experts MNIST classifier with LibTorch, "
               "export it to ONNX and run it with ONNX Runtime (CPU, CUDA, TensorRT)"};
  app.set_version_flag("--version", std::string("moe-mnist ") + MOE_MNIST_VERSION + " (" + MOE_MNIST_BUILD_TYPE + ")");
  app.require_subcommand(1);
  moe::add_train_command(app);
  moe::add_export_command(app);
  moe::add_eval_command(app);
  moe::add_predict_command(app);
  moe::add_graph_command(app);
  moe::add_bench_command(app);
  moe::add_experts_command(app);
  moe::add_plot_train_command(app);
#ifdef MOE_MNIST_HAVE_SERVE
  moe::add_serve_command(app);
#endif
  // An unknown first word is named as such (CLI11 would only say that a subcommand is required).
  std::string names;
  bool known = false;
  for (const CLI::App* sub : app.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
    known |= argc > 1 && sub->get_name() == argv[1];
  }
  if (argc > 1 && argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "moe-mnist: error: unknown subcommand '%s'; expected one of %s (see --help)\n", argv[1], names.c_str());
    return moe::kExitUsage;
  }
  try {
    app.parse(argc, argv);  // subcommand actions run inside parse()
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A flag that does not parse or validate: one line, exit code 2 (usage), like other errors' 1.
    std::fprintf(stderr, "moe-mnist: error: %s (see --help)\n", e.what());
    return moe::kExitUsage;
  } catch (const moe::Interrupted& e) {
    std::fprintf(stderr, "moe-mnist: %s\n", e.what());
    return moe::kExitInterrupted;
  } catch (const moe::UnavailableError& e) {
    std::fprintf(stderr, "moe-mnist: not available: %s\n", e.what());
    return moe::kExitUnavailable;
  } catch (const moe::InputError& e) {
    std::fprintf(stderr, "moe-mnist: error: %s\n", e.what());
    return moe::kExitError;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the filesystem refuses (a symlink loop, a permission, a name too long) is the user's
    // to fix: name it and the reason, without the library's "filesystem error: ..." wrapping.
    std::string paths = e.path1().string();
    if (!e.path2().empty()) paths += " -> " + e.path2().string();
    std::fprintf(stderr, "moe-mnist: error: %s: %s%s\n", paths.empty() ? "a path" : paths.c_str(), e.code().message().c_str(),
                 e.code() == std::errc::too_many_symbolic_link_levels ? " (a symbolic link that points back at itself?)" : "");
    return moe::kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-mnist: internal error: %s\n", e.what());
    return moe::kExitError;
  }
  return moe::kExitOk;
}
