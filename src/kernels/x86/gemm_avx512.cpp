// AVX-512F float32 GEMM kernels: a 12 x 32 register tile (24 accumulators,
// two vectors of B and a broadcast of A per row and k), and the
// matrix-vector kernels. See kernels/gemm.h for the contracts.
#include <immintrin.h>

#include <utility>

#include "kernels/gemm.h"

namespace qforge::kernels {
namespace {

constexpr int64_t MR = kAvx512Mr;
constexpr int64_t NR = kAvx512Nr;
static_assert(NR == 32, "the tile holds two 16-float vectors per row");

// Lanes [0, n) of a 16-float vector; n may be <= 0 or >= 16.
inline __mmask16 lanes(int64_t n) {
  if (n <= 0) return 0;
  if (n >= 16) return static_cast<__mmask16>(0xffff);
  return static_cast<__mmask16>((1u << n) - 1u);
}

inline __m512 activate(__m512 v, Epilogue act, __m512 lo, __m512 hi) {
  switch (act) {
    case Epilogue::kNone: return v;
    case Epilogue::kRelu: return _mm512_max_ps(v, _mm512_setzero_ps());  // NaN gives 0
    case Epilogue::kClip: return _mm512_min_ps(hi, _mm512_max_ps(lo, v));  // NaN stays NaN
  }
  return v;
}

// c0 += a * b0, c1 += a * b1 with a broadcast from memory. In asm so that
// the accumulators stay where they are: with intrinsics GCC 12 picks FMA
// forms that overwrite the broadcast register and then shuffles and spills
// accumulators to keep all 24 of them alive.
inline void fma_row(const float* a, __m512 b0, __m512 b1, __m512& c0, __m512& c1) {
  __m512 t;
  __asm__(
      "vbroadcastss %[a], %[t]\n\t"
      "vfmadd231ps %[b0], %[t], %[c0]\n\t"
      "vfmadd231ps %[b1], %[t], %[c1]"
      : [c0] "+v"(c0), [c1] "+v"(c1), [t] "=&v"(t)
      : [a] "m"(*a), [b0] "v"(b0), [b1] "v"(b1));
}

// One k step for rows I...: two vectors of B, a broadcast per row of A.
// (Rows as a parameter pack rather than a loop: with constant indices from
// the start GCC keeps c0[] and c1[] in registers.)
template <int... I>
__attribute__((always_inline)) inline void step(std::integer_sequence<int, I...>, const float* ak,
                                                int64_t lda, const float* bk, __m512* c0, __m512* c1) {
  const __m512 b0 = _mm512_loadu_ps(bk);
  const __m512 b1 = _mm512_loadu_ps(bk + 16);
  (fma_row(ak + I * lda, b0, b1, c0[I], c1[I]), ...);
}

// fma_row for A read in place: row 3g + J of A at p + J * L (L: the row
// stride in bytes), addressed as base + index * scale so that 12 rows take
// four base registers and one index rather than twelve pointers (GCC's own
// addressing spilled those and accumulators). The asm reads A without a
// memory operand: the kernel never writes A, and it stores nothing before
// its k loop ends.
#define QFORGE_FMA_AT(ADDR)                                \
  __asm__("vbroadcastss " ADDR ", %[t]\n\t"                \
          "vfmadd231ps %[b0], %[t], %[c0]\n\t"             \
          "vfmadd231ps %[b1], %[t], %[c1]"                  \
          : [c0] "+v"(c0), [c1] "+v"(c1), [t] "=&v"(t)      \
          : [p] "r"(p), [L] "r"(L), [b0] "v"(b0), [b1] "v"(b1))
template <int J>
inline void fma_at(const float* p, int64_t L, __m512 b0, __m512 b1, __m512& c0, __m512& c1) {
  __m512 t;
  if constexpr (J == 0) QFORGE_FMA_AT("(%[p])");
  else if constexpr (J == 1) QFORGE_FMA_AT("(%[p],%[L],1)");
  else QFORGE_FMA_AT("(%[p],%[L],2)");
}
#undef QFORGE_FMA_AT

// One k step of A in place: rows I... from the bases p[I / 3].
template <int... I>
__attribute__((always_inline)) inline void step_at(std::integer_sequence<int, I...>,
                                                   const float* const* p, int64_t L,
                                                   const float* bk, __m512* c0, __m512* c1) {
  const __m512 b0 = _mm512_loadu_ps(bk);
  const __m512 b1 = _mm512_loadu_ps(bk + 16);
  (fma_at<I % 3>(p[I / 3], L, b0, b1, c0[I], c1[I]), ...);
}

// C tile of exactly M rows (M <= MR); columns [0, t.n) are written.
template <int M, bool kDirectA>
void tile(const MicroTile& t) {
  constexpr auto rows = std::make_integer_sequence<int, M>();
  __m512 c0[M], c1[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
  // A's (i, k) at a[i * lda + k * as]: the packed panel's layout, or the
  // matrix itself (MicroTile::a_ld).
  const float* a = t.a;
  const int64_t lda = kDirectA ? t.a_ld : 1;
  constexpr int64_t as = kDirectA ? 1 : MR;
  const float* b = t.b;
  const int64_t bs = t.b_stride;
  int64_t k = t.k;
  // First the k steps that also prefetch two lines each into L2 (of the
  // operand panel the next tiles will use), then the rest.
  const char* pf = reinterpret_cast<const char*>(t.prefetch);
  if (kDirectA) {  // A in place: one plain loop (no gathered B rows, no prefetching)
    static_assert(MR <= 12, "four bases of three rows");
    const float* p[4] = {a, a + 3 * lda, a + 6 * lda, a + 9 * lda};
    const int64_t L = lda * static_cast<int64_t>(sizeof(float));
#pragma GCC unroll 4
    for (; k > 0; --k) {
      step_at(rows, p, L, b, c0, c1);
      for (auto& q : p) ++q;
      b += bs;
    }
  } else if (t.b_rows != nullptr) {  // B's rows at given offsets; no prefetching
    const int64_t* off = t.b_rows;
    for (; k >= 4; k -= 4) {
      step(rows, a, lda, b + off[0], c0, c1);
      step(rows, a + as, lda, b + off[1], c0, c1);
      step(rows, a + 2 * as, lda, b + off[2], c0, c1);
      step(rows, a + 3 * as, lda, b + off[3], c0, c1);
      a += 4 * as;
      off += 4;
    }
    for (; k > 0; --k) step(rows, a, lda, b + *off++, c0, c1), a += as;
  }
  for (int64_t left = t.prefetch_lines; k >= 4 && left > 0; k -= 4, left -= 8) {
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    pf += 512;
    step(rows, a, lda, b, c0, c1);
    step(rows, a + as, lda, b + bs, c0, c1);
    step(rows, a + 2 * as, lda, b + 2 * bs, c0, c1);
    step(rows, a + 3 * as, lda, b + 3 * bs, c0, c1);
    a += 4 * as;
    b += 4 * bs;
  }
  for (; k >= 4; k -= 4) {
    step(rows, a, lda, b, c0, c1);
    step(rows, a + as, lda, b + bs, c0, c1);
    step(rows, a + 2 * as, lda, b + 2 * bs, c0, c1);
    step(rows, a + 3 * as, lda, b + 3 * bs, c0, c1);
    a += 4 * as;
    b += 4 * bs;
  }
  for (; k > 0; --k) {
    step(rows, a, lda, b, c0, c1);
    a += as;
    b += bs;
  }

  const __mmask16 m0 = lanes(t.n), m1 = lanes(t.n - 16);
  const __m512 alpha = _mm512_set1_ps(t.alpha), beta = _mm512_set1_ps(t.beta);
  const __m512 lo = _mm512_set1_ps(t.clip_min), hi = _mm512_set1_ps(t.clip_max);
  const bool scale = t.alpha != 1.0f, read_c = t.beta != 0.0f;
  __m512 bn0 = _mm512_setzero_ps(), bn1 = _mm512_setzero_ps();
  if (t.bias_n != nullptr) {
    bn0 = _mm512_maskz_loadu_ps(m0, t.bias_n);
    bn1 = _mm512_maskz_loadu_ps(m1, t.bias_n + 16);
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    float* c = t.c + i * t.ldc;
    __m512 x0 = c0[i], x1 = c1[i];
    if (scale) {
      x0 = _mm512_mul_ps(x0, alpha);
      x1 = _mm512_mul_ps(x1, alpha);
    }
    if (read_c) {
      x0 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m0, c), x0);
      x1 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m1, c + 16), x1);
    }
    if (t.bias_m != nullptr) {
      const __m512 bm = _mm512_set1_ps(t.bias_m[i]);
      x0 = _mm512_add_ps(x0, bm);
      x1 = _mm512_add_ps(x1, bm);
    }
    x0 = _mm512_add_ps(x0, bn0);
    x1 = _mm512_add_ps(x1, bn1);
    _mm512_mask_storeu_ps(c, m0, activate(x0, t.act, lo, hi));
    _mm512_mask_storeu_ps(c + 16, m1, activate(x1, t.act, lo, hi));
  }
}

