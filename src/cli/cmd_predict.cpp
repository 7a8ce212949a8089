// `moe-mnist predict`
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/backends.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "data/dataset.h"
#include "base/errors.h"
#include "bench/evaluate.h"
#include "data/image.h"
#include "model/routing.h"

namespace moe {

void add_predict_command(CLI::App& app) {
  struct Args {
    std::string model = "runs/mnist/model.fp32.onnx", image, dataset = "mnist", data_dir, split = "test";
    int64_t index = -1;
    bool invert = false;
    BackendOptions backend;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("predict", "Classify one image (PNG/JPEG/PGM/PPM file, or a dataset index) and show the routing");
  cmd->add_option("--model", a->model, "An exported .onnx file, or for --backend torch the checkpoint directory")->capture_default_str();
  auto* image = cmd->add_option("--image", a->image, "Image file of any size; white digit on black like MNIST");
  auto* index = cmd->add_option("--index", a->index, "Index into the dataset split instead of a file");
  image->excludes(index);
  cmd->add_flag("--invert", a->invert, "The image is a dark digit on a light background");
  add_split_option(cmd, a->split, "Split for --index: train or test");
  add_data_options(cmd, a->dataset, a->data_dir);
  add_backend_options(cmd, a->backend);
  cmd->callback([a, image, index] {
    if (!*image && !*index) throw InputError("predict: give --image FILE or --index I");
    std::vector<float> x;
    int label = -1;
    if (*image) {
      const DigitInput digit = prepare_digit(load_grey_image(a->image), a->invert, a->image, "--invert");
      x = digit.pixels;
      if (!digit.warning.empty()) std::fprintf(stderr, "moe-mnist: warning: %s\n", digit.warning.c_str());
    } else {
      const Dataset d = load_dataset(a->dataset, resolve_data_dir(a->dataset, a->data_dir), a->split);
      if (a->index < 0 || a->index >= d.n)
        throw InputError("--index " + std::to_string(a->index) + " is out of range: the " + a->split + " split has " +
                         std::to_string(d.n) + " images (0.." + std::to_string(d.n - 1) + ")");
      for (int64_t i = 0; i < 784; ++i) x.push_back(d.pixels[size_t(a->index * 784 + i)] / 255.0f);
      if (std::all_of(x.begin(), x.end(), [](float v) { return v == 0.0f; }))
        throw InputError("--index " + std::to_string(a->index) + ": image " + std::to_string(a->index) + " of the " + a->split +
                         " split is blank (every pixel 0): nothing to classify (is the IDX file damaged?)");
      label = d.labels[size_t(a->index)];
    }
    auto model = open_backend(a->model, a->backend);
    if (!*image) warn_if_mismatched(*model, a->model, a->dataset);
    const int64_t C = model->n_classes(), E = model->n_experts();
    std::vector<float> logits(static_cast<size_t>(C)), probs(static_cast<size_t>(E));
    model->classify(x.data(), 1, logits.data(), probs.data());

    std::printf("%s", ascii_art(x.data()).c_str());
    const float mx = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p(static_cast<size_t>(C));
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += p[c] = std::exp(double(logits[c] - mx));
    const int64_t pred = argmax(logits.data(), C);
    std::printf("prediction: %lld (%.1f%%)", (long long)pred, 100.0 * p[pred] / sum);
    if (label >= 0) std::printf("   label: %d %s", label, label == pred ? "(correct)" : "(wrong)");
    std::printf("\nprobabilities:");
    for (int64_t c = 0; c < C; ++c) std::printf(" %lld:%.3f", (long long)c, p[c] / sum);
    const int64_t k = std::clamp<int64_t>(model->top_k(), 1, E);
    std::vector<int64_t> chosen(static_cast<size_t>(k));
    std::vector<float> weights(static_cast<size_t>(k));
    route(probs.data(), E, k, chosen.data(), weights.data());
    std::printf("\nexperts chosen (gate probability -> weight):");
    for (int64_t j = 0; j < k; ++j) std::printf(" #%lld %.3f -> %.3f", (long long)chosen[j], probs[chosen[j]], weights[j]);
    std::printf("\n");
  });
}

}  // namespace moe
