// The fast paths of the integer matrix ops (quant.cpp), on the int8 GEMM of
// kernels/qgemm.h. quant.cpp validates a node exactly as its reference
// implementation does, works out the zero points, multipliers and biases the
// reference would use, and calls these only for the cases they cover (8-bit
// operands, A per tensor, B per tensor or per column, and an int32
// accumulator that is exact where the reference's int64 sum matters); the
// rest, and the test oracle, is quant.cpp's reference code.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/qgemm.h"
#include "qforge/op.h"
#include "qforge/tensor.h"

namespace qforge::ops::int8 {

// The constant input a prepared state was made from: the state serves a run
// only while the input is that very tensor (its data, type and shape; an
// initializer overridden at run time is prepared anew). raw == nullptr: the
// input was absent.
struct SourceTensor {
  const void* raw = nullptr;
  DType dtype = DType::kU8;
  Shape shape;

  static SourceTensor of(const Tensor* t) {
    return t != nullptr ? SourceTensor{t->raw(), t->dtype(), t->shape()} : SourceTensor{};
  }
  bool is(const Tensor* t) const {
    return t != nullptr ? raw == t->raw() && dtype == t->dtype() && shape == t->shape() : raw == nullptr;
  }
};

// Weights packed once in prepare: one QPackedB per matrix of B, or per group
// of a convolution's W, used only while the input is `source`.
struct PackedWeights {
  SourceTensor source;
  int64_t group = 1;   // convolutions
  bool trans = false;  // QGemm's transB
  bool kw4 = false;    // convolutions: kernel rows padded to 4 taps (quant_gemm.cpp)
  std::vector<kernels::QPackedB> mats;

