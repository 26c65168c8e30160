// Float32 GEMM for the float runtime (Conv via im2col, Gemm, MatMul):
//
//   C[M,N] = alpha * op(A) * op(B) + beta * C, then + bias, then activation,
//
// all matrices row-major with leading dimensions, op(X) = X or X^T.
//
// Blocking (BLIS style). C is computed in register tiles of MR x NR (AVX-512
// 12 x 32, AVX2 6 x 16, scalar reference 4 x 16) by a microkernel that keeps
// the tile in registers and, for each k, broadcasts MR values of A and
// multiplies them into NR values of B with FMAs. Around it:
//
//   for each NC columns of C (jc)           KC x NC block of B: L2
//     for each KC of depth (pc)
//       for each MC rows of C (ic)          MC x KC block of A: L2
//         for each NR columns (jr)          B micro-panel KC x NR: stays in L1
//           for each MR rows (ir)           A micro-panel MR x KC: from L2
//             microkernel: C tile (+)= A micro-panel * B micro-panel
//
// with KC = 256, MC = 192, NC = 512 (AVX-512, AVX2). Operands are copied
// ("packed") into micro-panels just before their first use, so the copy is
// still in L1 when the kernel reads it: a B micro-panel during the first pass
// over M, an A micro-panel during the first pass over N. The first KC block
// applies beta (C is not read when beta == 0), later ones accumulate; the last
// one adds the bias and applies the activation, so the epilogue costs no
// extra pass over C. Small products (attention's 64 x 64 x 64 per head)
// skip the copies: a row-major A used for at most 128 columns of C, and a
// row-major B's whole NR-column panels for at most 96 rows, are read where
// they are (gemm.cpp, kDirectMaxN / kDirectMaxM), with the same products in
// the same order. K, M and N are split into equal blocks of at most
// KC, MC, NC, so there is no short remainder block. When an operand was
// packed beforehand (weights), the kernels prefetch its next micro-panel into
// L2 while they compute.
//
// Packed layout (pack_a / pack_b, and the per-call packing buffers): op(A) is
// cut into panels of MR rows; panel p holds, for k = 0..K-1, the MR values
// op(A)[p*MR + i, k] at [p*K*MR + k*MR + i]. op(B) is cut into panels of NR
// columns; panel p holds op(B)[k, p*NR + j] at [p*K*NR + k*NR + j]. The last
// panel is padded with zeros. A KC block of a panel is therefore contiguous
// and starts at k0*MR (k0*NR), whatever the ISA: only MR and NR differ.
//
// Threads: C is cut into one tile per thread, whole MR x NR panels, split
// along N first (tiles that split N pack disjoint parts of B and only repack
// the smaller A), and the tiles are handed out with ThreadPool::parallel_for;
// each thread packs into its own buffers. Every element of C sees the same
// operations whatever the split, so results do not depend on the number of
// threads.
//
// Matrix-vector products (M == 1 or N == 1) take their own path, which
// streams the matrix once without packing it (several rows or panels at a
// time, for memory parallelism), split over the outputs, one part per
// thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/kernels.h"

namespace qforge {
class ThreadPool;
}

namespace qforge::kernels {

enum class Epilogue { kNone, kRelu, kClip };  // applied after bias

struct GemmEpilogue {
  const float* bias_m = nullptr;  // M values, added to each row of C
  const float* bias_n = nullptr;  // N values, added to each column of C
  Epilogue act = Epilogue::kNone;
  float clip_min = 0, clip_max = 0;  // for kClip
};

// y[i] = the epilogue's activation of y[i] (its biases are not used): the
// last step of every GEMM, for paths that compute without one (depthwise
// convolution). Under kRelu a NaN becomes 0, as max(v, 0) does in SIMD.
void apply_activation(const GemmEpilogue& ep, float* y, int64_t n);

// C[M,N] = alpha * op(A) * op(B) + beta * C, then + bias, then activation.
// A is M x K (K x M when trans_a), B is K x N (N x K when trans_b). beta == 0
// means C is not read (it may hold NaN). K == 0 (or alpha == 0) gives beta * C
// plus bias and activation. pool == nullptr runs on the calling thread.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, const GemmEpilogue& ep = {}, ThreadPool* pool = nullptr);

// The same with the ISA given, rather than kernels().isa (tests, benchmarks).
// Throws Error if this CPU can't run `isa`.
void sgemm_for_isa(Isa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                   float beta, float* C, int64_t ldc, const GemmEpilogue& ep = {},
                   ThreadPool* pool = nullptr);

// An operand packed once (typically weights) into the panel layout described
// at the top of this file, for the ISA it was packed for.
class PackedMatrix {
 public:
  enum class Side { kA, kB };  // left operand (MR-row panels) or right (NR-column panels)

