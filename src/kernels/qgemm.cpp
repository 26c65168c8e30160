// The int8 GEMM driver: argument checks, packing of B (once) and of A (per
// call), the per-call column terms of the zero-point folding, threading, and
// the kernel list. The arithmetic and the layouts are described in qgemm.h;
// the microkernels are in ref/qgemm_ref.cpp, x86/qgemm_*.cpp and arm/qgemm_*.cpp.
#include "kernels/qgemm.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>  // the x86-64 baseline: no per-file ISA flags needed
#endif

#include "qforge/error.h"
#include "kernels/scratch.h"
#include "kernels/tiling.h"
#include "qforge/thread_pool.h"

namespace qforge::kernels {
namespace {

constexpr std::align_val_t kAlign{64};
constexpr int64_t kMaxNr = 32;  // the widest tile of any kernel: column vectors are padded to it

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t round_up(int64_t a, int64_t b) {
  return ceil_div(a, b) * b;
}

[[noreturn]] void bad(const std::string& problem, const std::string& expected) {
  throw Error(Errc::kInvalidArgument, "qgemm", problem, expected);
}

void check_zero_point(const char* what, int32_t zp, bool is_signed) {
  const int32_t lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
  if (zp < lo || zp > hi)
    bad(std::string(what) + " is " + std::to_string(zp),
        std::string("a value of ") + (is_signed ? "s8 [-128, 127]" : "u8 [0, 255]"));
}

// The largest |x - zp| over the values x of an 8-bit type.
int64_t max_deviation(bool is_signed, int32_t zp) {
  return is_signed ? std::max<int64_t>(zp + 128, 127 - zp) : std::max<int64_t>(zp, 255 - zp);
}

thread_local Scratch t_pack_a;
thread_local Scratch t_row_sums;
thread_local Scratch t_cols;  // a call's column terms (Job::col_off, neg_b_zp)
thread_local Scratch t_col_scale, t_col_fbias;  // a call's scales and float bias (padded_columns)

// At least n zero row sums (never written but here).
const int32_t* zero_row_sums(size_t n) {
  thread_local std::vector<int32_t> zeros;
  if (zeros.size() < n) zeros.assign(n, 0);
  return zeros.data();
}

// Rows [0, rows) of A into packed A': kp bytes a row (zero padding past K),
// and their sums (modulo 2^32).
void pack_a_rows(const uint8_t* A, int64_t lda, bool a_signed, int64_t rows, int64_t K, int64_t kp,
                 uint8_t* dst, int32_t* row_sum) {
  const uint8_t flip = a_signed ? 0x80 : 0x00;  // s8 x + 128 == the byte x ^ 0x80 as u8
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = A + r * lda;
    uint8_t* d = dst + r * kp;
    uint64_t s = 0;
    int64_t k = 0;
#if defined(__SSE2__)
    const __m128i vflip = _mm_set1_epi8(static_cast<char>(flip)), zero = _mm_setzero_si128();
    __m128i acc = zero;
    for (; k + 16 <= K; k += 16) {
      const __m128i v =
          _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k)), vflip);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + k), v);
      acc = _mm_add_epi64(acc, _mm_sad_epu8(v, zero));  // two sums of 8 bytes
    }
    uint64_t lanes[2];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes), acc);
    s = lanes[0] + lanes[1];
#endif
    for (; k < K; ++k) {
      const auto v = static_cast<uint8_t>(src[k] ^ flip);
      d[k] = v;
      s += v;
    }
    for (k = K; k < kp; ++k) d[k] = 0;
    row_sum[r] = static_cast<int32_t>(static_cast<uint32_t>(s));
  }
}

// The sums (modulo 2^32) of rows [0, rows) of A, u8 with K a multiple of 4
// (or rows padded with zeros to it, K then rounded up): then A is already
// the packed layout (A' = A) and the kernel reads it in place.
void row_sums_u8(const uint8_t* A, int64_t lda, int64_t rows, int64_t K, int32_t* row_sum) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = A + r * lda;
    uint64_t s = 0;
    int64_t k = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    __m128i acc = zero;
    for (; k + 16 <= K; k += 16)
      acc = _mm_add_epi64(
          acc, _mm_sad_epu8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k)), zero));
    uint64_t lanes[2];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes), acc);
    s = lanes[0] + lanes[1];
