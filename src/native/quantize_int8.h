// The weights of the integer embedding of byte input (kernel_int8.h): the byte-input embedding and
// gate weights (already divided by 255) quantized per output column to 16 bits and split into two
// int8 halves, in the layout dpbusd and AMX B tiles read.
#pragma once
#include <cstdint>
#include <vector>

namespace moe {

struct QuantizedEmbed {
  int64_t GQ = 0;              // columns, rounded up to 16
  std::vector<int8_t> w;       // [I/4][hi, lo][GQ][4]
  std::vector<float> scale;    // [GQ] 1 / s_col: what an integer sum is multiplied by
  std::vector<float> bias;     // [GQ]
};

// w [I, ld] (columns 0..cols used), bias [cols]; I a multiple of 4. Per column c, s_c = 32639 /
// max_p |w[p, c]| (a zero column: 1), w_q = round(w * s_c), so |w_q| <= 32767 - 128 and
// hi = (w_q - lo) / 256 with lo = int8(w_q & 0xff) stays within int8.
QuantizedEmbed quantize_embed(const float* w, int64_t I, int64_t ld, int64_t cols, const float* bias);

}  // namespace moe