  PackedMatrix() = default;
  PackedMatrix(PackedMatrix&&) noexcept = default;
  PackedMatrix& operator=(PackedMatrix&&) noexcept = default;

  Side side() const { return side_; }
  // op(X)'s shape: M x K for A, K x N for B.
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  Isa isa() const { return isa_; }
  // MR (A) or NR (B) of that ISA: the panel width.
  int64_t panel() const { return panel_; }
  const float* data() const { return data_.get(); }
  size_t size() const { return size_; }  // floats, padding included
  bool empty() const { return size_ == 0; }

 private:
  friend PackedMatrix pack_matrix(Side side, Isa isa, bool trans, int64_t rows, int64_t cols,
                                  const float* X, int64_t ld);
  struct Free {
    void operator()(float* p) const noexcept;
  };
  std::unique_ptr<float[], Free> data_;
  size_t size_ = 0;
  Side side_ = Side::kA;
  Isa isa_ = Isa::kRef;
  int64_t rows_ = 0, cols_ = 0, panel_ = 1;
};

// Packs op(A) (M x K; A stored K x M when trans_a), or op(B) (K x N; B stored
// N x K when trans_b), for kernels().isa or the ISA given.
PackedMatrix pack_a(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda);
PackedMatrix pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb);
PackedMatrix pack_a_for_isa(Isa isa, bool trans_a, int64_t M, int64_t K, const float* A,
                            int64_t lda);
PackedMatrix pack_b_for_isa(Isa isa, bool trans_b, int64_t K, int64_t N, const float* B,
                            int64_t ldb);

// C = op(A) * op(B) + beta * C (+ bias, activation) with one operand packed;
// its ISA is the one it was packed for. K is the packed matrix's.
void sgemm_packed_a(const PackedMatrix& A, int64_t N, const float* B, int64_t ldb, bool trans_b,
                    float beta, float* C, int64_t ldc, const GemmEpilogue& ep = {},
                    ThreadPool* pool = nullptr);
void sgemm_packed_b(int64_t M, const float* A, int64_t lda, bool trans_a, const PackedMatrix& B,
                    float beta, float* C, int64_t ldc, const GemmEpilogue& ep = {},
                    ThreadPool* pool = nullptr);

// C[M, N] = A * B (+ bias, activation) where A is packed (M x K) and B's row
// k is the N floats at B + b_rows[k]: a convolution's im2col matrix read in
// place from a zero-padded image, each row a run of it at a fixed offset
// (src/ops/nn_conv.cpp). Past each row's N floats, up to a whole panel
// (round_up(N, NR)) is read and ignored. C is not read.
void sgemm_packed_a_rows(const PackedMatrix& A, int64_t N, const float* B, const int64_t* b_rows,
                         float* C, int64_t ldc, const GemmEpilogue& ep = {},
                         ThreadPool* pool = nullptr);
// NR of the ISA A was packed for: the columns read past N are fewer than this.
int64_t panel_columns(Isa isa);

// ---- kernel contracts (internal: gemm.cpp and the per-ISA files) ----

inline constexpr int64_t kRefMr = 4, kRefNr = 16;
inline constexpr int64_t kAvx2Mr = 6, kAvx2Nr = 16;
inline constexpr int64_t kAvx512Mr = 12, kAvx512Nr = 32;

