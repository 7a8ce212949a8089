#include "native/native_classifier.h"

#include <algorithm>
#include <thread>

#include "model/checkpoint.h"
#include "native/spin_pool.h"

namespace moe {

namespace {

// Rows per chunk of a threaded call: one image takes ~1 us, so a chunk is worth handing out and
// batch 64 still splits in four.
constexpr int64_t kRowsPerChunk = 16;

class NativeClassifier final : public Classifier {
 public:
  NativeClassifier(const FoldedModel& f, const NativeOptions& o, std::string dataset, std::string hash)
      : model_(pack_model(f, o.isa, o.embed)),
        pool_(o.threads > 0 ? o.threads : std::max(1, int(std::thread::hardware_concurrency()))),
        dataset_(std::move(dataset)),
        hash_(std::move(hash)) {}

  void classify(const float* images, int64_t n, float* logits, float* gate_probs) override {
    run(images, n, logits, gate_probs);
  }
  void classify_u8(const uint8_t* images, int64_t n, float* logits, float* gate_probs) override {
    run(images, n, logits, gate_probs);
  }
  bool reads_uint8() const override { return true; }

  int64_t n_classes() const override { return model_.C; }
  int64_t n_experts() const override { return model_.E; }
  int64_t top_k() const override { return model_.K; }
  std::string backend() const override { return "native"; }
  std::string precision() const override { return "fp32"; }
  std::string provenance(const std::string& key) const override {
    return key == "dataset" ? dataset_ : key == "weights_hash" ? hash_ : "";
  }

 private:
  template <class X>
  struct Job {
    NativeClassifier* self;
    const X* images;
    int64_t n;
    float *logits, *gate_probs;
    Embed embed;  // chosen for the whole batch
  };

  // The formulation is chosen for the whole batch, so every chunk computes the same way.
  template <class X>
  void run(const X* images, int64_t n, float* logits, float* gate_probs) {
    const Embed embed = choose_embed(model_, n, sizeof(X) == 1);
    if (pool_.n_threads() == 1 || n < 2 * kRowsPerChunk) {
      native_forward(model_, images, n, logits, gate_probs, embed);
      return;
    }
    Job<X> job{this, images, n, logits, gate_probs, embed};
    pool_.run(&run_chunk<X>, &job, (n + kRowsPerChunk - 1) / kRowsPerChunk);
  }

  template <class X>
  static void run_chunk(void* ctx, int64_t chunk) {
    const Job<X>& j = *static_cast<const Job<X>*>(ctx);
    const int64_t begin = chunk * kRowsPerChunk, end = std::min(j.n, begin + kRowsPerChunk);
    const PackedModel& m = j.self->model_;
    native_forward(m, j.images + begin * m.I, end - begin, j.logits + begin * m.C,
                   j.gate_probs ? j.gate_probs + begin * m.E : nullptr, j.embed);
  }

  PackedModel model_;
  SpinPool pool_;
  std::string dataset_, hash_;
};

}  // namespace

std::unique_ptr<Classifier> make_native_classifier(const FoldedModel& model, const NativeOptions& options,
                                                   std::string dataset, std::string hash) {
  return std::make_unique<NativeClassifier>(model, options, std::move(dataset), std::move(hash));
}

std::unique_ptr<Classifier> make_native_classifier(const std::string& checkpoint_dir, const NativeOptions& options) {
  const Checkpoint ck = load_checkpoint(checkpoint_dir);
  return make_native_classifier(fold_model(ck), options, ck.meta.dataset, weights_hash(ck.weights));
}

}  // namespace moe
