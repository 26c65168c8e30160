// The ONNX integer and quantization operators, and the com.microsoft
// "QOperator" ops that ONNX Runtime's quantizer writes.
//
//   QuantizeLinear, DequantizeLinear   opsets 10 (per tensor), 13 (per axis),
//                                      19 (f16/bf16 scales), 21 (blocked,
//                                      16- and 4-bit types, output_dtype);
//                                      com.microsoft versions (same semantics)
//   DynamicQuantizeLinear              opset 11
//   MatMulInteger, ConvInteger         opset 10 (i32 output)
//   QLinearMatMul                      opsets 10 and 21 (f16/bf16 scales)
//   QLinearConv                        opset 10
//   com.microsoft: QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu,
//   QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat,
//   DynamicQuantizeMatMul, MatMulIntegerToFloat, QGemm
//
// These are reference kernels, written to be read and to be exact, not fast.
// The matrix ops (MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv,
// MatMulIntegerToFloat, DynamicQuantizeMatMul, QGemm) validate here and then
// run the int8 GEMM (quant_gemm.h, kernels/qgemm.h) where it covers the case,
// bit for bit the result of the reference code, which stays as the fallback
// and as the tests' oracle (namespace reference, quant_gemm.h).
// Rounding and saturation come from qforge's quantization library
// (quantize_value / dequantize_value: round half to even, saturate to the
// storage type); where ONNX's reference implementation computes in float64
// (QLinearMatMul, QLinearConv: int32 accumulator times a float32 multiplier,
// numpy promotes to float64) so does round_saturate() below, with the same
// rounding rule. Integer sums are accumulated in int64, so they are exact;
// MatMulInteger and ConvInteger wrap them to int32 as the spec allows
// ("accumulation may overflow if and only if in 32 bits").
//
// float8 and float4 types are refused with an Unsupported error: qforge has
// no such element types.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/qgemm.h"
#include "ops/families.h"
#include "ops/nn_common.h"
#include "ops/op_util.h"
#include "ops/quant_gemm.h"
#include "qforge/pack.h"
#include "qforge/quant.h"
#include "qforge/thread_pool.h"
#include "quant/layout.h"

namespace qforge::ops {
namespace {

using ir::Dim;
using ir::SymShape;

const std::string kMicrosoft = "com.microsoft";

size_t sz(int64_t v) { return static_cast<size_t>(v); }
int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// ---------------------------------------------------------------- errors

[[noreturn]] void fail(const ir::Node& node, Errc code, const std::string& problem,
                       const std::string& expected) {
  throw Error(code, node.describe(), problem, expected);
}

// QFORGE_CHECK with the node as the subject; like it, the message is built
// only on failure (these checks run on every node run).
#define QREQUIRE(ok, node, code, problem, expected) \
  QFORGE_CHECK(ok, code, (node).describe(), problem, expected)

std::string name_of(DType t) { return std::string(dtype_name(t)); }

std::string type_list(std::span<const DType> ts) {
  std::string r;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (i > 0) r += i + 1 == ts.size() ? " or " : ", ";
    r += name_of(ts[i]);
  }
  return r;
}

bool one_of(DType t, std::span<const DType> ts) {
  return std::find(ts.begin(), ts.end(), t) != ts.end();
}

void expect_type(const ir::Node& node, std::string_view what, DType got,
                 std::span<const DType> ok) {
  if (std::find(ok.begin(), ok.end(), got) == ok.end()) [[unlikely]]
    fail(node, Errc::kTypeMismatch, std::string(what) + " is " + name_of(got),
         type_list(ok));
}

void expect_same_type(const ir::Node& node, std::string_view what, DType got,
                      std::string_view other, DType want) {
  QREQUIRE(got == want, node, Errc::kTypeMismatch,
           std::string(what) + " is " + name_of(got) + " but " + std::string(other) + " is " +
               name_of(want),
           name_of(want) + ", the type of " + std::string(other));
}

const std::array<DType, 1> kF32Only{DType::kF32};
const std::array<DType, 1> kI32Only{DType::kI32};
const std::array<DType, 2> kF32OrF16{DType::kF32, DType::kF16};
const std::array<DType, 3> kF32F16OrBF16{DType::kF32, DType::kF16, DType::kBF16};

const std::vector<DType> k8Bit = {DType::kU8, DType::kI8};

// The integer matrix ops (MatMulInteger, QLinearMatMul, ConvInteger,
// QLinearConv, MatMulIntegerToFloat, DynamicQuantizeMatMul, QGemm) validate
// their inputs here, then run the int8 GEMM (quant_gemm.h) where it covers
// the case (kFast), else this file's reference code, which the tests also
// call directly (kReference) as the oracle for the fast path.
enum class Path { kFast, kReference };

// ---------------------------------------------------------------- values

bool is_single(const Tensor& t) { return t.numel() == 1 && t.rank() <= 1; }

// Element i of an f32, f16 or bf16 tensor, as float (exact).
float float_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(t.raw())[i]);
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(t.raw())[i]);
    default: return t.data<float>()[i];
  }
}

std::vector<float> floats_of(const Tensor& t) {
  if (t.dtype() == DType::kF32) {  // the hot case (every dynamic MatMul's scales): one copy
    const float* p = t.data<float>();
    return std::vector<float>(p, p + t.numel());
  }
  std::vector<float> v(sz(t.numel()));
  for (int64_t i = 0, n = t.numel(); i < n; ++i) v[sz(i)] = float_at(t, i);
  return v;
}

// The integer codes of a quantized tensor (8-, 16-, 32- or packed 4-bit).
std::vector<int32_t> codes_of(const Tensor& t) {
  std::vector<int32_t> v(sz(t.numel()));
  if (!v.empty()) load_codes(t.raw(), t.numel(), t.dtype(), v.data());
  return v;
}

// codes_of(t)[0] without the vector (t has an element).
int32_t first_code(const Tensor& t) {
  int32_t v = 0;
  load_codes(t.raw(), 1, t.dtype(), &v);
  return v;
}

// v rounded to the precision of float type t (numpy arithmetic in f16/bf16).
// f32 -> f16/bf16 after one f32 operation on f16/bf16 operands is the
// correctly rounded result: f32 has more than 2p+2 bits of precision.
float round_to(DType t, float v) {
  if (t == DType::kF16) return f16_to_f32(f32_to_f16(v));
  if (t == DType::kBF16) return bf16_to_f32(f32_to_bf16(v));
  return v;
}

// round half to even, then add zp and saturate to [qmin, qmax], in double:
// quantize_value's rule for a value computed in float64. NaN gives qmin.
int32_t round_saturate(double v, int32_t zp, int64_t qmin, int64_t qmax) {
  const double lo = static_cast<double>(qmin) - zp, hi = static_cast<double>(qmax) - zp;
  double c = v > lo ? v : lo;
  c = c < hi ? c : hi;
  return static_cast<int32_t>(static_cast<int64_t>(std::nearbyint(c)) + zp);
}

void store_floats(Tensor& y, const std::vector<float>& v) {
  if (v.empty()) return;
  if (y.dtype() == DType::kF32) {
    std::memcpy(y.raw(), v.data(), v.size() * sizeof(float));
    return;
  }
  auto* d = static_cast<uint16_t*>(y.raw());
  for (size_t i = 0; i < v.size(); ++i)
    d[i] = y.dtype() == DType::kF16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
}

void store(Tensor& y, const std::vector<int32_t>& codes) {
  if (!codes.empty()) store_codes(codes.data(), static_cast<int64_t>(codes.size()), y.dtype(), y.raw());
}

// Element i of a u8, i8 or i32 output (kernels whose output can be much
// larger than their inputs write it in place rather than through a buffer).
void put_code(Tensor& y, int64_t i, int32_t v) {
  switch (y.dtype()) {
    case DType::kU8: static_cast<uint8_t*>(y.raw())[i] = static_cast<uint8_t>(v); break;
    case DType::kI8: static_cast<int8_t*>(y.raw())[i] = static_cast<int8_t>(v); break;
    default: y.data<int32_t>()[i] = v; break;
  }
}

// Element i of an f32, f16 or bf16 output.
void put_float(Tensor& y, int64_t i, float v) {
  switch (y.dtype()) {
    case DType::kF16: static_cast<uint16_t*>(y.raw())[i] = f32_to_f16(v); break;
    case DType::kBF16: static_cast<uint16_t*>(y.raw())[i] = f32_to_bf16(v); break;
    default: y.data<float>()[i] = v; break;
  }
}

// An exact integer sum as int32 accumulation would leave it (two's complement wrap).
int32_t wrap32(int64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

// A per-tensor scale: one f32 value (scalar or 1-element 1-D).
float single_scale(const OpContext& ctx, int i, std::string_view what, bool divisor) {
  const Tensor& t = ctx.input(i);
  expect_type(ctx.node(), what, t.dtype(), kF32Only);
  if (!is_single(t))  // (the message is built only on failure: this runs every call)
    fail(ctx.node(), Errc::kShapeMismatch, std::string(what) + " has shape " + shape_str(t.shape()),
         "a scalar or a 1-element 1-D tensor (per-tensor quantization)");
  const float s = float_at(t, 0);
  if (divisor)
    if (!(std::isfinite(s) && s != 0))
      fail(ctx.node(), Errc::kInvalidArgument, std::string(what) + " is " + std::to_string(s),
           "a finite, non-zero scale to divide by");
  return s;
}

// A per-tensor zero point of type `want` (0 when the optional input is absent).
int32_t single_zero_point(const OpContext& ctx, int i, std::string_view what, DType want,
                          std::string_view of, bool optional = true) {
  if (optional && !ctx.has_input(i)) return 0;
  const Tensor& t = ctx.input(i);
  expect_same_type(ctx.node(), what, t.dtype(), of, want);
  if (!is_single(t))
    fail(ctx.node(), Errc::kShapeMismatch, std::string(what) + " has shape " + shape_str(t.shape()),
         "a scalar or a 1-element 1-D tensor (per-tensor quantization)");
  int32_t code = 0;
  load_codes(t.raw(), 1, t.dtype(), &code);
  return code;
}

// ---------------------------------------------------------------- broadcasting

// True if `from` broadcasts (numpy, right-aligned) into `to` without growing it.
bool broadcastable_into(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  for (size_t k = 0; k < from.size(); ++k) {
    const int64_t f = from[from.size() - 1 - k], t = to[to.size() - 1 - k];
    if (f != t && f != 1) return false;
  }
  return true;
}

// Calls fn(out_index, in_offsets...) for every element of `out`, in row-major
// order, with the offsets of the broadcast inputs (strides from broadcast_strides).
template <typename Fn>
void for_each_broadcast(const Shape& out, const std::vector<std::vector<int64_t>>& strides, Fn&& fn) {
  const int64_t n = shape_numel(out);
  std::vector<int64_t> idx(out.size(), 0), off(strides.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    fn(i, off);
    for (size_t d = out.size(); d-- > 0;) {
      ++idx[d];
      for (size_t s = 0; s < strides.size(); ++s) off[s] += strides[s][d];
      if (idx[d] < out[d]) break;
      for (size_t s = 0; s < strides.size(); ++s) off[s] -= strides[s][d] * idx[d];
      idx[d] = 0;
    }
  }
}

// v (of shape `from`) broadcast to shape `to`; broadcastable_into(from, to).
template <typename T>
std::vector<T> expand(const std::vector<T>& v, const Shape& from, const Shape& to) {
  std::vector<T> out(sz(shape_numel(to)));
  for_each_broadcast(to, {broadcast_strides(from, to)},
                     [&](int64_t i, const std::vector<int64_t>& off) { out[sz(i)] = v[sz(off[0])]; });
  return out;
}

// ---------------------------------------------------------------- QuantizeLinear / DequantizeLinear

// What a Q/DQ node accepts, by domain and opset.
struct QdqRules {
  bool microsoft = false;
  bool per_axis = false;      // 1-D scales on `axis` (opset 13)
  bool blocked = false;       // block_size (opset 21)
  bool output_dtype = false;  // QuantizeLinear's output_dtype attribute (opset 21)
  std::span<const DType> scale_types;
  std::span<const DType> q_types;  // quantized types (y of Q; x of DQ, with i32)
};

// QdqRules' type lists (static: the rules are made on every call).
constexpr DType kScaleF32[] = {DType::kF32};
constexpr DType kScaleMs[] = {DType::kF32, DType::kF16};
constexpr DType kScale19[] = {DType::kF32, DType::kF16, DType::kBF16};
constexpr DType kQ8[] = {DType::kU8, DType::kI8};
constexpr DType kQWide[] = {DType::kU8, DType::kI8, DType::kU16, DType::kI16, DType::kU4, DType::kI4};

QdqRules qdq_rules(const ir::Node& node, int64_t opset) {
  QdqRules r;
  bool wide = false;
  if (node.domain == kMicrosoft) {
    r.microsoft = true;
    r.per_axis = true;
    wide = true;
    r.scale_types = kScaleMs;
  } else {
    r.per_axis = opset >= 13;
    r.blocked = r.output_dtype = wide = opset >= 21;
    r.scale_types = opset >= 19 ? std::span<const DType>(kScale19) : std::span<const DType>(kScaleF32);
  }
  r.q_types = wide ? std::span<const DType>(kQWide) : std::span<const DType>(kQ8);
  return r;
}

// ONNX element types that exist in ONNX but not in qforge.
const char* float8_name(int64_t onnx_type) {
  switch (onnx_type) {
    case 17: return "float8e4m3fn";
    case 18: return "float8e4m3fnuz";
    case 19: return "float8e5m2";
    case 20: return "float8e5m2fnuz";
    case 23: return "float4e2m1";
    default: return nullptr;
  }
}

std::optional<DType> output_dtype_attr(const ir::Node& node, const QdqRules& r) {
  if (!r.output_dtype) return std::nullopt;
  const int64_t t = node.attr_int("output_dtype", 0);
  if (t == 0) return std::nullopt;
  if (const char* f8 = float8_name(t))
    fail(node, Errc::kUnsupported, std::string("output_dtype is ") + f8,
         "an integer type (" + type_list(r.q_types) + "): qforge does not implement float8 or "
         "float4 quantization");
  std::optional<DType> d;
  if (t > 0 && t < 64) {
    try {
      d = dtype_from_onnx(static_cast<int>(t));
    } catch (const Error&) {
    }
  }
  if (!d) fail(node, Errc::kInvalidArgument, "output_dtype is " + std::to_string(t),
               "an ONNX TensorProto type: " + type_list(r.q_types));
  expect_type(node, "output_dtype", *d, r.q_types);
  return d;
}

// QuantizeLinear's output type: y_zero_point's type, else output_dtype, else u8.
DType quantize_output_type(const ir::Node& node, const QdqRules& r, std::optional<DType> zp_type) {
  const std::optional<DType> attr = output_dtype_attr(node, r);
  if (zp_type) {
    if (attr)
      QREQUIRE(*attr == *zp_type, node, Errc::kTypeMismatch,
               "output_dtype is " + name_of(*attr) + " but y_zero_point is " + name_of(*zp_type),
               "the same type for both");
    expect_type(node, "y_zero_point", *zp_type, r.q_types);
    return *zp_type;
  }
  return attr ? *attr : DType::kU8;
}

// The scales and zero points of a Q/DQ node, in the layout of quant/layout.h.
struct QdqParams {
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  DType scale_type = DType::kF32;
  int axis = -1;       // -1: per tensor
  int64_t block = 0;   // > 0: blocked along axis
};

QdqParams qdq_params(const OpContext& ctx, const QdqRules& r, const Shape& x,
                     const std::string& scale_name, const std::string& zp_name) {
  const ir::Node& node = ctx.node();
  const Tensor& s = ctx.input(1);
  expect_type(node, scale_name, s.dtype(), r.scale_types);
  const Tensor* z = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (z)
    QREQUIRE(z->shape() == s.shape() || (is_single(*z) && is_single(s)), node, Errc::kShapeMismatch,
             zp_name + " has shape " + shape_str(z->shape()) + " but " + scale_name +
                 " has shape " + shape_str(s.shape()),
             "the same shape for both");
  QdqParams p;
  p.scale_type = s.dtype();
  const int64_t block = r.blocked ? node.attr_int("block_size", 0) : 0;
  QREQUIRE(block >= 0, node, Errc::kInvalidArgument, "block_size is " + std::to_string(block),
           "0 (not blocked) or a positive block size");
  const auto rank = static_cast<int64_t>(x.size());
  auto axis_of = [&]() {
    QREQUIRE(rank >= 1, node, Errc::kShapeMismatch,
             "x is a scalar but " + scale_name + " has shape " + shape_str(s.shape()),
             "a single scale for a scalar input");
    return normalize_axis(node.attr_int("axis", 1), rank, node);
  };
  if (block > 0) {
    const int64_t axis = axis_of();
    Shape want = x;
    want[sz(axis)] = ceil_div(x[sz(axis)], block);
    QREQUIRE(s.shape() == want, node, Errc::kShapeMismatch,
             scale_name + " has shape " + shape_str(s.shape()) + " for x of shape " + shape_str(x) +
                 " with block_size " + std::to_string(block) + " on axis " + std::to_string(axis),
             shape_str(want) + " (x's shape with dimension " + std::to_string(axis) +
                 " divided by block_size, rounded up)");
    p.axis = static_cast<int>(axis);
    p.block = block;
  } else if (is_single(s)) {
    // per tensor
  } else if (r.per_axis && s.rank() == 1) {
    const int64_t axis = axis_of();
    QREQUIRE(
        s.numel() == x[sz(axis)], node, Errc::kShapeMismatch,
        scale_name + " has " + std::to_string(s.numel()) + " values for x of shape " +
            shape_str(x) + " on axis " + std::to_string(axis),
        std::to_string(x[sz(axis)]) + " values, one per index of axis " + std::to_string(axis));
    p.axis = static_cast<int>(axis);
  } else {
    std::string want = "a scalar (per tensor)";
    if (r.per_axis) want += ", a 1-D tensor with one value per index of `axis` (per axis)";
    if (r.blocked) want += ", or x's rank with block_size > 0 (blocked)";
    fail(node, Errc::kShapeMismatch, scale_name + " has shape " + shape_str(s.shape()), want);
  }
  p.scale = floats_of(s);
  p.zero_point = z ? codes_of(*z) : std::vector<int32_t>(p.scale.size(), 0);
  return p;
}

std::span<const DType> quantize_input_types(const QdqRules& r, int64_t opset) {
  static constexpr DType kMs[] = {DType::kF32, DType::kF16};
  static constexpr DType k19[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI32};
  static constexpr DType kOld[] = {DType::kF32, DType::kI32};
  if (r.microsoft) return kMs;
  if (opset >= 19) return k19;
  return kOld;
}

// y = saturate(round(x / y_scale) + y_zero_point), round half to even. The
// division is float32 for f32 scales (the library's quantize_value); with
// f16 / bf16 scales its result is rounded to that type first (the scale's
// type sets the precision, as in numpy and the later ONNX spec text); int32
// x divides in float64 (numpy's int32 / float32).
void quantize_linear_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const QdqRules r = qdq_rules(node, ctx.opset());
  const Tensor& x = ctx.input(0);
  expect_type(node, "input x", x.dtype(), quantize_input_types(r, ctx.opset()));
  const DType out = quantize_output_type(
      node, r, ctx.has_input(2) ? std::optional<DType>(ctx.input(2).dtype()) : std::nullopt);
  const QdqParams p = qdq_params(ctx, r, x.shape(), "y_scale", "y_zero_point");
  for (size_t i = 0; i < p.scale.size(); ++i)
    QREQUIRE(std::isfinite(p.scale[i]) && p.scale[i] != 0, node, Errc::kInvalidArgument,
             "y_scale[" + std::to_string(i) + "] is " + std::to_string(p.scale[i]),
             "finite, non-zero scales (x / y_scale must be defined)");
  const auto qmin = static_cast<int32_t>(dtype_min(out)), qmax = static_cast<int32_t>(dtype_max(out));
  if (x.dtype() == DType::kF32 && p.scale.size() == 1 && p.scale_type == DType::kF32 &&
      (out == DType::kU8 || out == DType::kI8)) {
    // The common case on the SIMD kernel: the same round(x / scale) + zp.
    Tensor& y = ctx.output(0, out, x.shape());
    const auto& k = kernels::kernels();
    if (out == DType::kU8)
      k.quantize_u8(x.data<float>(), x.numel(), p.scale[0], p.zero_point[0], qmin, qmax, y.data<uint8_t>());
    else
      k.quantize_i8(x.data<float>(), x.numel(), p.scale[0], p.zero_point[0], qmin, qmax, y.data<int8_t>());
    return;
  }
  std::vector<int32_t> codes(sz(x.numel()));
  const int32_t* xi = x.dtype() == DType::kI32 ? x.data<int32_t>() : nullptr;
  const auto l = detail::layout_of(x.shape(), p.axis, p.block);
  detail::for_each_element(l, p.axis, p.block, [&](int64_t i, int64_t k) {
    const float s = p.scale[sz(k)];
    const int32_t zp = p.zero_point[sz(k)];
    int32_t q;
    if (xi) {
      q = round_saturate(static_cast<double>(xi[i]) / static_cast<double>(s), zp, qmin, qmax);
    } else if (p.scale_type == DType::kF32) {
      q = quantize_value(float_at(x, i), s, zp, qmin, qmax);
    } else {
      q = quantize_value(round_to(p.scale_type, float_at(x, i) / s), 1.0f, zp, qmin, qmax);
    }
    codes[sz(i)] = q;
  });
  store(ctx.output(0, out, x.shape()), codes);
}