// One register tile: C[m x n] (m <= MR, n <= NR) from an MR-tall packed A
// micro-panel and a B micro-panel of k rows of NR floats, b_stride apart.
// C = alpha * A*B + beta * C (C not read when beta == 0), then + bias_m[i],
// + bias_n[j] where given, then the activation. Along the way the kernel
// prefetches prefetch_lines 64-byte lines from `prefetch` into L2 (at most
// two per k step; rounded up to a multiple of 8): the driver points it at
// data the next tiles will need that is not in cache yet.
struct MicroTile {
  // A's values: the packed MR-tall panel, or, when a_ld != 0, the m x k
  // matrix itself, row i at a + i * a_ld (rows >= m are not read). The
  // products and their order are the same either way.
  const float* a = nullptr;
  int64_t a_ld = 0;
  const float* b = nullptr;
  int64_t b_stride = 0;
  // When set, B's row k starts at b + b_rows[k] instead of b + k * b_stride
  // (rows gathered from an image: sgemm_packed_a_rows).
  const int64_t* b_rows = nullptr;
  int64_t k = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  int64_t m = 0, n = 0;
  float alpha = 1, beta = 0;
  const float* bias_m = nullptr;
  const float* bias_n = nullptr;
  Epilogue act = Epilogue::kNone;
  float clip_min = 0, clip_max = 0;
  const float* prefetch = nullptr;
  int64_t prefetch_lines = 0;
};

// Matrix-vector kernels; they overwrite y[0, n).
//   rows:   y[j] = sum_k x[k] * b[k*ldb + j]       (b is k x n, row-major)
//   dots:   y[j] = sum_k x[k] * b[j*ldb + k]       (b is n x k, row-major)
//   panels: y[j] = sum_k x[k] * p[(j/NR)*k*NR + k*NR + j%NR]   (packed op(B))
// Transposing copy for packing: dst[k*stride + r] = src[r*ld + k] for
// r < rows, and 0 for rows <= r < width (width <= 16 for AVX-512, <= 8 for
// AVX2); k in [0, kc).
void pack_transpose__ref(const float* src, int64_t ld, int64_t rows, int64_t kc, float* dst,
                         int64_t stride, int64_t width);

void sgemm_tile__ref(const MicroTile& t);
void sgemv_rows__ref(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb, float* y);
void sgemv_dots__ref(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb, float* y);
void sgemv_panels__ref(int64_t k, int64_t n, const float* x, const float* p, float* y);

// Depthwise convolution of one block of 16 channels held channels-last (the
// channel in the lanes): for each output pixel (oh, ow),
//   out[(oh*Wo + ow)*16 + l] = act(b16[l] + sum over t of
//       w16[t*16 + l] * in[oh*sh*ld + ow*sw*16 + offsets[t] + l]),
// taps summed in order with fused multiply-adds. `ld` is the floats per input
// row (padded width * 16); offsets[t] is tap t's offset in floats.
struct DwConv16 {
  const float* in;
  int64_t ld, sh, sw;
  const int64_t* offsets;
  int64_t taps;
  const float* w16;  // taps x 16
  const float* b16;  // 16
  int64_t Ho, Wo;
  float* out;  // Ho*Wo x 16
  Epilogue act;
  float lo, hi;  // kClip's range
};

#if defined(__x86_64__)
void pack_transpose__avx2(const float* src, int64_t ld, int64_t rows, int64_t kc, float* dst,
                          int64_t stride, int64_t width);
void pack_transpose__avx512(const float* src, int64_t ld, int64_t rows, int64_t kc, float* dst,
                            int64_t stride, int64_t width);
void sgemm_tile__avx2(const MicroTile& t);
void sgemv_rows__avx2(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb, float* y);
void sgemv_dots__avx2(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb, float* y);
void sgemv_panels__avx2(int64_t k, int64_t n, const float* x, const float* p, float* y);
void sgemm_tile__avx512(const MicroTile& t);
void sgemv_rows__avx512(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb,
                        float* y);
void sgemv_dots__avx512(int64_t k, int64_t n, const float* x, const float* b, int64_t ldb,
                        float* y);
void sgemv_panels__avx512(int64_t k, int64_t n, const float* x, const float* p, float* y);
void dwconv_16c__avx512(const DwConv16& d);
#endif

}  // namespace qforge::kernels
