#include "native/quantize_int8.h"

#include <cmath>

namespace moe {

QuantizedEmbed quantize_embed(const float* w, int64_t I, int64_t ld, int64_t cols, const float* bias) {
  QuantizedEmbed q;
  q.GQ = (cols + 15) / 16 * 16;
  q.w.assign(size_t(I * 2 * q.GQ), 0);
  q.scale.assign(size_t(q.GQ), 0.f);
  q.bias.assign(size_t(q.GQ), 0.f);
  for (int64_t c = 0; c < cols; ++c) {
    double mx = 0;
    for (int64_t p = 0; p < I; ++p) mx = std::fmax(mx, std::fabs(double(w[p * ld + c])));
    // The largest scale whose w_q still splits into two int8 (see the header).
    const double s = mx > 0 ? 32639.0 / mx : 1.0;
    q.scale[size_t(c)] = float(1.0 / s);
    q.bias[size_t(c)] = bias[c];
    for (int64_t p = 0; p < I; ++p) {
      const int32_t wq = int32_t(std::lround(double(w[p * ld + c]) * s));
      const int32_t lo = int8_t(uint8_t(wq & 0xff));
      const int32_t hi = (wq - lo) / 256;
      const int64_t at = (p / 4) * 2 * q.GQ * 4 + c * 4 + p % 4;
      q.w[size_t(at)] = int8_t(hi);
      q.w[size_t(at + q.GQ * 4)] = int8_t(lo);
    }
  }
  return q;
}

}  // namespace moe
