// Randomized robustness (issue #9): valid checkpoints, IDX files, images and ONNX models are mutated
// (truncated, bytes flipped, size fields replaced with large or odd values) and fed to the CLI as a
// user would. Every run must end cleanly: an exit code of 0-3, no signal, no timeout, under an
// address-space limit. Bounded in time (MOE_MNIST_MUTATION_SECONDS, default 40) and seeded
// (MOE_MNIST_MUTATION_SEED, printed), so a failure can be replayed.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "test_util.h"

namespace moe {
namespace {

const std::string kRun = MOE_MNIST_TEST_RUN;
constexpr rlim_t kAddressSpace = rlim_t(6) << 30;  // LibTorch and ONNX Runtime reserve ~2-3 GiB of address space
constexpr int kTimeoutSeconds = 60;

struct Outcome {
  bool exited = false, timed_out = false;
  int code = -1, signal = 0;
  std::string err;
};

// Runs the CLI with `args` under the address-space limit; stderr goes to a file read back on failure.
Outcome run_limited(const std::vector<std::string>& args, const std::string& err_path) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const rlimit as{kAddressSpace, kAddressSpace};
    ::setrlimit(RLIMIT_AS, &as);
    const int null_fd = ::open("/dev/null", O_RDWR);
    const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(err_fd, 2);
    std::vector<char*> argv = {const_cast<char*>(MOE_MNIST_CLI)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(MOE_MNIST_CLI, argv.data());
    ::_exit(127);
  }
  Outcome o;
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kTimeoutSeconds);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      o.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  o.exited = !o.timed_out && WIFEXITED(status);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  o.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  o.err = test::read_bytes(err_path);
  return o;
}

using Rng = std::mt19937_64;

// One random mutation of `bytes`: truncate, flip bytes, or overwrite 4-8 bytes with a size-like value.
std::string mutate(std::string bytes, Rng& rng, std::string& what) {
  if (bytes.empty()) return bytes;
  auto pos = [&](size_t limit) { return size_t(rng() % std::max<size_t>(limit, 1)); };
  // Headers hold the sizes: aim there half of the time.
  auto where = [&] { return rng() % 2 ? pos(std::min<size_t>(bytes.size(), 64)) : pos(bytes.size()); };
  switch (rng() % 4) {
    case 0: {
      const size_t n = pos(bytes.size());
      what = "truncated to " + std::to_string(n);
      bytes.resize(n);
      break;
    }
    case 1: {
      const int flips = 1 + int(rng() % 8);
      what = "flipped " + std::to_string(flips) + " bytes";
      for (int i = 0; i < flips; ++i) bytes[where()] ^= char(1 + rng() % 255);
      break;
    }
    case 2: {
      static const uint64_t sizes[] = {0, 1, 0xff, 0xffff, 0x7fffffff, 0xffffffff, uint64_t(1) << 40, ~uint64_t(0)};
      const uint64_t v = sizes[rng() % 8];
      const size_t at = where();
      what = "size " + std::to_string(v) + " at " + std::to_string(at);
      for (size_t i = 0; i < 8 && at + i < bytes.size(); ++i) bytes[at + i] = char((v >> (8 * (rng() % 2 ? i : 7 - i))) & 0xff);
      break;
    }
    default: {
      // JSON-ish numbers: replace a digit run with a huge or negative number.
      const size_t at = bytes.find_first_of("0123456789", where());
      const char* repl[] = {"1000000000", "1099511627776", "-1", "0", "1e308", "99999999999999999999"};
      const std::string r = repl[rng() % 6];
      what = "number -> " + r;
      if (at != std::string::npos) bytes.replace(at, 1, r);
      break;
    }
  }
  return bytes;
}

