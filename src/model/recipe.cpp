#include "model/recipe.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <random>

#include "base/errors.h"

namespace moe {

double lr_at(LrSchedule schedule, double lr, int64_t step, int64_t n_steps, int64_t n_warmup) {
  const double pi = 3.14159265358979323846;
  if (schedule == LrSchedule::onecycle) {
    const double rise = n_warmup > 0 ? double(n_warmup) : 0.3 * double(n_steps);
    const double start = lr / 25, end = start / 1e4;
    if (step < rise) return start + (lr - start) * 0.5 * (1 - std::cos(pi * double(step) / rise));
    const double t = std::min(1.0, (double(step) - rise) / std::max(1.0, double(n_steps - 1) - rise));
    return end + (lr - end) * 0.5 * (1 + std::cos(pi * t));
  }
  if (step < n_warmup) return lr * double(step + 1) / double(n_warmup);
  if (schedule == LrSchedule::constant) return lr;
  const double t = double(step - n_warmup) / std::max<double>(1.0, double(n_steps - n_warmup));
  return lr * 0.5 * (1 + std::cos(pi * std::min(1.0, t)));
}

void shift_images(float* images, int64_t n, int64_t max_shift, uint64_t seed) {
  if (max_shift <= 0) return;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(-int(max_shift), int(max_shift));
  float src[784];
  for (int64_t i = 0; i < n; ++i) {
    float* img = images + i * 784;
    const int dx = d(rng), dy = d(rng);
    if (dx == 0 && dy == 0) continue;
    std::memcpy(src, img, sizeof src);
    std::memset(img, 0, sizeof src);
    // Output row r, column c takes input (r - dy, c - dx) where that lies inside the image.
    const int c0 = std::max(0, dx), c1 = std::min(28, 28 + dx);
    for (int r = std::max(0, dy); r < std::min(28, 28 + dy); ++r)
      std::memcpy(img + r * 28 + c0, src + (r - dy) * 28 + (c0 - dx), sizeof(float) * size_t(c1 - c0));
  }
}

int64_t parse_augment(const std::string& s) {
  if (s == "none") return 0;
  const std::string prefix = "shift:";
  if (s.rfind(prefix, 0) == 0 && s.size() > prefix.size() && s.size() <= prefix.size() + 1 &&
      std::isdigit(static_cast<unsigned char>(s.back()))) {
    const int64_t n = s.back() - '0';
    if (n >= 1 && n <= 8) return n;
  }
  throw InputError("--augment: expected none or shift:N with N in 1..8 (pixels), got '" + s + "'");
}

std::string augment_string(int64_t max_shift) { return max_shift > 0 ? "shift:" + std::to_string(max_shift) : "none"; }

}  // namespace moe
