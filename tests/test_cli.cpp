// The command line as a user meets it: real runs of build/bin/moe-mnist, their exit codes and the
// output people read. TrainCli and ExportCli are CTest fixtures that the later tests build on.
#include <sys/wait.h>
#include <algorithm>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <fstream>
#include <regex>
#include <cstring>
#include <functional>
#include <csignal>
#include <chrono>
#include <thread>
#include <limits>

#include <onnx/onnx_pb.h>

#include "base/choices.h"
#include "data/dataset.h"
#include "test_util.h"

namespace moe {
namespace {

using Result = test::CliResult;
Result run(const std::string& args, const std::string& prefix = "") { return test::run_cli(args, prefix); }

const std::string kRun = MOE_MNIST_TEST_RUN;
const std::string kData = " --data " + test::mnist_dir();

using test::contains;

TEST(TrainCli, OneSeededEpochReachesNinetyPercentTestAccuracy) {
  std::filesystem::remove_all(kRun);
  const Result r = run("train --epochs 1 --seed 1 --save-every 500 --json --out " + kRun + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  std::printf("1 epoch: test accuracy %.2f%%, %.2f s\n", 100 * j["test_accuracy"].get<double>(), j["seconds"].get<double>());
  EXPECT_GE(j["test_accuracy"].get<double>(), 0.90);
  EXPECT_EQ(j["epochs"], 1);
  EXPECT_EQ(j["iterations"], 430);  // 55 000 images after --val 5000, batch 128
  EXPECT_EQ(j["expert_load"].size(), 8u);
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(epoch 1 iter 200 loss \d+\.\d{4})"))) << r.err;
  EXPECT_TRUE(contains(r.err, "test accuracy")) << r.err;
  for (const char* f : {"/config.json", "/weights.safetensors", "/train_state.pt"})
    EXPECT_TRUE(std::filesystem::exists(kRun + f)) << f;
}

// Ctrl-C saves a checkpoint mid-epoch and exits 130; --resume continues to the same end point.
TEST(TrainCli, CtrlCSavesAndResumeFinishesTheRun) {
  const std::string dir = test::temp_dir("resume"), log = dir + "/train.log";
  const std::string script = "sh -c '" + std::string(MOE_MNIST_CLI) + " train --epochs 1 --seed 3 --out " + dir +
                             "/ck" + kData + " 2>" + log + " & pid=$!; i=0; " +
                             "while ! grep -q iter.200 " + log + " && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; " +
                             "kill -INT $pid; wait $pid; echo $?'";
  FILE* p = ::popen(script.c_str(), "r");
  char buf[64] = {0};
  const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
  ::pclose(p);
  ASSERT_TRUE(got);
  std::ifstream in(log);
  const std::string err((std::istreambuf_iterator<char>(in)), {});
  ASSERT_EQ(std::atoi(buf), 130) << err;
  EXPECT_TRUE(contains(err, "checkpoint saved")) << err;
  EXPECT_TRUE(contains(err, "--resume")) << err;
  const auto config = nlohmann::json::parse(std::ifstream(dir + "/ck/config.json"));
  const int64_t stopped_at = config["training"]["iterations"].get<int64_t>();
  EXPECT_GE(stopped_at, 200);
  EXPECT_LT(stopped_at, 430);

  const Result r = run("train --epochs 1 --resume --json --out " + dir + "/ck" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "resuming " + dir + "/ck at iteration " + std::to_string(stopped_at))) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["iterations"], 430);  // 55 000 images after --val 5000, batch 128
  EXPECT_GE(j["test_accuracy"].get<double>(), 0.88);  // one epoch; the uninterrupted seed-1 run above asserts 0.90
}

TEST(ExportCli, WritesCheckedFp32Fp16Int8AndContribMoEModels) {
  for (const std::string p : {"fp32", "fp16", "int8"}) {
    const Result r = run("export --checkpoint " + kRun + " --precision " + p);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "model." + p + ".onnx")) << r.err;
    EXPECT_TRUE(contains(r.err, "ONNX checker passed")) << r.err;
  }
  // Without --out each variant gets the name bench reads (model_file_name).
  const Result st = run("export --checkpoint " + kRun + " --precision int8 --int8-input static");
  ASSERT_EQ(st.code, 0) << st.err;
  EXPECT_TRUE(contains(st.err, kRun + "/" + model_file_name(Precision::int8, Routing::dense, Int8Input::static_scale))) << st.err;
  for (const Routing routing : {Routing::gather, Routing::moe, Routing::fused}) {
    const Result r = run("export --checkpoint " + kRun + " --routing " + to_string(routing));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(contains(r.err, kRun + "/" + model_file_name(Precision::fp32, routing))) << r.err;
  }
  const Result out = run("export --checkpoint " + kRun + " --out " + kRun + "/elsewhere.onnx");
  ASSERT_EQ(out.code, 0) << out.err;
  EXPECT_TRUE(contains(out.err, kRun + "/elsewhere.onnx")) << out.err;
}

TEST(Cli, EvalPrintsTheOriginalLineAndJson) {
  Result r = run("eval --model " + kRun + "/model.fp32.onnx --threads 1" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(accuracy: 9\d\.\d\d% time: \d+\.\d\d s \(\d+ images/s\))"))) << r.out;
  r = run("eval --json --backend torch --model " + kRun + " --batch 100" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"backend", "precision", "split", "images", "correct", "accuracy", "seconds", "images_per_second"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["backend"], "torch");
  EXPECT_EQ(j["images"], 10000);
  EXPECT_GE(j["accuracy"].get<double>(), 0.90);
}

// From another folder, without --data or $MOE_MNIST_DATA, the per-user data folder is found; with
// nothing there, the error names every place tried.
TEST(Cli, FindsTheDataFromAnotherFolder) {
  const std::string dir = test::temp_dir("elsewhere");
  std::filesystem::create_directories(dir + "/xdg/moe-mnist");
  std::filesystem::create_symlink(test::mnist_dir(), dir + "/xdg/moe-mnist/mnist");
  const std::string model = " --model " + kRun + "/model.fp32.onnx";
  Result r = run("eval --json" + model, "cd " + dir + " && env -u MOE_MNIST_DATA XDG_DATA_HOME=" + dir + "/xdg");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["images"], 10000);
  r = run("eval" + model, "cd " + dir + " && env -u MOE_MNIST_DATA XDG_DATA_HOME=" + dir + "/empty");
  EXPECT_EQ(r.code, 1) << r.err;
  for (const std::string& tried : {std::string("MOE_MNIST_DATA"), std::string("./data/mnist"), dir + "/empty/moe-mnist/mnist"})
    EXPECT_TRUE(contains(r.err, tried)) << tried << "\n" << r.err;
}

TEST(Cli, PredictShowsDigitClassAndRouting) {
  const Result r = run("predict --index 0 --model " + kRun + "/model.fp32.onnx" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "prediction: 7")) << r.out;
  EXPECT_TRUE(contains(r.out, "label: 7 (correct)")) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(experts chosen \(gate probability -> weight\): #\d \d\.\d{3} -> \d\.\d{3} #\d)"))) << r.out;
}

