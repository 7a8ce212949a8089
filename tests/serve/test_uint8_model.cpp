// A model whose input is UINT8 (a graph exported with --input uint8, or `native`, which reads either)
// over HTTP and gRPC: metadata and config declare UINT8, a request with FP32 is refused naming UINT8,
// the bytes reach the engine as bytes (Classifier::classify_u8, never a float copy), and the answers
// equal the FP32 model's for the same pixels.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "native/folded_model.h"
#include "native/native_classifier.h"
#include "parity_util.h"
#include "serve/service.h"
#include "serve/service_fixture.h"
#if MOE_MNIST_WITH_GRPC
#include <grpcpp/grpcpp.h>

#include "grpc_service.grpc.pb.h"
#endif

namespace moe::serve {
namespace {

using json = nlohmann::json;

const Checkpoint& checkpoint() { return test::served_checkpoint(); }

// `native` behind a counter of how its images arrive.
struct Counts {
  std::atomic<int64_t> float_images{0}, byte_images{0};
};
class Counted final : public Classifier {
 public:
  explicit Counted(Counts& c) : inner_(make_native_classifier(fold_model(checkpoint()), NativeOptions{})), c_(c) {}
  void classify(const float* x, int64_t n, float* logits, float* probs) override {
    c_.float_images += n;
    inner_->classify(x, n, logits, probs);
  }
  void classify_u8(const uint8_t* x, int64_t n, float* logits, float* probs) override {
    c_.byte_images += n;
    inner_->classify_u8(x, n, logits, probs);
  }
  bool reads_uint8() const override { return true; }
  int64_t n_classes() const override { return inner_->n_classes(); }
  int64_t n_experts() const override { return inner_->n_experts(); }
  int64_t top_k() const override { return inner_->top_k(); }
  std::string backend() const override { return inner_->backend(); }
  std::string precision() const override { return inner_->precision(); }

 private:
  std::unique_ptr<Classifier> inner_;
  Counts& c_;
};

std::unique_ptr<Service> start(const char* datatype, Counts& counts) {
  ServiceOptions o = test::service_options();
#if MOE_MNIST_WITH_GRPC
  o.grpc.port = 0;
#endif
  o.batching.max_delay_us = 2000;  // concurrent requests join one batch: the batcher's byte concatenation runs too
  o.input_datatype = datatype;
  std::vector<std::unique_ptr<Classifier>> e;
  e.push_back(std::make_unique<Counted>(counts));
  return std::make_unique<Service>(o, std::move(e));
}

std::vector<uint8_t> image_bytes(int64_t n, unsigned seed) {
  std::vector<uint8_t> b;
  for (float v : test::random_images(n, seed)) b.push_back(uint8_t(std::lround(v * 255)));
  return b;
}

// logits over HTTP's binary extension, input sent in `datatype`.
std::vector<float> http_logits(const Service& s, const std::vector<uint8_t>& bytes, const std::string& datatype, int* status = nullptr) {
  const int64_t n = int64_t(bytes.size()) / kPixels;
  std::string blob;
  if (datatype == "UINT8") {
    blob.assign(bytes.begin(), bytes.end());
  } else {
    for (uint8_t b : bytes) {
      const float f = float(b) / 255.f;
      blob.append(reinterpret_cast<const char*>(&f), 4);
    }
  }
  const std::string h = json{{"inputs", {{{"name", "input"}, {"shape", {n, 1, 28, 28}}, {"datatype", datatype},
                                          {"parameters", {{"binary_data_size", blob.size()}}}}}},
                             {"outputs", {{{"name", "logits"}, {"parameters", {{"binary_data", true}}}}}}}.dump();
  httplib::Client c("127.0.0.1", s.port());
  auto r = c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(h.size())}}, h + blob,
                  "application/octet-stream");
  if (status) *status = r ? r->status : 0;
  if (!r || r->status != 200) return {};
  const size_t hl = std::stoul(r->get_header_value("Inference-Header-Content-Length"));
  std::vector<float> v((r->body.size() - hl) / 4);
  std::memcpy(v.data(), r->body.data() + hl, v.size() * 4);
  return v;
}

TEST(Uint8Model, DeclaresUint8AndRefusesFp32OverHttp) {
  Counts counts;
  auto s = start("UINT8", counts);
  httplib::Client c("127.0.0.1", s->port());
  EXPECT_EQ(json::parse(c.Get("/v2/models/moe-mnist")->body)["inputs"][0]["datatype"], "UINT8");
  EXPECT_EQ(json::parse(c.Get("/v2/models/moe-mnist/config")->body)["input"][0]["data_type"], "TYPE_UINT8");
  int status = 0;
  http_logits(*s, image_bytes(1, 1), "FP32", &status);
  EXPECT_EQ(status, 400);
  auto r = c.Post("/v2/models/moe-mnist/infer",
                  json{{"inputs", {{{"name", "input"}, {"shape", {1, 1, 28, 28}}, {"datatype", "FP32"}, {"data", std::vector<float>(784, 0.f)}}}}}.dump(),
                  "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"], "inputs[0].datatype: expected \"UINT8\" (the input datatype of model 'moe-mnist'), got \"FP32\"");
  EXPECT_EQ(counts.float_images + counts.byte_images, 0);  // refused before the batcher
}

