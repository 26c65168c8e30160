// AVX-512F float32 GEMM kernels: a 12 x 32 register tile (24 accumulators,
// two vectors of B and a broadcast of A per row and k), and the
// matrix-vector kernels. See kernels/gemm.h for the contracts.
#include <immintrin.h>

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

// C tile of exactly M rows (M <= MR); columns [0, t.n) are written.
template <int M>
void tile(const MicroTile& t) {
  __m512 c0[M], c1[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
  const float* a = t.a;
  const float* b = t.b;
  const int64_t bs = t.b_stride;
  int64_t k = t.k;
  // One k step: two vectors of B, a broadcast per row of A.
  auto step = [&](const float* ak, const float* bk) {
    const __m512 b0 = _mm512_loadu_ps(bk);
    const __m512 b1 = _mm512_loadu_ps(bk + 16);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512 av = _mm512_set1_ps(ak[i]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
  };
  for (; k >= 4; k -= 4) {
    step(a, b);
    step(a + MR, b + bs);
    step(a + 2 * MR, b + 2 * bs);
    step(a + 3 * MR, b + 3 * bs);
    a += 4 * MR;
    b += 4 * bs;
  }
  for (; k > 0; --k) {
    step(a, b);
    a += MR;
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

}  // namespace

void sgemm_tile__avx512(const MicroTile& t) {
  switch (t.m) {
    case 1: tile<1>(t); break;
    case 2: tile<2>(t); break;
    case 3: tile<3>(t); break;
    case 4: tile<4>(t); break;
    case 5: tile<5>(t); break;
    case 6: tile<6>(t); break;
    case 7: tile<7>(t); break;
    case 8: tile<8>(t); break;
    case 9: tile<9>(t); break;
    case 10: tile<10>(t); break;
    case 11: tile<11>(t); break;
    case 12: tile<12>(t); break;
    default: break;
  }
  static_assert(MR == 12, "one case per row count");
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
  int64_t j = 0;
  // Four rows at a time, two accumulators each.
  for (; j + 4 <= n; j += 4) {
    const float* r0 = b + j * ldb;
    const float* r1 = r0 + ldb;
    const float* r2 = r1 + ldb;
    const float* r3 = r2 + ldb;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps(), e0 = _mm512_setzero_ps(), e1 = _mm512_setzero_ps(),
           e2 = _mm512_setzero_ps(), e3 = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 32 <= k; p += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + p), x1 = _mm512_loadu_ps(x + p + 16);
      a0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r0 + p), a0);
      a1 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r1 + p), a1);
      a2 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r2 + p), a2);
      a3 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r3 + p), a3);
      e0 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r0 + p + 16), e0);
      e1 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r1 + p + 16), e1);
      e2 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r2 + p + 16), e2);
      e3 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r3 + p + 16), e3);
    }
    for (; p < k; p += 16) {
      const __mmask16 m = lanes(k - p);
      const __m512 x0 = _mm512_maskz_loadu_ps(m, x + p);
      a0 = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, r0 + p), a0);
      a1 = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, r1 + p), a1);
      a2 = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, r2 + p), a2);
      a3 = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, r3 + p), a3);
    }
    y[j] = _mm512_reduce_add_ps(_mm512_add_ps(a0, e0));
    y[j + 1] = _mm512_reduce_add_ps(_mm512_add_ps(a1, e1));
    y[j + 2] = _mm512_reduce_add_ps(_mm512_add_ps(a2, e2));
    y[j + 3] = _mm512_reduce_add_ps(_mm512_add_ps(a3, e3));
  }
  for (; j < n; ++j) {
    const float* r = b + j * ldb;
    __m512 a0 = _mm512_setzero_ps(), e0 = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 32 <= k; p += 32) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p), _mm512_loadu_ps(r + p), a0);
      e0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p + 16), _mm512_loadu_ps(r + p + 16), e0);
    }
    for (; p < k; p += 16) {
      const __mmask16 m = lanes(k - p);
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + p), _mm512_maskz_loadu_ps(m, r + p), a0);
    }
    y[j] = _mm512_reduce_add_ps(_mm512_add_ps(a0, e0));
  }
}

void sgemv_panels__avx512(int64_t k, int64_t n, const float* x, const float* p, float* y) {
  for (int64_t j0 = 0; j0 < n; j0 += NR) {
    const float* panel = p + (j0 / NR) * k * NR;
    // Four k steps in flight, two vectors each.
    __m512 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) a[i] = _mm512_setzero_ps();
    int64_t q = 0;
    for (; q + 4 <= k; q += 4) {
      const float* s = panel + q * NR;
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        const __m512 xv = _mm512_set1_ps(x[q + u]);
        a[2 * u] = _mm512_fmadd_ps(xv, _mm512_load_ps(s + u * NR), a[2 * u]);
        a[2 * u + 1] = _mm512_fmadd_ps(xv, _mm512_load_ps(s + u * NR + 16), a[2 * u + 1]);
      }
    }
    for (; q < k; ++q) {
      const __m512 xv = _mm512_set1_ps(x[q]);
      a[0] = _mm512_fmadd_ps(xv, _mm512_load_ps(panel + q * NR), a[0]);
      a[1] = _mm512_fmadd_ps(xv, _mm512_load_ps(panel + q * NR + 16), a[1]);
    }
    const __m512 lo = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[4], a[6]));
    const __m512 hi = _mm512_add_ps(_mm512_add_ps(a[1], a[3]), _mm512_add_ps(a[5], a[7]));
    _mm512_mask_storeu_ps(y + j0, lanes(n - j0), lo);
    _mm512_mask_storeu_ps(y + j0 + 16, lanes(n - j0 - 16), hi);
  }
}

}  // namespace qforge::kernels