#endif
    // 4 bytes at a time (a 3x3 kernel's 12-byte rows): the two byte pairs
    // summed as 16-bit lanes (at most 2 * 255 each), then the two lanes.
    for (; k + 4 <= K; k += 4) {
      uint32_t w;
      std::memcpy(&w, src + k, sizeof w);
      w = (w & 0x00ff00ffu) + ((w >> 8) & 0x00ff00ffu);
      s += (w & 0xffffu) + (w >> 16);
    }
    for (; k < K; ++k) s += src[k];
    row_sum[r] = static_cast<int32_t>(static_cast<uint32_t>(s));
  }
}

// Rows of A packed per chunk: at most this many bytes, so the chunk stays in L2.
constexpr int64_t kPackABytes = int64_t{256} << 10;

// Where C's rows are a multiple of 4 KiB apart (N = 1024 floats), a column
// panel's lines in every row fall in the same L1 sets, so a panel swept
// down a chunk of many rows evicts its own writes: there the panels are
// swept over blocks of this many rows (B then comes from L2, A from L1).
// Measured on the Transformer's ff1 (M = 2048, K = 256, N = 1024): 13% less
// time; rows that don't alias (N = 256, 512, 768) keep the chunk-long sweep,
// which is as fast or faster there.
constexpr int64_t kAliasedRows = 16;

// A cold C (QGemmArgs::cold_c) of 4-byte elements larger than this (a
// core's L2) is written with non-temporal stores (QGemmTile::stream): it
// can't stay in this core's cache anyway, and a normal store first reads
// each line it misses (read for ownership) from L3 or memory. (A scratch C
// the caller reads back at once is in cache: there they would only evict
// it.) The Transformer at batch 32 (qkv and ff1 write 6 and 8 MiB, proj and
// ff2 2 MiB per layer) on one thread: 29.4-30.6 -> 29.1-29.8 ms (6 pairs),
// and 32.7-42.9 -> 31.3-35.7 ms while the host was slow (5 pairs); on two
// 20.5-20.8 -> 17.8-18.8 ms while slow, the same (16.1-16.7) while fast.
// The int8 GEMM benchmark, which writes the same C every call (hot in
// cache), showed no difference.
constexpr int64_t kStreamBytes = int64_t{1} << 20;

// Below this many multiply-adds a GEMM runs on one thread: waking the pool
// costs microseconds.
constexpr int64_t kMinParallelMacs = int64_t{1} << 20;

struct Job {
  const QGemmKernel* kr = nullptr;
  const QGemmArgs* args = nullptr;
  int64_t M = 0, N = 0, K = 0, kp = 0;
  const int32_t* col_off = nullptr;  // np values each (see run)
  const int32_t* neg_b_zp = nullptr;
  bool row_term = true;  // some -b_zp' is non-zero (or the kernel needs row sums)
  // The epilogue's N-value columns, padded to kMaxNr (padded_columns).
  const float* scale = nullptr;
  const float* fbias = nullptr;
  int32_t qmin = 0, qmax = 255;
  size_t c_elem = 4;  // bytes per element of C
  bool stream = false;  // QGemmTile::stream (kStreamBytes)
};

// Columns [n0, n1) of C.
struct ColRange {
  int64_t n0 = 0, n1 = 0;
};

