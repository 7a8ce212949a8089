#include "serve/served_model.h"

#include <chrono>
#include <future>

#include "base/errors.h"
#include "model/checked_classifier.h"
#include "serve/classification.h"

namespace moe::serve {

std::string declared_input_datatype(const Classifier& engine) {
  return engine.reads_uint8() && engine.backend() != "native" ? "UINT8" : "FP32";
}

ServedModel::ServedModel(ModelInfo info, BatcherOptions batching, std::vector<std::unique_ptr<Classifier>> engines, Metrics& metrics,
                         const std::string& input_datatype)
    : info_(std::move(info)) {
  const Classifier& e = *engines.at(0);
  info_.n_classes = e.n_classes();
  info_.n_experts = e.n_experts();
  info_.top_k = e.top_k();
  info_.precision = e.precision();
  info_.backend = e.backend();
  info_.labels = class_labels(e.provenance("dataset"), e.n_classes());
  info_.max_queue_delay_us = batching.max_delay_us;
  info_.preferred_batch = batching.max_batch;
  info_.input_datatype = input_datatype.empty() ? declared_input_datatype(e) : input_datatype;
  if (info_.input_datatype != "FP32" && info_.input_datatype != "UINT8")
    throw InputError("input datatype: expected FP32 or UINT8, got '" + info_.input_datatype + "'");
  batching.uint8_input = takes_uint8(info_);
  if (e.n_classes() < 2 || e.n_experts() < 1 || e.top_k() < 1 || e.top_k() > e.n_experts())
    throw InputError("model: needs >= 2 classes and 1 <= top-k <= experts, found " + std::to_string(e.n_classes()) + " classes, " +
                     std::to_string(e.n_experts()) + " experts, top-k " + std::to_string(e.top_k()));
  batcher_ = std::make_unique<Batcher>(batching, std::move(engines), metrics.model(info_.name, info_.version, info_.n_experts), stats_);
}

ServedModel::~ServedModel() { batcher_->stop(); }

void ServedModel::warm_up(double timeout_s) {
  auto answer = std::make_shared<std::promise<BatchResult>>();
  std::future<BatchResult> result = answer->get_future();
  Batcher::Done done = [answer](BatchResult&& r) { answer->set_value(std::move(r)); };
  const int64_t timeout_us = int64_t(timeout_s * 1e6);
  const auto s = takes_uint8(info_) ? batcher_->submit(std::vector<uint8_t>(kPixels, 0), 1, std::move(done), timeout_us)
                                    : batcher_->submit(std::vector<float>(kPixels, 0.f), 1, std::move(done), timeout_us);
  const std::string what = "model '" + info_.name + "' version " + info_.version + ": warm-up request: ";
  if (s != Batcher::Submitted::ok) throw InputError(what + "the batcher refused it");
  if (result.wait_for(std::chrono::duration<double>(timeout_s)) != std::future_status::ready)
    throw InputError(what + "no answer within " + std::to_string(timeout_s) + " s");
  const BatchResult r = result.get();
  if (!r.error.empty()) throw InputError(what + r.error);
  if (int64_t(r.logits.size()) != info_.n_classes || int64_t(r.gate_probs.size()) != info_.n_experts)
    throw InputError(what + "outputs of the wrong size");
  check_outputs(r.logits.data(), r.gate_probs.data(), 1, info_.n_classes, info_.n_experts, what + "its outputs");
  stats_.reset();  // statistics count the clients' requests
}

}  // namespace moe::serve