// The same pixels: UINT8 bytes to the UINT8 model (native reading bytes, 1/255 folded in), FP32 x/255
// to the FP32 model (native reading floats). Concurrent requests, so batches of several requests
// are put together from bytes as well.
TEST(Uint8Model, BytesReachTheEngineAsBytesAndAnswerAsTheFloatModel) {
  Counts c8, c32;
  auto u8 = start("UINT8", c8);
  auto f32 = start("FP32", c32);
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  const bool integer = test::bytes_take_integer_embedding();
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        const std::vector<uint8_t> x = image_bytes(1 + (t + i) % 3, unsigned(t * 10 + i));
        const std::vector<float> a = http_logits(*u8, x, "UINT8"), b = http_logits(*f32, x, "FP32");
        bool same = !a.empty() && a.size() == b.size();
        // Bytes through an integer embedding (16-bit weights) agree as test::kInt8Bounds says; else as floats.
        for (size_t k = 0; same && k < a.size(); ++k)
          same = std::fabs(a[k] - b[k]) <= (integer ? test::kInt8Bounds.logit_abs + test::kInt8Bounds.logit_rel * std::fabs(b[k])
                                                    : 1e-5f * std::max(1.f, std::fabs(b[k])));
        if (same) ++good;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(good, 20);
  EXPECT_GT(c8.byte_images, 0);
  EXPECT_EQ(c8.float_images, 0);  // no float copy anywhere on the UINT8 model's path
  EXPECT_EQ(c32.byte_images, 0);
  // /v1/predict decodes an image to pixels; the UINT8 model gets them as bytes too.
  httplib::Client c("127.0.0.1", u8->port());
  std::string pixels(784, '\0');
  for (int y = 8; y < 20; ++y) pixels[size_t(y * 28 + 14)] = char(255);  // a stroke: an image without ink is refused
  const std::string pgm = "P5 28 28 255\n" + pixels;
  auto p = c.Post("/v1/predict", pgm, "image/x-portable-graymap");
  EXPECT_EQ(p->status, 200) << p->body;
  EXPECT_EQ(c8.float_images, 0);
}

#if MOE_MNIST_WITH_GRPC
TEST(Uint8Model, GrpcDeclaresUint8AndAnswersAsHttp) {
  Counts counts;
  auto s = start("UINT8", counts);
  auto st = inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(s->grpc_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext c1, c2;
  inference::ModelMetadataRequest mq;
  mq.set_name("moe-mnist");
  inference::ModelMetadataResponse meta;
  ASSERT_TRUE(st->ModelMetadata(&c1, mq, &meta).ok());
  EXPECT_EQ(meta.inputs(0).datatype(), "UINT8");
  EXPECT_EQ(meta.outputs(0).datatype(), "FP32");
  inference::ModelConfigRequest cq;
  cq.set_name("moe-mnist");
  inference::ModelConfigResponse cfg;
  ASSERT_TRUE(st->ModelConfig(&c2, cq, &cfg).ok());
  EXPECT_EQ(cfg.config().input(0).data_type(), inference::TYPE_UINT8);

  const std::vector<uint8_t> x = image_bytes(2, 9);
  inference::ModelInferRequest q;
  q.set_model_name("moe-mnist");
  auto* in = q.add_inputs();
  in->set_name("input");
  in->set_datatype("UINT8");
  for (int64_t d : {2, 1, 28, 28}) in->add_shape(d);
  q.add_raw_input_contents(std::string(x.begin(), x.end()));
  grpc::ClientContext c3;
  inference::ModelInferResponse r;
  ASSERT_TRUE(st->ModelInfer(&c3, q, &r).ok());
  std::vector<float> logits(20);
  ASSERT_EQ(r.raw_output_contents(0).size(), 80u);
  std::memcpy(logits.data(), r.raw_output_contents(0).data(), 80);
  EXPECT_EQ(logits, http_logits(*s, x, "UINT8"));  // bit-identical across the protocols
  // Typed contents as uint_contents.
  inference::ModelInferRequest typed = q;
  typed.clear_raw_input_contents();
  for (uint8_t b : x) typed.mutable_inputs(0)->mutable_contents()->add_uint_contents(b);
  grpc::ClientContext c4;
  inference::ModelInferResponse t;
  ASSERT_TRUE(st->ModelInfer(&c4, typed, &t).ok());
  EXPECT_EQ(t.raw_output_contents(0), r.raw_output_contents(0));

  inference::ModelInferRequest f = q;
  f.mutable_inputs(0)->set_datatype("FP32");
  f.set_raw_input_contents(0, std::string(2 * 784 * 4, '\0'));
  grpc::ClientContext c5;
  const grpc::Status e = st->ModelInfer(&c5, f, &r);
  EXPECT_EQ(e.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.error_message(), "inputs[0].datatype: expected \"UINT8\" (the input datatype of model 'moe-mnist'), got \"FP32\"");
  EXPECT_EQ(counts.float_images, 0);
}
#endif

}  // namespace
}  // namespace moe::serve
