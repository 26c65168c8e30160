// NEON int8 GEMM microkernel with the Armv8.2 dot product instructions
// (compiled with +dotprod; chosen at run time only where getauxval reports
// asimddp): up to 4 rows x 16 columns (one packed panel).
//
// udot multiplies u8 by u8: per int32 lane, acc += the sum of 4 byte
// products. The packed layout is udot's: a 16-byte piece of a group holds
// 4 columns x 4 k, one lane per column, and A's 4 bytes are broadcast to
// every lane. B' is s8, so it is shifted to u8 first, B'' = B' + 128 (the
// byte B' ^ 0x80), which adds 128 * A' per product:
//
//   sum_k A'B'' = sum_k A'B' + 128 * rowsum(A')
//
// so the kernel subtracts 128 * row_sum[i] (the packed row's sum, padding
// included: padding is zero) before the shared epilogue. The u32 lanes wrap
// modulo 2^32, and so does the correction, so the result is the reference's
// bit for bit. (sdot with A' - 128 would need colsum(B') instead, which the
// tile does not carry.)
//
// Registers: 4 rows x 4 accumulators, 4 pieces of B, the broadcast A.
#include <arm_neon.h>

#include <cstring>

#include "kernels/arm/qgemm_neon_epilogue.h"
#include "kernels/qgemm.h"

namespace qforge::kernels {
namespace {

template <int MR>
void tile(const QGemmTile& t) {
  uint32x4_t acc[MR][4];
  for (int i = 0; i < MR; ++i)
    for (int c = 0; c < 4; ++c) acc[i][c] = vdupq_n_u32(0);
  const uint8x16_t flip = vdupq_n_u8(0x80);
  const int64_t groups = t.kp / kQGroup;
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* bg = t.b + g * kQPanel * kQGroup;
    uint8x16_t b[4];
    for (int c = 0; c < 4; ++c) b[c] = veorq_u8(vreinterpretq_u8_s8(vld1q_s8(bg + 16 * c)), flip);
    for (int i = 0; i < MR; ++i) {
      uint32_t a4;
      std::memcpy(&a4, t.a + i * t.lda + g * kQGroup, sizeof a4);
      const uint8x16_t a = vreinterpretq_u8_u32(vdupq_n_u32(a4));
      for (int c = 0; c < 4; ++c) acc[i][c] = vdotq_u32(acc[i][c], a, b[c]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    // 128 * row_sum modulo 2^32, as unsigned arithmetic (no signed overflow).
    const uint32x4_t shift = vdupq_n_u32(static_cast<uint32_t>(t.row_sum[i]) << 7);
    int32x4_t dot[4];
    for (int c = 0; c < 4; ++c) dot[c] = vreinterpretq_s32_u32(vsubq_u32(acc[i][c], shift));
    epilogue_row(t, i, dot);
  }
}

}  // namespace

void qu8_qs8_gemm_4x16c4__neondot(const QGemmTile& t) {
  switch (t.m) {
    case 1:
      return tile<1>(t);
    case 2:
      return tile<2>(t);
    case 3:
      return tile<3>(t);
    default:
      return tile<4>(t);
  }
}

}  // namespace qforge::kernels