// C[m0:m1, the columns of cols[0..ncols)]; each range starts at a multiple of NR.
void run_tile(const Job& g, int64_t m0, int64_t m1, const ColRange* cols, int ncols) {
  const QGemmArgs& a = *g.args;
  const QGemmKernel& kr = *g.kr;
  const int64_t mr = kr.mr, nr = kr.nr, kp = g.kp;
  const int64_t chunk = std::max<int64_t>(mr, kPackABytes / std::max<int64_t>(kp, 1) / mr * mr);
  const auto* A = static_cast<const uint8_t*>(a.A);
  auto* C = static_cast<uint8_t*>(a.C);
  const int8_t* bdata = a.B->data();

  QGemmTile t;
  t.kp = kp;
  t.lda = kp;
  t.out = a.out;
  t.bias_ld = a.bias_ld;
  t.y_zp = a.y_zp;
  t.qmin = g.qmin;
  t.qmax = g.qmax;
  t.ldc = a.ldc;
  // u8 A with K a multiple of 4, or rows padded with zeros to kp, is read in
  // place: only its row sums are made (over kp bytes: the padding adds 0).
  const bool in_place = !a.a_signed && (g.K == kp || a.a_rows_padded);
  const int64_t row_block = (a.ldc * static_cast<int64_t>(g.c_elem)) % 4096 == 0
                                ? std::max<int64_t>(mr, kAliasedRows / mr * mr)
                                : chunk;
  if (in_place) t.lda = a.lda;
  t.stream = g.stream;
  for (int64_t ic = m0; ic < m1; ic += chunk) {
    const int64_t rows = std::min(chunk, m1 - ic);
    auto* rsum = t_row_sums.get<int32_t>(static_cast<size_t>(round_up(rows, mr)));
    const int32_t* rsums = rsum;
    const uint8_t* abuf;
    if (in_place) {
      abuf = A + ic * a.lda;
      if (g.row_term)
        row_sums_u8(abuf, a.lda, rows, kp, rsum);
      else  // row_sum * 0: the sums aren't needed
        rsums = zero_row_sums(static_cast<size_t>(round_up(rows, mr)));
    } else {
      auto* buf = t_pack_a.get<uint8_t>(static_cast<size_t>(round_up(rows, mr) * kp + 64));
      pack_a_rows(A + ic * a.lda, a.lda, a.a_signed, rows, g.K, kp, buf, rsum);
      abuf = buf;
    }
    for (int64_t ib = 0; ib < rows; ib += row_block) {
      const int64_t ib_end = std::min(rows, ib + row_block);
      for (const ColRange* r = cols; r != cols + ncols; ++r) {
        for (int64_t jr = r->n0; jr < r->n1; jr += nr) {
          t.n = std::min(nr, r->n1 - jr);
          t.b = bdata != nullptr ? bdata + (jr / kQPanel) * kp * kQPanel : nullptr;
          t.col_off = g.col_off + jr;
          t.neg_b_zp = g.neg_b_zp + jr;
          t.scale = g.scale != nullptr ? g.scale + jr : nullptr;
          t.fbias = g.fbias != nullptr ? g.fbias + jr : nullptr;
          for (int64_t ir = ib; ir < ib_end; ir += mr) {
            t.m = std::min(mr, ib_end - ir);
            t.a = abuf + ir * t.lda;
            t.row_sum = rsums + ir;
            t.bias = a.bias != nullptr ? a.bias + (ic + ir) * a.bias_ld + jr : nullptr;
            t.c = C + (static_cast<size_t>((ic + ir) * a.ldc + jr)) * g.c_elem;
            kr.tile(t);
          }
        }
      }
    }
  }
#if defined(__SSE2__)
  if (t.stream) _mm_sfence();  // this thread's non-temporal stores, visible before it reports done
#endif
}

void run_tile(const Job& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const ColRange r{n0, n1};
  run_tile(g, m0, m1, &r, 1);
}

// QGemmArgs::col_parts for `threads` threads: thread t's share of each part
// (whole panels of nr columns) in shares[t * parts .. (t + 1) * parts).
// False where the parts don't apply (no parts, or a boundary inside a panel).
bool part_shares(const QGemmArgs& a, int64_t N, int64_t nr, int threads,
                 std::vector<ColRange>& shares) {
  const int parts = a.col_part_count;
  if (a.col_parts == nullptr || parts < 1 || a.col_parts[0] != 0 || a.col_parts[parts] != N)
    return false;
  for (int p = 0; p < parts; ++p)
    if (a.col_parts[p + 1] <= a.col_parts[p] || a.col_parts[p] % nr != 0) return false;
  shares.assign(static_cast<size_t>(threads * parts), ColRange{});
  for (int p = 0; p < parts; ++p) {
    const int64_t c0 = a.col_parts[p], panels = ceil_div(a.col_parts[p + 1] - c0, nr);
    for (int t = 0; t < threads; ++t)
      shares[static_cast<size_t>(t * parts + p)] = {
          c0 + panels * t / threads * nr,
          std::min(a.col_parts[p + 1], c0 + panels * (t + 1) / threads * nr)};
  }
  return true;
}

// The set-up loops of a call, over its N columns: most of a small GEMM's
// set-up unless they vectorise, so compiled for AVX-512 and AVX2 as well
// (QFORGE_ISA_CLONES; integer arithmetic: the same results on every ISA).
//
// *lo, *hi = the least and greatest of v[0..n), n >= 1.
QFORGE_ISA_CLONES void minmax_i32(const int32_t* v, int64_t n, int32_t* lo, int32_t* hi) {
  int32_t l = v[0], h = v[0];
  for (int64_t j = 1; j < n; ++j) {
    l = std::min(l, v[j]);
    h = std::max(h, v[j]);
  }
  *lo = l;
  *hi = h;
}

