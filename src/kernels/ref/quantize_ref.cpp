// Scalar reference quantize / dequantize: the definition the SIMD kernels
// are tested against, bit for bit.
#include <cmath>

#include "kernels/kernels.h"
#include "qforge/quant.h"

namespace qforge::kernels {

void f32_qu8_quantize__ref(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                           int32_t qmax, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<uint8_t>(quantize_value(x[i], scale, zp, qmin, qmax));
}

void f32_qs8_quantize__ref(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                           int32_t qmax, int8_t* y) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<int8_t>(quantize_value(x[i], scale, zp, qmin, qmax));
}

void qu8_f32_dequantize__ref(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = dequantize_value(x[i], scale, zp);
}

void qs8_f32_dequantize__ref(const int8_t* x, int64_t n, float scale, int32_t zp, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = dequantize_value(x[i], scale, zp);
}

bool f32_minmax__ref(const float* x, int64_t n, float* lo, float* hi) {
  float a = x[0], b = x[0];
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
    a = x[i] < a ? x[i] : a;
    b = x[i] > b ? x[i] : b;
  }
  *lo = a;
  *hi = b;
  return true;
}

}  // namespace qforge::kernels
