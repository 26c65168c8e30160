// The integer and quantization operators (src/ops/quant.cpp) on what ONNX's
// backend test data doesn't cover: per-axis and blocked parameters, 4- and
// 16-bit types, f16 scales, numpy matmul batching, convolution attributes,
// the com.microsoft QOperator ops, symbolic shape inference and bad input.
// Each expected value is computed by hand from the reference named in the
// test's comment: the ONNX operator spec (onnx/defs/quantization, math, nn;
// ONNX 1.16 Operators.md) or ONNX Runtime's docs/ContribOperators.md for the
// com.microsoft ops. "Round half to even" and "saturate" are the ONNX spec's
// rules for QuantizeLinear, which the requantizing ops share.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <random>

#include <gtest/gtest.h>

#include "qforge/error.h"
#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/quant.h"
#include "qforge/tensor.h"
#include "qforge/thread_pool.h"

namespace qforge {
namespace {

using Attrs = std::map<std::string, ir::Attribute>;
using Inputs = std::vector<std::optional<Tensor>>;
const std::string kMs = "com.microsoft";

ir::Attribute ai(int64_t v) { return ir::Attribute::of(v); }
ir::Attribute ais(std::vector<int64_t> v) { return ir::Attribute::of(std::move(v)); }
ir::Attribute af(float v) { return ir::Attribute::of(v); }
ir::Attribute as(const char* v) { return ir::Attribute::of(std::string(v)); }

ir::Node make_node(const std::string& domain, const std::string& op, size_t n_in,
                   const std::vector<bool>& present, int n_out, Attrs attrs) {
  ir::Node node;
  node.name = "n";
  node.op_type = op;
  node.domain = domain;
  for (size_t i = 0; i < n_in; ++i) node.inputs.push_back(present[i] ? "in" + std::to_string(i) : "");
  for (int o = 0; o < n_out; ++o) node.outputs.push_back("out" + std::to_string(o));
  node.attrs = std::move(attrs);
  return node;
}

const ops::OpDef& def_of(const std::string& domain, const std::string& op, int64_t opset) {
  const ops::OpDef* d = ops::OpRegistry::global().find(domain, op, opset);
  if (!d) throw std::runtime_error("no OpDef for " + domain + "." + op + " at opset " + std::to_string(opset));
  return *d;
}

// Runs one node's kernel on the given inputs (nullopt: absent optional input).
std::vector<Tensor> run(const std::string& domain, const std::string& op, int64_t opset,
                        const Inputs& in, Attrs attrs = {}, int n_out = 1,
                        ThreadPool* pool = nullptr) {
  std::vector<bool> present;
  std::vector<const Tensor*> ptrs;
  for (const auto& t : in) {
    present.push_back(t.has_value());
    ptrs.push_back(t ? &*t : nullptr);
  }
  const ir::Node node = make_node(domain, op, in.size(), present, n_out, std::move(attrs));
  ops::OpContext ctx(node, opset, ptrs, nullptr, pool);
  def_of(domain, op, opset).run(ctx);
  return ctx.outputs();
}

Tensor run1(const std::string& domain, const std::string& op, int64_t opset, const Inputs& in,
            Attrs attrs = {}) {
  return run(domain, op, opset, in, std::move(attrs)).at(0);
}

ir::ValueInfo vi(std::optional<DType> dt, std::optional<ir::SymShape> shape) {
  ir::ValueInfo v;
  v.dtype = dt;
  v.shape = std::move(shape);
  return v;
}

// Runs one node's shape inference.
std::vector<ir::ValueInfo> infer(const std::string& domain, const std::string& op, int64_t opset,
                                 const std::vector<std::optional<ir::ValueInfo>>& in, Attrs attrs = {},
                                 int n_out = 1) {
  std::vector<bool> present;
  std::vector<const ir::ValueInfo*> ptrs;
  for (const auto& v : in) {
    present.push_back(v.has_value());
    ptrs.push_back(v ? &*v : nullptr);
  }
  const ir::Node node = make_node(domain, op, in.size(), present, n_out, std::move(attrs));
  ops::InferContext ctx(node, opset, ptrs, std::vector<const Tensor*>(in.size(), nullptr));
  def_of(domain, op, opset).infer(ctx);
  return ctx.outputs();
}

// The qforge::Error f throws; fails the test if it throws none (or another type).
template <typename F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-qforge exception: " << e.what();
    return Error(Errc::kInternal, "", "");
  }
  ADD_FAILURE() << "threw no Error";
  return Error(Errc::kInternal, "", "");
}

// Every error names the node ("node 'n' (Op)").
void expect_node_error(const Error& e, Errc code) {
  EXPECT_EQ(e.code(), code) << e.what();
  EXPECT_NE(e.subject().find("node 'n'"), std::string::npos) << e.what();
  EXPECT_FALSE(e.expected().empty()) << e.what();
}

template <typename T>
std::vector<T> values(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<T>(p, p + t.numel());
}

template <typename T>
Tensor T1(Shape s, std::vector<T> v) { return Tensor::from(std::move(s), v); }
Tensor F(Shape s, std::vector<float> v) { return Tensor::from(std::move(s), v); }
Tensor U8(Shape s, std::vector<uint8_t> v) { return Tensor::from(std::move(s), v); }
Tensor I8(Shape s, std::vector<int8_t> v) { return Tensor::from(std::move(s), v); }
Tensor I32(Shape s, std::vector<int32_t> v) { return Tensor::from(std::move(s), v); }
Tensor Fs(float v) { return Tensor::from<float>({}, {v}); }

Tensor half(DType dt, Shape s, const std::vector<float>& v) {
  Tensor t(dt, std::move(s));
  auto* d = static_cast<uint16_t*>(t.raw());
  for (size_t i = 0; i < v.size(); ++i) d[i] = dt == DType::kF16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
  return t;
}

Tensor packed(DType dt, Shape s, const std::vector<uint8_t>& bytes) {
  Tensor t(dt, std::move(s));
  std::memcpy(t.raw(), bytes.data(), bytes.size());
  return t;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

// ====================================================================== QuantizeLinear

// ONNX QuantizeLinear: y = saturate(round(x / y_scale) + y_zero_point), round
// half to even, u8 when there is no zero point. 1.5 -> 2, 2.5 -> 2, -1 -> 0, 300 -> 255.
TEST(OpsQuant, QuantizeLinearRoundsHalfToEvenAndSaturates) {
  const Tensor y = run1("", "QuantizeLinear", 10, {F({6}, {0, 1.5f, 2.5f, -1, 300, 2.4999f}), Fs(1)});
  EXPECT_EQ(y.dtype(), DType::kU8);
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{0, 2, 2, 0, 255, 2}));
  // i8 zero point -3, scale 0.5: 1.25 -> 2.5 -> 2 - 3 = -1; -100 -> -200 -> -128; 0.75 -> 1.5 -> 2 - 3.
  const Tensor z = run1("", "QuantizeLinear", 13,
                        {F({3}, {1.25f, -100, 0.75f}), Fs(0.5f), I8({}, {-3})});
  EXPECT_EQ(values<int8_t>(z), (std::vector<int8_t>{-1, -128, -1}));
}

// ONNX QuantizeLinear 13, per-axis: a 1-D scale with one value per index of `axis`.
// x [[1,2,4],[3,-2,8]] on axis 1 with scales [1,2,4], zero points [0,10,20]:
// [[1, 1+10, 1+20], [3, -1+10, 2+20]].
TEST(OpsQuant, QuantizeLinearPerAxis) {
  const Tensor x = F({2, 3}, {1, 2, 4, 3, -2, 8});
  const Tensor y = run1("", "QuantizeLinear", 13, {x, F({3}, {1, 2, 4}), U8({3}, {0, 10, 20})});
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{1, 11, 21, 3, 9, 22}));
  // axis 0 (also as -2): row 0 scale 1, row 1 scale 2 -> [1,2,4, 2 (1.5 -> 2), 0 (-1 -> 0 sat), 4].
  for (int64_t axis : {0, -2}) {
    const Tensor y0 = run1("", "QuantizeLinear", 13, {x, F({2}, {1, 2})}, {{"axis", ai(axis)}});
    EXPECT_EQ(values<uint8_t>(y0), (std::vector<uint8_t>{1, 2, 4, 2, 0, 4})) << "axis " << axis;
  }
}

// ONNX QuantizeLinear 10: "It's a scalar, which means a per-tensor/layer
// quantization" - a 1-D scale of 3 values is refused; at 13 the length must
// match x's axis.
TEST(OpsQuant, QuantizeLinearRefusesScalesOfTheWrongShape) {
  const Tensor x = F({2, 3}, {1, 2, 4, 3, -2, 8});
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 10, {x, F({3}, {1, 2, 4})}); }),
                    Errc::kShapeMismatch);
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {x, F({2}, {1, 2})}); }),
                    Errc::kShapeMismatch);
  // 2-D scale without block_size.
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 21, {x, F({2, 3}, {1, 1, 1, 1, 1, 1})}); }),
                    Errc::kShapeMismatch);
  // zero point shape differs from the scale's.
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {x, F({3}, {1, 2, 4}), U8({2}, {0, 0})}); }),
                    Errc::kShapeMismatch);
  // axis out of range.
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {x, F({3}, {1, 2, 4})}, {{"axis", ai(2)}}); }),
                    Errc::kInvalidArgument);
}

