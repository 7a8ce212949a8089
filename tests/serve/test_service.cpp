// The service end to end on a real socket (a free port on 127.0.0.1), with the hand-written reference
// forward pass as the engine: answers equal the model's, batching changes nothing, limits hold, and
// /metrics counts what happened.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include <zlib.h>

#include "data/image.h"
#include "model/reference.h"
#include "serve/classification.h"
#include "serve/service.h"
#include "serve/service_fixture.h"

namespace moe::serve {
namespace {

using json = nlohmann::json;

const Checkpoint& checkpoint() { return test::served_checkpoint(); }
std::vector<std::unique_ptr<Classifier>> engines(int n) { return test::reference_engines(n); }
ServiceOptions options() { return test::service_options(); }

// What the model says for these images, run alone.
std::pair<std::vector<float>, std::vector<float>> expected(const std::vector<float>& x) {
  ReferenceClassifier ref(checkpoint());
  const int64_t n = int64_t(x.size()) / kPixels;
  std::vector<float> logits(size_t(n * 10)), probs(size_t(n * 8));
  ref.classify(x.data(), n, logits.data(), probs.data());
  return {logits, probs};
}

std::string binary_request(const std::vector<float>& x, size_t* header_length, const char* datatype = "FP32") {
  const int64_t n = int64_t(x.size()) / kPixels;
  const bool u8 = std::strcmp(datatype, "UINT8") == 0;
  std::string blob;
  if (u8) {
    for (float v : x) blob.push_back(char(uint8_t(std::lround(v * 255))));
  } else {
    blob.assign(reinterpret_cast<const char*>(x.data()), x.size() * 4);
  }
  const json head = {{"inputs", {{{"name", "input"}, {"shape", {n, 1, 28, 28}}, {"datatype", datatype},
                                  {"parameters", {{"binary_data_size", blob.size()}}}}}},
                     {"outputs", {{{"name", "logits"}, {"parameters", {{"binary_data", true}}}}}}};
  const std::string h = head.dump();
  *header_length = h.size();
  return h + blob;
}

std::vector<float> binary_logits(const httplib::Result& res) {
  EXPECT_TRUE(res) << "no response";
  if (!res) return {};
  EXPECT_EQ(res->status, 200) << res->body;
  const size_t hl = std::stoul(res->get_header_value("Inference-Header-Content-Length"));
  std::vector<float> v((res->body.size() - hl) / 4);
  std::memcpy(v.data(), res->body.data() + hl, v.size() * 4);
  return v;
}

TEST(Service, HealthMetadataAndRoutes) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  for (const char* path : {"/v2/health/live", "/v2/health/ready", "/v2/models/moe-mnist/ready", "/v2/models/moe-mnist/versions/1/ready"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
  }
  EXPECT_EQ(json::parse(c.Get("/v2/health/live")->body)["live"], true);
  EXPECT_EQ(json::parse(c.Get("/v2")->body)["name"], "moe-mnist");
  const json meta = json::parse(c.Get("/v2/models/moe-mnist")->body);
  EXPECT_EQ(meta["outputs"][1]["shape"], json({-1, 8}));
  EXPECT_EQ(json::parse(c.Get("/v2/models/moe-mnist/versions/1/config")->body)["max_batch_size"], 16);
  auto missing = c.Get("/v2/models/other");
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(json::parse(missing->body)["error"].get<std::string>().find("unknown model 'other'"), std::string::npos);
  EXPECT_EQ(c.Get("/v2/models/moe-mnist/versions/2")->status, 404);
  EXPECT_EQ(c.Get("/nope/at/all")->status, 404);
  auto repo = c.Post("/v2/repository/index", "", "application/json");  // an extension not served: 501, saying so
  EXPECT_EQ(repo->status, 501);
  EXPECT_NE(repo->body.find("model_repository extension is not served"), std::string::npos);
  auto wrong = c.Get("/v2/models/moe-mnist/infer");
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->get_header_value("Allow"), "POST");
  EXPECT_EQ(c.Post("/v2/health/live", "", "text/plain")->status, 405);
  auto page = c.Get("/");
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<canvas id=\"pad\""), std::string::npos);
  EXPECT_EQ(c.Get("/app.js")->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
}

