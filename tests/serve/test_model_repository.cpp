// `serve --model-repository`: a Triton-layout folder of models and versions, served, followed (poll)
// and changed through the repository extension (explicit), with the hand-written reference forward
// pass as the engine. A "model.onnx" here is a one-line stand-in the test's engine factory reads
// ("seed N": a random model; "nan N": the same with NaN weights; anything else: not a model), so
// every repository rule is tested on any build, sanitizers included; tests/serve/test_repository_cli
// serves what `export --triton-repo` writes with ONNX Runtime.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#if MOE_MNIST_WITH_GRPC
#include <grpcpp/grpcpp.h>

#include "grpc_service.grpc.pb.h"
#endif
#include "base/errors.h"
#include "model/reference.h"
#include "random_model.h"
#include "serve/service.h"

namespace moe::serve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

Checkpoint model_for_seed(unsigned seed, bool nan) {
  Checkpoint ck = test::random_checkpoint(ModelConfig{}, seed);
  if (nan)
    for (auto& [name, t] : ck.weights) t.data[0] = std::nanf("");
  return ck;
}

// The stand-in "ONNX file" reader.
std::unique_ptr<Classifier> open_stand_in(const std::string& path) {
  std::ifstream in(path);
  std::string kind;
  unsigned seed = 0;
  if (!(in >> kind >> seed) || (kind != "seed" && kind != "nan")) throw InputError(path + ": not a model (test stand-in)");
  return std::make_unique<ReferenceClassifier>(model_for_seed(seed, kind == "nan"));
}

std::vector<float> expected_logits(unsigned seed, const std::vector<float>& x) {
  ReferenceClassifier ref(model_for_seed(seed, false));
  std::vector<float> logits(x.size() / 784 * 10), probs(x.size() / 784 * 8);
  ref.classify(x.data(), int64_t(x.size() / 784), logits.data(), probs.data());
  return logits;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  const fs::path tmp = p.string() + ".tmp";
  std::ofstream(tmp) << text;
  fs::rename(tmp, p);  // as a deployment copies files in: whole or not at all
}

// A version folder appears whole (written beside, renamed in), as an operator's `mv` does.
void add_version(const fs::path& repo, const std::string& model, int version, const std::string& content) {
  const fs::path staged = repo / ("." + model + "-" + std::to_string(version));
  write(staged / "model.onnx", content);
  fs::create_directories(repo / model);
  fs::rename(staged, repo / model / std::to_string(version));
}