  bool matches(const Tensor& t, int64_t g = 1, bool tr = false) const {
    return source.is(&t) && g == group && tr == trans;
  }
};

// prepare for MatMulInteger, QLinearMatMul, MatMulIntegerToFloat,
// DynamicQuantizeMatMul (B = input b_index, [..., K, N] or [K]); QGemm
// (2-D B, transB); QLinearConv and ConvInteger (W = input w_index,
// [M, C / group, k...]). nullptr when the input isn't a constant 8-bit
// tensor of a usable shape (the run then packs per call or uses the reference).
std::shared_ptr<const void> prepare_matmul(const PrepareContext& ctx, int b_index);
std::shared_ptr<const void> prepare_gemm(const PrepareContext& ctx, int b_index, bool trans_b);
std::shared_ptr<const void> prepare_conv(const PrepareContext& ctx, int w_index);

// What happens to the int32 sums: kernels::QGemmArgs' epilogue, one value
// per output column (matmul) or output channel (conv).
struct Epilogue {
  kernels::QOutput out = kernels::QOutput::kS32;
  std::vector<float> scale;   // N values (kQ8*, kF32)
  std::vector<int32_t> bias;  // N values or empty
  std::vector<float> fbias;   // kF32: N values added, or empty
  int32_t y_zp = 0;
  bool y_signed = false;
};

// numpy matmul of A [..., M, K] by B [..., K, N] with broadcast batches:
// output matrix i is A's matrix a_mat[i] times B's matrix b_mat[i].
struct Matmul {
  const Tensor* a = nullptr;  // u8 / s8 codes
  int32_t a_zp = 0;
  const Tensor* b = nullptr;  // u8 / s8 codes
  std::vector<int32_t> b_zp;  // N values
  int64_t M = 0, K = 0, N = 0;
  std::vector<int64_t> a_mat, b_mat;
  Epilogue ep;
};
// y: the output, [count, M, N] contiguous, of the epilogue's element type.
// state: prepare_matmul's (or nullptr).
void matmul(const Matmul& p, const void* state, void* y, ThreadPool* pool);

// QGemm: C (M x N) = epilogue(sum + bias matrix), A given M x K (or K x M
// when trans_a), B 2-D (trans_b: N x K). bias: M x N int32 values row-major
// (bias_ld = N), or one row (bias_ld = 0), or empty.
struct Gemm {
  const Tensor* a = nullptr;
  bool trans_a = false;
  int32_t a_zp = 0;
  const Tensor* b = nullptr;
  bool trans_b = false;
  std::vector<int32_t> b_zp;  // N values
  int64_t M = 0, K = 0, N = 0;
  const int32_t* bias = nullptr;
  int64_t bias_ld = 0;
  Epilogue ep;
};
void gemm(const Gemm& p, const void* state, void* y, ThreadPool* pool);

// What the depthwise loop reads of its weights and epilogue.
struct DwTables {
  int64_t T = 0, Cp = 0;       // taps; channels rounded up to the loop's lanes
  std::vector<int32_t> wz;     // [T][Cp]: the weights less their zero points (0 past C)
  std::vector<uint32_t> base;  // [Cp]: bias - x_zp * (channel's sum of wz), wrapping
  std::vector<double> scale;   // [Cp]: the epilogue's multipliers, widened (exactly)
};

// A convolution's per-output-channel values (M each): its weights' zero
// points and its epilogue; for the depthwise loop (is_depthwise), its tables
// where they were made once (dw_tables, for these weights, x_zp and values),
// or empty (T = 0) for the loop to make them per call.
struct ConvChannels {
  std::vector<int32_t> w_zp;
  Epilogue ep;
  DwTables dw;
};
// The depthwise loop's tables of weights w [C, 1, KH, KW] (8-bit), x's zero
// point and ch's w_zp and epilogue.
DwTables dw_tables(const Tensor& w, int32_t x_zp, const ConvChannels& ch);

// Convolution of x [N, C, in...] by w [M, C / group, kernel...] (already
// checked), zero padding meaning x's zero point, with the values of *ch.
struct Conv {
  const Tensor* x = nullptr;
  int32_t x_zp = 0;
  const Tensor* w = nullptr;
  const ConvChannels* ch = nullptr;
  int64_t N = 0, C = 0, M = 0, group = 1;
  Shape in, kernel, out;
  std::vector<int64_t> stride, dilation, pad_begin;
  // MaxPool 2x2 / 2 (no padding, floor) of the codes: 2-D, kQ8Double, not
  // depthwise (is_depthwise); y is then [N, M, out[0] / 2, out[1] / 2].
  bool pool2x2 = false;
  // Channels-last x ([N, in..., C]) and y ([N, out..., M]); y needs kQ8Double.
  bool cl_in = false, cl_out = false;
};
// y: [N, M, out...] of the epilogue's element type.
void conv(const Conv& p, const void* state, void* y, ThreadPool* pool);
// Whether conv takes the depthwise loop (2-D, one input and output channel per group).
inline bool is_depthwise(const Conv& p) {
  return p.in.size() == 2 && p.C == p.group && p.M == p.group;
}

}  // namespace qforge::ops::int8

namespace qforge::ops::reference {
// The reference implementations of the integer matrix ops in quant.cpp (the
// same validation, then exact int64 sums), without the fast path: the
// oracle the fast paths are tested against.
void matmul_integer(OpContext& ctx);
void qlinear_matmul(OpContext& ctx);
void conv_integer(OpContext& ctx);
void qlinear_conv(OpContext& ctx);
void qlinear_conv_maxpool(OpContext& ctx);  // ai.qforge QLinearConvMaxPool
void matmul_integer_to_float(OpContext& ctx);
void dynamic_quantize_matmul(OpContext& ctx);
void qgemm(OpContext& ctx);  // com.microsoft QGemm
// com.microsoft QLinearGlobalAveragePool (not a matrix op; its fast path
// sums channels across vector lanes): the plain per-channel loop.
void qlinear_global_average_pool(OpContext& ctx);
// ai.qforge QLinearConvTranspose (nn_conv.cpp): scalar sums per input position.
void qlinear_conv_transpose(OpContext& ctx);
}  // namespace qforge::ops::reference