void quantize_linear_infer(InferContext& c) {
  const QdqRules r = qdq_rules(c.node(), c.opset());
  std::optional<DType> out;
  if (!c.has_input(2)) {
    out = quantize_output_type(c.node(), r, std::nullopt);
  } else if (c.input(2).dtype) {
    out = quantize_output_type(c.node(), r, c.input(2).dtype);
  } else {
    out = output_dtype_attr(c.node(), r);
  }
  set_output(c, 0, out, c.input(0).shape);
}

std::string quantize_linear_check(const InferContext& c) {
  try {
    output_dtype_attr(c.node(), qdq_rules(c.node(), c.opset()));
  } catch (const Error& e) {
    return e.problem() + "; expected " + e.expected();
  }
  return {};
}

// y = (x - x_zero_point) * x_scale, in float32 (dequantize_value), rounded
// to the scale's type (f16 / bf16) at the end.
void dequantize_linear_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const QdqRules r = qdq_rules(node, ctx.opset());
  const Tensor& x = ctx.input(0);
  if (x.dtype() != DType::kI32 && !one_of(x.dtype(), r.q_types)) {
    std::vector<DType> x_types(r.q_types.begin(), r.q_types.end());
    x_types.push_back(DType::kI32);
    expect_type(node, "input x", x.dtype(), x_types);  // fails, naming them all
  }
  if (ctx.has_input(2))
    expect_same_type(node, "x_zero_point", ctx.input(2).dtype(), "x", x.dtype());
  const QdqParams p = qdq_params(ctx, r, x.shape(), "x_scale", "x_zero_point");
  if (x.dtype() == DType::kI32)
    for (size_t i = 0; i < p.zero_point.size(); ++i)
      QREQUIRE(p.zero_point[i] == 0, node, Errc::kInvalidArgument,
               "x_zero_point[" + std::to_string(i) + "] is " + std::to_string(p.zero_point[i]) +
                   " for int32 x",
               "0: int32 inputs have no zero point");
  if ((x.dtype() == DType::kU8 || x.dtype() == DType::kI8) && p.scale.size() == 1 &&
      p.scale_type == DType::kF32) {
    // Per tensor, 8-bit: the SIMD kernel, (x - zp) * scale as dequantize_value.
    float* out = ctx.output(0, DType::kF32, x.shape()).data<float>();
    dequantize_q8(x.raw(), x.numel(), Q8{p.scale[0], p.zero_point[0], x.dtype()}, out);
    return;
  }
  const std::vector<int32_t> codes = codes_of(x);
  std::vector<float> y(codes.size());
  const auto l = detail::layout_of(x.shape(), p.axis, p.block);
  detail::for_each_element(l, p.axis, p.block, [&](int64_t i, int64_t k) {
    y[sz(i)] = dequantize_value(codes[sz(i)], p.scale[sz(k)], p.zero_point[sz(k)]);
  });
  store_floats(ctx.output(0, p.scale_type, x.shape()), y);
}

void dequantize_linear_infer(InferContext& c) {
  std::optional<DType> out = c.input(1).dtype;
  if (c.node().domain != kMicrosoft && c.opset() < 19) out = DType::kF32;  // y is float before 19
  if (out && !one_of(*out, kScale19)) out.reset();
  set_output(c, 0, out, c.input(0).shape);
}

// ---------------------------------------------------------------- DynamicQuantizeLinear

// dynamic_quantize_linear's numbers for a non-empty f32 x, in parts on the
// pool (min and max are exact and the codes elementwise, so the split
// changes nothing): parts_of(ctx, n) parts of n values, and fn(part, begin,
// end) for each.
int64_t parts_of(const OpContext& ctx, int64_t n) {
  constexpr int64_t kPartMin = int64_t{1} << 15;  // less isn't worth waking a thread
  return std::clamp<int64_t>(n / kPartMin, 1, ctx.pool() != nullptr ? ctx.pool()->threads() : 1);
}
template <typename Fn>
void in_parts(const OpContext& ctx, int64_t n, int64_t parts, const Fn& fn) {
  auto run = [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) fn(p, n * p / parts, n * (p + 1) / parts);
  };
  if (parts == 1) run(0, 1);
  else ctx.pool()->parallel_for(parts, 1, run);
}

// The u8 per-tensor parameters of x from its range; `what` names x in errors.
QuantParams dynamic_u8_params(const OpContext& ctx, const Tensor& x, const char* what) {
  const auto& k = kernels::kernels();
  const float* v = x.data<float>();
  const int64_t parts = parts_of(ctx, x.numel());
  std::vector<float> lo(sz(parts)), hi(sz(parts));
  std::vector<char> finite(sz(parts), 0);
  in_parts(ctx, x.numel(), parts, [&](int64_t p, int64_t i0, int64_t i1) {
    finite[sz(p)] = k.minmax_f32(v + i0, i1 - i0, &lo[sz(p)], &hi[sz(p)]);
  });
  try {
    if (std::find(finite.begin(), finite.end(), 0) != finite.end())
      return choose_params_for(x, QuantSpec{});  // throws, naming the value
    return choose_params(QuantSpec{}, *std::min_element(lo.begin(), lo.end()),
                         *std::max_element(hi.begin(), hi.end()), what);
  } catch (const Error& e) {
    fail(ctx.node(), e.code(), std::string(what) + ": " + e.problem(), e.expected());
  }
}

// x's codes with p (dynamic_u8_params) into y.
void dynamic_u8_codes(const OpContext& ctx, const Tensor& x, const QuantParams& p, uint8_t* y) {
  const auto& k = kernels::kernels();
  const float* v = x.data<float>();
  in_parts(ctx, x.numel(), parts_of(ctx, x.numel()), [&](int64_t, int64_t i0, int64_t i1) {
    k.quantize_u8(v + i0, i1 - i0, p.scale[0], p.zero_point[0], 0, 255, y + i0);
  });
}

// The library's dynamic_quantize_linear is ONNX's function body: range
// widened to contain 0, scale = range / 255, zero point = round(saturate(
// -min / scale)), y = QuantizeLinear(x, scale, zero point). (It keeps the
// scale >= float32 epsilon, so an all-zero x gives scale eps and zero point 0
// where ONNX's body divides 0 by 0.) An empty x is treated like an all-zero one.
// Here its numbers come from dynamic_u8_params and dynamic_u8_codes, the
// codes written straight into the output.
void dynamic_quantize_linear_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  expect_type(node, "input x", x.dtype(), kF32Only);
  const QuantParams params = x.numel() == 0 ? choose_params(QuantSpec{}, 0.0f, 0.0f)
                                            : dynamic_u8_params(ctx, x, "input x");
  Tensor& y = ctx.output(0, DType::kU8, x.shape());
  if (x.numel() > 0) dynamic_u8_codes(ctx, x, params, y.data<uint8_t>());
  if (ctx.num_outputs() > 1) ctx.output(1, DType::kF32, {}).data<float>()[0] = params.scale[0];
  if (ctx.num_outputs() > 2)
    ctx.output(2, DType::kU8, {}).data<uint8_t>()[0] = static_cast<uint8_t>(params.zero_point[0]);
}

void dynamic_quantize_linear_infer(InferContext& c) {
  set_output(c, 0, DType::kU8, c.input(0).shape);
  set_output(c, 1, DType::kF32, SymShape{});
  set_output(c, 2, DType::kU8, SymShape{});
}

// ---------------------------------------------------------------- matmul

// numpy matmul of A [..., M, K] and B [..., K, N]: 1-D A is [1, K] and 1-D B
// is [K, 1] (those dimensions are dropped from the result); the batch
// dimensions broadcast.
struct MatmulPlan {
  Shape a2, b2, out;
  int64_t M = 0, K = 0, N = 0;
  std::vector<int64_t> a_mat, b_mat;  // per output matrix: the matrix of A and of B
};

MatmulPlan plan_matmul(const Shape& a, const Shape& b, const ir::Node& node) {
  QREQUIRE(!a.empty() && !b.empty(), node, Errc::kShapeMismatch,
           "has inputs of shapes " + shape_str(a) + " and " + shape_str(b),
           "inputs of rank >= 1 (matrix product)");
  MatmulPlan p;
  p.a2 = a.size() == 1 ? Shape{1, a[0]} : a;
  p.b2 = b.size() == 1 ? Shape{b[0], 1} : b;
  p.M = p.a2[p.a2.size() - 2];
  p.K = p.a2.back();
  p.N = p.b2.back();
  QREQUIRE(p.b2[p.b2.size() - 2] == p.K, node, Errc::kShapeMismatch,
           "multiplies A of shape " + shape_str(a) + " by B of shape " + shape_str(b),
           "A's last dimension equal to B's second-to-last (" + std::to_string(p.K) + ")");
  const Shape ab(p.a2.begin(), p.a2.end() - 2), bb(p.b2.begin(), p.b2.end() - 2);
  Shape ob = broadcast_shapes(ab, bb, node);
  // Each operand's matrices: one per output matrix (i) or a single one (0)
  // in the common cases, else by broadcasting.
  const int64_t count = shape_numel(ob);
  const bool a_all = ab == ob, b_all = bb == ob;
  const bool a_one = shape_numel(ab) == 1, b_one = shape_numel(bb) == 1;
  if ((a_all || a_one) && (b_all || b_one)) {
    p.a_mat.resize(sz(count));
    p.b_mat.resize(sz(count));
    for (int64_t i = 0; i < count; ++i) {
      p.a_mat[sz(i)] = a_all ? i : 0;
      p.b_mat[sz(i)] = b_all ? i : 0;
    }
  } else {
    for_each_broadcast(ob, {broadcast_strides(ab, ob), broadcast_strides(bb, ob)},
                       [&](int64_t, const std::vector<int64_t>& off) {
                         p.a_mat.push_back(off[0]);
                         p.b_mat.push_back(off[1]);
                       });
  }
  p.out = std::move(ob);
  p.out.reserve(p.out.size() + 2);
  if (a.size() > 1) p.out.push_back(p.M);
  if (b.size() > 1) p.out.push_back(p.N);
  return p;
}

// Exact integer products of A32 (shape a2) and B32 (shape b2), per plan:
// fn(bi, m, n, sum) for output matrix bi, row m, column n, in row-major order
// (so the output index is (bi * M + m) * N + n).
template <typename Fn>
void int_matmul(const MatmulPlan& p, const std::vector<int32_t>& A, const std::vector<int32_t>& B, Fn&& fn) {
  std::vector<int64_t> row(sz(p.N));
  for (size_t bi = 0; bi < p.a_mat.size(); ++bi) {
    const int32_t* a = A.data() + p.a_mat[bi] * p.M * p.K;
    const int32_t* b = B.data() + p.b_mat[bi] * p.K * p.N;
    for (int64_t m = 0; m < p.M; ++m) {
      std::fill(row.begin(), row.end(), 0);
      for (int64_t k = 0; k < p.K; ++k) {
        const int64_t av = a[m * p.K + k];
        for (int64_t n = 0; n < p.N; ++n) row[sz(n)] += av * b[k * p.N + n];
      }
      for (int64_t n = 0; n < p.N; ++n) fn(static_cast<int64_t>(bi), m, n, row[sz(n)]);
    }
  }
}

enum class Side { kA, kB };

