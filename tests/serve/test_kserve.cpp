// The KServe v2 request parser and response writer, on bytes: every field a client can get wrong is a
// 400 naming that field, and the binary extension's layout is Triton's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "serve/classification.h"
#include "serve/kserve.h"

namespace moe::serve {
namespace {

using json = nlohmann::json;

ModelInfo model() {
  ModelInfo m;
  m.max_batch_request = 8;
  return m;
}

std::vector<float> pixels(int64_t n) {
  std::vector<float> x(size_t(n * kPixels));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 256) / 255.0f;
  return x;
}

json request_json(int64_t n, const json& data, const char* datatype = "FP32") {
  return {{"inputs", {{{"name", "input"}, {"shape", {n, 1, 28, 28}}, {"datatype", datatype}, {"data", data}}}}};
}

// The HttpError status and message of parsing `body`; fails the test if it parses.
std::pair<int, std::string> rejected(const std::string& body, int64_t header_length = -1) {
  try {
    parse_infer_request(body, header_length, model());
  } catch (const HttpError& e) {
    return {e.status, e.what()};
  }
  ADD_FAILURE() << "accepted: " << body.substr(0, 200);
  return {0, ""};
}

TEST(KServe, FlatAndNestedJsonDataGiveTheSameImages) {
  const auto x = pixels(2);
  json nested = json::array();
  for (int n = 0; n < 2; ++n) {
    json rows = json::array();
    for (int h = 0; h < 28; ++h) rows.push_back(std::vector<float>(x.begin() + n * 784 + h * 28, x.begin() + n * 784 + h * 28 + 28));
    nested.push_back(json::array({rows}));
  }
  const InferRequest flat = parse_infer_request(request_json(2, x).dump(), -1, model());
  const InferRequest deep = parse_infer_request(request_json(2, nested).dump(), -1, model());
  EXPECT_EQ(flat.n, 2);
  EXPECT_EQ(flat.images, x);
  EXPECT_EQ(deep.images, x);
  ASSERT_EQ(flat.outputs.size(), 2u);  // no "outputs": every output, as JSON
  EXPECT_FALSE(flat.outputs[0].binary);
}

// A KServe v2 input has one datatype: a UINT8 model takes its bytes as sent (JSON, binary, raw), an
// FP32 model floats, and each refuses the other naming the one it declares.
TEST(KServe, EachModelTakesItsOwnInputDatatype) {
  ModelInfo u8 = model();
  u8.input_datatype = "UINT8";
  std::vector<int> raw(784, 0);
  raw[0] = 255;
  raw[1] = 51;
  const InferRequest r = parse_infer_request(request_json(1, raw, "UINT8").dump(), -1, u8);
  ASSERT_EQ(r.bytes.size(), 784u);
  EXPECT_TRUE(r.images.empty());  // no float copy
  EXPECT_EQ(r.bytes[0], 255);
  EXPECT_EQ(r.bytes[1], 51);
  const std::string blob(784, '\x07');
  const std::string head = json{{"inputs", {{{"name", "input"}, {"shape", {1, 1, 28, 28}}, {"datatype", "UINT8"},
                                             {"parameters", {{"binary_data_size", 784}}}}}}}.dump();
  EXPECT_EQ(parse_infer_request(head + blob, int64_t(head.size()), u8).bytes, std::vector<uint8_t>(784, 7));
  EXPECT_EQ(parse_infer_request(blob, 0, u8).bytes, std::vector<uint8_t>(784, 7));  // raw: one image in the model's datatype
  auto refused = [&](const std::string& body, const ModelInfo& m) -> std::string {
    try {
      parse_infer_request(body, -1, m);
    } catch (const HttpError& e) {
      EXPECT_EQ(e.status, 400);
      return e.what();
    }
    return "accepted";
  };
  EXPECT_NE(refused(request_json(1, std::vector<int>(784, 256), "UINT8").dump(), u8).find("expected an integer 0..255"), std::string::npos);
  EXPECT_NE(refused(request_json(1, std::vector<double>(784, 0.5), "UINT8").dump(), u8).find("expected an integer 0..255"), std::string::npos);
  EXPECT_EQ(refused(request_json(1, pixels(1), "FP32").dump(), u8),
            "inputs[0].datatype: expected \"UINT8\" (the input datatype of model 'moe-mnist'), got \"FP32\"");
  EXPECT_EQ(refused(request_json(1, raw, "UINT8").dump(), model()),
            "inputs[0].datatype: expected \"FP32\" (the input datatype of model 'moe-mnist'), got \"UINT8\"");
  EXPECT_EQ(json::parse(model_metadata_json(u8))["inputs"][0]["datatype"], "UINT8");
  EXPECT_EQ(json::parse(model_config_json(u8))["input"][0]["data_type"], "TYPE_UINT8");
  EXPECT_EQ(json::parse(model_metadata_json(model()))["inputs"][0]["datatype"], "FP32");
  EXPECT_EQ(json::parse(model_metadata_json(u8))["outputs"][0]["datatype"], "FP32");
}

TEST(KServe, BinaryInputAndOutputsFollowTritonsLayout) {
  const auto x = pixels(3);
  const json head = {{"id", "r-7"},
                     {"inputs", {{{"name", "input"}, {"shape", {3, 1, 28, 28}}, {"datatype", "FP32"},
                                  {"parameters", {{"binary_data_size", 3 * 3136}}}}}},
                     {"outputs", {{{"name", "gate_probs"}, {"parameters", {{"binary_data", true}}}}, {{"name", "logits"}}}}};
  const std::string h = head.dump();
  const std::string body = h + std::string(reinterpret_cast<const char*>(x.data()), x.size() * 4);
  const InferRequest r = parse_infer_request(body, int64_t(h.size()), model());
  EXPECT_EQ(r.images, x);
  EXPECT_EQ(r.id, "r-7");
  ASSERT_EQ(r.outputs.size(), 2u);
  EXPECT_TRUE(r.outputs[0].which == Output::gate_probs && r.outputs[0].binary);
  EXPECT_TRUE(r.outputs[1].which == Output::logits && !r.outputs[1].binary);  // listed without binary_data: JSON

  ModelInfo m = model();
  m.n_classes = 10;
  m.n_experts = 8;
  std::vector<float> logits(30), probs(24);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(i) * 0.5f;
  for (size_t i = 0; i < probs.size(); ++i) probs[i] = float(i) / 24.0f;
  const HttpBody b = infer_response(r, m, logits.data(), probs.data());
  EXPECT_EQ(b.content_type, "application/octet-stream");
  ASSERT_GT(b.header_length, 0);
  const json j = json::parse(b.bytes.substr(0, size_t(b.header_length)));
  EXPECT_EQ(j["model_name"], "moe-mnist");
  EXPECT_EQ(j["model_version"], "1");
  EXPECT_EQ(j["id"], "r-7");
  EXPECT_EQ(j["outputs"][0]["name"], "gate_probs");
  EXPECT_EQ(j["outputs"][0]["shape"], json({3, 8}));
  EXPECT_EQ(j["outputs"][0]["parameters"]["binary_data_size"], 96);
  EXPECT_FALSE(j["outputs"][0].contains("data"));
  EXPECT_EQ(j["outputs"][1]["data"].size(), 30u);
  EXPECT_FLOAT_EQ(j["outputs"][1]["data"][3].get<float>(), 1.5f);
  ASSERT_EQ(b.bytes.size(), size_t(b.header_length) + 96);
  std::vector<float> blob(24);
  std::memcpy(blob.data(), b.bytes.data() + b.header_length, 96);
  EXPECT_EQ(blob, probs);
}

TEST(KServe, RequestLevelBinaryDataOutputAppliesWhenOutputsAreOmitted) {
  json j = request_json(1, pixels(1));
  j["parameters"] = {{"binary_data_output", true}};
  const InferRequest r = parse_infer_request(j.dump(), -1, model());
  ASSERT_EQ(r.outputs.size(), 2u);
  EXPECT_TRUE(r.outputs[0].binary && r.outputs[1].binary);
  std::vector<float> logits(10, 1.f), probs(8, 0.125f);
  const HttpBody b = infer_response(r, model(), logits.data(), probs.data());
  EXPECT_EQ(b.bytes.size(), size_t(b.header_length) + 40 + 32);
}

TEST(KServe, RawBinaryRequestIsOneFp32Image) {
  const auto x = pixels(1);
  const InferRequest r = parse_infer_request(std::string(reinterpret_cast<const char*>(x.data()), 3136), 0, model());
  EXPECT_EQ(r.n, 1);
  EXPECT_EQ(r.images, x);
  EXPECT_TRUE(r.outputs[0].binary);
  EXPECT_EQ(rejected(std::string(3135, '\0'), 0).first, 400);
}

TEST(KServe, EveryBadFieldIs400NamingIt) {
  const auto x = pixels(1);
  auto msg = [](const std::string& body, int64_t hl = -1) { return rejected(body, hl).second; };
  EXPECT_NE(msg("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(msg("[1,2]").find("JSON object"), std::string::npos);
  EXPECT_NE(msg("{}").find("inputs"), std::string::npos);
  json j = request_json(1, x);
  j["inputs"][0]["name"] = "image";
  EXPECT_NE(msg(j.dump()).find("inputs[0].name"), std::string::npos);
  j = request_json(1, x, "FP64");
  EXPECT_NE(msg(j.dump()).find("inputs[0].datatype"), std::string::npos);
  j = request_json(1, x);
  j["inputs"][0]["shape"] = {1, 784};
  EXPECT_NE(msg(j.dump()).find("inputs[0].shape"), std::string::npos);
  j["inputs"][0]["shape"] = {0, 1, 28, 28};
  EXPECT_NE(msg(j.dump()).find("inputs[0].shape"), std::string::npos);
  j = request_json(9, pixels(9));
  EXPECT_NE(msg(j.dump()).find("above the limit of 8"), std::string::npos);
  j = request_json(2, x);
  EXPECT_NE(msg(j.dump()).find("784 elements, expected 1568"), std::string::npos);
  j = request_json(1, pixels(2));
  EXPECT_NE(msg(j.dump()).find("more elements than the shape holds"), std::string::npos);
  j = request_json(1, x);
  j["inputs"][0]["data"][5] = "a";
  EXPECT_NE(msg(j.dump()).find("inputs[0].data[5]"), std::string::npos);
  j = request_json(1, x);
  j["inputs"][0]["parameters"] = {{"binary_data_size", 3136}};
  EXPECT_NE(msg(j.dump()).find("exactly one of"), std::string::npos);
  j = request_json(1, x);
  j["outputs"] = {{{"name", "probs"}}};
  EXPECT_NE(msg(j.dump()).find("outputs[0].name"), std::string::npos);
  j["outputs"] = {{{"name", "logits"}}, {{"name", "logits"}}};
  EXPECT_NE(msg(j.dump()).find("requested twice"), std::string::npos);
  j = request_json(1, x);
  j["id"] = 5;
  EXPECT_NE(msg(j.dump()).find("id"), std::string::npos);
  EXPECT_NE(msg("{}", 10).find("larger than the body"), std::string::npos);
  EXPECT_NE(msg(std::string(100, '[') + std::string(100, ']')).find("nested deeper"), std::string::npos);
}

TEST(KServe, BinaryDataMustMatchTheDeclaredSizesExactly) {
  const auto x = pixels(1);
  json head = {{"inputs", {{{"name", "input"}, {"shape", {1, 1, 28, 28}}, {"datatype", "FP32"},
                            {"parameters", {{"binary_data_size", 3136}}}}}}};
  const std::string h = head.dump();
  const std::string blob(reinterpret_cast<const char*>(x.data()), 3136);
  EXPECT_NE(rejected(h + blob.substr(0, 3000), int64_t(h.size())).second.find("binary data is 3000 bytes"), std::string::npos);
  EXPECT_NE(rejected(h + blob + "xx", int64_t(h.size())).second.find("not claimed"), std::string::npos);
  head["inputs"][0]["parameters"]["binary_data_size"] = 3135;
  EXPECT_NE(rejected(head.dump() + blob, int64_t(head.dump().size())).second.find("binary_data_size"), std::string::npos);
}

// Triton takes any IEEE-754 value (perf_analyzer's random bytes are NaN or inf about once in 256
// floats): binary NaN / inf pass bit for bit, JSON may carry rapidjson's NaN / Infinity tokens, and a
// JSON number beyond the FP32 range narrows to inf.
TEST(KServe, NonFiniteInputsAreAcceptedAsTritonAcceptsThem) {
  std::vector<float> x = pixels(1);
  x[7] = std::nanf("");
  x[8] = INFINITY;
  x[9] = -INFINITY;
  const json head = {{"inputs", {{{"name", "input"}, {"shape", {1, 1, 28, 28}}, {"datatype", "FP32"},
                                  {"parameters", {{"binary_data_size", 3136}}}}}}};
  const std::string h = head.dump();
  const InferRequest b = parse_infer_request(h + std::string(reinterpret_cast<const char*>(x.data()), 3136), int64_t(h.size()), model());
  EXPECT_EQ(std::memcmp(b.images.data(), x.data(), 3136), 0);
  const InferRequest raw = parse_infer_request(std::string(reinterpret_cast<const char*>(x.data()), 3136), 0, model());
  EXPECT_EQ(std::memcmp(raw.images.data(), x.data(), 3136), 0);

  std::string data = "[NaN,Infinity,-Infinity,Inf,-Inf,-NaN,1e39,-1e39";
  for (int i = 8; i < 784; ++i) data += ",0.5";
  data += "]";
  const std::string body = R"({"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":)" + data + "}]}";
  const InferRequest j = parse_infer_request(body, -1, model());
  EXPECT_TRUE(std::isnan(j.images[0]));
  EXPECT_TRUE(std::isnan(j.images[5]));
  for (int i : {1, 3, 6}) EXPECT_EQ(j.images[size_t(i)], INFINITY) << i;
  for (int i : {2, 4, 7}) EXPECT_EQ(j.images[size_t(i)], -INFINITY) << i;
  EXPECT_EQ(j.images[8], 0.5f);
  // Only bare tokens: the string "NaN", other words and a NaN inside a string stay errors.
  for (const char* bad : {R"("NaN")", "nan", "NaNa", "Infinit", "+Inf"}) {
    std::string d = std::string("[") + bad;
    for (int i = 1; i < 784; ++i) d += ",0";
    d += "]";
    const auto e = rejected(R"({"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":)" + d + "}]}");
    EXPECT_EQ(e.first, 400) << bad;
  }
  EXPECT_EQ(rejected(R"({"id":"NaN","inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"UINT8","data":[NaN]}]})").first, 400);
  const InferRequest id = parse_infer_request(R"({"id":"x NaN Infinity","inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":)" +
                                                  data + "}]}", -1, model());
  EXPECT_EQ(id.id, "x NaN Infinity");
}

TEST(KServe, NonFiniteOutputsAreWrittenAsTritonWritesThem) {
  const InferRequest r = parse_infer_request(request_json(1, pixels(1)).dump(), -1, model());
  std::vector<float> logits(10, 1.5f), probs(8, 0.125f);
  logits[0] = std::nanf("");
  logits[1] = INFINITY;
  logits[2] = -INFINITY;
  const HttpBody b = infer_response(r, model(), logits.data(), probs.data());
  EXPECT_NE(b.bytes.find(R"("data":[NaN,Infinity,-Infinity,1.5,)"), std::string::npos) << b.bytes;
}

// Triton's classification extension, formatted as its server does: std::to_string(value) ":" index
// [":" label], top k by value, k capped at the class count, datatype BYTES, shape [N, k].
TEST(KServe, ClassificationReturnsTopKStringsAsTriton) {
  EXPECT_EQ(top_k_classes(std::vector<float>{0.5f, 2.25f, -1.f}.data(), 3, 2, {}), (std::vector<std::string>{"2.250000:1", "0.500000:0"}));
  EXPECT_EQ(top_k_classes(std::vector<float>{1.f, NAN, 1.f}.data(), 3, 5, {"a", "b", "c"}),
            (std::vector<std::string>{"1.000000:0:a", "1.000000:2:c", "nan:1:b"}));  // ties: lower index; NaN last
  EXPECT_EQ(class_labels("fashion-mnist", 10)[9], "Ankle boot");
  EXPECT_EQ(class_labels("mnist", 10)[3], "3");
  EXPECT_TRUE(class_labels("", 10).empty());

  ModelInfo m = model();
  m.labels = class_labels("mnist", 10);
  json j = request_json(2, pixels(2));
  j["outputs"] = {{{"name", "logits"}, {"parameters", {{"classification", 3}}}},
                  {{"name", "gate_probs"}, {"parameters", {{"classification", 99}, {"binary_data", true}}}}};
  const InferRequest r = parse_infer_request(j.dump(), -1, m);
  ASSERT_EQ(r.outputs.size(), 2u);
  EXPECT_EQ(r.outputs[0].classification, 3);
  EXPECT_EQ(r.outputs[1].classification, 8);  // capped at the 8 experts
  std::vector<float> logits(20), probs(16);
  for (int i = 0; i < 20; ++i) logits[size_t(i)] = i < 10 ? float(i) : -float(i - 10);
  for (int i = 0; i < 16; ++i) probs[size_t(i)] = 0.125f;
  const HttpBody b = infer_response(r, m, logits.data(), probs.data());
  ASSERT_GT(b.header_length, 0);
  const json head = json::parse(b.bytes.substr(0, size_t(b.header_length)));
  const json& cls = head["outputs"][0];
  EXPECT_EQ(cls["datatype"], "BYTES");
  EXPECT_EQ(cls["shape"], json({2, 3}));
  EXPECT_EQ(cls["data"], json({"9.000000:9:9", "8.000000:8:8", "7.000000:7:7", "-0.000000:0:0", "-1.000000:1:1", "-2.000000:2:2"}));
  const json& bin = head["outputs"][1];
  EXPECT_EQ(bin["datatype"], "BYTES");
  EXPECT_EQ(bin["shape"], json({2, 8}));
  // BYTES blob: each element a 4-byte little-endian length and its bytes ("0.125000:0" is 10 bytes).
  const std::string blob = b.bytes.substr(size_t(b.header_length));
  EXPECT_EQ(bin["parameters"]["binary_data_size"], blob.size());
  EXPECT_EQ(blob.size(), 16u * (4 + 10));
  EXPECT_EQ(blob.substr(0, 14), std::string("\x0a\0\0\0", 4) + "0.125000:0");
}

TEST(KServe, UnsupportedOutputParametersAndMistypedRequestParametersAre400) {
  json j = request_json(1, pixels(1));
  j["outputs"] = {{{"name", "logits"}, {"parameters", {{"shared_memory_region", "r"}}}}};
  EXPECT_NE(rejected(j.dump()).second.find("outputs[0].parameters.shared_memory_region: not supported"), std::string::npos);
  for (const json& bad : {json(-1), json("3"), json(1.5), json(true)}) {
    j["outputs"] = {{{"name", "logits"}, {"parameters", {{"classification", bad}}}}};
    EXPECT_NE(rejected(j.dump()).second.find("parameters.classification: expected a class count"), std::string::npos) << bad;
  }
  j.erase("outputs");
  for (const auto& [key, bad] : std::vector<std::pair<std::string, json>>{
           {"priority", "high"}, {"priority", -1}, {"timeout", "100"}, {"timeout", 1.5}, {"sequence_id", -2},
           {"sequence_start", 1}, {"binary_data_output", "yes"}, {"custom", json::object()}, {"custom", nullptr}}) {
    j["parameters"] = {{key, bad}};
    const auto e = rejected(j.dump());
    EXPECT_EQ(e.first, 400) << key;
    EXPECT_NE(e.second.find("parameters." + key), std::string::npos) << e.second;
  }
  j["parameters"] = {{"priority", 1}, {"timeout", 5000}, {"sequence_id", "s"}, {"sequence_end", false}, {"custom", "x"}};
  EXPECT_EQ(parse_infer_request(j.dump(), -1, model()).timeout_us, 5000);
}

// Pixel values the model was never trained on (1e30, -1, 2) reach it unchanged, as on Triton (which
// takes any IEEE-754 value; perf_analyzer's default random data depends on it): in JSON and in binary.
// What the model accepts is said in its metadata and docs/service.md, not by refusing.
TEST(KServe, PixelsOutsideZeroToOneReachTheModelUnchanged) {
  for (float odd : {1e30f, -1.f, 2.f, 1.0001f}) {
    auto x = pixels(1);
    x[5] = odd;
    const auto r = parse_infer_request(request_json(1, x).dump(), -1, model());
    ASSERT_EQ(r.n, 1);
    EXPECT_EQ(r.images[5], odd);
    const std::string blob(reinterpret_cast<const char*>(x.data()), 3136);
    EXPECT_EQ(parse_infer_request(blob, 0, model()).images[5], odd);
  }
}

TEST(KServe, MetadataAndConfigDescribeTheModel) {
  ModelInfo m = model();
  m.n_experts = 4;
  const json meta = json::parse(model_metadata_json(m));
  EXPECT_EQ(meta["inputs"][0]["shape"], json({-1, 1, 28, 28}));
  EXPECT_EQ(meta["outputs"][1]["shape"], json({-1, 4}));
  const json cfg = json::parse(model_config_json(m));
  EXPECT_EQ(cfg["max_batch_size"], 8);
  EXPECT_EQ(cfg["input"][0]["dims"], json({1, 28, 28}));
  EXPECT_EQ(cfg["output"][1]["dims"], json({4}));
  const json server = json::parse(server_metadata_json());
  EXPECT_EQ(server["extensions"], json({"binary_tensor_data", "classification", "model_configuration", "parameters", "statistics"}));
}

TEST(KServe, JsonDepthSkipsStrings) {
  EXPECT_EQ(json_depth(R"({"a":[[1]],"b":"[[[[[["})"), 3);
  EXPECT_EQ(json_depth(R"("\"[")"), 0);
}

}  // namespace
}  // namespace moe::serve