struct TempRepo {
  fs::path dir;
  TempRepo() {
    dir = fs::temp_directory_path() / ("moe-repo-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempRepo() { fs::remove_all(dir); }
  static inline int counter = 0;
};

ServiceOptions service_options() {
  ServiceOptions o;
  o.http.port = 0;
  o.grpc.port = -1;
  return o;
}

RepositoryOptions repo_options(const fs::path& dir, ModelControl control) {
  RepositoryOptions r;
  r.dir = dir.string();
  r.control = control;
  r.poll_s = 0.05;
  r.warmup_timeout_s = 10;
  return r;
}

const std::vector<float>& images() {
  static const std::vector<float> x = test::random_images(4, 77);
  return x;
}

std::string infer_body() { return json{{"inputs", {{{"name", "input"}, {"shape", {4, 1, 28, 28}}, {"datatype", "FP32"}, {"data", images()}}}}}.dump(); }

// POSTs the images to `path`; returns (status, model_version, logits).
struct Answer {
  int status = 0;
  std::string version, body;
  std::vector<float> logits;
};
Answer infer(httplib::Client& c, const std::string& path) {
  Answer a;
  auto r = c.Post(path, infer_body(), "application/json");
  if (!r) return a;
  a.status = r->status;
  a.body = r->body;
  if (r->status != 200) return a;
  const json j = json::parse(r->body);
  a.version = j["model_version"];
  a.logits = j["outputs"][0]["data"].get<std::vector<float>>();
  return a;
}

bool near(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::fabs(a[i] - b[i]) > 1e-5f) return false;
  return true;
}

json index_of(httplib::Client& c) {
  auto r = c.Post("/v2/repository/index", "{}", "application/json");
  EXPECT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  return json::parse(r->body);
}

// The index entry of (model, version), or null.
json entry(const json& index, const std::string& model, const std::string& version) {
  for (const json& e : index)
    if (e["name"] == model && e.value("version", "") == version) return e;
  return nullptr;
}
std::string state_of(const json& index, const std::string& model, const std::string& version) {
  const json e = entry(index, model, version);
  return e.is_object() ? e.value("state", "") : "";
}

// Client threads stop and join however a test ends (a failed ASSERT returns early).
struct Joiner {
  std::atomic<bool>& stop;
  std::vector<std::thread>& threads;
  ~Joiner() {
    stop = true;
    for (auto& t : threads)
      if (t.joinable()) t.join();
  }
};

// Waits (up to 10 s) until pred holds.
template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(ModelRepository, ServesEveryModelAndVersionItsPolicySelects) {
  TempRepo repo;
  write(repo.dir / "digits" / "config.pbtxt", "name: \"digits\"\nmax_batch_size: 8\nversion_policy: { all: {} }\n"
                                              "dynamic_batching { max_queue_delay_microseconds: 100 }\n");
  add_version(repo.dir, "digits", 1, "seed 1");
  add_version(repo.dir, "digits", 2, "seed 2");
  add_version(repo.dir, "latest-only", 3, "seed 3");  // no config.pbtxt: Triton's default, the latest version
  add_version(repo.dir, "latest-only", 7, "seed 7");
  Service s(service_options(), repo_options(repo.dir, ModelControl::none), open_stand_in);
  httplib::Client c("127.0.0.1", s.port());

  EXPECT_EQ(json::parse(c.Get("/v2/models/digits")->body)["versions"], json({"1", "2"}));
  EXPECT_EQ(json::parse(c.Get("/v2/models/latest-only")->body)["versions"], json({"7"}));
  EXPECT_NE(json::parse(c.Get("/v2")->body)["extensions"].dump().find("model_repository"), std::string::npos);
  for (const auto& [path, seed] : std::map<std::string, unsigned>{{"/v2/models/digits/versions/1/infer", 1},
                                                                  {"/v2/models/digits/versions/2/infer", 2},
                                                                  {"/v2/models/digits/infer", 2},
                                                                  {"/v2/models/latest-only/infer", 7}}) {
    const Answer a = infer(c, path);
    ASSERT_EQ(a.status, 200) << path << " " << a.body;
    EXPECT_TRUE(near(a.logits, expected_logits(seed, images()))) << path;
  }
  EXPECT_EQ(c.Get("/v2/models/digits/versions/1/ready")->status, 200);
  EXPECT_EQ(c.Get("/v2/models/latest-only/versions/3/ready")->status, 404);  // never loaded: its policy skips it
  EXPECT_EQ(json::parse(c.Get("/v2/models/digits/versions/2/config")->body)["max_batch_size"], 8);
  EXPECT_EQ(json::parse(c.Get("/v2/models/digits/stats")->body)["model_stats"].size(), 2u);  // both versions
  EXPECT_EQ(json::parse(c.Get("/v2/models/stats")->body)["model_stats"].size(), 3u);
  const json idx = index_of(c);
  EXPECT_EQ(entry(idx, "digits", "1")["state"], "READY");
  EXPECT_EQ(entry(idx, "latest-only", "7")["state"], "READY");
  auto explicit_load = c.Post("/v2/repository/models/digits/load", "", "application/json");
  EXPECT_EQ(explicit_load->status, 400);  // control mode none: as Triton, no explicit load
  EXPECT_NE(explicit_load->body.find("--model-control-mode explicit"), std::string::npos);
  auto metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("moe_mnist_images_total{model=\"digits\",version=\"1\"}"), std::string::npos);
}

