// The gRPC endpoint with a client generated from the same official proto: every RPC, errors as status
// codes with the HTTP side's messages, outputs bit-identical to HTTP's, concurrency, streaming, and a
// graceful stop under load.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "grpc_service.grpc.pb.h"
#include "base/errors.h"
#include "serve/service.h"
#include "serve/service_fixture.h"

namespace moe::serve {
namespace {

using json = nlohmann::json;

const Checkpoint& checkpoint() { return test::served_checkpoint(); }

std::unique_ptr<Service> start(int64_t max_delay_us = 200) {
  ServiceOptions o = test::service_options();
  o.grpc.port = 0;
  o.batching.max_delay_us = max_delay_us;
  return std::make_unique<Service>(o, test::reference_engines(1));
}

std::unique_ptr<inference::GRPCInferenceService::Stub> stub(const Service& s) {
  return inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(s.grpc_port()), grpc::InsecureChannelCredentials()));
}

inference::ModelInferRequest raw_request(const std::vector<float>& x, const char* datatype = "FP32") {
  inference::ModelInferRequest q;
  q.set_model_name("moe-mnist");
  auto* in = q.add_inputs();
  in->set_name("input");
  in->set_datatype(datatype);
  const int64_t n = int64_t(x.size()) / kPixels;
  for (int64_t d : {n, int64_t(1), int64_t(28), int64_t(28)}) in->add_shape(d);
  if (std::strcmp(datatype, "UINT8") == 0) {
    std::string b;
    for (float v : x) b.push_back(char(uint8_t(std::lround(v * 255))));
    q.add_raw_input_contents(b);
  } else {
    q.add_raw_input_contents(std::string(reinterpret_cast<const char*>(x.data()), x.size() * 4));
  }
  return q;
}

std::vector<float> floats(const std::string& raw) {
  std::vector<float> v(raw.size() / 4);
  std::memcpy(v.data(), raw.data(), v.size() * 4);
  return v;
}

// logits of the same images over HTTP's binary extension.
std::vector<float> http_logits(const Service& s, const std::vector<float>& x) {
  httplib::Client c("127.0.0.1", s.port());
  const int64_t n = int64_t(x.size()) / kPixels;
  const std::string h = json{{"inputs", {{{"name", "input"}, {"shape", {n, 1, 28, 28}}, {"datatype", "FP32"},
                                          {"parameters", {{"binary_data_size", x.size() * 4}}}}}},
                             {"outputs", {{{"name", "logits"}, {"parameters", {{"binary_data", true}}}}}}}.dump();
  auto r = c.Post("/v2/models/moe-mnist/infer", {{"Inference-Header-Content-Length", std::to_string(h.size())}},
                  h + std::string(reinterpret_cast<const char*>(x.data()), x.size() * 4), "application/octet-stream");
  EXPECT_EQ(r->status, 200);
  return floats(r->body.substr(h.size() > 0 ? std::stoul(r->get_header_value("Inference-Header-Content-Length")) : 0));
}

TEST(Grpc, HealthMetadataConfigAndStatistics) {
  auto s = start();
  auto st = stub(*s);
  grpc::ClientContext c1, c2, c3, c4, c5, c6, c7, c8;
  inference::ServerLiveResponse live;
  ASSERT_TRUE(st->ServerLive(&c1, {}, &live).ok());
  EXPECT_TRUE(live.live());
  inference::ServerReadyResponse ready;
  ASSERT_TRUE(st->ServerReady(&c2, {}, &ready).ok());
  EXPECT_TRUE(ready.ready());
  inference::ModelReadyRequest mr;
  mr.set_name("moe-mnist");
  inference::ModelReadyResponse mready;
  ASSERT_TRUE(st->ModelReady(&c3, mr, &mready).ok());
  EXPECT_TRUE(mready.ready());
  grpc::ClientContext cu;
  inference::RepositoryIndexResponse index;
  const grpc::Status unserved = st->RepositoryIndex(&cu, {}, &index);
  EXPECT_EQ(unserved.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_NE(unserved.error_message().find("model_repository extension is not served"), std::string::npos);
  mr.set_name("other");
  const grpc::Status missing = st->ModelReady(&c4, mr, &mready);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.error_message(), "unknown model 'other' (this server serves 'moe-mnist')");
  inference::ServerMetadataResponse sm;
  ASSERT_TRUE(st->ServerMetadata(&c5, {}, &sm).ok());
  EXPECT_EQ(sm.name(), "moe-mnist");
  EXPECT_NE(std::find(sm.extensions().begin(), sm.extensions().end(), "statistics"), sm.extensions().end());
  inference::ModelMetadataRequest mm;
  mm.set_name("moe-mnist");
  inference::ModelMetadataResponse meta;
  ASSERT_TRUE(st->ModelMetadata(&c6, mm, &meta).ok());
  ASSERT_EQ(meta.outputs_size(), 2);
  EXPECT_EQ(meta.outputs(1).shape(1), 8);
  EXPECT_EQ(meta.inputs(0).datatype(), "FP32");
  inference::ModelConfigRequest mc;
  mc.set_name("moe-mnist");
  mc.set_version("1");
  inference::ModelConfigResponse cfg;
  ASSERT_TRUE(st->ModelConfig(&c7, mc, &cfg).ok());
  EXPECT_EQ(cfg.config().max_batch_size(), 16);
  EXPECT_EQ(cfg.config().input(0).dims_size(), 3);

  grpc::ClientContext ci;
  inference::ModelInferResponse resp;
  ASSERT_TRUE(st->ModelInfer(&ci, raw_request(test::random_images(3, 1)), &resp).ok());
  inference::ModelStatisticsRequest sq;  // empty name: every model
  inference::ModelStatisticsResponse stats;
  ASSERT_TRUE(st->ModelStatistics(&c8, sq, &stats).ok());
  ASSERT_EQ(stats.model_stats_size(), 1);
  EXPECT_EQ(stats.model_stats(0).inference_count(), 3u);
  EXPECT_EQ(stats.model_stats(0).inference_stats().success().count(), 1u);
  EXPECT_EQ(stats.model_stats(0).batch_stats(0).batch_size(), 3u);
}