// The shape that a zero point or scale of A (per tensor / per row) or of B
// (per tensor / per column) broadcasts with against the operand's shape x2:
// a single value is per tensor; a 1-D tensor of M values is per row of A
// ([M, 1]), of N values per column of B ([N]); N-D tensors as they are
// ([..., M, 1] for A, [..., 1, N] for B). A scale may not vary along K.
Shape side_param_shape(const ir::Node& node, const Tensor& p, const Shape& x2, Side side,
                       const std::string& name, bool is_scale) {
  Shape ps;
  if (p.numel() == 1) ps = {};
  else if (p.rank() == 1) ps = side == Side::kA ? Shape{p.dim(0), 1} : Shape{p.dim(0)};
  else ps = p.shape();
  bool ok = broadcastable_into(ps, x2);
  if (ok && is_scale) {
    if (side == Side::kA && !ps.empty()) ok = ps.back() == 1;
    if (side == Side::kB && ps.size() >= 2) ok = ps[ps.size() - 2] == 1;
  }
  if (!ok) {
    const int64_t mn = side == Side::kA ? x2[x2.size() - 2] : x2.back();
    const std::string m = std::to_string(mn);
    fail(node, Errc::kShapeMismatch,
         name + " has shape " + shape_str(p.shape()) + " for " + (side == Side::kA ? "A" : "B") +
             " of shape " + shape_str(x2),
         side == Side::kA
             ? "a scalar (per tensor), " + m + " values (one per row of A) or shape [..., " + m + ", 1]"
             : "a scalar (per tensor), " + m + " values (one per column of B) or shape [..., 1, " + m + "]");
  }
  return ps;
}

// x's codes minus its zero point, over the operand shape x2.
std::vector<int32_t> minus_zero_point(const ir::Node& node, const Tensor& x, const Tensor* zp,
                                      const Shape& x2, Side side, const std::string& zp_name) {
  std::vector<int32_t> v = codes_of(x);
  if (!zp) return v;
  const Shape zs = side_param_shape(node, *zp, x2, side, zp_name, false);
  const std::vector<int32_t> z = expand(codes_of(*zp), zs, x2);
  for (size_t i = 0; i < v.size(); ++i) v[i] -= z[i];
  return v;
}

// Scales of A per row (one per [.., M] of a2) or of B per column (one per [.., N] of b2).
std::vector<float> side_scales(const ir::Node& node, const Tensor& s, const Shape& x2, Side side,
                               const std::string& name) {
  const Shape ps = side_param_shape(node, s, x2, side, name, true);
  Shape rows = x2;
  rows[side == Side::kA ? rows.size() - 1 : rows.size() - 2] = 1;
  return expand(floats_of(s), ps, rows);
}

// ---- what the fast path covers (quant_gemm.h)

// A per-tensor zero point of a matmul operand: absent (0) or a single value
// (any rank; side_param_shape's per-tensor case).
std::optional<int32_t> per_tensor_zp(const Tensor* zp) {
  if (zp == nullptr) return 0;
  if (zp->numel() != 1) return std::nullopt;
  return first_code(*zp);
}

// N per-column values of B's zero point: absent (zeros), a single value, or
// a 1-D tensor of N (side_param_shape's per-tensor and per-column cases).
std::optional<std::vector<int32_t>> per_column_zp(const Tensor* zp, int64_t N) {
  if (zp == nullptr) return std::vector<int32_t>(sz(N), 0);
  if (zp->numel() == 1) return std::vector<int32_t>(sz(N), first_code(*zp));
  if (zp->rank() == 1 && zp->numel() == N) return codes_of(*zp);
  return std::nullopt;
}

// N per-column values of B's scale (single or 1-D of N), as float.
std::optional<std::vector<float>> per_column_scale(const Tensor& s, int64_t N) {
  if (s.numel() == 1) return std::vector<float>(sz(N), float_at(s, 0));
  if (s.rank() == 1 && s.numel() == N) return floats_of(s);
  return std::nullopt;
}

// M per-output-channel values of a conv's w_scale or w_zero_point (already
// checked by expect_per_channel: single, or 1-D of M).
template <typename T>
std::vector<T> per_channel(const std::vector<T>& v, int64_t M) {
  return v.size() == 1 ? std::vector<T>(sz(M), v[0]) : v;
}

bool signed8(const Tensor& t) { return t.dtype() == DType::kI8; }

// The fast path's description of a planned matmul (A per tensor, B per
// column); p's matrix lists are moved into it (the rest of p stays).
int8::Matmul int8_matmul(MatmulPlan&& p, const Tensor& a, int32_t a_zp, const Tensor& b,
                         std::vector<int32_t> b_zp) {
  int8::Matmul m;
  m.a = &a;
  m.a_zp = a_zp;
  m.b = &b;
  m.b_zp = std::move(b_zp);
  m.M = p.M;
  m.K = p.K;
  m.N = p.N;
  m.a_mat = std::move(p.a_mat);
  m.b_mat = std::move(p.b_mat);
  return m;
}

std::optional<SymShape> matmul_sym(const InferContext& c, int ia, int ib) {
  const ir::ValueInfo& a = c.input(ia);
  const ir::ValueInfo& b = c.input(ib);
  if (!a.shape || !b.shape) return std::nullopt;
  const ir::Node& node = c.node();
  QREQUIRE(
      !a.shape->empty() && !b.shape->empty(), node, Errc::kShapeMismatch,
      "has inputs of shapes " + ir::sym_shape_str(*a.shape) + " and " + ir::sym_shape_str(*b.shape),
      "inputs of rank >= 1 (matrix product)");
  const SymShape a2 = a.shape->size() == 1 ? SymShape{Dim(1), (*a.shape)[0]} : *a.shape;
  const SymShape b2 = b.shape->size() == 1 ? SymShape{(*b.shape)[0], Dim(1)} : *b.shape;
  const Dim& ka = a2.back();
  const Dim& kb = b2[b2.size() - 2];
  if (ka.known() && kb.known())
    QREQUIRE(ka.size == kb.size, node, Errc::kShapeMismatch,
             "multiplies A of shape " + ir::sym_shape_str(*a.shape) + " by B of shape " +
                 ir::sym_shape_str(*b.shape),
             "A's last dimension equal to B's second-to-last");
  SymShape out = broadcast_sym(SymShape(a2.begin(), a2.end() - 2), SymShape(b2.begin(), b2.end() - 2), node);
  if (a.shape->size() > 1) out.push_back(a2[a2.size() - 2]);
  if (b.shape->size() > 1) out.push_back(b2.back());
  return out;
}

// Y = (A - a_zero_point) x (B - b_zero_point), int32.
void matmul_integer_run(OpContext& ctx, Path path) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  expect_type(node, "input A", a.dtype(), k8Bit);
  expect_type(node, "input B", b.dtype(), k8Bit);
  const Tensor* az = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  const Tensor* bz = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  if (az) expect_same_type(node, "a_zero_point", az->dtype(), "A", a.dtype());
  if (bz) expect_same_type(node, "b_zero_point", bz->dtype(), "B", b.dtype());
  MatmulPlan p = plan_matmul(a.shape(), b.shape(), node);
  if (path == Path::kFast) {
    // Wrapping int32 sums are the spec's: no exactness condition.
    const std::optional<int32_t> a_zp = per_tensor_zp(az);
    std::optional<std::vector<int32_t>> b_zp = per_column_zp(bz, p.N);
    if (a_zp && b_zp) {
      const int8::Matmul m = int8_matmul(std::move(p), a, *a_zp, b, std::move(*b_zp));
      int8::matmul(m, ctx.state(), ctx.output(0, DType::kI32, p.out).raw(), ctx.pool());
      return;
    }
  }
  const auto A = minus_zero_point(node, a, az, p.a2, Side::kA, "a_zero_point");
  const auto B = minus_zero_point(node, b, bz, p.b2, Side::kB, "b_zero_point");
  int32_t* y = ctx.output(0, DType::kI32, p.out).data<int32_t>();
  int_matmul(p, A, B, [&](int64_t bi, int64_t m, int64_t n, int64_t sum) {
    y[(bi * p.M + m) * p.N + n] = wrap32(sum);
  });
}

void matmul_integer_infer(InferContext& c) { set_output(c, 0, DType::kI32, matmul_sym(c, 0, 1)); }

// y = saturate(round((A - a_zp) x (B - b_zp) * (a_scale * b_scale / y_scale)) + y_zp):
// the multiplier in the scales' type (float32, or f16 / bf16 at opset 21),
// the product with the exact integer sum in float64, as ONNX's reference.
// ai.qforge QLinearMatMul is the same op with an optional ninth input, an
// int32 bias [N] in units of a_scale * b_scale[n] (zero point 0, as
// QLinearConv's), added to the integer sum before the multiplier: a
// MatMul -> Add(bias) pair in one op.
void qlinear_matmul_run(OpContext& ctx, Path path) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& as = ctx.input(1);
  const Tensor& az = ctx.input(2);
  const Tensor& b = ctx.input(3);
  const Tensor& bs = ctx.input(4);
  const Tensor& bz = ctx.input(5);
  const Tensor& ys = ctx.input(6);
  const Tensor& yz = ctx.input(7);
  expect_type(node, "input a", a.dtype(), k8Bit);
  expect_type(node, "input b", b.dtype(), k8Bit);
  expect_same_type(node, "a_zero_point", az.dtype(), "a", a.dtype());
  expect_same_type(node, "b_zero_point", bz.dtype(), "b", b.dtype());
  expect_type(node, "y_zero_point", yz.dtype(), k8Bit);
  if (ctx.opset() >= 21)
    expect_type(node, "a_scale", as.dtype(), kF32F16OrBF16);
  else
    expect_type(node, "a_scale", as.dtype(), kF32Only);
  expect_same_type(node, "b_scale", bs.dtype(), "a_scale", as.dtype());
  expect_same_type(node, "y_scale", ys.dtype(), "a_scale", as.dtype());
  if (!(is_single(ys) && is_single(yz)))  // (messages built only on failure)
    fail(node, Errc::kShapeMismatch,
         "y_scale has shape " + shape_str(ys.shape()) + " and y_zero_point " + shape_str(yz.shape()),
         "single values (the output is quantized per tensor)");
  const float y_scale = float_at(ys, 0);
  if (!(std::isfinite(y_scale) && y_scale != 0))
    fail(node, Errc::kInvalidArgument, "y_scale is " + std::to_string(y_scale),
         "a finite, non-zero scale to divide by");
  const int32_t y_zp = first_code(yz);
  MatmulPlan p = plan_matmul(a.shape(), b.shape(), node);
  std::vector<int32_t> bias;  // ai.qforge's: N values, or none
  int64_t bias_max = 0;
  if (ctx.has_input(8)) {
    const Tensor& bt = ctx.input(8);
    expect_type(node, "bias", bt.dtype(), kI32Only);
    if (!(bt.rank() == 1 && bt.numel() == p.N))
      fail(node, Errc::kShapeMismatch, "bias has shape " + shape_str(bt.shape()),
           "[" + std::to_string(p.N) + "] (one int32 value per column of the product)");
    bias.assign(bt.data<int32_t>(), bt.data<int32_t>() + p.N);
    for (int32_t v : bias) bias_max = std::max(bias_max, std::abs(int64_t{v}));
  }
  const DType t = as.dtype();
  if (path == Path::kFast && as.numel() == 1) {
    // A per tensor, B per tensor or per column, and an int32 sum (bias
    // included) that equals the reference's int64 one.
    const std::optional<int32_t> a_zp = per_tensor_zp(&az);
    std::optional<std::vector<int32_t>> b_zp = per_column_zp(&bz, p.N);
    const std::optional<std::vector<float>> sb = per_column_scale(bs, p.N);
    if (a_zp && b_zp && sb &&
        kernels::exact_in_int32(p.K, signed8(a), *a_zp, signed8(b), b_zp->data(), p.N, bias_max)) {
      int8::Matmul m = int8_matmul(std::move(p), a, *a_zp, b, std::move(*b_zp));
      m.ep.out = kernels::QOutput::kQ8Double;
      m.ep.bias = std::move(bias);
      const float sa = float_at(as, 0);
      m.ep.scale.reserve(sz(p.N));
      for (int64_t n = 0; n < p.N; ++n)  // the multiplier exactly as below
        m.ep.scale.push_back(round_to(t, round_to(t, sa * (*sb)[sz(n)]) / y_scale));
      m.ep.y_zp = y_zp;
      m.ep.y_signed = signed8(yz);
      int8::matmul(m, ctx.state(), ctx.output(0, yz.dtype(), p.out).raw(), ctx.pool());
      return;
    }
  }
  const auto A = minus_zero_point(node, a, &az, p.a2, Side::kA, "a_zero_point");
  const auto B = minus_zero_point(node, b, &bz, p.b2, Side::kB, "b_zero_point");
  const auto sa = side_scales(node, as, p.a2, Side::kA, "a_scale");
  const auto sb = side_scales(node, bs, p.b2, Side::kB, "b_scale");
  const int64_t qmin = dtype_min(yz.dtype()), qmax = dtype_max(yz.dtype());
  Tensor& y = ctx.output(0, yz.dtype(), p.out);
  int_matmul(p, A, B, [&](int64_t bi, int64_t m, int64_t n, int64_t sum) {
    const float s = round_to(t, sa[sz(p.a_mat[sz(bi)] * p.M + m)] * sb[sz(p.b_mat[sz(bi)] * p.N + n)]);
    const float mult = round_to(t, s / y_scale);
    const int64_t acc = sum + (bias.empty() ? 0 : bias[sz(n)]);
    put_code(y, (bi * p.M + m) * p.N + n, round_saturate(static_cast<double>(acc) * mult, y_zp, qmin, qmax));
  });
}

void qlinear_matmul_infer(InferContext& c) {
  set_output(c, 0, c.input(7).dtype, matmul_sym(c, 0, 3));
}

// ---------------------------------------------------------------- convolution and pooling windows

std::string auto_pad_of(const ir::Node& node) {
  const std::string ap = node.attr_string("auto_pad", "NOTSET");
  QREQUIRE(ap == "NOTSET" || ap == "VALID" || ap == "SAME_UPPER" || ap == "SAME_LOWER", node,
           Errc::kInvalidArgument, "auto_pad is '" + ap + "'",
           "NOTSET, VALID, SAME_UPPER or SAME_LOWER");
  return ap;
}

constexpr int64_t kMaxAttr = std::numeric_limits<int32_t>::max();

// An ints attribute of `count` values in [lo, kMaxAttr], or `dflt` repeated.
std::vector<int64_t> ints_attr(const ir::Node& node, const char* name, size_t count, int64_t dflt,
                               int64_t lo) {
  if (!node.has_attr(name)) return std::vector<int64_t>(count, dflt);
  std::vector<int64_t> v = node.attr_ints(name);
  QREQUIRE(v.size() == count, node, Errc::kInvalidArgument,
           std::string(name) + " has " + std::to_string(v.size()) + " values",
           std::to_string(count) + " (one per spatial axis" +
               (std::string(name) == "pads" ? ", begin then end)" : ")"));
  for (int64_t e : v)
    QREQUIRE(e >= lo && e <= kMaxAttr, node, Errc::kInvalidArgument,
             std::string(name) + " contains " + std::to_string(e),
             "values in [" + std::to_string(lo) + ", " + std::to_string(kMaxAttr) + "]");
  return v;
}

// The sliding-window attributes of Conv-like and pooling ops.
struct Window {
  std::string auto_pad;
  std::vector<int64_t> kernel;  // empty: from the weights
  std::vector<int64_t> strides, dilations, pads;
  bool ceil_mode = false;
};

Window window_attrs(const ir::Node& node, size_t spatial, bool dilations) {
  Window w;
  w.auto_pad = auto_pad_of(node);
  if (node.has_attr("kernel_shape")) w.kernel = ints_attr(node, "kernel_shape", spatial, 1, 1);
  w.strides = ints_attr(node, "strides", spatial, 1, 1);
  w.dilations = dilations ? ints_attr(node, "dilations", spatial, 1, 1) : std::vector<int64_t>(spatial, 1);
  w.pads = ints_attr(node, "pads", 2 * spatial, 0, 0);
  return w;
}

// A convolution's prepared state: its packed weights (int8::prepare_conv, or
// nullptr) and, where they are valid for its constant weights' rank, its
// group and window attributes, read once instead of on every call (at
// batch 1 the lookups were ~5% of dwsep_cnn's run). Where they aren't, the
// run reads them and reports what is wrong.
struct ConvState {
  std::shared_ptr<const void> packed;
  std::optional<Window> win;
  int64_t group = 1;
  // QLinearConv's fast-path values (qconv_channels) where its inputs 1 to 8
  // (all but x) are constants, used while the run's inputs are those tensors.
  std::optional<int8::ConvChannels> q;
  std::array<int8::SourceTensor, 8> q_src;

  const int8::ConvChannels* q_of(const OpContext& ctx) const {
    if (!q) return nullptr;
    for (int i = 1; i <= 8; ++i)
      if (!q_src[sz(i - 1)].is(ctx.has_input(i) ? &ctx.input(i) : nullptr)) return nullptr;
    return &*q;
  }
};