TEST(Service, JsonAndBinaryInferenceGiveTheModelsAnswer) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  const auto x = test::random_images(3, 5);
  const auto [logits, probs] = expected(x);

  const json req = {{"id", "q1"}, {"inputs", {{{"name", "input"}, {"shape", {3, 1, 28, 28}}, {"datatype", "FP32"}, {"data", x}}}}};
  auto r = c.Post("/v2/models/moe-mnist/infer", req.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const json j = json::parse(r->body);
  EXPECT_EQ(j["id"], "q1");
  EXPECT_EQ(j["outputs"][0]["name"], "logits");
  EXPECT_EQ(j["outputs"][0]["shape"], json({3, 10}));
  EXPECT_EQ(j["outputs"][0]["data"].get<std::vector<float>>(), logits);  // shortest round-trip text: exact
  EXPECT_EQ(j["outputs"][1]["data"].get<std::vector<float>>(), probs);

  size_t hl = 0;
  const std::string body = binary_request(x, &hl);
  httplib::Headers h = {{"Inference-Header-Content-Length", std::to_string(hl)}};
  auto b = c.Post("/v2/models/moe-mnist/versions/1/infer", h, body, "application/octet-stream");
  EXPECT_EQ(b->get_header_value("Content-Type"), "application/octet-stream");
  EXPECT_EQ(binary_logits(b), logits);
  // UINT8 is another model's input (test_uint8_model.cpp): this FP32 model refuses it, naming FP32.
  const std::string body8 = binary_request(x, &hl, "UINT8");
  h = {{"Inference-Header-Content-Length", std::to_string(hl)}};
  auto u8 = c.Post("/v2/models/moe-mnist/infer", h, body8, "application/octet-stream");
  EXPECT_EQ(u8->status, 400);
  EXPECT_NE(u8->body.find("expected \\\"FP32\\\""), std::string::npos) << u8->body;
}

