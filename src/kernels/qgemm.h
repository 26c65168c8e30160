// 8-bit integer GEMM for the integer ONNX ops (MatMulInteger, QLinearMatMul,
// ConvInteger, QLinearConv, com.microsoft MatMulIntegerToFloat,
// DynamicQuantizeMatMul, QGemm):
//
//   acc[m, n] = sum_k (A[m, k] - a_zp) * (B[k, n] - b_zp[n])         (int32)
//
// A (activations) is u8 or s8, row-major M x K, one zero point. B (weights)
// is s8 or u8, K x N, one zero point per column (a per-tensor zero point is
// N equal values), packed once into a QPackedB. The accumulator then goes
// through one of the epilogues of QOutput (raw int32, requantized to 8 bits,
// or dequantized to float), fused into the kernel while the tile is in
// registers.
//
// Arithmetic. Every kernel multiplies unsigned by signed bytes, so the
// operands are shifted into that form first: A' = A + 128 when A is s8
// (else A' = A), B' = B - 128 when B is u8 (else B' = B), with the zero
// points shifted the same way (a_zp' = a_zp + 128, b_zp' = b_zp - 128), so
// (A - a_zp)(B - b_zp) = (A' - a_zp')(B' - b_zp') exactly. The zero points
// are folded out of the inner loop as row and column sums:
//
//   acc = sum_k A'B'  -  a_zp' * colsum(B')[n]  -  b_zp'[n] * rowsum(A')[m]
//         +  K * a_zp' * b_zp'[n]
//
// where sum_k A'B' is what the microkernel computes and the other terms are
// added in its epilogue (colsum is computed when B is packed, rowsum when A
// is). Everything is computed modulo 2^32 (two's complement wrap, as int32
// accumulation does, and as ONNX allows MatMulInteger and ConvInteger to
// do), so acc is the exact sum whenever the exact sum fits in int32: always
// when K * max|A - a_zp| * max|B - b_zp| <= 2^31 - 1, i.e. for any zero
// points when K <= 33025 (255 * 255 * 33025 < 2^31). Callers that need the
// exact value for larger K (the requantizing ops, whose reference sums in
// int64) check exact_in_int32() and otherwise use their reference path.
//
// Packed B layout ("c4"): B' is cut into panels of 16 columns; each panel
// holds K rounded up to a multiple of 4 (kp) rows, in groups of 4 rows; group
// g of panel p is 64 bytes: for column j (0..15) the four bytes
// B'[4g + 0..3, 16p + j]. So one 64-byte group is one AVX-512 register of 16
// int32 lanes, each lane the 4 bytes vpdpbusd multiplies by 4 bytes of A'
// (and four NEON registers of 4 lanes, as udot takes them).
// Columns past N and rows past K are zero. The layout is the same for every
// ISA, so a QPackedB made once serves whichever kernel runs.
//
// Saturation (AVX2 without VNNI). vpmaddubsw multiplies u8 by s8 bytes and
// sums the products of bytes 2i and 2i + 1 into int16 lane i, saturating.
// The 256-bit kernel loads the packed groups at even offsets and broadcasts
// A's 4 bytes, so the pairs are bytes 2i, 2i + 1 of the packed data: in
// the c4 layout B'[4g, n] with B'[4g + 1, n] and B'[4g + 2, n] with
// B'[4g + 3, n] (the same column, consecutive k; padding rows are 0). For a
// pair (b0, b1), a0 b0 + a1 b1 over all a0, a1 in [0, 255] spans
//   [255 (min(b0, 0) + min(b1, 0)),  255 (max(b0, 0) + max(b1, 0))]
// and reaches both ends (a = 255 where b has that sign, else 0). That fits
// int16 [-32768, 32767] iff the positive parts sum to <= 128 (255 * 128 =
// 32640; 129 gives 32895) and the negative parts to >= -128 (-32640; -129
// gives -32895 < -32768): int16's extra negative value doesn't loosen the
// bound (that would need 128.5). So a pair of opposite signs never
// saturates (|b| <= 128), and a pair of one sign is exact iff |b0 + b1| <=
// 128: the bound is tight, and looser than |b0| + |b1| <= 128. qpack_b
// checks every pair (maddubs_pair_exact) and records the result
// (QPackedB::maddubs_exact()); a QGemmKernel built on vpmaddubsw names an
// exact kernel (QGemmKernel::exact, vpmaddwd on widened int16) that runs
// instead on weights that could saturate. 7-bit s8 weights, [-64, 63] (the
// quantizer's reduce_range), always pass. u8 weights don't, even 7-bit
// ones: B' = B - 128 makes them all negative. VNNI's vpdpbusd accumulates
// in int32 and needs no check.
//
// Packed A (made per call, per thread): rows of A' with K padded with zeros
// to kp, and their sums rowsum(A')[m]. A u8 A whose K is a multiple of 4, or
// whose rows come padded with zeros to kp (QGemmArgs::a_rows_padded), is
// already that layout (A' = A): the kernels read it in place, lda apart, and
// only its row sums are made.
//
// Threads: C is cut into tiles (tiling.h: bands of rows where A is read in
// place, else N first, in whole panels, then M), or by the caller's column
// parts (QGemmArgs::col_parts); each thread packs the rows of A it needs. Every
// element of C sees the same integer operations whatever the split, and
// integer sums don't depend on order, so results never depend on threads.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace qforge {
class ThreadPool;
}