const void* packed_of(const OpContext& ctx) {
  const auto* st = static_cast<const ConvState*>(ctx.state());
  return st != nullptr ? st->packed.get() : nullptr;
}

std::shared_ptr<ConvState> prepare_conv_state(const PrepareContext& ctx, int w_index) {
  auto st = std::make_shared<ConvState>();
  st->packed = int8::prepare_conv(ctx, w_index);
  const Tensor* w = sz(w_index) < ctx.constants.size() ? ctx.constants[sz(w_index)] : nullptr;
  if (w != nullptr && w->rank() >= 3) {
    try {
      st->group = ctx.node.attr_int("group", 1);
      st->win = window_attrs(ctx.node, sz(w->rank() - 2), true);
    } catch (const Error&) {
      // win stays empty: the run reads the attributes and names the fault.
    }
  }
  return st;
}

// Output size along spatial axis d for input size `in` and kernel size k;
// sets the pads actually used. -1 if the dilated kernel doesn't fit.
int64_t window_out(const Window& w, size_t d, int64_t in, int64_t k, int64_t& pb, int64_t& pe) {
  const size_t n = w.strides.size();
  const int64_t s = w.strides[d], keff = (k - 1) * w.dilations[d] + 1;
  if (w.auto_pad == "SAME_UPPER" || w.auto_pad == "SAME_LOWER") {
    const int64_t out = ceil_div(in, s);
    const int64_t total = std::max<int64_t>(0, (out - 1) * s + keff - in);
    const int64_t small = total / 2;
    pb = w.auto_pad == "SAME_UPPER" ? small : total - small;
    pe = total - pb;
    return out;
  }
  if (w.auto_pad == "VALID") {
    pb = pe = 0;
  } else {
    pb = w.pads[d];
    pe = w.pads[d + n];
  }
  const int64_t span = in + pb + pe - keff;
  if (span < 0) return -1;
  int64_t out = (w.ceil_mode ? ceil_div(span, s) : span / s) + 1;
  // ceil_mode: a last window that would start in the end padding is dropped.
  if (w.ceil_mode && (out - 1) * s >= in + pb) --out;
  return out;
}

[[noreturn]] void window_too_big(const ir::Node& node, size_t d, int64_t in, int64_t k) {
  fail(node, Errc::kShapeMismatch,
       "kernel size " + std::to_string(k) + " (with dilation) on spatial axis " + std::to_string(d) +
           " does not fit the padded input size " + std::to_string(in),
       "a kernel no larger than the padded input");
}

struct ConvGeom {
  int64_t N = 0, C = 0, M = 0, group = 1;
  Shape in, kernel, out;
  std::vector<int64_t> stride, dilation, pad_begin;
};

// Checks x [N, C, D...] against w [M, C / group, k...] and the attributes
// (those in `pre` where it has them for x's rank).
ConvGeom conv_geometry(const ir::Node& node, const Shape& x, const Shape& w,
                       const ConvState* pre) {
  QREQUIRE(x.size() >= 3, node, Errc::kShapeMismatch, "input x has shape " + shape_str(x),
           "rank >= 3: [N, C, D1, ...]");
  QREQUIRE(w.size() == x.size(), node, Errc::kShapeMismatch,
           "weights have shape " + shape_str(w) + " for x of shape " + shape_str(x),
           "weights of x's rank: [M, C / group, k1, ...]");
  const size_t S = x.size() - 2;
  ConvGeom g;
  g.N = x[0];
  g.C = x[1];
  g.M = w[0];
  const bool prepared = pre != nullptr && pre->win && pre->win->strides.size() == S;
  g.group = prepared ? pre->group : node.attr_int("group", 1);
  QREQUIRE(g.group >= 1 && g.group <= kMaxAttr, node, Errc::kInvalidArgument,
           "group is " + std::to_string(g.group), "a positive group count");
  QREQUIRE(g.C % g.group == 0 && w[1] * g.group == g.C, node, Errc::kShapeMismatch,
           "x has " + std::to_string(g.C) + " channels, weights " + shape_str(w) + " with group " +
               std::to_string(g.group),
           "channels divisible by group, with weights' dimension 1 = channels / group");
  QREQUIRE(g.M % g.group == 0, node, Errc::kShapeMismatch,
           std::to_string(g.M) + " output channels with group " + std::to_string(g.group),
           "output channels divisible by group");
  Window parsed;
  if (!prepared) parsed = window_attrs(node, S, true);
  const Window& win = prepared ? *pre->win : parsed;
  g.kernel.assign(w.begin() + 2, w.end());
  for (int64_t k : g.kernel)
    QREQUIRE(k >= 1, node, Errc::kShapeMismatch, "weights have shape " + shape_str(w),
             "kernel dimensions >= 1");
  if (!win.kernel.empty())
    QREQUIRE(
        win.kernel == g.kernel, node, Errc::kShapeMismatch,
        "kernel_shape is " + shape_str(win.kernel) + " but the weights have shape " + shape_str(w),
        "kernel_shape equal to the weights' spatial dimensions");
  g.in.assign(x.begin() + 2, x.end());
  g.out.reserve(S);
  g.pad_begin.reserve(S);
  for (size_t d = 0; d < S; ++d) {
    int64_t pb = 0, pe = 0;
    const int64_t o = window_out(win, d, g.in[d], g.kernel[d], pb, pe);
    if (o < 0) window_too_big(node, d, g.in[d], g.kernel[d]);
    g.out.push_back(o);
    g.pad_begin.push_back(pb);
  }
  g.stride = win.strides;
  g.dilation = win.dilations;
  return g;
}

// Calls fn(offset) for each kernel position of output position `oc` that
// lies inside the input (zero padding), with its offset into one input channel.
// kpos[kk] are the kernel coordinates of kernel element kk.
template <typename Fn>
void for_each_tap(const Shape& in, const std::vector<int64_t>& oc, const std::vector<std::vector<int64_t>>& kpos,
                  const std::vector<int64_t>& stride, const std::vector<int64_t>& dil,
                  const std::vector<int64_t>& pb, Fn&& fn) {
  for (size_t kk = 0; kk < kpos.size(); ++kk) {
    int64_t off = 0;
    bool inside = true;
    for (size_t d = 0; d < in.size(); ++d) {
      const int64_t pos = oc[d] * stride[d] - pb[d] + kpos[kk][d] * dil[d];
      if (pos < 0 || pos >= in[d]) {
        inside = false;
        break;
      }
      off = off * in[d] + pos;
    }
    if (inside) fn(kk, off);
  }
}

std::vector<std::vector<int64_t>> coords_of(const Shape& s) {
  std::vector<std::vector<int64_t>> r;
  for_each_broadcast(s, {}, [&](int64_t i, const std::vector<int64_t>&) {
    std::vector<int64_t> c(s.size());
    int64_t rem = i;
    for (size_t d = s.size(); d-- > 0;) {
      c[d] = rem % s[d];
      rem /= s[d];
    }
    r.push_back(std::move(c));
  });
  return r;
}

// Exact integer convolution of X [N, C, in...] with W [M, C/group, k...],
// both already minus their zero points: fn(index, m, sum) for each element
// of the result [N, M, out...], m its output channel.
template <typename Fn>
void int_conv(const ConvGeom& g, const std::vector<int32_t>& X, const std::vector<int32_t>& W, Fn&& fn) {
  const int64_t in_n = shape_numel(g.in), k_n = shape_numel(g.kernel), out_n = shape_numel(g.out);
  const int64_t cg = g.C / g.group, mg = g.M / g.group;
  const auto kpos = coords_of(g.kernel);
  const auto opos = coords_of(g.out);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t m = 0; m < g.M; ++m) {
      const int64_t grp = m / mg;
      for (int64_t o = 0; o < out_n; ++o) {
        int64_t sum = 0;
        for (int64_t c = 0; c < cg; ++c) {
          const int32_t* xc = X.data() + (n * g.C + grp * cg + c) * in_n;
          const int32_t* wc = W.data() + (m * cg + c) * k_n;
          for_each_tap(g.in, opos[sz(o)], kpos, g.stride, g.dilation, g.pad_begin,
                       [&](size_t kk, int64_t off) { sum += static_cast<int64_t>(xc[off]) * wc[kk]; });
        }
        fn((n * g.M + m) * out_n + o, m, sum);
      }
    }
}

// Per-output-channel values (w_scale, w_zero_point, B): one value, or M.
bool per_channel_ok(const Tensor& t, int64_t M, bool single_ok) {
  return (single_ok && is_single(t)) || (t.rank() == 1 && t.numel() == M);
}
void expect_per_channel(const ir::Node& node, const Tensor& t, const char* what, int64_t M, bool single_ok) {
  QREQUIRE(per_channel_ok(t, M, single_ok), node, Errc::kShapeMismatch,
           std::string(what) + " has shape " + shape_str(t.shape()),
           std::string(single_ok ? "a scalar (per tensor) or " : "") + "a 1-D tensor of " +
               std::to_string(M) + " values (one per output channel)");
}

// W's codes minus its per-tensor or per-output-channel zero point.
std::vector<int32_t> weights_minus_zero_point(const ir::Node& node, const Tensor& w, const Tensor* zp,
                                              int64_t M, const char* zp_name) {
  std::vector<int32_t> W = codes_of(w);
  if (!zp) return W;
  expect_per_channel(node, *zp, zp_name, M, true);
  const std::vector<int32_t> z = codes_of(*zp);
  const int64_t per = M > 0 ? w.numel() / M : 0;
  for (size_t i = 0; i < W.size(); ++i) W[i] -= z.size() == 1 ? z[0] : z[i / sz(per)];
  return W;
}

// The fast path's description of a checked convolution (g's vectors moved
// into it: these run on every call).
int8::Conv int8_conv(ConvGeom&& g, const Tensor& x, int32_t x_zp, const Tensor& w,
                     const int8::ConvChannels& ch) {
  int8::Conv c;
  c.x = &x;
  c.x_zp = x_zp;
  c.w = &w;
  c.ch = &ch;
  c.N = g.N;
  c.C = g.C;
  c.M = g.M;
  c.group = g.group;
  c.in = std::move(g.in);
  c.kernel = std::move(g.kernel);
  c.out = std::move(g.out);
  c.stride = std::move(g.stride);
  c.dilation = std::move(g.dilation);
  c.pad_begin = std::move(g.pad_begin);
  return c;
}

// QLinearConv's fast-path values for weights w [M, ...] with checked w_scale,
// w_zero_point (each per tensor or per channel) and B (M values, or null):
// w's zero points, the multipliers x_scale * w_scale[m] / y_scale (float, as
// the reference computes them) and B. nullopt where an int32 sum plus bias
// could differ from the reference's int64 one.
std::optional<int8::ConvChannels> qconv_channels(float x_scale, int32_t xz, bool x_signed,
                                                 const Tensor& w, const Tensor& ws,
                                                 const Tensor& wz, float y_scale, int32_t y_zp,
                                                 bool y_signed, const Tensor* B) {
  const int64_t M = w.dim(0), K = M > 0 ? w.numel() / M : 0;
  int8::ConvChannels ch;
  ch.w_zp = per_channel(codes_of(wz), M);
  if (B) ch.ep.bias = codes_of(*B);
  int64_t bias_max = 0;
  for (int32_t v : ch.ep.bias) bias_max = std::max(bias_max, std::abs(int64_t{v}));
  if (!kernels::exact_in_int32(K, x_signed, xz, signed8(w), ch.w_zp.data(), M, bias_max))
    return std::nullopt;
  const std::vector<float> wsv = floats_of(ws);
  ch.ep.out = kernels::QOutput::kQ8Double;
  ch.ep.scale.reserve(sz(M));
  for (int64_t m = 0; m < M; ++m)  // the multiplier exactly as the reference's
    ch.ep.scale.push_back(x_scale * wsv[wsv.size() == 1 ? 0 : sz(m)] / y_scale);
  ch.ep.y_zp = y_zp;
  ch.ep.y_signed = y_signed;
  return ch;
}

// QLinearConv's prepare: prepare_conv_state, and where every input but x is
// a constant of the type and shape the run accepts, qconv_channels (and the
// depthwise loop's tables) made once. Anything else is left to the run,
// which reports what is wrong.
std::shared_ptr<const void> prepare_qconv_state(const PrepareContext& ctx) {
  std::shared_ptr<ConvState> st = prepare_conv_state(ctx, 3);
  std::array<const Tensor*, 9> in{};
  for (size_t i = 1; i < in.size() && i < ctx.constants.size(); ++i) in[i] = ctx.constants[i];
  const bool has_b = ctx.node.inputs.size() > 8 && !ctx.node.inputs[8].empty();
  for (size_t i = 1; i < 8; ++i)
    if (in[i] == nullptr) return st;
  if (has_b != (in[8] != nullptr)) return st;
  const Tensor &xs = *in[1], &xz = *in[2], &w = *in[3], &ws = *in[4], &wz = *in[5];
  const Tensor &ys = *in[6], &yz = *in[7];
  auto single = [](const Tensor& t, bool f32) {
    return is_single(t) && (f32 ? t.dtype() == DType::kF32 : one_of(t.dtype(), k8Bit));
  };
  if (!single(xs, true) || !single(xz, false) || !single(ys, true) || !single(yz, false) ||
      !one_of(w.dtype(), k8Bit) || w.rank() < 3 || ws.dtype() != DType::kF32 ||
      wz.dtype() != w.dtype())
    return st;
  const int64_t M = w.dim(0);
  const float y_scale = float_at(ys, 0);
  if (!per_channel_ok(ws, M, true) || !per_channel_ok(wz, M, true) ||
      !(std::isfinite(y_scale) && y_scale != 0) ||
      (in[8] && (in[8]->dtype() != DType::kI32 || !per_channel_ok(*in[8], M, false))))
    return st;
  int32_t x_zp = 0, y_zp = 0;
  load_codes(xz.raw(), 1, xz.dtype(), &x_zp);
  load_codes(yz.raw(), 1, yz.dtype(), &y_zp);
  st->q = qconv_channels(float_at(xs, 0), x_zp, signed8(xz), w, ws, wz, y_scale, y_zp,
                         signed8(yz), in[8]);
  if (!st->q) return st;
  for (size_t i = 1; i < in.size(); ++i) st->q_src[i - 1] = int8::SourceTensor::of(in[i]);
  if (w.rank() == 4 && w.dim(1) == 1 && st->group == M && st->win)  // depthwise
    st->q->dw = int8::dw_tables(w, x_zp, *st->q);
  return st;
}

std::optional<SymShape> conv_sym_of(const InferContext& c, const SymShape& xshape, int iw);

std::optional<SymShape> conv_sym(const InferContext& c, int ix, int iw) {
  if (!c.input(ix).shape) return std::nullopt;
  return conv_sym_of(c, *c.input(ix).shape, iw);
}

// conv_sym for an x of shape xshape.
std::optional<SymShape> conv_sym_of(const InferContext& c, const SymShape& xshape, int iw) {
  const ir::ValueInfo& w = c.input(iw);
  const ir::Node& node = c.node();
  QREQUIRE(xshape.size() >= 3, node, Errc::kShapeMismatch,
           "input x has shape " + ir::sym_shape_str(xshape), "rank >= 3: [N, C, D1, ...]");
  const size_t S = xshape.size() - 2;
  if (w.shape)
    QREQUIRE(w.shape->size() == xshape.size(), node, Errc::kShapeMismatch,
             "weights have shape " + ir::sym_shape_str(*w.shape) + " for x of shape " +
                 ir::sym_shape_str(xshape),
             "weights of x's rank");
  const Window win = window_attrs(node, S, true);
  SymShape out{xshape[0], w.shape ? (*w.shape)[0] : Dim()};
  for (size_t d = 0; d < S; ++d) {
    const Dim& in = xshape[d + 2];
    int64_t k = -1;
    if (!win.kernel.empty()) k = win.kernel[d];
    else if (w.shape && (*w.shape)[d + 2].known()) k = (*w.shape)[d + 2].size;
    const bool same = win.auto_pad == "SAME_UPPER" || win.auto_pad == "SAME_LOWER";
    if (!in.known() || (k < 1 && !same)) {
      out.push_back(Dim());
      continue;
    }
    int64_t pb = 0, pe = 0;
    const int64_t o = window_out(win, d, in.size, std::max<int64_t>(k, 1), pb, pe);
    if (o < 0) window_too_big(node, d, in.size, k);
    out.push_back(Dim(o));
  }
  return out;
}

