// AVX-VNNI int8 GEMM microkernel (CPUs with the VEX-encoded 256-bit
// vpdpbusd but no AVX-512, e.g. Alder Lake; also selectable on AVX-512 CPUs
// with QFORGE_ISA=avxvnni): up to 6 rows x 16 columns (one packed panel),
// two ymm accumulators of 8 int32 per row. vpdpbusd adds the four u8 x s8
// products of each int32 lane to it without saturation, so it is exact for
// any weights (the lane add wraps modulo 2^32 like the reference), and
// needs no check of the packed weights, unlike vpmaddubsw.
//
// The tile loop and the epilogue are the AVX2 kernels' (qgemm_avx2_common.h),
// compiled here with AVX-VNNI.
#include <immintrin.h>

#include "kernels/qgemm.h"
#include "kernels/x86/qgemm_avx2_common.h"

namespace qforge::kernels {
namespace {

// A type, not a function pointer, so that each tile inlines it.
struct DpbusdDot {
  __m256i operator()(__m256i acc, __m256i a, __m256i b) const {
    return _mm256_dpbusd_avx_epi32(acc, a, b);
  }
};

}  // namespace

void qu8_qs8_gemm_6x16c4__avxvnni(const QGemmTile& t) {
  // With few rows the chains of dependent vpdpbusd are short: interleave k
  // groups over U accumulator sets (U * rows * 2 >= 8 chains).
  switch (t.m) {
    case 1:
      return tile_c4x8<1, 4>(t, DpbusdDot{});
    case 2:
      return tile_c4x8<2, 2>(t, DpbusdDot{});
    case 3:
      return tile_c4x8<3, 2>(t, DpbusdDot{});
    case 4:
      return tile_c4x8<4, 1>(t, DpbusdDot{});
    case 5:
      return tile_c4x8<5, 1>(t, DpbusdDot{});
    default:
      return tile_c4x8<6, 1>(t, DpbusdDot{});
  }
}

}  // namespace qforge::kernels
