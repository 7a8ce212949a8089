// The AMX-INT8 integer embedding of byte input (kernel_int8.h) with the rest of the pass on the
// AVX-512 path. This file alone is compiled with -mamx-tile -mamx-int8 and the AVX-512 flags (see
// CMakeLists.txt); native_kernel.cpp calls it only when int8_support() reports AMX, i.e. after Linux
// granted this process the tile state.
#include "native/kernel_paths.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "native/vec_avx512.h"
#include "native/kernel_impl.h"
#include "native/kernel_int8.h"

namespace moe::native_paths {
namespace {

// GCC's tile intrinsics are macros that paste their register number into the instruction's text,
// so each register the algorithm names is spelled out as a literal here.
#define MOE_TILE_EACH(op) \
  op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7)

struct AmxOps {
  static void configure(const TileConfig& c) { _tile_loadconfig(&c); }
  template <int t>
  static void zero() {
#define MOE_ZERO(n) if constexpr (t == n) _tile_zero(n);
    MOE_TILE_EACH(MOE_ZERO)
#undef MOE_ZERO
  }
  template <int t>
  static void load(const void* p, int64_t stride) {
#define MOE_LOAD(n) if constexpr (t == n) _tile_loadd(n, p, stride);
    MOE_TILE_EACH(MOE_LOAD)
#undef MOE_LOAD
  }
  template <int t>
  static void store(void* p, int64_t stride) {
#define MOE_STORE(n) if constexpr (t == n) _tile_stored(n, p, stride);
    MOE_TILE_EACH(MOE_STORE)
#undef MOE_STORE
  }
  // The four products kernel_int8.h forms: hi and lo, of the 64-pixel tiles and of the tail.
  template <int c, int a, int b>
  static void dpbusd() {
    static_assert((c == kCHi && a == kA && b == kBHi) || (c == kCLo && a == kA && b == kBLo) ||
                      (c == kCHi && a == kATail && b == kBHiTail) || (c == kCLo && a == kATail && b == kBLoTail),
                  "a tile product kernel_amx.cpp does not spell out");
    if constexpr (b == kBHi) _tile_dpbusd(0, 2, 3);
    if constexpr (b == kBLo) _tile_dpbusd(1, 2, 4);
    if constexpr (b == kBHiTail) _tile_dpbusd(0, 5, 6);
    if constexpr (b == kBLoTail) _tile_dpbusd(1, 5, 7);
  }
  static void release() { _tile_release(); }
};
#undef MOE_TILE_EACH

static_assert(kCHi == 0 && kCLo == 1 && kA == 2 && kBHi == 3 && kBLo == 4 && kATail == 5 && kBHiTail == 6 && kBLoTail == 7,
              "the literals of AmxOps::dpbusd");

}  // namespace

void forward_amx(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  forward_amx_rows<AmxOps, Avx512>(m, images, n, logits, gate_probs);
}

}  // namespace moe::native_paths
#endif