std::string gzip(const std::string& s) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(compressBound(uLong(s.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
  z.avail_in = uInt(s.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string inflate_any(const std::string& s) {  // gzip or zlib ("deflate")
  z_stream z{};
  inflateInit2(&z, 15 + 32);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
  z.avail_in = uInt(s.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  const int rc = inflate(&z, Z_FINISH);
  out.resize(z.total_out);
  inflateEnd(&z);
  return rc == Z_STREAM_END ? out : "inflate failed";
}

// Responses are compressed when the client asks (Accept-Encoding, q-values) and the body is large
// enough to gain; Inference-Header-Content-Length still counts the uncompressed JSON, as on Triton.
TEST(Service, ResponsesAreCompressedWhenAskedAndLargeEnough) {
  ServiceOptions o = options();
  o.model.max_batch_request = 32;
  Service s(o, engines(1));
  httplib::Client c("127.0.0.1", s.port());
  c.set_decompress(false);
  const json req = {{"inputs", {{{"name", "input"}, {"shape", {8, 1, 28, 28}}, {"datatype", "FP32"}, {"data", test::random_images(8, 2)}}}}};
  auto plain = c.Post("/v2/models/moe-mnist/infer", req.dump(), "application/json");
  ASSERT_EQ(plain->status, 200);
  ASSERT_GE(plain->body.size(), 1024u);
  EXPECT_FALSE(plain->has_header("Content-Encoding"));
  for (const char* accept : {"gzip", "deflate", "br;q=1.0, deflate;q=0.5, gzip;q=0.2", "*"}) {
    auto r = c.Post("/v2/models/moe-mnist/infer", {{"Accept-Encoding", accept}}, req.dump(), "application/json");
    ASSERT_EQ(r->status, 200) << accept;
    const std::string want = std::string(accept) == "*" ? "gzip" : std::string(accept).find("deflate;q=0.5") != std::string::npos ? "deflate" : accept;
    EXPECT_EQ(r->get_header_value("Content-Encoding"), want) << accept;
    EXPECT_LT(r->body.size(), plain->body.size());
    EXPECT_EQ(inflate_any(r->body), plain->body) << accept;
  }
  auto refused = c.Post("/v2/models/moe-mnist/infer", {{"Accept-Encoding", "gzip;q=0, identity"}}, req.dump(), "application/json");
  EXPECT_FALSE(refused->has_header("Content-Encoding"));
  EXPECT_EQ(refused->body, plain->body);
  auto small = c.Get("/v2/health/live", {{"Accept-Encoding", "gzip"}});
  EXPECT_FALSE(small->has_header("Content-Encoding"));
  EXPECT_EQ(small->body, R"({"live":true})");
  // Binary outputs: the header length describes the body before compression.
  size_t hl = 0;
  const std::string body = binary_request(test::random_images(32, 3), &hl);
  auto b = c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}, {"Accept-Encoding", "gzip"}}, body,
                  "application/octet-stream");
  ASSERT_EQ(b->status, 200);
  EXPECT_EQ(b->get_header_value("Content-Encoding"), "gzip");
  const std::string raw = inflate_any(b->body);
  const size_t head = std::stoul(b->get_header_value("Inference-Header-Content-Length"));
  EXPECT_EQ(raw.size(), head + 32 * 10 * 4);
  EXPECT_EQ(json::parse(raw.substr(0, head))["outputs"][0]["parameters"]["binary_data_size"], 1280);
}

// Routing splits the raw path before decoding, as Triton: an encoded '/' stays inside its segment.
TEST(Service, RoutingIsOnTheRawPath) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  auto slash = c.Get("/v2/models/moe-mnist%2Fready");
  EXPECT_EQ(slash->status, 404);
  EXPECT_NE(slash->body.find("unknown model 'moe-mnist/ready'"), std::string::npos) << slash->body;
  EXPECT_EQ(c.Get("/v2/models/moe%2Dmnist/ready")->status, 200);  // any other escape is decoded within its segment
  EXPECT_EQ(c.Get("/v2/models/moe-mnist/versions/1%2Fready")->status, 404);
}

// Triton's statistics extension: what perf_analyzer reads to show the server-side queue / compute split.
TEST(Service, StatisticsCountRequestsRunsAndBatchSizesAsTritonDoes) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  const json ext = json::parse(c.Get("/v2")->body)["extensions"];
  EXPECT_NE(std::find(ext.begin(), ext.end(), "statistics"), ext.end()) << ext;
  const json before = json::parse(c.Get("/v2/models/moe-mnist/stats")->body);
  EXPECT_EQ(before["model_stats"][0]["inference_count"], 0);
  EXPECT_EQ(before["model_stats"][0]["batch_stats"], json::array());
  for (int64_t n : {1, 3}) {  // one after the other: two model runs, of 1 and 3 images
    std::vector<float> x(size_t(n * kPixels), 0.25f);
    size_t hl = 0;
    const std::string body = binary_request(x, &hl);
    ASSERT_EQ(c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}}, body,
                     "application/octet-stream")->status, 200);
  }
  EXPECT_EQ(c.Post("/v2/models/moe-mnist/infer", "{}", "application/json")->status, 400);  // refused before the model: not counted
  for (const char* path : {"/v2/models/stats", "/v2/models/moe-mnist/stats", "/v2/models/moe-mnist/versions/1/stats"}) {
    auto r = c.Get(path);
    ASSERT_EQ(r->status, 200) << path;
    const json st = json::parse(r->body)["model_stats"];
    ASSERT_EQ(st.size(), 1u) << path;
    const json& m = st[0];
    EXPECT_EQ(m["name"], "moe-mnist");
    EXPECT_EQ(m["version"], "1");
    EXPECT_GT(m["last_inference"].get<uint64_t>(), 1'600'000'000'000u);  // ms since the epoch
    EXPECT_EQ(m["inference_count"], 4);
    EXPECT_EQ(m["execution_count"], 2);
    const json& is = m["inference_stats"];
    for (const char* k : {"success", "queue", "compute_input", "compute_infer", "compute_output"}) EXPECT_EQ(is[k]["count"], 2) << k;
    EXPECT_GT(is["success"]["ns"].get<uint64_t>(), is["compute_infer"]["ns"].get<uint64_t>());
    EXPECT_GT(is["compute_infer"]["ns"].get<uint64_t>(), 0u);
    for (const char* k : {"fail", "cache_hit", "cache_miss"}) EXPECT_EQ(is[k]["count"], 0) << k;
    ASSERT_EQ(m["batch_stats"].size(), 2u);
    EXPECT_EQ(m["batch_stats"][0]["batch_size"], 1);
    EXPECT_EQ(m["batch_stats"][1]["batch_size"], 3);
    EXPECT_EQ(m["batch_stats"][1]["compute_infer"]["count"], 1);
  }
  EXPECT_EQ(c.Get("/v2/models/moe-mnist/versions/2/stats")->status, 404);
  EXPECT_EQ(c.Get("/v2/models/other/stats")->status, 404);
  EXPECT_EQ(c.Post("/v2/models/stats", "", "text/plain")->status, 405);
}