TEST(Grpc, InferenceIsBitIdenticalToHttpInEveryInputForm) {
  auto s = start();
  auto st = stub(*s);
  const std::vector<float> x = test::random_images(4, 7);
  const std::vector<float> via_http = http_logits(*s, x);
  grpc::ClientContext c1;
  inference::ModelInferResponse raw;
  ASSERT_TRUE(st->ModelInfer(&c1, raw_request(x), &raw).ok());
  EXPECT_EQ(raw.model_name(), "moe-mnist");
  ASSERT_EQ(raw.outputs_size(), 2);  // no outputs requested: all, raw
  EXPECT_EQ(raw.outputs(0).name(), "logits");
  EXPECT_EQ(raw.outputs(0).shape(1), 10);
  EXPECT_EQ(floats(raw.raw_output_contents(0)), via_http);
  // Typed contents.
  inference::ModelInferRequest typed = raw_request(x);
  typed.clear_raw_input_contents();
  for (float v : x) typed.mutable_inputs(0)->mutable_contents()->add_fp32_contents(v);
  typed.set_id("t1");
  grpc::ClientContext c2;
  inference::ModelInferResponse t;
  ASSERT_TRUE(st->ModelInfer(&c2, typed, &t).ok());
  EXPECT_EQ(t.id(), "t1");
  EXPECT_EQ(floats(t.raw_output_contents(0)), via_http);
  // Classification: BYTES "score:index" strings, length-prefixed in raw_output_contents.
  inference::ModelInferRequest cls = raw_request(x);
  auto* o = cls.add_outputs();
  o->set_name("logits");
  (*o->mutable_parameters())["classification"].set_int64_param(2);
  grpc::ClientContext c3;
  inference::ModelInferResponse cr;
  ASSERT_TRUE(st->ModelInfer(&c3, cls, &cr).ok());
  ASSERT_EQ(cr.outputs_size(), 1);
  EXPECT_EQ(cr.outputs(0).datatype(), "BYTES");
  EXPECT_EQ(cr.outputs(0).shape(1), 2);
  const std::string& b = cr.raw_output_contents(0);
  uint32_t len = 0;
  std::memcpy(&len, b.data(), 4);
  EXPECT_EQ(b.substr(4, len), std::to_string(*std::max_element(via_http.begin(), via_http.begin() + 10)) + ":" +
                                  std::to_string(std::max_element(via_http.begin(), via_http.begin() + 10) - via_http.begin()));
}