TEST(Cli, PredictReadsADarkOnLightImageFileOfAnotherSize) {
  // The first MNIST test digit (a 7), scaled 3x to 84x84 and inverted, as a binary PGM.
  const Dataset d = load_dataset("mnist", test::mnist_dir(), "test");
  std::string pgm = "P5\n84 84\n255\n";
  for (int y = 0; y < 84; ++y)
    for (int x = 0; x < 84; ++x) pgm += char(255 - d.pixels[size_t((y / 3) * 28 + x / 3)]);
  const std::string path = test::temp_dir("pgm") + "/seven.pgm";
  test::write_bytes(path, pgm);
  const Result r = run("predict --invert --image " + path + " --model " + kRun + "/model.fp32.onnx");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "prediction: 7")) << r.out;
}

TEST(Cli, GraphWritesAnSvg) {
  const std::string out = test::temp_dir("graph") + "/m.svg";
  const Result r = run("graph --model " + kRun + "/model.fp32.onnx --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(out);
  const std::string svg((std::istreambuf_iterator<char>(in)), {});
  EXPECT_TRUE(contains(svg, "<svg"));
  EXPECT_TRUE(contains(svg, "TopK"));
}

// Bad input: one clear line on stderr naming the culprit, a non-zero exit, no crash.
void expect_error(const std::string& args, int code, std::initializer_list<std::string> parts) {
  const Result r = run(args);
  EXPECT_EQ(r.code, code) << args << "\n" << r.err;
  for (const auto& p : parts) EXPECT_TRUE(contains(r.err, p)) << args << ": stderr lacks '" << p << "':\n" << r.err;
  EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
}

TEST(Cli, BadInputIsAClearError) {
  expect_error("eval --model /nonexistent/m.onnx" + kData, 1, {"/nonexistent/m.onnx"});
  expect_error("eval --backend torch --model " + kRun + "/model.fp32.onnx" + kData, 1, {"checkpoint directory"});
  expect_error("predict --index 10000 --model " + kRun + "/model.fp32.onnx" + kData, 1, {"--index 10000", "0..9999"});
  expect_error("predict --image " + kRun + "/config.json --model " + kRun + "/model.fp32.onnx", 1, {"config.json"});
  expect_error("predict --image /nonexistent.png --model " + kRun + "/model.fp32.onnx", 1, {"/nonexistent.png"});
  expect_error("train --experts 8 --top 9 --epochs 1 --out /tmp/x" + kData, 1, {"top", "1..experts"});
  expect_error("eval --data /nonexistent/dir --model " + kRun + "/model.fp32.onnx", 1, {"/nonexistent/dir", "setup.sh"});
  // int8 is refused on a GPU backend before any provider loads, so this holds with or without CUDA.
  expect_error("eval --model " + kRun + "/model.int8.onnx --backend cuda" + kData, 3, {"model.int8.onnx", "CPU variant"});
  expect_error("eval --model " + kRun + "/model.int8.onnx --backend tensorrt" + kData, 3, {"CPU variant"});
  expect_error("export --checkpoint /nonexistent/ck", 1, {"/nonexistent/ck"});
  expect_error("train --device tpu --epochs 1 --out /tmp/x" + kData, 1, {"--device", "tpu"});
  expect_error("eval --batch 0 --model " + kRun + "/model.fp32.onnx" + kData, 1, {"--batch"});
}

// A GPU backend either runs (and is accurate) or exits 3 with one line naming what is missing: the
// test holds on machines with and without a GPU, and checks something in both.
// `gpu_required` applies to the ONNX Runtime providers; a CUDA LibTorch is optional even there.
void expect_runs_or_names_missing(const std::string& args, const std::string& missing, bool ort_provider = true) {
  const Result r = run(args + " --json" + kData);
  if (r.code == 0) {
    EXPECT_GE(nlohmann::json::parse(r.out)["accuracy"].get<double>(), 0.90) << args;
    return;
  }
  EXPECT_FALSE(ort_provider && test::gpu_required()) << "MOE_MNIST_REQUIRE_GPU is set, but " << args << ": " << r.err;
  EXPECT_EQ(r.code, 3) << args << "\n" << r.err;
  EXPECT_TRUE(test::contains_nocase(r.err, missing)) << args << ": stderr lacks '" << missing << "':\n" << r.err;
  EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
}

// Issue #13: eval's two ways to use the threads give the same predictions; --profile writes ONNX
// Runtime's trace and prints the per-node summary; native and the fused graph evaluate too.
TEST(Cli, EvalModesProfileAndTheNativeAndFusedEngines) {
  auto accuracy_of = [](const Result& r) { return nlohmann::json::parse(r.out)["accuracy"].get<double>(); };
  const Result streams = run("eval --json --threads 2 --mode streams --model " + kRun + "/model.fp32.onnx" + kData);
  ASSERT_EQ(streams.code, 0) << streams.err;
  EXPECT_EQ(nlohmann::json::parse(streams.out)["engines"], 2);
  const Result intra = run("eval --json --threads 2 --mode intra --model " + kRun + "/model.fp32.onnx" + kData);
  ASSERT_EQ(intra.code, 0) << intra.err;
  EXPECT_EQ(nlohmann::json::parse(intra.out)["engines"], 1);
  EXPECT_EQ(accuracy_of(streams), accuracy_of(intra));
  for (const std::string& model : {"--backend native --model " + kRun, "--model " + kRun + "/model.fp32-fused.onnx"}) {
    const Result r = run("eval --json " + model + kData);
    ASSERT_EQ(r.code, 0) << model << "\n" << r.err;
    EXPECT_NEAR(accuracy_of(r), accuracy_of(intra), 2e-4) << model;  // a gate near-tie may route one image differently
  }
  const std::string profile = test::temp_dir("profile") + "/eval.json";
  const Result p = run("eval --threads 1 --profile " + profile + " --model " + kRun + "/model.fp32.onnx" + kData);
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_TRUE(std::filesystem::exists(profile));
  EXPECT_TRUE(std::regex_search(p.out, std::regex(R"(\d+ runs, [\d.]+ us per run)"))) << p.out;
  EXPECT_TRUE(std::regex_search(p.out, std::regex(R"(embedding\+moe\.gate +Gemm +\d+)"))) << p.out;
  expect_error("eval --threads 2 --mode streams --profile " + profile + " --model " + kRun + "/model.fp32.onnx" + kData, 1,
               {"--profile", "--mode intra"});
  expect_error("eval --backend native --profile " + profile + " --model " + kRun + kData, 1, {"--profile", "native"});
  const Result experts = run("experts --backend native --model " + kRun + kData);
  ASSERT_EQ(experts.code, 0) << experts.err;
  EXPECT_TRUE(contains(experts.out, "(native fp32)")) << experts.out;
}

TEST(Cli, GpuBackendsRunOrNameTheMissingProvider) {
  expect_runs_or_names_missing("eval --model " + kRun + "/model.fp32.onnx --backend cuda", "CUDA");
  expect_runs_or_names_missing("eval --model " + kRun + "/model.fp32.onnx --backend tensorrt", "TensorRT");
  expect_runs_or_names_missing("eval --backend torch --torch-device cuda --model " + kRun, "CUDA", false);
}

TEST(Cli, BenchOnATinyWorkloadGivesWellFormedJsonAndListsUnavailableBackends) {
  Result r = run("bench --model-dir " + kRun + " --limit 256 --passes 1 --repeats 2 --batches 1,64 --threads 1,2 --json" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["context"]["images_per_pass"], 256);
  EXPECT_FALSE(j["context"]["cpu"].get<std::string>().empty());
  EXPECT_TRUE(j["context"]["versions"].contains("onnxruntime"));
  bool saw_cpu = false, saw_streams = false, saw_cuda = false, saw_tensorrt = false;
  for (const auto& row : j["results"]) {
    saw_cuda |= row["backend"] == "cuda";
    saw_tensorrt |= row["backend"] == "tensorrt";
    if (!row["available"].get<bool>()) {  // only a GPU backend may be missing here, and it says why
      EXPECT_NE(row["backend"], "cpu") << row.dump();
      EXPECT_TRUE(test::contains_nocase(row["reason"].get<std::string>(), row["backend"].get<std::string>())) << row.dump();
      continue;
    }
    if (row["backend"] == "memory") {  // the read bound: no model, no accuracy
      EXPECT_GT(row["images_per_second"].get<double>(), 0) << row.dump();
      continue;
    }
    EXPECT_GT(row["images_per_second"].get<double>(), 0) << row.dump();
    EXPECT_GE(row["accuracy"].get<double>(), 0.85) << row.dump();
    EXPECT_LE(row["batch_latency_us"]["p50"].get<double>(), row["batch_latency_us"]["p99"].get<double>());
    saw_cpu |= row["backend"] == "cpu" && row["precision"] == "fp32";
    saw_streams |= row["mode"] == "streams";
    if (row["backend"] == "cpu") {
      EXPECT_GT(row["vs_native"].get<double>(), 0) << "every ONNX Runtime row has its ratio to native: " << row.dump();
    }
  }
  EXPECT_TRUE(saw_cpu && saw_streams);
  EXPECT_TRUE(saw_cuda && saw_tensorrt) << "cuda and tensorrt rows run, or say why they cannot";
  r = run("bench --model-dir " + kRun + " --limit 128 --passes 1 --repeats 1 --batches 64 --threads 1 --backends cpu --markdown" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "| backend | precision |")) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\| cpu \| int8 \| dense \| intra \| 1 \| 64 \| \d+\.\d\d \|)"))) << r.out;
  expect_error("bench --model-dir /nonexistent/dir" + kData, 1, {"/nonexistent/dir"});
}