// ONNX QuantizeLinear 21, blocked: scale shape (D0, ceil(D1 / B)) for axis 1.
// x [[1,3,5,7],[8,-8,16,-40]], B = 2, scales [[1,2],[4,8]], zero points [[0,1],[-1,2]]:
// row 0: 1, 3 | 5/2 = 2.5 -> 2 + 1 = 3, 7/2 = 3.5 -> 4 + 1 = 5;
// row 1: 8/4 - 1 = 1, -8/4 - 1 = -3 | 16/8 + 2 = 4, -40/8 + 2 = -3.
TEST(OpsQuant, QuantizeLinearBlocked) {
  const Tensor y = run1("", "QuantizeLinear", 21,
                        {F({2, 4}, {1, 3, 5, 7, 8, -8, 16, -40}), F({2, 2}, {1, 2, 4, 8}),
                         I8({2, 2}, {0, 1, -1, 2})},
                        {{"axis", ai(1)}, {"block_size", ai(2)}});
  EXPECT_EQ(values<int8_t>(y), (std::vector<int8_t>{1, 3, 3, 5, 1, -3, 4, -3}));
  // A ragged last block: x [1, 5], B = 2 -> 3 scales; the last covers one element.
  // [1,2 | 3,4 | 5] / [1 | 2 | 10] = [1, 2, 1.5 -> 2, 2, 0.5 -> 0].
  const Tensor r = run1("", "QuantizeLinear", 21, {F({1, 5}, {1, 2, 3, 4, 5}), F({1, 3}, {1, 2, 10})},
                        {{"axis", ai(1)}, {"block_size", ai(2)}});
  EXPECT_EQ(values<uint8_t>(r), (std::vector<uint8_t>{1, 2, 2, 2, 0}));
  // Blocked along axis 0: x [4, 1], B = 3 -> scale [2, 1]: [3,6,9 / 3 | 8 / 4] = [1,2,3,2].
  const Tensor c = run1("", "QuantizeLinear", 21, {F({4, 1}, {3, 6, 9, 8}), F({2, 1}, {3, 4})},
                        {{"axis", ai(0)}, {"block_size", ai(3)}});
  EXPECT_EQ(values<uint8_t>(c), (std::vector<uint8_t>{1, 2, 3, 2}));
}

// ONNX 21: "y_scale shape (D0, ..., ceil(Di/B), ..., Dn)"; anything else is refused,
// and block_size must not be negative.
TEST(OpsQuant, QuantizeLinearBlockedRefusesBadShapes) {
  const Tensor x = F({2, 4}, {1, 3, 5, 7, 8, -8, 16, -40});
  const Attrs a{{"axis", ai(1)}, {"block_size", ai(2)}};
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 21, {x, F({2, 3}, {1, 1, 1, 1, 1, 1})}, a); }),
                    Errc::kShapeMismatch);
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 21, {x, F({4}, {1, 1, 1, 1})}, a); }),
                    Errc::kShapeMismatch);
  expect_node_error(error_of([&] {
                      run1("", "QuantizeLinear", 21, {x, F({2, 2}, {1, 1, 1, 1})},
                           {{"axis", ai(1)}, {"block_size", ai(-1)}});
                    }),
                    Errc::kInvalidArgument);
}

// ONNX QuantizeLinear 21: int4 output via output_dtype (INT4 = 22), saturating
// to [-8, 7], packed low nibble first (qforge/pack.h, ONNX's INT4 layout):
// [-9, -8, 7, 8, 1.5] -> [-8, -8, 7, 7, 2] -> bytes 0x88, 0x77, 0x02.
TEST(OpsQuant, QuantizeLinearInt4Packs) {
  const Tensor y = run1("", "QuantizeLinear", 21, {F({5}, {-9, -8, 7, 8, 1.5f}), Fs(1)},
                        {{"output_dtype", ai(22)}});
  EXPECT_EQ(y.dtype(), DType::kI4);
  EXPECT_EQ(y.shape(), (Shape{5}));
  EXPECT_EQ(bytes_of(y), (std::vector<uint8_t>{0x88, 0x77, 0x02}));
  // u4 with a u4 zero point of 3 (low nibble of the byte): [0, 5, 20, -4] / 2 + 3
  // = [3, 2.5 -> 2 + 3 = 5, 13, -2 + 3 = 1] -> bytes 0x53, 0x1D.
  const Tensor u = run1("", "QuantizeLinear", 21,
                        {F({4}, {0, 5, 20, -4}), Fs(2), packed(DType::kU4, {}, {0x03})});
  EXPECT_EQ(u.dtype(), DType::kU4);
  EXPECT_EQ(bytes_of(u), (std::vector<uint8_t>{0x53, 0x1D}));
  // u16 (UINT16 = 4) saturates at 65535.
  const Tensor w = run1("", "QuantizeLinear", 21, {F({2}, {70000, 1000.5f}), Fs(1)}, {{"output_dtype", ai(4)}});
  EXPECT_EQ(values<uint16_t>(w), (std::vector<uint16_t>{65535, 1000}));
}

// ONNX 19/21 allow float8 outputs, which qforge lacks: a clear Unsupported
// error. ONNX 21: "If both output_dtype and y_zero_point are specified,
// output_dtype must be T2"; 16- and 4-bit outputs only exist from opset 21.
TEST(OpsQuant, QuantizeLinearOutputTypeRules) {
  const Tensor x = F({2}, {1, 2});
  const Error f8 = error_of([&] { run1("", "QuantizeLinear", 21, {x, Fs(1)}, {{"output_dtype", ai(17)}}); });
  expect_node_error(f8, Errc::kUnsupported);
  EXPECT_NE(f8.problem().find("float8e4m3fn"), std::string::npos);
  expect_node_error(error_of([&] {
                      run1("", "QuantizeLinear", 21, {x, Fs(1), I8({}, {0})}, {{"output_dtype", ai(2)}});
                    }),
                    Errc::kTypeMismatch);
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {x, Fs(1), T1<int16_t>({}, {0})}); }),
                    Errc::kTypeMismatch);
  // The check function says why too (for `qforge inspect`).
  const ir::Node n = make_node("", "QuantizeLinear", 2, {true, true}, 1, {{"output_dtype", ai(19)}});
  const ir::ValueInfo a = vi(DType::kF32, ir::SymShape{2}), b = vi(DType::kF32, ir::SymShape{});
  ops::InferContext ctx(n, 21, {&a, &b}, {nullptr, nullptr});
  EXPECT_NE(def_of("", "QuantizeLinear", 21).check(ctx).find("float8e5m2"), std::string::npos);
}

// ONNX QuantizeLinear 19: x and y_scale are float16. The quotient is taken in
// the scale's precision (numpy float16 arithmetic; ONNX 23+ "the type of
// y_scale determines the precision of the division"): 1.796875 / 1.1982421875
// = 1.49959... in float32, which float16 rounds to 1.5, then half to even -> 2
// (float32 arithmetic would give 1).
TEST(OpsQuant, QuantizeLinearFloat16DividesInFloat16) {
  const Tensor y = run1("", "QuantizeLinear", 19,
                        {half(DType::kF16, {2}, {1.796875f, -3}), half(DType::kF16, {}, {1.1982421875f})});
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{2, 0}));
  // bfloat16 x with a float32 scale divides in float32: 2.5 / 1 -> 2.
  const Tensor b = run1("", "QuantizeLinear", 19, {half(DType::kBF16, {1}, {2.5f}), Fs(1)});
  EXPECT_EQ(values<uint8_t>(b), (std::vector<uint8_t>{2}));
  // f16 inputs don't exist before opset 19.
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {half(DType::kF16, {1}, {1}), Fs(1)}); }),
                    Errc::kTypeMismatch);
}

// ONNX QuantizeLinear 10: x may be int32 (divided in float64, like numpy's
// int32 / float32): 7/2 = 3.5 -> 4, -7/2 -> -4 -> 0 (u8), 1000000001 / 2 -> 255.
TEST(OpsQuant, QuantizeLinearInt32Input) {
  const Tensor y = run1("", "QuantizeLinear", 10, {I32({3}, {7, -7, 1000000001}), Fs(2)});
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{4, 0, 255}));
  const Tensor z = run1("", "QuantizeLinear", 10, {I32({2}, {7, -7}), Fs(2), I8({}, {0})});
  EXPECT_EQ(values<int8_t>(z), (std::vector<int8_t>{4, -4}));
}

// x / y_scale must be defined: zero, NaN and Inf scales are refused, as are
// integer x types other than int32, and a missing (required) y_scale.
TEST(OpsQuant, QuantizeLinearRefusesBadInput) {
  const Tensor x = F({2}, {1, 2});
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {x, Fs(0)}); }), Errc::kInvalidArgument);
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {x, Fs(NAN)}); }), Errc::kInvalidArgument);
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {U8({1}, {1}), Fs(1)}); }),
                    Errc::kTypeMismatch);
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {x, std::nullopt}); }), Errc::kNotFound);
  expect_node_error(error_of([&] { run1("", "QuantizeLinear", 13, {x, T1<double>({}, {1.0})}); }),
                    Errc::kTypeMismatch);
}

// ONNX QuantizeLinear's inference: y has x's shape (symbols kept) and the zero
// point's type, u8 without one, output_dtype at 21.
TEST(OpsQuant, QuantizeLinearInfersSymbolically) {
  const ir::SymShape s{ir::Dim::sym("batch"), 3};
  auto o = infer("", "QuantizeLinear", 13, {vi(DType::kF32, s), vi(DType::kF32, ir::SymShape{}), vi(DType::kI8, ir::SymShape{})});
  EXPECT_EQ(o[0].dtype, DType::kI8);
  ASSERT_TRUE(o[0].shape);
  EXPECT_EQ(*o[0].shape, s);
  o = infer("", "QuantizeLinear", 13, {vi(DType::kF32, s), vi(DType::kF32, ir::SymShape{}), std::nullopt});
  EXPECT_EQ(o[0].dtype, DType::kU8);
  o = infer("", "QuantizeLinear", 21, {vi(DType::kF32, std::nullopt), vi(DType::kF32, ir::SymShape{})},
            {{"output_dtype", ai(21)}});
  EXPECT_EQ(o[0].dtype, DType::kU4);
  EXPECT_FALSE(o[0].shape);
  // zero point of unknown type: output type unknown, not an error.
  o = infer("", "QuantizeLinear", 13, {vi(DType::kF32, s), vi(DType::kF32, ir::SymShape{}), vi(std::nullopt, std::nullopt)});
  EXPECT_FALSE(o[0].dtype);
}

// ====================================================================== DequantizeLinear