// The column terms of the zero-point folding (qgemm.h) for j < N, from
// a_zp' = azp and b_zp'[j] = b_zp[j] - shift: col_off[j] = -a_zp' colsum[j]
// + K a_zp' b_zp'[j] and neg_b_zp[j] = -b_zp'[j], modulo 2^32 (computed in
// uint32, which wraps as the int32 sums do). True if some b_zp' is non-zero.
QFORGE_ISA_CLONES bool column_terms(const int32_t* b_zp, const int32_t* colsum, int64_t N,
                                      int64_t K, int32_t azp, int32_t shift, int32_t* col_off,
                                      int32_t* neg_b_zp) {
  const uint32_t za = static_cast<uint32_t>(azp);
  const uint32_t k_za = static_cast<uint32_t>(K) * za;
  int32_t any = 0;
  for (int64_t j = 0; j < N; ++j) {
    const int32_t bzp = b_zp[j] - shift;
    col_off[j] = static_cast<int32_t>(k_za * static_cast<uint32_t>(bzp) -
                                      za * static_cast<uint32_t>(colsum[j]));
    neg_b_zp[j] = -bzp;
    any |= bzp;
  }
  return any != 0;
}

// column_terms for a call, into the calling thread's scratch: col_off at
// cols[0, np), neg_b_zp at cols[np, 2 np), each padded with zeros past N to
// np (whole tiles of the widest kernel). True if some b_zp' is non-zero.
bool padded_column_terms(const QGemmArgs& a, int64_t np, int32_t** cols_out) {
  const QPackedB& B = *a.B;
  const int64_t N = B.N();
  int32_t* cols = t_cols.get<int32_t>(static_cast<size_t>(2 * np));
  const bool any = column_terms(a.b_zp, B.col_sums(), N, B.K(), a.a_zp + (a.a_signed ? 128 : 0),
                                B.b_signed() ? 0 : 128, cols, cols + np);
  std::fill(cols + N, cols + np, 0);
  std::fill(cols + np + N, cols + 2 * np, 0);
  *cols_out = cols;
  return any;
}

// An epilogue's N per-column values for kernels that read whole tiles of
// np: v itself where N == np, else a copy padded with zeros, in the calling
// thread's scratch `s` (read by every thread of this call).
const float* padded_columns(const float* v, int64_t N, int64_t np, Scratch& s) {
  if (N == np) return v;
  float* p = s.get<float>(static_cast<size_t>(np));
  std::fill(std::copy(v, v + N, p), p + np, 0.0f);
  return p;
}

void check_args(const QGemmArgs& a) {
  if (a.B == nullptr) bad("has no packed B", "a QPackedB from qpack_b");
  const int64_t K = a.B->K(), N = a.B->N();
  if (a.M < 0) bad("has M = " + std::to_string(a.M), "M >= 0");
  if (a.M == 0 || N == 0) return;
  if (a.C == nullptr) bad("has no output C", "a pointer to M x N elements");
  if (a.ldc < N)
    bad("has ldc " + std::to_string(a.ldc) + " < N = " + std::to_string(N), "ldc >= N");
  if (K > 0) {
    if (a.A == nullptr) bad("has no A", "a pointer to M x K elements");
    if (a.lda < K)
      bad("has lda " + std::to_string(a.lda) + " < K = " + std::to_string(K), "lda >= K");
    if (a.a_rows_padded && (a.a_signed || a.lda < a.B->kp()))
      bad("has a_rows_padded with " + std::string(a.a_signed ? "s8 A" : "lda < kp"),
          "u8 A with lda >= K rounded up to a multiple of 4");
  }
  if (a.b_zp == nullptr) bad("has no b_zp", "N zero points of B");
  check_zero_point("a_zp", a.a_zp, a.a_signed);
  // The extremes of the N zero points: one check each (per column, this
  // loop cost more than the rest of a small GEMM's set-up).
  int32_t bz_lo = 0, bz_hi = 0;
  minmax_i32(a.b_zp, N, &bz_lo, &bz_hi);
  check_zero_point("b_zp", bz_lo, a.B->b_signed());
  check_zero_point("b_zp", bz_hi, a.B->b_signed());
  if (a.out != QOutput::kS32 && a.scale == nullptr) bad("has no scale", "N scales for this output");
  if (a.out == QOutput::kQ8Double || a.out == QOutput::kQ8Float)
    check_zero_point("y_zp", a.y_zp, a.y_signed);
  if (a.bias_ld < 0) bad("has bias_ld " + std::to_string(a.bias_ld), "bias_ld >= 0");
}

