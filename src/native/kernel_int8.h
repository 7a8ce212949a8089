// The integer embedding of byte input, written once over the few instructions it uses, and included
// (after kernel_impl.h) by the files that supply them: kernel_vnni.cpp and kernel_amx.cpp with the
// real intrinsics, and the tests' emulation (tests/native_emulated.cpp) with plain C++ that does what
// the instructions do, so the algorithm that runs in CI here is the very source the real paths run.
// Internal linkage throughout, as kernel_impl.h explains.
//
// The formulation (quantize_int8.h): each column's weights are w_q = round(w * s_col), 16 bits,
// split as w_q = 256 * hi + lo with hi, lo int8. Then sum_p x_p * w_q = 256 * sum x_p * hi +
// sum x_p * lo, both sums exact in int32 by `dpbusd` (u8 x s8 products, 4 pixels per 32-bit lane),
// so the image's bytes are used as they are: no float copy, no widening. The only error is the
// 16-bit rounding of the weights.
//
// The weights are laid out [I/4 groups][hi, lo][GQ columns][4 pixels] int8: for one group, 16
// columns x 4 pixels are 64 bytes, one zmm register or one row of an AMX B tile (VNNI layout).
//
// VnniOps provide: V (16 int32 lanes), kRegs, zero(), load(const int8_t*) (64 bytes),
// broadcast4(const uint8_t*) (4 bytes into every lane), dpbusd(acc, x, w), store(int32_t*, V).
// AmxOps provide: configure(const TileConfig&), zero<t>(), load<t>(ptr, stride), dpbusd<c, a, b>(),
// store<t>(ptr, stride), release(), with the semantics of LDTILECFG, TILEZERO, TILELOADD, TDPBUSD,
// TILESTORED and TILERELEASE.
#pragma once
#include <cstdint>
#include <cstring>

#include "model/model_config.h"
#include "native/kernel_paths.h"

