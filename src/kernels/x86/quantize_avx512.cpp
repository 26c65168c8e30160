// AVX-512 quantize / dequantize, 16 elements per step with masked tails.
// Bit-exact with kernels/ref (see quantize_avx2.cpp for why).
#include <immintrin.h>

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
    if constexpr (std::is_signed_v<T>)
      _mm512_mask_cvtsepi32_storeu_epi8(y + i, m, q);
    else
      _mm512_mask_cvtusepi32_storeu_epi8(y + i, m, q);
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

}  // namespace qforge::kernels
