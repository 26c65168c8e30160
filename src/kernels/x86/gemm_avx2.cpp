// AVX2 + FMA float32 GEMM kernels: a 6 x 16 register tile (12 accumulators,
// two vectors of B and a broadcast of A), and the matrix-vector kernels. See
// kernels/gemm.h for the contracts.
#include <immintrin.h>

#include <utility>

#include "kernels/gemm.h"

namespace qforge::kernels {
namespace {

constexpr int64_t MR = kAvx2Mr;
constexpr int64_t NR = kAvx2Nr;
static_assert(NR == 16, "the tile holds two 8-float vectors per row");

// A maskload / maskstore mask for lanes [0, n); n may be <= 0 or >= 8.
inline __m256i lanes(int64_t n) {
  const int c = n <= 0 ? 0 : n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline __m256 activate(__m256 v, Epilogue act, __m256 lo, __m256 hi) {
  switch (act) {
    case Epilogue::kNone: return v;
    case Epilogue::kRelu: return _mm256_max_ps(v, _mm256_setzero_ps());  // NaN gives 0
    case Epilogue::kClip: return _mm256_min_ps(hi, _mm256_max_ps(lo, v));  // NaN stays NaN
  }
  return v;
}

inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// c0 += a * b0, c1 += a * b1 with a broadcast from memory. In asm so that
// the accumulators stay in place (see gemm_avx512.cpp).
inline void fma_row(const float* a, __m256 b0, __m256 b1, __m256& c0, __m256& c1) {
  __m256 t;
  __asm__(
      "vbroadcastss %[a], %[t]\n\t"
      "vfmadd231ps %[b0], %[t], %[c0]\n\t"
      "vfmadd231ps %[b1], %[t], %[c1]"
      : [c0] "+x"(c0), [c1] "+x"(c1), [t] "=&x"(t)
      : [a] "m"(*a), [b0] "x"(b0), [b1] "x"(b1));
}

// One k step for rows I...: two vectors of B, a broadcast per row of A.
// (Rows as a parameter pack rather than a loop: with constant indices from
// the start GCC keeps c0[] and c1[] in registers.)
template <int... I>
__attribute__((always_inline)) inline void step(std::integer_sequence<int, I...>, const float* ak,
                                                int64_t lda, const float* bk, __m256* c0, __m256* c1) {
  const __m256 b0 = _mm256_loadu_ps(bk);
  const __m256 b1 = _mm256_loadu_ps(bk + 8);
  (fma_row(ak + I * lda, b0, b1, c0[I], c1[I]), ...);
}

// C tile of exactly M rows (M <= MR); columns [0, t.n) are written.
template <int M, bool kDirectA>
void tile(const MicroTile& t) {
  constexpr auto rows = std::make_integer_sequence<int, M>();
  __m256 c0[M], c1[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    c0[i] = _mm256_setzero_ps();
    c1[i] = _mm256_setzero_ps();
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
  if (t.b_rows != nullptr) {  // B's rows at given offsets; no prefetching
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

  const __m256i m0 = lanes(t.n), m1 = lanes(t.n - 8);
  const __m256 alpha = _mm256_set1_ps(t.alpha), beta = _mm256_set1_ps(t.beta);
  const __m256 lo = _mm256_set1_ps(t.clip_min), hi = _mm256_set1_ps(t.clip_max);
  const bool scale = t.alpha != 1.0f, read_c = t.beta != 0.0f;
  __m256 bn0 = _mm256_setzero_ps(), bn1 = _mm256_setzero_ps();
  if (t.bias_n != nullptr) {
    bn0 = _mm256_maskload_ps(t.bias_n, m0);
    bn1 = _mm256_maskload_ps(t.bias_n + 8, m1);
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    float* c = t.c + i * t.ldc;
    __m256 x0 = c0[i], x1 = c1[i];
    if (scale) {
      x0 = _mm256_mul_ps(x0, alpha);
      x1 = _mm256_mul_ps(x1, alpha);
    }
    if (read_c) {
      x0 = _mm256_fmadd_ps(beta, _mm256_maskload_ps(c, m0), x0);
      x1 = _mm256_fmadd_ps(beta, _mm256_maskload_ps(c + 8, m1), x1);
    }
    if (t.bias_m != nullptr) {
      const __m256 bm = _mm256_set1_ps(t.bias_m[i]);
      x0 = _mm256_add_ps(x0, bm);
      x1 = _mm256_add_ps(x1, bm);
    }
    x0 = _mm256_add_ps(x0, bn0);
    x1 = _mm256_add_ps(x1, bn1);
    _mm256_maskstore_ps(c, m0, activate(x0, t.act, lo, hi));
    _mm256_maskstore_ps(c + 8, m1, activate(x1, t.act, lo, hi));
  }
}

template <int M>
void dispatch(const MicroTile& t) {
  if (t.a_ld != 0) tile<M, true>(t);
  else tile<M, false>(t);
}

}  // namespace

void sgemm_tile__avx2(const MicroTile& t) {
  switch (t.m) {
    case 1: return dispatch<1>(t);
    case 2: return dispatch<2>(t);
    case 3: return dispatch<3>(t);
    case 4: return dispatch<4>(t);
    case 5: return dispatch<5>(t);
    case 6: return dispatch<6>(t);
    default: return;
  }
  static_assert(MR == 6, "one case per row count");
}

namespace {

// r[i] (row i, 8 floats) becomes column i: r[i][j] = old r[j][i].
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // per 128-bit lane: a0 b0 a1 b1
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  //                   a2 b2 a3 b3
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);          // a0 b0 c0 d0 | a4 b4 c4 d4
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);      // a1 b1 c1 d1 | a5 ...
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);  // a2 ... | a6 ...
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);  // a3 ... | a7 ...
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

}  // namespace

