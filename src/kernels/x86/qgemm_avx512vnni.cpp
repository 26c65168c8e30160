// AVX-512 VNNI int8 GEMM microkernel: up to 8 rows x 32 columns (two packed
// panels), one zmm accumulator of 16 int32 per row and panel. Per group of 4
// k: one 64-byte load per panel, a 4-byte broadcast of A' per row, and
// vpdpbusd (u8 x s8, four products summed into each int32 lane, without
// saturation: exact, and the lane add wraps modulo 2^32 like the reference).
// With few rows the chains of dependent vpdpbusd are short, so the k loop
// keeps U independent accumulator sets (U * rows * panels >= 8 chains) and
// adds them at the end (integer adds: the order doesn't matter).
//
// The epilogue is the scalar reference's (ref/qgemm_ref.cpp) lane for lane:
// the same wrapping integer terms, float32 / float64 products rounded once
// (kQ8Double's float64 results from float32 where provably the same:
// requantize_q8_double), max/min in the reference's operand order
// (maxps/maxpd return the second operand for NaN, which is what
// `x > lo ? x : lo` does), and conversion rounding to nearest even. Partial
// tiles use masked loads and stores, so nothing outside the tile's m x n
// elements is read from bias or written. With QGemmTile::stream, whole
// vectors of an int32 or float C go out with non-temporal stores.
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/qgemm.h"

namespace qforge::kernels {
namespace {

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1);
}

inline int32_t load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Stores 16 int32 codes, already in [qmin, qmax], as bytes: the low byte of
// each is its code, s8 or u8 (vpmovdb truncates). Narrowed in a register and
// stored whole where the tile is: vpmovdb with a memory operand is several
// times slower per store on AMD.
inline void store_codes(uint8_t* c, __mmask16 m, __m512i q) {
  const __m128i b = _mm512_cvtepi32_epi8(q);
  if (m == 0xffff)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c), b);
  else
    _mm_mask_storeu_epi8(c, m, b);
}

// The per-column values of one panel of the tile (16 columns from j0),
// loaded once for all its rows: the stores to C could alias them, so the
// compiler would otherwise reload them per row. zp: some -b_zp' is non-zero
// (symmetric s8 weights have none, and the row term is then 0).
struct PanelCols {
  __m512i col_off, neg_b_zp;
  __m512 scale, fbias;
  bool zp;
};

template <QOutput OUT>
inline __attribute__((always_inline)) PanelCols panel_cols(const QGemmTile& t, int64_t j0) {
  PanelCols c;
  c.col_off = _mm512_loadu_si512(t.col_off + j0);
  c.neg_b_zp = _mm512_loadu_si512(t.neg_b_zp + j0);
  c.zp = _mm512_test_epi32_mask(c.neg_b_zp, c.neg_b_zp) != 0;
  c.scale = OUT != QOutput::kS32 ? _mm512_loadu_ps(t.scale + j0) : _mm512_setzero_ps();
  c.fbias = OUT == QOutput::kF32 && t.fbias != nullptr ? _mm512_loadu_ps(t.fbias + j0)
                                                       : _mm512_setzero_ps();
  return c;
}