// perf_analyzer's random input is NaN or inf about once in 256 floats; Triton runs the model on it and
// returns what it computes, NaN bits included.
TEST(Service, NonFiniteInputGivesTheModelsNonFiniteAnswer) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  std::vector<float> x(kPixels, 0.5f);
  x[100] = std::nanf("");
  x[200] = INFINITY;
  size_t hl = 0;
  const std::string body = binary_request(x, &hl);
  const std::vector<float> got = binary_logits(c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}},
                                                      body, "application/octet-stream"));
  const std::vector<float> want = expected(x).first;
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0);
  // JSON in, JSON out: the tokens Triton reads and writes.
  std::string data = "[NaN,Infinity";
  for (int i = 2; i < 784; ++i) data += ",0.5";
  auto r = c.Post("/v2/models/moe-mnist/infer", R"({"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":)" + data + "]}]}",
                  "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  std::vector<float> y(kPixels, 0.5f);
  y[0] = std::nanf("");
  y[1] = INFINITY;
  const std::vector<float> logits = expected(y).first;
  const bool any_nan = std::any_of(logits.begin(), logits.end(), [](float v) { return std::isnan(v); });
  EXPECT_EQ(r->body.find("NaN") != std::string::npos, any_nan) << r->body;
  EXPECT_EQ(r->body.find("null"), std::string::npos) << r->body;
}

TEST(Service, GzipRequestsAreInflatedWithinTheBodyLimit) {
  ServiceOptions o = options();
  o.http.max_body = 256 * 1024;
  Service s(o, engines(1));
  httplib::Client c("127.0.0.1", s.port());
  const auto x = test::random_images(2, 9);
  size_t hl = 0;
  const std::string body = binary_request(x, &hl);
  auto r = c.Post("/v2/models/moe-mnist/infer",
                  {{"Inference-Header-Content-Length", std::to_string(hl)}, {"Content-Encoding", "gzip"}}, gzip(body),
                  "application/octet-stream");
  EXPECT_EQ(binary_logits(r), expected(x).first);
  // 10 MB of zeros compress to ~10 KB: the inflated size is what counts.
  auto bomb = c.Post("/v2/models/moe-mnist/infer", {{"Content-Encoding", "gzip"}}, gzip(std::string(10 << 20, '0')), "application/json");
  ASSERT_TRUE(bomb);
  EXPECT_EQ(bomb->status, 413);
  EXPECT_EQ(c.Post("/v2/models/moe-mnist/infer", {{"Content-Encoding", "gzip"}}, "not gzip", "application/json")->status, 400);
  auto br = c.Post("/v2/models/moe-mnist/infer", {{"Content-Encoding", "br"}}, body, "application/json");
  EXPECT_EQ(br->status, 501);
  EXPECT_EQ(br->get_header_value("Accept-Encoding"), "gzip, deflate");
}

