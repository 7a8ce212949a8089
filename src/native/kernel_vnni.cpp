// The AVX-512 VNNI integer embedding of byte input (kernel_int8.h) with the rest of the pass on the
// AVX-512 path. This file alone is compiled with -mavx512f -mavx512bw -mavx512vnni (see
// CMakeLists.txt); native_kernel.cpp calls it only when int8_support() reports VNNI.
#include "native/kernel_paths.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "native/vec_avx512.h"
#include "native/kernel_impl.h"
#include "native/kernel_int8.h"

namespace moe::native_paths {
namespace {

struct VnniOps {
  using V = __m512i;
  static constexpr int kRegs = 32;
  static V zero() { return _mm512_setzero_si512(); }
  static V load(const int8_t* p) { return _mm512_loadu_si512(p); }
  static V broadcast4(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  static V dpbusd(V acc, V x, V w) { return _mm512_dpbusd_epi32(acc, x, w); }
  static void store(int32_t* p, V v) { _mm512_storeu_si512(p, v); }
};

}  // namespace

void forward_vnni(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  forward_vnni_rows<VnniOps, Avx512>(m, images, n, logits, gate_probs);
}

}  // namespace moe::native_paths
#endif