// ONNX DequantizeLinear: y = (x - x_zero_point) * x_scale.
// [0, 3, 255] with zero point 3, scale 0.5 -> [-1.5, 0, 126].
TEST(OpsQuant, DequantizeLinearPerTensorAndPerAxis) {
  const Tensor y = run1("", "DequantizeLinear", 10, {U8({3}, {0, 3, 255}), Fs(0.5f), U8({}, {3})});
  EXPECT_EQ(y.dtype(), DType::kF32);
  EXPECT_EQ(values<float>(y), (std::vector<float>{-1.5f, 0, 126}));
  // Per axis 0 of [2, 2] i8: row scales [1, 0.25], zero points [0, -4]:
  // [[-3, 5], [4 - -4 = 8 * 0.25 = 2, -4 -> 0]].
  const Tensor p = run1("", "DequantizeLinear", 13, {I8({2, 2}, {-3, 5, 4, -4}), F({2}, {1, 0.25f}), I8({2}, {0, -4})},
                        {{"axis", ai(0)}});
  EXPECT_EQ(values<float>(p), (std::vector<float>{-3, 5, 2, 0}));
  // A zero scale is well defined for dequantization: y = 0.
  const Tensor z = run1("", "DequantizeLinear", 13, {U8({2}, {7, 9}), Fs(0)});
  EXPECT_EQ(values<float>(z), (std::vector<float>{0, 0}));
}

// ONNX DequantizeLinear 21, blocked on axis 0 of a 1-D x: [5] with B = 2 ->
// 3 scales [1, 10, 100] and zero points [0, 1, 2]: [1, 2 | 3-1, 4-1 | 5-2]
// * [1 | 10 | 100] = [1, 2, 20, 30, 300].
TEST(OpsQuant, DequantizeLinearBlocked) {
  const Tensor y = run1("", "DequantizeLinear", 21,
                        {U8({5}, {1, 2, 3, 4, 5}), F({3}, {1, 10, 100}), U8({3}, {0, 1, 2})},
                        {{"axis", ai(0)}, {"block_size", ai(2)}});
  EXPECT_EQ(values<float>(y), (std::vector<float>{1, 2, 20, 30, 300}));
}

// ONNX DequantizeLinear 21 accepts int4: byte 0x8F holds codes 0xF = -1 (low
// nibble, first) and 0x8 = -8; scale 2 -> [-2, -16]. uint16 codes: 65535 * 0.5.
TEST(OpsQuant, DequantizeLinearInt4AndUint16) {
  const Tensor y = run1("", "DequantizeLinear", 21, {packed(DType::kI4, {2}, {0x8F}), Fs(2)});
  EXPECT_EQ(values<float>(y), (std::vector<float>{-2, -16}));
  const Tensor u = run1("", "DequantizeLinear", 21, {T1<uint16_t>({1}, {65535}), Fs(0.5f)});
  EXPECT_EQ(values<float>(u), (std::vector<float>{32767.5f}));
  // Before opset 21 these types are refused.
  expect_node_error(error_of([&] { run1("", "DequantizeLinear", 19, {T1<uint16_t>({1}, {1}), Fs(1)}); }),
                    Errc::kTypeMismatch);
}

// ONNX DequantizeLinear 19: x_scale's type is y's. u8 10 * f16(0.1) =
// 10 * 0.0999755859375 = 0.999755859375 = 1 - 2^-12, halfway between the f16
// neighbours 1 - 2^-11 (0x3BFF) and 1.0 (0x3C00): ties to even -> 0x3C00.
TEST(OpsQuant, DequantizeLinearFloat16Scale) {
  const Tensor y = run1("", "DequantizeLinear", 19, {U8({1}, {10}), half(DType::kF16, {}, {0.1f})});
  EXPECT_EQ(y.dtype(), DType::kF16);
  EXPECT_EQ(static_cast<const uint16_t*>(y.raw())[0], 0x3C00);
  const Tensor b = run1("", "DequantizeLinear", 19, {I8({1}, {-2}), half(DType::kBF16, {}, {0.5f})});
  EXPECT_EQ(b.dtype(), DType::kBF16);
  EXPECT_EQ(bf16_to_f32(static_cast<const uint16_t*>(b.raw())[0]), -1.0f);
}

// ONNX DequantizeLinear: "x_zero_point and x must have same type"; "In the
// case of dequantizing int32, there's no zero point (zero point is supposed
// to be 0)"; per-axis scales need x[axis] values.
TEST(OpsQuant, DequantizeLinearRefusesBadInput) {
  expect_node_error(error_of([&] { run1("", "DequantizeLinear", 13, {U8({2}, {1, 2}), Fs(1), I8({}, {0})}); }),
                    Errc::kTypeMismatch);
  const Tensor ok = run1("", "DequantizeLinear", 13, {I32({2}, {-5, 7}), Fs(2), I32({}, {0})});
  EXPECT_EQ(values<float>(ok), (std::vector<float>{-10, 14}));
  expect_node_error(error_of([&] { run1("", "DequantizeLinear", 13, {I32({2}, {1, 2}), Fs(1), I32({}, {3})}); }),
                    Errc::kInvalidArgument);
  expect_node_error(error_of([&] {
                      run1("", "DequantizeLinear", 13, {U8({2, 3}, {1, 2, 3, 4, 5, 6}), F({2}, {1, 1})});
                    }),
                    Errc::kShapeMismatch);
  expect_node_error(error_of([&] { run1("", "DequantizeLinear", 13, {F({2}, {1, 2}), Fs(1)}); }),
                    Errc::kTypeMismatch);
  // per-axis on a scalar x.
  expect_node_error(error_of([&] { run1("", "DequantizeLinear", 13, {U8({}, {1}), F({2}, {1, 1})}); }),
                    Errc::kShapeMismatch);
}

// ONNX DequantizeLinear's inference: float32 before 19, x_scale's type from 19.
TEST(OpsQuant, DequantizeLinearInfersSymbolically) {
  const ir::SymShape s{ir::Dim::sym("n"), ir::Dim(), 4};
  auto o = infer("", "DequantizeLinear", 13, {vi(DType::kU8, s), vi(DType::kF32, ir::SymShape{})});
  EXPECT_EQ(o[0].dtype, DType::kF32);
  EXPECT_EQ(*o[0].shape, s);
  o = infer("", "DequantizeLinear", 19, {vi(DType::kI8, s), vi(DType::kF16, ir::SymShape{})});
  EXPECT_EQ(o[0].dtype, DType::kF16);
  // Before 19 y is float32 even when the scale's type is not known.
  o = infer("", "DequantizeLinear", 10, {vi(DType::kI32, std::nullopt), vi(std::nullopt, std::nullopt)});
  EXPECT_EQ(o[0].dtype, DType::kF32);
  EXPECT_FALSE(o[0].shape);
}

// ====================================================================== DynamicQuantizeLinear

// ONNX DynamicQuantizeLinear: x = [-1, 0, 3]: scale = (3 - -1) / 255,
// zero point = round(0 - -1 / scale) = round(63.75) = 64,
// y = [-63.75 -> -64 + 64 = 0, 64, 191.25 -> 191 + 64 = 255].
// Positive-only x = [127.5, 255]: range widened to [0, 255], scale 1, zero point 0,
// 127.5 -> 128 (half to even).
TEST(OpsQuant, DynamicQuantizeLinear) {
  auto out = run("", "DynamicQuantizeLinear", 11, {F({3}, {-1, 0, 3})}, {}, 3);
  EXPECT_EQ(values<uint8_t>(out[0]), (std::vector<uint8_t>{0, 64, 255}));
  EXPECT_EQ(out[1].shape(), Shape{});
  EXPECT_EQ(values<float>(out[1])[0], 4.0f / 255.0f);
  EXPECT_EQ(values<uint8_t>(out[2])[0], 64);
  out = run("", "DynamicQuantizeLinear", 11, {F({2}, {127.5f, 255})}, {}, 3);
  EXPECT_EQ(values<uint8_t>(out[0]), (std::vector<uint8_t>{128, 255}));
  EXPECT_EQ(values<float>(out[1])[0], 1.0f);
  EXPECT_EQ(values<uint8_t>(out[2])[0], 0);
  // All zeros: ONNX's body divides 0 by 0; qforge keeps scale = float32
  // epsilon (its library's documented floor) and zero point 0.
  out = run("", "DynamicQuantizeLinear", 11, {F({2}, {0, 0})}, {}, 3);
  EXPECT_EQ(values<uint8_t>(out[0]), (std::vector<uint8_t>{0, 0}));
  EXPECT_GT(values<float>(out[1])[0], 0.0f);
}

// The op finds the range and writes the codes in parts on the pool (at
// least 32 Ki values each): the same bytes as the library's
// dynamic_quantize_linear (src/quant/params.cpp, which the ONNX backend
// data check) on one thread and on three, and a NaN in the last part still
// refused.
TEST(OpsQuant, DynamicQuantizeLinearInPartsIsTheLibrarys) {
  std::mt19937 g(5);
  std::uniform_real_distribution<float> d(-3.0f, 5.0f);
  std::vector<float> v(200001);
  for (float& x : v) x = d(g);
  v[150000] = -7.5f;  // the minimum and the maximum in the later parts
  v[200000] = 9.25f;
  const Tensor x = F({static_cast<int64_t>(v.size())}, v);
  const DynamicQuantized want = dynamic_quantize_linear(x);
  ThreadPool pool(3);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    const auto out = run("", "DynamicQuantizeLinear", 11, {x}, {}, 3, p);
    EXPECT_EQ(values<uint8_t>(out[0]), values<uint8_t>(want.y)) << (p ? "3 threads" : "1 thread");
    EXPECT_EQ(values<float>(out[1])[0], want.params.scale[0]);
    EXPECT_EQ(values<uint8_t>(out[2])[0], want.params.zero_point[0]);
  }
  v[199999] = NAN;
  const Tensor bad = F({static_cast<int64_t>(v.size())}, v);
  expect_node_error(
      error_of([&] { run("", "DynamicQuantizeLinear", 11, {bad}, {}, 3, &pool); }),
      Errc::kInvalidArgument);
}