TEST(ModelRepository, ABrokenVersionNeverReplacesAReadyOne) {
  TempRepo repo;
  add_version(repo.dir, "m", 1, "seed 1");
  Service s(service_options(), repo_options(repo.dir, ModelControl::poll), open_stand_in);
  httplib::Client c("127.0.0.1", s.port());
  const auto good = expected_logits(1, images());
  auto still_serving_v1 = [&] {
    const Answer a = infer(c, "/v2/models/m/infer");
    EXPECT_EQ(a.status, 200) << a.body;
    EXPECT_EQ(a.version, "1");
    EXPECT_TRUE(near(a.logits, good));
  };
  const std::vector<std::pair<std::string, std::string>> broken = {
      {"truncated", "see"}, {"nan", "nan 5"}, {"missing", ""}};
  int version = 2;
  for (const auto& [what, content] : broken) {
    if (content.empty()) fs::create_directories(repo.dir / "m" / std::to_string(version));
    else add_version(repo.dir, "m", version, content);
    const std::string v = std::to_string(version);
    ASSERT_TRUE(eventually([&] { return state_of(index_of(c), "m", v) == "UNAVAILABLE"; })) << what;
    const std::string reason = entry(index_of(c), "m", v)["reason"];
    EXPECT_NE(reason.find(what == "nan" ? "non-finite" : what == "missing" ? "missing" : "not a model"), std::string::npos) << reason;
    still_serving_v1();
    ++version;
  }
  // A config.pbtxt that does not parse: the model is UNAVAILABLE with the parser's line, v1 serves on.
  write(repo.dir / "m" / "config.pbtxt", "max_batch_size: eight\n");
  ASSERT_TRUE(eventually([&] { return !entry(index_of(c), "m", "").is_null(); }));
  EXPECT_NE(entry(index_of(c), "m", "")["reason"].get<std::string>().find("line 1"), std::string::npos);
  still_serving_v1();
  // A config that declares another input than the graph takes.
  write(repo.dir / "m" / "config.pbtxt", "input [ { name: \"input\" data_type: TYPE_UINT8 dims: [ 1, 28, 28 ] } ]\n");
  ASSERT_TRUE(eventually([&] { return entry(index_of(c), "m", "1")["reason"].get<std::string>().find("UINT8") != std::string::npos; }));
  EXPECT_EQ(state_of(index_of(c), "m", "1"), "READY");  // the reload failed; the copy loaded before serves
  still_serving_v1();
}

TEST(ModelRepository, LiveSwapUnderLoadDropsNoRequestAndMixesNoVersion) {
  TempRepo repo;
  write(repo.dir / "m" / "config.pbtxt", "version_policy: { all: {} }\ndynamic_batching { max_queue_delay_microseconds: 200 }\n");
  add_version(repo.dir, "m", 1, "seed 1");
  add_version(repo.dir, "m", 2, "seed 2");
  Service s(service_options(), repo_options(repo.dir, ModelControl::poll), open_stand_in);
  std::map<std::string, std::vector<float>> expected;
  for (unsigned v : {1u, 2u, 3u}) expected[std::to_string(v)] = expected_logits(v, images());

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0}, wrong{0};
  std::mutex mu;
  std::map<std::string, int> answered_by;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", s.port());
      while (!stop) {
        // Half the clients take the latest version, half pin version 2, which stays throughout.
        const Answer a = infer(c, t % 2 ? "/v2/models/m/infer" : "/v2/models/m/versions/2/infer");
        if (a.status != 200) {
          ++failed;
          std::lock_guard<std::mutex> lock(mu);
          ADD_FAILURE() << a.status << " " << a.body;
          continue;
        }
        (near(a.logits, expected[a.version]) ? ok : wrong)++;
        std::lock_guard<std::mutex> lock(mu);
        ++answered_by[a.version];
      }
    });
  Joiner joiner{stop, clients};
  httplib::Client c("127.0.0.1", s.port());
  auto state = [&](const std::string& v) { return state_of(index_of(c), "m", v); };
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  add_version(repo.dir, "m", 3, "seed 3");  // a new version: loads beside the others, then takes the latest's traffic
  ASSERT_TRUE(eventually([&] { return state("3") == "READY"; }));
  ASSERT_TRUE(eventually([&] { std::lock_guard<std::mutex> lock(mu); return answered_by["3"] > 20; }));
  fs::remove_all(repo.dir / "m" / "1");  // removed: unloaded once its requests are answered
  ASSERT_TRUE(eventually([&] { return state("1") == "UNAVAILABLE"; }));
  EXPECT_EQ(entry(index_of(c), "m", "1")["reason"], "unloaded");
  add_version(repo.dir, "m", 4, "garbage");  // broken: stays out, 3 stays the latest
  ASSERT_TRUE(eventually([&] { return state("4") == "UNAVAILABLE"; }));
  const int before = ok;
  ASSERT_TRUE(eventually([&] { return ok > before + 50; }));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(answered_by["1"] + answered_by["2"], 0);
  EXPECT_EQ(json::parse(c.Get("/v2/models/m")->body)["versions"], json({"2", "3"}));
}

