// `moe-mnist experts` and `plot-train` as a user runs them, on the checkpoint and models that the
// TrainCli / ExportCli fixtures made: the ONNX model and the checkpoint give the same statistics,
// the pictures are written, bad input is one clear line.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>
#include <regex>

#include "test_util.h"

namespace moe {
namespace {

using Result = test::CliResult;
Result run(const std::string& args) { return test::run_cli(args); }

const std::string kRun = MOE_MNIST_TEST_RUN;
const std::string kData = " --data " + test::mnist_dir();
using test::contains;

void expect_error(const std::string& args, std::initializer_list<std::string> parts) {
  const Result r = run(args);
  EXPECT_NE(r.code, 0) << args;
  for (const auto& p : parts) EXPECT_TRUE(contains(r.err, p)) << args << ": stderr lacks '" << p << "':\n" << r.err;
  EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
}

TEST(ExpertsCli, OnnxModelAndCheckpointGiveTheSameStatistics) {
  const Result onnx = run("experts --model " + kRun + "/model.fp32.onnx --threads 1 --limit 3000 --json" + kData);
  const Result ck = run("experts --model " + kRun + " --limit 3000 --json" + kData);
  ASSERT_EQ(onnx.code, 0) << onnx.err;
  ASSERT_EQ(ck.code, 0) << ck.err;
  const auto a = nlohmann::json::parse(onnx.out), b = nlohmann::json::parse(ck.out);
  EXPECT_EQ(a["engine"], "cpu fp32");
  EXPECT_EQ(b["engine"], "reference fp32");
  EXPECT_EQ(a["images"], 3000);
  // fp32 on two engines: a near-tie may flip one image's choice, so shares agree to 1/1000.
  EXPECT_NEAR(a["accuracy"].get<double>(), b["accuracy"].get<double>(), 1e-3);
  for (const char* f : {"load_cv", "importance_cv", "gate_entropy", "load_entropy", "mean_top1_margin"})
    EXPECT_NEAR(a[f].get<double>(), b[f].get<double>(), 2e-3) << f;
  EXPECT_EQ(a["dead_experts"], b["dead_experts"]);
  ASSERT_EQ(a["experts"].size(), 8u);
  double load_sum = 0;
  for (size_t e = 0; e < 8; ++e) {
    EXPECT_NEAR(a["experts"][e]["load"].get<double>(), b["experts"][e]["load"].get<double>(), 1e-3) << e;
    EXPECT_NEAR(a["experts"][e]["importance"].get<double>(), b["experts"][e]["importance"].get<double>(), 1e-5) << e;
    load_sum += a["experts"][e]["load"].get<double>();
  }
  EXPECT_NEAR(load_sum, 1.0, 1e-9);
  ASSERT_EQ(a["class_expert"].size(), 10u);
  for (size_t c = 0; c < 10; ++c)
    for (size_t e = 0; e < 8; ++e)
      EXPECT_NEAR(a["class_expert"][c][e].get<double>(), b["class_expert"][c][e].get<double>(), 5e-3);
  EXPECT_EQ(a["co_selection"].size(), 8u);
}

TEST(ExpertsCli, TableAblationAndPictures) {
  const std::string dir = test::temp_dir("plots");
  const Result r = run("experts --model " + kRun + " --limit 1000 --drop-expert 0,7 --plot " + dir + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(on mnist/test: 1000 images, E=8, k=2, accuracy \d+\.\d\d%)"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(load CV \d\.\d{3}, importance CV \d\.\d{3})"))) << r.out;
  EXPECT_TRUE(contains(r.out, "dead experts (load < 1%):")) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\n     7 +\d+\.\d\d +[-+]\d+\.\d\d\n)"))) << r.out;
  for (const char* name : {"class_expert", "load_importance", "co_selection", "examples"})
    for (const char* ext : {".png", ".svg"}) {
      const std::string f = dir + "/" + name + ext;
      ASSERT_TRUE(std::filesystem::exists(f)) << f;
      EXPECT_TRUE(contains(r.err, f)) << r.err;
      EXPECT_GT(std::filesystem::file_size(f), 1000u) << f;
    }
  EXPECT_EQ(test::read_bytes(dir + "/examples.png").substr(1, 3), "PNG");
}