TEST(OpsQuant, DynamicQuantizeLinearRefusesNaNAndInfers) {
  expect_node_error(error_of([&] { run("", "DynamicQuantizeLinear", 11, {F({2}, {1, NAN})}, {}, 3); }),
                    Errc::kInvalidArgument);
  expect_node_error(error_of([&] { run("", "DynamicQuantizeLinear", 11, {U8({1}, {1})}, {}, 3); }),
                    Errc::kTypeMismatch);
  // ONNX inference: y u8 like x, y_scale f32 scalar, y_zero_point u8 scalar.
  const auto o = infer("", "DynamicQuantizeLinear", 11, {vi(DType::kF32, ir::SymShape{ir::Dim::sym("b"), 8})}, {}, 3);
  EXPECT_EQ(o[0].dtype, DType::kU8);
  EXPECT_EQ(*o[0].shape, (ir::SymShape{ir::Dim::sym("b"), 8}));
  EXPECT_EQ(o[1].dtype, DType::kF32);
  EXPECT_EQ(*o[1].shape, ir::SymShape{});
  EXPECT_EQ(o[2].dtype, DType::kU8);
}

// ====================================================================== MatMulInteger

// ONNX MatMulInteger: zero points per tensor, per row of A (M values), per
// column of B (N values). A [[2,2],[3,5]] - [1,3] per row = [[1,1],[0,2]];
// B [[5,6],[9,8]] - [5,6] per column = [[0,0],[4,2]]; product [[4,2],[8,4]].
TEST(OpsQuant, MatMulIntegerPerRowAndPerColumnZeroPoints) {
  const Tensor y = run1("", "MatMulInteger", 10,
                        {U8({2, 2}, {2, 2, 3, 5}), U8({2, 2}, {5, 6, 9, 8}), U8({2}, {1, 3}), U8({2}, {5, 6})});
  EXPECT_EQ(y.dtype(), DType::kI32);
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(values<int32_t>(y), (std::vector<int32_t>{4, 2, 8, 4}));
  // The N-D forms [M, 1] and [1, N] mean the same.
  const Tensor z = run1("", "MatMulInteger", 10,
                        {U8({2, 2}, {2, 2, 3, 5}), U8({2, 2}, {5, 6, 9, 8}), U8({2, 1}, {1, 3}), U8({1, 2}, {5, 6})});
  EXPECT_EQ(values<int32_t>(z), (std::vector<int32_t>{4, 2, 8, 4}));
}

// numpy matmul: batch dimensions broadcast, 1-D operands gain then lose a
// dimension. A [2,1,2] (i8) x B [2,1] (u8, mixed types allowed):
// [[1,2]]·[[3],[4]] = 11, [[-1,0]]·... = -3 -> [2,1,1].
TEST(OpsQuant, MatMulIntegerBatchingAndVectors) {
  const Tensor y = run1("", "MatMulInteger", 10, {I8({2, 1, 2}, {1, 2, -1, 0}), U8({2, 1}, {3, 4})});
  EXPECT_EQ(y.shape(), (Shape{2, 1, 1}));
  EXPECT_EQ(values<int32_t>(y), (std::vector<int32_t>{11, -3}));
  // [3] x [3] -> scalar 1*4 + 2*5 + 3*6 = 32.
  const Tensor v = run1("", "MatMulInteger", 10, {U8({3}, {1, 2, 3}), U8({3}, {4, 5, 6})});
  EXPECT_EQ(v.shape(), Shape{});
  EXPECT_EQ(values<int32_t>(v), (std::vector<int32_t>{32}));
  // [3] x [2, 3, 1]: B's batch of 2 -> [2, 1].
  const Tensor w = run1("", "MatMulInteger", 10, {U8({3}, {1, 2, 3}), U8({2, 3, 1}, {1, 1, 1, 0, 0, 2})});
  EXPECT_EQ(w.shape(), (Shape{2, 1}));
  EXPECT_EQ(values<int32_t>(w), (std::vector<int32_t>{6, 6}));
  // K = 0: zeros.
  const Tensor e = run1("", "MatMulInteger", 10, {U8({2, 0}, {}), U8({0, 3}, {})});
  EXPECT_EQ(values<int32_t>(e), (std::vector<int32_t>(6, 0)));
}

// ONNX MatMulInteger: "accumulation may overflow if and only if in 32 bits".
// 40000 products of (-128 - 127) * 255 = -65025 sum to -2601000000, which
// wraps to -2601000000 + 2^32 = 1693967296 in int32.
TEST(OpsQuant, MatMulIntegerWrapsLikeInt32Accumulation) {
  const int64_t K = 40000;
  const Tensor y = run1("", "MatMulInteger", 10,
                        {I8({1, K}, std::vector<int8_t>(K, -128)), U8({K, 1}, std::vector<uint8_t>(K, 255)),
                         I8({}, {127})});
  EXPECT_EQ(values<int32_t>(y)[0], 1693967296);
}

TEST(OpsQuant, MatMulIntegerRefusesBadInput) {
  const Tensor a = U8({2, 3}, {1, 2, 3, 4, 5, 6});
  expect_node_error(error_of([&] { run1("", "MatMulInteger", 10, {a, U8({2, 2}, {1, 2, 3, 4})}); }),
                    Errc::kShapeMismatch);  // K 3 vs 2
  expect_node_error(error_of([&] { run1("", "MatMulInteger", 10, {U8({}, {1}), a}); }), Errc::kShapeMismatch);
  expect_node_error(error_of([&] { run1("", "MatMulInteger", 10, {a, U8({3, 1}, {1, 2, 3}), I8({}, {0})}); }),
                    Errc::kTypeMismatch);  // zero point type
  expect_node_error(error_of([&] { run1("", "MatMulInteger", 10, {a, U8({3, 1}, {1, 2, 3}), U8({3}, {0, 0, 0})}); }),
                    Errc::kShapeMismatch);  // 3 row zero points for M = 2
  expect_node_error(error_of([&] { run1("", "MatMulInteger", 10, {F({2, 3}, {1, 2, 3, 4, 5, 6}), U8({3, 1}, {1, 2, 3})}); }),
                    Errc::kTypeMismatch);
  // Batch dimensions that don't broadcast: [2, 2, 3] x [3, 3, 1].
  expect_node_error(error_of([&] {
                      run1("", "MatMulInteger", 10,
                           {U8({2, 2, 3}, std::vector<uint8_t>(12, 1)), U8({3, 3, 1}, std::vector<uint8_t>(9, 1))});
                    }),
                    Errc::kShapeMismatch);
}

// numpy matmul shapes with symbols: [batch, ?, 3] x [3, 4] -> [batch, ?, 4];
// [3] x [2, 3, 4] -> [2, 4]; unknown rank -> unknown; K mismatch -> Error.
TEST(OpsQuant, MatMulIntegerInfersSymbolically) {
  auto o = infer("", "MatMulInteger", 10,
                 {vi(DType::kU8, ir::SymShape{ir::Dim::sym("batch"), ir::Dim(), 3}), vi(DType::kU8, ir::SymShape{3, 4})});
  EXPECT_EQ(o[0].dtype, DType::kI32);
  EXPECT_EQ(*o[0].shape, (ir::SymShape{ir::Dim::sym("batch"), ir::Dim(), 4}));
  o = infer("", "MatMulInteger", 10, {vi(DType::kU8, ir::SymShape{3}), vi(DType::kU8, ir::SymShape{2, 3, 4})});
  EXPECT_EQ(*o[0].shape, (ir::SymShape{2, 4}));
  o = infer("", "MatMulInteger", 10, {vi(DType::kU8, std::nullopt), vi(DType::kU8, ir::SymShape{3, 4})});
  EXPECT_FALSE(o[0].shape);
  expect_node_error(error_of([&] {
                      infer("", "MatMulInteger", 10, {vi(DType::kU8, ir::SymShape{2, 5}), vi(DType::kU8, ir::SymShape{3, 4})});
                    }),
                    Errc::kShapeMismatch);
}

// ====================================================================== QLinearMatMul

// ONNX QLinearMatMul: y = saturate(round((a - a_zp)(b - b_zp) * a_scale * b_scale / y_scale) + y_zp).
// a [[2,4]] (scale 0.5), b [[1],[3]] - 1 = [[0],[2]] (scale 0.25): sum 8;
// multiplier 0.5 * 0.25 / 0.4 = 0.3125 (exact in float32), 8 * 0.3125 = 2.5 -> 2 (even) + 10 = 12.
TEST(OpsQuant, QLinearMatMulPerTensorRoundsHalfToEven) {
  const Tensor y = run1("", "QLinearMatMul", 10,
                        {U8({1, 2}, {2, 4}), Fs(0.5f), U8({}, {0}), U8({2, 1}, {1, 3}), Fs(0.25f), U8({}, {1}),
                         Fs(0.4f), I8({}, {10})});
  EXPECT_EQ(y.dtype(), DType::kI8);
  EXPECT_EQ(values<int8_t>(y), (std::vector<int8_t>{12}));
  // Saturation: 100 * 3 * 1 * 1 / 1 = 300 -> 255 for u8; negative -> 0.
  const Tensor s = run1("", "QLinearMatMul", 10,
                        {U8({1, 1}, {100}), Fs(1), U8({}, {0}), I8({1, 2}, {3, -3}), Fs(1), I8({}, {0}), Fs(1),
                         U8({}, {0})});
  EXPECT_EQ(values<uint8_t>(s), (std::vector<uint8_t>{255, 0}));
}

