#include "native/quantize_int16.h"

#include <cmath>

namespace moe {

PairQuantizedEmbed quantize_pairs16(const float* w, int64_t I, int64_t cols) {
  PairQuantizedEmbed q;
  q.w.assign(size_t(I * cols), 0);
  q.scale.assign(size_t(cols), 0.f);
  for (int64_t c = 0; c < cols; ++c) {
    double mx = 0;
    for (int64_t p = 0; p < I; ++p) mx = std::fmax(mx, std::fabs(double(w[p * cols + c])));
    const double s = mx > 0 ? 32767.0 / mx : 1.0;
    q.scale[size_t(c)] = float(1.0 / s);
    for (int64_t p = 0; p < I; ++p) q.w[size_t((p / 2) * cols * 2 + c * 2 + p % 2)] = int16_t(std::lround(double(w[p * cols + c]) * s));
  }
  return q;
}

}  // namespace moe