TEST(ExpertsCli, TrainRecordsRoutingHistoryAndPlotTrainDrawsIt) {
  std::ifstream in(kRun + "/config.json");
  const auto cfg = nlohmann::json::parse(in);
  // Issue #20: the per-epoch history is in history.csv only, so config.json does not grow with the epochs.
  EXPECT_FALSE(cfg["training"].contains("history"));
  EXPECT_EQ(cfg["training"].value("history_file", ""), "history.csv");
  EXPECT_TRUE(cfg["model"]["noisy_gating"].get<bool>());
  const std::string csv = test::read_bytes(kRun + "/history.csv");
  EXPECT_TRUE(std::regex_search(csv, std::regex(R"(^epoch,seconds,loss,test_accuracy,load_cv,importance_cv,gate_entropy,dead_experts,val_accuracy,lr\n1,[0-9.]+,)")))
      << csv;
  const std::string out = test::temp_dir("train") + "/train";
  const Result r = run("plot-train " + kRun + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(out + ".png"));
  EXPECT_TRUE(std::filesystem::exists(out + ".svg"));
}

TEST(ExpertsCli, BenchPlotIsDrawnByGnuplotToo) {
  const std::string dir = test::temp_dir("bench");
  const std::string common = "bench --model-dir " + kRun + " --limit 128 --passes 1 --repeats 1 --batches 1,64 --threads 1 --backends cpu";
  const Result r = run(common + " --plot " + dir + "/bench.png" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(test::read_bytes(dir + "/bench.png").substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_FALSE(std::filesystem::exists(dir + "/bench.svg"));
  const Result bad = run(common + " --plot " + dir + "/bench.jpg" + kData);  // bench logs its rows to stderr first
  EXPECT_EQ(bad.code, 1);
  for (const char* part : {"bench.jpg", ".svg", ".png"}) EXPECT_TRUE(contains(bad.err, part)) << bad.err;
}

TEST(ExpertsCli, HelpDocumentsEveryFlagWithDefaults) {
  const Result r = run("experts --help");
  ASSERT_EQ(r.code, 0);
  for (const char* flag : {"--model", "--split", "--dataset", "--data", "--backend", "--limit", "--json", "--plot", "--drop-expert"})
    EXPECT_TRUE(contains(r.out, flag)) << flag;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(--split TEXT:\{train,test\}=test)"))) << r.out;
  EXPECT_TRUE(contains(run("train --help").out, "--no-noise"));
  EXPECT_TRUE(contains(run("plot-train --help").out, "RUN_DIR"));
}

TEST(ExpertsCli, BadInputIsAClearError) {
  expect_error("experts --model /nonexistent/model.onnx" + kData, {"/nonexistent/model.onnx"});
  expect_error("experts --model " + kRun + " --split validation" + kData, {"--split", "validation"});
  expect_error("experts --model " + kRun + "/model.fp32.onnx --drop-expert 1" + kData, {"--drop-expert", "checkpoint directory"});
  expect_error("experts --model " + kRun + " --drop-expert 8" + kData, {"--drop-expert 8", "0..7"});
  expect_error("plot-train /nonexistent/run", {"/nonexistent/run/history.csv"});
  // A model whose graph has no gate_probs output: the exported one with that output removed.
  onnx::ModelProto m;
  {
    std::ifstream f(kRun + "/model.fp32.onnx", std::ios::binary);
    ASSERT_TRUE(m.ParseFromIstream(&f));
  }
  ASSERT_EQ(m.graph().output(1).name(), "gate_probs");
  m.mutable_graph()->mutable_output()->RemoveLast();
  const std::string path = test::temp_dir("nogate") + "/logits-only.onnx";
  {
    std::ofstream f(path, std::ios::binary);
    ASSERT_TRUE(m.SerializeToOstream(&f));
  }
  expect_error("experts --model " + path + kData, {path, "gate_probs"});
}

}  // namespace
}  // namespace moe