// Per-row a and per-column b scales (the ONNX spec's N-D parameters, and ONNX
// Runtime's per-column B): a [[1],[2]] rows scaled [1, 2], b [[3, 4]] columns
// scaled [0.5, 0.25], y_scale 1: [[1*3*0.5, 1*4*0.25], [2*3*1, 2*4*0.5]] = [[1.5 -> 2, 1], [6, 4]].
TEST(OpsQuant, QLinearMatMulPerRowAndPerColumnScales) {
  const Tensor y = run1("", "QLinearMatMul", 10,
                        {U8({2, 1}, {1, 2}), F({2}, {1, 2}), U8({2}, {0, 0}), U8({1, 2}, {3, 4}),
                         F({2}, {0.5f, 0.25f}), U8({2}, {0, 0}), Fs(1), U8({}, {0})});
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{2, 1, 6, 4}));
  // A scale may not vary along K (it can't be factored out of the sum).
  expect_node_error(error_of([&] {
                      run1("", "QLinearMatMul", 10,
                           {U8({2, 2}, {1, 2, 3, 4}), F({1, 2}, {1, 2}), U8({}, {0}), U8({2, 1}, {3, 4}), Fs(1),
                            U8({}, {0}), Fs(1), U8({}, {0})});
                    }),
                    Errc::kShapeMismatch);
}

// ONNX QLinearMatMul 21 allows float16 scales; a_scale * b_scale / y_scale is
// then float16 arithmetic (as ONNX's numpy reference): 1 / f16(0.0155029296875)
// = 64.5039... -> f16 64.5, times the sum 1 = 64.5 -> 64 (even). In float32 the
// multiplier 64.50394 would give 65. Opset 10 refuses float16 scales.
TEST(OpsQuant, QLinearMatMulFloat16ScalesAtOpset21) {
  const Tensor h1 = half(DType::kF16, {}, {1});
  const Inputs in{U8({1, 1}, {1}), h1, U8({}, {0}), U8({1, 1}, {1}), h1, U8({}, {0}),
                  half(DType::kF16, {}, {0.0155029296875f}), U8({}, {0})};
  EXPECT_EQ(values<uint8_t>(run1("", "QLinearMatMul", 21, in)), (std::vector<uint8_t>{64}));
  expect_node_error(error_of([&] { run1("", "QLinearMatMul", 10, in); }), Errc::kTypeMismatch);
  // All three scales must have one type.
  Inputs mixed = in;
  mixed[6] = Fs(0.0155029296875f);
  expect_node_error(error_of([&] { run1("", "QLinearMatMul", 21, mixed); }), Errc::kTypeMismatch);
}

TEST(OpsQuant, QLinearMatMulRefusesBadInput) {
  const Inputs ok{U8({1, 1}, {1}), Fs(1), U8({}, {0}), U8({1, 1}, {1}), Fs(1), U8({}, {0}), Fs(1), U8({}, {0})};
  Inputs zero = ok;
  zero[6] = Fs(0);
  expect_node_error(error_of([&] { run1("", "QLinearMatMul", 10, zero); }), Errc::kInvalidArgument);
  Inputs missing = ok;
  missing[7] = std::nullopt;  // y_zero_point is required
  expect_node_error(error_of([&] { run1("", "QLinearMatMul", 10, missing); }), Errc::kNotFound);
  Inputs zp = ok;
  zp[2] = I8({}, {0});
  expect_node_error(error_of([&] { run1("", "QLinearMatMul", 10, zp); }), Errc::kTypeMismatch);
  Inputs ys = ok;
  ys[6] = F({2}, {1, 1});
  expect_node_error(error_of([&] { run1("", "QLinearMatMul", 10, ys); }), Errc::kShapeMismatch);
  // The output takes y_zero_point's type; shapes as numpy matmul.
  const auto o = infer("", "QLinearMatMul", 10,
                       {vi(DType::kU8, ir::SymShape{ir::Dim::sym("b"), 2, 3}), vi(DType::kF32, ir::SymShape{}),
                        vi(DType::kU8, ir::SymShape{}), vi(DType::kI8, ir::SymShape{3, 5}), vi(DType::kF32, ir::SymShape{}),
                        vi(DType::kI8, ir::SymShape{}), vi(DType::kF32, ir::SymShape{}), vi(DType::kI8, ir::SymShape{})});
  EXPECT_EQ(o[0].dtype, DType::kI8);
  EXPECT_EQ(*o[0].shape, (ir::SymShape{ir::Dim::sym("b"), 2, 5}));
}

// ====================================================================== ConvInteger

// ONNX ConvInteger (Conv semantics on x - x_zero_point, w - w_zero_point, i32).
// 1-D: x [1,1,4] = [1,2,3,4] - 1 = [0,1,2,3], w [1,1,2] = [1,2]:
// no pad: [0+2, 1+4, 2+6] = [2,5,8]; pads [1,1]: [0*1+0*2=0 ... ] = [0, 2, 5, 8, 3];
// stride 2: [2, 8]; dilation 2: [0+4, 1+6] = [4, 7].
TEST(OpsQuant, ConvIntegerAttributes) {
  const Tensor x = U8({1, 1, 4}, {1, 2, 3, 4}), w = U8({1, 1, 2}, {1, 2}), xz = U8({}, {1});
  EXPECT_EQ(values<int32_t>(run1("", "ConvInteger", 10, {x, w, xz})), (std::vector<int32_t>{2, 5, 8}));
  EXPECT_EQ(values<int32_t>(run1("", "ConvInteger", 10, {x, w, xz}, {{"pads", ais({1, 1})}})),
            (std::vector<int32_t>{0, 2, 5, 8, 3}));
  EXPECT_EQ(values<int32_t>(run1("", "ConvInteger", 10, {x, w, xz}, {{"strides", ais({2})}})),
            (std::vector<int32_t>{2, 8}));
  EXPECT_EQ(values<int32_t>(run1("", "ConvInteger", 10, {x, w, xz}, {{"dilations", ais({2})}})),
            (std::vector<int32_t>{4, 7}));
  // auto_pad SAME_UPPER: output ceil(4/1) = 4, total pad 1 at the end -> [2,5,8, 3*1 + 0] = [2,5,8,3];
  // SAME_LOWER puts it at the beginning -> [0*2, 2, 5, 8] = [0,2,5,8]; VALID = no pads.
  EXPECT_EQ(values<int32_t>(run1("", "ConvInteger", 10, {x, w, xz}, {{"auto_pad", as("SAME_UPPER")}})),
            (std::vector<int32_t>{2, 5, 8, 3}));
  EXPECT_EQ(values<int32_t>(run1("", "ConvInteger", 10, {x, w, xz}, {{"auto_pad", as("SAME_LOWER")}})),
            (std::vector<int32_t>{0, 2, 5, 8}));
  EXPECT_EQ(values<int32_t>(run1("", "ConvInteger", 10, {x, w, xz}, {{"auto_pad", as("VALID")}, {"pads", ais({1, 1})}})),
            (std::vector<int32_t>{2, 5, 8}));
}

// ONNX ConvInteger: group and a per-output-channel w_zero_point ("a 1-D
// tensor ... equal to the number of output channels (M)"). x [1,2,1,1] =
// [5, 7] (i8, no zero point), w [2,1,1,1] = [3, 3] - zero points [1, 4] =
// [2, -1], group 2: [5*2, 7*-1] = [10, -7].
TEST(OpsQuant, ConvIntegerGroupsAndPerChannelZeroPoint) {
  const Tensor y = run1("", "ConvInteger", 10,
                        {I8({1, 2, 1, 1}, {5, 7}), I8({2, 1, 1, 1}, {3, 3}), std::nullopt, I8({2}, {1, 4})},
                        {{"group", ai(2)}});
  EXPECT_EQ(y.shape(), (Shape{1, 2, 1, 1}));
  EXPECT_EQ(values<int32_t>(y), (std::vector<int32_t>{10, -7}));
  // 2-D, 2 input channels summed: x [1,2,2,2], w [1,2,2,2] all ones -> sum of x = 36.
  const Tensor s = run1("", "ConvInteger", 10,
                        {U8({1, 2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8}), U8({1, 2, 2, 2}, std::vector<uint8_t>(8, 1))});
  EXPECT_EQ(values<int32_t>(s), (std::vector<int32_t>{36}));
}

TEST(OpsQuant, ConvIntegerRefusesBadInput) {
  const Tensor x = U8({1, 2, 3, 3}, std::vector<uint8_t>(18, 1));
  auto conv = [&](const Tensor& w, Attrs a, std::optional<Tensor> xz = std::nullopt) {
    run1("", "ConvInteger", 10, {x, w, xz}, std::move(a));
  };
  const Tensor w = U8({4, 2, 2, 2}, std::vector<uint8_t>(32, 1));
  expect_node_error(error_of([&] { conv(w, {{"group", ai(2)}}); }), Errc::kShapeMismatch);  // w[1] = 2 != 2/2
  expect_node_error(error_of([&] { conv(U8({4, 2, 2}, std::vector<uint8_t>(16, 1)), {}); }), Errc::kShapeMismatch);
  expect_node_error(error_of([&] { conv(w, {{"kernel_shape", ais({3, 3})}}); }), Errc::kShapeMismatch);
  expect_node_error(error_of([&] { conv(w, {{"strides", ais({0, 1})}}); }), Errc::kInvalidArgument);
  expect_node_error(error_of([&] { conv(w, {{"pads", ais({1, 1})}}); }), Errc::kInvalidArgument);
  expect_node_error(error_of([&] { conv(w, {{"auto_pad", as("SAME")}}); }), Errc::kInvalidArgument);
  expect_node_error(error_of([&] { conv(U8({1, 2, 4, 4}, std::vector<uint8_t>(32, 1)), {}); }),
                    Errc::kShapeMismatch);  // 4x4 kernel on a 3x3 input
  expect_node_error(error_of([&] { conv(w, {}, U8({2}, {0, 0})); }), Errc::kShapeMismatch);  // x zero point is per tensor
  expect_node_error(error_of([&] { run1("", "ConvInteger", 10, {U8({2, 3}, {1, 2, 3, 4, 5, 6}), w}); }),
                    Errc::kShapeMismatch);
}

