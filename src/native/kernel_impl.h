// The forward pass, written once over a vector type T and included by each kernel_<isa>.cpp after it
// defines T (so each copy is compiled for that file's instruction set). Everything here has internal
// linkage: no inline function compiled for AVX-512 can be picked by the linker for another file, and
// nothing from the standard library's templates is instantiated here for the same reason.
//
// T provides: V, kLanes, kRegs (vector registers), zero(), set1(float), load(const float*),
// store(float*, V), add(V, V), fmadd(a, b, c) = a * b + c, and compress8(x, base, values, index) -> n
// for x a float or uint8_t pointer: writes the non-zero values among x[0..8) (NaN included) as floats
// and base + their positions to values[0..n) and index[0..n), and may write anything to
// values[n..8) and index[n..8).
//
// Two formulations of the embedding (the bulk of the work), chosen per call by native_kernel.cpp:
// sparse (per image, over its non-zero pixels: few FMAs, but a dependent chain per image) and dense
// (a tile of B images at once, every pixel, each weight row loaded once for B images and each pixel
// broadcast into FMAs with it: more FMAs, but independent ones, all in registers).
// Input is float [n, I] in [0, 1] or uint8 [n, I] in 0..255; for bytes the embedding weights W
// passed in are already divided by 255, so no float copy of the images is made (the dense tile
// converts its B rows to floats in a scratch buffer on the stack).
#pragma once
#include <cstdint>

#include "model/model_config.h"
#include "native/kernel_paths.h"