template <int M>
void dispatch(const MicroTile& t) {
  if (t.a_ld != 0) tile<M, true>(t);
  else tile<M, false>(t);
}

}  // namespace

void sgemm_tile__avx512(const MicroTile& t) {
  switch (t.m) {
    case 1: return dispatch<1>(t);
    case 2: return dispatch<2>(t);
    case 3: return dispatch<3>(t);
    case 4: return dispatch<4>(t);
    case 5: return dispatch<5>(t);
    case 6: return dispatch<6>(t);
    case 7: return dispatch<7>(t);
    case 8: return dispatch<8>(t);
    case 9: return dispatch<9>(t);
    case 10: return dispatch<10>(t);
    case 11: return dispatch<11>(t);
    case 12: return dispatch<12>(t);
    default: return;
  }
  static_assert(MR == 12, "one case per row count");
}

namespace {

// r[i] (row i, 16 floats) becomes column i: r[i][j] = old r[j][i].
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // per 128-bit lane: a0 b0 a1 b1
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  //                   a2 b2 a3 b3
  }
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);          // a0 b0 c0 d0
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);      // a1 b1 c1 d1
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);  // a2 b2 c2 d2
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);  // a3 b3 c3 d3
  }
  // u[4q + c] holds, in lane l, column c + 4l of rows 4q..4q+3.
  for (int c = 0; c < 4; ++c) {
    // Lanes 0, 2 (columns c, c + 8) and 1, 3 (columns c + 4, c + 12).
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
    const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
    r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(v0, v2, 0xdd);
    r[c + 4] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[c + 12] = _mm512_shuffle_f32x4(v1, v3, 0xdd);
  }
}

}  // namespace

