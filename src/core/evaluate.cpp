#include "core/evaluate.h"

#include <algorithm>
#include <chrono>

#include "core/errors.h"

namespace moe {

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

EvalResult evaluate(Classifier& model, const std::vector<float>& images, const std::vector<uint8_t>& labels,
                    int64_t batch, int64_t passes, bool record_batches) {
  if (batch <= 0) throw InputError("--batch must be > 0, got " + std::to_string(batch));
  if (passes <= 0) throw InputError("--passes must be > 0, got " + std::to_string(passes));
  const int64_t n = int64_t(labels.size());
  const int64_t n_pixels = n ? int64_t(images.size()) / n : 0;
  const int64_t n_classes = model.n_classes();
  std::vector<float> logits(size_t(std::min(batch, std::max<int64_t>(n, 1)) * n_classes));
  EvalResult r;
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (int64_t pass = 0; pass < passes; ++pass) {
    for (int64_t i = 0; i < n; i += batch) {
      const int64_t b = std::min(batch, n - i);
      const auto tb = record_batches ? clock::now() : clock::time_point{};
      model.classify(images.data() + i * n_pixels, b, logits.data(), nullptr);
      for (int64_t j = 0; j < b; ++j) r.correct += argmax(logits.data() + j * n_classes, n_classes) == labels[i + j];
      if (record_batches) r.batch_seconds.push_back(std::chrono::duration<double>(clock::now() - tb).count());
    }
  }
  r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.images = n * passes;
  return r;
}

}  // namespace moe