// Conv output shapes with symbols: [N, 1, 5, 5] * [8, 1, 3, 3], pads 1 -> [N, 8, 5, 5];
// SAME_UPPER with stride 2 -> ceil(5 / 2) = 3 whatever the kernel; unknown spatial stays unknown.
TEST(OpsQuant, ConvIntegerInfersSymbolically) {
  const ir::Dim N = ir::Dim::sym("N");
  auto o = infer("", "ConvInteger", 10, {vi(DType::kU8, ir::SymShape{N, 1, 5, 5}), vi(DType::kU8, ir::SymShape{8, 1, 3, 3})},
                 {{"pads", ais({1, 1, 1, 1})}});
  EXPECT_EQ(o[0].dtype, DType::kI32);
  EXPECT_EQ(*o[0].shape, (ir::SymShape{N, 8, 5, 5}));
  o = infer("", "ConvInteger", 10, {vi(DType::kU8, ir::SymShape{N, 1, 5, ir::Dim::sym("W")}), vi(DType::kU8, std::nullopt)},
            {{"auto_pad", as("SAME_UPPER")}, {"strides", ais({2, 2})}});
  EXPECT_EQ(*o[0].shape, (ir::SymShape{N, ir::Dim(), 3, ir::Dim()}));
  o = infer("", "ConvInteger", 10, {vi(DType::kU8, std::nullopt), vi(DType::kU8, ir::SymShape{8, 1, 3, 3})});
  EXPECT_FALSE(o[0].shape);
}

// ====================================================================== QLinearConv

// ONNX QLinearConv with per-output-channel w_scale and an int32 bias (scale
// x_scale * w_scale, zero point 0). x [[1,2],[3,4]] - 1 = [0,1,2,3] (scale 0.5);
// w [2, -1] 1x1, w_scale [0.5, 1]; B [1, -2]; y_scale 0.25, y_zp 10:
// channel 0: (2x + 1) * 0.5*0.5/0.25 = [1,3,5,7] + 10 = [11,13,15,17];
// channel 1: (-x - 2) * 0.5*1/0.25 = [-4,-6,-8,-10] + 10 = [6,4,2,0].
TEST(OpsQuant, QLinearConvPerChannelWithBias) {
  const Tensor y = run1("", "QLinearConv", 10,
                        {U8({1, 1, 2, 2}, {1, 2, 3, 4}), Fs(0.5f), U8({}, {1}), I8({2, 1, 1, 1}, {2, -1}),
                         F({2}, {0.5f, 1}), I8({}, {0}), Fs(0.25f), U8({}, {10}), I32({2}, {1, -2})});
  EXPECT_EQ(y.dtype(), DType::kU8);
  EXPECT_EQ(y.shape(), (Shape{1, 2, 2, 2}));
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{11, 13, 15, 17, 6, 4, 2, 0}));
}

// ONNX QLinearConv requantization rounds half to even and saturates: x [1, 3,
// 5, 127] through a 1x1 weight of 1, multiplier 1 * 1 / 2 = 0.5: 0.5 -> 0,
// 1.5 -> 2, 2.5 -> 2, 63.5 -> 64; [100, -100] * 3 = [300, -300] -> i8 [127, -128].
TEST(OpsQuant, QLinearConvRoundsAndSaturates) {
  const Tensor y = run1("", "QLinearConv", 10,
                        {I8({1, 1, 1, 4}, {1, 3, 5, 127}), Fs(1), I8({}, {0}), I8({1, 1, 1, 1}, {1}), Fs(1),
                         I8({}, {0}), Fs(2), I8({}, {0})});
  EXPECT_EQ(values<int8_t>(y), (std::vector<int8_t>{0, 2, 2, 64}));
  const Tensor s = run1("", "QLinearConv", 10,
                        {I8({1, 1, 1, 2}, {100, -100}), Fs(1), I8({}, {0}), I8({1, 1, 1, 1}, {3}), Fs(1),
                         I8({}, {0}), Fs(1), I8({}, {0})});
  EXPECT_EQ(values<int8_t>(s), (std::vector<int8_t>{127, -128}));
  // Per-channel weight zero points: w [5, 5] - [4, 6] = [1, -1] on x = 7: [7, -7] + 0.
  const Tensor z = run1("", "QLinearConv", 10,
                        {U8({1, 1, 1, 1}, {7}), Fs(1), U8({}, {0}), U8({2, 1, 1, 1}, {5, 5}), Fs(1), U8({2}, {4, 6}),
                         Fs(1), I8({}, {0})});
  EXPECT_EQ(values<int8_t>(z), (std::vector<int8_t>{7, -7}));
}

TEST(OpsQuant, QLinearConvRefusesBadInput) {
  const Inputs ok{U8({1, 1, 2, 2}, {1, 2, 3, 4}), Fs(0.5f), U8({}, {1}), I8({2, 1, 1, 1}, {2, -1}),
                  F({2}, {0.5f, 1}), I8({}, {0}), Fs(0.25f), U8({}, {10})};
  auto with = [&](size_t i, std::optional<Tensor> t) {
    Inputs in = ok;
    if (i >= in.size()) in.resize(i + 1);
    in[i] = std::move(t);
    return in;
  };
  expect_node_error(error_of([&] { run1("", "QLinearConv", 10, with(4, F({3}, {1, 1, 1}))); }), Errc::kShapeMismatch);
  expect_node_error(error_of([&] { run1("", "QLinearConv", 10, with(8, F({2}, {1, 1}))); }), Errc::kTypeMismatch);
  expect_node_error(error_of([&] { run1("", "QLinearConv", 10, with(8, I32({3}, {1, 1, 1}))); }), Errc::kShapeMismatch);
  expect_node_error(error_of([&] { run1("", "QLinearConv", 10, with(2, I8({}, {1}))); }), Errc::kTypeMismatch);
  expect_node_error(error_of([&] { run1("", "QLinearConv", 10, with(6, Fs(0))); }), Errc::kInvalidArgument);
  expect_node_error(error_of([&] { run1("", "QLinearConv", 10, with(2, std::nullopt)); }), Errc::kNotFound);
  expect_node_error(error_of([&] { run1("", "QLinearConv", 10, with(5, I8({3}, {0, 0, 0}))); }), Errc::kShapeMismatch);
  // Inference: y_zero_point's type, Conv's shape.
  const auto o = infer("", "QLinearConv", 10,
                       {vi(DType::kU8, ir::SymShape{ir::Dim::sym("N"), 3, 7, 7}), vi(DType::kF32, ir::SymShape{}),
                        vi(DType::kU8, ir::SymShape{}), vi(DType::kI8, ir::SymShape{16, 3, 3, 3}),
                        vi(DType::kF32, ir::SymShape{16}), vi(DType::kI8, ir::SymShape{16}), vi(DType::kF32, ir::SymShape{}),
                        vi(DType::kI8, ir::SymShape{})},
                       {{"strides", ais({2, 2})}});
  EXPECT_EQ(o[0].dtype, DType::kI8);
  EXPECT_EQ(*o[0].shape, (ir::SymShape{ir::Dim::sym("N"), 16, 3, 3}));
}

// ====================================================================== com.microsoft

// ContribOperators.md, QLinearAdd: C = (A_scale * (A - A_zp) + B_scale * (B - B_zp)) / C_scale + C_zp,
// numpy broadcasting. A [3, 5] (0.5, zp 1) = [1, 2]; B [[11], [20]] (0.25, zp 2) = [[2.25], [4.5]];
// C_scale 0.5, zp 3: [[3.25, 4.25] / 0.5 = [6.5 -> 6, 8.5 -> 8] + 3, [5.5, 6.5] / 0.5 = [11, 13] + 3].
TEST(OpsQuant, MicrosoftQLinearAdd) {
  const Tensor c = run1(kMs, "QLinearAdd", 1,
                        {U8({2}, {3, 5}), Fs(0.5f), U8({}, {1}), U8({2, 1}, {11, 20}), Fs(0.25f), U8({}, {2}), Fs(0.5f),
                         U8({}, {3})});
  EXPECT_EQ(c.shape(), (Shape{2, 2}));
  EXPECT_EQ(values<uint8_t>(c), (std::vector<uint8_t>{9, 11, 14, 16}));
  // Zero points are optional (0), and the output saturates.
  const Tensor s = run1(kMs, "QLinearAdd", 1,
                        {I8({2}, {100, -100}), Fs(1), std::nullopt, I8({1}, {100}), Fs(1), std::nullopt, Fs(1), std::nullopt});
  EXPECT_EQ(values<int8_t>(s), (std::vector<int8_t>{127, 0}));
}

// ContribOperators.md, QLinearMul: C = ((A - A_zp) * (B - B_zp)) * (A_scale * B_scale) / C_scale + C_zp.
// A i8 [-3, 4] - -1 = [-2, 5]; B [6] (scale 0.25): products [-12, 30] * 0.125 = [-1.5, 3.75];
// / 0.5 = [-3, 7.5 -> 8].
TEST(OpsQuant, MicrosoftQLinearMul) {
  const Tensor c = run1(kMs, "QLinearMul", 1,
                        {I8({2}, {-3, 4}), Fs(0.5f), I8({}, {-1}), I8({1}, {6}), Fs(0.25f), I8({}, {0}), Fs(0.5f),
                         I8({}, {0})});
  EXPECT_EQ(values<int8_t>(c), (std::vector<int8_t>{-3, 8}));
  expect_node_error(error_of([&] {
                      run1(kMs, "QLinearMul", 1,
                           {I8({2}, {1, 2}), Fs(1), std::nullopt, U8({1}, {1}), Fs(1), std::nullopt, Fs(1), std::nullopt});
                    }),
                    Errc::kTypeMismatch);  // A and B types differ
  expect_node_error(error_of([&] {
                      run1(kMs, "QLinearMul", 1,
                           {I8({2}, {1, 2}), Fs(1), std::nullopt, I8({3}, {1, 2, 3}), Fs(1), std::nullopt, Fs(1), std::nullopt});
                    }),
                    Errc::kShapeMismatch);  // [2] vs [3] don't broadcast
  const auto o = infer(kMs, "QLinearMul", 1,
                       {vi(DType::kI8, ir::SymShape{ir::Dim::sym("b"), 1}), std::nullopt, std::nullopt,
                        vi(DType::kI8, ir::SymShape{4}), std::nullopt, std::nullopt, std::nullopt, std::nullopt});
  EXPECT_EQ(*o[0].shape, (ir::SymShape{ir::Dim::sym("b"), 4}));
}

