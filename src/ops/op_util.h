// Helpers shared by the operator families: axes, broadcasting (concrete and
// symbolic), reading small integer tensors (shapes, axes), dtype dispatch and
// common shape-inference rules.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/tensor.h"

namespace qforge::ops {

// axis in [-rank, rank) -> [0, rank); Error naming the node otherwise.
int64_t normalize_axis(int64_t axis, int64_t rank, const ir::Node& node);

// Numpy (multidirectional) broadcasting. Error naming the node if the shapes
// are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const ir::Node& node);
ir::SymShape broadcast_sym(const ir::SymShape& a, const ir::SymShape& b, const ir::Node& node);

// Strides of `in` for iterating over `out` under broadcasting: a dimension
// broadcast from 1 gets stride 0. in is right-aligned with out.
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

// dst (contiguous, of `shape`)[i...] = src[sum over k of i_k * st[k]], elements
// of esz bytes (1, 2, 4 or 8), split over `pool`: a Transpose's copy, in
// tiles where it transposes (shape.cpp).
void strided_copy(size_t esz, const Shape& shape, const std::vector<int64_t>& st, const void* src,
                  void* dst, ThreadPool* pool);

// Reshape's output shape for an input of shape `in` and the target shape
// (0 copies the input's dimension unless allowzero, one -1 is inferred);
// Error naming the node if they don't fit (shape.cpp).
Shape reshape_shape(const Shape& in, const std::vector<int64_t>& target, bool allowzero, const ir::Node& node);

// The values of a 0-D or 1-D int32/int64 tensor (shapes, axes, pads, k).
std::vector<int64_t> to_int64s(const Tensor& t, const ir::Node& node, const char* what);
// A scalar (or single-element tensor) as double: f32, f64 or any integer.
double to_scalar(const Tensor& t, const ir::Node& node, const char* what);

// Error naming the node: "input 0 is i64; expected f32".
[[noreturn]] void bad_type(const ir::Node& node, const char* what, DType got, const char* expected);

// Shape-inference rules used by many ops.
void infer_same_as(InferContext& ctx, int input = 0);                      // output 0 = input
void infer_broadcast(InferContext& ctx, std::optional<DType> out = {});   // all inputs broadcast
void set_output(InferContext& ctx, int i, std::optional<DType> dt, std::optional<ir::SymShape> shape);
// The constant int values of input i if known, else nullopt.
std::optional<std::vector<int64_t>> constant_ints(const InferContext& ctx, int i);

// Calls f(T{}) with T the C++ type of dt, for the types the float runtime
// computes in; others are an Error naming the node.
template <typename F>
void dispatch_numeric(DType dt, const ir::Node& node, F&& f) {
  switch (dt) {
    case DType::kF32: f(float{}); break;
    case DType::kF64: f(double{}); break;
    case DType::kI64: f(int64_t{}); break;
    case DType::kI32: f(int32_t{}); break;
    case DType::kI8: f(int8_t{}); break;
    case DType::kU8: f(uint8_t{}); break;
    case DType::kI16: f(int16_t{}); break;
    case DType::kU16: f(uint16_t{}); break;
    default: bad_type(node, "input", dt, "f32, f64 or an integer type");
  }
}
// Like dispatch_numeric plus bool: for ops that only move data.
template <typename F>
void dispatch_any(DType dt, const ir::Node& node, F&& f) {
  if (dt == DType::kBool) f(bool{});
  else if (dt == DType::kF16 || dt == DType::kBF16) f(uint16_t{});
  else dispatch_numeric(dt, node, f);
}

// ---- 8-bit activations of the fused integer ops (QLinearSoftmax,
// QLinearLayerNormalization): per-tensor u8 or i8 codes that the op turns
// into float a row at a time, computes on, and quantizes back, exactly as
// the DequantizeLinear -> op -> QuantizeLinear group it replaces.

struct Q8 {
  float scale = 1;
  int32_t zp = 0;
  DType type = DType::kU8;  // u8 or i8
};
// The scale (input scale_in: one finite, non-zero f32) and zero point (input
// zp_in, optional: 0) of an 8-bit tensor of type `type`; `what` names it in errors.
Q8 read_q8(const OpContext& ctx, int scale_in, int zp_in, DType type, const std::string& what);
// The 256 dequantized values (code - zp) * scale, indexed by the code's byte.
std::array<float, 256> dequant_table(const Q8& q);
// y[i] = saturate(round_half_even(x[i] / scale) + zp) on the SIMD kernel
// (QuantizeLinear's rule); y holds n bytes of q's type.
void quantize_q8(const float* x, int64_t n, const Q8& q, void* y);
// y[i] = (x[i] - zp) * scale for n codes of q's type on the SIMD kernel:
// dequant_table's values, computed instead of looked up.
void dequantize_q8(const void* x, int64_t n, const Q8& q, float* y);

}  // namespace qforge::ops
