// NEON quantize / dequantize, 16 (quantize) or 8 (dequantize) elements per
// step; tails go to the reference kernel. Bit-exact with kernels/ref:
// vdivq_f32 is IEEE division; the clamp is written as the reference's
// comparisons (v > lo ? v : lo, then c < hi ? c : hi) with compare-and-select,
// so NaN gives lo (vmaxq_f32 would keep the NaN); vcvtnq_s32_f32 rounds half
// to even, as nearbyint does under the default rounding mode. The clamped
// values are small integers plus a fraction, exact in float, so clamping in
// float equals the reference's clamp in double.
#include <arm_neon.h>

#include <type_traits>

#include "kernels/kernels.h"

namespace qforge::kernels {
namespace {

// 4 floats -> 4 int32 codes in [qmin, qmax].
inline int32x4_t quantize4(float32x4_t x, float32x4_t scale, float32x4_t lo, float32x4_t hi,
                           int32x4_t zp) {
  const float32x4_t v = vdivq_f32(x, scale);
  float32x4_t c = vbslq_f32(vcgtq_f32(v, lo), v, lo);  // NaN compares false: lo
  c = vbslq_f32(vcltq_f32(c, hi), c, hi);
  return vaddq_s32(vcvtnq_s32_f32(c), zp);
}

// T is uint8_t or int8_t; the codes fit 16 bits, so the narrowing keeps the
// low byte of each, which is the code's byte for either type.
template <typename T>
void quantize(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax,
              T* y) {
  const float32x4_t vscale = vdupq_n_f32(scale);
  const float32x4_t lo = vdupq_n_f32(static_cast<float>(qmin - zp));
  const float32x4_t hi = vdupq_n_f32(static_cast<float>(qmax - zp));
  const int32x4_t vzp = vdupq_n_s32(zp);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int32x4_t q[4];
    for (int j = 0; j < 4; ++j) q[j] = quantize4(vld1q_f32(x + i + 4 * j), vscale, lo, hi, vzp);
    const int16x8_t ab = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
    const int16x8_t cd = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
    const uint8x16_t bytes = vreinterpretq_u8_s8(vcombine_s8(vmovn_s16(ab), vmovn_s16(cd)));
    vst1q_u8(reinterpret_cast<uint8_t*>(y + i), bytes);
  }
  if constexpr (std::is_signed_v<T>)
    f32_qs8_quantize__ref(x + i, n - i, scale, zp, qmin, qmax, y + i);
  else
    f32_qu8_quantize__ref(x + i, n - i, scale, zp, qmin, qmax, y + i);
}

// (q - zp) * scale: the difference is exact in int32 and in float.
inline void dequantize8(int16x8_t q, int32x4_t zp, float32x4_t scale, float* y) {
  const int32x4_t lo = vsubq_s32(vmovl_s16(vget_low_s16(q)), zp);
  const int32x4_t hi = vsubq_s32(vmovl_s16(vget_high_s16(q)), zp);
  vst1q_f32(y, vmulq_f32(vcvtq_f32_s32(lo), scale));
  vst1q_f32(y + 4, vmulq_f32(vcvtq_f32_s32(hi), scale));
}

template <typename T>
void dequantize(const T* x, int64_t n, float scale, int32_t zp, float* y) {
  const float32x4_t vscale = vdupq_n_f32(scale);
  const int32x4_t vzp = vdupq_n_s32(zp);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    int16x8_t q;
    if constexpr (std::is_signed_v<T>)
      q = vmovl_s8(vld1_s8(x + i));
    else
      q = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(x + i)));
    dequantize8(q, vzp, vscale, y + i);
  }
  if constexpr (std::is_signed_v<T>)
    qs8_f32_dequantize__ref(x + i, n - i, scale, zp, y + i);
  else
    qu8_f32_dequantize__ref(x + i, n - i, scale, zp, y + i);
}

}  // namespace

void f32_qu8_quantize__neon(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                            int32_t qmax, uint8_t* y) {
  quantize(x, n, scale, zp, qmin, qmax, y);
}
void f32_qs8_quantize__neon(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                            int32_t qmax, int8_t* y) {
  quantize(x, n, scale, zp, qmin, qmax, y);
}
void qu8_f32_dequantize__neon(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y) {
  dequantize(x, n, scale, zp, y);
}
void qs8_f32_dequantize__neon(const int8_t* x, int64_t n, float scale, int32_t zp, float* y) {
  dequantize(x, n, scale, zp, y);
}

}  // namespace qforge::kernels
