// The forward pass, written once over a vector type T and included by each kernel_<isa>.cpp after it
// defines T (so each copy is compiled for that file's instruction set). Everything here has internal
// linkage: no inline function compiled for AVX-512 can be picked by the linker for another file, and
// nothing from the standard library's templates is instantiated here for the same reason.
//
// T provides: V, kLanes, zero(), set1(float), load(const float*), store(float*, V), add(V, V),
// fmadd(a, b, c) = a * b + c, and compress8(x, base, values, index) -> n: writes the non-zero values
// among x[0..8) (NaN included) and base + their positions to values[0..n) and index[0..n), and may
// write anything to values[n..8) and index[n..8).
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
// with a known trip count runs over them; two accumulator sets take alternate pixels, so
// consecutive FMAs do not wait on each other.
template <class T, int NV>
inline void embed_gate_fixed(const PackedView& m, const float* __restrict x, float* __restrict out) {
  using V = typename T::V;
  constexpr int L = T::kLanes;
  const float* __restrict W = m.embed_gate_w;
  const int64_t GP = m.GP, I = m.I;
  alignas(64) float values[kInputSize + 8];
  alignas(64) int32_t index[kInputSize + 8];
  int64_t nnz = 0, p = 0;
  for (; p + 8 <= I; p += 8) nnz += T::compress8(x + p, int32_t(p), values + nnz, index + nnz);
  for (; p < I; ++p) {
    values[nnz] = x[p];
    index[nnz] = int32_t(p);
    nnz += x[p] != 0.f;
  }
  V a[NV], b[NV];
  for (int v = 0; v < NV; ++v) a[v] = T::load(m.embed_gate_b + v * L), b[v] = T::zero();
  int64_t j = 0;
  for (; j + 2 <= nnz; j += 2) {
    const V x0 = T::set1(values[j]), x1 = T::set1(values[j + 1]);
    const float* w0 = W + int64_t(index[j]) * GP;
    const float* w1 = W + int64_t(index[j + 1]) * GP;
    for (int v = 0; v < NV; ++v) a[v] = T::fmadd(x0, T::load(w0 + v * L), a[v]);
    for (int v = 0; v < NV; ++v) b[v] = T::fmadd(x1, T::load(w1 + v * L), b[v]);
  }
  if (j < nnz) {
    const V x0 = T::set1(values[j]);
    const float* w0 = W + int64_t(index[j]) * GP;
    for (int v = 0; v < NV; ++v) a[v] = T::fmadd(x0, T::load(w0 + v * L), a[v]);
  }
  for (int v = 0; v < NV; ++v) T::store(out + v * L, T::add(a[v], b[v]));
}

// The same for any width, accumulating in memory (larger models than the register-blocked sizes).
template <class T>
inline void embed_gate_any(const PackedView& m, const float* __restrict x, float* __restrict out) {
  constexpr int L = T::kLanes;
  const int64_t GP = m.GP;
  for (int64_t c = 0; c < GP; c += L) T::store(out + c, T::load(m.embed_gate_b + c));
  for (int64_t p = 0; p < m.I; ++p) {
    if (x[p] == 0.f) continue;
    const auto xv = T::set1(x[p]);
    const float* w = m.embed_gate_w + p * GP;
    for (int64_t c = 0; c < GP; c += L) T::store(out + c, T::fmadd(xv, T::load(w + c), T::load(out + c)));
  }
}

// y[P] (+)= sum_i s[i] * w[i, 0..P), with P a multiple of the vector width; y starts from `init`.
template <class T>
inline void matvec(const float* __restrict s, int64_t n, const float* __restrict w, const float* __restrict init, int64_t P,
                   float* __restrict y) {
  constexpr int L = T::kLanes;
  for (int64_t c = 0; c < P; c += L) {
    auto acc = T::load(init + c);
    for (int64_t i = 0; i < n; ++i) acc = T::fmadd(T::set1(s[i]), T::load(w + i * P + c), acc);
    T::store(y + c, acc);
  }
}

template <class T>
inline void forward_rows(const PackedView& m, const float* images, int64_t n, float* logits, float* gate_probs) {
  constexpr int L = T::kLanes;
  const int64_t D = m.D, E = m.E, K = m.K, C = m.C, I = m.I;
  alignas(64) float eg[kMaxGP];
  alignas(64) float hidden[kMaxDP];
  alignas(64) float expert_out[kMaxCP];
  alignas(64) float y[kMaxCP];
  float p[kMaxExperts], w[kMaxExperts];
  int64_t chosen[kMaxExperts];
  unsigned char taken[kMaxExperts];
  const int64_t nv = m.GP / L;
  for (int64_t r = 0; r < n; ++r) {
    const float* x = images + r * I;
    switch (I <= kInputSize ? nv : 0) {
      case 1: embed_gate_fixed<T, 1>(m, x, eg); break;
      case 2: embed_gate_fixed<T, 2>(m, x, eg); break;
      case 3: embed_gate_fixed<T, 3>(m, x, eg); break;
      case 4: embed_gate_fixed<T, 4>(m, x, eg); break;
      default: embed_gate_any<T>(m, x, eg); break;
    }
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
}

}  // namespace
}  // namespace moe::native_paths