// kQ8Double's rounded and clamped products, round_half_even(clamp(double(v)
// * double(scale), lo, hi)), in float32 where that gives the same integers,
// in float64 where it might not.
//
// For |v| <= 2^24 (exact in float32) the double product is exact (24 + 24
// significant bits), and p = float32(v * scale) is that product rounded to
// nearest, a monotone function that keeps every half-integer of [lo, hi]
// (|lo|, |hi| < 2^9) and lo and hi themselves. So clamping p to [lo, hi]
// gives the clamped product rounded, and if the clamped p is not a
// half-integer, both lie strictly between the same two half-integers
// (crossing one would take p onto it), and round to the same integer. The
// lanes that fail either test (rare: a half-integer p, or |v| > 2^24) are
// redone in double for the whole vector. NaN clamps to lo on both paths
// (max returns the second operand), as in the reference.
inline __attribute__((always_inline)) __m512i requantize_q8_double(__m512i v, __m512 scale,
                                                                   int32_t qmin, int32_t qmax,
                                                                   int32_t zp) {
  const __m512 lo = _mm512_set1_ps(static_cast<float>(qmin - zp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(qmax - zp));
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), scale);
  f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
  // |f - round(f)| == 0.5 (vreduceps: f less f rounded to nearest even).
  const __m512 frac = _mm512_abs_ps(_mm512_reduce_round_ps(f, _MM_FROUND_TO_NEAREST_INT, _MM_FROUND_NO_EXC));
  const __mmask16 redo =
      _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_EQ_OQ) |
      _mm512_cmpgt_epi32_mask(_mm512_abs_epi32(v), _mm512_set1_epi32(1 << 24));
  if (__builtin_expect(redo == 0, 1))
    return _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512d dlo = _mm512_set1_pd(static_cast<double>(qmin - zp));
  const __m512d dhi = _mm512_set1_pd(static_cast<double>(qmax - zp));
  __m256i half[2];
  for (int h = 0; h < 2; ++h) {
    const __m256i vi = h == 0 ? _mm512_castsi512_si256(v) : _mm512_extracti64x4_epi64(v, 1);
    const __m256 sh = h == 0 ? _mm512_castps512_ps256(scale)
                             : _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(scale), 1));
    __m512d d = _mm512_mul_pd(_mm512_cvtepi32_pd(vi), _mm512_cvtps_pd(sh));
    d = _mm512_min_pd(_mm512_max_pd(d, dlo), dhi);
    half[h] = _mm512_cvt_roundpd_epi32(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  return _mm512_inserti64x4(_mm512_castsi256_si512(half[0]), half[1], 1);
}

// Row i, columns [j0, j0 + 16) of the tile (m: the valid ones).
template <QOutput OUT>
inline __attribute__((always_inline)) void epilogue(const QGemmTile& t, int64_t i, int64_t j0,
                                                    __mmask16 m, __m512i acc, const PanelCols& c) {
  __m512i v = _mm512_add_epi32(acc, c.col_off);
  if (c.zp) v = _mm512_add_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(t.row_sum[i]), c.neg_b_zp));
  if (t.bias != nullptr)
    v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(m, t.bias + i * t.bias_ld + j0));
  const int64_t at = i * t.ldc + j0;
  switch (OUT) {
    case QOutput::kS32:
      if (t.stream && m == 0xffff)
        _mm512_stream_si512(reinterpret_cast<__m512i*>(static_cast<int32_t*>(t.c) + at), v);
      else
        _mm512_mask_storeu_epi32(static_cast<int32_t*>(t.c) + at, m, v);
      break;
    case QOutput::kF32: {
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), c.scale);
      if (t.fbias != nullptr) f = _mm512_add_ps(f, c.fbias);
      if (t.stream && m == 0xffff)
        _mm512_stream_ps(static_cast<float*>(t.c) + at, f);
      else
        _mm512_mask_storeu_ps(static_cast<float*>(t.c) + at, m, f);
      break;
    }
    case QOutput::kQ8Float: {
      const __m512 lo = _mm512_set1_ps(static_cast<float>(t.qmin - t.y_zp));
      const __m512 hi = _mm512_set1_ps(static_cast<float>(t.qmax - t.y_zp));
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), c.scale);
      f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
      const __m512i q = _mm512_add_epi32(
          _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
          _mm512_set1_epi32(t.y_zp));
      store_codes(static_cast<uint8_t*>(t.c) + at, m, q);
      break;
    }
    case QOutput::kQ8Double: {
      const __m512i q = _mm512_add_epi32(requantize_q8_double(v, c.scale, t.qmin, t.qmax, t.y_zp),
                                         _mm512_set1_epi32(t.y_zp));
      store_codes(static_cast<uint8_t*>(t.c) + at, m, q);
      break;
    }
  }
}

// acc += vpdpbusd(a (u8), b (s8)) in inline asm: g++ 12 compiles
// _mm512_dpbusd_epi32 in this loop with a vmovdqa32 copy of the accumulator
// before and after it (it does not keep the destructive operand in place),
// which held the kernel to ~60% of the instruction's peak (the peak
// benchmark, bench/bench_peak.cpp, uses asm for the same reason).
inline __attribute__((always_inline)) __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

