// Graph passes: rewrites of an ir::Model that keep what it computes.
//
// Each pass edits the model in place and returns how many rewrites it made.
// A pass only touches what it can prove safe: a value that is a graph
// output, feeds more than one node or is read by a subgraph keeps its
// producer as it is; weights must be initializers. Results stay within float
// rounding of the original graph (folding BatchNormalization into a Conv
// changes the order of operations, not the math).
//
// Session runs optimize() before planning (SessionOptions::optimize), and
// quantization uses the same passes to prepare a graph (fold, then fuse).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qforge/ir.h"

namespace qforge::passes {

// Removes Identity nodes and inference-time Dropout (no mask output used):
// their consumers read the input directly.
int eliminate_identity(ir::Model& model);

// Evaluates nodes whose inputs are all initializers (no subgraphs, nothing
// random) and stores their outputs as initializers, up to max_bytes per
// folded output. Repeats until nothing more folds.
int fold_constants(ir::Model& model, int64_t max_bytes = int64_t{64} << 20);

// BatchNormalization (inference) after a Conv or Gemm with constant
// weights: scale and shift go into the weights and the bias, and the
// BatchNormalization node goes away.
int fold_batchnorm(ir::Model& model);

// Conv + Relu/Clip -> com.microsoft FusedConv, Gemm + Relu ->
// com.microsoft FusedGemm (ONNX Runtime's contrib ops, which it runs too):
// the activation is applied in the GEMM epilogue, while the tile is in
// registers. Clip bounds must be constants.
int fuse_activations(ir::Model& model);

// Conv or FusedConv (2-D, f32, constant weights) whose only reader is a
// MaxPool 2x2 / 2 without padding, dilation, ceil_mode or Indices -> one
// ai.qforge ConvMaxPool, which pools as it writes the convolution's output
// (its output never goes through memory at full size). Likewise a
// QLinearConv (2-D, constant weights, 8-bit output) whose only reader is
// such a MaxPool on its codes -> one ai.qforge QLinearConvMaxPool. Both are
// qforge-only ops: Session's optimize runs this pass; quantization's
// prepare step doesn't.
int fuse_conv_maxpool(ir::Model& model);

// Chains of QLinearConv / ai.qforge QLinearConvMaxPool (2-D, constant
// weights), each conv's output read only by the next one as its x, run
// channels-last: each becomes ai.qforge QLinearConv / QLinearConvMaxPool
// with channels_last = 1 (x [N, H, W, C], y [N, OH, OW, M]); a Transpose
// makes the chain's input channels-last and one turns its output back, or a
// QLinearGlobalAveragePool that alone reads it does so with channels_last
// (its [N, 1, 1, C] then transposed back). The convs neither transpose their
// input nor their output. Session only (optimize), like fuse_conv_maxpool.
int qconv_channels_last(ir::Model& model);

// Transpose [N, H, W, C] -> [N, C, H, W] (perm 0, 3, 1, 2), read only by a
// Flatten (axis 1) that only a com.microsoft QGemm reads as its A (transA 0,
// B a constant 8-bit matrix of C * H * W rows that no other node reads):
// the Flatten reads the Transpose's input instead and B's rows are permuted
// to match (the new row (h * W + w) * C + c is the old row c * H * W + h *
// W + w), so the sums are the same integers, and the Transpose goes. A
// channels-last conv chain's output read by a classifier (the Transpose
// back of qconv_channels_last) is the case. Session only (optimize).
int fold_transpose_into_qgemm(ir::Model& model);

// QDQ groups -> integer ops: DequantizeLinear -> op -> QuantizeLinear with
// constant quantization parameters becomes QLinearConv, QLinearMatMul,
// com.microsoft QGemm, QLinearAdd, QLinearMul, QLinearSigmoid,
// QLinearLeakyRelu, QLinearAveragePool, QLinearGlobalAveragePool or
// QLinearConcat (ONNX Runtime's QOperator form), and MaxPool and the shape
// ops (Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Slice) run on the
// integers when input and output share their parameters. What this runs is
// integer arithmetic, not float emulation. The fused node keeps the float
// node's name.
int fuse_qdq(ir::Model& model);

// Dynamic quantization of a MatMul or Gemm (DynamicQuantizeLinear ->
// MatMulInteger -> Cast -> Mul by the two scales [-> Add bias]) -> one
// com.microsoft DynamicQuantizeMatMul, bit for bit the same result. The
// fused node keeps the MatMulInteger's name.
int fuse_dynamic_matmul(ir::Model& model);

// GELU as PyTorch exports it (Div by a constant, Erf, Add of a constant,
// Mul by the Div's input, Mul by a constant; f32) -> one ai.qforge ErfGelu,
// bit for bit the same result in one pass. A qforge-only op, run by
// Session's optimize.
int fuse_erf_gelu(ir::Model& model);

// An f32 Add (a residual) read only by a LayerNormalization -> one
// ai.qforge AddLayerNormalization, bit for bit the two ops, without the sum
// written out where both inputs have one shape. Session only (optimize).
int fuse_add_layernorm(ir::Model& model);

// Transposes around a float MatMul (attention's heads: q @ k^T on
// transposed heads, the result transposed back) -> one ai.qforge
// TransposeMatMul whose GEMMs read the operands and write the result
// strided, in place; bit for bit MatMul's sums. A Transpose joins when the
// source's last axis stays among the operand's last two (the result's last
// axis stays last). The scores' Div by a constant and last-axis Softmax
// join as post-ops, and q, k, v made by Split (last axis) and Reshape are
// read from the Split's input in place. Session only (optimize).
int fuse_transpose_matmul(ir::Model& model);

// Drops initializers that no node (or subgraph) reads and that are not
// graph outputs.
int remove_unused_initializers(ir::Model& model);

struct OptimizeReport {
  // "fold_batchnorm: 3" per pass that changed something, in order.
  std::vector<std::string> log;
  int total = 0;
};

// The passes above in order: eliminate_identity, fold_constants,
// fold_batchnorm, fuse_qdq, fuse_dynamic_matmul, fuse_erf_gelu,
// fuse_add_layernorm, fuse_transpose_matmul, fuse_activations, fuse_conv_maxpool, qconv_channels_last,
// remove_unused_initializers. channels_last = false leaves
// qconv_channels_last out.
OptimizeReport optimize(ir::Model& model, bool channels_last = true);

}  // namespace qforge::passes