void run(const QGemmKernel& chosen, const QGemmArgs& a, ThreadPool* pool) {
  check_args(a);
  const QPackedB& B = *a.B;
  // A vpmaddubsw kernel only where no pair of these weights can saturate.
  const QGemmKernel& kr =
      chosen.exact != nullptr && !B.maddubs_exact() ? *chosen.exact : chosen;
  const int64_t M = a.M, N = B.N(), K = B.K();
  if (M == 0 || N == 0) return;

  Job g;
  g.kr = &kr;
  g.args = &a;
  g.M = M;
  g.N = N;
  g.K = K;
  g.kp = B.kp();
  const int64_t np = round_up(N, kMaxNr);
  // The column terms of the zero-point folding (qgemm.h), padded with zeros,
  // in the calling thread's scratch (read by every thread of this call).
  int32_t* cols = nullptr;
  const bool any_bzp = padded_column_terms(a, np, &cols);
  g.col_off = cols;
  g.neg_b_zp = cols + np;
  g.row_term = kr.needs_row_sums || any_bzp;
  if (a.out != QOutput::kS32) g.scale = padded_columns(a.scale, N, np, t_col_scale);
  if (a.out == QOutput::kF32 && a.fbias != nullptr)
    g.fbias = padded_columns(a.fbias, N, np, t_col_fbias);
  g.qmin = a.y_signed ? -128 : 0;
  g.qmax = a.y_signed ? 127 : 255;
  g.c_elem = a.out == QOutput::kQ8Double || a.out == QOutput::kQ8Float ? 1 : 4;
  g.stream = a.cold_c && g.c_elem == 4 && M * a.ldc * 4 > kStreamBytes &&
             reinterpret_cast<uintptr_t>(a.C) % 64 == 0 && a.ldc % 16 == 0;  // aligned vectors

  // Rows first where A is read in place (u8 rows of kp bytes): nothing is
  // repacked per tile then, and each thread keeps its own rows (tiling.h).
  const bool in_place = !a.a_signed && (K == B.kp() || a.a_rows_padded);
  const bool parallel = M * N * std::max<int64_t>(K, 1) >= kMinParallelMacs;
  const int threads = pool != nullptr ? pool->threads() : 1;
  thread_local std::vector<ColRange> shares;
  if (parallel && threads > 1 && part_shares(a, N, kr.nr, threads, shares)) {
    const int parts = a.col_part_count;
    const ColRange* sh = shares.data();  // the caller's (shares is per thread)
    pool->parallel_for(threads, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) run_tile(g, 0, M, sh + t * parts, parts);
    });
    return;
  }
  for_each_tile(M, N, kr.mr, kr.nr, 16, pool, parallel,
                [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { run_tile(g, m0, m1, n0, n1); },
                in_place);
}

const QGemmKernel kRefKernel{"qu8_qs8_gemm_4x16c4__ref", 4, 16, qu8_qs8_gemm_4x16c4__ref};
#if defined(__x86_64__)
const QGemmKernel kAvx2Kernel{"qu8_qs8_gemm_3x16c4__avx2", 3, 16, qu8_qs8_gemm_3x16c4__avx2};
const QGemmKernel kAvx2MaddubsKernel{"qu8_qs8_gemm_4x16c4__avx2_maddubs", 4, 16,
                                     qu8_qs8_gemm_4x16c4__avx2_maddubs, &kAvx2Kernel};
const QGemmKernel kAvxVnniKernel{"qu8_qs8_gemm_6x16c4__avxvnni", 6, 16,
                                 qu8_qs8_gemm_6x16c4__avxvnni};
const QGemmKernel kAvx512VnniKernel{"qu8_qs8_gemm_8x32c4__avx512vnni", 8, 32,
                                    qu8_qs8_gemm_8x32c4__avx512vnni, nullptr, false,
                                    qu8_qs8_pool2x2__avx512vnni};
bool has_avx2(const CpuFeatures& f) {
  return f.avx2 && f.fma && f.f16c;
}
bool has_avxvnni(const CpuFeatures& f) {
  return has_avx2(f) && f.avxvnni;
}
bool has_avx512vnni(const CpuFeatures& f) {
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
}
#elif defined(__aarch64__)
const QGemmKernel kNeonKernel{"qu8_qs8_gemm_3x16c4__neon", 3, 16, qu8_qs8_gemm_3x16c4__neon};
const QGemmKernel kNeonDotKernel{"qu8_qs8_gemm_4x16c4__neondot", 4, 16,
                                 qu8_qs8_gemm_4x16c4__neondot, nullptr, true};
