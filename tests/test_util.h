// Small helpers shared by the tests.
#pragma once
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "random_model.h"

namespace moe::test {

// A fresh empty directory under the system temp folder, unique per test.
inline std::string temp_dir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("moe-mnist-") + info->test_suite_name() + "-" + info->name() + "-" + tag;
  for (char& ch : name)
    if (ch == '/') ch = '_';
  const auto dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

#ifdef MOE_MNIST_CLI
// What one run of the CLI printed and returned (code -1: killed by a signal).
struct CliResult {
  int code = -1;
  std::string out, err;
};

// Runs the CLI with `args` (shell words), capturing stdout and stderr separately. `prefix` (shell
// words) runs before it, e.g. "cd DIR &&" or "env VAR=value".
inline CliResult run_cli(const std::string& args, const std::string& prefix = "") {
  const std::string err_file = std::filesystem::temp_directory_path() / ("moe-cli-" + std::to_string(::getpid()) + ".err");
  const std::string cmd = prefix + " " + std::string(MOE_MNIST_CLI) + " " + args + " 2>" + err_file + " </dev/null";
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, got);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_bytes(err_file);
  std::filesystem::remove(err_file);
  return r;
}
#endif

// Whether `s` contains `part`, ignoring ASCII case ("CUDA EP" names the cuda backend).
inline bool contains_nocase(std::string s, std::string part) {
  for (auto* str : {&s, &part})
    for (char& ch : *str) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return contains(s, part);
}

// Set on a machine that has a GPU (MOE_MNIST_REQUIRE_GPU=1), so a GPU test fails instead of
// skipping when its backend cannot run: a GPU machine's CI must not pass without running them.
inline bool gpu_required() {
  const char* v = std::getenv("MOE_MNIST_REQUIRE_GPU");
  return v && *v && std::string(v) != "0";
}

// Data set folder prepared by scripts/setup.sh, relative to the source tree.
inline std::string mnist_dir() { return std::string(MOE_MNIST_SOURCE_DIR) + "/data/mnist"; }

}  // namespace moe::test
