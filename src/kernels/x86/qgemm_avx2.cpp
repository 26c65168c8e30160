// AVX2 int8 GEMM microkernel: up to 3 rows x 16 columns (one packed panel).
//
// Exactness: AVX2's byte multiply-add (vpmaddubsw) sums two u8 x s8 products
// into an int16 with saturation, and 255 * -128 * 2 = -65280 doesn't fit, so
// it is not used. Both operands are widened to int16 instead (vpmovzxbw /
// vpmovsxbw) and multiplied with vpmaddwd, which sums two int16 products
// into an int32: |a * b| <= 255 * 128, so the pair sum is exact, and the
// int32 accumulation wraps modulo 2^32 like the reference.
//
// Per group of 4 k, the 64 bytes of a panel are four 16-byte pieces of 4
// columns x 4 k; widened, each is a ymm of 16 int16 (column c: k0..k3), and
// A's 4 bytes broadcast as int16 (a0..a3 repeated). vpmaddwd gives, per
// column, two int32 lanes (k0k1 and k2k3), added up at the end by vphaddd
// (and a vpermq to put the columns back in order). So a row needs 4
// accumulators for 16 columns; 3 rows use 12 of the 16 ymm registers.
//
// The epilogue is the scalar reference's (ref/qgemm_ref.cpp) lane for lane
// (see qgemm_avx512vnni.cpp); partial tiles go through a 16-element buffer.
#include <immintrin.h>

#include <cstring>

#include "kernels/qgemm.h"

namespace qforge::kernels {
namespace {

inline int32_t load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// 8 int32 codes in [qmin, qmax] -> 8 bytes (exact: no saturation happens).
inline void store_codes8(uint8_t* c, __m256i q, int64_t count) {
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  // The codes fit int16; as bytes, take the low byte of each (s8 and u8 alike).
  const __m128i bytes =
      _mm_shuffle_epi8(w, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1));
  if (count == 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(c), bytes);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    std::memcpy(c, tmp, static_cast<size_t>(count));
  }
}

template <typename T, typename V>
inline void store8(T* c, V v, int64_t count) {
  if (count == 8) {
    std::memcpy(c, &v, sizeof v);
  } else {
    std::memcpy(c, &v, static_cast<size_t>(count) * sizeof(T));
  }
}

// Row i, columns [j0, j0 + 8) of the tile; count of them valid (1..8).
void epilogue8(const QGemmTile& t, int64_t i, int64_t j0, int64_t count, __m256i acc) {
  __m256i v =
      _mm256_add_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.col_off + j0)));
  v = _mm256_add_epi32(
      v, _mm256_mullo_epi32(_mm256_set1_epi32(t.row_sum[i]),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.neg_b_zp + j0))));
  if (t.bias != nullptr) {
    alignas(32) int32_t b[8] = {};
    std::memcpy(b, t.bias + i * t.bias_ld + j0, static_cast<size_t>(count) * sizeof(int32_t));
    v = _mm256_add_epi32(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(b)));
  }
  const int64_t at = i * t.ldc + j0;
  switch (t.out) {
    case QOutput::kS32:
      store8(static_cast<int32_t*>(t.c) + at, v, count);
      break;
    case QOutput::kF32: {
      __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(t.scale + j0));
      if (t.fbias != nullptr) f = _mm256_add_ps(f, _mm256_loadu_ps(t.fbias + j0));
      store8(static_cast<float*>(t.c) + at, f, count);
      break;
    }
    case QOutput::kQ8Float: {
      const __m256 lo = _mm256_set1_ps(static_cast<float>(t.qmin - t.y_zp));
      const __m256 hi = _mm256_set1_ps(static_cast<float>(t.qmax - t.y_zp));
      __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(t.scale + j0));
      f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
      f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256i q = _mm256_add_epi32(_mm256_cvttps_epi32(f), _mm256_set1_epi32(t.y_zp));
      store_codes8(static_cast<uint8_t*>(t.c) + at, q, count);
      break;
    }
    case QOutput::kQ8Double: {
      const __m256d lo = _mm256_set1_pd(static_cast<double>(t.qmin - t.y_zp));
      const __m256d hi = _mm256_set1_pd(static_cast<double>(t.qmax - t.y_zp));
      __m128i half[2];
      for (int h = 0; h < 2; ++h) {
        const __m128i vi = h == 0 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
        __m256d d = _mm256_mul_pd(_mm256_cvtepi32_pd(vi),
                                  _mm256_cvtps_pd(_mm_loadu_ps(t.scale + j0 + 4 * h)));
        d = _mm256_min_pd(_mm256_max_pd(d, lo), hi);
        d = _mm256_round_pd(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        half[h] = _mm256_cvttpd_epi32(d);
      }
      const __m256i q =
          _mm256_add_epi32(_mm256_set_m128i(half[1], half[0]), _mm256_set1_epi32(t.y_zp));
      store_codes8(static_cast<uint8_t*>(t.c) + at, q, count);
      break;
    }
  }
}

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

}  // namespace

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