namespace moe::native_paths {
namespace {

constexpr int64_t kMaxGP = kMaxEmbSize + kMaxExperts + 16;
constexpr int64_t kMaxDP = kMaxEmbSize + 16;
constexpr int64_t kMaxCP = kMaxClasses + 16;

// One image's [h | gate logits] (GP values) for NV vectors per row of embed_gate_w, kept in registers.
// First the non-zero pixels are compacted with their positions (no branch per pixel), then a loop
// with a known trip count runs over them; S accumulator sets take pixels in turn (as many as the
// registers hold, up to 4), so consecutive FMAs do not wait on each other: the chain an FMA's
// latency bounds is nnz / S long, not nnz.
template <class T, int NV, class X>
inline void embed_gate_fixed(const PackedView& m, const float* __restrict W, const X* __restrict x, float* __restrict out) {
  using V = typename T::V;
  constexpr int L = T::kLanes;
  constexpr int S = (T::kRegs - NV - 1) / NV >= 4 ? 4 : 2;
  const int64_t GP = m.GP, I = m.I;
  alignas(64) float values[kInputSize + 8];
  alignas(64) int32_t index[kInputSize + 8];
  int64_t nnz = 0, p = 0;
  for (; p + 8 <= I; p += 8) nnz += T::compress8(x + p, int32_t(p), values + nnz, index + nnz);
  for (; p < I; ++p) {
    values[nnz] = float(x[p]);
    index[nnz] = int32_t(p);
    nnz += values[nnz] != 0.f;
  }
  V a[S][NV];
  for (int v = 0; v < NV; ++v) {
    a[0][v] = T::load(m.embed_gate_b + v * L);
    for (int k = 1; k < S; ++k) a[k][v] = T::zero();
  }
  int64_t j = 0;
  for (; j + S <= nnz; j += S)
    for (int k = 0; k < S; ++k) {
      const V xk = T::set1(values[j + k]);
      const float* wk = W + int64_t(index[j + k]) * GP;
      for (int v = 0; v < NV; ++v) a[k][v] = T::fmadd(xk, T::load(wk + v * L), a[k][v]);
    }
  for (; j < nnz; ++j) {
    const V x0 = T::set1(values[j]);
    const float* w0 = W + int64_t(index[j]) * GP;
    for (int v = 0; v < NV; ++v) a[0][v] = T::fmadd(x0, T::load(w0 + v * L), a[0][v]);
  }
  for (int v = 0; v < NV; ++v) {
    V t = a[0][v];
    for (int k = 1; k < S; ++k) t = T::add(t, a[k][v]);
    T::store(out + v * L, t);
  }
}

// The same for any width, accumulating in memory (larger models than the register-blocked sizes).
template <class T, class X>
inline void embed_gate_any(const PackedView& m, const float* __restrict W, const X* __restrict x, float* __restrict out) {
  constexpr int L = T::kLanes;
  const int64_t GP = m.GP;
  for (int64_t c = 0; c < GP; c += L) T::store(out + c, T::load(m.embed_gate_b + c));
  for (int64_t p = 0; p < m.I; ++p) {
    const float xp = float(x[p]);
    if (xp == 0.f) continue;
    const auto xv = T::set1(xp);
    const float* w = W + p * GP;
    for (int64_t c = 0; c < GP; c += L) T::store(out + c, T::fmadd(xv, T::load(w + c), T::load(out + c)));
  }
}

// y[P] = init + sum_i s[i] * w[i, 0..P) for P = NV vectors: every column vector and two halves of
// the inputs accumulate separately, so 2 x NV FMA chains run side by side (a single chain over
// 16 inputs is 16 FMA latencies long: measured, it made the two experts cost as much as the embedding).
template <class T, int NV>
inline void matvec_fixed(const float* __restrict s, int64_t n, const float* __restrict w, const float* __restrict init,
                         float* __restrict y) {
  using V = typename T::V;
  constexpr int L = T::kLanes;
  constexpr int64_t P = NV * L;
  V a[NV], b[NV];
  for (int v = 0; v < NV; ++v) a[v] = T::load(init + v * L), b[v] = T::zero();
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const V x0 = T::set1(s[i]), x1 = T::set1(s[i + 1]);
    for (int v = 0; v < NV; ++v) a[v] = T::fmadd(x0, T::load(w + i * P + v * L), a[v]);
    for (int v = 0; v < NV; ++v) b[v] = T::fmadd(x1, T::load(w + (i + 1) * P + v * L), b[v]);
  }
  if (i < n) {
    const V x0 = T::set1(s[i]);
    for (int v = 0; v < NV; ++v) a[v] = T::fmadd(x0, T::load(w + i * P + v * L), a[v]);
  }
  for (int v = 0; v < NV; ++v) T::store(y + v * L, T::add(a[v], b[v]));
}

// The same for any P, a multiple of the vector width.
template <class T>
inline void matvec(const float* __restrict s, int64_t n, const float* __restrict w, const float* __restrict init, int64_t P,
                   float* __restrict y) {
  constexpr int L = T::kLanes;
  switch (P / L) {
    case 1: matvec_fixed<T, 1>(s, n, w, init, y); return;
    case 2: matvec_fixed<T, 2>(s, n, w, init, y); return;
    case 3: matvec_fixed<T, 3>(s, n, w, init, y); return;
    case 4: matvec_fixed<T, 4>(s, n, w, init, y); return;
  }
  for (int64_t c = 0; c < P; c += L) {
    auto acc = T::load(init + c);
    for (int64_t i = 0; i < n; ++i) acc = T::fmadd(T::set1(s[i]), T::load(w + i * P + c), acc);
    T::store(y + c, acc);
  }
}

// Everything after the embedding for one image (row r of the batch): eg = [h | gate logits].
template <class T>
inline void finish_row(const PackedView& m, const float* __restrict eg, int64_t r, float* logits, float* gate_probs) {
  constexpr int L = T::kLanes;
  const int64_t D = m.D, E = m.E, K = m.K, C = m.C;
  alignas(64) float hidden[kMaxDP];
  alignas(64) float expert_out[kMaxCP];
  alignas(64) float y[kMaxCP];
  float p[kMaxExperts], w[kMaxExperts];
  int64_t chosen[kMaxExperts];
  unsigned char taken[kMaxExperts];
  // Gate softmax, as the reference computes it.
  const float* g = eg + D;
  float mx = g[0];
  for (int64_t e = 1; e < E; ++e) mx = g[e] > mx ? g[e] : mx;
  float sum = 0.f;
  for (int64_t e = 0; e < E; ++e) sum += p[e] = __builtin_expf(g[e] - mx);
  for (int64_t e = 0; e < E; ++e) p[e] /= sum;
  if (gate_probs)
    for (int64_t e = 0; e < E; ++e) gate_probs[r * E + e] = p[e];
  // Top-k, highest first, ties to the lower index (core/routing.h's rule); weights = softmax over them.
  for (int64_t e = 0; e < E; ++e) taken[e] = 0;
  for (int64_t j = 0; j < K; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < E; ++e)
      if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
    taken[best] = 1;
    chosen[j] = best;
  }
  float wsum = 0.f;
  for (int64_t j = 0; j < K; ++j) wsum += w[j] = __builtin_expf(p[chosen[j]] - p[chosen[0]]);
  for (int64_t c = 0; c < m.CP; c += L) T::store(y + c, T::load(m.out_b + c));
  for (int64_t j = 0; j < K; ++j) {
    const int64_t e = chosen[j];
    matvec<T>(eg, D, m.fc1_w + e * D * m.DP, m.fc1_b + e * m.DP, m.DP, hidden);
    for (int64_t d = 0; d < D; ++d) hidden[d] = hidden[d] > 0.f ? hidden[d] : 0.f;
    matvec<T>(hidden, D, m.out_w + e * D * m.CP, m.out_b_expert + e * m.CP, m.CP, expert_out);
    const auto wj = T::set1(w[j] / wsum);
    for (int64_t c = 0; c < m.CP; c += L) T::store(y + c, T::fmadd(wj, T::load(expert_out + c), T::load(y + c)));
  }
  for (int64_t c = 0; c < C; ++c) logits[r * C + c] = y[c];
}