namespace moe::native_paths {
namespace {

constexpr int64_t kGroups = kInputSize / 4;  // 196 groups of 4 pixels
constexpr int64_t kMaxGQ = 64;               // at most 4 blocks of 16 columns

// [h | gate logits] of one image from its exact integer sums: (256 * hi + lo) / s_col + bias, the
// combination in 64 bits (each sum alone fits int32: |sum| <= 784 * 255 * 128).
inline void dequantize(const PackedView& m, const int32_t* hi, const int32_t* lo, float* eg) {
  for (int64_t c = 0; c < m.GQ; ++c)
    eg[c] = float(int64_t(hi[c]) * 256 + lo[c]) * m.embed_gate_qscale[c] + m.embed_gate_qbias[c];
}

// The `rows` image rows a tile reads, starting at `x`, of which only `n` exist: `x` itself when the
// tile is full, else a copy of the `n` rows into `scratch` (rows x kInputSize bytes) followed by
// zero rows, so no tile reads past the caller's buffer.
inline const uint8_t* tile_rows(const uint8_t* x, int64_t n, int64_t rows, uint8_t* scratch) {
  if (n == rows) return x;
  std::memcpy(scratch, x, size_t(n * kInputSize));
  std::memset(scratch + n * kInputSize, 0, size_t((rows - n) * kInputSize));
  return scratch;
}

// ---- AVX-512 VNNI: a tile of B images, 2 x NV accumulators each (hi and lo per 16 columns) ----

// Images per tile: the largest power of two up to 16 whose accumulators, the 2 x NV weight vectors
// and one broadcast fit the registers (NV = 2: 4 images, 21 of 32 registers).
template <class Ops, int NV>
constexpr int vnni_block() {
  int b = 16;
  while (b > 1 && b * 2 * NV + 2 * NV + 1 > Ops::kRegs) b /= 2;
  return b;
}

// Per group of 4 pixels: the 2 x NV weight vectors loaded once, then per image one 32-bit broadcast
// of its 4 bytes and 2 x NV independent dpbusd.
template <class Ops, int NV, int B>
inline void vnni_tile(const PackedView& m, const uint8_t* __restrict x, int32_t* __restrict hi, int32_t* __restrict lo) {
  using V = typename Ops::V;
  constexpr int J = 2 * NV;  // j < NV: hi of column block j; j >= NV: lo of block j - NV
  constexpr int64_t GQ = NV * 16;
  V acc[B][J];
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < J; ++j) acc[b][j] = Ops::zero();
  const int8_t* w = m.embed_gate_q;
  for (int64_t g = 0; g < kGroups; ++g, w += 2 * GQ * 4) {
    V wv[J];
    for (int j = 0; j < J; ++j) wv[j] = Ops::load(w + j * 64);
    for (int b = 0; b < B; ++b) {
      const V xb = Ops::broadcast4(x + b * kInputSize + 4 * g);
      for (int j = 0; j < J; ++j) acc[b][j] = Ops::dpbusd(acc[b][j], xb, wv[j]);
    }
  }
  for (int b = 0; b < B; ++b)
    for (int v = 0; v < NV; ++v) {
      Ops::store(hi + b * GQ + v * 16, acc[b][v]);
      Ops::store(lo + b * GQ + v * 16, acc[b][NV + v]);
    }
}

// Tiles of B images; a partial last tile goes through a zero-padded copy (never reading past the
// caller's rows). The sums are exact, so an image's result does not depend on its tile.
template <class Ops, class T, int NV>
inline void forward_vnni_fixed(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  constexpr int B = vnni_block<Ops, NV>();
  constexpr int64_t GQ = NV * 16;
  alignas(64) uint8_t xs[B * kInputSize];
  alignas(64) int32_t hi[B * GQ], lo[B * GQ];
  alignas(64) float eg[B * GQ];
  for (int64_t r0 = 0; r0 < n; r0 += B) {
    const int64_t nb = n - r0 < B ? n - r0 : B;
    const uint8_t* xt = tile_rows(images + r0 * kInputSize, nb, B, xs);
    vnni_tile<Ops, NV, B>(m, xt, hi, lo);
    for (int64_t b = 0; b < nb; ++b) dequantize(m, hi + b * GQ, lo + b * GQ, eg + b * GQ);
    finish_rows<T>(m, eg, GQ, nb, r0, logits, gate_probs);
  }
}

template <class Ops, class T>
inline void forward_vnni_rows(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  switch (m.GQ / 16) {
    case 1: forward_vnni_fixed<Ops, T, 1>(m, images, n, logits, gate_probs); return;
    case 2: forward_vnni_fixed<Ops, T, 2>(m, images, n, logits, gate_probs); return;
    case 3: forward_vnni_fixed<Ops, T, 3>(m, images, n, logits, gate_probs); return;
    case 4: forward_vnni_fixed<Ops, T, 4>(m, images, n, logits, gate_probs); return;
  }
}

// ---- AMX-INT8: tiles of 16 images x 64 bytes straight from the input ----

// The 64-byte operand of LDTILECFG (palette 1): bytes per row and rows of each tile register.
struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

// Tile registers: C (16 images x 16 columns int32) for hi and lo; A (16 images x 64 pixels) and the
// B tiles (16 groups x 16 columns x 4) of hi and lo; and for the last 784 - 12 x 64 = 16 pixels an
// A of 16 x 16 bytes and B tiles of 4 groups.
enum : int { kCHi = 0, kCLo = 1, kA = 2, kBHi = 3, kBLo = 4, kATail = 5, kBHiTail = 6, kBLoTail = 7 };
constexpr int64_t kAmxRows = 16;                          // images per tile
constexpr int64_t kChunk = 64;                            // pixels per A tile
constexpr int64_t kChunks = kInputSize / kChunk;          // 12
constexpr int64_t kTail = kInputSize - kChunks * kChunk;  // 16
static_assert(kTail > 0 && kTail % 4 == 0, "the tail tile's shape");

inline TileConfig amx_config() {
  TileConfig c;
  auto set = [&](int t, int rows, int colsb) { c.rows[t] = uint8_t(rows), c.colsb[t] = uint16_t(colsb); };
  set(kCHi, kAmxRows, 64), set(kCLo, kAmxRows, 64);
  set(kA, kAmxRows, kChunk), set(kBHi, kChunk / 4, 64), set(kBLo, kChunk / 4, 64);
  set(kATail, kAmxRows, kTail), set(kBHiTail, kTail / 4, 64), set(kBLoTail, kTail / 4, 64);
  return c;
}

// Per 16 images and 16 columns: 13 A tiles (12 x 64 pixels, then the 16-pixel tail) loaded with the
// image stride, each times the B tiles of hi and lo. A partial last tile of images goes through a
// zero-padded copy, so no tile row reads past the caller's buffer.
template <class Amx, class T>
inline void forward_amx_rows(const PackedView& m, const uint8_t* images, int64_t n, float* logits, float* gate_probs) {
  const int64_t GQ = m.GQ, pitch = 2 * GQ * 4;  // bytes per group of the weights
  alignas(64) uint8_t xs[kAmxRows * kInputSize];
  alignas(64) int32_t hi[kAmxRows * kMaxGQ], lo[kAmxRows * kMaxGQ];
  alignas(64) float eg[kAmxRows * kMaxGQ];
  const TileConfig config = amx_config();
  Amx::configure(config);
  for (int64_t r0 = 0; r0 < n; r0 += kAmxRows) {
    const int64_t nb = n - r0 < kAmxRows ? n - r0 : kAmxRows;
    const uint8_t* xt = tile_rows(images + r0 * kInputSize, nb, kAmxRows, xs);
    for (int64_t cb = 0; cb < GQ / 16; ++cb) {
      Amx::template zero<kCHi>();
      Amx::template zero<kCLo>();
      const int8_t* w = m.embed_gate_q + cb * 64;
      for (int64_t k = 0; k < kChunks; ++k, w += (kChunk / 4) * pitch) {
        Amx::template load<kA>(xt + k * kChunk, kInputSize);
        Amx::template load<kBHi>(w, pitch);
        Amx::template load<kBLo>(w + GQ * 4, pitch);
        Amx::template dpbusd<kCHi, kA, kBHi>();
        Amx::template dpbusd<kCLo, kA, kBLo>();
      }
      Amx::template load<kATail>(xt + kChunks * kChunk, kInputSize);
      Amx::template load<kBHiTail>(w, pitch);
      Amx::template load<kBLoTail>(w + GQ * 4, pitch);
      Amx::template dpbusd<kCHi, kATail, kBHiTail>();
      Amx::template dpbusd<kCLo, kATail, kBLoTail>();
      Amx::template store<kCHi>(hi + cb * 16, GQ * 4);
      Amx::template store<kCLo>(lo + cb * 16, GQ * 4);
    }
    for (int64_t b = 0; b < nb; ++b) dequantize(m, hi + b * GQ, lo + b * GQ, eg + b * GQ);
    finish_rows<T>(m, eg, GQ, nb, r0, logits, gate_probs);
  }
  Amx::release();
}

}  // namespace
}  // namespace moe::native_paths
