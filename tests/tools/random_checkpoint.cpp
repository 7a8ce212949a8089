// random_checkpoint DIR [SEED]: writes a checkpoint with random weights (default model config) to DIR.
// The deployment tests (install, package, replicas) need a model to serve in the runtime-only build,
// which cannot train; what they check is the plumbing (it loads, answers, survives restarts), not accuracy.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "model/checkpoint.h"
#include "random_model.h"

int main(int argc, char** argv) {
  // An option where DIR goes (--help) is not a folder to create.
  if (argc < 2 || argc > 3 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: random_checkpoint DIR [SEED]  (writes a random-weights checkpoint to DIR)\n");
    return argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") ? 0 : 2;
  }
  try {
    const std::string dir = argv[1];
    const unsigned seed = argc == 3 ? unsigned(std::stoul(argv[2])) : 1u;
    std::filesystem::create_directories(dir);
    const moe::Checkpoint ck = moe::test::random_checkpoint(moe::ModelConfig{}, seed);
    moe::save_checkpoint_meta(dir, ck.meta);
    moe::save_weights(moe::weights_path(dir), ck.weights);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "random_checkpoint: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