// Y = conv(x - x_zero_point, w - w_zero_point), int32.
void conv_integer_run(OpContext& ctx, Path path) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  expect_type(node, "input x", x.dtype(), k8Bit);
  expect_type(node, "input w", w.dtype(), k8Bit);
  const int32_t xz = single_zero_point(ctx, 2, "x_zero_point", x.dtype(), "x");
  const Tensor* wz = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  if (wz) expect_same_type(node, "w_zero_point", wz->dtype(), "w", w.dtype());
  ConvGeom g =
      conv_geometry(node, x.shape(), w.shape(), static_cast<const ConvState*>(ctx.state()));
  Shape out{g.N, g.M};
  out.insert(out.end(), g.out.begin(), g.out.end());
  if (path == Path::kFast) {
    // Wrapping int32 sums are the spec's: no exactness condition.
    int8::ConvChannels ch;
    ch.w_zp.assign(sz(g.M), 0);
    if (wz) {
      expect_per_channel(node, *wz, "w_zero_point", g.M, true);
      ch.w_zp = per_channel(codes_of(*wz), g.M);
    }
    const int8::Conv c = int8_conv(std::move(g), x, xz, w, ch);
    int8::conv(c, packed_of(ctx), ctx.output(0, DType::kI32, out).raw(), ctx.pool());
    return;
  }
  std::vector<int32_t> X = codes_of(x);
  for (auto& v : X) v -= xz;
  const auto W = weights_minus_zero_point(node, w, wz, g.M, "w_zero_point");
  int32_t* y = ctx.output(0, DType::kI32, out).data<int32_t>();
  int_conv(g, X, W, [&](int64_t i, int64_t, int64_t sum) { y[i] = wrap32(sum); });
}

void conv_integer_infer(InferContext& c) { set_output(c, 0, DType::kI32, conv_sym(c, 0, 1)); }

// MaxPool 2x2 / 2, no padding, floor, of the codes of x [N, C, H, W] into
// y [N, C, H / 2, W / 2] (ai.qforge QLinearConvMaxPool where the conv's
// output isn't pooled as it is written).
template <typename T>
void maxpool2x2_codes(const Tensor& x, Tensor& y) {
  const T* xp = static_cast<const T*>(x.raw());
  T* yp = static_cast<T*>(y.raw());
  const int64_t H = x.dim(2), W = x.dim(3), PH = y.dim(2), PW = y.dim(3);
  for (int64_t p = 0; p < x.dim(0) * x.dim(1); ++p)
    for (int64_t i = 0; i < PH; ++i)
      for (int64_t j = 0; j < PW; ++j) {
        const T* a = xp + (p * H + 2 * i) * W + 2 * j;
        yp[(p * PH + i) * PW + j] = std::max(std::max(a[0], a[1]), std::max(a[W], a[W + 1]));
      }
}

// y = saturate(round((conv(x - x_zp, w - w_zp) + B) * (x_scale * w_scale / y_scale)) + y_zp),
// with w_scale, w_zero_point per tensor or per output channel, the multiplier
// in float32 and its product with the exact integer sum in float64 (ONNX's reference).
//
// pool: ai.qforge QLinearConvMaxPool, the same then MaxPool 2x2 / 2 without
// padding (floor) of the codes (max commutes with the monotonic
// dequantization); written by passes::fuse_conv_maxpool, Session only. The
// int8 GEMM path pools its channels-last tiles before they are transposed
// (int8::Conv::pool2x2); the depthwise loop and the reference pool afterwards.
void qlinear_conv_impl(OpContext& ctx, Path path, bool pool) {
  const ir::Node& node = ctx.node();
  // ai.qforge's channels_last: x [N, H, W, C] and y [N, OH, OW, M].
  const bool cl = !node.domain.empty() && node.attr_int("channels_last", 0) != 0;
  const Tensor& xin = ctx.input(0);
  const Tensor& w = ctx.input(3);
  const Tensor& ws = ctx.input(4);
  const Tensor& wz = ctx.input(5);
  const Tensor& yz = ctx.input(7);
  expect_type(node, "input x", xin.dtype(), k8Bit);
  expect_type(node, "input w", w.dtype(), k8Bit);
  expect_type(node, "y_zero_point", yz.dtype(), k8Bit);
  const float x_scale = single_scale(ctx, 1, "x_scale", false);
  const int32_t xz = single_zero_point(ctx, 2, "x_zero_point", xin.dtype(), "x", false);
  expect_type(node, "w_scale", ws.dtype(), kF32Only);
  expect_same_type(node, "w_zero_point", wz.dtype(), "w", w.dtype());
  const float y_scale = single_scale(ctx, 6, "y_scale", true);
  const int32_t y_zp = single_zero_point(ctx, 7, "y_zero_point", yz.dtype(), "itself", false);
  QREQUIRE(!(pool || cl) || xin.rank() == 4, node, Errc::kShapeMismatch,
           "input x has shape " + shape_str(xin.shape()),
           "rank 4: the fused MaxPool and channels_last are 2-D");
  const Shape xs = cl ? Shape{xin.dim(0), xin.dim(3), xin.dim(1), xin.dim(2)} : xin.shape();
  ConvGeom g = conv_geometry(node, xs, w.shape(), static_cast<const ConvState*>(ctx.state()));
  expect_per_channel(node, ws, "w_scale", g.M, true);
  const Tensor* B = ctx.has_input(8) ? &ctx.input(8) : nullptr;
  if (B) {
    expect_type(node, "bias B", B->dtype(), kI32Only);
    expect_per_channel(node, *B, "bias B", g.M, false);
  }
  Shape out{g.N, g.M};
  out.insert(out.end(), g.out.begin(), g.out.end());
  Shape pooled = out;  // NCHW
  if (pool) pooled[2] /= 2, pooled[3] /= 2;
  const Shape final_shape = cl ? Shape{g.N, pooled[2], pooled[3], g.M} : pooled;
  // Where the result isn't written in place: the conv's NCHW codes into
  // `full`, then pooled and / or made channels-last into the output.
  Tensor full;
  auto finish = [&]() {
    Tensor src = full;
    if (pool) {
      src = Tensor(yz.dtype(), pooled);
      if (signed8(yz)) maxpool2x2_codes<int8_t>(full, src);
      else maxpool2x2_codes<uint8_t>(full, src);
    }
    Tensor& y = ctx.output(0, yz.dtype(), final_shape);
    const int64_t S = pooled[2] * pooled[3], image = g.M * S;
    const auto* from = static_cast<const uint8_t*>(src.raw());
    auto* to = static_cast<uint8_t*>(y.raw());
    if (!cl) {
      if (y.nbytes() > 0) std::memcpy(to, from, y.nbytes());  // an empty tensor may have no data
    } else {
      for (int64_t n = 0; n < g.N && image > 0; ++n)
        kernels::transpose_u8(from + n * image, g.M, S, S, to + n * image, g.M);
    }
  };
  if (path == Path::kFast) {
    expect_per_channel(node, wz, "w_zero_point", g.M, true);
    // Made in prepare, or here: nullopt where the int32 sums could differ from the reference's.
    const auto* st = static_cast<const ConvState*>(ctx.state());
    const int8::ConvChannels* ch = st != nullptr ? st->q_of(ctx) : nullptr;
    std::optional<int8::ConvChannels> made;
    if (ch == nullptr)
      made = qconv_channels(x_scale, xz, signed8(xin), w, ws, wz, y_scale, y_zp, signed8(yz), B);
    if (made) ch = &*made;
    if (ch != nullptr) {
      int8::Conv c = int8_conv(std::move(g), xin, xz, w, *ch);
      c.cl_in = cl;
      if (!pool || !int8::is_depthwise(c)) {  // pooled and laid out as it is written
        c.pool2x2 = pool;
        c.cl_out = cl;
        int8::conv(c, packed_of(ctx), ctx.output(0, yz.dtype(), final_shape).raw(), ctx.pool());
        return;
      }
      full = Tensor(yz.dtype(), out);
      int8::conv(c, packed_of(ctx), full.raw(), ctx.pool());
      finish();
      return;
    }
  }
  Tensor x_nchw = xin;
  if (cl) {  // [N, H, W, C] -> [N, C, H, W]
    x_nchw = Tensor(xin.dtype(), xs);
    const int64_t S = xs[2] * xs[3], image = g.C * S;
    for (int64_t n = 0; n < g.N && image > 0; ++n)
      kernels::transpose_u8(static_cast<const uint8_t*>(xin.raw()) + n * image, S, g.C, g.C,
                            static_cast<uint8_t*>(x_nchw.raw()) + n * image, S);
  }
  std::vector<int32_t> X = codes_of(x_nchw);
  for (auto& v : X) v -= xz;
  const auto W = weights_minus_zero_point(node, w, &wz, g.M, "w_zero_point");
  const std::vector<int32_t> bias = B ? codes_of(*B) : std::vector<int32_t>();
  const std::vector<float> wsv = floats_of(ws);
  const int64_t qmin = dtype_min(yz.dtype()), qmax = dtype_max(yz.dtype());
  const bool direct = !pool && !cl;
  if (!direct) full = Tensor(yz.dtype(), out);
  Tensor& y = direct ? ctx.output(0, yz.dtype(), out) : full;
  int_conv(g, X, W, [&](int64_t i, int64_t m, int64_t sum) {
    const float mult = x_scale * wsv[wsv.size() == 1 ? 0 : sz(m)] / y_scale;
    const int64_t v = sum + (bias.empty() ? 0 : bias[sz(m)]);
    put_code(y, i, round_saturate(static_cast<double>(v) * mult, y_zp, qmin, qmax));
  });
  if (!direct) finish();
}

void qlinear_conv_run(OpContext& ctx, Path path) { qlinear_conv_impl(ctx, path, false); }
void qlinear_conv_maxpool_run(OpContext& ctx, Path path) { qlinear_conv_impl(ctx, path, true); }

void qlinear_conv_infer(InferContext& c) { set_output(c, 0, c.input(7).dtype, conv_sym(c, 0, 3)); }

// ai.qforge QLinearConv (channels_last) and QLinearConvMaxPool (pooled
// 2x2 / 2, optionally channels_last): x's shape read as NCHW, the output's
// spatial sizes halved (floor) and its channels moved last as the op says.
void qforge_qconv_infer(InferContext& c, bool pool) {
  const bool cl = c.node().attr_int("channels_last", 0) != 0;
  std::optional<SymShape> s;
  if (cl && c.input(0).shape && c.input(0).shape->size() == 4) {
    const SymShape& x = *c.input(0).shape;
    s = conv_sym_of(c, SymShape{x[0], x[3], x[1], x[2]}, 3);
  } else if (!cl) {
    s = conv_sym(c, 0, 3);
  }
  if (s && s->size() == 4) {
    for (size_t d = 2; d < 4 && pool; ++d)
      if ((*s)[d].known()) (*s)[d] = Dim((*s)[d].size / 2);
    if (cl) s = SymShape{(*s)[0], (*s)[2], (*s)[3], (*s)[1]};
  }
  set_output(c, 0, c.input(7).dtype, s);
}

// ---------------------------------------------------------------- com.microsoft elementwise

// Dequantize -> f -> quantize, in float32 with the library's primitives.
struct Unary {
  float xs, ys;
  int32_t xz, yz, qmin, qmax;
};

Unary unary_params(const OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  expect_type(ctx.node(), "input X", x.dtype(), k8Bit);
  Unary u;
  u.xs = single_scale(ctx, 1, "X_scale", false);
  u.xz = single_zero_point(ctx, 2, "X_zero_point", x.dtype(), "X");
  u.ys = single_scale(ctx, 3, "Y_scale", true);
  u.yz = single_zero_point(ctx, 4, "Y_zero_point", x.dtype(), "X");
  u.qmin = static_cast<int32_t>(dtype_min(x.dtype()));
  u.qmax = static_cast<int32_t>(dtype_max(x.dtype()));
  return u;
}

template <typename F>
void unary_run(OpContext& ctx, F&& f) {
  const Unary u = unary_params(ctx);
  const Tensor& x = ctx.input(0);
  std::vector<int32_t> codes = codes_of(x);
  for (auto& q : codes) q = quantize_value(f(dequantize_value(q, u.xs, u.xz)), u.ys, u.yz, u.qmin, u.qmax);
  store(ctx.output(0, x.dtype(), x.shape()), codes);
}

// QLinearSigmoid: quantize(1 / (1 + exp(-dequantize(x)))).
void qlinear_sigmoid_run(OpContext& ctx) {
  unary_run(ctx, [](float v) { return 1.0f / (1.0f + std::exp(-v)); });
}

// QLinearLeakyRelu: quantize(v >= 0 ? v : alpha * v), v = dequantize(x).
void qlinear_leaky_relu_run(OpContext& ctx) {
  const float alpha = ctx.node().attr_float("alpha", 0.01f);
  unary_run(ctx, [alpha](float v) { return v >= 0 ? v : alpha * v; });
}

// QLinearAdd: C = (A_scale * (A - A_zp) + B_scale * (B - B_zp)) / C_scale + C_zp.
// QLinearMul: C = ((A - A_zp) * (B - B_zp)) * (A_scale * B_scale) / C_scale + C_zp.
// Float32, evaluated as written; rounding half to even, saturating.
void qlinear_binary_run(OpContext& ctx, bool mul) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(3);
  expect_type(node, "input A", a.dtype(), k8Bit);
  expect_same_type(node, "input B", b.dtype(), "A", a.dtype());
  const float as = single_scale(ctx, 1, "A_scale", false);
  const int32_t az = single_zero_point(ctx, 2, "A_zero_point", a.dtype(), "A");
  const float bs = single_scale(ctx, 4, "B_scale", false);
  const int32_t bz = single_zero_point(ctx, 5, "B_zero_point", a.dtype(), "A");
  const float cs = single_scale(ctx, 6, "C_scale", true);
  const int32_t cz = single_zero_point(ctx, 7, "C_zero_point", a.dtype(), "A");
  const auto qmin = static_cast<int32_t>(dtype_min(a.dtype())), qmax = static_cast<int32_t>(dtype_max(a.dtype()));
  const Shape out = broadcast_shapes(a.shape(), b.shape(), node);
  const float ab = as * bs;
  // An input whose shape, less leading 1s, is the output's trailing dims
  // (the same shape; a bias [N] of [B, T, N]; a scalar) is read at i % its size.
  auto trailing = [&](const Shape& in) {
    size_t lead = 0;
    while (lead < in.size() && in[lead] == 1) ++lead;
    const size_t k = in.size() - lead;
    return k <= out.size() && std::equal(in.begin() + static_cast<std::ptrdiff_t>(lead), in.end(),
                                         out.end() - static_cast<std::ptrdiff_t>(k));
  };
  if (trailing(a.shape()) && trailing(b.shape())) {
    // Residual connections and biases: the same float32 arithmetic per
    // element, on bytes, without the broadcasting machinery.
    Tensor& y = ctx.output(0, a.dtype(), out);
    const auto* pa = static_cast<const uint8_t*>(a.raw());
    const auto* pb = static_cast<const uint8_t*>(b.raw());
    const bool is_signed = a.dtype() == DType::kI8;
    // Per code: the dequantized value (Add) or code - zp (Mul: the integer
    // product of two such values is exact in float32, as it is in int32).
    float ta[256], tb[256];
    for (int c = 0; c < 256; ++c) {
      const int32_t q = is_signed ? static_cast<int8_t>(c) : c;
      ta[c] = mul ? static_cast<float>(q - az) : dequantize_value(q, as, az);
      tb[c] = mul ? static_cast<float>(q - bz) : dequantize_value(q, bs, bz);
    }
    auto* py = static_cast<uint8_t*>(y.raw());
    const int64_t n = y.numel(), na = a.numel(), nb = b.numel();
    if (n == 0) return;
    // Results in float, a chunk at a time, then quantized by the SIMD kernel
    // (round(v / C_scale) + C_zp, as quantize_value). A broadcast input's
    // index wraps around instead of being taken modulo its size.
    const auto& k = kernels::kernels();
    constexpr int64_t kChunk = 1024;
    auto chunks = [&](int64_t c_begin, int64_t c_end) {
      float v[kChunk];
      for (int64_t c = c_begin; c < c_end; ++c) {
        const int64_t c0 = c * kChunk, len = std::min(kChunk, n - c0);
        // Runs over which both inputs advance contiguously (or one stays a
        // single value): a plain loop each, which the compiler vectorises
        // (the table reads become gathers), with the same float operations
        // per element as below. (The lambda takes copies: v is written
        // through, so captured references would be reloaded.)
        if ((na == n || na == 1 || na >= 16) && (nb == n || nb == 1 || nb >= 16)) {
          int64_t ia = c0 % na, ib = c0 % nb;
          for (int64_t j = 0; j < len;) {
            const int64_t run = std::min({len - j, na == 1 ? len : na - ia, nb == 1 ? len : nb - ib});
            const float *fa = ta, *fb = tb;
            const uint8_t *qa = pa + ia, *qb = pb + ib;
            const bool a1 = na == 1, b1 = nb == 1;
            float* res = v + j;
            nn_detail::run_vectorized([fa, fb, qa, qb, res, run, mul, ab, a1, b1]() NN_LAMBDA {
              if (b1) {
                const float z = fb[qb[0]];
                if (mul)
                  for (int64_t t = 0; t < run; ++t) res[t] = fa[qa[t]] * z * ab;
                else
                  for (int64_t t = 0; t < run; ++t) res[t] = fa[qa[t]] + z;
              } else if (a1) {
                const float x = fa[qa[0]];
                if (mul)
                  for (int64_t t = 0; t < run; ++t) res[t] = x * fb[qb[t]] * ab;
                else
                  for (int64_t t = 0; t < run; ++t) res[t] = x + fb[qb[t]];
              } else if (mul) {
                for (int64_t t = 0; t < run; ++t) res[t] = fa[qa[t]] * fb[qb[t]] * ab;
              } else {
                for (int64_t t = 0; t < run; ++t) res[t] = fa[qa[t]] + fb[qb[t]];
              }
            });
            j += run;
            if (!a1 && (ia += run) == na) ia = 0;
            if (!b1 && (ib += run) == nb) ib = 0;
          }
          if (is_signed) k.quantize_i8(v, len, cs, cz, qmin, qmax, reinterpret_cast<int8_t*>(py + c0));
          else k.quantize_u8(v, len, cs, cz, qmin, qmax, py + c0);
          continue;
        }
        int64_t ia = c0 % na, ib = c0 % nb;
        for (int64_t j = 0; j < len; ++j) {
          const float x = ta[pa[ia]], z = tb[pb[ib]];
          v[j] = mul ? x * z * ab : x + z;
          if (++ia == na) ia = 0;
          if (++ib == nb) ib = 0;
        }
        if (is_signed) k.quantize_i8(v, len, cs, cz, qmin, qmax, reinterpret_cast<int8_t*>(py + c0));
        else k.quantize_u8(v, len, cs, cz, qmin, qmax, py + c0);
      }
    };
    const int64_t num_chunks = (n + kChunk - 1) / kChunk;
    if (ctx.pool() && n >= (int64_t{1} << 16)) ctx.pool()->parallel_for(num_chunks, 16, chunks);
    else chunks(0, num_chunks);
    return;
  }
  const std::vector<int32_t> A = codes_of(a), B = codes_of(b);
  Tensor& y = ctx.output(0, a.dtype(), out);
  for_each_broadcast(out, {broadcast_strides(a.shape(), out), broadcast_strides(b.shape(), out)},
                     [&](int64_t i, const std::vector<int64_t>& off) {
                       const int32_t qa = A[sz(off[0])], qb = B[sz(off[1])];
                       const float v = mul ? static_cast<float>((qa - az) * (qb - bz)) * ab
                                           : dequantize_value(qa, as, az) + dequantize_value(qb, bs, bz);
                       put_code(y, i, quantize_value(v, cs, cz, qmin, qmax));
                     });
}