TEST(Cli, TrainHelpDocumentsEveryFlagWithDefaults) {
  const Result r = run("train --help");
  ASSERT_EQ(r.code, 0);
  for (const char* flag : {"--epochs", "--batch", "--lr", "--seed", "--threads", "--out", "--save-every", "--resume",
                           "--device", "--json", "--experts", "--top", "--emb-size", "--w-importance", "--dataset", "--data",
                           "--val", "--keep", "--patience", "--limit", "--recipe", "--lr-schedule", "--warmup",
                           "--weight-decay", "--augment", "--label-smoothing", "--forward"})
    EXPECT_TRUE(contains(r.out, flag)) << flag;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(--epochs INT=50)"))) << r.out;
  // The defaults and why: the recipe the study chose, model selection on 5000 held-out images, 1 thread.
  for (const char* d : {"--val INT=5000", "--keep TEXT:{best,last}=best", "--lr-schedule TEXT:{constant,cosine,onecycle}=cosine",
                        "--augment TEXT=shift:1", "--batch INT=128", "--threads INT=1", "--forward TEXT:{sparse,loop,batched}=batched",
                        "scripts/study-recipe.sh", "9x slower"})
    EXPECT_TRUE(contains(r.out, d)) << d << "\n" << r.out;
  EXPECT_TRUE(contains(r.out, "MOE_MNIST_DATA"));
}

// --- issue #9: hostile-but-realistic input. Every case: the command a user would type, a clean exit
// with the expected code and one line naming the culprit; never a signal, a hang or a huge allocation.

// A copy of the trained checkpoint (config + weights) whose config.json is edited by `edit`.
std::string checkpoint_copy(const std::string& tag, const std::function<void(nlohmann::json&)>& edit = {}) {
  const std::string dir = test::temp_dir(tag) + "/ck";
  std::filesystem::create_directories(dir);
  for (const char* f : {"/weights.safetensors", "/config.json"}) std::filesystem::copy_file(kRun + f, dir + f);
  if (edit) {
    auto j = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
    edit(j);
    std::ofstream(dir + "/config.json") << j.dump();
  }
  return dir;
}

TEST(Hardening, HugeSizesAreRefusedBeforeAnyAllocation) {
  for (const int64_t experts : {int64_t(1000000000), int64_t(1) << 40}) {
    const std::string ck = checkpoint_copy("experts", [&](nlohmann::json& j) { j["model"]["experts"] = experts; });
    const std::string n = std::to_string(experts);
    expect_error("export --checkpoint " + ck, 1, {ck + "/config.json", "experts", "1..256", n});
    expect_error("eval --backend torch --model " + ck + kData, 1, {"experts", "1..256"});
    expect_error("predict --backend torch --index 0 --model " + ck + kData, 1, {"experts", "1..256"});
  }
  expect_error("train --experts 1000000000 --epochs 1 --out /tmp/never" + kData, 1, {"experts", "1..256"});
  expect_error("train --emb-size 1000000 --epochs 1 --out /tmp/never" + kData, 1, {"emb_size", "1..1024"});
  expect_error("train --experts 256 --emb-size 1024 --epochs 1 --out /tmp/never" + kData, 1, {"parameters", "limit"});
  const std::string ck = checkpoint_copy("classes", [](nlohmann::json& j) { j["model"]["n_classes"] = 1; });
  expect_error("export --checkpoint " + ck, 1, {"n_classes", "2 or more"});
  // A safetensors header that promises a [2^31, 2^31] tensor.
  const std::string big = checkpoint_copy("safetensors");
  const std::string header = R"({"embedding.weight":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,4]}})";
  std::string bytes(8, '\0');
  bytes[0] = char(header.size());
  test::write_bytes(big + "/weights.safetensors", bytes + header + "abcd");
  expect_error("export --checkpoint " + big, 1, {"weights.safetensors", "embedding.weight", "2147483648"});
}

// An IDX split with 0 images (a valid header, no payload).
std::string empty_data_dir() {
  const std::string dir = test::temp_dir("empty-idx");
  const std::string images("\x00\x00\x08\x03\x00\x00\x00\x00\x00\x00\x00\x1c\x00\x00\x00\x1c", 16);
  const std::string labels("\x00\x00\x08\x01\x00\x00\x00\x00", 8);
  for (const char* split : {"t10k", "train"}) {
    test::write_bytes(dir + "/" + split + "-images-idx3-ubyte", images);
    test::write_bytes(dir + "/" + split + "-labels-idx1-ubyte", labels);
  }
  return dir;
}