void pack_transpose__avx512(const float* src, int64_t ld, int64_t rows, int64_t kc, float* dst,
                            int64_t stride, int64_t width) {
  const __mmask16 wmask = lanes(width);
  for (int64_t k = 0; k < kc; k += 16) {
    const int64_t kn = kc - k < 16 ? kc - k : 16;
    const __mmask16 km = lanes(kn);
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(km, src + i * ld + k) : _mm512_setzero_ps();
    transpose16(r);
    for (int64_t i = 0; i < kn; ++i) _mm512_mask_storeu_ps(dst + (k + i) * stride, wmask, r[i]);
  }
}

void sgemv_rows__avx512(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb,
                        float* y) {
  for (int64_t j = 0; j < n; j += 16) _mm512_mask_storeu_ps(y + j, lanes(n - j), _mm512_setzero_ps());
  int64_t p = 0;
  // Eight rows of b per pass over y (which stays in L1), in two chains.
  for (; p + 8 <= k; p += 8) {
    __m512 xv[8];
    const float* r[8];
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
      xv[q] = _mm512_set1_ps(x[p + q]);
      r[q] = b + (p + q) * ldb;
    }
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = lanes(n - j);
      __m512 s0 = _mm512_maskz_loadu_ps(m, y + j);
      __m512 s1 = _mm512_mul_ps(xv[4], _mm512_maskz_loadu_ps(m, r[4] + j));
      s0 = _mm512_fmadd_ps(xv[0], _mm512_maskz_loadu_ps(m, r[0] + j), s0);
      s1 = _mm512_fmadd_ps(xv[5], _mm512_maskz_loadu_ps(m, r[5] + j), s1);
      s0 = _mm512_fmadd_ps(xv[1], _mm512_maskz_loadu_ps(m, r[1] + j), s0);
      s1 = _mm512_fmadd_ps(xv[6], _mm512_maskz_loadu_ps(m, r[6] + j), s1);
      s0 = _mm512_fmadd_ps(xv[2], _mm512_maskz_loadu_ps(m, r[2] + j), s0);
      s1 = _mm512_fmadd_ps(xv[7], _mm512_maskz_loadu_ps(m, r[7] + j), s1);
      s0 = _mm512_fmadd_ps(xv[3], _mm512_maskz_loadu_ps(m, r[3] + j), s0);
      _mm512_mask_storeu_ps(y + j, m, _mm512_add_ps(s0, s1));
    }
  }
  for (; p < k; ++p) {
    const __m512 xv = _mm512_set1_ps(x[p]);
    const float* r = b + p * ldb;
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = lanes(n - j);
      const __m512 s = _mm512_maskz_loadu_ps(m, y + j);
      _mm512_mask_storeu_ps(y + j, m, _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, r + j), s));
    }
  }
}

void sgemv_dots__avx512(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb,
                        float* y) {
  // Eight rows at a time (eight streams from memory), one accumulator each.
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const float* r = b + j * ldb;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) acc[q] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p += 16) {
      const __mmask16 m = lanes(k - p);
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + p);
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q)
        acc[q] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, r + q * ldb + p), acc[q]);
    }
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) y[j + q] = _mm512_reduce_add_ps(acc[q]);
  }
  for (; j < n; ++j) {
    const float* r = b + j * ldb;
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p += 16) {
      const __mmask16 m = lanes(k - p);
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + p), _mm512_maskz_loadu_ps(m, r + p), a0);
    }
    y[j] = _mm512_reduce_add_ps(a0);
  }
}