void pack_transpose__avx2(const float* src, int64_t ld, int64_t rows, int64_t kc, float* dst,
                          int64_t stride, int64_t width) {
  const __m256i wmask = lanes(width);
  for (int64_t k = 0; k < kc; k += 8) {
    const int64_t kn = kc - k < 8 ? kc - k : 8;
    const __m256i km = lanes(kn);
    __m256 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)
      r[i] = i < rows ? _mm256_maskload_ps(src + i * ld + k, km) : _mm256_setzero_ps();
    transpose8(r);
    for (int64_t i = 0; i < kn; ++i) _mm256_maskstore_ps(dst + (k + i) * stride, wmask, r[i]);
  }
}

void sgemv_rows__avx2(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb,
                      float* y) {
  for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
  const int64_t n8 = n - n % 8;
  int64_t p = 0;
  // Eight rows of b per pass over y (which stays in L1), in two chains.
  for (; p + 8 <= k; p += 8) {
    __m256 xv[8];
    const float* r[8];
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
      xv[q] = _mm256_set1_ps(x[p + q]);
      r[q] = b + (p + q) * ldb;
    }
    for (int64_t j = 0; j < n8; j += 8) {
      __m256 s0 = _mm256_loadu_ps(y + j);
      __m256 s1 = _mm256_mul_ps(xv[4], _mm256_loadu_ps(r[4] + j));
      s0 = _mm256_fmadd_ps(xv[0], _mm256_loadu_ps(r[0] + j), s0);
      s1 = _mm256_fmadd_ps(xv[5], _mm256_loadu_ps(r[5] + j), s1);
      s0 = _mm256_fmadd_ps(xv[1], _mm256_loadu_ps(r[1] + j), s0);
      s1 = _mm256_fmadd_ps(xv[6], _mm256_loadu_ps(r[6] + j), s1);
      s0 = _mm256_fmadd_ps(xv[2], _mm256_loadu_ps(r[2] + j), s0);
      s1 = _mm256_fmadd_ps(xv[7], _mm256_loadu_ps(r[7] + j), s1);
      s0 = _mm256_fmadd_ps(xv[3], _mm256_loadu_ps(r[3] + j), s0);
      _mm256_storeu_ps(y + j, _mm256_add_ps(s0, s1));
    }
    for (int64_t j = n8; j < n; ++j) {
      float s = y[j];
      for (int q = 0; q < 8; ++q) s += x[p + q] * r[q][j];
      y[j] = s;
    }
  }
  for (; p < k; ++p) {
    const __m256 xv = _mm256_set1_ps(x[p]);
    const float* r = b + p * ldb;
    for (int64_t j = 0; j < n8; j += 8)
      _mm256_storeu_ps(y + j, _mm256_fmadd_ps(xv, _mm256_loadu_ps(r + j), _mm256_loadu_ps(y + j)));
    for (int64_t j = n8; j < n; ++j) y[j] += x[p] * r[j];
  }
}

