// AVX2 quantize / dequantize, 32 (quantize) or 8 (dequantize) elements per
// step; tails go to the reference kernel. Bit-exact with kernels/ref:
// vdivps is IEEE division, vcvtps2dq rounds half to even under the default
// MXCSR, and vmaxps(v, lo) returns lo for NaN v as the reference does.
#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "kernels/kernels.h"

namespace qforge::kernels {
namespace {

// T is uint8_t or int8_t: the only difference is the final 16 -> 8 bit pack.
template <typename T>
void quantize(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax,
              T* y) {
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(qmin - zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(qmax - zp));
  const __m256i vzp = _mm256_set1_epi32(zp);
  // packs/packus work within 128-bit lanes; this permutation restores order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i q[4];
    for (int j = 0; j < 4; ++j) {
      __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i + 8 * j), vscale);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      q[j] = _mm256_add_epi32(_mm256_cvtps_epi32(v), vzp);
    }
    const __m256i ab = _mm256_packs_epi32(q[0], q[1]);  // codes fit 16 bits: no saturation
    const __m256i cd = _mm256_packs_epi32(q[2], q[3]);
    const __m256i bytes = std::is_signed_v<T> ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
  if constexpr (std::is_signed_v<T>)
    f32_qs8_quantize__ref(x + i, n - i, scale, zp, qmin, qmax, y + i);
  else
    f32_qu8_quantize__ref(x + i, n - i, scale, zp, qmin, qmax, y + i);
}

template <typename T>
void dequantize(const T* x, int64_t n, float scale, int32_t zp, float* y) {
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256i vzp = _mm256_set1_epi32(zp);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i));
    const __m256i q = std::is_signed_v<T> ? _mm256_cvtepi8_epi32(raw) : _mm256_cvtepu8_epi32(raw);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, vzp)), vscale));
  }
  if constexpr (std::is_signed_v<T>)
    qs8_f32_dequantize__ref(x + i, n - i, scale, zp, y + i);
  else
    qu8_f32_dequantize__ref(x + i, n - i, scale, zp, y + i);
}

}  // namespace

void f32_qu8_quantize__avx2(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                            int32_t qmax, uint8_t* y) {
  quantize(x, n, scale, zp, qmin, qmax, y);
}
void f32_qs8_quantize__avx2(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                            int32_t qmax, int8_t* y) {
  quantize(x, n, scale, zp, qmin, qmax, y);
}
void qu8_f32_dequantize__avx2(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y) {
  dequantize(x, n, scale, zp, y);
}
void qs8_f32_dequantize__avx2(const int8_t* x, int64_t n, float scale, int32_t zp, float* y) {
  dequantize(x, n, scale, zp, y);
}

// As the AVX-512 version (quantize_avx512.cpp): NaN lanes or'ed into a
// vector, infinities seen in the result; the tail goes to the reference.
bool f32_minmax__avx2(const float* x, int64_t n, float* lo, float* hi) {
  constexpr int kV = 4;
  __m256 mn[kV], mx[kV];
  for (int j = 0; j < kV; ++j) mn[j] = mx[j] = _mm256_set1_ps(x[0]);
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 * kV <= n; i += 8 * kV)
    for (int j = 0; j < kV; ++j) {
      const __m256 v = _mm256_loadu_ps(x + i + 8 * j);
      mn[j] = _mm256_min_ps(mn[j], v);
      mx[j] = _mm256_max_ps(mx[j], v);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
  for (int j = 1; j < kV; ++j) {
    mn[0] = _mm256_min_ps(mn[0], mn[j]);
    mx[0] = _mm256_max_ps(mx[0], mx[j]);
  }
  alignas(32) float l[8], h[8];
  _mm256_store_ps(l, mn[0]);
  _mm256_store_ps(h, mx[0]);
  float a = l[0], b = h[0];
  for (int j = 1; j < 8; ++j) a = l[j] < a ? l[j] : a, b = h[j] > b ? h[j] : b;
  if (i < n) {
    float ta = 0.0f, tb = 0.0f;
    if (!f32_minmax__ref(x + i, n - i, &ta, &tb)) return false;
    a = ta < a ? ta : a;
    b = tb > b ? tb : b;
  }
  if (_mm256_movemask_ps(nan) != 0 || std::isinf(a) || std::isinf(b)) return false;
  *lo = a;
  *hi = b;
  return true;
}

}  // namespace qforge::kernels