void qlinear_binary_infer(InferContext& c) {
  const ir::ValueInfo& a = c.input(0);
  const ir::ValueInfo& b = c.input(3);
  std::optional<SymShape> s;
  if (a.shape && b.shape) s = broadcast_sym(*a.shape, *b.shape, c.node());
  set_output(c, 0, a.dtype, s);
}

// ---------------------------------------------------------------- com.microsoft pooling

struct PoolGeom {
  int64_t N = 0, C = 0;
  Shape in, kernel, out;
  std::vector<int64_t> stride, pad_begin, pad_end;
  bool channels_last = false;
};

size_t spatial_rank(const ir::Node& node, size_t rank, const std::string& shape) {
  QREQUIRE(rank >= 3, node, Errc::kShapeMismatch, "input X has shape " + shape,
           "rank >= 3: [N, C, D1, ...] (or [N, D1, ..., C] with channels_last)");
  return rank - 2;
}

PoolGeom pool_geometry(const ir::Node& node, const Shape& x) {
  const size_t S = spatial_rank(node, x.size(), shape_str(x));
  PoolGeom g;
  g.channels_last = node.attr_int("channels_last", 0) != 0;
  g.N = x[0];
  g.C = g.channels_last ? x.back() : x[1];
  g.in.assign(x.begin() + (g.channels_last ? 1 : 2), x.end() - (g.channels_last ? 1 : 0));
  Window win = window_attrs(node, S, false);
  QREQUIRE(!win.kernel.empty(), node, Errc::kInvalidArgument, "has no kernel_shape attribute",
           "kernel_shape, which this op requires");
  win.ceil_mode = node.attr_int("ceil_mode", 0) != 0;
  g.kernel = win.kernel;
  g.stride = win.strides;
  for (size_t d = 0; d < S; ++d) {
    int64_t pb = 0, pe = 0;
    const int64_t o = window_out(win, d, g.in[d], g.kernel[d], pb, pe);
    if (o < 0) window_too_big(node, d, g.in[d], g.kernel[d]);
    g.out.push_back(o);
    g.pad_begin.push_back(pb);
    g.pad_end.push_back(pe);
  }
  return g;
}

Shape pool_out_shape(const PoolGeom& g) {
  Shape s{g.N};
  if (!g.channels_last) s.push_back(g.C);
  s.insert(s.end(), g.out.begin(), g.out.end());
  if (g.channels_last) s.push_back(g.C);
  return s;
}

// Offset of element (n, c, spatial index s) of a tensor with S spatial elements.
int64_t pool_offset(const PoolGeom& g, int64_t n, int64_t c, int64_t s, int64_t S) {
  return g.channels_last ? (n * S + s) * g.C + c : (n * g.C + c) * S + s;
}

// Output = quantize(AveragePool(dequantize(X))) on float32 data: the window
// sum of dequantized values, divided by the window's element count (with
// count_include_pad, the count includes the padding, but not the part of a
// ceil_mode window past the end padding).
void qlinear_average_pool_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Unary u = unary_params(ctx);
  const Tensor& x = ctx.input(0);
  const PoolGeom g = pool_geometry(node, x.shape());
  const bool include_pad = node.attr_int("count_include_pad", 0) != 0;
  const std::vector<int32_t> X = codes_of(x);
  const int64_t in_n = shape_numel(g.in), out_n = shape_numel(g.out);
  const auto opos = coords_of(g.out);
  const size_t S = g.in.size();
  Tensor& y = ctx.output(0, x.dtype(), pool_out_shape(g));
  std::vector<int64_t> lo(S), hi(S);
  for (int64_t o = 0; o < out_n; ++o) {
    int64_t count = 1;
    for (size_t d = 0; d < S; ++d) {
      const int64_t start = opos[sz(o)][d] * g.stride[d] - g.pad_begin[d];
      const int64_t end = std::min(start + g.kernel[d], g.in[d] + g.pad_end[d]);
      lo[d] = std::max<int64_t>(start, 0);
      hi[d] = std::min(end, g.in[d]);
      count *= include_pad ? end - start : std::max<int64_t>(hi[d] - lo[d], 0);
    }
    Shape box(S);
    for (size_t d = 0; d < S; ++d) box[d] = std::max<int64_t>(hi[d] - lo[d], 0);
    const auto taps = coords_of(box);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t c = 0; c < g.C; ++c) {
        float sum = 0;
        for (const auto& t : taps) {
          int64_t s = 0;
          for (size_t d = 0; d < S; ++d) s = s * g.in[d] + lo[d] + t[d];
          sum += dequantize_value(X[sz(pool_offset(g, n, c, s, in_n))], u.xs, u.xz);
        }
        const float avg = count > 0 ? sum / static_cast<float>(count) : 0.0f;
        put_code(y, pool_offset(g, n, c, o, out_n), quantize_value(avg, u.ys, u.yz, u.qmin, u.qmax));
      }
  }
}

void qlinear_average_pool_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  if (!x.shape) return set_output(c, 0, x.dtype, std::nullopt);
  const ir::Node& node = c.node();
  const size_t S = spatial_rank(node, x.shape->size(), ir::sym_shape_str(*x.shape));
  const bool last = node.attr_int("channels_last", 0) != 0;
  Window win = window_attrs(node, S, false);
  win.ceil_mode = node.attr_int("ceil_mode", 0) != 0;
  QREQUIRE(!win.kernel.empty(), node, Errc::kInvalidArgument, "has no kernel_shape attribute",
           "kernel_shape, which this op requires");
  SymShape out{(*x.shape)[0]};
  if (!last) out.push_back((*x.shape)[1]);
  for (size_t d = 0; d < S; ++d) {
    const Dim& in = (*x.shape)[d + (last ? 1 : 2)];
    int64_t pb = 0, pe = 0;
    if (!in.known()) {
      out.push_back(Dim());
      continue;
    }
    const int64_t o = window_out(win, d, in.size, win.kernel[d], pb, pe);
    if (o < 0) window_too_big(node, d, in.size, win.kernel[d]);
    out.push_back(Dim(o));
  }
  if (last) out.push_back(x.shape->back());
  set_output(c, 0, x.dtype, out);
}

// One image's channel sums of QLinearGlobalAveragePool, channels across the
// vector lanes: sum[c] = ((0 + deq(x[0][c])) + deq(x[1][c])) + ..., deq(q) =
// float(q - zp) * scale, the reference's float32 operations in its order
// (contraction is off, so no FMA). xcl: [S, C] codes.
template <typename XT>
void channel_sums(const XT* xcl, int64_t S, int64_t C, float scale, int32_t zp, float* sum) {
  nn_detail::run_vectorized([=]() NN_LAMBDA {
    float* __restrict out = sum;
    for (int64_t c = 0; c < C; ++c) out[c] = 0.0f;
    for (int64_t s = 0; s < S; ++s) {
      const XT* __restrict row = xcl + s * C;
      for (int64_t c = 0; c < C; ++c) out[c] += static_cast<float>(int32_t{row[c]} - zp) * scale;
    }
  });
}

// AveragePool over all spatial positions: [N, C, 1, ...] (or [N, 1, ..., C]).
// kFast: per image, the codes channels-last (transposed unless they are) and
// summed by channel_sums; kReference: a plain loop, the tests' oracle.
void qlinear_global_average_pool_run(OpContext& ctx, Path path) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  expect_type(node, "input X", x.dtype(), k8Bit);
  Unary u;
  u.xs = single_scale(ctx, 1, "x_scale", false);
  u.xz = single_zero_point(ctx, 2, "x_zero_point", x.dtype(), "X", false);
  u.ys = single_scale(ctx, 3, "y_scale", true);
  u.yz = single_zero_point(ctx, 4, "y_zero_point", x.dtype(), "X", false);
  u.qmin = static_cast<int32_t>(dtype_min(x.dtype()));
  u.qmax = static_cast<int32_t>(dtype_max(x.dtype()));
  spatial_rank(node, x.shape().size(), shape_str(x.shape()));
  PoolGeom g;
  g.channels_last = node.attr_int("channels_last", 0) != 0;
  g.N = x.dim(0);
  g.C = g.channels_last ? x.dim(-1) : x.dim(1);
  const Shape& xs = x.shape();
  g.in.assign(xs.begin() + (g.channels_last ? 1 : 2), xs.end() - (g.channels_last ? 1 : 0));
  g.out.assign(g.in.size(), 1);
  const int64_t in_n = shape_numel(g.in);
  if (path == Path::kFast && in_n > 0) {
    Tensor& y = ctx.output(0, x.dtype(), pool_out_shape(g));
    const int64_t C = g.C;
    const auto* xb = static_cast<const uint8_t*>(x.raw());
    auto* yb = static_cast<uint8_t*>(y.raw());
    auto images = [&](int64_t b, int64_t e) {
      std::vector<uint8_t> cl(g.channels_last ? 0 : sz(in_n * C));
      std::vector<float> sum(sz(C));
      for (int64_t n = b; n < e; ++n) {
        const uint8_t* src = xb + n * in_n * C;
        if (!g.channels_last) {
          kernels::transpose_u8(src, C, in_n, in_n, cl.data(), C);
          src = cl.data();
        }
        if (signed8(x))
          channel_sums(reinterpret_cast<const int8_t*>(src), in_n, C, u.xs, u.xz, sum.data());
        else
          channel_sums(src, in_n, C, u.xs, u.xz, sum.data());
        for (int64_t c = 0; c < C; ++c)
          yb[n * C + c] = static_cast<uint8_t>(
              quantize_value(sum[sz(c)] / static_cast<float>(in_n), u.ys, u.yz, u.qmin, u.qmax));
      }
    };
    ThreadPool* pool = ctx.pool();
    if (pool != nullptr && pool->threads() > 1 && g.N > 1) pool->parallel_for(g.N, 1, images);
    else images(0, g.N);
    return;
  }
  const std::vector<int32_t> X = codes_of(x);
  std::vector<int32_t> codes(sz(g.N * g.C));
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < g.C; ++c) {
      float sum = 0;
      for (int64_t s = 0; s < in_n; ++s)
        sum += dequantize_value(X[sz(pool_offset(g, n, c, s, in_n))], u.xs, u.xz);
      const float avg = in_n > 0 ? sum / static_cast<float>(in_n) : 0.0f;
      codes[sz(pool_offset(g, n, c, 0, 1))] = quantize_value(avg, u.ys, u.yz, u.qmin, u.qmax);
    }
  store(ctx.output(0, x.dtype(), pool_out_shape(g)), codes);
}

void qlinear_global_average_pool_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  if (!x.shape) return set_output(c, 0, x.dtype, std::nullopt);
  spatial_rank(c.node(), x.shape->size(), ir::sym_shape_str(*x.shape));
  const bool last = c.node().attr_int("channels_last", 0) != 0;
  SymShape out(x.shape->size(), Dim(1));
  out[0] = (*x.shape)[0];
  if (last) out.back() = x.shape->back();
  else out[1] = (*x.shape)[1];
  set_output(c, 0, x.dtype, out);
}

// ---------------------------------------------------------------- com.microsoft QLinearConcat

// Inputs: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per input.
// Each input is requantized to Y's parameters: quantize(dequantize(x)) in float32.
int64_t concat_axis(const ir::Node& node, int64_t rank) {
  QREQUIRE(node.has_attr("axis"), node, Errc::kInvalidArgument, "has no axis attribute",
           "axis, which this op requires");
  QREQUIRE(rank >= 1, node, Errc::kShapeMismatch, "concatenates scalars", "inputs of rank >= 1");
  return normalize_axis(node.attr_int("axis", 0), rank, node);
}

int concat_inputs(const ir::Node& node, int num_inputs) {
  QREQUIRE(num_inputs >= 5 && (num_inputs - 2) % 3 == 0, node, Errc::kInvalidArgument,
           "has " + std::to_string(num_inputs) + " inputs",
           "Y_scale, Y_zero_point, then a (tensor, scale, zero point) triple per input");
  return (num_inputs - 2) / 3;
}

void qlinear_concat_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const int k = concat_inputs(node, ctx.num_inputs());
  const Tensor& yz = ctx.input(1);
  expect_type(node, "Y_zero_point", yz.dtype(), k8Bit);
  const DType t = yz.dtype();
  const float ys = single_scale(ctx, 0, "Y_scale", true);
  const int32_t y_zp = single_zero_point(ctx, 1, "Y_zero_point", t, "itself", false);
  const Shape& s0 = ctx.input(2).shape();
  const int64_t axis = concat_axis(node, static_cast<int64_t>(s0.size()));
  Shape out = s0;
  out[sz(axis)] = 0;
  for (int i = 0; i < k; ++i) {
    const Tensor& xi = ctx.input(2 + 3 * i);
    const std::string name = "input " + std::to_string(2 + 3 * i);
    expect_same_type(node, name, xi.dtype(), "Y_zero_point", t);
    bool ok = xi.rank() == static_cast<int>(s0.size());
    for (size_t d = 0; ok && d < s0.size(); ++d) ok = d == sz(axis) || xi.shape()[d] == s0[d];
    QREQUIRE(
        ok, node, Errc::kShapeMismatch,
        name + " has shape " + shape_str(xi.shape()) + " but input 2 has shape " + shape_str(s0),
        "the same shape except on axis " + std::to_string(axis));
    out[sz(axis)] += xi.shape()[sz(axis)];
  }
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < out.size(); ++d) {
    if (d < sz(axis)) outer *= out[d];
    if (d > sz(axis)) inner *= out[d];
  }
  const auto qmin = static_cast<int32_t>(dtype_min(t)), qmax = static_cast<int32_t>(dtype_max(t));
  std::vector<int32_t> codes(sz(shape_numel(out)));
  int64_t at = 0;  // offset along the axis
  for (int i = 0; i < k; ++i) {
    const Tensor& xi = ctx.input(2 + 3 * i);
    const std::string n = std::to_string(2 + 3 * i);
    const float xs = single_scale(ctx, 3 + 3 * i, "the scale of input " + n, false);
    const int32_t xz = single_zero_point(ctx, 4 + 3 * i, "the zero point of input " + n, t, "Y_zero_point");
    const std::vector<int32_t> X = codes_of(xi);
    const int64_t len = xi.shape()[sz(axis)];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t a = 0; a < len; ++a)
        for (int64_t j = 0; j < inner; ++j) {
          const int32_t q = X[sz((o * len + a) * inner + j)];
          codes[sz((o * out[sz(axis)] + at + a) * inner + j)] =
              quantize_value(dequantize_value(q, xs, xz), ys, y_zp, qmin, qmax);
        }
    at += len;
  }
  store(ctx.output(0, t, out), codes);
}