TEST(Service, BadRequestsAre4xxJsonErrors) {
  ServiceOptions o = options();
  o.http.max_body = 64 * 1024;
  Service s(o, engines(1));
  httplib::Client c("127.0.0.1", s.port());
  auto bad = c.Post("/v2/models/moe-mnist/infer", "{\"inputs\": 3}", "application/json");
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(bad->get_header_value("Content-Type"), "application/json");
  EXPECT_NE(json::parse(bad->body)["error"].get<std::string>().find("inputs"), std::string::npos);
  httplib::Headers h = {{"Inference-Header-Content-Length", "abc"}};
  EXPECT_EQ(c.Post("/v2/models/moe-mnist/infer", h, "{}", "application/json")->status, 400);
  auto big = c.Post("/v2/models/moe-mnist/infer", std::string(100 * 1024, ' '), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  httplib::Client c2("127.0.0.1", s.port());  // the 413 closed that connection
  const json many = {{"inputs", {{{"name", "input"}, {"shape", {17, 1, 28, 28}}, {"datatype", "FP32"}, {"data", {0}}}}}};
  auto over = c2.Post("/v2/models/moe-mnist/infer", many.dump(), "application/json");
  EXPECT_EQ(over->status, 400);
  EXPECT_NE(over->body.find("--max-batch-request"), std::string::npos);
  auto img = c2.Post("/v1/predict", "not an image", "image/png");
  EXPECT_EQ(img->status, 400);
  EXPECT_NE(img->body.find("not an image"), std::string::npos);
  EXPECT_EQ(c2.Post("/v1/predict?invert=maybe", "x", "image/png")->status, 400);
  EXPECT_EQ(c2.Get("/v2/health/live")->status, 200);  // still serving
}

TEST(Service, PredictTakesAnImageAndShowsTheRouting) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  // A binary PGM (P5) of a bar: the same preparation as `moe-mnist predict`.
  std::string pgm = "P5\n40 40\n255\n";
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 40; ++x) pgm.push_back(char(x > 17 && x < 23 && y > 5 && y < 35 ? 255 : 0));
  auto r = c.Post("/v1/predict", pgm, "image/x-portable-graymap");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  ASSERT_EQ(j["probabilities"].size(), 10u);
  ASSERT_EQ(j["gate_probs"].size(), 8u);
  ASSERT_EQ(j["experts"].size(), 2u);
  EXPECT_TRUE(j["ink"].get<bool>());
  const auto input = j["input"].get<std::vector<float>>();
  const auto [logits, probs] = expected(input);
  int64_t best = 0;
  for (int64_t i = 1; i < 10; ++i)
    if (logits[size_t(i)] > logits[size_t(best)]) best = i;
  EXPECT_EQ(j["digit"], best);
  EXPECT_NEAR(j["experts"][0]["weight"].get<double>() + j["experts"][1]["weight"].get<double>(), 1.0, 1e-6);
  EXPECT_GE(j["experts"][0]["gate_probability"].get<double>(), j["experts"][1]["gate_probability"].get<double>());
}

// Issue #20: /v1/predict answered a dark digit on light paper (and a blank image) with 200 and
// "ink": false, where `predict --image` refuses it and suggests --invert. Both now share one judgement
// (moe::prepare_digit): 422 naming the problem and the request's invert option.
TEST(Service, PredictRefusesAnImageWithoutInkAndNamesTheInvertOption) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  std::string dark_on_light = "P5\n40 40\n255\n";
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 40; ++x) dark_on_light.push_back(char(x > 17 && x < 23 && y > 5 && y < 35 ? 0 : 255));
  auto r = c.Post("/v1/predict", dark_on_light, "image/x-portable-graymap");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 422);
  EXPECT_EQ(json::parse(r->body)["error"], "request body: no ink found; the image looks like a dark digit on light paper: add ?invert=1");
  auto inverted = c.Post("/v1/predict?invert=1", dark_on_light, "image/x-portable-graymap");
  ASSERT_TRUE(inverted);
  ASSERT_EQ(inverted->status, 200) << inverted->body;
  const json j = json::parse(inverted->body);
  EXPECT_FALSE(j.contains("warning"));
  const moe::GreyImage img = moe::decode_grey_image(dark_on_light, "x");
  const auto input = j["input"].get<std::vector<float>>();
  const auto want = moe::prepare_digit(img, true, "x", "--invert").pixels;  // what `predict --invert --image` classifies
  ASSERT_EQ(input.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(input[i], want[i], 5e-4);
  auto blank = c.Post("/v1/predict", "P5\n8 8\n255\n" + std::string(64, '\0'), "image/x-portable-graymap");
  ASSERT_TRUE(blank);
  EXPECT_EQ(blank->status, 422);
  EXPECT_NE(blank->body.find("no ink found, with or without ?invert=1"), std::string::npos) << blank->body;
  // Ink on paper of the other polarity is classified, with the warning the CLI prints.
  std::string glare = "P5\n40 40\n255\n";
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 40; ++x) glare.push_back(char(x > 17 && x < 23 && y > 5 && y < 35 ? 255 : 200));
  auto warned = c.Post("/v1/predict", glare, "image/x-portable-graymap");
  ASSERT_TRUE(warned);
  ASSERT_EQ(warned->status, 200) << warned->body;
  EXPECT_EQ(json::parse(warned->body)["warning"], "request body looks like a dark digit on light paper; add ?invert=1");
}

