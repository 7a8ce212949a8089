#include "native_emulated.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "native/kernel_paths.h"
#include "native/vec_scalar.h"
#include "native/kernel_impl.h"
#include "native/kernel_int8.h"

namespace moe::native_paths {
namespace {

// VPDPBUSD on 16 int32 lanes: lane i += sum over its 4 bytes k of unsigned x[4i+k] * signed w[4i+k]
// (the non-saturating form: the sum wraps, as the instruction's does).
struct EmuVnniOps {
  struct V {
    uint8_t b[64];
  };
  static constexpr int kRegs = 32;  // what the real path's block size is derived from
  static V zero() { return V{}; }
  static V load(const int8_t* p) {
    V v;
    std::memcpy(v.b, p, 64);
    return v;
  }
  static V broadcast4(const uint8_t* p) {
    V v;
    for (int i = 0; i < 16; ++i) std::memcpy(v.b + 4 * i, p, 4);
    return v;
  }
  static V dpbusd(V acc, V x, V w) {
    for (int i = 0; i < 16; ++i) {
      uint32_t a;
      std::memcpy(&a, acc.b + 4 * i, 4);
      for (int k = 0; k < 4; ++k) a += uint32_t(int32_t(x.b[4 * i + k]) * int32_t(int8_t(w.b[4 * i + k])));
      std::memcpy(acc.b + 4 * i, &a, 4);
    }
    return acc;
  }
  static void store(int32_t* p, V v) { std::memcpy(p, v.b, 64); }
};

// Eight tile registers of at most 16 rows x 64 bytes, shaped by the last LDTILECFG (per thread, as
// the tile state is).
struct EmuAmxOps {
  struct State {
    bool configured = false;
    TileConfig config;
    uint8_t tile[8][16][64];
  };
  static State& state() {
    static thread_local State s;
    return s;
  }
  static void fault(const std::string& what) { throw std::logic_error("emulated AMX: " + what); }
  static void check(int t) {
    const State& s = state();
    if (!s.configured) fault("tile instruction without a tile configuration (LDTILECFG) in force");
    if (s.config.rows[t] == 0 || s.config.colsb[t] == 0 || s.config.rows[t] > 16 || s.config.colsb[t] > 64)
      fault("tile " + std::to_string(t) + " is not configured");
  }
  static void configure(const TileConfig& c) {
    if (c.palette != 1) fault("palette " + std::to_string(c.palette));
    State& s = state();
    s.config = c;
    s.configured = true;
    std::memset(s.tile, 0, sizeof s.tile);  // LDTILECFG zeroes the tile data
  }
  template <int t>
  static void zero() {
    check(t);
    std::memset(state().tile[t], 0, sizeof state().tile[t]);
  }
  template <int t>
  static void load(const void* p, int64_t stride) {
    check(t);
    State& s = state();
    for (int r = 0; r < s.config.rows[t]; ++r)
      std::memcpy(s.tile[t][r], static_cast<const uint8_t*>(p) + r * stride, s.config.colsb[t]);
  }
  // C[m][n] += sum over k < K/4 of sum over i < 4 of unsigned A[m][4k+i] * signed B[k][4n+i], with
  // M = rows of A and C, K = bytes per row of A = 4 x rows of B, N = bytes per row of B and C / 4.
  template <int c, int a, int b>
  static void dpbusd() {
    check(c), check(a), check(b);
    State& s = state();
    const TileConfig& g = s.config;
    const int M = g.rows[c], N = g.colsb[c] / 4, K = g.colsb[a];
    if (g.rows[a] != M || g.rows[b] * 4 != K || g.colsb[b] != g.colsb[c] || K % 4 != 0)
      fault("TDPBUSD operand shapes do not match");
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        uint32_t acc;
        std::memcpy(&acc, &s.tile[c][m][4 * n], 4);
        for (int k = 0; k < K / 4; ++k)
          for (int i = 0; i < 4; ++i)
            acc += uint32_t(int32_t(s.tile[a][m][4 * k + i]) * int32_t(int8_t(s.tile[b][k][4 * n + i])));
        std::memcpy(&s.tile[c][m][4 * n], &acc, 4);
      }
  }
  template <int t>
  static void store(void* p, int64_t stride) {
    check(t);
    State& s = state();
    for (int r = 0; r < s.config.rows[t]; ++r)
      std::memcpy(static_cast<uint8_t*>(p) + r * stride, s.tile[t][r], s.config.colsb[t]);
  }
  static void release() { state().configured = false; }
};

}  // namespace
}  // namespace moe::native_paths

namespace moe::test {

void forward_vnni_emulated(const PackedModel& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  native_paths::forward_vnni_rows<native_paths::EmuVnniOps, native_paths::Scalar>(native_paths::view_of(m), images, n,
                                                                                 logits, gate_probs);
}

void forward_amx_emulated(const PackedModel& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  native_paths::forward_amx_rows<native_paths::EmuAmxOps, native_paths::Scalar>(native_paths::view_of(m), images, n,
                                                                               logits, gate_probs);
}

}  // namespace moe::test
