// The epilogue of the NEON int8 GEMM microkernels (qgemm_neon.cpp,
// qgemm_neondot.cpp): one row of a tile, 16 columns as four int32x4, through
// the zero-point terms, the bias and the output conversion. It is the scalar
// reference's (ref/qgemm_ref.cpp) arithmetic lane for lane:
//   - the integer terms are NEON adds and multiplies, which wrap modulo 2^32
//     as the reference's uint32 sums do;
//   - vcvtq_f32_s32 rounds to nearest like static_cast<float>(int32);
//   - products and sums are separate vmulq / vaddq, each rounded, as in
//     the reference (the AArch64 build passes -ffp-contract=off: GCC would
//     otherwise fuse the pair into one fmla, rounding once);
//   - the clamp is the reference's comparisons (x > lo ? x : lo, then
//     c < hi ? c : hi) as compare-and-select, so NaN gives lo, and
//     vcvtnq rounds half to even like nearbyint.
// Everything is in an unnamed namespace: each kernel file compiles its own
// copy with its own target flags (the dotprod file's code must never be
// called on a CPU without dotprod, as the linker might do with one shared
// inline definition).
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "kernels/qgemm.h"

namespace qforge::kernels {
namespace {

// Stores `count` (1..16) elements of 16 held in `v` (bytes of 16 elements).
template <typename V>
inline void store_first(void* c, const V (&v)[4], int64_t count, size_t elem) {
  if (count == 16) {
    std::memcpy(c, v, sizeof v);
  } else {
    std::memcpy(c, v, static_cast<size_t>(count) * elem);
  }
}

// 16 int32 codes in [qmin, qmax] -> 16 bytes: the codes fit 16 bits, so the
// truncating narrows keep each code's low byte, its s8 or u8 byte.
inline void store_codes(uint8_t* c, const int32x4_t (&q)[4], int64_t count) {
  const int16x8_t lo = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
  const int16x8_t hi = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
  const uint8x16_t bytes = vreinterpretq_u8_s8(vcombine_s8(vmovn_s16(lo), vmovn_s16(hi)));
  if (count == 16) {
    vst1q_u8(c, bytes);
  } else {
    uint8_t tmp[16];
    vst1q_u8(tmp, bytes);
    std::memcpy(c, tmp, static_cast<size_t>(count));
  }
}

// kQ8Double for 2 lanes: float64 product, clamp, round half to even.
inline int64x2_t requantize2_double(int32x2_t v, float32x2_t scale, float64x2_t lo,
                                    float64x2_t hi) {
  const float64x2_t x = vmulq_f64(vcvtq_f64_s64(vmovl_s32(v)), vcvt_f64_f32(scale));
  float64x2_t c = vbslq_f64(vcgtq_f64(x, lo), x, lo);
  c = vbslq_f64(vcltq_f64(c, hi), c, hi);
  return vcvtnq_s64_f64(c);
}

// Row i of the tile: dot[c] holds sum_k A'B' for columns 4c..4c+3.
inline void epilogue_row(const QGemmTile& t, int64_t i, const int32x4_t (&dot)[4]) {
  const int32x4_t rs = vdupq_n_s32(t.row_sum[i]);
  int32x4_t v[4];
  for (int c = 0; c < 4; ++c) {
    v[c] = vaddq_s32(dot[c], vld1q_s32(t.col_off + 4 * c));
    v[c] = vmlaq_s32(v[c], rs, vld1q_s32(t.neg_b_zp + 4 * c));
  }
  if (t.bias != nullptr) {
    int32_t b[16] = {};  // only the tile's n columns of bias exist
    std::memcpy(b, t.bias + i * t.bias_ld, static_cast<size_t>(t.n) * sizeof(int32_t));
    for (int c = 0; c < 4; ++c) v[c] = vaddq_s32(v[c], vld1q_s32(b + 4 * c));
  }
  const int64_t at = i * t.ldc;
  switch (t.out) {
    case QOutput::kS32:
      store_first(static_cast<int32_t*>(t.c) + at, v, t.n, sizeof(int32_t));
      break;
    case QOutput::kF32: {
      float32x4_t f[4];
      for (int c = 0; c < 4; ++c) {
        f[c] = vmulq_f32(vcvtq_f32_s32(v[c]), vld1q_f32(t.scale + 4 * c));
        if (t.fbias != nullptr) f[c] = vaddq_f32(f[c], vld1q_f32(t.fbias + 4 * c));
      }
      store_first(static_cast<float*>(t.c) + at, f, t.n, sizeof(float));
      break;
    }
    case QOutput::kQ8Float: {
      const float32x4_t lo = vdupq_n_f32(static_cast<float>(t.qmin - t.y_zp));
      const float32x4_t hi = vdupq_n_f32(static_cast<float>(t.qmax - t.y_zp));
      int32x4_t q[4];
      for (int c = 0; c < 4; ++c) {
        const float32x4_t x = vmulq_f32(vcvtq_f32_s32(v[c]), vld1q_f32(t.scale + 4 * c));
        float32x4_t f = vbslq_f32(vcgtq_f32(x, lo), x, lo);
        f = vbslq_f32(vcltq_f32(f, hi), f, hi);
        q[c] = vaddq_s32(vcvtnq_s32_f32(f), vdupq_n_s32(t.y_zp));
      }
      store_codes(static_cast<uint8_t*>(t.c) + at, q, t.n);
      break;
    }
    case QOutput::kQ8Double: {
      const float64x2_t lo = vdupq_n_f64(static_cast<double>(t.qmin - t.y_zp));
      const float64x2_t hi = vdupq_n_f64(static_cast<double>(t.qmax - t.y_zp));
      int32x4_t q[4];
      for (int c = 0; c < 4; ++c) {
        const float32x4_t s = vld1q_f32(t.scale + 4 * c);
        // The rounded values are within [qmin - zp, qmax - zp]: narrowing is exact.
        const int32x2_t l = vmovn_s64(requantize2_double(vget_low_s32(v[c]), vget_low_f32(s), lo, hi));
        const int32x2_t h = vmovn_s64(requantize2_double(vget_high_s32(v[c]), vget_high_f32(s), lo, hi));
        q[c] = vaddq_s32(vcombine_s32(l, h), vdupq_n_s32(t.y_zp));
      }
      store_codes(static_cast<uint8_t*>(t.c) + at, q, t.n);
      break;
    }
  }
}

}  // namespace
}  // namespace qforge::kernels