// Issue #20, cause 2: a truncated PGM right after a valid image is refused (it was answered with the
// previous request's pixels, 10 of 10 tries), in every format the decoder reads.
TEST(Service, TruncatedImagesAreRefusedNeverFilledFromAnEarlierRequest) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  std::string pgm = "P5\n28 28\n255\n";
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) pgm.push_back(char(x > 11 && x < 16 && y > 3 && y < 24 ? 255 : 0));
  const std::string ppm16 = "P6\n28 28\n256\n" + std::string(100, '\0');  // 16-bit colour, 100 of 4704 bytes
  for (int i = 0; i < 5; ++i) {
    auto ok = c.Post("/v1/predict", pgm, "image/x-portable-graymap");
    ASSERT_TRUE(ok);
    ASSERT_EQ(ok->status, 200) << ok->body;
    auto cut = c.Post("/v1/predict", pgm.substr(0, 21), "image/x-portable-graymap");
    ASSERT_TRUE(cut);
    EXPECT_EQ(cut->status, 400) << cut->body;
    EXPECT_NE(cut->body.find("28x28 at 8 bits needs 784 bytes of pixels, found 8"), std::string::npos) << cut->body;
    auto deep = c.Post("/v1/predict", ppm16, "image/x-portable-pixmap");
    ASSERT_TRUE(deep);
    EXPECT_EQ(deep->status, 400) << deep->body;
  }
}

// Many clients at once, batching on: every answer is what that request alone would get.
void concurrent_requests_match(int64_t max_delay_us, int workers, int64_t max_batch = 8) {
  ServiceOptions o = options();
  o.batching.max_delay_us = max_delay_us;
  o.batching.max_batch = max_batch;
  Service s(o, engines(workers));
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 12; ++t)
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", s.port());
      for (int i = 0; i < 15; ++i) {
        const auto x = test::random_images(1 + (t + i) % 3, unsigned(100 * t + i));
        size_t hl = 0;
        const std::string body = binary_request(x, &hl);
        auto r = c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}}, body,
                        "application/octet-stream");
        if (!r || r->status != 200) {
          ++failed;
          continue;
        }
        if (binary_logits(r) != expected(x).first) ++wrong;
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(wrong, 0);
  // The batcher did join requests when it was allowed to.
  httplib::Client c("127.0.0.1", s.port());
  const std::string m = c.Get("/metrics")->body;
  std::smatch runs, images;
  ASSERT_TRUE(std::regex_search(m, runs, std::regex("\nmoe_mnist_model_runs_total\\{model=\"moe-mnist\",version=\"1\"\\} (\\d+)")));
  ASSERT_TRUE(std::regex_search(m, images, std::regex("\nmoe_mnist_images_total\\{model=\"moe-mnist\",version=\"1\"\\} (\\d+)")));
  EXPECT_EQ(std::stoi(images[1]), 12 * 15 * 2);  // sizes 1,2,3 cycle evenly: mean 2
  if (max_batch == 1) {
    EXPECT_EQ(std::stoi(runs[1]), 12 * 15);  // one request per run
  } else if (max_delay_us > 0) {
    EXPECT_LT(std::stoi(runs[1]), 12 * 15);  // 12 clients at once within a 2 ms window: some joined
  } else {
    EXPECT_LE(std::stoi(runs[1]), 12 * 15);  // no wait: requests join only if they queued while a run was on
  }
}

TEST(Service, BatchedAnswersEqualUnbatchedAnswers) { concurrent_requests_match(2000, 1); }

// The adaptive delay: one client at a time is never held back, the fixed delay holds every request.
TEST(Service, ALoneClientIsNotDelayedByTheAdaptiveBatcher) {
  for (bool adaptive : {true, false}) {
    ServiceOptions o = options();
    o.batching.max_delay_us = 100'000;
    o.batching.adaptive_delay = adaptive;
    Service s(o, engines(1));
    httplib::Client c("127.0.0.1", s.port());
    size_t hl = 0;
    const std::string body = binary_request(test::random_images(1, 2), &hl);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i)
      ASSERT_EQ(c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}}, body,
                       "application/octet-stream")->status, 200);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (adaptive) {
      EXPECT_LT(seconds, 0.25) << "three sequential requests waited for company";
    } else {
      EXPECT_GE(seconds, 0.3) << "the fixed delay did not hold each request 100 ms";
    }
  }
}
TEST(Service, NoBatchingWithBatchOneAndTwoWorkers) { concurrent_requests_match(0, 2, 1); }
TEST(Service, ZeroDelayBatchesWhatQueuedWhileTheWorkerWasBusy) { concurrent_requests_match(0, 1); }