TEST(ModelRepository, ExplicitLoadAndUnloadThroughTheApi) {
  TempRepo repo;
  add_version(repo.dir, "a", 1, "seed 1");
  add_version(repo.dir, "b", 1, "seed 2");
  add_version(repo.dir, "bad", 1, "garbage");
  RepositoryOptions r = repo_options(repo.dir, ModelControl::explicit_);
  r.load_at_start = {"a"};
  Service s(service_options(), r, open_stand_in);
  httplib::Client c("127.0.0.1", s.port());
  json idx = index_of(c);
  EXPECT_EQ(entry(idx, "a", "1")["state"], "READY");
  EXPECT_FALSE(entry(idx, "b", "").is_null());  // present, not loaded: listed without a state
  EXPECT_FALSE(entry(idx, "b", "").contains("state"));
  EXPECT_EQ(c.Get("/v2/models/b")->status, 404);

  // Load b while a client keeps using a; then reload a with a new file in place: the same version
  // number swaps live.
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0}, wrong{0}, answered{0};
  const auto a1 = expected_logits(1, images()), a5 = expected_logits(5, images());
  std::vector<std::thread> clients;
  clients.emplace_back([&] {
    httplib::Client cc("127.0.0.1", s.port());
    while (!stop) {
      const Answer ans = infer(cc, "/v2/models/a/infer");
      if (ans.status != 200) ++failed;
      else if (!near(ans.logits, a1) && !near(ans.logits, a5)) ++wrong;
      else ++answered;
    }
  });
  Joiner joiner{stop, clients};
  EXPECT_EQ(c.Post("/v2/repository/models/b/load", "", "application/json")->status, 200);
  EXPECT_TRUE(near(infer(c, "/v2/models/b/infer").logits, expected_logits(2, images())));
  write(repo.dir / "a" / "1" / "model.onnx", "seed 5");
  EXPECT_EQ(c.Post("/v2/repository/models/a/load", "{}", "application/json")->status, 200);
  EXPECT_TRUE(near(infer(c, "/v2/models/a/infer").logits, a5));
  auto bad = c.Post("/v2/repository/models/bad/load", "", "application/json");
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("not a model"), std::string::npos) << bad->body;
  EXPECT_EQ(c.Post("/v2/repository/models/nothere/load", "", "application/json")->status, 404);
  EXPECT_EQ(c.Post("/v2/repository/models/a/load", R"({"parameters":{"config":"{}"}})", "application/json")->status, 400);
  stop = true;
  clients[0].join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(answered, 0);

  // Triton's one unload parameter is accepted as a boolean; anything else is refused, naming it.
  auto typo = c.Post("/v2/repository/models/a/unload", R"({"parameters":{"unload_dependents":"yes"}})", "application/json");
  EXPECT_EQ(typo->status, 400);
  EXPECT_NE(typo->body.find("'unload_dependents' is not supported"), std::string::npos) << typo->body;
  EXPECT_EQ(c.Post("/v2/repository/models/a/unload", R"({"parameters":{"unload_dependents":false}})", "application/json")->status, 200);
  ASSERT_TRUE(eventually([&] { return state_of(index_of(c), "a", "1") == "UNAVAILABLE"; }));
  EXPECT_EQ(c.Get("/v2/models/a/ready")->status, 503);
  EXPECT_EQ(infer(c, "/v2/models/a/infer").status, 503);
  auto ready_only = c.Post("/v2/repository/index", R"({"ready":true})", "application/json");
  EXPECT_EQ(json::parse(ready_only->body).size(), 1u);  // b alone
}

