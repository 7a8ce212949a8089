// The forward pass, written once over a vector type T and included by each kernel_<isa>.cpp after it
// defines T (so each copy is compiled for that file's instruction set). Everything here has internal
// linkage: no inline function compiled for AVX-512 can be picked by the linker for another file, and
// nothing from the standard library's templates is instantiated here for the same reason.
//
// T provides: V, kLanes, kRegs (vector registers), zero(), set1(float), load(const float*),
// store(float*, V), add(V, V), fmadd(a, b, c) = a * b + c, and for x a float or uint8_t pointer:
// nonzero32(x), false when x[0..32) are all zero (true for any NaN; -0.0 may give either), and
// compress8(x, base, stride, values, offset) -> n: writes the non-zero values among x[0..8) (NaN
// included) as floats and (base + their positions) * stride to values[0..n) and offset[0..n), and
// may write anything to values[n..8) and offset[n..8).
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
// First the non-zero pixels are compacted with their weight rows' offsets (no branch per pixel),
// then a loop with a known trip count runs over them; S accumulator sets take pixels in turn (as
// many as the registers hold, up to 4), so consecutive FMAs do not wait on each other: the chain an
// FMA's latency bounds is nnz / S long, not nnz. The list is padded to a multiple of S with zeros
// times row 0 (weights are finite, checked at load, so they add nothing), so no remainder loop with
// an unpredictable trip count follows. `ahead`, the next image, is prefetched meanwhile, one cache
// line per line of this one, so its pixels are in cache when its turn comes.
template <class T, int NV, class X>
inline void embed_gate_fixed(const PackedView& m, const float* __restrict W, const X* __restrict x, const X* ahead,
                             float* __restrict out) {
  using V = typename T::V;
  constexpr int L = T::kLanes;
  constexpr int S = (T::kRegs - NV - 1) / NV >= 4 ? 4 : 2;
  constexpr int64_t kLine = 64 / int64_t(sizeof(X));  // pixels per cache line
  const int64_t GP = m.GP, I = m.I;
  alignas(64) float values[kInputSize + 8];
  alignas(64) int32_t offset[kInputSize + 8];
  int64_t nnz = 0, p = 0;
  for (; p + 32 <= I; p += 32) {
    for (int64_t q = p % kLine ? kLine - p % kLine : 0; q < 32; q += kLine) __builtin_prefetch(ahead + p + q);
    if (!T::nonzero32(x + p)) continue;  // background (a third of MNIST's 32-pixel runs; measured 1.1x faster)
    for (int64_t q = 0; q < 32; q += 8) nnz += T::compress8(x + p + q, int32_t(p + q), int32_t(GP), values + nnz, offset + nnz);
  }
  for (; p + 8 <= I; p += 8) {
    if (p % kLine == 0) __builtin_prefetch(ahead + p);
    nnz += T::compress8(x + p, int32_t(p), int32_t(GP), values + nnz, offset + nnz);
  }
  for (; p < I; ++p) {
    values[nnz] = float(x[p]);
    offset[nnz] = int32_t(p * GP);
    nnz += values[nnz] != 0.f;
  }
  for (int k = 0; k < S; ++k) values[nnz + k] = 0.f, offset[nnz + k] = 0;
  V a[S][NV];
  for (int v = 0; v < NV; ++v) {
    a[0][v] = T::load(m.embed_gate_b + v * L);
    for (int k = 1; k < S; ++k) a[k][v] = T::zero();
  }
  for (int64_t j = 0; j < nnz; j += S)
    for (int k = 0; k < S; ++k) {
      const V xk = T::set1(values[j + k]);
      const float* wk = W + offset[j + k];
      for (int v = 0; v < NV; ++v) a[k][v] = T::fmadd(xk, T::load(wk + v * L), a[k][v]);
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

// Q matrix-vector products side by side: y_q = init_q + s_q[0..n) @ w_q[n, P] for P = NV vectors,
// or with Sum their total y_0 = init_0 + sum_q s_q @ w_q. Every product, column vector and half of
// the inputs accumulates separately: 2 x Q x NV FMA chains run side by side (one chain over 16
// inputs is 16 FMA latencies long; measured, that made the two experts cost as much as the
// embedding, and running the two chosen experts together halves what remains of it).
template <class T, int NV, int Q, bool Sum>
inline void matvecs_fixed(const float* const* s, int64_t n, const float* const* w, const float* const* init, float* const* y) {
  using V = typename T::V;
  constexpr int L = T::kLanes;
  constexpr int64_t P = NV * L;
  V a[Q][NV], b[Q][NV];
  for (int q = 0; q < Q; ++q)
    for (int v = 0; v < NV; ++v) a[q][v] = Sum && q > 0 ? T::zero() : T::load(init[q] + v * L), b[q][v] = T::zero();
  int64_t i = 0;
  for (; i + 2 <= n; i += 2)
    for (int q = 0; q < Q; ++q) {
      const V x0 = T::set1(s[q][i]), x1 = T::set1(s[q][i + 1]);
      for (int v = 0; v < NV; ++v) a[q][v] = T::fmadd(x0, T::load(w[q] + i * P + v * L), a[q][v]);
      for (int v = 0; v < NV; ++v) b[q][v] = T::fmadd(x1, T::load(w[q] + (i + 1) * P + v * L), b[q][v]);
    }
  if (i < n)
    for (int q = 0; q < Q; ++q) {
      const V x0 = T::set1(s[q][i]);
      for (int v = 0; v < NV; ++v) a[q][v] = T::fmadd(x0, T::load(w[q] + i * P + v * L), a[q][v]);
    }
  for (int v = 0; v < NV; ++v) {
    if constexpr (Sum) {
      V t = T::add(a[0][v], b[0][v]);
      for (int q = 1; q < Q; ++q) t = T::add(t, T::add(a[q][v], b[q][v]));
      T::store(y[0] + v * L, t);
    } else {
      for (int q = 0; q < Q; ++q) T::store(y[q] + v * L, T::add(a[q][v], b[q][v]));
    }
  }
}

// The same for any P, a multiple of the vector width.
template <class T, int Q, bool Sum>
inline void matvecs(const float* const* s, int64_t n, const float* const* w, const float* const* init, int64_t P, float* const* y) {
  constexpr int L = T::kLanes;
  switch (P / L) {
    case 1: matvecs_fixed<T, 1, Q, Sum>(s, n, w, init, y); return;
    case 2: matvecs_fixed<T, 2, Q, Sum>(s, n, w, init, y); return;
    case 3: matvecs_fixed<T, 3, Q, Sum>(s, n, w, init, y); return;
    case 4: matvecs_fixed<T, 4, Q, Sum>(s, n, w, init, y); return;
  }
  for (int64_t c = 0; c < P; c += L)
    for (int q = 0; q < Q; ++q) {
      auto acc = T::load((Sum && q > 0 ? y[0] : init[q]) + c);
      for (int64_t i = 0; i < n; ++i) acc = T::fmadd(T::set1(s[q][i]), T::load(w[q] + i * P + c), acc);
      T::store(y[Sum ? 0 : q] + c, acc);
    }
}

// Images routed side by side (gate softmax and top-k), one per lane of 8-lane vectors: GCC's and
// Clang's vector extensions, compiled for whatever the including file enables (one AVX register,
// two SSE ones). Passed by reference only: a vector argument's ABI depends on those flags.
constexpr int kBlock = 8;
typedef float F8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));
typedef uint32_t U8 __attribute__((vector_size(32)));
// dst = mask ? src : dst, lane by lane (mask lanes all ones or zero, as comparisons give).
inline void assign_if(F8& dst, const I8& mask, const F8& src) { dst = (F8)((mask & (I8)src) | (~mask & (I8)dst)); }
inline void assign_if(I8& dst, const I8& mask, const I8& src) { dst = (mask & src) | (~mask & dst); }