TEST(Service, MetricsAreWellFormedPrometheusText) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  size_t hl = 0;
  const std::string body = binary_request(test::random_images(2, 1), &hl);
  for (int i = 0; i < 3; ++i)
    c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}}, body, "application/octet-stream");
  c.Get("/v2/models/nope");
  auto r = c.Get("/metrics");
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  // Every line is a comment (# HELP/# TYPE) or `name{labels} value`.
  const std::regex sample(R"re(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? [-+0-9.eE]+(Inf)?$)re");
  const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  std::istringstream in(r->body);
  std::string line;
  int n_lines = 0;
  while (std::getline(in, line)) {
    ++n_lines;
    EXPECT_TRUE(std::regex_match(line, sample) || std::regex_match(line, comment)) << line;
  }
  EXPECT_GT(n_lines, 50);
  const std::string& m = r->body;
  EXPECT_NE(m.find("moe_mnist_http_requests_total{route=\"infer\",code=\"200\"} 3"), std::string::npos) << m;
  EXPECT_NE(m.find("moe_mnist_http_requests_total{route=\"metadata\",code=\"404\"} 1"), std::string::npos);
  EXPECT_NE(m.find("moe_mnist_images_total{model=\"moe-mnist\",version=\"1\"} 6"), std::string::npos);
  // Two images x top-2 x 3 requests = 12 routing slots over the experts.
  std::regex slot("moe_mnist_expert_slots_total\\{model=\"moe-mnist\",version=\"1\",expert=\"\\d\"\\} (\\d+)");
  int slots = 0;
  for (auto it = std::sregex_iterator(m.begin(), m.end(), slot); it != std::sregex_iterator(); ++it) slots += std::stoi((*it)[1]);
  EXPECT_EQ(slots, 12);
  EXPECT_NE(m.find("moe_mnist_batch_images_bucket{model=\"moe-mnist\",version=\"1\",le=\"+Inf\"} 3"), std::string::npos);
}

TEST(Service, ShutdownAnswersWhatIsQueuedAndRefusesNewWork) {
  ServiceOptions o = options();
  o.batching.adaptive_delay = false;  // every request waits the full delay
  o.batching.max_delay_us = 300'000;  // requests sit in the queue until shutdown flushes them
  o.batching.max_batch = 1000;
  auto s = std::make_unique<Service>(o, engines(1));
  const int port = s->port();
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", port);
      size_t hl = 0;
      const std::string body = binary_request(test::random_images(1, unsigned(t)), &hl);
      auto r = c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}}, body,
                      "application/octet-stream");
      if (r && r->status == 200) ++ok;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  s->shutdown(5);
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 4);
  httplib::Client c("127.0.0.1", port);
  EXPECT_FALSE(c.Get("/v2/health/live"));  // no longer listening
}

// Hundreds of open keep-alive connections, each sending while the others wait: every one is
// answered, twice, on one HTTP thread.
TEST(Service, ServesHundredsOfKeepAliveConnections) {
  Service s(options(), engines(1));
  constexpr int kConnections = 300;
  std::vector<int> fds;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(s.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < kConnections; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << "connection " << i;
    fds.push_back(fd);
  }
  const std::string get = "GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (int round = 0; round < 2; ++round) {
    for (int fd : fds) ASSERT_EQ(::write(fd, get.data(), get.size()), ssize_t(get.size()));
    std::vector<std::string> got(fds.size());
    size_t answered = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (answered < fds.size() && std::chrono::steady_clock::now() < deadline) {
      std::vector<pollfd> p;
      for (int fd : fds) p.push_back({fd, POLLIN, 0});
      ::poll(p.data(), p.size(), 100);
      for (size_t i = 0; i < p.size(); ++i) {
        if (!(p[i].revents & POLLIN)) continue;
        char buf[512];
        const ssize_t n = ::read(fds[i], buf, sizeof buf);
        if (n <= 0) continue;
        const bool before = got[i].find("{\"live\":true}") != std::string::npos;
        got[i].append(buf, size_t(n));
        if (!before && got[i].find("{\"live\":true}") != std::string::npos) ++answered;
      }
    }
    EXPECT_EQ(answered, fds.size()) << "round " << round;
    for (const auto& g : got) EXPECT_EQ(g.rfind("HTTP/1.1 200", 0), 0u);
  }
  for (int fd : fds) ::close(fd);
}

