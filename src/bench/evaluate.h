// Accuracy and timing of a Classifier over a dataset: the work `eval` and `bench` measure.
#pragma once
#include <cstdint>
#include <vector>

#include "model/classifier.h"
#include "data/dataset.h"

namespace moe {

struct EvalResult {
  int64_t images = 0;      // images classified (n * passes)
  int64_t correct = 0;     // over all passes
  double seconds = 0;      // wall time of the timed region
  std::vector<double> batch_seconds;  // per-batch latency, when requested

  double accuracy() const { return images ? double(correct) / double(images) : 0.0; }
  double images_per_second() const { return seconds > 0 ? images / seconds : 0.0; }
};

// Runs `passes` passes over the pre-loaded images in batches of `batch` (the last partial batch at
// its own size). The timed region covers only classify() calls and the argmax, not data loading.
EvalResult evaluate(Classifier& model, const std::vector<float>& images, const std::vector<uint8_t>& labels,
                    int64_t batch, int64_t passes, bool record_batches = false);
// The same with the images as bytes [n, 784] (Classifier::classify_u8).
EvalResult evaluate(Classifier& model, const std::vector<uint8_t>& images, const std::vector<uint8_t>& labels,
                    int64_t batch, int64_t passes, bool record_batches = false);

// The same work split over several engines, one thread each: batch i goes to engine i % size.
// With one engine it runs on the calling thread. Per-batch latencies are recorded when asked.
EvalResult evaluate_parallel(const std::vector<Classifier*>& engines, const std::vector<float>& images,
                             const std::vector<uint8_t>& labels, int64_t batch, int64_t passes, bool record_batches);
EvalResult evaluate_parallel(const std::vector<Classifier*>& engines, const std::vector<uint8_t>& images,
                             const std::vector<uint8_t>& labels, int64_t batch, int64_t passes, bool record_batches);

// Index of the largest of n values.
int64_t argmax(const float* v, int64_t n);

}  // namespace moe