void sgemv_dots__avx2(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb,
                      float* y) {
  const int64_t k8 = k - k % 8;
  // Eight rows at a time (eight streams from memory), one accumulator each.
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const float* r = b + j * ldb;
    __m256 acc[8];
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) acc[q] = _mm256_setzero_ps();
    for (int64_t p = 0; p < k8; p += 8) {
      const __m256 xv = _mm256_loadu_ps(x + p);
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q)
        acc[q] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r + q * ldb + p), acc[q]);
    }
    for (int q = 0; q < 8; ++q) {
      float s = hsum(acc[q]);
      for (int64_t p = k8; p < k; ++p) s += x[p] * r[q * ldb + p];
      y[j + q] = s;
    }
  }
  for (; j < n; ++j) {
    const float* r = b + j * ldb;
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t p = 0; p < k8; p += 8)
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(r + p), a0);
    float s = hsum(a0);
    for (int64_t p = k8; p < k; ++p) s += x[p] * r[p];
    y[j] = s;
  }
}

void sgemv_panels__avx2(int64_t k, int64_t n, const float* x, const float* p, float* y) {
  // Four panels at a time (four streams from memory), two vectors each.
  const int64_t panels = (n + NR - 1) / NR;
  int64_t q = 0;
  for (; q + 4 <= panels; q += 4) {
    const float* s = p + q * k * NR;
    __m256 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < k; ++kk) {
      const __m256 xv = _mm256_set1_ps(x[kk]);
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        const float* v = s + u * k * NR + kk * NR;
        a[2 * u] = _mm256_fmadd_ps(xv, _mm256_load_ps(v), a[2 * u]);
        a[2 * u + 1] = _mm256_fmadd_ps(xv, _mm256_load_ps(v + 8), a[2 * u + 1]);
      }
    }
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const int64_t j0 = (q + u) * NR;
      _mm256_maskstore_ps(y + j0, lanes(n - j0), a[2 * u]);
      _mm256_maskstore_ps(y + j0 + 8, lanes(n - j0 - 8), a[2 * u + 1]);
    }
  }
  for (; q < panels; ++q) {
    const float* s = p + q * k * NR;
    // Four k steps in flight, two vectors each.
    __m256 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
    int64_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        const __m256 xv = _mm256_set1_ps(x[kk + u]);
        a[2 * u] = _mm256_fmadd_ps(xv, _mm256_load_ps(s + (kk + u) * NR), a[2 * u]);
        a[2 * u + 1] = _mm256_fmadd_ps(xv, _mm256_load_ps(s + (kk + u) * NR + 8), a[2 * u + 1]);
      }
    }
    for (; kk < k; ++kk) {
      const __m256 xv = _mm256_set1_ps(x[kk]);
      a[0] = _mm256_fmadd_ps(xv, _mm256_load_ps(s + kk * NR), a[0]);
      a[1] = _mm256_fmadd_ps(xv, _mm256_load_ps(s + kk * NR + 8), a[1]);
    }
    const __m256 lo = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[4], a[6]));
    const __m256 hi = _mm256_add_ps(_mm256_add_ps(a[1], a[3]), _mm256_add_ps(a[5], a[7]));
    const int64_t j0 = q * NR;
    _mm256_maskstore_ps(y + j0, lanes(n - j0), lo);
    _mm256_maskstore_ps(y + j0 + 8, lanes(n - j0 - 8), hi);
  }
}

}  // namespace qforge::kernels