// MR rows (the tile's m), NP panels of 16 columns, U interleaved k groups.
// The tile's fields are read from a local copy: the byte stores to C may
// alias *tp, and the epilogue would reload every field after every store.
template <int MR, int NP, int U>
void tile(const QGemmTile& tp) {
  const QGemmTile t = tp;
  __m512i acc[U][MR][NP];
  for (int u = 0; u < U; ++u)
    for (int i = 0; i < MR; ++i)
      for (int p = 0; p < NP; ++p) acc[u][i][p] = _mm512_setzero_si512();
  const int64_t groups = t.kp / kQGroup;
  const int64_t pstride = t.kp * kQPanel;
  const int8_t* b = t.b;
  const uint8_t* a = t.a;
  int64_t g = 0;
  for (; g + U <= groups; g += U) {
    for (int u = 0; u < U; ++u) {
      __m512i bv[NP];
      for (int p = 0; p < NP; ++p) bv[p] = _mm512_load_si512(b + p * pstride + (g + u) * 64);
      for (int i = 0; i < MR; ++i) {
        const __m512i av = _mm512_set1_epi32(load4(a + i * t.lda + (g + u) * kQGroup));
        for (int p = 0; p < NP; ++p) acc[u][i][p] = dpbusd(acc[u][i][p], av, bv[p]);
      }
    }
  }
  for (; g < groups; ++g) {
    __m512i bv[NP];
    for (int p = 0; p < NP; ++p) bv[p] = _mm512_load_si512(b + p * pstride + g * 64);
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_set1_epi32(load4(a + i * t.lda + g * kQGroup));
      for (int p = 0; p < NP; ++p) acc[0][i][p] = dpbusd(acc[0][i][p], av, bv[p]);
    }
  }
  for (int u = 1; u < U; ++u)
    for (int i = 0; i < MR; ++i)
      for (int p = 0; p < NP; ++p) acc[0][i][p] = _mm512_add_epi32(acc[0][i][p], acc[u][i][p]);
  auto store = [&](auto out) {
    constexpr QOutput kOut = decltype(out)::value;
    PanelCols cols[NP];
    for (int p = 0; p < NP; ++p) cols[p] = panel_cols<kOut>(t, p * kQPanel);
    for (int i = 0; i < MR; ++i)
      for (int p = 0; p < NP; ++p) {
        const int64_t j0 = p * kQPanel;
        epilogue<kOut>(t, i, j0, lanes(t.n - j0), acc[0][i][p], cols[p]);
      }
  };
  switch (t.out) {
    case QOutput::kS32:
      return store(std::integral_constant<QOutput, QOutput::kS32>{});
    case QOutput::kF32:
      return store(std::integral_constant<QOutput, QOutput::kF32>{});
    case QOutput::kQ8Float:
      return store(std::integral_constant<QOutput, QOutput::kQ8Float>{});
    case QOutput::kQ8Double:
      return store(std::integral_constant<QOutput, QOutput::kQ8Double>{});
  }
}

template <int NP>
void dispatch_rows(const QGemmTile& t) {
  switch (t.m) {
    case 1:
      return tile<1, NP, 4>(t);
    case 2:
      return tile<2, NP, 2>(t);
    case 3:
      return tile<3, NP, 2>(t);
    case 4:
      return tile<4, NP, 1>(t);
    case 5:
      return tile<5, NP, 1>(t);
    case 6:
      return tile<6, NP, 1>(t);
    case 7:
      return tile<7, NP, 1>(t);
    default:
      return tile<8, NP, 1>(t);
  }
}

// One window's codes from its 4 x NP accumulators (rows: its four rows'
// positions, for row_sum).
template <int NP>
inline __attribute__((always_inline)) void pool_store(const QPoolTile& t, int64_t p0,
                                                      const int64_t* rows, __m512i (&acc)[4][NP],
                                                      uint8_t* c) {
  // The column values are loaded here, not kept in registers.
  for (int p = 0; p < NP; ++p) {
    const int64_t j0 = (p0 + p) * kQPanel;
    const __mmask16 m = lanes(t.n - j0);
    if (t.zp) {
      const __m512i nz = _mm512_loadu_si512(t.neg_b_zp + j0);
      for (int q = 0; q < 4; ++q)
        acc[q][p] = _mm512_add_epi32(acc[q][p],
                                     _mm512_mullo_epi32(_mm512_set1_epi32(t.row_sum[rows[q]]), nz));
    }
    // No partial sum wraps (the driver's K bound), so the maximum is the
    // exact sums' one, and adding the column's terms after it is exact.
    __m512i v = _mm512_max_epi32(_mm512_max_epi32(acc[0][p], acc[1][p]),
                                 _mm512_max_epi32(acc[2][p], acc[3][p]));
    v = _mm512_add_epi32(v, _mm512_loadu_si512(t.col_off + j0));
    if (t.bias != nullptr) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(m, t.bias + j0));
    const __m512i q = _mm512_add_epi32(
        requantize_q8_double(v, _mm512_loadu_ps(t.scale + j0), t.qmin, t.qmax, t.y_zp),
        _mm512_set1_epi32(t.y_zp));
    store_codes(c + p * kQPanel, m, q);
  }
}