TEST(Hardening, AnEmptySplitIsAClearError) {
  const std::string data = " --data " + empty_data_dir();
  for (const std::string& cmd : {"eval --model " + kRun + "/model.fp32.onnx", "eval --backend torch --model " + kRun,
                                 "predict --index 0 --model " + kRun + "/model.fp32.onnx",
                                 "bench --model-dir " + kRun + " --passes 1 --repeats 1 --batches 64 --threads 1",
                                 std::string("train --epochs 1 --out /tmp/never")})
    expect_error(cmd + data, 1, {"-images-idx3-ubyte", "0 images"});
}

TEST(Hardening, ThreadCountsAreBounded) {
  for (const std::string n : {"100000", "-1"}) {
    expect_error("eval --threads " + n + " --model " + kRun + "/model.fp32.onnx" + kData, 1, {"--threads " + n, "expected 0"});
    expect_error("predict --index 0 --threads " + n + " --model " + kRun + "/model.fp32.onnx" + kData, 1, {"--threads " + n});
    expect_error("eval --backend torch --threads " + n + " --model " + kRun + kData, 1, {"--threads " + n});
    expect_error("train --epochs 1 --threads " + n + " --out /tmp/never" + kData, 1, {"--threads " + n});
  }
  expect_error("bench --model-dir " + kRun + " --threads 100000" + kData, 1, {"--threads 100000"});
}

// The fp32 model with its `logits` output declared [N, 0] and a model_config that says 12 classes.
TEST(Hardening, ModelOutputsAreCheckedWhenTheSessionOpens) {
  onnx::ModelProto m;
  {
    std::ifstream f(kRun + "/model.fp32.onnx", std::ios::binary);
    ASSERT_TRUE(m.ParseFromIstream(&f));
  }
  m.mutable_graph()->mutable_output(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(1)->set_dim_value(0);
  for (auto& p : *m.mutable_metadata_props())
    if (p.key() == "model_config") {
      auto j = nlohmann::json::parse(p.value());
      j["n_classes"] = 12;
      p.set_value(j.dump());
    }
  const std::string path = test::temp_dir("outputs") + "/zero-classes.onnx";
  {
    std::ofstream f(path, std::ios::binary);
    ASSERT_TRUE(m.SerializeToOstream(&f));
  }
  expect_error("predict --index 0 --model " + path + kData, 1, {path, "logits", "model_config says 12"});
  expect_error("eval --model " + path + kData, 1, {path, "logits"});
}

// Sets every value of `tensor` in the checkpoint `ck` to `value`.
void poison_weights(const std::string& ck, const std::string& tensor, float value) {
  std::string w = test::read_bytes(ck + "/weights.safetensors");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(w[i])) << (8 * i);
  const auto header = nlohmann::json::parse(w.substr(8, n));
  const auto off = header[tensor]["data_offsets"].get<std::vector<uint64_t>>();
  for (uint64_t at = 8 + n + off[0]; at < 8 + n + off[1]; at += 4) std::memcpy(&w[at], &value, 4);
  test::write_bytes(ck + "/weights.safetensors", w);
}

// Issue #20, cause 6: non-finite weights are refused when a checkpoint loads, by every command and
// backend (native answered the images that never touch them), naming the tensor; an ONNX model that
// gives non-finite outputs is refused before anything is shown.
TEST(Hardening, NonFiniteWeightsAreReportedNotAveraged) {
  const std::string ck = checkpoint_copy("nan");
  poison_weights(ck, "classifier.weight", std::numeric_limits<float>::quiet_NaN());
  for (const std::string& cmd : {"export --checkpoint " + ck, "experts --model " + ck + kData, "eval --backend native --model " + ck + kData,
                                 "eval --backend torch --model " + ck + kData, "predict --backend native --index 0 --model " + ck + kData})
    expect_error(cmd, 1, {ck + "/weights.safetensors", "tensor 'classifier.weight'", "non-finite"});
  // Infinity in one expert only: most images never reach it, and it is refused all the same.
  const std::string inf = checkpoint_copy("inf");
  poison_weights(inf, "moe.experts.5.fc2.bias", std::numeric_limits<float>::infinity());
  expect_error("eval --backend native --model " + inf + kData, 1, {"moe.experts.5.fc2.bias", "non-finite", "inf"});
  expect_error("experts --model " + inf + kData, 1, {"moe.experts.5.fc2.bias", "non-finite"});
  EXPECT_FALSE(std::filesystem::exists(ck + "/model.fp32.onnx"));

  // An ONNX model whose every weight is NaN (as if exported by a tool that did not check).
  onnx::ModelProto m;
  {
    std::ifstream f(kRun + "/model.fp32.onnx", std::ios::binary);
    ASSERT_TRUE(m.ParseFromIstream(&f));
  }
  for (auto& t : *m.mutable_graph()->mutable_initializer()) {
    if (t.data_type() != onnx::TensorProto::FLOAT) continue;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (auto& v : *t.mutable_float_data()) v = nan;
    std::string& raw = *t.mutable_raw_data();
    for (size_t at = 0; at + 4 <= raw.size(); at += 4) std::memcpy(&raw[at], &nan, 4);
  }
  const std::string model = test::temp_dir("nan-onnx") + "/nan.onnx";
  {
    std::ofstream f(model, std::ios::binary);
    ASSERT_TRUE(m.SerializeToOstream(&f));
  }
  for (const std::string& cmd : {"predict --index 0 --model " + model + kData, "eval --model " + model + kData,
                                 "experts --model " + model + kData})
    expect_error(cmd, 1, {model, "non-finite"});
}

TEST(Hardening, InputFilesAreCheckedForKindAndSizeBeforeReading) {
  const std::string model = " --model " + kRun + "/model.fp32.onnx";
  const std::string dir = test::temp_dir("inputs");
  expect_error("predict --image " + dir + model, 1, {dir, "is a directory"});
  expect_error("predict --image /dev/zero" + model, 1, {"/dev/zero", "not a regular file"});
  expect_error("eval --model /dev/zero" + kData, 1, {"/dev/zero", "not a regular file"});
  expect_error("graph --model /dev/zero --out " + dir + "/g.svg", 1, {"/dev/zero", "not a regular file"});
  test::write_bytes(dir + "/empty.onnx", "");
  expect_error("eval --model " + dir + "/empty.onnx" + kData, 1, {"empty.onnx", "empty file"});
  test::write_bytes(dir + "/junk.onnx", "not a protobuf at all");
  expect_error("eval --model " + dir + "/junk.onnx" + kData, 1, {"junk.onnx"});
  const std::string ck = checkpoint_copy("big-config");
  {
    std::ofstream f(ck + "/config.json", std::ios::binary);
    f << std::string(2 << 20, ' ');
  }
  expect_error("export --checkpoint " + ck, 1, {"config.json", "MiB limit"});
}

TEST(Hardening, UsageErrorsAreOneLineWithExitCodeTwo) {
  expect_error("evl --model x", 2, {"unknown subcommand 'evl'", "eval"});
  expect_error("eval --split foo", 2, {"--split"});
  expect_error("eval --cuda-graph --model " + kRun + "/model.fp32.onnx" + kData, 1, {"--cuda-graph", "cuda only"});
  expect_error("eval --save-optimized /nonexistent/o.onnx --model " + kRun + "/model.fp32.onnx" + kData, 1,
               {"--save-optimized /nonexistent/o.onnx", "does not exist"});
}

