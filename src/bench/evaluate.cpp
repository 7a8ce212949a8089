#include "bench/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "base/errors.h"

namespace moe {

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

namespace {

void classify_any(Classifier& m, const float* x, int64_t n, float* logits) { m.classify(x, n, logits, nullptr); }
void classify_any(Classifier& m, const uint8_t* x, int64_t n, float* logits) { m.classify_u8(x, n, logits, nullptr); }

// Runs batches stream, stream + n_streams, ... of every pass on `model`.
template <class X>
EvalResult run_stream(Classifier& model, const std::vector<X>& images, const std::vector<uint8_t>& labels,
                      int64_t batch, int64_t passes, bool record_batches, int64_t stream, int64_t n_streams) {
  const int64_t n = int64_t(labels.size());
  const int64_t n_pixels = n ? int64_t(images.size()) / n : 0;
  const int64_t n_classes = model.n_classes();
  std::vector<float> logits(size_t(std::min(batch, std::max<int64_t>(n, 1)) * n_classes));
  EvalResult r;
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (int64_t pass = 0; pass < passes; ++pass) {
    for (int64_t i = stream * batch; i < n; i += batch * n_streams) {
      const int64_t b = std::min(batch, n - i);
      const auto tb = record_batches ? clock::now() : clock::time_point{};
      classify_any(model, images.data() + i * n_pixels, b, logits.data());
      for (int64_t j = 0; j < b; ++j) r.correct += argmax(logits.data() + j * n_classes, n_classes) == labels[i + j];
      if (record_batches) r.batch_seconds.push_back(std::chrono::duration<double>(clock::now() - tb).count());
    }
  }
  r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.images = n * passes;
  return r;
}

template <class X>
EvalResult evaluate_any(const std::vector<Classifier*>& engines, const std::vector<X>& images,
                        const std::vector<uint8_t>& labels, int64_t batch, int64_t passes, bool record_batches) {
  if (batch <= 0) throw InputError("--batch must be > 0, got " + std::to_string(batch));
  if (passes <= 0) throw InputError("--passes must be > 0, got " + std::to_string(passes));
  if (labels.empty()) throw InputError("no images to evaluate (the split is empty)");
  const int64_t n_streams = int64_t(engines.size());
  if (n_streams == 1) return run_stream(*engines[0], images, labels, batch, passes, record_batches, 0, 1);
  std::vector<EvalResult> parts(engines.size());
  std::vector<std::exception_ptr> errors(engines.size());
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int64_t s = 0; s < n_streams; ++s)
    threads.emplace_back([&, s] {
      try {
        parts[s] = run_stream(*engines[s], images, labels, batch, passes, record_batches, s, n_streams);
      } catch (...) {
        errors[s] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  EvalResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.images = int64_t(labels.size()) * passes;
  for (auto& p : parts) {
    r.correct += p.correct;
    r.batch_seconds.insert(r.batch_seconds.end(), p.batch_seconds.begin(), p.batch_seconds.end());
  }
  return r;
}

}  // namespace

EvalResult evaluate(Classifier& model, const std::vector<float>& images, const std::vector<uint8_t>& labels,
                    int64_t batch, int64_t passes, bool record_batches) {
  return evaluate_any({&model}, images, labels, batch, passes, record_batches);
}

EvalResult evaluate(Classifier& model, const std::vector<uint8_t>& images, const std::vector<uint8_t>& labels,
                    int64_t batch, int64_t passes, bool record_batches) {
  return evaluate_any({&model}, images, labels, batch, passes, record_batches);
}

EvalResult evaluate_parallel(const std::vector<Classifier*>& engines, const std::vector<float>& images,
                             const std::vector<uint8_t>& labels, int64_t batch, int64_t passes, bool record_batches) {
  return evaluate_any(engines, images, labels, batch, passes, record_batches);
}

EvalResult evaluate_parallel(const std::vector<Classifier*>& engines, const std::vector<uint8_t>& images,
                             const std::vector<uint8_t>& labels, int64_t batch, int64_t passes, bool record_batches) {
  return evaluate_any(engines, images, labels, batch, passes, record_batches);
}

}  // namespace moe