#endif

}  // namespace

// ---- QPackedB ----

void QPackedB::Free::operator()(int8_t* p) const noexcept {
  ::operator delete(p, kAlign);
}

QPackedB qpack_b(bool b_signed, bool trans_b, int64_t K, int64_t N, const void* B, int64_t ldb) {
  if (K < 0 || N < 0)
    throw Error(
        Errc::kInvalidArgument, "qpack_b",
        "has a negative dimension (K=" + std::to_string(K) + ", N=" + std::to_string(N) + ")",
        "K, N >= 0");
  const int64_t row = trans_b ? K : N;  // the stored row length
  if (K > 0 && N > 0) {
    if (B == nullptr) throw Error(Errc::kInvalidArgument, "qpack_b", "has no B", "K x N values");
    if (ldb < row)
      throw Error(
          Errc::kInvalidArgument, "qpack_b",
          "has ldb " + std::to_string(ldb) + ", shorter than a row (" + std::to_string(row) + ")",
          "ldb >= the row length of the stored matrix");
  }
  QPackedB p;
  p.K_ = K;
  p.N_ = N;
  p.kp_ = round_up(K, kQGroup);
  p.b_signed_ = b_signed;
  const int64_t panels = ceil_div(N, kQPanel);
  p.col_sums_.assign(static_cast<size_t>(round_up(N, kMaxNr)), 0);
  const size_t bytes = static_cast<size_t>(panels * p.kp_ * kQPanel);
  if (bytes == 0) return p;
  p.data_.reset(static_cast<int8_t*>(::operator new(bytes, kAlign)));
  std::memset(p.data_.get(), 0, bytes);
  const auto* src = static_cast<const uint8_t*>(B);
  const uint8_t flip = b_signed ? 0x00 : 0x80;  // u8 x - 128 == the byte x ^ 0x80 as s8
  // Row-major B (not transposed): whole 4 x 16 blocks (a group of a full
  // panel) are interleaved with vector unpacks, the rest below one byte at
  // a time. (Attention's matmuls pack B on every call: this is their cost.)
  int64_t n_vec = 0, k_vec = 0;  // columns / rows done by the vector loop
#if defined(__SSE2__)
  if (!trans_b) {
    n_vec = N / kQPanel * kQPanel;
    k_vec = K / kQGroup * kQGroup;
    const __m128i vflip = _mm_set1_epi8(static_cast<char>(flip));
    auto load_row = [&](int64_t k, int64_t n0) {
      return _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k * ldb + n0)),
                           vflip);
    };
    for (int64_t n0 = 0; n0 < n_vec; n0 += kQPanel) {
      int8_t* panel = p.data_.get() + (n0 / kQPanel) * p.kp_ * kQPanel;
      for (int64_t k0 = 0; k0 < k_vec; k0 += kQGroup) {
        const __m128i r0 = load_row(k0, n0), r1 = load_row(k0 + 1, n0), r2 = load_row(k0 + 2, n0),
                      r3 = load_row(k0 + 3, n0);
        // (r0[j], r1[j]) pairs, then (r0[j], r1[j], r2[j], r3[j]) quads:
        // column j's four bytes, columns in order.
        const __m128i lo01 = _mm_unpacklo_epi8(r0, r1), hi01 = _mm_unpackhi_epi8(r0, r1);
        const __m128i lo23 = _mm_unpacklo_epi8(r2, r3), hi23 = _mm_unpackhi_epi8(r2, r3);
        auto* g = reinterpret_cast<__m128i*>(panel + k0 * kQPanel);
        _mm_storeu_si128(g + 0, _mm_unpacklo_epi16(lo01, lo23));
        _mm_storeu_si128(g + 1, _mm_unpackhi_epi16(lo01, lo23));
        _mm_storeu_si128(g + 2, _mm_unpacklo_epi16(hi01, hi23));
        _mm_storeu_si128(g + 3, _mm_unpackhi_epi16(hi01, hi23));
      }
    }
  }
