// The AVX-512 path: 16 floats per vector. This file alone is compiled with -mavx512f (see
// CMakeLists.txt); native_kernel.cpp calls it only on a CPU that has AVX-512F.
#include "native/kernel_paths.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "native/vec_avx512.h"
#include "native/kernel_impl.h"

namespace moe::native_paths {

void forward_avx512(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Avx512>(m, images, n, logits, gate_probs, dense);
}

void forward_avx512(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  forward_rows<Avx512>(m, images, n, logits, gate_probs, dense);
}

}  // namespace moe::native_paths
#endif