void sgemv_panels__avx512(int64_t k, int64_t n, const float* x, const float* p, float* y) {
  // Four panels at a time (four streams from memory), two vectors each.
  const int64_t panels = (n + NR - 1) / NR;
  int64_t q = 0;
  for (; q + 4 <= panels; q += 4) {
    const float* s = p + q * k * NR;
    __m512 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) a[i] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < k; ++kk) {
      const __m512 xv = _mm512_set1_ps(x[kk]);
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        const float* v = s + u * k * NR + kk * NR;
        a[2 * u] = _mm512_fmadd_ps(xv, _mm512_load_ps(v), a[2 * u]);
        a[2 * u + 1] = _mm512_fmadd_ps(xv, _mm512_load_ps(v + 16), a[2 * u + 1]);
      }
    }
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const int64_t j0 = (q + u) * NR;
      _mm512_mask_storeu_ps(y + j0, lanes(n - j0), a[2 * u]);
      _mm512_mask_storeu_ps(y + j0 + 16, lanes(n - j0 - 16), a[2 * u + 1]);
    }
  }
  for (; q < panels; ++q) {
    const float* s = p + q * k * NR;
    // Four k steps in flight, two vectors each.
    __m512 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) a[i] = _mm512_setzero_ps();
    int64_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        const __m512 xv = _mm512_set1_ps(x[kk + u]);
        a[2 * u] = _mm512_fmadd_ps(xv, _mm512_load_ps(s + (kk + u) * NR), a[2 * u]);
        a[2 * u + 1] = _mm512_fmadd_ps(xv, _mm512_load_ps(s + (kk + u) * NR + 16), a[2 * u + 1]);
      }
    }
    for (; kk < k; ++kk) {
      const __m512 xv = _mm512_set1_ps(x[kk]);
      a[0] = _mm512_fmadd_ps(xv, _mm512_load_ps(s + kk * NR), a[0]);
      a[1] = _mm512_fmadd_ps(xv, _mm512_load_ps(s + kk * NR + 16), a[1]);
    }
    const __m512 lo = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[4], a[6]));
    const __m512 hi = _mm512_add_ps(_mm512_add_ps(a[1], a[3]), _mm512_add_ps(a[5], a[7]));
    const int64_t j0 = q * NR;
    _mm512_mask_storeu_ps(y + j0, lanes(n - j0), lo);
    _mm512_mask_storeu_ps(y + j0 + 16, lanes(n - j0 - 16), hi);
  }
}

namespace {

// Q pixels of one output row from ow on: Q accumulators, so that each tap's
// weights are loaded once for Q pixels and Q independent chains hide the
// latency of the multiply-adds.
template <int Q>
inline void dw16_pixels(const DwConv16& d, const float* row, float* out, int64_t ow, __m512 lo,
                        __m512 hi) {
  const int64_t step = d.sw * 16;  // floats between neighbouring pixels' windows
  __m512 acc[Q];
  const __m512 b = _mm512_loadu_ps(d.b16);
#pragma GCC unroll 8
  for (int q = 0; q < Q; ++q) acc[q] = b;
  const float* base = row + ow * step;
  for (int64_t t = 0; t < d.taps; ++t) {
    const __m512 w = _mm512_loadu_ps(d.w16 + t * 16);
    const float* in = base + d.offsets[t];
#pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) acc[q] = _mm512_fmadd_ps(w, _mm512_loadu_ps(in + q * step), acc[q]);
  }
#pragma GCC unroll 8
  for (int q = 0; q < Q; ++q) _mm512_storeu_ps(out + (ow + q) * 16, activate(acc[q], d.act, lo, hi));
}

}  // namespace

void dwconv_16c__avx512(const DwConv16& d) {
  const __m512 lo = _mm512_set1_ps(d.lo), hi = _mm512_set1_ps(d.hi);
  for (int64_t oh = 0; oh < d.Ho; ++oh) {
    const float* row = d.in + oh * d.sh * d.ld;
    float* out = d.out + oh * d.Wo * 16;
    int64_t ow = 0;
    for (; ow + 8 <= d.Wo; ow += 8) dw16_pixels<8>(d, row, out, ow, lo, hi);
    if (ow + 4 <= d.Wo) dw16_pixels<4>(d, row, out, ow, lo, hi), ow += 4;
    if (ow + 2 <= d.Wo) dw16_pixels<2>(d, row, out, ow, lo, hi), ow += 2;
    if (ow < d.Wo) dw16_pixels<1>(d, row, out, ow, lo, hi);
  }
}

}  // namespace qforge::kernels