void qlinear_concat_infer(InferContext& c) {
  const ir::Node& node = c.node();
  const int k = concat_inputs(node, c.num_inputs());
  const std::optional<DType> t = c.input(1).dtype;
  std::optional<SymShape> out;
  for (int i = 0; i < k; ++i) {
    const ir::ValueInfo& xi = c.input(2 + 3 * i);
    if (!xi.shape) return set_output(c, 0, t, std::nullopt);
    if (!out) {
      out = *xi.shape;
      const int64_t axis = concat_axis(node, static_cast<int64_t>(out->size()));
      (*out)[sz(axis)] = Dim(0);
      continue;
    }
    QREQUIRE(xi.shape->size() == out->size(), node, Errc::kShapeMismatch,
             "concatenates inputs of ranks " + std::to_string(out->size()) + " and " +
                 std::to_string(xi.shape->size()),
             "inputs of the same rank");
  }
  const int64_t axis = concat_axis(node, static_cast<int64_t>(out->size()));
  for (int i = 0; i < k; ++i) {
    const SymShape& s = *c.input(2 + 3 * i).shape;
    for (size_t d = 0; d < s.size(); ++d) {
      Dim& o = (*out)[d];
      if (d == sz(axis)) {
        o = o.known() && s[d].known() ? Dim(o.size + s[d].size) : Dim();
      } else if (s[d].known() && o.known()) {
        QREQUIRE(s[d].size == o.size, node, Errc::kShapeMismatch,
                 "concatenates inputs whose dimension " + std::to_string(d) + " differs (" +
                     std::to_string(o.size) + " and " + std::to_string(s[d].size) + ")",
                 "the same shape except on axis " + std::to_string(axis));
      } else if (!o.known() && s[d].known()) {
        o = s[d];
      }
    }
  }
  set_output(c, 0, t, out);
}

// ---------------------------------------------------------------- com.microsoft matmul to float

// prepare for DynamicQuantizeMatMul and MatMulIntegerToFloat: B packed
// (int8::prepare_matmul), and where B is 2-D and b_scale (float32),
// b_zero_point and bias (float32, N values) are constants of the shapes the
// fast path takes, their N per-column values, kept so that a call copies
// none of them (integer_matmul_to_float). Used only while the inputs are the
// very tensors they were made from.
struct ToFloatWeights {
  std::shared_ptr<const void> packed;  // int8::PackedWeights, or null
  bool cols = false;                   // the per-column values below are made
  int8::SourceTensor scale_src, zp_src, bias_src;
  std::vector<int32_t> b_zp;
  std::vector<float> b_scale;
  std::vector<float> bias;  // zeros without a bias (the reference adds 0.0f)
  int32_t zp_extremes[2] = {0, 0};  // the least and greatest b_zp, for exact_in_int32
  std::vector<int64_t> col_parts;  // the node's kColPartsAttr, or empty

  bool matches(const Tensor* bz, const Tensor& bs, const Tensor* b_bias) const {
    return cols && scale_src.is(&bs) && zp_src.is(bz) && bias_src.is(b_bias);
  }
};

std::shared_ptr<const void> prepare_matmul_to_float(const PrepareContext& ctx, int scale_index,
                                                    int zp_index, int bias_index) {
  auto st = std::make_shared<ToFloatWeights>();
  st->packed = int8::prepare_matmul(ctx, 1);
  auto constant = [&](int i) { return sz(i) < ctx.constants.size() ? ctx.constants[sz(i)] : nullptr; };
  auto given = [&](int i) { return sz(i) < ctx.node.inputs.size() && !ctx.node.inputs[sz(i)].empty(); };
  const Tensor* b = constant(1);
  const Tensor* bs = constant(scale_index);
  const Tensor* bz = constant(zp_index);
  const Tensor* bias = constant(bias_index);
  if (st->packed && b->rank() == 2 && bs && bs->dtype() == DType::kF32 && (bz || !given(zp_index)) &&
      (!bz || bz->dtype() == b->dtype()) && (bias || !given(bias_index))) {
    const int64_t N = b->dim(1);
    auto zp = per_column_zp(bz, N);
    auto scale = per_column_scale(*bs, N);
    const bool bias_ok = !bias || (bias->dtype() == DType::kF32 && bias->rank() == 1 && bias->numel() == N);
    if (zp && scale && bias_ok) {
      st->cols = true;
      st->scale_src = int8::SourceTensor::of(bs);
      st->zp_src = int8::SourceTensor::of(bz);
      st->bias_src = int8::SourceTensor::of(bias);
      st->b_zp = std::move(*zp);
      st->b_scale = std::move(*scale);
      st->bias = bias ? floats_of(*bias) : std::vector<float>(sz(N), 0.0f);
      const auto [lo, hi] = std::minmax_element(st->b_zp.begin(), st->b_zp.end());
      st->zp_extremes[0] = *lo;
      st->zp_extremes[1] = *hi;
    }
  }
  if (!st->packed && !st->cols) return nullptr;
  if (ctx.node.has_attr(kColPartsAttr)) st->col_parts = ctx.node.attr_ints(kColPartsAttr);
  return st;
}

// Y = (A - a_zp) x (B - b_zp) * (a_scale * b_scale) + bias, in float32 as
// ONNX Runtime's kernels compute it: float(int sum) * (a_scale * b_scale[n]) + bias[n].
// A per tensor (codes `aq`, of a's shape); B per tensor or per column.
void integer_matmul_to_float(OpContext& ctx, Path path, const Tensor& aq, int32_t a_zp,
                             float a_scale, const Tensor& b, const Tensor* bz, const Tensor& bs,
                             const Tensor* bias, DType out_type) {
  const ir::Node& node = ctx.node();
  const auto* tf = static_cast<const ToFloatWeights*>(ctx.state());
  const auto* packed = tf ? static_cast<const int8::PackedWeights*>(tf->packed.get()) : nullptr;
  // The common case without set-up: one packed 2-D B, per-column values made
  // in prepare, A's rows (its batch folded in) in one GEMM.
  if (path == Path::kFast && out_type == DType::kF32 && packed && packed->matches(b) && b.rank() == 2 &&
      tf->matches(bz, bs, bias) && aq.rank() >= 1 && aq.shape().back() == b.dim(0) && b.dim(0) > 0 &&
      aq.numel() > 0 &&
      kernels::exact_in_int32(b.dim(0), signed8(aq), a_zp, signed8(b), tf->zp_extremes, 2)) {
    const int64_t K = b.dim(0), N = b.dim(1);
    Shape out = aq.shape();
    out.back() = N;
    thread_local std::vector<float> scale;  // a_scale * b_scale[n], as the general path's
    scale.resize(sz(N));
    for (int64_t n = 0; n < N; ++n) scale[sz(n)] = a_scale * tf->b_scale[sz(n)];
    kernels::QGemmArgs g;
    g.M = aq.numel() / K;
    g.A = aq.raw();
    g.lda = K;
    g.a_signed = signed8(aq);
    g.a_zp = a_zp;
    g.B = &packed->mats[0];
    g.b_zp = tf->b_zp.data();
    g.out = kernels::QOutput::kF32;
    g.scale = scale.data();
    g.fbias = tf->bias.data();
    g.C = ctx.output(0, DType::kF32, std::move(out)).raw();
    g.ldc = N;
    g.cold_c = true;
    // Attention's q, k and v from this one product (passes::fuse_transpose_matmul
    // marks it): where the batch is smaller than the threads, the attention
    // splits by heads, so each thread computes its heads' columns.
    const int64_t rows = aq.rank() >= 2 ? aq.dim(aq.rank() - 2) : 1;
    if (!tf->col_parts.empty() && ctx.pool() != nullptr &&
        g.M / std::max<int64_t>(rows, 1) < ctx.pool()->threads()) {
      g.col_parts = tf->col_parts.data();
      g.col_part_count = static_cast<int>(tf->col_parts.size()) - 1;
    }
    kernels::qgemm(g, ctx.pool());
    return;
  }
  MatmulPlan p = plan_matmul(aq.shape(), b.shape(), node);
  std::vector<float> bv;
  auto read_bias = [&] {
    if (!bias) return;
    expect_same_type(node, "bias", bias->dtype(), "b_scale", bs.dtype());
    QREQUIRE(bias->rank() == 1 && bias->numel() == p.N, node, Errc::kShapeMismatch,
             "bias has shape " + shape_str(bias->shape()),
             "a 1-D tensor of " + std::to_string(p.N) + " values (B's last dimension)");
    bv = floats_of(*bias);
  };
  if (path == Path::kFast && out_type == DType::kF32) {
    // B per tensor or per column (shapes the reference accepts), and an int32
    // sum that equals the reference's int64 one.
    std::optional<std::vector<int32_t>> b_zp = per_column_zp(bz, p.N);
    std::optional<std::vector<float>> sb = per_column_scale(bs, p.N);
    if (b_zp && sb &&
        kernels::exact_in_int32(p.K, signed8(aq), a_zp, signed8(b), b_zp->data(), p.N)) {
      read_bias();
      int8::Matmul m = int8_matmul(std::move(p), aq, a_zp, b, std::move(*b_zp));
      m.ep.out = kernels::QOutput::kF32;
      m.ep.scale = std::move(*sb);
      for (float& v : m.ep.scale) v = a_scale * v;
      m.ep.fbias = bv.empty() ? std::vector<float>(sz(p.N), 0.0f) : std::move(bv);  // + 0.0f as below
      int8::matmul(m, packed, ctx.output(0, out_type, p.out).raw(), ctx.pool());
      return;
    }
  }
  std::vector<int32_t> A_codes = codes_of(aq);
  for (auto& v : A_codes) v -= a_zp;
  const auto B = minus_zero_point(node, b, bz, p.b2, Side::kB, "b_zero_point");
  const auto sb = side_scales(node, bs, p.b2, Side::kB, "b_scale");
  read_bias();
  Tensor& y = ctx.output(0, out_type, p.out);
  int_matmul(p, A_codes, B, [&](int64_t bi, int64_t m, int64_t n, int64_t sum) {
    const float s = a_scale * sb[sz(p.b_mat[sz(bi)] * p.N + n)];
    put_float(y, (bi * p.M + m) * p.N + n, static_cast<float>(sum) * s + (bv.empty() ? 0.0f : bv[sz(n)]));
  });
}

// A is quantized at run time with DynamicQuantizeLinear (u8, per tensor).
void dynamic_quantize_matmul_run(OpContext& ctx, Path path) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  const Tensor& bs = ctx.input(2);
  expect_type(node, "input A", a.dtype(), kF32Only);
  expect_type(node, "input B", b.dtype(), k8Bit);
  expect_type(node, "b_scale", bs.dtype(), kF32Only);
  const Tensor* bz = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  if (bz) expect_same_type(node, "b_zero_point", bz->dtype(), "B", b.dtype());
  DynamicQuantized q;
  if (a.numel() == 0) {
    q.params = choose_params(QuantSpec{}, 0.0f, 0.0f);
    q.y = Tensor(DType::kU8, a.shape());
  } else if (path == Path::kFast) {
    // The codes written into a buffer this thread keeps between calls (a
    // fresh tensor per call cost page faults and a zero fill).
    thread_local std::shared_ptr<Storage> codes;
    const int64_t n = a.numel();
    q.params = dynamic_u8_params(ctx, a, "input A");
    // The buffer is kept up to kKeepCodes bytes (a Transformer's activations
    // at batch 32 are 2 MiB); a larger input gets codes of its own for this
    // call, so that one large call doesn't hold its size per thread for the
    // life of the process.
    constexpr size_t kKeepCodes = size_t{8} << 20;
    std::shared_ptr<Storage> buf;
    if (sz(n) > kKeepCodes) {
      buf = Storage::allocate_uninitialized(sz(n));
    } else {
      if (!codes || codes->size() < sz(n)) codes = Storage::allocate_uninitialized(sz(n));
      buf = codes;
    }
    q.y = Tensor::view(DType::kU8, a.shape(), buf);
    dynamic_u8_codes(ctx, a, q.params, q.y.data<uint8_t>());
  } else {
    try {
      q = dynamic_quantize_linear(a);
    } catch (const Error& e) {
      fail(node, e.code(), "input A: " + e.problem(), e.expected());
    }
  }
  integer_matmul_to_float(ctx, path, q.y, q.params.zero_point[0], q.params.scale[0], b, bz, bs,
                          ctx.has_input(4) ? &ctx.input(4) : nullptr, DType::kF32);
}

void dynamic_quantize_matmul_infer(InferContext& c) { set_output(c, 0, DType::kF32, matmul_sym(c, 0, 1)); }

// Inputs A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias; Y has a_scale's type.
void matmul_integer_to_float_run(OpContext& ctx, Path path) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  const Tensor& as = ctx.input(2);
  const Tensor& bs = ctx.input(3);
  expect_type(node, "input A", a.dtype(), k8Bit);
  expect_type(node, "input B", b.dtype(), k8Bit);
  expect_type(node, "a_scale", as.dtype(), kF32OrF16);
  expect_same_type(node, "b_scale", bs.dtype(), "a_scale", as.dtype());
  QREQUIRE(is_single(as), node, Errc::kShapeMismatch, "a_scale has shape " + shape_str(as.shape()),
           "a scalar: A is quantized per tensor (a per-column scale of A can't be factored out of "
           "the sum over A's columns)");
  const Tensor* az = ctx.has_input(4) ? &ctx.input(4) : nullptr;
  const Tensor* bz = ctx.has_input(5) ? &ctx.input(5) : nullptr;
  int32_t a_zp = 0;
  if (az) a_zp = single_zero_point(ctx, 4, "a_zero_point", a.dtype(), "A");
  if (bz) expect_same_type(node, "b_zero_point", bz->dtype(), "B", b.dtype());
  integer_matmul_to_float(ctx, path, a, a_zp, float_at(as, 0), b, bz, bs,
                          ctx.has_input(6) ? &ctx.input(6) : nullptr, as.dtype());
}

void matmul_integer_to_float_infer(InferContext& c) {
  set_output(c, 0, c.input(2).dtype, matmul_sym(c, 0, 1));
}

// ---------------------------------------------------------------- com.microsoft QGemm

// Quantized Gemm (ONNX Runtime's contrib op, docs/ContribOperators.md, and
// its CPU kernel contrib_ops/cpu/quantization/quant_gemm.cc):
//   acc = C + sum_k (A'[m, k] - a_zp) * (B'[k, n] - b_zp[n])   (int32, wrapping)
//   scale[n] = alpha * a_scale * b_scale[n]   (float32, left to right)
//   with y_zero_point: Y = saturate(round_half_even(float(acc) * (scale[n] / y_scale)) + y_zp)
//   without:           Y = float(acc) * scale[n]  (/ y_scale when y_scale is given, as ORT)
// A' = A or A^T (transA), B' = B or B^T (transB), both 2-D; A per tensor, B
// per tensor or per column (b_zero_point absent means 0); C (int32, in the
// product's scale) broadcast from a scalar, [N], [1, N], [M, 1] or [M, N].
// The requantization is ONNX Runtime's float32 one (MlasRequantizeOutput:
// product, clamp to [qmin - y_zp, qmax - y_zp], round half to even), not
// the float64 of the ONNX-domain QLinearMatMul; with K = 0 the output is
// that of acc = C (ORT special-cases K = 0 differently).
struct QGemmSetup {
  int64_t M = 0, K = 0, N = 0;
  bool trans_a = false, trans_b = false;
  int32_t a_zp = 0, y_zp = 0;
  std::vector<int32_t> b_zp;  // N
  std::vector<float> scale;   // N
  const Tensor* c = nullptr;
  int64_t c_rows = 0, c_cols = 0;  // C's shape as broadcast: 1 or M, 1 or N
  bool quantized = false;
  DType out = DType::kF32;
};

