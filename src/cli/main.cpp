// moe-mnist: train a Mixture-of-Experts MNIST classifier in C++, export it to ONNX, run it anywhere.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/errors.h"

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
  try {
    app.parse(argc, argv);  // subcommand actions run inside parse()
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const moe::Interrupted& e) {
    std::fprintf(stderr, "moe-mnist: %s\n", e.what());
    return moe::kExitInterrupted;
  } catch (const moe::UnavailableError& e) {
    std::fprintf(stderr, "moe-mnist: not available: %s\n", e.what());
    return moe::kExitUnavailable;
  } catch (const moe::InputError& e) {
    std::fprintf(stderr, "moe-mnist: error: %s\n", e.what());
    return moe::kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-mnist: internal error: %s\n", e.what());
    return moe::kExitError;
  }
  return moe::kExitOk;
}