// exp(x) for x <= 0 (or NaN, which it returns), as the softmaxes need it: x = n ln2 + r with
// |r| <= ln2 / 2, and exp(r) by Cephes' degree-6 polynomial for expf (about 1 ulp).
inline void exp_nonpositive(F8& x) {
  const F8 lowest = F8{} - 87.f;  // exp(-87) ~ 1.6e-38, the order of the smallest normal float
  assign_if(x, x < lowest, lowest);  // NaN compares false and stays
  const F8 round = F8{} + 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer, kept in the low mantissa bits
  const F8 t = x * 1.44269504088896341f + round;
  const F8 n = t - round;
  const F8 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  F8 p = F8{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const U8 scale = ((U8)t - 0x4B400000u + 127u) << 23;  // 2^n (n >= -126 after the clamp)
  x = p * (F8)scale;
}

// The routing of a block of images, lane b = image b: p[e] the gate probabilities of expert e;
// chosen[j] and weight[j] the j-th expert (highest first) and its combine weight.
struct BlockRouting {
  F8 p[kMaxExperts];
  I8 chosen[kMaxExperts];
  F8 weight[kMaxExperts];
};

// Routes nb <= kBlock images whose [h | gate logits] rows are eg + b * stride. Every step is one
// vector operation over the block, so the per-image chain of max, exp, sum, division and top-k
// selection (measured: a quarter of the forward pass run image by image, the core stalled on it) is
// paid once per block. Lanes past nb compute on zeros.
inline void route_block(const PackedView& m, const float* __restrict eg, int64_t stride, int64_t nb, BlockRouting& rt) {
  const int64_t D = m.D, E = m.E, K = m.K;
  F8* p = rt.p;
  for (int64_t e = 0; e < E; ++e)
    for (int b = 0; b < kBlock; ++b) p[e][b] = b < nb ? eg[b * stride + D + e] : 0.f;
  // Gate softmax, as the reference computes it.
  F8 mx = p[0], sum = F8{};
  for (int64_t e = 1; e < E; ++e) assign_if(mx, p[e] > mx, p[e]);
  for (int64_t e = 0; e < E; ++e) {
    p[e] -= mx;
    exp_nonpositive(p[e]);
    sum += p[e];
  }
  for (int64_t e = 0; e < E; ++e) p[e] /= sum;
  // Top-k, highest first, ties to the lower index (model/routing.h's rule); the first expert not yet
  // taken when every probability left is NaN. Weights = softmax over the chosen.
  I8 taken[kMaxExperts];
  for (int64_t e = 0; e < E; ++e) taken[e] = I8{};
  for (int64_t j = 0; j < K; ++j) {
    I8 best = I8{} - 1;
    F8 best_p = F8{};
    for (int64_t e = 0; e < E; ++e) {
      const I8 better = (taken[e] == 0) & ((best < 0) | (p[e] > best_p));
      assign_if(best, better, I8{} + int32_t(e));
      assign_if(best_p, better, p[e]);
    }
    for (int b = 0; b < kBlock; ++b) taken[best[b]][b] = -1;
    rt.chosen[j] = best;
    rt.weight[j] = best_p;
  }
  const F8 first = rt.weight[0];
  sum = F8{};
  for (int64_t j = 0; j < K; ++j) {
    rt.weight[j] -= first;
    exp_nonpositive(rt.weight[j]);
    sum += rt.weight[j];
  }
  for (int64_t j = 0; j < K; ++j) rt.weight[j] /= sum;
}

// The chosen experts of image b of a routed block, eg its [h | gate logits]:
// logits = out_b + sum_j (w_j relu(h @ fc1_w[e_j] + fc1_b[e_j])) @ out_w[e_j] + w_j out_b_expert[e_j].
// The combine weight scales each expert's hidden layer, so every expert adds into one accumulator,
// and the experts run in pairs (matvecs) for twice the independent FMA chains. (Interleaving two
// images' experts as well was measured slower.)
template <class T>
inline void experts_row(const PackedView& m, const float* __restrict eg, const BlockRouting& rt, int b, float* __restrict logits) {
  constexpr int L = T::kLanes;
  const int64_t D = m.D, K = m.K, C = m.C, DP = m.DP, CP = m.CP;
  alignas(64) float hidden[2][kMaxDP];
  alignas(64) float y[kMaxCP];
  for (int64_t c = 0; c < CP; c += L) T::store(y + c, T::load(m.out_b + c));
  for (int64_t j = 0; j < K; ++j) {
    const auto wj = T::set1(rt.weight[j][b]);
    const float* ob = m.out_b_expert + rt.chosen[j][b] * CP;
    for (int64_t c = 0; c < CP; c += L) T::store(y + c, T::fmadd(wj, T::load(ob + c), T::load(y + c)));
  }
  float* const out[1] = {y};
  for (int64_t j = 0; j < K; j += 2) {
    const bool pair = j + 1 < K;
    const int64_t e0 = rt.chosen[j][b], e1 = rt.chosen[pair ? j + 1 : j][b];
    const float* const h[2] = {eg, eg};
    const float* const w1[2] = {m.fc1_w + e0 * D * DP, m.fc1_w + e1 * D * DP};
    const float* const b1[2] = {m.fc1_b + e0 * DP, m.fc1_b + e1 * DP};
    float* const hid[2] = {hidden[0], hidden[1]};
    const float* const w2[2] = {m.out_w + e0 * D * CP, m.out_w + e1 * D * CP};
    const float* const init[2] = {y, y};
    if (pair) matvecs<T, 2, false>(h, D, w1, b1, DP, hid);
    else matvecs<T, 1, false>(h, D, w1, b1, DP, hid);
    for (int q = 0; q < (pair ? 2 : 1); ++q) {
      const float wq = rt.weight[j + q][b];
      for (int64_t d = 0; d < D; ++d) hidden[q][d] = (hidden[q][d] > 0.f ? hidden[q][d] : 0.f) * wq;
    }
    if (pair) matvecs<T, 2, true>(hid, D, w2, init, CP, out);
    else matvecs<T, 1, true>(hid, D, w2, init, CP, out);
  }
  for (int64_t c = 0; c < C; ++c) logits[c] = y[c];
}

// Everything after the embedding for rows r0 .. r0 + n of the batch, whose [h | gate logits] are
// eg + i * stride: routed kBlock at a time, then each image's experts.
template <class T>
inline void finish_rows(const PackedView& m, const float* __restrict eg, int64_t stride, int64_t n, int64_t r0, float* logits,
                        float* gate_probs) {
  const int64_t E = m.E, C = m.C;
  BlockRouting rt;
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t nb = n - i0 < kBlock ? n - i0 : kBlock;
    const float* block = eg + i0 * stride;
    route_block(m, block, stride, nb, rt);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t r = r0 + i0 + b;
      if (gate_probs)
        for (int64_t e = 0; e < E; ++e) gate_probs[r * E + e] = rt.p[e][b];
      experts_row<T>(m, block + b * stride, rt, int(b), logits + r * C);
    }
  }
}