TEST(Mutation, MutatedInputsEndCleanly) {
  const char* seed_env = std::getenv("MOE_MNIST_MUTATION_SEED");
  const char* secs_env = std::getenv("MOE_MNIST_MUTATION_SECONDS");
  const uint64_t seed = seed_env ? std::strtoull(seed_env, nullptr, 10) : uint64_t(std::random_device{}());
  const int seconds = secs_env ? std::atoi(secs_env) : 40;
  std::printf("seed %llu (replay with MOE_MNIST_MUTATION_SEED=%llu), %d s\n", (unsigned long long)seed,
              (unsigned long long)seed, seconds);
  Rng rng(seed);
  const std::string dir = test::temp_dir("m"), data = test::mnist_dir();

  // The valid inputs and, for each, how a user would feed a mutated copy to the CLI.
  struct Target {
    std::string name, original;
    std::function<std::vector<std::vector<std::string>>(const std::string& path)> commands;
  };
  const std::string config = test::read_bytes(kRun + "/config.json"), weights = test::read_bytes(kRun + "/weights.safetensors");
  std::string pgm = "P5\n28 28\n255\n";
  {
    const std::string images = test::read_bytes(data + "/t10k-images-idx3-ubyte");
    pgm += images.substr(16, 784);
  }
  const std::string idx_images = test::read_bytes(data + "/t10k-images-idx3-ubyte").substr(0, 16 + 784 * 200);
  std::string idx_labels = test::read_bytes(data + "/t10k-labels-idx1-ubyte").substr(0, 8 + 200);
  // The first 200 test images and labels, with their counts (big-endian, bytes 4..7) set to 200.
  std::string idx_images_200 = idx_images;
  for (std::string* f : {&idx_images_200, &idx_labels})
    for (int i = 0; i < 4; ++i) (*f)[4 + size_t(i)] = char(i == 3 ? 200 : 0);
  const std::string model = kRun + "/model.fp32.onnx", onnx = test::read_bytes(model);

  std::vector<Target> targets = {
      {"config.json", config,
       [&](const std::string& ck) {
         return std::vector<std::vector<std::string>>{{"export", "--checkpoint", ck, "--out", ck + "/m.onnx"},
                                                      {"eval", "--backend", "torch", "--model", ck, "--data", data}};
       }},
      {"weights.safetensors", weights,
       [&](const std::string& ck) {
         return std::vector<std::vector<std::string>>{{"export", "--checkpoint", ck, "--out", ck + "/m.onnx"},
                                                      {"eval", "--backend", "torch", "--model", ck, "--data", data}};
       }},
      {"t10k-images-idx3-ubyte", idx_images_200,
       [&](const std::string& d) { return std::vector<std::vector<std::string>>{{"eval", "--model", model, "--data", d}}; }},
      {"t10k-labels-idx1-ubyte", idx_labels,
       [&](const std::string& d) {
         return std::vector<std::vector<std::string>>{{"predict", "--index", "0", "--model", model, "--data", d}};
       }},
      {"digit.pgm", pgm,
       [&](const std::string& d) {
         return std::vector<std::vector<std::string>>{{"predict", "--image", d + "/digit.pgm", "--model", model}};
       }},
      {"model.onnx", onnx,
       [&](const std::string& d) {
         return std::vector<std::vector<std::string>>{{"eval", "--model", d + "/model.onnx", "--data", data},
                                                      {"graph", "--model", d + "/model.onnx", "--out", d + "/g.dot"}};
       }},
  };

  const auto t_end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int runs = 0, by_code[4] = {0, 0, 0, 0};
  for (int i = 0; std::chrono::steady_clock::now() < t_end; ++i) {
    const Target& t = targets[rng() % targets.size()];
    const std::string case_dir = dir + "/case";
    std::filesystem::remove_all(case_dir);
    std::filesystem::create_directories(case_dir);
    // Each case is a complete folder of valid files, one of them mutated.
    test::write_bytes(case_dir + "/config.json", config);
    test::write_bytes(case_dir + "/weights.safetensors", weights);
    test::write_bytes(case_dir + "/t10k-images-idx3-ubyte", idx_images_200);
    test::write_bytes(case_dir + "/t10k-labels-idx1-ubyte", idx_labels);
    std::string what;
    test::write_bytes(case_dir + "/" + t.name, mutate(t.original, rng, what));
    for (const auto& args : t.commands(case_dir)) {
      const Outcome o = run_limited(args, dir + "/err");
      ++runs;
      std::string cmd;
      for (const auto& a : args) cmd += " " + a;
      ASSERT_FALSE(o.timed_out) << "case " << i << " (" << t.name << ": " << what << "): timed out:" << cmd;
      ASSERT_TRUE(o.exited) << "case " << i << " (" << t.name << ": " << what << "): killed by signal " << o.signal << ":" << cmd
                            << "\n" << o.err;
      ASSERT_TRUE(o.code >= 0 && o.code <= 3) << "case " << i << " (" << t.name << ": " << what << "): exit " << o.code << ":"
                                             << cmd << "\n" << o.err;
      EXPECT_EQ(o.err.find("internal error"), std::string::npos)
          << "case " << i << " (" << t.name << ": " << what << "):" << cmd << "\n" << o.err;
      ++by_code[o.code];
    }
  }
  std::printf("%d runs: %d exit 0, %d exit 1, %d exit 2, %d exit 3\n", runs, by_code[0], by_code[1], by_code[2], by_code[3]);
  EXPECT_GT(runs, 10);
}

}  // namespace
}  // namespace moe
