// NEON int8 GEMM microkernel (base AArch64, no extensions): up to 3 rows x
// 16 columns (one packed panel).
//
// Exactness: A' is u8 and B' is s8, so each product lies in [255 * -128,
// 255 * 127] = [-32640, 32385] and fits an int16. Both operands are widened
// to int16, multiplied with vmulq_s16 (exact), and vpadalq_s16 adds adjacent
// pairs of products into int32 lanes of the accumulator, which wraps modulo
// 2^32 like the reference.
//
// Per group of 4 k, the 64 bytes of a panel are four 16-byte pieces of 4
// columns x 4 k; widened, each is two int16x8 (columns c, c+1: k0..k3 each),
// and A's 4 bytes widened and repeated (a0..a3 a0..a3). The pairwise add
// leaves per column two int32 lanes (k0+k1 and k2+k3), summed at the end by
// vpaddq_s32, which also puts the columns in order. So a row needs 8
// accumulators for 16 columns; 3 rows use 24 of the 32 vector registers.
//
// The epilogue is shared with the dotprod kernel (qgemm_neon_epilogue.h).
#include <arm_neon.h>

#include <cstring>

#include "kernels/arm/qgemm_neon_epilogue.h"
#include "kernels/qgemm.h"

namespace qforge::kernels {
namespace {

// A's 4 bytes at p as int16 (zero-extended), twice: a0 a1 a2 a3 a0 a1 a2 a3.
inline int16x8_t load_a4_s16(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return vreinterpretq_s16_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(v))));
}

template <int MR>
void tile(const QGemmTile& t) {
  int32x4_t acc[MR][8];
  for (int i = 0; i < MR; ++i)
    for (int c = 0; c < 8; ++c) acc[i][c] = vdupq_n_s32(0);
  const int64_t groups = t.kp / kQGroup;
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* bg = t.b + g * kQPanel * kQGroup;
    int16x8_t av[MR];
    for (int i = 0; i < MR; ++i) av[i] = load_a4_s16(t.a + i * t.lda + g * kQGroup);
    for (int c = 0; c < 4; ++c) {
      const int8x16_t b = vld1q_s8(bg + 16 * c);
      const int16x8_t b01 = vmovl_s8(vget_low_s8(b)), b23 = vmovl_high_s8(b);
      for (int i = 0; i < MR; ++i) {
        acc[i][2 * c] = vpadalq_s16(acc[i][2 * c], vmulq_s16(av[i], b01));
        acc[i][2 * c + 1] = vpadalq_s16(acc[i][2 * c + 1], vmulq_s16(av[i], b23));
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    const int32x4_t dot[4] = {vpaddq_s32(acc[i][0], acc[i][1]), vpaddq_s32(acc[i][2], acc[i][3]),
                              vpaddq_s32(acc[i][4], acc[i][5]), vpaddq_s32(acc[i][6], acc[i][7])};
    epilogue_row(t, i, dot);
  }
}

}  // namespace

void qu8_qs8_gemm_3x16c4__neon(const QGemmTile& t) {
  switch (t.m) {
    case 1:
      return tile<1>(t);
    case 2:
      return tile<2>(t);
    default:
      return tile<3>(t);
  }
}

}  // namespace qforge::kernels
