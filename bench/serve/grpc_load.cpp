// grpc_load: a closed-loop load client for the gRPC endpoint of `moe-mnist serve`, as lean as wrk is
// for HTTP, so the two protocols can be compared on one small machine without the client's own cost
// deciding the result. CONCURRENCY calls are kept in flight on one channel (HTTP/2 connection):
// unary ModelInfer calls, or with --streaming CONCURRENCY ModelStreamInfer streams with one request
// each in flight. Every request is one [1,1,28,28] image as raw_input_contents. Prints requests/s,
// latency p50/p99 and the number of failed calls (any failure makes the exit status 1).
//   grpc_load HOST:PORT CONCURRENCY SECONDS [--streaming] [--uint8] [--model NAME]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "grpc_service.grpc.pb.h"

namespace {

using clock_type = std::chrono::steady_clock;

struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> failed{0};
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;  // slots not yet finished
  void finished() {
    std::lock_guard<std::mutex> lock(mu);
    if (--running == 0) cv.notify_all();
  }
};

// One unary call in flight at a time, issued again from its own completion.
class UnarySlot {
 public:
  UnarySlot(inference::GRPCInferenceService::Stub& stub, const inference::ModelInferRequest& q, Shared& s) : stub_(stub), q_(q), s_(s) {}
  void start() {
    if (s_.stop) return s_.finished();
    ctx_ = std::make_unique<grpc::ClientContext>();
    resp_.Clear();
    t0_ = clock_type::now();
    stub_.async()->ModelInfer(ctx_.get(), &q_, &resp_, [this](grpc::Status st) {
      if (st.ok()) latencies_us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0_).count());
      else ++s_.failed;
      start();
    });
  }
  std::vector<double> latencies_us;

 private:
  inference::GRPCInferenceService::Stub& stub_;
  const inference::ModelInferRequest& q_;
  Shared& s_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  inference::ModelInferResponse resp_;
  clock_type::time_point t0_;
};

// One stream with one request in flight: write, read its answer, write the next.
class StreamSlot : public grpc::ClientBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse> {
 public:
  StreamSlot(inference::GRPCInferenceService::Stub& stub, const inference::ModelInferRequest& q, Shared& s) : q_(q), s_(s) {
    stub.async()->ModelStreamInfer(&ctx_, this);
    StartRead(&resp_);
    send();
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    if (resp_.error_message().empty()) latencies_us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0_).count());
    else ++s_.failed;
    step();
  }
  void OnWriteDone(bool ok) override {
    if (ok) step();
  }
  void OnDone(const grpc::Status& st) override {
    if (!st.ok()) ++s_.failed;
    s_.finished();
  }
  std::vector<double> latencies_us;

 private:
  // The next request goes once both the answer and the completion of the last write are in (a
  // write's completion can arrive after the answer; one write at a time).
  void step() {
    if (++events_ < 2) return;
    events_ = 0;
    if (s_.stop) return StartWritesDone();
    StartRead(&resp_);
    send();
  }
  void send() {
    t0_ = clock_type::now();
    StartWrite(&q_);
  }
  std::atomic<int> events_{0};
  const inference::ModelInferRequest& q_;
  Shared& s_;
  grpc::ClientContext ctx_;
  inference::ModelStreamInferResponse resp_;
  clock_type::time_point t0_;
};

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, size_t(p * double(v.size())));
  std::nth_element(v.begin(), v.begin() + long(i), v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: grpc_load HOST:PORT CONCURRENCY SECONDS [--streaming] [--uint8] [--model NAME]\n");
    return 2;
  }
  const std::string target = argv[1];
  const int concurrency = std::atoi(argv[2]);
  const double seconds = std::atof(argv[3]);
  bool streaming = false, uint8 = false;
  std::string model = "moe-mnist";
  for (int i = 4; i < argc; ++i) {
    if (std::strcmp(argv[i], "--streaming") == 0) streaming = true;
    else if (std::strcmp(argv[i], "--uint8") == 0) uint8 = true;
    else if (std::strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
    else {
      std::fprintf(stderr, "grpc_load: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (concurrency < 1 || seconds <= 0) {
    std::fprintf(stderr, "grpc_load: expected CONCURRENCY >= 1 and SECONDS > 0\n");
    return 2;
  }
  inference::ModelInferRequest q;
  q.set_model_name(model);
  auto* in = q.add_inputs();
  in->set_name("input");
  in->set_datatype(uint8 ? "UINT8" : "FP32");
  for (int64_t d : {1, 1, 28, 28}) in->add_shape(d);
  std::string pixels(784 * (uint8 ? 1 : 4), '\0');
  for (size_t i = 0; i < 784; ++i) {  // a diagonal stroke, so the model has something to see
    const uint8_t v = (i / 28 == i % 28) ? 255 : 0;
    if (uint8) pixels[i] = char(v);
    else {
      const float f = float(v) / 255.f;
      std::memcpy(&pixels[i * 4], &f, 4);
    }
  }
  q.add_raw_input_contents(pixels);

  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    std::fprintf(stderr, "grpc_load: cannot connect to %s\n", target.c_str());
    return 1;
  }
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  Shared s;
  s.running = concurrency;
  std::vector<std::unique_ptr<UnarySlot>> unary;
  std::vector<std::unique_ptr<StreamSlot>> streams;
  const auto t0 = clock_type::now();
  for (int i = 0; i < concurrency; ++i) {
    if (streaming) streams.push_back(std::make_unique<StreamSlot>(*stub, q, s));
    else unary.push_back(std::make_unique<UnarySlot>(*stub, q, s));
  }
  for (auto& u : unary) u->start();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  s.stop = true;
  const double elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
  {
    std::unique_lock<std::mutex> lock(s.mu);
    s.cv.wait(lock, [&] { return s.running == 0; });
  }
  std::vector<double> all;
  for (auto& u : unary) all.insert(all.end(), u->latencies_us.begin(), u->latencies_us.end());
  for (auto& st : streams) all.insert(all.end(), st->latencies_us.begin(), st->latencies_us.end());
  const size_t done = all.size();
  const double p50 = percentile(all, 0.50), p99 = percentile(all, 0.99);
  std::printf("%s %d %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %zu ok, %lld failed\n", streaming ? "streams" : "unary", concurrency,
              uint8 ? "UINT8" : "FP32", double(done) / elapsed, p50 / 1000, p99 / 1000, done, (long long)s.failed.load());
  return s.failed > 0 ? 1 : 0;
}