namespace qforge::kernels {

// ---- packed weights ----

inline constexpr int64_t kQPanel = 16;  // columns per packed B panel
inline constexpr int64_t kQGroup = 4;   // rows of K per packed group
static_assert(kQPanel * kQGroup == 64,
              "a packed group (16 columns x 4 k, s8) is one 64-byte vector");

class QPackedB {
 public:
  QPackedB() = default;
  QPackedB(QPackedB&&) noexcept = default;
  QPackedB& operator=(QPackedB&&) noexcept = default;

  int64_t K() const { return K_; }
  int64_t N() const { return N_; }
  int64_t kp() const { return kp_; }           // K rounded up to a multiple of 4
  bool b_signed() const { return b_signed_; }  // the type B had: s8 (true) or u8
  const int8_t* data() const { return data_.get(); }
  // sum_k B'[k, n] for n < N rounded up to 32 (0 past N).
  const int32_t* col_sums() const { return col_sums_.data(); }
  // No pair of packed bytes vpmaddubsw sums can leave int16 (see above).
  bool maddubs_exact() const { return maddubs_exact_; }

 private:
  friend QPackedB qpack_b(bool b_signed, bool trans_b, int64_t K, int64_t N, const void* B,
                          int64_t ldb);
  struct Free {
    void operator()(int8_t* p) const noexcept;
  };
  std::unique_ptr<int8_t[], Free> data_;
  std::vector<int32_t> col_sums_;
  int64_t K_ = 0, N_ = 0, kp_ = 0;
  bool b_signed_ = true;
  bool maddubs_exact_ = true;
};

// True if a0 * b0 + a1 * b1 lies in int16 for every a0, a1 in [0, 255]:
// the sum of the positive ones of b0, b1 is <= 128 and of the negative ones
// >= -128 (the derivation above).
constexpr bool maddubs_pair_exact(int b0, int b1) {
  const int pos = (b0 > 0 ? b0 : 0) + (b1 > 0 ? b1 : 0);
  const int neg = (b0 < 0 ? b0 : 0) + (b1 < 0 ? b1 : 0);
  return pos <= 128 && neg >= -128;
}

// Packs B (K x N, or N x K when trans_b; row-major with leading dimension
// ldb; s8 when b_signed, else u8). Throws Error on negative sizes or a
// leading dimension shorter than a row.
QPackedB qpack_b(bool b_signed, bool trans_b, int64_t K, int64_t N, const void* B, int64_t ldb);

// ---- one call ----

enum class QOutput {
  kS32,       // y = acc (+ bias), int32
  kQ8Double,  // y = saturate(round_half_even(double(acc + bias) * double(scale[n])) + y_zp):
              //     ONNX's QLinearMatMul / QLinearConv reference (numpy float64)
  kQ8Float,   // y = saturate(round_half_even(float(acc + bias) * scale[n]) + y_zp):
              //     float32, as ONNX Runtime's requantization (QGemm)
  kF32,       // y = float(acc + bias) * scale[n] (+ fbias[n]): MatMulIntegerToFloat
};

struct QGemmArgs {
  int64_t M = 0;
  const void* A = nullptr;  // M x K, row-major
  int64_t lda = 0;
  bool a_signed = false;  // s8 (true) or u8
  int32_t a_zp = 0;       // in A's type's range
  // u8 A whose every row (the last included) holds K rounded up to a
  // multiple of 4 bytes, those past K being 0 (lda at least that): the
  // packed layout already, read in place like a u8 A with K a multiple of 4
  // (a convolution's im2col rows are written so).
  bool a_rows_padded = false;
  const QPackedB* B = nullptr;
  const int32_t* b_zp = nullptr;  // N zero points, in B's type's range
  QOutput out = QOutput::kS32;
  // Optional int32 bias added to acc (with wrap): bias[m * bias_ld + n];
  // bias_ld == 0 means one row of N values for every row.
  const int32_t* bias = nullptr;
  int64_t bias_ld = 0;
  const float* scale = nullptr;  // N values; kQ8Double, kQ8Float, kF32
  const float* fbias = nullptr;  // N values or nullptr (nothing added); kF32
  int32_t y_zp = 0;              // kQ8*: output zero point
  bool y_signed = false;         // kQ8*: s8 (true) or u8 output
  void* C = nullptr;             // M x N, row-major, element type by `out`
  int64_t ldc = 0;
  // C is a buffer last touched long ago (an op's output, not a scratch the
  // caller reads back at once): one of 4-byte elements larger than a core's
  // L2 is then written with non-temporal stores (qgemm.cpp, kStreamBytes).
  bool cold_c = false;
  // Optional: C's columns are parts that the next ops read one slice of
  // each per thread (attention's q, k and v, each split by heads over the
  // threads): col_parts[0] = 0 < ... < col_parts[col_part_count] = N. With
  // several threads, thread t then computes every row of the t-th of
  // `threads` equal shares of each part, so that a head's q, k and v are
  // in the cache of the thread that reads them. Used where every boundary
  // is a whole number of the kernel's panels; else ignored. The split
  // changes no value of C.
  const int64_t* col_parts = nullptr;
  int col_part_count = 0;
};

// One microkernel, as chosen from the kernel table (kernels().qgemm).
struct QGemmTile;
struct QPoolTile;
using QGemmTileFn = void (*)(const QGemmTile&);
using QPoolTileFn = void (*)(const QPoolTile&);
struct QGemmKernel {
  const char* name = "";
  int64_t mr = 1, nr = 16;  // register tile; nr is 16 or 32 (whole panels)
  QGemmTileFn tile = nullptr;
  // For a kernel exact only on weights whose pairs can't saturate vpmaddubsw
  // (QPackedB::maddubs_exact()): the exact kernel qgemm and qgemm_with run
  // instead on other weights. nullptr: this kernel is exact on any weights.
  const QGemmKernel* exact = nullptr;
  // The kernel reads row_sum for more than the zero-point term
  // row_sum * neg_b_zp (neondot's shift of B to u8). Otherwise, where every
  // -b_zp' is 0 (symmetric s8 weights), the driver passes zeros instead of
  // summing the rows of an A read in place.
  bool needs_row_sums = false;
  // The 2 x 2 max-pooled epilogue (QPoolTile), where the kernel has one.
  QPoolTileFn pool2x2 = nullptr;
};

// C = epilogue(acc) with the process's kernel (kernels().qgemm), on `pool`
// (nullptr: the calling thread). Throws Error on inconsistent arguments.
// Both entry points honour QGemmKernel::exact, so neither gives a saturated
// result.
void qgemm(const QGemmArgs& args, ThreadPool* pool = nullptr);
// The same with a given kernel (tests, benchmarks).
void qgemm_with(const QGemmKernel& kernel, const QGemmArgs& args, ThreadPool* pool = nullptr);

// C's rows through a 2 x 2 / 2 max-pool, then requantized: a quantized
// convolution with its MaxPool fused (ai.qforge QLinearConvMaxPool), on the
// calling thread with the process's kernel, where it has such an epilogue
// (QGemmKernel::pool2x2; QPoolTile says what it computes). A's a.M = 2 *
// pairs * ow rows are output positions, ow per image row; window (r, j), r <
// pairs, j < ow / 2, is written at a.C + (r * (ow / 2) + j) * a.ldc. The
// caller promises every scale is positive (then max commutes with
// requantization). False, with nothing written, where it doesn't apply: no
// such kernel, an output other than kQ8Double, A not u8 read in place (K a
// multiple of 4 or a_rows_padded), a bias other than one row, K > 16384.
//
// rows != nullptr: A's rows aren't stored but read from a padded
// channels-last image (an implicit im2col): output position (y, x)'s row is
// `segs` segments of K / segs bytes (kernel rows: KW taps of C channels),
// the first at a.A + y * row_step + x * col_step, each next one seg_stride
// further. Needs K / segs a multiple of 4 and weights without zero points
// (s8, every b_zp 0: no row sums to make); a.lda is not read.
struct QImplicitRows {
  int64_t col_step = 0, row_step = 0, segs = 1, seg_stride = 0;
};
bool qgemm_pool2x2(const QGemmArgs& a, int64_t ow, int64_t pairs,
                   const QImplicitRows* rows = nullptr);
// Whether the process's kernel has that epilogue.
bool qgemm_has_pool2x2();

// Every int8 GEMM kernel a CPU with these features can run, the scalar
// reference first.
std::vector<const QGemmKernel*> qgemm_kernels(const CpuFeatures& cpu = cpu_features());

// True if sum_k (A - a_zp)(B - b_zp[n]) + bias (bias_abs_max: the largest
// |bias|) can't leave int32 for any A and B of these types: then acc is exact.
bool exact_in_int32(int64_t K, bool a_signed, int32_t a_zp, bool b_signed, const int32_t* b_zp,
                    int64_t n_zp, int64_t bias_abs_max = 0);

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols: a byte matrix
// transposed (im2col's channels-last input, convolution outputs).
void transpose_u8(const uint8_t* src, int64_t rows, int64_t cols, int64_t lds, uint8_t* dst,
                  int64_t ldd);

// ---- the epilogue, one element (the scalar definition every kernel matches) ----

// v (already acc + bias, wrapped) through the kQ8Double epilogue: round half
// to even after clamping to [qmin - zp, qmax - zp] in double, as the ONNX
// reference ops' round_saturate. NaN gives qmin.
inline int32_t requantize_double(int32_t v, float scale, int32_t zp, int32_t qmin, int32_t qmax);
// The kQ8Float epilogue: the same in float32.
inline int32_t requantize_float(int32_t v, float scale, int32_t zp, int32_t qmin, int32_t qmax);

// ---- kernel contract (internal: qgemm.cpp and the per-ISA files) ----

// One register tile: m x n (1 <= m <= MR, 1 <= n <= NR) elements of C.
struct QGemmTile {
  const uint8_t* a = nullptr;  // packed A: m rows of kp bytes of A', lda apart
  int64_t lda = 0;
  const int8_t* b = nullptr;  // packed B: the tile's first panel; panels kp * 16 bytes apart
  int64_t kp = 0;
  int64_t m = 0, n = 0;
  // acc[i][j] = dot + col_off[j] + row_sum[i] * neg_b_zp[j] (+ bias), mod 2^32.
  const int32_t* row_sum = nullptr;   // m values
  const int32_t* col_off = nullptr;   // NR values (padded): -a_zp' colsum[j] + K a_zp' b_zp'[j]
  const int32_t* neg_b_zp = nullptr;  // NR values (padded): -b_zp'[j]
  const int32_t* bias = nullptr;      // bias[i * bias_ld + j], j < n only; nullptr: none
  int64_t bias_ld = 0;
  QOutput out = QOutput::kS32;
  const float* scale = nullptr;  // NR values (padded)
  const float* fbias = nullptr;  // NR values (padded) or nullptr
  int32_t y_zp = 0, qmin = 0, qmax = 255;
  void* c = nullptr;  // the tile's first element
  int64_t ldc = 0;    // in elements
  // A hint (the AVX-512 kernel takes it): write whole 64-byte vectors of a
  // 4-byte C with non-temporal stores, which are then aligned (the driver
  // sets it only where C and ldc make them so, and fences after the tiles).
  bool stream = false;
};

// QGemmKernel::pool2x2's work: for each window (r, j) of a 2 x 2 / 2
// max-pool over C's rows (output positions, ow per image row: window (r, j)
// covers rows 2 r ow + 2 j + {0, 1, ow, ow + 1}) and each column n' < n, the
// largest of its four rows' dot + row_sum * neg_b_zp[n'], plus col_off[n']
// and bias[n'], through the kQ8Double epilogue, as a code at
// c[(r * (ow / 2) + j) * ldc + n']. The driver guarantees no partial sum
// wraps (K <= 16384), so the maximum is the one of the exact sums.
struct QPoolTile {
  // A': position (y, x)'s row is `segs` segments of seg_groups groups of 4
  // bytes, the first at a + y * row_step + x * col_step, the next
  // seg_stride further (stored rows: one segment of kp bytes, col_step =
  // lda, row_step = ow * lda).
  const uint8_t* a = nullptr;
  int64_t col_step = 0, row_step = 0, segs = 1, seg_groups = 0, seg_stride = 0;
  const int8_t* b = nullptr;  // packed B: every panel, kp * 16 bytes apart
  int64_t kp = 0, n = 0;
  int64_t ow = 0, pairs = 0;
  const int32_t* row_sum = nullptr;  // per position, y * ow + x (read where zp)
  const int32_t* col_off = nullptr;  // whole panels (padded), as QGemmTile's
  const int32_t* neg_b_zp = nullptr;
  bool zp = false;  // some neg_b_zp[c] is non-zero
  const int32_t* bias = nullptr;  // n values, or nullptr: none
  const float* scale = nullptr;   // whole panels (padded)
  int32_t y_zp = 0, qmin = 0, qmax = 255;
  uint8_t* c = nullptr;
  int64_t ldc = 0;  // bytes between windows
};

// u8 (A') x s8 (B') microkernels, "c4" packing. MR x NR in the name.
void qu8_qs8_gemm_4x16c4__ref(const QGemmTile& t);
#if defined(__x86_64__)
void qu8_qs8_gemm_3x16c4__avx2(const QGemmTile& t);        // widened to s16, vpmaddwd
// vpmaddubsw + vpmaddwd: wrong where a pair saturates (maddubs_exact() false).
void qu8_qs8_gemm_4x16c4__avx2_maddubs(const QGemmTile& t);
void qu8_qs8_gemm_6x16c4__avxvnni(const QGemmTile& t);     // VEX vpdpbusd, 256-bit
void qu8_qs8_gemm_8x32c4__avx512vnni(const QGemmTile& t);  // vpdpbusd
void qu8_qs8_pool2x2__avx512vnni(const QPoolTile& t);      // its QGemmKernel::pool2x2
#endif
#if defined(__aarch64__)
void qu8_qs8_gemm_3x16c4__neon(const QGemmTile& t);     // widened to s16, vmulq + vpadalq
void qu8_qs8_gemm_4x16c4__neondot(const QGemmTile& t);  // udot (Armv8.2 dotprod)
#endif

// ---- inline definitions ----

inline int32_t requantize_double(int32_t v, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  const double x = static_cast<double>(v) * static_cast<double>(scale);
  const double lo = static_cast<double>(qmin - zp), hi = static_cast<double>(qmax - zp);
  double c = x > lo ? x : lo;
  c = c < hi ? c : hi;
  return static_cast<int32_t>(std::nearbyint(c)) + zp;
}

inline int32_t requantize_float(int32_t v, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  const float x = static_cast<float>(v) * scale;
  const float lo = static_cast<float>(qmin - zp), hi = static_cast<float>(qmax - zp);
  float c = x > lo ? x : lo;
  c = c < hi ? c : hi;
  return static_cast<int32_t>(std::nearbyint(c)) + zp;
}

}  // namespace qforge::kernels