TEST(Hardening, OutputsThatAliasInputsAreRefused) {
  const std::string ck = checkpoint_copy("alias");
  const std::string weights = test::read_bytes(ck + "/weights.safetensors");
  expect_error("export --checkpoint " + ck + " --out " + ck + "/weights.safetensors", 1, {"--out", "weights.safetensors", ".onnx"});
  expect_error("export --checkpoint " + ck + " --out " + ck + "/config.json", 1, {"--out", "config.json"});
  EXPECT_EQ(test::read_bytes(ck + "/weights.safetensors"), weights);
  ASSERT_EQ(run("export --checkpoint " + ck).code, 0);
  const std::string model = ck + "/model.fp32.onnx", onnx = test::read_bytes(model);
  expect_error("graph --model " + model + " --out " + model + " --format dot", 1, {"--out", "model.fp32.onnx", ".dot"});
  expect_error("graph --model " + model + " --out " + model, 1, {"--out", "model.fp32.onnx"});
  std::filesystem::create_symlink(model, ck + "/link.dot");
  expect_error("graph --model " + model + " --out " + ck + "/link.dot --format dot", 1, {"same file as the input"});
  EXPECT_EQ(test::read_bytes(model), onnx);
  expect_error("eval --model " + model + " --save-optimized " + model + kData, 1, {"--save-optimized", "same file"});
  expect_error("export --checkpoint " + ck + " --precision fp32 --per-tensor", 1, {"--per-tensor", "int8"});
}

TEST(Hardening, OutputLocationsAreCheckedBeforeTheWork) {
  const std::string dir = test::temp_dir("outputs");
  test::write_bytes(dir + "/file", "x");
  expect_error("train --epochs 1 --out " + dir + "/file" + kData, 1, {"--out", "not a folder"});
  expect_error("train --epochs 1 --out " + dir + "/file/sub" + kData, 1, {"--out", "not a folder"});
  expect_error("train --epochs 1 --out /proc/moe-mnist-run" + kData, 1, {"--out", "cannot write"});
  expect_error("bench --model-dir " + kRun + " --plot /nonexistent/p.svg" + kData, 1, {"--plot", "/nonexistent"});
  expect_error("bench --model-dir " + kRun + " --plot " + dir + "/p.onnx" + kData, 1, {"--plot", ".svg"});
  expect_error("bench --model-dir " + kRun + " --plot " + dir + "/p.txt" + kData, 1, {"--plot", "p.txt", ".svg or .png"});
  expect_error("graph --model " + kRun + "/model.fp32.onnx --out /nonexistent/g.svg", 1, {"--out", "/nonexistent"});
  expect_error("plot-train " + kRun + " --out /nonexistent/t", 1, {"--out", "/nonexistent"});
  expect_error("experts --model " + kRun + "/model.fp32.onnx --plot /proc/moe-mnist-plots" + kData, 1, {"--plot", "cannot write"});
}

// An existing checkpoint is replaced only when asked; --resume refuses sizes it would ignore.
TEST(Hardening, TrainNeverReplacesACheckpointUnasked) {
  const std::string ck = checkpoint_copy("retrain");
  test::write_bytes(ck + "/model.fp32.onnx", "old export");
  const std::string weights = test::read_bytes(ck + "/weights.safetensors");
  expect_error("train --epochs 1 --out " + ck + kData, 1, {"--out " + ck, "already holds a checkpoint", "--force", "--resume"});
  expect_error("train --epochs 1 --resume --experts 4 --out " + ck + kData, 1, {"--experts 4", "contradicts", "(8)"});
  expect_error("train --epochs 1 --resume --force --out " + ck + kData, 1, {"--resume", "--force"});
  EXPECT_EQ(test::read_bytes(ck + "/weights.safetensors"), weights);
  EXPECT_TRUE(std::filesystem::exists(ck + "/model.fp32.onnx"));
}

TEST(Hardening, TrainStopsWhenTheLossIsNotFinite) {
  const std::string dir = test::temp_dir("diverge");
  expect_error("train --epochs 1 --lr 1e30 --threads 2 --out " + dir + "/ck" + kData, 1, {"diverged", "--lr"});
  expect_error("train --epochs 1 --lr inf --out " + dir + "/ck" + kData, 1, {"--lr"});
}

TEST(Hardening, ImagesWithoutInkOrOfTheOtherPolarityAreNamed) {
  const std::string dir = test::temp_dir("ink"), model = " --model " + kRun + "/model.fp32.onnx";
  test::write_bytes(dir + "/white.pgm", "P5\n28 28\n255\n" + std::string(784, char(255)));
  test::write_bytes(dir + "/black.pgm", "P5\n28 28\n255\n" + std::string(784, char(0)));
  expect_error("predict --image " + dir + "/white.pgm" + model, 1, {"white.pgm", "no ink", "--invert"});
  expect_error("predict --image " + dir + "/black.pgm" + model, 1, {"black.pgm", "no ink"});
  // The first test digit (a 7) as a dark digit on light paper, without --invert.
  const Dataset d = load_dataset("mnist", test::mnist_dir(), "test");
  std::string inverted = "P5\n28 28\n255\n", ascii = "P2\n# a seven\n28 28\n255\n";
  for (int i = 0; i < 784; ++i) {
    inverted += char(255 - d.pixels[size_t(i)]);
    ascii += std::to_string(int(d.pixels[size_t(i)])) + (i % 28 == 27 ? "\n" : " ");
  }
  test::write_bytes(dir + "/inverted.pgm", inverted);
  expect_error("predict --image " + dir + "/inverted.pgm" + model, 1, {"no ink", "add --invert"});
  // ASCII PGM (P2) is read like the binary form.
  test::write_bytes(dir + "/ascii.pgm", ascii);
  const Result r = run("predict --image " + dir + "/ascii.pgm" + model);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "prediction: 7")) << r.out;
  test::write_bytes(dir + "/bitmap.pbm", "P4\n8 1\n\xff");  // P3 (ASCII PPM) is read since issue #20; bitmaps are not
  expect_error("predict --image " + dir + "/bitmap.pbm" + model, 1, {"a PBM (bitmap) file", "PGM (P2, P5) and PPM (P3, P6)"});
}

// Exports carry the checkpoint's weights_hash and dataset; a model that does not belong is named.
TEST(Hardening, ModelsFromAnotherCheckpointOrDatasetAreWarnedAbout) {
  const std::string ck = checkpoint_copy("provenance", [](nlohmann::json& j) { j["dataset"] = "fashion-mnist"; });
  ASSERT_EQ(run("export --checkpoint " + ck).code, 0);
  const std::string model = ck + "/model.fp32.onnx";
  Result r = run("eval --model " + model + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "was trained on fashion-mnist, but the data is mnist")) << r.err;
  EXPECT_FALSE(contains(r.err, "other weights")) << r.err;
  // Retrained weights (one value changed) beside the old export.
  std::string w = test::read_bytes(ck + "/weights.safetensors");
  w[w.size() - 1] ^= 1;
  test::write_bytes(ck + "/weights.safetensors", w);
  r = run("eval --model " + model + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, model + " was exported from other weights than " + ck + "/weights.safetensors")) << r.err;
  r = run("bench --model-dir " + ck + " --backends cpu --limit 64 --passes 1 --repeats 1 --batches 64 --threads 1 --json" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "exported from other weights")) << r.err;
  EXPECT_TRUE(contains(r.err, model + " was not exported from " + ck + "/weights.safetensors (its weights_hash is")) << r.err;  // not ranked
}

