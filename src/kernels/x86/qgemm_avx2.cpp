// AVX2 int8 GEMM microkernels, one packed panel (16 columns) wide.
//
// qu8_qs8_gemm_3x16c4__avx2, exact for any weights: AVX2's byte multiply-add
// (vpmaddubsw) sums two u8 x s8 products into an int16 with saturation, and
// 255 * -128 * 2 = -65280 doesn't fit, so it is not used here. Both operands
// are widened to int16 instead (vpmovzxbw / vpmovsxbw) and multiplied with
// vpmaddwd, which sums two int16 products into an int32: |a * b| <= 255 * 128,
// so the pair sum is exact, and the int32 accumulation wraps modulo 2^32
// like the reference.
//
// Per group of 4 k, the 64 bytes of a panel are four 16-byte pieces of 4
// columns x 4 k; widened, each is a ymm of 16 int16 (column c: k0..k3), and
// A's 4 bytes broadcast as int16 (a0..a3 repeated). vpmaddwd gives, per
// column, two int32 lanes (k0k1 and k2k3), added up at the end by vphaddd
// (and a vpermq to put the columns back in order). So a row needs 4
// accumulators for 16 columns; 3 rows use 12 of the 16 ymm registers.
//
//
// qu8_qs8_gemm_4x16c4__avx2_maddubs, twice the products per instruction:
// vpmaddubsw on the packed bytes as they are (u8 A' x s8 B', bytes 2i and
// 2i + 1 summed into int16 lane i, with saturation), then vpmaddwd with
// ones to add each column's two int16 pair sums into its int32 lane. Exact
// only when no pair sum can leave int16, which qpack_b checks on the weights
// (QPackedB::maddubs_exact(), the rule in qgemm.h); qgemm() runs the kernel
// above instead when it can't be sure (QGemmKernel::exact).
//
// The epilogue is the scalar reference's (qgemm_avx2_common.h).
#include <immintrin.h>

#include <cstring>

#include "kernels/qgemm.h"
#include "kernels/x86/qgemm_avx2_common.h"

namespace qforge::kernels {
namespace {

template <int MR>
void tile(const QGemmTile& t) {
  __m256i acc[MR][4];
  for (int i = 0; i < MR; ++i)
    for (int c = 0; c < 4; ++c) acc[i][c] = _mm256_setzero_si256();
  const int64_t groups = t.kp / kQGroup;
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* bg = t.b + g * kQPanel * kQGroup;
    __m256i av[MR];
    for (int i = 0; i < MR; ++i)
      av[i] = _mm256_cvtepu8_epi16(_mm_set1_epi32(load4(t.a + i * t.lda + g * kQGroup)));
    for (int c = 0; c < 4; ++c) {
      const __m256i bw =
          _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bg + 16 * c)));
      for (int i = 0; i < MR; ++i)
        acc[i][c] = _mm256_add_epi32(acc[i][c], _mm256_madd_epi16(av[i], bw));
    }
  }
  for (int i = 0; i < MR; ++i) {
    // hadd gives columns [0 1 4 5 | 2 3 6 7] of each half; vpermq restores the order.
    const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][0], acc[i][1]), 0xD8);
    const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][2], acc[i][3]), 0xD8);
    epilogue8(t, i, 0, t.n < 8 ? t.n : 8, lo);
    if (t.n > 8) epilogue8(t, i, 8, t.n - 8, hi);
  }
}

// acc + the 4 products of each column of b (8 columns x 4 k) with a's 4
// bytes: vpmaddubsw (pairs into int16; exact only on weights whose pairs
// can't saturate), then vpmaddwd by ones (pairs of int16 into int32, exact).
// (A type, not a function pointer, so that each tile inlines it.)
struct MaddubsDot {
  __m256i operator()(__m256i acc, __m256i a, __m256i b) const {
    const __m256i pairs = _mm256_maddubs_epi16(a, b);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

}  // namespace

void qu8_qs8_gemm_4x16c4__avx2_maddubs(const QGemmTile& t) {
  switch (t.m) {
    case 1:
      return tile_c4x8<1, 4>(t, MaddubsDot{});
    case 2:
      return tile_c4x8<2, 2>(t, MaddubsDot{});
    case 3:
      return tile_c4x8<3, 1>(t, MaddubsDot{});
    default:
      return tile_c4x8<4, 1>(t, MaddubsDot{});
  }
}

void qu8_qs8_gemm_3x16c4__avx2(const QGemmTile& t) {
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