// QLinearAdd / QLinearMul on whole tensors (a residual connection: same
// shapes; a bias: [N] against [B, T, N]; a scalar) take a byte-wise path;
// each element must be the ContribOperators.md formula, evaluated here one
// element at a time with quantize_value (round half to even, saturate).
TEST(OpsQuant, MicrosoftQLinearAddMulWholeTensorsFollowTheFormula) {
  std::mt19937 rng(7);
  for (bool mul : {false, true})
    for (bool is_signed : {false, true})
      for (const Shape& bshape : {Shape{3, 5, 40}, Shape{40}, Shape{1, 1, 40}, Shape{}}) {
        const Shape ashape{3, 5, 40};
        auto codes = [&](const Shape& sh) {
          Tensor t(is_signed ? DType::kI8 : DType::kU8, sh);
          for (int64_t i = 0; i < t.numel(); ++i) static_cast<uint8_t*>(t.raw())[i] = static_cast<uint8_t>(rng());
          return t;
        };
        const Tensor a = codes(ashape), b = codes(bshape);
        const float as = 0.037f, bs = 0.021f, cs = mul ? 0.05f : 0.045f;
        const int32_t az = is_signed ? -3 : 120, bz = is_signed ? 5 : 131, cz = is_signed ? 2 : 125;
        auto zp = [&](int32_t z) {
          return is_signed ? I8({}, {static_cast<int8_t>(z)}) : U8({}, {static_cast<uint8_t>(z)});
        };
        const Tensor c = run1(kMs, mul ? "QLinearMul" : "QLinearAdd", 1,
                              {a, Fs(as), zp(az), b, Fs(bs), zp(bz), Fs(cs), zp(cz)});
        ASSERT_EQ(c.shape(), ashape);
        const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
        auto code = [&](const Tensor& t, int64_t i) {
          return is_signed ? static_cast<int32_t>(t.data<int8_t>()[i]) : static_cast<int32_t>(t.data<uint8_t>()[i]);
        };
        for (int64_t i = 0; i < c.numel(); ++i) {
          const int32_t qa = code(a, i), qb = code(b, i % std::max<int64_t>(1, b.numel()));
          const float v = mul ? static_cast<float>((qa - az) * (qb - bz)) * (as * bs)
                              : dequantize_value(qa, as, az) + dequantize_value(qb, bs, bz);
          ASSERT_EQ(code(c, i), quantize_value(v, cs, cz, qmin, qmax))
              << (mul ? "Mul" : "Add") << (is_signed ? " s8" : " u8") << " b " << shape_str(bshape) << " at " << i;
        }
      }
}

// ContribOperators.md: QLinearSigmoid f(x) = quantize(Sigmoid(dequantize(x))),
// QLinearLeakyRelu f(x) = quantize(alpha * dequantize(x)) for negatives.
// Sigmoid: x [128, 130, 0] (scale 0.5, zp 128) = [0, 1, -64]; sigmoid = [0.5,
// 0.731059, ~0]; / (1/256) = [128, 187.15 -> 187, 0].
// LeakyRelu alpha 0.25: x i8 [-10, -6, 10] (scale 1) -> [-2.5, -1.5, 10] / 0.5 = [-5, -3, 20].
TEST(OpsQuant, MicrosoftQLinearSigmoidAndLeakyRelu) {
  const Tensor s = run1(kMs, "QLinearSigmoid", 1,
                        {U8({3}, {128, 130, 0}), Fs(0.5f), U8({}, {128}), Fs(1.0f / 256), U8({}, {0})});
  EXPECT_EQ(values<uint8_t>(s), (std::vector<uint8_t>{128, 187, 0}));
  const Tensor l = run1(kMs, "QLinearLeakyRelu", 1, {I8({3}, {-10, -6, 10}), Fs(1), std::nullopt, Fs(0.5f), std::nullopt},
                        {{"alpha", af(0.25f)}});
  EXPECT_EQ(values<int8_t>(l), (std::vector<int8_t>{-5, -3, 20}));
  expect_node_error(error_of([&] {
                      run1(kMs, "QLinearSigmoid", 1, {U8({1}, {1}), Fs(1), I8({}, {0}), Fs(1), std::nullopt});
                    }),
                    Errc::kTypeMismatch);
  expect_node_error(error_of([&] {
                      run1(kMs, "QLinearSigmoid", 1, {U8({1}, {1}), F({2}, {1, 1}), std::nullopt, Fs(1), std::nullopt});
                    }),
                    Errc::kShapeMismatch);
}

// ContribOperators.md QLinearAveragePool: dequantize -> AveragePool -> quantize,
// count_include_pad default 0. x 3x3 = 0..8 (scale 1, zp 0):
// kernel 2, stride 1: [(0+1+3+4)/4, (1+2+4+5)/4, (3+4+6+7)/4, (4+5+7+8)/4] = [2, 3, 5, 6];
// kernel 2, stride 2, pads 1: windows {0}, {1,2}, {3,6}, {4,5,7,8}:
//   excluding pads: [0, 3/2 = 1.5 -> 2, 9/2 = 4.5 -> 4, 24/4 = 6];
//   including pads (divide by 4): [0, 0.75 -> 1, 2.25 -> 2, 6];
// ceil_mode, kernel 2, stride 2, no pads: out 2x2, windows {0,1,3,4}, {2,5}, {6,7}, {8}:
//   [2, 3.5 -> 4, 6.5 -> 6, 8].
TEST(OpsQuant, MicrosoftQLinearAveragePool) {
  const Tensor x = U8({1, 1, 3, 3}, {0, 1, 2, 3, 4, 5, 6, 7, 8});
  const Inputs in{x, Fs(1), std::nullopt, Fs(1), std::nullopt};
  Tensor y = run1(kMs, "QLinearAveragePool", 1, in, {{"kernel_shape", ais({2, 2})}});
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{2, 3, 5, 6}));
  const Attrs padded{{"kernel_shape", ais({2, 2})}, {"strides", ais({2, 2})}, {"pads", ais({1, 1, 1, 1})}};
  EXPECT_EQ(values<uint8_t>(run1(kMs, "QLinearAveragePool", 1, in, padded)), (std::vector<uint8_t>{0, 2, 4, 6}));
  Attrs incl = padded;
  incl["count_include_pad"] = ai(1);
  EXPECT_EQ(values<uint8_t>(run1(kMs, "QLinearAveragePool", 1, in, incl)), (std::vector<uint8_t>{0, 1, 2, 6}));
  const Attrs ceil{{"kernel_shape", ais({2, 2})}, {"strides", ais({2, 2})}, {"ceil_mode", ai(1)}};
  y = run1(kMs, "QLinearAveragePool", 1, in, ceil);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{2, 4, 6, 8}));
  // channels_last: the same data as [1, 3, 3, 1] gives the same values as [1, 2, 2, 1].
  Attrs last{{"kernel_shape", ais({2, 2})}, {"channels_last", ai(1)}};
  y = run1(kMs, "QLinearAveragePool", 1, {U8({1, 3, 3, 1}, {0, 1, 2, 3, 4, 5, 6, 7, 8}), Fs(1), std::nullopt, Fs(1), std::nullopt}, last);
  EXPECT_EQ(y.shape(), (Shape{1, 2, 2, 1}));
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{2, 3, 5, 6}));
  // Requantization: x scale 0.5 zp 4 -> values (x - 4) / 2; y scale 0.25, zp 100:
  // mean of {0,1,3,4} = 2 -> (2 - 4) * 0.5 = -1 -> -4 + 100 = 96.
  y = run1(kMs, "QLinearAveragePool", 1, {x, Fs(0.5f), U8({}, {4}), Fs(0.25f), U8({}, {100})}, {{"kernel_shape", ais({2, 2})}});
  EXPECT_EQ(values<uint8_t>(y)[0], 96);
  expect_node_error(error_of([&] { run1(kMs, "QLinearAveragePool", 1, in); }), Errc::kInvalidArgument);  // no kernel_shape
  expect_node_error(error_of([&] { run1(kMs, "QLinearAveragePool", 1, in, {{"kernel_shape", ais({4, 4})}}); }),
                    Errc::kShapeMismatch);
  const auto o = infer(kMs, "QLinearAveragePool", 1,
                       {vi(DType::kU8, ir::SymShape{ir::Dim::sym("N"), 3, 8, ir::Dim()}), std::nullopt, std::nullopt,
                        std::nullopt, std::nullopt},
                       {{"kernel_shape", ais({2, 2})}, {"strides", ais({2, 2})}});
  EXPECT_EQ(*o[0].shape, (ir::SymShape{ir::Dim::sym("N"), 3, 4, ir::Dim()}));
}