// The sparse formulation: each image's embedding on its own, kBlock of them before their routing.
template <class T, class X>
inline void forward_sparse(const PackedView& m, const float* W, const X* images, int64_t n, float* logits, float* gate_probs) {
  constexpr int L = T::kLanes;
  constexpr int64_t kFixedGP = 4 * L;  // the widest row embed_gate_fixed keeps in registers
  const int64_t I = m.I, GP = m.GP;
  const int64_t nv = I <= kInputSize && GP <= kFixedGP ? GP / L : 0;
  if (nv == 0) {  // a model wider than the register-blocked sizes: one image at a time, in memory
    alignas(64) float eg[kMaxGP];
    for (int64_t r = 0; r < n; ++r) {
      embed_gate_any<T>(m, W, images + r * I, eg);
      finish_rows<T>(m, eg, GP, 1, r, logits, gate_probs);
    }
    return;
  }
  alignas(64) float eg[kBlock * kFixedGP];
  for (int64_t r0 = 0; r0 < n; r0 += kBlock) {
    const int64_t nb = n - r0 < kBlock ? n - r0 : kBlock;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t r = r0 + b;
      const X* x = images + r * I;
      const X* ahead = r + 1 < n ? x + I : x;  // never an address past the batch
      float* out = eg + b * GP;
      switch (nv) {
        case 1: embed_gate_fixed<T, 1>(m, W, x, ahead, out); break;
        case 2: embed_gate_fixed<T, 2>(m, W, x, ahead, out); break;
        case 3: embed_gate_fixed<T, 3>(m, W, x, ahead, out); break;
        default: embed_gate_fixed<T, 4>(m, W, x, ahead, out); break;
      }
    }
    finish_rows<T>(m, eg, GP, nb, r0, logits, gate_probs);
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
    finish_rows<T>(m, eg, GP, nb, r0, logits, gate_probs);
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
