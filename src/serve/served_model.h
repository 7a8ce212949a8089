// One loaded version of one model: its engines behind their own dynamic batcher, its Triton
// statistics, and what clients see of it (ModelInfo). Requests in flight hold it by shared_ptr, so a
// version that is unloaded or replaced answers everything it has taken before it goes; the model
// repository destroys it only once nobody else holds it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/classifier.h"
#include "serve/batcher.h"
#include "serve/kserve.h"
#include "serve/metrics.h"
#include "serve/model_stats.h"

namespace moe::serve {

// The input datatype a model's engine declares: "UINT8" for an ONNX Runtime graph exported with
// --input uint8 (it reads bytes), else "FP32". `native` reads bytes too, but serves a float checkpoint.
std::string declared_input_datatype(const Classifier& engine);

class ServedModel {
 public:
  // `info`: name, version and request limits; the sizes, precision, labels and input datatype are
  // filled from the engines, which must all be of one model. input_datatype: "" = what the engine
  // declares, or "FP32" / "UINT8" for an engine that reads either (native). Throws InputError for a
  // model this server cannot serve.
  ServedModel(ModelInfo info, BatcherOptions batching, std::vector<std::unique_ptr<Classifier>> engines, Metrics& metrics,
              const std::string& input_datatype = "");
  ~ServedModel();
  ServedModel(const ServedModel&) = delete;
  ServedModel& operator=(const ServedModel&) = delete;

  const ModelInfo& info() const { return info_; }
  Batcher& batcher() { return *batcher_; }
  ModelStats& stats() { return stats_; }
  const ModelStats& stats() const { return stats_; }

  // One request of a blank image through the batcher, as a client's would go: the version takes
  // traffic only once this answered with finite outputs of the right size. Throws InputError naming
  // what went wrong (engine error, non-finite output, no answer within timeout_s).
  void warm_up(double timeout_s);

 private:
  ModelInfo info_;
  ModelStats stats_;
  std::unique_ptr<Batcher> batcher_;
};

}  // namespace moe::serve