QGemmSetup qgemm_setup(const OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(3);
  expect_type(node, "input A", a.dtype(), k8Bit);
  expect_type(node, "input B", b.dtype(), k8Bit);
  QREQUIRE(a.rank() == 2 && b.rank() == 2, node, Errc::kShapeMismatch,
           "has A of shape " + shape_str(a.shape()) + " and B of shape " + shape_str(b.shape()),
           "2-D A and B");
  QGemmSetup q;
  q.trans_a = node.attr_int("transA", 0) != 0;
  q.trans_b = node.attr_int("transB", 0) != 0;
  q.M = q.trans_a ? a.dim(1) : a.dim(0);
  q.K = q.trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = q.trans_b ? b.dim(1) : b.dim(0);
  q.N = q.trans_b ? b.dim(0) : b.dim(1);
  QREQUIRE(kb == q.K, node, Errc::kShapeMismatch,
           "multiplies A' of shape [" + std::to_string(q.M) + ", " + std::to_string(q.K) +
               "] by B' of shape [" + std::to_string(kb) + ", " + std::to_string(q.N) +
               "] (after transA, transB)",
           "A's K equal to B's K");
  const float a_scale = single_scale(ctx, 1, "a_scale", false);
  q.a_zp = single_zero_point(ctx, 2, "a_zero_point", a.dtype(), "A");
  const Tensor& bs = ctx.input(4);
  expect_type(node, "b_scale", bs.dtype(), kF32Only);
  auto per_col = [&] {
    return "a scalar (per tensor) or a 1-D tensor of 1 or " + std::to_string(q.N) +
           " values (per column of B')";
  };
  const auto sb = bs.rank() <= 1 ? per_column_scale(bs, q.N) : std::nullopt;
  QREQUIRE(sb.has_value(), node, Errc::kShapeMismatch, "b_scale has shape " + shape_str(bs.shape()),
           per_col());
  const Tensor* bz = ctx.has_input(5) ? &ctx.input(5) : nullptr;
  if (bz) expect_same_type(node, "b_zero_point", bz->dtype(), "B", b.dtype());
  auto bzp = bz && bz->rank() > 1 ? std::nullopt : per_column_zp(bz, q.N);
  QREQUIRE(bzp.has_value(), node, Errc::kShapeMismatch,
           "b_zero_point has shape " + shape_str(bz ? bz->shape() : Shape{}), per_col());
  q.b_zp = std::move(*bzp);
  if (ctx.has_input(6)) {
    const Tensor& c = ctx.input(6);
    expect_type(node, "input C", c.dtype(), kI32Only);
    const Shape& cs = c.shape();
    const bool ok = c.numel() == 1 ? cs.size() <= 2
                  : cs.size() == 1 ? cs[0] == q.N
                  : cs.size() == 2 && (cs[0] == 1 || cs[0] == q.M) && (cs[1] == 1 || cs[1] == q.N);
    QREQUIRE(ok, node, Errc::kShapeMismatch, "C has shape " + shape_str(cs),
             "a shape that broadcasts to [M, N] = [" + std::to_string(q.M) + ", " +
                 std::to_string(q.N) + "]: a scalar, [N], [1, N], [M, 1] or [M, N]");
    q.c = &c;
    q.c_rows = cs.size() == 2 ? cs[0] : 1;
    q.c_cols = cs.empty() ? 1 : cs.back();
  }
  const bool has_ys = ctx.has_input(7);
  const float y_scale = has_ys ? single_scale(ctx, 7, "y_scale", true) : 1.0f;
  q.quantized = ctx.has_input(8);
  if (q.quantized) {
    QREQUIRE(has_ys, node, Errc::kInvalidArgument, "has y_zero_point but no y_scale",
             "y_scale with y_zero_point (a quantized output)");
    const Tensor& yz = ctx.input(8);
    expect_type(node, "y_zero_point", yz.dtype(), k8Bit);
    q.y_zp = single_zero_point(ctx, 8, "y_zero_point", yz.dtype(), "itself", false);
    q.out = yz.dtype();
  }
  const float alpha = node.attr_float("alpha", 1.0f);
  q.scale.reserve(sz(q.N));
  for (int64_t n = 0; n < q.N; ++n) {
    float s = alpha * a_scale * (*sb)[sz(n)];
    if (has_ys) s /= y_scale;
    q.scale.push_back(s);
  }
  return q;
}

// C[m, n] under broadcasting.
int32_t qgemm_c_at(const QGemmSetup& q, int64_t m, int64_t n) {
  if (!q.c) return 0;
  return q.c->data<int32_t>()[(q.c_rows == 1 ? 0 : m) * q.c_cols + (q.c_cols == 1 ? 0 : n)];
}

void qgemm_run(OpContext& ctx, Path path) {
  QGemmSetup q = qgemm_setup(ctx);
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(3);
  Tensor& y = ctx.output(0, q.out, {q.M, q.N});
  if (path == Path::kFast) {
    int8::Gemm g;
    g.a = &a;
    g.trans_a = q.trans_a;
    g.a_zp = q.a_zp;
    g.b = &b;
    g.trans_b = q.trans_b;
    g.b_zp = std::move(q.b_zp);  // q's per-column values are not read after this
    g.M = q.M;
    g.K = q.K;
    g.N = q.N;
    std::vector<int32_t> cm;  // C as one row (bias_ld 0) or M rows
    if (q.c) {
      const int32_t* cd = q.c->data<int32_t>();
      if (q.c_cols == q.N && q.N > 1) {
        g.bias = cd;
        g.bias_ld = q.c_rows == 1 ? 0 : q.N;
      } else {
        const int64_t rows = q.c_rows == 1 ? 1 : q.M;
        for (int64_t m = 0; m < rows; ++m)
          for (int64_t n = 0; n < q.N; ++n) cm.push_back(qgemm_c_at(q, m, n));
        g.bias = cm.data();
        g.bias_ld = rows == 1 ? 0 : q.N;
      }
    }
    g.ep.out = q.quantized ? kernels::QOutput::kQ8Float : kernels::QOutput::kF32;
    g.ep.scale = std::move(q.scale);
    g.ep.y_zp = q.y_zp;
    g.ep.y_signed = q.out == DType::kI8;
    int8::gemm(g, ctx.state(), y.raw(), ctx.pool());
    return;
  }
  // Reference: exact int64 sums, wrapped to int32 as the int32 accumulation
  // of ONNX Runtime's kernel leaves them, then float32 arithmetic.
  const std::vector<int32_t> A = codes_of(a), B = codes_of(b);
  const auto qmin = static_cast<int32_t>(q.quantized ? dtype_min(q.out) : 0);
  const auto qmax = static_cast<int32_t>(q.quantized ? dtype_max(q.out) : 0);
  for (int64_t m = 0; m < q.M; ++m)
    for (int64_t n = 0; n < q.N; ++n) {
      int64_t sum = qgemm_c_at(q, m, n);
      for (int64_t k = 0; k < q.K; ++k) {
        const int64_t av = A[sz(q.trans_a ? k * q.M + m : m * q.K + k)] - q.a_zp;
        const int64_t bv = B[sz(q.trans_b ? n * q.K + k : k * q.N + n)] - q.b_zp[sz(n)];
        sum += av * bv;
      }
      const float v = static_cast<float>(wrap32(sum)) * q.scale[sz(n)];
      if (!q.quantized) {
        y.data<float>()[m * q.N + n] = v;
        continue;
      }
      const auto lo = static_cast<float>(qmin - q.y_zp), hi = static_cast<float>(qmax - q.y_zp);
      float c = v > lo ? v : lo;  // NaN gives qmin
      c = c < hi ? c : hi;
      put_code(y, m * q.N + n, static_cast<int32_t>(std::nearbyint(c)) + q.y_zp);
    }
}

void qgemm_infer(InferContext& c) {
  const ir::ValueInfo& a = c.input(0);
  const ir::ValueInfo& b = c.input(3);
  const bool ta = c.node().attr_int("transA", 0) != 0, tb = c.node().attr_int("transB", 0) != 0;
  std::optional<DType> out = DType::kF32;
  if (c.has_input(8)) out = c.input(8).dtype;
  std::optional<SymShape> shape;
  if (a.shape && b.shape) {
    QREQUIRE(a.shape->size() == 2 && b.shape->size() == 2, c.node(), Errc::kShapeMismatch,
             "has A of shape " + ir::sym_shape_str(*a.shape) + " and B of shape " +
                 ir::sym_shape_str(*b.shape),
             "2-D A and B");
    shape = SymShape{(*a.shape)[ta ? 1 : 0], (*b.shape)[tb ? 0 : 1]};
  }
  set_output(c, 0, out, shape);
}

}  // namespace

void register_quant_ops(OpRegistry& r) {
  // ONNX domain.
  r.add({.domain = "", .op_type = "QuantizeLinear", .min_opset = 10, .max_opset = 21,
         .infer = quantize_linear_infer, .check = quantize_linear_check, .run = quantize_linear_run});
  r.add({.domain = "", .op_type = "DequantizeLinear", .min_opset = 10, .max_opset = 21,
         .infer = dequantize_linear_infer, .run = dequantize_linear_run});
  r.add({.domain = "", .op_type = "DynamicQuantizeLinear", .min_opset = 11, .max_opset = 21,
         .infer = dynamic_quantize_linear_infer, .run = dynamic_quantize_linear_run});
  // The integer matrix ops pack constant weights once (prepare) for the int8 GEMM.
  auto fast = [](void (*run)(OpContext&, Path)) {
    return [run](OpContext& c) { run(c, Path::kFast); };
  };
  auto packs_matmul_b = [](int b) {
    return [b](const PrepareContext& p) { return int8::prepare_matmul(p, b); };
  };
  auto packs_conv_w = [](int w) {
    return [w](const PrepareContext& p) { return prepare_conv_state(p, w); };
  };
  r.add({.domain = "", .op_type = "MatMulInteger", .min_opset = 10, .max_opset = 21,
         .infer = matmul_integer_infer, .prepare = packs_matmul_b(1),
         .run = fast(matmul_integer_run)});
  r.add({.domain = "", .op_type = "ConvInteger", .min_opset = 10, .max_opset = 21,
         .infer = conv_integer_infer, .prepare = packs_conv_w(1), .run = fast(conv_integer_run)});
  // Opset 21 adds f16 / bf16 scales (and float8 types, which qforge lacks).
  r.add({.domain = "", .op_type = "QLinearMatMul", .min_opset = 10, .max_opset = 20,
         .infer = qlinear_matmul_infer, .prepare = packs_matmul_b(3),
         .run = fast(qlinear_matmul_run)});
  r.add({.domain = "", .op_type = "QLinearMatMul", .min_opset = 21, .max_opset = 21,
         .infer = qlinear_matmul_infer, .prepare = packs_matmul_b(3),
         .run = fast(qlinear_matmul_run)});
  // ai.qforge: QLinearMatMul with an int32 bias (fuse_qdq's MatMul -> Add).
  r.add({.domain = "ai.qforge", .op_type = "QLinearMatMul", .min_opset = 1, .max_opset = 1,
         .infer = qlinear_matmul_infer, .prepare = packs_matmul_b(3),
         .run = fast(qlinear_matmul_run)});
  r.add({.domain = "", .op_type = "QLinearConv", .min_opset = 10, .max_opset = 21,
         .infer = qlinear_conv_infer, .prepare = prepare_qconv_state,
         .run = fast(qlinear_conv_run)});
  // ai.qforge: QLinearConv then MaxPool 2x2 / 2 (passes::fuse_conv_maxpool).
  r.add({.domain = "ai.qforge", .op_type = "QLinearConvMaxPool", .min_opset = 1, .max_opset = 1,
         .infer = [](InferContext& c) { qforge_qconv_infer(c, true); },
         .prepare = prepare_qconv_state,
         .run = fast(qlinear_conv_maxpool_run)});
  // ai.qforge: QLinearConv, optionally channels_last (passes::qconv_channels_last).
  r.add({.domain = "ai.qforge", .op_type = "QLinearConv", .min_opset = 1, .max_opset = 1,
         .infer = [](InferContext& c) { qforge_qconv_infer(c, false); },
         .prepare = prepare_qconv_state,
         .run = fast(qlinear_conv_run)});

  // com.microsoft (ONNX Runtime's contrib ops, version 1).
  const std::string ms = kMicrosoft;
  r.add({.domain = ms, .op_type = "QuantizeLinear", .min_opset = 1, .max_opset = 1,
         .infer = quantize_linear_infer, .run = quantize_linear_run});
  r.add({.domain = ms, .op_type = "DequantizeLinear", .min_opset = 1, .max_opset = 1,
         .infer = dequantize_linear_infer, .run = dequantize_linear_run});
  r.add({.domain = ms, .op_type = "QLinearAdd", .min_opset = 1, .max_opset = 1,
         .infer = qlinear_binary_infer, .run = [](OpContext& c) { qlinear_binary_run(c, false); }});
  r.add({.domain = ms, .op_type = "QLinearMul", .min_opset = 1, .max_opset = 1,
         .infer = qlinear_binary_infer, .run = [](OpContext& c) { qlinear_binary_run(c, true); }});
  r.add({.domain = ms, .op_type = "QLinearSigmoid", .min_opset = 1, .max_opset = 1,
         .infer = [](InferContext& c) { infer_same_as(c); }, .run = qlinear_sigmoid_run});
  r.add({.domain = ms, .op_type = "QLinearLeakyRelu", .min_opset = 1, .max_opset = 1,
         .infer = [](InferContext& c) { infer_same_as(c); }, .run = qlinear_leaky_relu_run});
  r.add({.domain = ms, .op_type = "QLinearAveragePool", .min_opset = 1, .max_opset = 1,
         .infer = qlinear_average_pool_infer, .run = qlinear_average_pool_run});
  r.add({.domain = ms, .op_type = "QLinearGlobalAveragePool", .min_opset = 1, .max_opset = 1,
         .infer = qlinear_global_average_pool_infer, .run = fast(qlinear_global_average_pool_run)});
  r.add({.domain = ms, .op_type = "QLinearConcat", .min_opset = 1, .max_opset = 1,
         .infer = qlinear_concat_infer, .run = qlinear_concat_run});
  r.add({.domain = ms, .op_type = "DynamicQuantizeMatMul", .min_opset = 1, .max_opset = 1,
         .infer = dynamic_quantize_matmul_infer,
         .prepare = [](const PrepareContext& p) { return prepare_matmul_to_float(p, 2, 3, 4); },
         .run = fast(dynamic_quantize_matmul_run)});
  r.add({.domain = ms, .op_type = "MatMulIntegerToFloat", .min_opset = 1, .max_opset = 1,
         .infer = matmul_integer_to_float_infer,
         .prepare = [](const PrepareContext& p) { return prepare_matmul_to_float(p, 3, 5, 6); },
         .run = fast(matmul_integer_to_float_run)});
  r.add({.domain = ms, .op_type = "QGemm", .min_opset = 1, .max_opset = 1, .infer = qgemm_infer,
         .prepare = [](const PrepareContext& p) {
           return int8::prepare_gemm(p, 3, p.node.attr_int("transB", 0) != 0);
         },
         .run = fast(qgemm_run)});
}

namespace reference {
void matmul_integer(OpContext& ctx) { matmul_integer_run(ctx, Path::kReference); }
void qlinear_matmul(OpContext& ctx) { qlinear_matmul_run(ctx, Path::kReference); }
void conv_integer(OpContext& ctx) { conv_integer_run(ctx, Path::kReference); }
void qlinear_conv(OpContext& ctx) { qlinear_conv_run(ctx, Path::kReference); }
void qlinear_conv_maxpool(OpContext& ctx) { qlinear_conv_maxpool_run(ctx, Path::kReference); }
void matmul_integer_to_float(OpContext& ctx) { matmul_integer_to_float_run(ctx, Path::kReference); }
void dynamic_quantize_matmul(OpContext& ctx) { dynamic_quantize_matmul_run(ctx, Path::kReference); }
void qgemm(OpContext& ctx) { qgemm_run(ctx, Path::kReference); }
void qlinear_global_average_pool(OpContext& ctx) { qlinear_global_average_pool_run(ctx, Path::kReference); }
}  // namespace reference

}  // namespace qforge::ops
