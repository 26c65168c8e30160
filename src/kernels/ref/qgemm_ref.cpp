// The scalar reference int8 GEMM microkernel: the definition the SIMD
// kernels are tested against, bit for bit. Plain loops; every sum is
// unsigned 32-bit, so it wraps modulo 2^32 exactly as the SIMD adds do (and
// without signed-overflow undefined behaviour).
#include <cstdint>
#include <cstring>

#include "kernels/qgemm.h"

namespace qforge::kernels {

void qu8_qs8_gemm_4x16c4__ref(const QGemmTile& t) {
  constexpr int64_t MR = 4, NR = 16;
  uint32_t acc[MR][NR] = {};
  for (int64_t g = 0; g < t.kp / kQGroup; ++g) {
    const int8_t* b = t.b + g * kQPanel * kQGroup;
    for (int64_t i = 0; i < t.m; ++i) {
      const uint8_t* a = t.a + i * t.lda + g * kQGroup;
      for (int64_t j = 0; j < NR; ++j) {
        int32_t s = 0;  // four products of |u8 * s8| <= 32640: no overflow
        for (int64_t r = 0; r < kQGroup; ++r) s += int32_t{a[r]} * int32_t{b[j * kQGroup + r]};
        acc[i][j] += static_cast<uint32_t>(s);
      }
    }
  }
  for (int64_t i = 0; i < t.m; ++i) {
    const auto rs = static_cast<uint32_t>(t.row_sum[i]);
    for (int64_t j = 0; j < t.n; ++j) {
      uint32_t u = acc[i][j] + static_cast<uint32_t>(t.col_off[j]) +
                   rs * static_cast<uint32_t>(t.neg_b_zp[j]);
      if (t.bias != nullptr) u += static_cast<uint32_t>(t.bias[i * t.bias_ld + j]);
      const auto v = static_cast<int32_t>(u);
      const int64_t at = i * t.ldc + j;
      switch (t.out) {
        case QOutput::kS32:
          static_cast<int32_t*>(t.c)[at] = v;
          break;
        case QOutput::kF32: {
          float f = static_cast<float>(v) * t.scale[j];
          if (t.fbias != nullptr) f += t.fbias[j];
          static_cast<float*>(t.c)[at] = f;
          break;
        }
        case QOutput::kQ8Double:
        case QOutput::kQ8Float: {
          const int32_t q = t.out == QOutput::kQ8Double
                                ? requantize_double(v, t.scale[j], t.y_zp, t.qmin, t.qmax)
                                : requantize_float(v, t.scale[j], t.y_zp, t.qmin, t.qmax);
          // q is in [qmin, qmax]: the byte of an s8 or a u8 code.
          static_cast<uint8_t*>(t.c)[at] = static_cast<uint8_t>(q);
          break;
        }
      }
    }
  }
}

}  // namespace qforge::kernels