#if MOE_MNIST_WITH_GRPC
// The same repository through gRPC: versions, statistics and the repository RPCs.
TEST(ModelRepository, GrpcServesEveryVersionAndTheRepositoryRpcs) {
  TempRepo repo;
  write(repo.dir / "a" / "config.pbtxt", "version_policy: { all: {} }\n");
  add_version(repo.dir, "a", 1, "seed 1");
  add_version(repo.dir, "a", 2, "seed 2");
  add_version(repo.dir, "b", 1, "seed 3");
  add_version(repo.dir, "bad", 1, "garbage");
  RepositoryOptions r = repo_options(repo.dir, ModelControl::explicit_);
  r.load_at_start = {"a"};
  ServiceOptions o = service_options();
  o.grpc.port = 0;
  Service s(o, r, open_stand_in);
  auto st = inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(s.grpc_port()), grpc::InsecureChannelCredentials()));
  auto infer = [&](const std::string& model, const std::string& version, std::string* answered_by) {
    inference::ModelInferRequest q;
    q.set_model_name(model);
    q.set_model_version(version);
    auto* in = q.add_inputs();
    in->set_name("input");
    in->set_datatype("FP32");
    for (int64_t d : {int64_t(4), int64_t(1), int64_t(28), int64_t(28)}) in->add_shape(d);
    q.add_raw_input_contents(std::string(reinterpret_cast<const char*>(images().data()), images().size() * 4));
    inference::ModelInferResponse out;
    grpc::ClientContext c;
    const grpc::Status status = st->ModelInfer(&c, q, &out);
    std::vector<float> logits;
    if (status.ok()) {
      logits.resize(out.raw_output_contents(0).size() / 4);
      std::memcpy(logits.data(), out.raw_output_contents(0).data(), logits.size() * 4);
      if (answered_by) *answered_by = out.model_version();
    }
    return std::make_pair(status, logits);
  };
  std::string by;
  EXPECT_TRUE(near(infer("a", "1", &by).second, expected_logits(1, images())));
  EXPECT_TRUE(near(infer("a", "", &by).second, expected_logits(2, images())));
  EXPECT_EQ(by, "2");
  EXPECT_EQ(infer("b", "", nullptr).first.error_code(), grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext c;
    inference::ModelMetadataRequest q;
    q.set_name("a");
    inference::ModelMetadataResponse out;
    ASSERT_TRUE(st->ModelMetadata(&c, q, &out).ok());
    EXPECT_EQ(out.versions_size(), 2);
  }
  {
    grpc::ClientContext c;
    inference::ModelStatisticsRequest q;
    q.set_name("a");
    inference::ModelStatisticsResponse out;
    ASSERT_TRUE(st->ModelStatistics(&c, q, &out).ok());
    EXPECT_EQ(out.model_stats_size(), 2);  // both versions
  }
  auto load = [&](const std::string& name, bool unload) {
    grpc::ClientContext c;
    if (unload) {
      inference::RepositoryModelUnloadRequest q;
      q.set_model_name(name);
      (*q.mutable_parameters())["unload_dependents"].set_bool_param(true);  // Triton's one unload parameter
      inference::RepositoryModelUnloadResponse out;
      return st->RepositoryModelUnload(&c, q, &out);
    }
    inference::RepositoryModelLoadRequest q;
    q.set_model_name(name);
    inference::RepositoryModelLoadResponse out;
    return st->RepositoryModelLoad(&c, q, &out);
  };
  ASSERT_TRUE(load("b", false).ok());
  EXPECT_TRUE(near(infer("b", "", nullptr).second, expected_logits(3, images())));
  const grpc::Status bad = load("bad", false);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("not a model"), std::string::npos) << bad.error_message();
  EXPECT_EQ(load("nothere", false).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(load("a", true).ok());
  {
    grpc::ClientContext c;
    inference::RepositoryIndexRequest q;
    inference::RepositoryIndexResponse out;
    ASSERT_TRUE(st->RepositoryIndex(&c, q, &out).ok());
    std::map<std::string, std::string> states;
    for (const auto& m : out.models()) states[m.name() + "/" + m.version()] = m.state();
    EXPECT_EQ(states["b/1"], "READY");
    EXPECT_EQ(states["bad/1"], "UNAVAILABLE");
    EXPECT_TRUE(states["a/1"] == "UNLOADING" || states["a/1"] == "UNAVAILABLE") << states["a/1"];
  }
  grpc::ClientContext c;
  inference::ModelReadyRequest q;
  q.set_name("a");
  inference::ModelReadyResponse out;
  ASSERT_TRUE(st->ModelReady(&c, q, &out).ok());
  EXPECT_FALSE(out.ready());
}
#endif

