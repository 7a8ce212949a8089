// The weights of the AVX2 integer embedding of byte input (kernel_int16.h): the byte-input embedding
// and gate weights (already divided by 255) quantized per output column to int16, the rows of each
// pair of adjacent pixels interleaved, as vpmaddwd reads them (one multiply-add of a pixel pair).
#pragma once
#include <cstdint>
#include <vector>

namespace moe {

struct PairQuantizedEmbed {
  std::vector<int16_t> w;    // [I/2][cols][2]: pixel 2i's weight for column c, then pixel 2i+1's
  std::vector<float> scale;  // [cols] 1 / s_col: what an integer sum is multiplied by
};

// w [I, cols], I even. Per column c, s_c = 32767 / max_p |w[p, c]| (a zero column: 1) and
// w_q = round(w * s_c): 16 bits of each column's range, as the AVX-512 integer kernels keep.
PairQuantizedEmbed quantize_pairs16(const float* w, int64_t I, int64_t cols);

}  // namespace moe
