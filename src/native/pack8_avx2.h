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
  template <class X>
  static int64_t compress8(const X* x, int32_t base, float* values, int32_t* index) {
    const __m256 v = load8(x);
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    if (mask == 0) return 0;  // background: about half of all 8-pixel groups
    const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPack.lanes[mask]));
    _mm256_storeu_ps(values, _mm256_permutevar8x32_ps(v, perm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(index), _mm256_add_epi32(perm, _mm256_set1_epi32(base)));
    return __builtin_popcount(unsigned(mask));
  }
};

}  // namespace
}  // namespace moe::native_paths