TEST(RepositoryConfig, TritonsTextFormatWithItsFieldsAndClearErrors) {
  const RepositoryModelConfig c = parse_model_config(
      "name: \"m\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 32\n"
      "input [ { name: \"input\" data_type: TYPE_UINT8 dims: [ 1, 28, 28 ] } ]\n"
      "version_policy: { latest: { num_versions: 2 } }\n"
      "dynamic_batching { preferred_batch_size: [ 4, 16 ] max_queue_delay_microseconds: 300 }\n"
      "instance_group [ { kind: KIND_CPU count: 2 } ]\nmodel_warmup [ { name: \"w\" } ]\n",
      "m", "m/config.pbtxt");
  EXPECT_EQ(c.max_batch_size, 32);
  EXPECT_EQ(c.input_datatype, "UINT8");
  EXPECT_EQ(c.policy.select({1, 5, 3}), std::vector<int64_t>({3, 5}));
  EXPECT_EQ(c.max_queue_delay_us, 300);
  EXPECT_EQ(c.preferred_batch, 16);
  EXPECT_EQ(c.instances, 2);
  EXPECT_EQ(c.ignored, std::vector<std::string>({"model_warmup"}));
  auto error = [](const std::string& text) {
    try {
      parse_model_config(text, "m", "m/config.pbtxt");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error("max_batch_size: 8\nbogus: 1\n").find("m/config.pbtxt: not a Triton model configuration"), std::string::npos);
  EXPECT_NE(error("max_batch_size: 8\nbogus: 1\n").find("line 2"), std::string::npos);
  EXPECT_NE(error("name: \"other\"").find("differs from the model's folder name 'm'"), std::string::npos);
  EXPECT_NE(error("platform: \"tensorflow_savedmodel\"").find("ONNX models only"), std::string::npos);
  EXPECT_NE(error("input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 3, 28, 28 ] } ]").find("784"), std::string::npos);
  EXPECT_NE(error("version_policy: { specific: { } }").find("lists no versions"), std::string::npos);
  VersionPolicy specific;
  specific.kind = VersionPolicy::Kind::specific;
  specific.versions = {2, 9};
  EXPECT_EQ(specific.select({1, 2, 3}), std::vector<int64_t>({2}));
}

}  // namespace
}  // namespace moe::serve