// --- issue #12: model selection on a held-out split, the recipe flags ------------------------------
// Small runs (--limit: the first N training images) so each takes seconds.

nlohmann::json train_json(const std::string& args) {
  const Result r = run("train --threads 1 --json" + args + kData);
  EXPECT_EQ(r.code, 0) << args << "\n" << r.err;
  return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

nlohmann::json config_of(const std::string& dir) { return nlohmann::json::parse(std::ifstream(dir + "/config.json")); }

// The split is stored and a resumed run continues on it: one epoch + --resume to two gives exactly the
// uninterrupted two-epoch run (same held-out images, same batches; no gate noise so nothing random remains).
TEST(TrainSelect, ResumeKeepsTheHeldOutSplit) {
  const std::string dir = test::temp_dir("select-resume");
  // A constant rate: a schedule spans --epochs, which the resumed run changes.
  const std::string common = " --limit 3000 --val 500 --seed 5 --no-noise --lr-schedule constant";
  const auto whole = train_json(common + " --epochs 2 --out " + dir + "/whole");
  train_json(common + " --epochs 1 --out " + dir + "/split");
  const auto config = config_of(dir + "/split")["training"];
  EXPECT_EQ(config["val"], 500);
  EXPECT_EQ(config["seed"], 5);
  const auto resumed = train_json(" --epochs 2 --resume --out " + dir + "/split");
  ASSERT_EQ(resumed["history"].size(), 1u);
  const auto& a = whole["history"][1];
  const auto& b = resumed["history"][0];
  EXPECT_EQ(b["epoch"], 2);
  EXPECT_EQ(a["loss"], b["loss"]);
  EXPECT_EQ(a["val_accuracy"], b["val_accuracy"]);
  EXPECT_EQ(whole["val_accuracy"], resumed["val_accuracy"]);
  // The split can only be continued, not changed.
  expect_error("train --epochs 3 --resume --val 400 --out " + dir + "/split" + kData, 1, {"--val 400", "contradicts"});
  expect_error("train --epochs 3 --resume --seed 6 --out " + dir + "/split" + kData, 1, {"--seed 6", "contradicts"});
  // A damaged config.json (a training field of the wrong type) is named, not an internal error.
  std::filesystem::copy(dir + "/split", dir + "/damaged");
  auto damaged = config_of(dir + "/damaged");
  damaged["training"]["seed"] = "five";
  std::ofstream(dir + "/damaged/config.json") << damaged.dump();
  expect_error("train --epochs 3 --resume --out " + dir + "/damaged" + kData, 1, {"config.json", "wrong type"});
}

// --keep best: the checkpoint holds the epoch with the best validation accuracy (the first if tied),
// whatever the test set says; the summary's test accuracy is that model's, and eval agrees.
TEST(TrainSelect, KeptModelIsTheBestValidationEpoch) {
  const std::string dir = test::temp_dir("select-best");
  // A constant rate too high for a steady climb, so validation accuracy often goes up and down; the
  // trajectory differs between CPUs, so the kept epoch is checked against the recorded history.
  const std::string unsteady =
      " --limit 3000 --val 500 --batch 64 --lr 0.03 --lr-schedule constant --augment none --weight-decay 0 --seed 2";
  const auto j = train_json(unsteady + " --epochs 4 --out " + dir + "/ck");
  const auto& h = j["history"];
  ASSERT_EQ(h.size(), 4u);
  size_t best = 0;
  for (size_t i = 1; i < h.size(); ++i)
    if (h[i]["val_accuracy"].get<double>() > h[best]["val_accuracy"].get<double>()) best = i;
  std::printf("validation accuracy by epoch:");
  for (const auto& e : h) std::printf(" %.3f", e["val_accuracy"].get<double>());
  std::printf("; kept epoch %d\n", j["kept_epoch"].get<int>());
  EXPECT_EQ(j["kept_epoch"], int(best + 1));
  EXPECT_EQ(j["val_accuracy"], h[best]["val_accuracy"]);
  EXPECT_EQ(j["test_accuracy"], h[best]["test_accuracy"]);
  EXPECT_EQ(config_of(dir + "/ck")["training"]["kept_epoch"], int(best + 1));
  const Result eval = run("eval --backend torch --json --model " + dir + "/ck" + kData);
  ASSERT_EQ(eval.code, 0) << eval.err;
  EXPECT_EQ(nlohmann::json::parse(eval.out)["accuracy"], h[best]["test_accuracy"]);
  EXPECT_TRUE(std::filesystem::exists(dir + "/ck/last.safetensors"));  // what --resume continues from

  // --keep last keeps the last epoch; --patience 1 stops at the first epoch without improvement.
  const auto last = train_json(unsteady + " --epochs 5 --keep last --patience 1 --out " + dir + "/last");
  const auto& hl = last["history"];
  ASSERT_GE(hl.size(), 2u);
  EXPECT_EQ(last["kept_epoch"], int(hl.size()));
  EXPECT_EQ(last["test_accuracy"], hl.back()["test_accuracy"]);
  // Whatever the trajectory (it differs between CPUs): every epoch before the last improved on the
  // best before it, and the run stopped early exactly when the last one did not.
  double best_before = -1;
  for (size_t i = 0; i + 1 < hl.size(); ++i) {
    EXPECT_GT(hl[i]["val_accuracy"].get<double>(), best_before) << "epoch " << i + 1 << " did not improve, yet training went on";
    best_before = std::max(best_before, hl[i]["val_accuracy"].get<double>());
  }
  const bool last_improved = hl.back()["val_accuracy"].get<double>() > best_before;
  const auto t_last = config_of(dir + "/last")["training"];
  if (last_improved) {
    EXPECT_EQ(hl.size(), 5u) << "stopped after an epoch that improved";
    EXPECT_FALSE(t_last.contains("stopped_early_after"));
  } else if (hl.size() < 5) {
    EXPECT_EQ(t_last["stopped_early_after"], int(hl.size()));
  }
}

// --recipe original is the original project's training; explicit flags still win. The recipe flags are
// recorded, and bad values are one-line errors naming the flag.
TEST(TrainSelect, RecipeFlagsAreRecordedAndChecked) {
  const std::string dir = test::temp_dir("select-recipe");
  train_json(" --recipe original --epochs 1 --limit 2000 --out " + dir + "/orig");
  const auto t = config_of(dir + "/orig")["training"];
  EXPECT_EQ(t["batch"], 128);
  EXPECT_EQ(t["val"], 0);
  EXPECT_EQ(t["keep"], "last");
  EXPECT_EQ(t["lr_schedule"], "constant");
  EXPECT_EQ(t["augment"], "none");
  EXPECT_EQ(t["weight_decay"], 0.0);
  const auto j = train_json(" --epochs 2 --limit 2000 --val 500 --lr 1e-3 --lr-schedule cosine --warmup 0.5 --weight-decay 0.01"
                            " --augment shift:2 --label-smoothing 0.1 --out " + dir + "/new");
  const auto t2 = config_of(dir + "/new")["training"];
  EXPECT_EQ(t2["lr_schedule"], "cosine");
  EXPECT_EQ(t2["augment"], "shift:2");
  EXPECT_EQ(t2["label_smoothing"], 0.1);
  // 2 x 12 steps, 6 of warm-up: the first epoch ends at 0.82 of the peak, the second at 0.008.
  EXPECT_NEAR(j["history"][0]["lr"].get<double>(), 0.821e-3, 0.01e-3);
  EXPECT_LT(j["history"][1]["lr"].get<double>(), 0.02e-3);
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.15);  // 46 steps on 1500 images: it learns (chance is 0.10)
  const std::string csv = test::read_bytes(dir + "/new/history.csv");
  EXPECT_TRUE(contains(csv, ",val_accuracy,lr\n")) << csv;
  const Result plot = run("plot-train " + dir + "/new");
  EXPECT_EQ(plot.code, 0) << plot.err;
  EXPECT_TRUE(std::filesystem::exists(dir + "/new/train.png"));

  const std::string out = " --epochs 1 --limit 2000 --out " + dir + "/bad" + kData;
  expect_error("train --val 0" + out, 1, {"--keep best", "--val"});
  expect_error("train --val 2000" + out, 1, {"--val 2000", "2000 images"});
  expect_error("train --augment shift:9" + out, 1, {"--augment", "shift:N"});
  expect_error("train --label-smoothing 1" + out, 1, {"--label-smoothing"});
  expect_error("train --recipe fast" + out, 2, {"--recipe"});
  expect_error("train --keep worst" + out, 2, {"--keep"});
}