// The sparse formulation, one image at a time.
template <class T, class X>
inline void forward_sparse(const PackedView& m, const float* W, const X* images, int64_t n, float* logits, float* gate_probs) {
  constexpr int L = T::kLanes;
  const int64_t I = m.I;
  alignas(64) float eg[kMaxGP];
  const int64_t nv = m.GP / L;
  for (int64_t r = 0; r < n; ++r) {
    const X* x = images + r * I;
    switch (I <= kInputSize ? nv : 0) {
      case 1: embed_gate_fixed<T, 1>(m, W, x, eg); break;
      case 2: embed_gate_fixed<T, 2>(m, W, x, eg); break;
      case 3: embed_gate_fixed<T, 3>(m, W, x, eg); break;
      case 4: embed_gate_fixed<T, 4>(m, W, x, eg); break;
      default: embed_gate_any<T>(m, W, x, eg); break;
    }
    finish_row<T>(m, eg, r, logits, gate_probs);
  }
}

// Images per dense tile: the largest power of two up to 16 whose B x NV accumulators, NV weight
// vectors and one broadcast fit the vector registers.
template <class T, int NV>
constexpr int dense_block() {
  int b = 16;
  while (b > 1 && b * NV + NV + 1 > T::kRegs) b /= 2;
  return b;
}

// [h | gate logits] of B images x[b * kInputSize + p] into out[b * NV * L ..]: per pixel, NV weight
// vectors loaded once and B broadcasts, B x NV independent FMAs.
template <class T, int NV, int B>
inline void embed_gate_dense_tile(const float* __restrict W, const float* __restrict bias, const float* __restrict x,
                                  float* __restrict out) {
  using V = typename T::V;
  constexpr int L = T::kLanes;
  constexpr int64_t GP = NV * L;
  V acc[B][NV];
  for (int v = 0; v < NV; ++v) {
    const V b0 = T::load(bias + v * L);
    for (int b = 0; b < B; ++b) acc[b][v] = b0;
  }
  for (int64_t p = 0; p < kInputSize; ++p) {
    V w[NV];
    for (int v = 0; v < NV; ++v) w[v] = T::load(W + p * GP + v * L);
    for (int b = 0; b < B; ++b) {
      const V xb = T::set1(x[b * kInputSize + p]);
      for (int v = 0; v < NV; ++v) acc[b][v] = T::fmadd(xb, w[v], acc[b][v]);
    }
  }
  for (int b = 0; b < B; ++b)
    for (int v = 0; v < NV; ++v) T::store(out + b * GP + v * L, acc[b][v]);
}

// The dense formulation (only for I == kInputSize): tiles of B images; a partial last tile and
// byte input go through a float scratch tile (zero rows past the end), so every image's result is
// the same whichever tile it falls in.
template <class T, int NV, class X>
inline void forward_dense(const PackedView& m, const float* W, const X* images, int64_t n, float* logits, float* gate_probs) {
  constexpr int L = T::kLanes;
  constexpr int B = dense_block<T, NV>();
  constexpr int64_t GP = NV * L;
  alignas(64) float xs[B * kInputSize];
  alignas(64) float eg[B * GP];
  for (int64_t r0 = 0; r0 < n; r0 += B) {
    const int64_t nb = n - r0 < B ? n - r0 : B;
    const X* src = images + r0 * kInputSize;
    const float* xt = xs;
    if constexpr (sizeof(X) == sizeof(float)) {
      if (nb == B) xt = reinterpret_cast<const float*>(src);
    }
    if (xt == xs) {
      for (int64_t i = 0; i < nb * kInputSize; ++i) xs[i] = float(src[i]);
      for (int64_t i = nb * kInputSize; i < B * kInputSize; ++i) xs[i] = 0.f;
    }
    embed_gate_dense_tile<T, NV, B>(W, m.embed_gate_b, xt, eg);
    for (int64_t b = 0; b < nb; ++b) finish_row<T>(m, eg + b * GP, r0 + b, logits, gate_probs);
  }
}

// Whether the dense formulation exists for this model on this path.
template <class T>
inline bool dense_available(const PackedView& m) {
  return m.I == kInputSize && m.GP / T::kLanes >= 1 && m.GP / T::kLanes <= 4 && T::kRegs >= 16;
}

template <class T, class X>
inline void forward_rows(const PackedView& m, const X* images, int64_t n, float* logits, float* gate_probs, bool dense) {
  const float* W = sizeof(X) == 1 ? m.embed_gate_w_u8 : m.embed_gate_w;
  if (dense && dense_available<T>(m)) {
    switch (m.GP / T::kLanes) {
      case 1: forward_dense<T, 1>(m, W, images, n, logits, gate_probs); return;
      case 2: forward_dense<T, 2>(m, W, images, n, logits, gate_probs); return;
      case 3: forward_dense<T, 3>(m, W, images, n, logits, gate_probs); return;
      case 4: forward_dense<T, 4>(m, W, images, n, logits, gate_probs); return;
    }
  }
  forward_sparse<T>(m, W, images, n, logits, gate_probs);
}

}  // namespace
}  // namespace moe::native_paths