// ContribOperators.md QLinearGlobalAveragePool: AveragePool over the spatial
// dimensions -> [N, C, 1, 1]. Channels [0,1,2,3] and [4,5,6,8]: means 1.5 -> 2 and 5.75 -> 6.
TEST(OpsQuant, MicrosoftQLinearGlobalAveragePool) {
  const Tensor y = run1(kMs, "QLinearGlobalAveragePool", 1,
                        {U8({1, 2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 8}), Fs(1), U8({}, {0}), Fs(1), U8({}, {0})});
  EXPECT_EQ(y.shape(), (Shape{1, 2, 1, 1}));
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{2, 6}));
  // channels_last [1, 2, 2, 2] -> [1, 1, 1, 2]: channel 0 = {0,2,4,6} mean 3, channel 1 = {1,3,5,8} mean 4.25 -> 4.
  const Tensor l = run1(kMs, "QLinearGlobalAveragePool", 1,
                        {U8({1, 2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 8}), Fs(1), U8({}, {0}), Fs(1), U8({}, {0})},
                        {{"channels_last", ai(1)}});
  EXPECT_EQ(l.shape(), (Shape{1, 1, 1, 2}));
  EXPECT_EQ(values<uint8_t>(l), (std::vector<uint8_t>{3, 4}));
  const auto o = infer(kMs, "QLinearGlobalAveragePool", 1,
                       {vi(DType::kI8, ir::SymShape{ir::Dim::sym("N"), 64, ir::Dim(), 7}), std::nullopt, std::nullopt,
                        std::nullopt, std::nullopt});
  EXPECT_EQ(*o[0].shape, (ir::SymShape{ir::Dim::sym("N"), 64, 1, 1}));
  expect_node_error(error_of([&] {
                      run1(kMs, "QLinearGlobalAveragePool", 1, {U8({2, 2}, {1, 2, 3, 4}), Fs(1), U8({}, {0}), Fs(1), U8({}, {0})});
                    }),
                    Errc::kShapeMismatch);
}

// ContribOperators.md QLinearConcat: inputs Y_scale, Y_zero_point, then
// (tensor, scale, zero point) triples, each requantized to Y's parameters.
// [2, 3] (scale 0.5) = [1, 1.5 -> 2]; [7] (scale 2, zp 5) = 4; axis 1 -> [[1, 2, 4]].
TEST(OpsQuant, MicrosoftQLinearConcat) {
  const Tensor y = run1(kMs, "QLinearConcat", 1,
                        {Fs(1), U8({}, {0}), U8({1, 2}, {2, 3}), Fs(0.5f), U8({}, {0}), U8({1, 1}, {7}), Fs(2), U8({}, {5})},
                        {{"axis", ai(1)}});
  EXPECT_EQ(y.shape(), (Shape{1, 3}));
  EXPECT_EQ(values<uint8_t>(y), (std::vector<uint8_t>{1, 2, 4}));
  // axis 0 of [1, 2] and [2, 2], negative axis.
  const Tensor z = run1(kMs, "QLinearConcat", 1,
                        {Fs(1), U8({}, {0}), U8({1, 2}, {1, 2}), Fs(1), U8({}, {0}), U8({2, 2}, {3, 4, 5, 6}), Fs(1), U8({}, {0})},
                        {{"axis", ai(-2)}});
  EXPECT_EQ(z.shape(), (Shape{3, 2}));
  EXPECT_EQ(values<uint8_t>(z), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  expect_node_error(error_of([&] {
                      run1(kMs, "QLinearConcat", 1, {Fs(1), U8({}, {0}), U8({1, 2}, {1, 2}), Fs(1)}, {{"axis", ai(0)}});
                    }),
                    Errc::kInvalidArgument);  // incomplete triple
  expect_node_error(error_of([&] {
                      run1(kMs, "QLinearConcat", 1,
                           {Fs(1), U8({}, {0}), U8({1, 2}, {1, 2}), Fs(1), U8({}, {0}), U8({1, 3}, {3, 4, 5}), Fs(1), U8({}, {0})},
                           {{"axis", ai(0)}});
                    }),
                    Errc::kShapeMismatch);
  expect_node_error(error_of([&] {
                      run1(kMs, "QLinearConcat", 1, {Fs(1), U8({}, {0}), U8({1, 2}, {1, 2}), Fs(1), U8({}, {0})});
                    }),
                    Errc::kInvalidArgument);  // no axis
  const auto o = infer(kMs, "QLinearConcat", 1,
                       {vi(DType::kF32, ir::SymShape{}), vi(DType::kI8, ir::SymShape{}),
                        vi(DType::kI8, ir::SymShape{ir::Dim::sym("N"), 2}), std::nullopt, std::nullopt,
                        vi(DType::kI8, ir::SymShape{ir::Dim(), 3}), std::nullopt, std::nullopt},
                       {{"axis", ai(1)}});
  EXPECT_EQ(o[0].dtype, DType::kI8);
  EXPECT_EQ(*o[0].shape, (ir::SymShape{ir::Dim::sym("N"), 5}));
}

// ContribOperators.md DynamicQuantizeMatMul: A is quantized like
// DynamicQuantizeLinear (A = [[-1, 0, 3]] -> codes [0, 64, 255], scale 4/255,
// zp 64, so A - zp = [-64, 0, 191]); B u8 [[1],[2],[3]] - 1 = [0, 1, 2]: sum 382;
// Y = 382 * (4/255 * 0.5) + bias 1 (float32, as ONNX Runtime computes it).
TEST(OpsQuant, MicrosoftDynamicQuantizeMatMul) {
  const Tensor y = run1(kMs, "DynamicQuantizeMatMul", 1,
                        {F({1, 3}, {-1, 0, 3}), U8({3, 1}, {1, 2, 3}), Fs(0.5f), U8({}, {1}), F({1}, {1})});
  const float s = (4.0f / 255.0f) * 0.5f;
  EXPECT_EQ(y.shape(), (Shape{1, 1}));
  EXPECT_EQ(values<float>(y)[0], 382.0f * s + 1.0f);
  expect_node_error(error_of([&] {
                      run1(kMs, "DynamicQuantizeMatMul", 1, {F({1, 3}, {-1, 0, 3}), U8({3, 1}, {1, 2, 3}), Fs(0.5f), std::nullopt, F({2}, {1, 1})});
                    }),
                    Errc::kShapeMismatch);  // bias of 2 for N = 1
}

// ContribOperators.md MatMulIntegerToFloat: Y = (A - a_zp)(B - b_zp) * a_scale * b_scale + bias,
// b_scale per column. A [[3, 5]] - 1 = [2, 4]; B i8 [[1, -1], [2, 0]]: sums [10, -2];
// a_scale 0.5, b_scale [1, 2]: [5, -2] + bias 0.25 = [5.25, -1.75]. With f16 scales Y is f16.
TEST(OpsQuant, MicrosoftMatMulIntegerToFloat) {
  const Tensor y = run1(kMs, "MatMulIntegerToFloat", 1,
                        {U8({1, 2}, {3, 5}), I8({2, 2}, {1, -1, 2, 0}), Fs(0.5f), F({2}, {1, 2}), U8({}, {1}),
                         std::nullopt, F({2}, {0.25f, 0.25f})});
  EXPECT_EQ(values<float>(y), (std::vector<float>{5.25f, -1.75f}));
  const Tensor h = run1(kMs, "MatMulIntegerToFloat", 1,
                        {U8({1, 2}, {3, 5}), I8({2, 2}, {1, -1, 2, 0}), half(DType::kF16, {}, {0.5f}),
                         half(DType::kF16, {2}, {1, 2}), U8({}, {1})});
  EXPECT_EQ(h.dtype(), DType::kF16);
  EXPECT_EQ(f16_to_f32(static_cast<const uint16_t*>(h.raw())[1]), -2.0f);
  expect_node_error(error_of([&] {
                      run1(kMs, "MatMulIntegerToFloat", 1,
                           {U8({1, 2}, {3, 5}), I8({2, 2}, {1, -1, 2, 0}), F({2}, {1, 1}), Fs(1)});
                    }),
                    Errc::kShapeMismatch);  // a_scale per tensor only
  expect_node_error(error_of([&] {
                      run1(kMs, "MatMulIntegerToFloat", 1,
                           {U8({1, 2}, {3, 5}), I8({2, 2}, {1, -1, 2, 0}), Fs(1), F({3}, {1, 1, 1})});
                    }),
                    Errc::kShapeMismatch);  // 3 column scales for N = 2
}

// com.microsoft QuantizeLinear / DequantizeLinear: ONNX's semantics, with
// 16-bit and 4-bit types. Per axis 0 with i16 zero points [0, -5]:
// [40000 / 1 -> 32767 (saturated), 7 / 2 = 3.5 -> 4 - 5 = -1].
TEST(OpsQuant, MicrosoftQuantizeDequantizeLinear) {
  const Tensor q = run1(kMs, "QuantizeLinear", 1, {F({2}, {40000, 7}), F({2}, {1, 2}), T1<int16_t>({2}, {0, -5})},
                        {{"axis", ai(0)}});
  EXPECT_EQ(values<int16_t>(q), (std::vector<int16_t>{32767, -1}));
  // u4 0xF2: codes [2, 15] - zp 2 = [0, 13] * 0.5.
  const Tensor d = run1(kMs, "DequantizeLinear", 1, {packed(DType::kU4, {2}, {0xF2}), Fs(0.5f), packed(DType::kU4, {}, {0x02})});
  EXPECT_EQ(values<float>(d), (std::vector<float>{0, 6.5f}));
  // No blocked form in com.microsoft.
  expect_node_error(error_of([&] {
                      run1(kMs, "QuantizeLinear", 1, {F({1, 4}, {1, 2, 3, 4}), F({1, 2}, {1, 1})},
                           {{"axis", ai(1)}, {"block_size", ai(2)}});
                    }),
                    Errc::kShapeMismatch);
}

// The registry: QLinearMatMul has its opset-10 and opset-21 forms; ops that
// ONNX introduced at 10 (11 for DynamicQuantizeLinear) don't exist before.
TEST(OpsQuant, RegisteredOpsets) {
  const auto& r = ops::OpRegistry::global();
  EXPECT_NE(r.find("", "QLinearMatMul", 10), nullptr);
  EXPECT_NE(r.find("", "QLinearMatMul", 21), nullptr);
  EXPECT_NE(r.find("", "QLinearMatMul", 10), r.find("", "QLinearMatMul", 21));
  EXPECT_EQ(r.find("", "QuantizeLinear", 9), nullptr);
  EXPECT_EQ(r.find("", "DynamicQuantizeLinear", 10), nullptr);
  for (const char* op : {"QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool",
                         "QLinearGlobalAveragePool", "QLinearConcat", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                         "QuantizeLinear", "DequantizeLinear"})
    EXPECT_NE(r.find(kMs, op, 1), nullptr) << op;
}

}  // namespace
}  // namespace qforge
