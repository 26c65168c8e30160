// Shared by the 256-bit int8 GEMM microkernels (qgemm_avx2.cpp, compiled
// with AVX2 flags, and qgemm_avxvnni.cpp, with AVX2 + AVX-VNNI): the
// epilogue for 8 columns, and the tile loop of the kernels whose product
// works on whole packed groups (vpmaddubsw + vpmaddwd, vpdpbusd).
//
// Everything here is in an anonymous namespace on purpose: each including
// file gets its own copy compiled with its own ISA flags, so the linker never
// merges an AVX-VNNI build of a function into the AVX2 kernel (an ODR
// violation with real consequences on a CPU without AVX-VNNI).
//
// The epilogue is the scalar reference's (ref/qgemm_ref.cpp) lane for lane
// (see qgemm_avx512vnni.cpp); partial tiles go through a buffer.
#pragma once

#include <immintrin.h>

#include <cstring>

#include "kernels/qgemm.h"

namespace qforge::kernels {
namespace {  // NOLINT(google-build-namespaces): see above

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
inline void epilogue8(const QGemmTile& t, int64_t i, int64_t j0, int64_t count, __m256i acc) {
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

// acc[i][h] (row i, columns 8h .. 8h + 7) of an MR x 16 tile, over the
// kp / 4 groups of a packed panel, with U independent accumulator sets over
// interleaved groups (short dependency chains when MR is small; integer adds,
// so the order doesn't matter). Per group, the panel's 64 bytes are two ymm
// of 8 columns x 4 k (lane c: the 4 bytes of column c), and row i's 4 bytes
// of A' are broadcast to every lane, so dot(acc, a, b) adds, per int32 lane,
// the 4 products of its column: lane c of the result is column c.
template <int MR, int U, typename Dot>
inline void tile_c4x8(const QGemmTile& t, Dot dot) {
  __m256i acc[U][MR][2];
  for (int u = 0; u < U; ++u)
    for (int i = 0; i < MR; ++i) acc[u][i][0] = acc[u][i][1] = _mm256_setzero_si256();
  const int64_t groups = t.kp / kQGroup;
  auto step = [&](int u, int64_t g) {
    const int8_t* bg = t.b + g * kQPanel * kQGroup;
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg + 32));
    for (int i = 0; i < MR; ++i) {
      const __m256i av = _mm256_set1_epi32(load4(t.a + i * t.lda + g * kQGroup));
      acc[u][i][0] = dot(acc[u][i][0], av, b0);
      acc[u][i][1] = dot(acc[u][i][1], av, b1);
    }
  };
  int64_t g = 0;
  for (; g + U <= groups; g += U)
    for (int u = 0; u < U; ++u) step(u, g + u);
  for (; g < groups; ++g) step(0, g);
  for (int u = 1; u < U; ++u)
    for (int i = 0; i < MR; ++i)
      for (int h = 0; h < 2; ++h) acc[0][i][h] = _mm256_add_epi32(acc[0][i][h], acc[u][i][h]);
  for (int i = 0; i < MR; ++i) {
    epilogue8(t, i, 0, t.n < 8 ? t.n : 8, acc[0][i][0]);
    if (t.n > 8) epilogue8(t, i, 8, t.n - 8, acc[0][i][1]);
  }
}

}  // namespace
}  // namespace qforge::kernels