TEST(Service, FullQueueIs503) {
  ServiceOptions o = options();
  o.batching.adaptive_delay = false;  // every request waits the full delay
  o.batching.max_delay_us = 500'000;
  o.batching.max_batch = 1000;
  o.batching.max_queue_images = 2;
  Service s(o, engines(1));
  std::atomic<int> ok{0}, unavailable{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", s.port());
      size_t hl = 0;
      const std::string body = binary_request(test::random_images(1, unsigned(t)), &hl);
      auto r = c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}}, body,
                      "application/octet-stream");
      if (r && r->status == 200) ++ok;
      if (r && r->status == 503) ++unavailable;
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(unavailable, 2);
}

TEST(Service, QueuedTooLongIs503) {
  ServiceOptions o = options();
  o.batching.adaptive_delay = false;  // every request waits the full delay
  o.batching.max_delay_us = 200'000;
  o.batching.max_batch = 1000;
  o.batching.timeout_us = 50'000;
  Service s(o, engines(1));
  httplib::Client c("127.0.0.1", s.port());
  size_t hl = 0;
  const std::string body = binary_request(test::random_images(1, 3), &hl);
  auto r = c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(hl)}}, body, "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("timed out"), std::string::npos);
}

// The request parameter "timeout" (microseconds) limits that request's queue time, as Triton does with
// dynamic batching; requests without it keep the server's limit.
TEST(Service, RequestTimeoutParameterLimitsItsQueueTime) {
  ServiceOptions o = options();
  o.batching.adaptive_delay = false;  // every request waits the full delay
  o.batching.max_delay_us = 200'000;
  o.batching.max_batch = 1000;
  Service s(o, engines(1));
  httplib::Client c("127.0.0.1", s.port());
  json req = {{"inputs", {{{"name", "input"}, {"shape", {1, 1, 28, 28}}, {"datatype", "FP32"}, {"data", std::vector<float>(784, 0.f)}}}}};
  req["parameters"] = {{"timeout", 20'000}};
  auto r = c.Post("/v2/models/moe-mnist/infer", req.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_NE(r->body.find("timed out after 20000 us"), std::string::npos) << r->body;
  req["parameters"] = {{"timeout", 5'000'000}};
  EXPECT_EQ(c.Post("/v2/models/moe-mnist/infer", req.dump(), "application/json")->status, 200);
  const json st = json::parse(c.Get("/v2/models/stats")->body)["model_stats"][0]["inference_stats"];
  EXPECT_EQ(st["fail"]["count"], 1);
  EXPECT_EQ(st["success"]["count"], 1);
}

// Classification over HTTP from the model's own logits; the checkpoint names no dataset, so no labels.
TEST(Service, ClassificationOfTheModelsLogits) {
  Service s(options(), engines(1));
  httplib::Client c("127.0.0.1", s.port());
  const std::vector<float> x = test::random_images(2, 5);
  json req = {{"inputs", {{{"name", "input"}, {"shape", {2, 1, 28, 28}}, {"datatype", "FP32"}, {"data", x}}}},
              {"outputs", {{{"name", "logits"}, {"parameters", {{"classification", 2}}}}}}};
  auto r = c.Post("/v2/models/moe-mnist/infer", req.dump(), "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  const json out = json::parse(r->body)["outputs"][0];
  const std::vector<float> logits = expected(x).first;
  std::vector<std::string> want = top_k_classes(logits.data(), 10, 2, {});
  for (const auto& v : top_k_classes(logits.data() + 10, 10, 2, {})) want.push_back(v);
  EXPECT_EQ(out["datatype"], "BYTES");
  EXPECT_EQ(out["shape"], json({2, 2}));
  EXPECT_EQ(out["data"], json(want));
  req["outputs"][0]["parameters"] = {{"classification", 2}, {"labels", true}};
  EXPECT_EQ(c.Post("/v2/models/moe-mnist/infer", req.dump(), "application/json")->status, 400);
}

}  // namespace
}  // namespace moe::serve
