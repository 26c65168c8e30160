// AVX2 + FMA float32 GEMM kernels: a 6 x 16 register tile (12 accumulators,
// two vectors of B and a broadcast of A), and the matrix-vector kernels. See
// kernels/gemm.h for the contracts.
#include <immintrin.h>

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

// C tile of exactly M rows (M <= MR); columns [0, t.n) are written.
template <int M>
void tile(const MicroTile& t) {
  __m256 c0[M], c1[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    c0[i] = _mm256_setzero_ps();
    c1[i] = _mm256_setzero_ps();
  }
  const float* a = t.a;
  const float* b = t.b;
  const int64_t bs = t.b_stride;
  int64_t k = t.k;
  auto step = [&](const float* ak, const float* bk) {
    const __m256 b0 = _mm256_loadu_ps(bk);
    const __m256 b1 = _mm256_loadu_ps(bk + 8);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const __m256 av = _mm256_broadcast_ss(ak + i);
      c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
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

}  // namespace

void sgemm_tile__avx2(const MicroTile& t) {
  switch (t.m) {
    case 1: tile<1>(t); break;
    case 2: tile<2>(t); break;
    case 3: tile<3>(t); break;
    case 4: tile<4>(t); break;
    case 5: tile<5>(t); break;
    case 6: tile<6>(t); break;
    default: break;
  }
  static_assert(MR == 6, "one case per row count");
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
  const int64_t k16 = k - k % 16;
  int64_t j = 0;
  // Four rows at a time, two accumulators each.
  for (; j + 4 <= n; j += 4) {
    const float* r0 = b + j * ldb;
    const float* r1 = r0 + ldb;
    const float* r2 = r1 + ldb;
    const float* r3 = r2 + ldb;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps(), e0 = _mm256_setzero_ps(), e1 = _mm256_setzero_ps(),
           e2 = _mm256_setzero_ps(), e3 = _mm256_setzero_ps();
    for (int64_t p = 0; p < k16; p += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + p), x1 = _mm256_loadu_ps(x + p + 8);
      a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(r0 + p), a0);
      a1 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(r1 + p), a1);
      a2 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(r2 + p), a2);
      a3 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(r3 + p), a3);
      e0 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(r0 + p + 8), e0);
      e1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(r1 + p + 8), e1);
      e2 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(r2 + p + 8), e2);
      e3 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(r3 + p + 8), e3);
    }
    float s0 = hsum(_mm256_add_ps(a0, e0)), s1 = hsum(_mm256_add_ps(a1, e1));
    float s2 = hsum(_mm256_add_ps(a2, e2)), s3 = hsum(_mm256_add_ps(a3, e3));
    for (int64_t p = k16; p < k; ++p) {
      s0 += x[p] * r0[p];
      s1 += x[p] * r1[p];
      s2 += x[p] * r2[p];
      s3 += x[p] * r3[p];
    }
    y[j] = s0;
    y[j + 1] = s1;
    y[j + 2] = s2;
    y[j + 3] = s3;
  }
  for (; j < n; ++j) {
    const float* r = b + j * ldb;
    __m256 a0 = _mm256_setzero_ps(), e0 = _mm256_setzero_ps();
    for (int64_t p = 0; p < k16; p += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(r + p), a0);
      e0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 8), _mm256_loadu_ps(r + p + 8), e0);
    }
    float s = hsum(_mm256_add_ps(a0, e0));
    for (int64_t p = k16; p < k; ++p) s += x[p] * r[p];
    y[j] = s;
  }
}

void sgemv_panels__avx2(int64_t k, int64_t n, const float* x, const float* p, float* y) {
  for (int64_t j0 = 0; j0 < n; j0 += NR) {
    const float* panel = p + (j0 / NR) * k * NR;
    // Four k steps in flight, two vectors each.
    __m256 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
    int64_t q = 0;
    for (; q + 4 <= k; q += 4) {
      const float* s = panel + q * NR;
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        const __m256 xv = _mm256_set1_ps(x[q + u]);
        a[2 * u] = _mm256_fmadd_ps(xv, _mm256_load_ps(s + u * NR), a[2 * u]);
        a[2 * u + 1] = _mm256_fmadd_ps(xv, _mm256_load_ps(s + u * NR + 8), a[2 * u + 1]);
      }
    }
    for (; q < k; ++q) {
      const __m256 xv = _mm256_set1_ps(x[q]);
      a[0] = _mm256_fmadd_ps(xv, _mm256_load_ps(panel + q * NR), a[0]);
      a[1] = _mm256_fmadd_ps(xv, _mm256_load_ps(panel + q * NR + 8), a[1]);
    }
    const __m256 lo = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[4], a[6]));
    const __m256 hi = _mm256_add_ps(_mm256_add_ps(a[1], a[3]), _mm256_add_ps(a[5], a[7]));
    _mm256_maskstore_ps(y + j0, lanes(n - j0), lo);
    _mm256_maskstore_ps(y + j0 + 8, lanes(n - j0 - 8), hi);
  }
}

}  // namespace qforge::kernels