#endif
  for (int64_t n = 0; n < N; ++n) {
    int8_t* panel = p.data_.get() + (n / kQPanel) * p.kp_ * kQPanel;
    const int64_t j = n % kQPanel;
    for (int64_t k = n < n_vec ? k_vec : 0; k < K; ++k) {
      const uint8_t byte = trans_b ? src[n * ldb + k] : src[k * ldb + n];
      panel[(k / kQGroup) * kQPanel * kQGroup + j * kQGroup + k % kQGroup] =
          static_cast<int8_t>(byte ^ flip);
    }
  }
  // Column sums of B' (mod 2^32), row by row where B is row-major.
  uint32_t* cs = reinterpret_cast<uint32_t*>(p.col_sums_.data());
  if (!trans_b) {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n)
        cs[n] += static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(src[k * ldb + n] ^ flip)));
  } else {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        cs[n] += static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(src[n * ldb + k] ^ flip)));
  }
  // The pairs vpmaddubsw sums: bytes 2i, 2i + 1 of the packed data (qgemm.h).
  const int8_t* d = p.data_.get();
  bool exact = true;  // (no early exit: the loop vectorises)
  for (size_t i = 0; i < bytes; i += 2) exact &= maddubs_pair_exact(d[i], d[i + 1]);
  p.maddubs_exact_ = exact;
  return p;
}

// ---- entry points ----

void qgemm(const QGemmArgs& args, ThreadPool* pool) {
  run(*kernels().qgemm, args, pool);
}

bool qgemm_has_pool2x2() {
  return kernels().qgemm->pool2x2 != nullptr;
}

bool qgemm_pool2x2(const QGemmArgs& a, int64_t ow, int64_t pairs, const QImplicitRows* rows) {
  const QGemmKernel& kr = *kernels().qgemm;
  if (kr.pool2x2 == nullptr || a.out != QOutput::kQ8Double || a.a_signed || a.B == nullptr ||
      (a.bias != nullptr && a.bias_ld != 0) || a.B->K() > 16384 ||
      !(a.B->K() == a.B->kp() || a.a_rows_padded))
    return false;
  if (rows != nullptr &&
      (rows->segs < 1 || a.B->K() % rows->segs != 0 || a.B->K() / rows->segs % kQGroup != 0))
    return false;
  if (ow < 0 || pairs < 0 || a.M != 2 * pairs * ow)
    bad("has M = " + std::to_string(a.M) + " for " + std::to_string(pairs) + " pairs of rows of " +
            std::to_string(ow),
        "M = 2 x pairs x ow (a 2 x 2 pool's rows)");
  check_args(a);
  const QPackedB& B = *a.B;
  const int64_t N = B.N(), kp = B.kp();
  const int64_t np = round_up(N, kMaxNr);
  int32_t* cols = nullptr;
  QPoolTile t;
  t.zp = padded_column_terms(a, np, &cols);
  if (t.zp && rows != nullptr) return false;  // the row sums would need the rows
  if (pairs == 0 || ow < 2 || N == 0) return true;
  const float* scale = padded_columns(a.scale, N, np, t_col_scale);
  if (t.zp) {
    int32_t* rsum = t_row_sums.get<int32_t>(static_cast<size_t>(a.M));
    row_sums_u8(static_cast<const uint8_t*>(a.A), a.lda, a.M, kp, rsum);
    t.row_sum = rsum;
  }
  t.a = static_cast<const uint8_t*>(a.A);
  if (rows != nullptr) {
    t.col_step = rows->col_step;
    t.row_step = rows->row_step;
    t.segs = rows->segs;
    t.seg_stride = rows->seg_stride;
  } else {
    t.col_step = a.lda;
    t.row_step = ow * a.lda;
  }
  t.seg_groups = kp / kQGroup / t.segs;
  t.b = B.data();
  t.kp = kp;
  t.n = N;
  t.ow = ow;
  t.pairs = pairs;
  t.col_off = cols;
  t.neg_b_zp = cols + np;
  t.bias = a.bias;
  t.scale = scale;
  t.y_zp = a.y_zp;
  t.qmin = a.y_signed ? -128 : 0;
  t.qmax = a.y_signed ? 127 : 255;
  t.c = static_cast<uint8_t*>(a.C);
  t.ldc = a.ldc;
  kr.pool2x2(t);
  return true;
}

void qgemm_with(const QGemmKernel& kernel, const QGemmArgs& args, ThreadPool* pool) {
  run(kernel, args, pool);
}