// The first `n` images and labels of MNIST's `split` ("train" or "t10k"), as IDX files in `dir`.
void write_mnist_prefix(const std::string& dir, const std::string& split, uint32_t n) {
  std::filesystem::create_directories(dir);
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  const std::string images = test::read_bytes(test::mnist_dir() + "/" + split + "-images-idx3-ubyte");
  const std::string labels = test::read_bytes(test::mnist_dir() + "/" + split + "-labels-idx1-ubyte");
  test::write_bytes(dir + "/" + split + "-images-idx3-ubyte", images.substr(0, 4) + be32(n) + images.substr(8, 8) + images.substr(16, size_t(n) * 784));
  test::write_bytes(dir + "/" + split + "-labels-idx1-ubyte", labels.substr(0, 4) + be32(n) + labels.substr(8, n));
}

size_t count_lines(const std::string& path) {
  const std::string s = test::read_bytes(path);
  return size_t(std::count(s.begin(), s.end(), '\n'));
}

// Issue #20, cause 5: whatever `train` writes, every command reads. config.json kept every epoch's
// history and passed the 1 MiB read limit after ~2,000 epochs; now history.csv alone holds it, and
// config.json does not grow with the epochs. 2,500 one-step epochs on 64 images (tested on 64).
TEST(TrainSelect, ManyEpochsLeaveACheckpointEveryCommandReads) {
  const std::string dir = test::temp_dir("long-run"), data = " --data " + dir + "/data", ck = dir + "/ck";
  write_mnist_prefix(dir + "/data", "train", 64);
  write_mnist_prefix(dir + "/data", "t10k", 64);
  const std::string small = " --threads 1 --experts 2 --top 1 --emb-size 8 --batch 64 --seed 1 --val 0 --keep last" + data;
  Result r = run("train --epochs 2500 --out " + ck + small);
  ASSERT_EQ(r.code, 0) << r.err.substr(r.err.size() > 2000 ? r.err.size() - 2000 : 0);
  EXPECT_LT(std::filesystem::file_size(ck + "/config.json"), 16u << 10);
  EXPECT_FALSE(config_of(ck)["training"].contains("history"));
  EXPECT_EQ(count_lines(ck + "/history.csv"), 2501u);  // header + one line per epoch
  r = run("export --checkpoint " + ck);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run("eval --model " + ck + "/model.fp32.onnx" + data);
  EXPECT_EQ(r.code, 0) << r.err;
  r = run("train --resume --epochs 2503 --out " + ck + small);
  ASSERT_EQ(r.code, 0) << r.err.substr(r.err.size() > 2000 ? r.err.size() - 2000 : 0);
  const std::string csv = test::read_bytes(ck + "/history.csv");
  EXPECT_EQ(count_lines(ck + "/history.csv"), 2504u);
  EXPECT_NE(csv.find("\n2503,"), std::string::npos);
  EXPECT_EQ(run("plot-train " + ck + " --out " + dir + "/plot").code, 0);

  // A checkpoint from before: its history in config.json. --resume carries it over to history.csv.
  {
    nlohmann::json j = config_of(ck);
    j["training"]["history"] = nlohmann::json::array();
    for (int e = 1; e <= 2503; ++e)
      j["training"]["history"].push_back({{"epoch", e}, {"seconds", 0.01}, {"loss", 2.0}, {"test_accuracy", 0.5}, {"lr", 0.001}});
    std::ofstream(ck + "/config.json") << j.dump();
  }
  r = run("train --resume --epochs 2504 --out " + ck + small);
  ASSERT_EQ(r.code, 0) << r.err.substr(r.err.size() > 2000 ? r.err.size() - 2000 : 0);
  EXPECT_FALSE(config_of(ck)["training"].contains("history"));
  EXPECT_EQ(count_lines(ck + "/history.csv"), 2505u);
  EXPECT_NE(test::read_bytes(ck + "/history.csv").find("\n2503,0.0100,2.000000,0.500000"), std::string::npos);
  std::filesystem::remove_all(dir);
}


// --- issue #20: weak answers made clear ------------------------------------------------------------

TEST(Hardening, NonIntegerCountsAndBadFlagValuesAreRefusedPlainly) {
  const std::string ck = checkpoint_copy("integers", [](nlohmann::json& j) { j["model"]["experts"] = 8.5; });
  expect_error("export --checkpoint " + ck, 1, {ck + "/config.json", "field 'experts' has the wrong type: expected a whole number", "got 8.5"});
  const std::string batch = checkpoint_copy("integers-batch", [](nlohmann::json& j) { j["training"]["batch"] = 64.5; });
  expect_error("train --resume --epochs 2 --out " + batch + kData, 1, {"field 'batch' has the wrong type: expected a whole number", "got 64.5"});
  expect_error("train --seed -1 --epochs 1 --out /tmp/never" + kData, 2, {"--seed: expected a whole number from 0 to 9223372036854775807, got -1"});
  expect_error("bench --model-dir " + kRun + " --limit -5" + kData, 2, {"--limit: expected a whole number from 0", "got -5"});
  expect_error("eval --model " + kRun + "/model.fp32.onnx --data ''", 2, {"--data: expected a name, got an empty string"});
  expect_error("experts --model " + kRun + " --drop-expert ''" + kData, 2, {"--drop-expert: expected a name, got an empty string"});
  for (const char* g : {"nan", "-5", "inf"})
    expect_error("serve --model " + kRun + "/model.fp32.onnx --port 0 --grace-s " + std::string(g), 2,
                 {"--grace-s: expected a number from 0 to 3600, got " + std::string(g)});
}