// The same, not inlined: with 16 accumulators (NP = 4), an inlined
// epilogue's constants, which the compiler keeps in registers across the
// windows, leave too few for B's vectors, and the k loop spilled them to
// the stack (cnn_bn's second conv 20% slower). (g++ 12 warns, wrongly, that
// the masked intrinsics' pass-through operand is uninitialized here.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
template <int NP>
__attribute__((noinline)) void pool_store_call(const QPoolTile& t, int64_t p0, const int64_t* rows,
                                               __m512i (&acc)[4][NP], uint8_t* c) {
  pool_store<NP>(t, p0, rows, acc, c);
}
#pragma GCC diagnostic pop

// QPoolTile's windows for NP panels from panel p0: the four rows of a
// window x NP panels are 4 x NP accumulators (16 at NP = 4), B's group
// loaded once for the four rows.
template <int NP>
void pool_panels(const QPoolTile& tp, int64_t p0) {
  const QPoolTile t = tp;  // as tile(): the code stores may alias *tp
  const int64_t pstride = t.kp * kQPanel, pw = t.ow / 2;
  const int8_t* const b = t.b + p0 * pstride;
  for (int64_t r = 0; r < t.pairs; ++r)
    for (int64_t j = 0; j < pw; ++j) {
      const int64_t row0 = 2 * r * t.ow + 2 * j;
      const int64_t rows[4] = {row0, row0 + 1, row0 + t.ow, row0 + t.ow + 1};
      const uint8_t* const a0 = t.a + 2 * r * t.row_step + 2 * j * t.col_step;
      const uint8_t* a[4] = {a0, a0 + t.col_step, a0 + t.row_step, a0 + t.row_step + t.col_step};
      __m512i acc[4][NP];
      for (int q = 0; q < 4; ++q)
        for (int p = 0; p < NP; ++p) acc[q][p] = _mm512_setzero_si512();
      const int8_t* bg = b;  // B's group, over the segments in turn
      for (int64_t s = 0; s < t.segs; ++s) {
        for (int64_t g = 0; g < t.seg_groups; ++g, bg += 64) {
          __m512i bv[NP];
          for (int p = 0; p < NP; ++p) bv[p] = _mm512_load_si512(bg + p * pstride);
          for (int q = 0; q < 4; ++q) {
            const __m512i av = _mm512_set1_epi32(load4(a[q] + g * kQGroup));
            for (int p = 0; p < NP; ++p) acc[q][p] = dpbusd(acc[q][p], av, bv[p]);
          }
        }
        for (int q = 0; q < 4; ++q) a[q] += t.seg_stride;
      }
      uint8_t* const c = t.c + (r * pw + j) * t.ldc + p0 * kQPanel;
      if constexpr (NP >= 3)
        pool_store_call<NP>(t, p0, rows, acc, c);
      else
        pool_store<NP>(t, p0, rows, acc, c);
    }
}

}  // namespace

void qu8_qs8_pool2x2__avx512vnni(const QPoolTile& t) {
  const int64_t panels = (t.n + kQPanel - 1) / kQPanel;
  int64_t p0 = 0;
  for (; p0 + 4 <= panels; p0 += 4) pool_panels<4>(t, p0);
  switch (panels - p0) {
    case 1:
      return pool_panels<1>(t, p0);
    case 2:
      return pool_panels<2>(t, p0);
    case 3:
      return pool_panels<3>(t, p0);
    default:
      return;
  }
}

void qu8_qs8_gemm_8x32c4__avx512vnni(const QGemmTile& t) {
  if (t.n > kQPanel)
    dispatch_rows<2>(t);
  else
    dispatch_rows<1>(t);
}

}  // namespace qforge::kernels