TEST(Grpc, ErrorsAreStatusCodesWithTheHttpMessages) {
  auto s = start();
  auto st = stub(*s);
  auto call = [&](const inference::ModelInferRequest& q) {
    grpc::ClientContext c;
    inference::ModelInferResponse r;
    return st->ModelInfer(&c, q, &r);
  };
  inference::ModelInferRequest q = raw_request(test::random_images(1, 2));
  q.mutable_inputs(0)->set_shape(0, 99);
  grpc::Status e = call(q);
  EXPECT_EQ(e.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(e.error_message(), "inputs[0].shape: batch 99 is above the limit of 16 images per request (--max-batch-request)");
  q = raw_request(test::random_images(1, 2));
  q.set_model_name("nope");
  EXPECT_EQ(call(q).error_code(), grpc::StatusCode::NOT_FOUND);
  q = raw_request(test::random_images(1, 2));
  q.mutable_raw_input_contents(0)->resize(100);
  EXPECT_NE(call(q).error_message().find("raw_input_contents[0]: expected 3136 bytes"), std::string::npos);
  q = raw_request(test::random_images(1, 2));
  (*q.mutable_parameters())["priority"].set_string_param("high");
  EXPECT_EQ(call(q).error_message(), "parameters.priority: expected an unsigned integer, got \"high\"");
  q = raw_request(test::random_images(1, 2));
  (*q.add_outputs()->mutable_parameters())["shared_memory_region"].set_string_param("r");
  q.mutable_outputs(0)->set_name("logits");
  EXPECT_NE(call(q).error_message().find("not supported"), std::string::npos);
}

TEST(Grpc, ConcurrentCallsAndAStreamGetTheirOwnAnswers) {
  auto s = start(2000);
  auto st = stub(*s);
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const std::vector<float> x = test::random_images(1, unsigned(t * 100 + i));
        ReferenceClassifier ref(checkpoint());
        std::vector<float> want(10), probs(8);
        ref.classify(x.data(), 1, want.data(), probs.data());
        grpc::ClientContext c;
        inference::ModelInferResponse r;
        if (st->ModelInfer(&c, raw_request(x), &r).ok() && floats(r.raw_output_contents(0)) == want) ++good;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(good, 80);

  grpc::ClientContext c;
  auto stream = st->ModelStreamInfer(&c);
  std::map<std::string, std::vector<float>> want;
  for (int i = 0; i < 6; ++i) {
    const std::vector<float> x = test::random_images(1, unsigned(500 + i));
    inference::ModelInferRequest q = raw_request(x);
    q.set_id("r" + std::to_string(i));
    if (i == 3) q.mutable_inputs(0)->set_datatype("FP64");
    ReferenceClassifier ref(checkpoint());
    std::vector<float> l(10), p(8);
    ref.classify(x.data(), 1, l.data(), p.data());
    want[q.id()] = l;
    ASSERT_TRUE(stream->Write(q));
  }
  stream->WritesDone();
  inference::ModelStreamInferResponse r;
  int answers = 0;
  while (stream->Read(&r)) {
    ++answers;
    const std::string id = r.infer_response().id();
    if (id == "r3") {
      EXPECT_EQ(r.error_message(), "inputs[0].datatype: expected \"FP32\" (the input datatype of model 'moe-mnist'), got \"FP64\"");
    } else {
      EXPECT_TRUE(r.error_message().empty()) << r.error_message();
      EXPECT_EQ(floats(r.infer_response().raw_output_contents(0)), want[id]) << id;
    }
  }
  EXPECT_EQ(answers, 6);
  EXPECT_TRUE(stream->Finish().ok());
}

// Streams on the callback API: a client that cancels while its answers are still in the batcher, and
// a stream left open by its client, both end, and the stop returns within its grace.
TEST(Grpc, StreamsEndWhenTheClientCancelsOrTheServerStops) {
  auto s = start(2000);
  auto st = stub(*s);
  {
    grpc::ClientContext c;
    auto stream = st->ModelStreamInfer(&c);
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(stream->Write(raw_request(test::random_images(1, unsigned(i)))));
    c.TryCancel();
    inference::ModelStreamInferResponse r;
    while (stream->Read(&r)) {
    }
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  grpc::ClientContext c;
  auto open = st->ModelStreamInfer(&c);  // answered, then left open (no WritesDone)
  ASSERT_TRUE(open->Write(raw_request(test::random_images(2, 3))));
  inference::ModelStreamInferResponse r;
  ASSERT_TRUE(open->Read(&r));
  EXPECT_TRUE(r.error_message().empty()) << r.error_message();
  EXPECT_EQ(r.infer_response().outputs(0).shape(0), 2);
  const auto t0 = std::chrono::steady_clock::now();
  s->shutdown(0.5);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_FALSE(open->Read(&r));
  EXPECT_FALSE(open->Finish().ok());
}

// A graceful stop while clients keep calling: every call ends (answered, or UNAVAILABLE once the stop
// began), and the stop returns.
TEST(Grpc, ShutdownUnderLoadAnswersOrRefusesEveryCall) {
  auto s = start(1000);
  auto st = stub(*s);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        grpc::ClientContext c;
        c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
        inference::ModelInferResponse r;
        const grpc::Status e = st->ModelInfer(&c, raw_request(test::random_images(1, unsigned(t * 1000 + i % 50))), &r);
        if (e.ok()) ++ok;
        else if (e.error_code() == grpc::StatusCode::UNAVAILABLE) ++refused;
        else ++other;
        if (!e.ok() && ok > 0) break;
      }
    });
  while (ok < 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s->shutdown(5);
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_GE(ok, 20);
  EXPECT_EQ(other, 0);
}

}  // namespace
}  // namespace moe::serve

namespace moe::serve {
namespace {
// A second server on a gRPC port in use is a start-up error, as for HTTP: gRPC's default
// SO_REUSEPORT would otherwise let it silently take half of the first one's connections.
TEST(Grpc, ABusyPortIsRefusedNotShared) {
  auto first = start();
  ServiceOptions o;
  o.http.port = 0;
  o.grpc.port = first->grpc_port();
  std::vector<std::unique_ptr<Classifier>> e;
  e.push_back(std::make_unique<ReferenceClassifier>(checkpoint()));
  try {
    Service second(o, std::move(e));
    ADD_FAILURE() << "a second server listened on gRPC port " << o.grpc.port;
  } catch (const InputError& err) {
    EXPECT_NE(std::string(err.what()).find("cannot listen for gRPC"), std::string::npos) << err.what();
  }
}
}  // namespace
}  // namespace moe::serve