std::vector<const QGemmKernel*> qgemm_kernels(const CpuFeatures& cpu) {
  std::vector<const QGemmKernel*> r{&kRefKernel};
#if defined(__x86_64__)
  if (has_avx2(cpu)) {
    r.push_back(&kAvx2Kernel);
    r.push_back(&kAvx2MaddubsKernel);
  }
  if (has_avxvnni(cpu)) r.push_back(&kAvxVnniKernel);
  if (has_avx512vnni(cpu)) r.push_back(&kAvx512VnniKernel);
#elif defined(__aarch64__)
  if (cpu.neon) r.push_back(&kNeonKernel);
  if (cpu.neon && cpu.dotprod) r.push_back(&kNeonDotKernel);
#else
  (void)cpu;
#endif
  return r;
}

const QGemmKernel* qgemm_kernel_for(Isa isa, const CpuFeatures& cpu) {
#if defined(__x86_64__)
  // Without VNNI: vpmaddubsw on weights that can't saturate it, else the
  // exact vpmaddwd kernel (kAvx2MaddubsKernel.exact). AVX-512 without
  // AVX512_VNNI has no faster int8 product than AVX2's (or AVX-VNNI's).
  if (isa == Isa::kAvx512 && has_avx512vnni(cpu)) return &kAvx512VnniKernel;
  if (isa == Isa::kAvxVnni || (isa == Isa::kAvx512 && has_avxvnni(cpu))) return &kAvxVnniKernel;
  if (isa == Isa::kAvx2 || isa == Isa::kAvx512) return &kAvx2MaddubsKernel;
#elif defined(__aarch64__)
  if (isa == Isa::kDotprod && cpu.dotprod) return &kNeonDotKernel;
  if (isa == Isa::kNeon || isa == Isa::kDotprod) return &kNeonKernel;
#else
  (void)isa;
  (void)cpu;
#endif
  return &kRefKernel;
}

void transpose_u8(const uint8_t* src, int64_t rows, int64_t cols, int64_t lds, uint8_t* dst,
                  int64_t ldd) {
  int64_t r0 = 0;
#if defined(__SSE2__)
  // 16 x 16 blocks: four rounds of byte, word, dword and qword interleaves.
  for (; r0 + 16 <= rows; r0 += 16) {
    int64_t c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16) {
      __m128i x[16], y[16];
      for (int i = 0; i < 16; ++i)
        x[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (r0 + i) * lds + c0));
      for (int i = 0; i < 8; ++i) {
        y[i] = _mm_unpacklo_epi8(x[2 * i], x[2 * i + 1]);
        y[i + 8] = _mm_unpackhi_epi8(x[2 * i], x[2 * i + 1]);
      }
      for (int i = 0; i < 8; ++i) {
        x[i] = _mm_unpacklo_epi16(y[2 * i], y[2 * i + 1]);
        x[i + 8] = _mm_unpackhi_epi16(y[2 * i], y[2 * i + 1]);
      }
      for (int i = 0; i < 8; ++i) {
        y[i] = _mm_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
        y[i + 8] = _mm_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
      }
      for (int i = 0; i < 8; ++i) {
        x[i] = _mm_unpacklo_epi64(y[2 * i], y[2 * i + 1]);
        x[i + 8] = _mm_unpackhi_epi64(y[2 * i], y[2 * i + 1]);
      }
      // x[i] now holds column c0 + perm(i): the interleaves leave the
      // columns in bit-reversed order.
      for (int i = 0; i < 16; ++i) {
        const int c = ((i & 1) << 3) | ((i & 2) << 1) | ((i & 4) >> 1) | ((i & 8) >> 3);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (c0 + c) * ldd + r0), x[i]);
      }
    }
    for (int64_t c = c0; c < cols; ++c)
      for (int64_t r = r0; r < r0 + 16; ++r) dst[c * ldd + r] = src[r * lds + c];
  }
#endif
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = r0; r < rows; ++r) dst[c * ldd + r] = src[r * lds + c];
}

bool exact_in_int32(int64_t K, bool a_signed, int32_t a_zp, bool b_signed, const int32_t* b_zp,
                    int64_t n_zp, int64_t bias_abs_max) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (K < 0 || bias_abs_max < 0 || bias_abs_max > kMax) return false;
  int64_t db = 0;  // the largest |B - b_zp|: at the smallest or the largest zero point
  if (n_zp > 0) {
    const auto [lo, hi] = std::minmax_element(b_zp, b_zp + n_zp);
    db = std::max(max_deviation(b_signed, *lo), max_deviation(b_signed, *hi));
  }
  const int64_t per_k = max_deviation(a_signed, a_zp) * db;  // <= 255 * 255
  if (per_k == 0) return true;
  return K <= (kMax - bias_abs_max) / per_k;
}

}  // namespace qforge::kernels
