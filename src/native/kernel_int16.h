// The integer embedding of byte input on AVX2 (Embed::int16), included by kernel_avx2.cpp after
// kernel_impl.h. Per image, the pairs of adjacent pixels (2i, 2i+1) with a non-zero byte are
// compacted (16 pixels at a time, no branch per pair; 32-pixel background runs skipped), then one
// vpmaddwd per 8 output columns multiplies a pair's two bytes by its two rows of int16 weights and
// adds them: exact int32 sums. The weights (quantize_int16.h) are half the bytes of the float rows,
// so twice as many stay in the L1 cache, which is what the float sweep waits on (docs/benchmarks.md).
// Everything after the embedding is the float code (finish_rows). Internal linkage, as kernel_impl.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace moe::native_paths {
namespace {

// Pairs summed in int32 before their total joins the float sum: |32 x 2 x 255 x 32767| < 2^31.
constexpr int64_t kPairsPerFlush = 32;

// [h | gate logits] (NV vectors of 8) of one byte image; `ahead`, the next image, is prefetched.
template <int NV>
inline void embed_int16(const PackedView& m, const uint8_t* __restrict x, const uint8_t* ahead, float* __restrict out) {
  constexpr int64_t kPairs = kInputSize / 2;
  const int64_t row = NV * 8 * 2;  // int16 per pair of weight rows
  alignas(64) int32_t pairs[kPairs + 8];   // the two bytes of a pair as two int16, in one int32
  alignas(64) int32_t offset[kPairs + 8];  // where its weights start in embed_gate_q16
  int64_t nnz = 0;
  for (int64_t p = 0; p < kInputSize; p += 16) {
    if (p % 64 == 0) __builtin_prefetch(ahead + p);
    if (p % 32 == 0 && p + 32 <= kInputSize && !Pack8Avx2::nonzero32(x + p)) {
      p += 16;  // background
      continue;
    }
    const __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + p)));
    const int zero = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, _mm256_setzero_si256())));
    nnz += Pack8Avx2::pack8(v, ~zero & 0xff, int32_t(p / 2), int32_t(row), pairs + nnz, offset + nnz);
  }
  pairs[nnz] = 0, offset[nnz] = 0;  // pads to an even count: a zero pair adds nothing
  const int16_t* W = m.embed_gate_q16;
  __m256 sum[NV];
  for (int v = 0; v < NV; ++v) sum[v] = _mm256_setzero_ps();
  for (int64_t j0 = 0; j0 < nnz; j0 += kPairsPerFlush) {
    const int64_t end = j0 + kPairsPerFlush < nnz ? j0 + kPairsPerFlush : nnz;
    __m256i a[NV], b[NV];  // two sets, so consecutive pairs do not wait on each other's add
    for (int v = 0; v < NV; ++v) a[v] = b[v] = _mm256_setzero_si256();
    for (int64_t j = j0; j < end; j += 2) {
      const __m256i x0 = _mm256_set1_epi32(pairs[j]), x1 = _mm256_set1_epi32(pairs[j + 1]);
      const int16_t* w0 = W + offset[j];
      const int16_t* w1 = W + offset[j + 1];
      for (int v = 0; v < NV; ++v)
        a[v] = _mm256_add_epi32(a[v], _mm256_madd_epi16(x0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + v * 16))));
      for (int v = 0; v < NV; ++v)
        b[v] = _mm256_add_epi32(b[v], _mm256_madd_epi16(x1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + v * 16))));
    }
    for (int v = 0; v < NV; ++v) sum[v] = _mm256_add_ps(sum[v], _mm256_cvtepi32_ps(_mm256_add_epi32(a[v], b[v])));
  }
  for (int v = 0; v < NV; ++v)
    _mm256_storeu_ps(out + v * 8, _mm256_fmadd_ps(sum[v], _mm256_loadu_ps(m.embed_gate_q16_scale + v * 8), _mm256_loadu_ps(m.embed_gate_b + v * 8)));
}

template <int NV>
inline void forward_int16_fixed(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  constexpr int64_t GP = NV * 8;
  alignas(64) float eg[kBlock * GP];
  for (int64_t r0 = 0; r0 < n; r0 += kBlock) {
    const int64_t nb = n - r0 < kBlock ? n - r0 : kBlock;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* x = images + (r0 + b) * kInputSize;
      embed_int16<NV>(m, x, r0 + b + 1 < n ? x + kInputSize : x, eg + b * GP);
    }
    finish_rows<Avx2>(m, eg, GP, nb, r0, logits, gate_probs);
  }
}

// Needs m.I == kInputSize and m.GP = 8, 16, 24 or 32 (native_kernel.cpp checks: int16_fits).
inline void forward_int16(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  switch (m.GP / 8) {
    case 1: forward_int16_fixed<1>(m, images, n, logits, gate_probs); return;
    case 2: forward_int16_fixed<2>(m, images, n, logits, gate_probs); return;
    case 3: forward_int16_fixed<3>(m, images, n, logits, gate_probs); return;
    default: forward_int16_fixed<4>(m, images, n, logits, gate_probs); return;
  }
}

}  // namespace
}  // namespace moe::native_paths
