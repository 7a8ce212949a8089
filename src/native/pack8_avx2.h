// Packing the non-zero inputs of 8 pixels to the front with AVX2's lane permute: shared by the AVX2
// and AVX-512 kernels (both use 8-lane groups for the packing step). Include only from a file compiled
// with AVX2 enabled (-mavx2 or -mavx512f): it emits those instructions.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace moe::native_paths {
namespace {

// For each 8-bit mask, the lanes whose bit is set, in order, then zeros: the permutation that packs
// the non-zero lanes to the front.
struct PackTable {
  alignas(32) int32_t lanes[256][8];
  constexpr PackTable() : lanes() {
    for (int m = 0; m < 256; ++m) {
      int n = 0;
      for (int i = 0; i < 8; ++i)
        if (m & (1 << i)) lanes[m][n++] = i;
    }
  }
};
constexpr PackTable kPack;

struct Pack8Avx2 {
  // Eight inputs as floats: floats as they are, bytes widened.
  static __m256 load8(const float* x) { return _mm256_loadu_ps(x); }
  static __m256 load8(const uint8_t* x) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x))));
  }
  // Whether any of 32 pixels is not +0 (NaN and -0.0 included): the bits of all of them ORed.
  static bool nonzero32(const float* x) {
    const __m256 any = _mm256_or_ps(_mm256_or_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                                    _mm256_or_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
    return !_mm256_testz_si256(_mm256_castps_si256(any), _mm256_castps_si256(any));
  }
  static bool nonzero32(const uint8_t* x) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    return !_mm256_testz_si256(v, v);
  }
  template <class X>
  static int64_t compress8(const X* x, int32_t base, int32_t stride, float* values, int32_t* offset) {
    const __m256 v = load8(x);
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    // No early out for an all-zero group (about half of them): whether a group is background
    // follows the digit's shape, so that branch was mispredicted often enough to cost more than
    // the two stores it saved; the caller skips whole background runs of 32 (nonzero32) instead,
    // which are mostly the image's top and bottom rows, a pattern the branch predictor learns.
    return pack8(_mm256_castps_si256(v), mask, base, stride, values, offset);
  }
  // The lanes of v (eight 32-bit values) whose `mask` bit is set, packed to the front of `values`,
  // and (base + their lane) * stride to `offset`; 8 values are written to each whatever the count.
  // Returns the count. compress8 packs floats with it, the int16 embedding (kernel_int16.h) pixel pairs.
  static int64_t pack8(__m256i v, int mask, int32_t base, int32_t stride, void* values, int32_t* offset) {
    const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPack.lanes[mask]));
    _mm256_storeu_si256(static_cast<__m256i*>(values), _mm256_permutevar8x32_epi32(v, perm));
    const __m256i lane = _mm256_add_epi32(perm, _mm256_set1_epi32(base));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(offset), _mm256_mullo_epi32(lane, _mm256_set1_epi32(stride)));
    return __builtin_popcount(unsigned(mask));
  }
};

}  // namespace
}  // namespace moe::native_paths