TEST(Hardening, LibraryErrorsAreTranslatedNamingTheFile) {
  const std::string dir = test::temp_dir("translated");
  std::filesystem::create_directory_symlink(dir + "/loop", dir + "/loop");
  expect_error("eval --backend native --model " + dir + "/loop" + kData, 1, {dir + "/loop", "symbolic link"});
  // A damaged optimizer state: named, one line, no LibTorch backtrace.
  const std::string ck = checkpoint_copy("state");
  test::write_bytes(ck + "/train_state.pt", "PK\x03\x04 not really a zip file");
  const Result r = run("train --resume --epochs 2 --out " + ck + kData);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, ck + "/train_state.pt: not a readable optimizer state")) << r.err;
  EXPECT_FALSE(contains(r.err, "frame #")) << r.err;
  // A PNG whose header claims 100000 x 100000 pixels: said as such, not "unknown image type".
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x00\x00\x00\x00\0\0\0\0", 33);
  test::write_bytes(dir + "/huge.png", png);
  expect_error("predict --image " + dir + "/huge.png --model " + kRun + "/model.fp32.onnx", 1, {dir + "/huge.png", "PNG header says 100000x100000"});
  // A P5 file claiming 28x28 with 10 bytes of pixels (issue #20, cause 2).
  test::write_bytes(dir + "/cut.pgm", "P5\n28 28\n255\n" + std::string(10, '\x7f'));
  expect_error("predict --image " + dir + "/cut.pgm --model " + kRun + "/model.fp32.onnx", 1,
               {dir + "/cut.pgm", "28x28 at 8 bits needs 784 bytes of pixels, found 10"});
}

TEST(Hardening, BlankAndInvertedDataAreNamed) {
  const std::string dir = test::temp_dir("blank-data");
  write_mnist_prefix(dir, "t10k", 500);
  std::string images = test::read_bytes(dir + "/t10k-images-idx3-ubyte");
  std::fill(images.begin() + 16, images.begin() + 16 + 784, '\0');  // image 0 blank
  test::write_bytes(dir + "/t10k-images-idx3-ubyte", images);
  expect_error("predict --index 0 --model " + kRun + "/model.fp32.onnx --data " + dir, 1, {"--index 0", "blank"});
  for (size_t i = 16; i < images.size(); ++i) images[i] = char(255 - uint8_t(images[i]));
  test::write_bytes(dir + "/t10k-images-idx3-ubyte", images);
  const Result r = run("eval --model " + kRun + "/model.fp32.onnx --data " + dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "are these IDX files inverted?")) << r.err;
  // Many profiled passes would pass ONNX Runtime's 1M-event cap: refused before the work.
  expect_error("eval --model " + kRun + "/model.fp32.onnx --threads 1 --passes 100000 --profile " + dir + "/p.json" + kData, 1,
               {"--profile", "lower --passes"});
}

// A second `train` into a folder that a running one writes is refused, naming the holder's pid.
TEST(Hardening, ASecondTrainIntoTheSameOutIsRefused) {
  const std::string dir = test::temp_dir("lock"), out = dir + "/ck", pid_file = dir + "/pid";
  const std::string first = "( exec " + std::string(MOE_MNIST_CLI) + " train --threads 1 --limit 640 --val 0 --keep last --epochs 100000 --out " + out + kData +
                            " >/dev/null 2>" + dir + "/first.err ) & echo $! > " + pid_file;
  ASSERT_EQ(std::system(("sh -c '" + first + "'").c_str()), 0);
  const pid_t pid = pid_t(std::atoi(test::read_bytes(pid_file).c_str()));
  ASSERT_GT(pid, 0);
  std::string holder;
  for (int i = 0; i < 600 && holder.empty(); ++i) {  // up to 60 s for the first run to take the lock
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (std::filesystem::exists(out + "/train.lock")) holder = test::read_bytes(out + "/train.lock");
  }
  ASSERT_EQ(std::atoi(holder.c_str()), pid) << test::read_bytes(dir + "/first.err");
  ASSERT_EQ(::kill(pid, 0), 0) << "the first run ended early: " << test::read_bytes(dir + "/first.err");
  expect_error("train --epochs 1 --force --out " + out + kData, 1, {"--out " + out + " is in use by another training run (pid " + std::to_string(pid)});
  expect_error("train --epochs 1 --resume --out " + out + kData, 1, {"in use by another training run"});
  ::kill(pid, SIGKILL);
  for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::filesystem::remove_all(dir);
}

// Graphs that are not this checkpoint's exports are not ranked by bench; a graph without moe-mnist's
// metadata is said to be unverifiable where it is used.
TEST(Hardening, BenchRanksOnlyTheCheckpointsOwnExports) {
  const std::string ck = checkpoint_copy("foreign");
  ASSERT_EQ(run("export --checkpoint " + ck).code, 0);
  onnx::ModelProto m;
  {
    std::ifstream f(ck + "/model.fp32.onnx", std::ios::binary);
    ASSERT_TRUE(m.ParseFromIstream(&f));
  }
  m.clear_metadata_props();
  {
    std::ofstream f(ck + "/model.fp32.onnx", std::ios::binary);
    ASSERT_TRUE(m.SerializeToOstream(&f));
  }
  Result r = run("predict --index 0 --model " + ck + "/model.fp32.onnx" + kData);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "has no model_config metadata")) << r.err;
  r = run("bench --model-dir " + ck + " --backends cpu --limit 64 --passes 1 --repeats 1 --batches 64 --threads 1 --json" + kData);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, ck + "/model.fp32.onnx was not exported from " + ck + "/weights.safetensors (it has no weights_hash metadata)")) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  bool dense_ranked = false;
  for (const auto& row : j["results"])
    if (row.value("backend", "") == "cpu" && row.value("variant", "") == "dense" && row.value("precision", "") == "fp32" &&
        row.value("available", true))
      dense_ranked = true;
  EXPECT_FALSE(dense_ranked) << r.out.substr(0, 2000);
}

// The batched forward over the flat buffer's stacked expert leaves trains exactly like the sparse one.
TEST(TrainSelect, BatchedAndSparseTrainingAgree) {
  const std::string dir = test::temp_dir("select-forward");
  const std::string common = " --limit 2000 --val 500 --epochs 2 --no-noise --seed 4";
  const auto sparse = train_json(common + " --forward sparse --out " + dir + "/sparse");
  const auto batched = train_json(common + " --forward batched --out " + dir + "/batched");
  for (int e = 0; e < 2; ++e)
    EXPECT_NEAR(sparse["history"][e]["loss"].get<double>(), batched["history"][e]["loss"].get<double>(), 1e-4) << e;
  EXPECT_NEAR(sparse["test_accuracy"].get<double>(), batched["test_accuracy"].get<double>(), 0.002);
}

}  // namespace
}  // namespace moe
