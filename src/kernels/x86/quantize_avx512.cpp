// AVX-512 quantize / dequantize, 16 elements per step with masked tails.
// Bit-exact with kernels/ref (see quantize_avx2.cpp for why).
#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "kernels/kernels.h"

namespace qforge::kernels {
namespace {

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
}

// T is uint8_t or int8_t. Codes are clamped to [qmin, qmax] before the
// narrowing store, so its saturation never changes a value.
template <typename T>
void quantize(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax,
              T* y) {
  const __m512 vscale = _mm512_set1_ps(scale);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(qmin - zp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(qmax - zp));
  const __m512i vzp = _mm512_set1_epi32(zp);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vscale);  // masked lanes: 0
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
    // Narrowed in a register, then stored: vpmovusdb / vpmovsdb with a
    // memory operand is several times slower per store on AMD.
    const __m128i b = std::is_signed_v<T> ? _mm512_cvtsepi32_epi8(q) : _mm512_cvtusepi32_epi8(q);
    if (m == 0xffff)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), b);
    else
      _mm_mask_storeu_epi8(y + i, m, b);
  }
}

template <typename T>
void dequantize(const T* x, int64_t n, float scale, int32_t zp, float* y) {
  const __m512 vscale = _mm512_set1_ps(scale);
  const __m512i vzp = _mm512_set1_epi32(zp);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m128i raw = _mm_maskz_loadu_epi8(m, x + i);
    const __m512i q = std::is_signed_v<T> ? _mm512_cvtepi8_epi32(raw) : _mm512_cvtepu8_epi32(raw);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, vzp)), vscale));
  }
}

}  // namespace

void f32_qu8_quantize__avx512(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                              int32_t qmax, uint8_t* y) {
  quantize(x, n, scale, zp, qmin, qmax, y);
}
void f32_qs8_quantize__avx512(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                              int32_t qmax, int8_t* y) {
  quantize(x, n, scale, zp, qmin, qmax, y);
}
void qu8_f32_dequantize__avx512(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y) {
  dequantize(x, n, scale, zp, y);
}
void qs8_f32_dequantize__avx512(const int8_t* x, int64_t n, float scale, int32_t zp, float* y) {
  dequantize(x, n, scale, zp, y);
}

// Four vectors of minima and maxima; NaN lanes are collected in a mask (a
// NaN doesn't survive vminps / vmaxps), infinities show in the result.
bool f32_minmax__avx512(const float* x, int64_t n, float* lo, float* hi) {
  constexpr int kV = 4;
  __m512 mn[kV], mx[kV];
  for (int j = 0; j < kV; ++j) mn[j] = mx[j] = _mm512_set1_ps(x[0]);
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 16 * kV <= n; i += 16 * kV)
    for (int j = 0; j < kV; ++j) {
      const __m512 v = _mm512_loadu_ps(x + i + 16 * j);
      mn[j] = _mm512_min_ps(mn[j], v);
      mx[j] = _mm512_max_ps(mx[j], v);
      nan = static_cast<__mmask16>(nan | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
    }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    mn[0] = _mm512_mask_min_ps(mn[0], m, mn[0], v);
    mx[0] = _mm512_mask_max_ps(mx[0], m, mx[0], v);
    nan = static_cast<__mmask16>(nan | _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q));
  }
  for (int j = 1; j < kV; ++j) {
    mn[0] = _mm512_min_ps(mn[0], mn[j]);
    mx[0] = _mm512_max_ps(mx[0], mx[j]);
  }
  const float a = _mm512_reduce_min_ps(mn[0]), b = _mm512_reduce_max_ps(mx[0]);
  if (nan != 0 || std::isinf(a) || std::isinf(b) || std::isnan(a) || std::isnan(b)) return false;
  *lo = a;
  *hi = b;
  return true;
}

}  // namespace qforge::kernels
