// The elementwise operators (src/ops/elementwise.cpp), for what ONNX's
// backend test data doesn't cover: symbolic shape inference, errors on bad
// input (a qforge::Error naming the node, never a crash), the broadcasting
// fast paths and the thread-pool split against a naive loop, and edge cases
// (integer wrap and division, NaN, rounding of casts, legacy opsets).
// Each test names its reference: the ONNX operator spec, numpy semantics,
// or a hand-computed example.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <numbers>
#include <random>
#include <string>
#include <vector>

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
const Tensor kAbsent;  // marks an absent optional input

ir::Node make_node(const std::string& op, size_t n_in, int n_out, const Attrs& attrs) {
  ir::Node n;
  n.name = "t";
  n.op_type = op;
  // (Names built with append: GCC 12 warns falsely on "x" + std::to_string(i).)
  for (size_t i = 0; i < n_in; ++i) n.inputs.push_back(std::string("x").append(std::to_string(i)));
  for (int i = 0; i < n_out; ++i) n.outputs.push_back(std::string("y").append(std::to_string(i)));
  n.attrs = attrs;
  return n;
}

// Runs one op's kernel outside a Session. An empty Tensor() input is absent.
std::vector<Tensor> run_op(const std::string& op, const std::vector<Tensor>& inputs, const Attrs& attrs = {},
                           int64_t opset = 17, int n_out = 1, ThreadPool* pool = nullptr) {
  ir::Node n = make_node(op, inputs.size(), n_out, attrs);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].empty()) n.inputs[i] = "";
  const ops::OpDef* def = ops::OpRegistry::global().find("", op, opset);
  if (def == nullptr) throw std::runtime_error("no " + op + " at opset " + std::to_string(opset));
  std::vector<const Tensor*> in;
  for (const Tensor& t : inputs) in.push_back(t.empty() ? nullptr : &t);
  ops::OpContext ctx(n, opset, in, nullptr, pool);
  def->run(ctx);
  return ctx.outputs();
}

Tensor run1(const std::string& op, const std::vector<Tensor>& inputs, const Attrs& attrs = {}, int64_t opset = 17) {
  return run_op(op, inputs, attrs, opset).at(0);
}

std::vector<ir::ValueInfo> infer_op(const std::string& op, const std::vector<ir::ValueInfo>& ins,
                                    const Attrs& attrs = {}, int64_t opset = 17, int n_out = 1) {
  const ir::Node n = make_node(op, ins.size(), n_out, attrs);
  const ops::OpDef* def = ops::OpRegistry::global().find("", op, opset);
  if (def == nullptr) throw std::runtime_error("no " + op);
  std::vector<const ir::ValueInfo*> in;
  for (const auto& v : ins) in.push_back(&v);
  ops::InferContext ctx(n, opset, in, std::vector<const Tensor*>(ins.size(), nullptr));
  def->infer(ctx);
  return ctx.outputs();
}

ir::ValueInfo vi(DType dt, ir::SymShape s) { return ir::ValueInfo{dt, std::move(s)}; }
ir::Dim sym(const char* s) { return ir::Dim::sym(s); }

template <class T>
std::vector<T> values(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<T>(p, p + t.numel());
}

Tensor f32(Shape s, std::vector<float> v) { return Tensor::from(std::move(s), v); }
Tensor i32(Shape s, std::vector<int32_t> v) { return Tensor::from(std::move(s), v); }
Tensor i64(Shape s, std::vector<int64_t> v) { return Tensor::from(std::move(s), v); }
Tensor boolean(Shape s, std::vector<bool> v) {
  Tensor t(DType::kBool, std::move(s));
  for (size_t i = 0; i < v.size(); ++i) t.data<bool>()[i] = v[i];
  return t;
}
Tensor f16(Shape s, const std::vector<float>& v) {
  Tensor t(DType::kF16, std::move(s));
  auto* p = static_cast<uint16_t*>(t.raw());
  for (size_t i = 0; i < v.size(); ++i) p[i] = f32_to_f16(v[i]);
  return t;
}
std::vector<uint16_t> bits16(const Tensor& t) {
  const auto* p = static_cast<const uint16_t*>(t.raw());
  return std::vector<uint16_t>(p, p + t.numel());
}

// Expects a qforge::Error with this code whose subject is the test node.
template <class F>
void expect_error(F&& f, Errc code, const std::string& op) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_EQ(e.subject(), "node 't' (" + op + ")") << e.what();
  }
}

// ------------------------------------------------------------ inference --

// numpy broadcasting (ONNX Broadcasting.md) with symbols: 1 stretches to the
// other side, a symbol against a known size takes the size.
TEST(ElementwiseInfer, BinaryBroadcastWithSymbols) {
  auto out = infer_op("Add", {vi(DType::kF32, {sym("batch"), 3, 1}), vi(DType::kF32, {4})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ(ir::sym_shape_str(*out[0].shape), "[batch, 3, 4]");
  EXPECT_EQ(out[0].dtype, DType::kF32);

  out = infer_op("Mul", {vi(DType::kF32, {sym("b"), sym("s"), 768}), vi(DType::kF32, {1, sym("s"), 1})});
  EXPECT_EQ(ir::sym_shape_str(*out[0].shape), "[b, s, 768]");
}

// A value of unknown rank leaves the output shape unknown, not an error.
TEST(ElementwiseInfer, UnknownRankGivesUnknownShape) {
  auto out = infer_op("Sub", {vi(DType::kF32, {2, 3}), ir::ValueInfo{DType::kF32, std::nullopt}});
  EXPECT_FALSE(out[0].shape.has_value());
  EXPECT_EQ(out[0].dtype, DType::kF32);
  out = infer_op("Relu", {ir::ValueInfo{}});
  EXPECT_FALSE(out[0].shape.has_value());
}

// ONNX spec: comparisons and logical ops output tensor(bool); IsNaN/IsInf too.
TEST(ElementwiseInfer, ComparisonsGiveBool) {
  for (const char* op : {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}) {
    auto out = infer_op(op, {vi(DType::kI64, {sym("n"), 1}), vi(DType::kI64, {5})});
    EXPECT_EQ(out[0].dtype, DType::kBool) << op;
    EXPECT_EQ(ir::sym_shape_str(*out[0].shape), "[n, 5]") << op;
  }
  auto out = infer_op("IsNaN", {vi(DType::kF32, {sym("n")})});
  EXPECT_EQ(out[0].dtype, DType::kBool);
  EXPECT_EQ(ir::sym_shape_str(*out[0].shape), "[n]");
}

// ONNX Where: output type of X/Y, shape the 3-way broadcast.
TEST(ElementwiseInfer, WhereTakesTypeOfX) {
  auto out = infer_op("Where", {vi(DType::kBool, {sym("n"), 1}), vi(DType::kI64, {1, 4}), vi(DType::kI64, {1})});
  EXPECT_EQ(out[0].dtype, DType::kI64);
  EXPECT_EQ(ir::sym_shape_str(*out[0].shape), "[n, 4]");
}

// Variadic ops broadcast every input (ONNX Sum-8+/Max-8+).
TEST(ElementwiseInfer, VariadicBroadcast) {
  auto out = infer_op("Sum", {vi(DType::kF32, {sym("a"), 1, 1}), vi(DType::kF32, {3, 1}), vi(DType::kF32, {5})});
  EXPECT_EQ(ir::sym_shape_str(*out[0].shape), "[a, 3, 5]");
}

// ONNX Cast: output type from `to`; Dropout-12 mask is bool.
TEST(ElementwiseInfer, CastAndDropout) {
  auto out = infer_op("Cast", {vi(DType::kF32, {sym("n"), 2})}, {{"to", ir::Attribute::of(int64_t{7})}});
  EXPECT_EQ(out[0].dtype, DType::kI64);
  EXPECT_EQ(ir::sym_shape_str(*out[0].shape), "[n, 2]");
  out = infer_op("Dropout", {vi(DType::kF32, {sym("n")})}, {}, 13, 2);
  EXPECT_EQ(out[1].dtype, DType::kBool);
  EXPECT_EQ(ir::sym_shape_str(*out[1].shape), "[n]");
  out = infer_op("Dropout", {vi(DType::kF32, {sym("n")})}, {}, 7, 2);  // Dropout-7: mask is T
  EXPECT_EQ(out[1].dtype, DType::kF32);
}

// ONNX Add-6 legacy broadcast: B [3, 4] placed at axis 1 of A [2, 3, 4, 5]
// (numpy's right alignment would refuse [3, 4] against [4, 5]).
TEST(ElementwiseInfer, LegacyBroadcastAxis) {
  const Attrs a = {{"broadcast", ir::Attribute::of(int64_t{1})}, {"axis", ir::Attribute::of(int64_t{1})}};
  auto out = infer_op("Add", {vi(DType::kF32, {sym("n"), 3, 4, 5}), vi(DType::kF32, {3, 4})}, a, 6);
  EXPECT_EQ(ir::sym_shape_str(*out[0].shape), "[n, 3, 4, 5]");
}

// Type constraint T: both inputs of Add have one type.
TEST(ElementwiseInfer, MismatchedTypesAreAnError) {
  expect_error([] { infer_op("Add", {vi(DType::kF32, {2}), vi(DType::kI64, {2})}); }, Errc::kTypeMismatch, "Add");
  expect_error([] { infer_op("Add", {vi(DType::kF32, {2, 3}), vi(DType::kF32, {4})}); }, Errc::kShapeMismatch, "Add");
}

// ------------------------------------------------------------------ errors --

TEST(ElementwiseErrors, BadShapesAndTypes) {
  // numpy: shapes (2,3) and (4,) don't broadcast.
  expect_error([] { run1("Add", {f32({2, 3}, std::vector<float>(6)), f32({4}, std::vector<float>(4))}); },
               Errc::kShapeMismatch, "Add");
  // ONNX Add: T must match.
  expect_error([] { run1("Add", {f32({1}, {1}), i32({1}, {1})}); }, Errc::kTypeMismatch, "Add");
  // ONNX Sqrt: T is a float type.
  expect_error([] { run1("Sqrt", {i32({1}, {4})}); }, Errc::kTypeMismatch, "Sqrt");
  // ONNX Where: condition is bool.
  expect_error([] { run1("Where", {f32({1}, {1}), f32({1}, {1}), f32({1}, {2})}); }, Errc::kTypeMismatch, "Where");
  // ONNX And: bool inputs.
  expect_error([] { run1("And", {f32({1}, {1}), f32({1}, {1})}); }, Errc::kTypeMismatch, "And");
  // ONNX BitShift: unsigned integers only.
  expect_error([] { run1("BitShift", {i32({1}, {1}), i32({1}, {1})}, {{"direction", ir::Attribute::of(std::string("LEFT"))}}); },
               Errc::kTypeMismatch, "BitShift");
}

TEST(ElementwiseErrors, MissingInputsAndBadAttributes) {
  expect_error([] { run1("Add", {f32({1}, {1})}); }, Errc::kNotFound, "Add");
  expect_error([] { run1("Mul", {f32({1}, {1}), kAbsent}); }, Errc::kNotFound, "Mul");
  expect_error([] { run1("Gelu", {f32({1}, {1})}, {{"approximate", ir::Attribute::of(std::string("fast"))}}, 20); },
               Errc::kInvalidArgument, "Gelu");
  expect_error([] { run1("BitShift", {Tensor::from<uint8_t>({1}, {1}), Tensor::from<uint8_t>({1}, {1})},
                         {{"direction", ir::Attribute::of(std::string("UP"))}}); },
               Errc::kInvalidArgument, "BitShift");
  expect_error([] { run1("Mod", {i32({1}, {1}), i32({1}, {1})}, {{"fmod", ir::Attribute::of(int64_t{2})}}); },
               Errc::kInvalidArgument, "Mod");
  expect_error([] { run1("Cast", {f32({1}, {1})}); }, Errc::kNotFound, "Cast");  // `to` is required
}

// Integer division by zero traps on x86; qforge refuses it instead.
TEST(ElementwiseErrors, IntegerDivisionByZero) {
  expect_error([] { run1("Div", {i32({3}, {1, 2, 3}), i32({3}, {1, 0, 1})}); }, Errc::kInvalidArgument, "Div");
  expect_error([] { run1("Mod", {i64({2}, {1, 2}), i64({1}, {0})}); }, Errc::kInvalidArgument, "Mod");
  // numpy: integer 0 ** -1 is an error ("Integers to negative integer powers are not allowed").
  expect_error([] { run1("Pow", {i32({2}, {2, 0}), i32({1}, {-1})}); }, Errc::kInvalidArgument, "Pow");
  // Floats divide by zero per IEEE: 1 / 0 = inf.
  EXPECT_EQ(values<float>(run1("Div", {f32({1}, {1}), f32({1}, {0})}))[0], std::numeric_limits<float>::infinity());
}

TEST(ElementwiseErrors, ClipPReluDropoutCast) {
  // ONNX Clip-11: min is a scalar.
  expect_error([] { run1("Clip", {f32({2}, {1, 2}), f32({2}, {0, 0})}, {}, 13); }, Errc::kShapeMismatch, "Clip");
  expect_error([] { run1("Clip", {f32({2}, {1, 2}), i32({}, {0})}, {}, 13); }, Errc::kTypeMismatch, "Clip");
  // ONNX PRelu: slope broadcasts unidirectionally to X.
  expect_error([] { run1("PRelu", {f32({2}, {1, 2}), f32({2, 2}, {1, 1, 1, 1})}); }, Errc::kShapeMismatch, "PRelu");
  // Dropout-12 training mode with a non-zero ratio is random: unsupported.
  expect_error([] { run_op("Dropout", {f32({2}, {1, 2}), f32({}, {0.5f}), boolean({}, {true})}, {}, 13, 2); },
               Errc::kUnsupported, "Dropout");
  // ONNX type 8 is STRING, which qforge has no dtype for.
  expect_error([] { run1("Cast", {f32({1}, {1})}, {{"to", ir::Attribute::of(int64_t{8})}}); },
               Errc::kUnsupported, "Cast");
  // Legacy broadcast: B must fit inside A from the axis.
  expect_error([] { run1("Add", {f32({2, 3}, std::vector<float>(6)), f32({3, 1}, {1, 2, 3})},
                         {{"broadcast", ir::Attribute::of(int64_t{1})}, {"axis", ir::Attribute::of(int64_t{1})}}, 6); },
               Errc::kShapeMismatch, "Add");
}

// ------------------------------------------------------------ broadcasting --

// Naive numpy broadcasting: for each output index, the input index with
// broadcast dims pinned to 0.
int64_t bcast_index(int64_t flat, const Shape& out, const Shape& in) {
  int64_t idx = 0, stride = 1;
  for (size_t k = 0; k < out.size(); ++k) {
    const size_t o = out.size() - 1 - k;
    const int64_t coord = flat % out[o];
    flat /= out[o];
    if (k < in.size()) {
      const size_t i = in.size() - 1 - k;
      if (in[i] != 1) idx += coord * stride;
      stride *= in[i];
    }
  }
  return idx;
}

Shape bshape(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape s(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    s[i] = da == 1 ? db : da;
  }
  return s;
}

Tensor random_f32(Shape s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-3, 3);
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (auto& x : v) x = d(rng);
  return Tensor::from(std::move(s), v);
}

// Every broadcasting path (same shape, scalar, channel, bias, both sides
// stretched, rank mismatch, outer-only), serial and split over 4 threads,
// against the naive loop (numpy semantics).
TEST(ElementwiseBroadcast, MatchesNaiveLoop) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}, {}},        {{1}, {5, 7}},          {{2, 3, 4, 5}, {3, 1, 1}},
      {{4, 6, 8}, {8}},        {{3, 1, 5}, {1, 4, 1}}, {{6, 1}, {1, 7}},       {{2, 3, 4}, {2, 1, 4}},
      {{7, 1, 1}, {7, 5, 3}},  {{1, 1}, {1}},          {{64, 130, 9}, {130, 1}}, {{300, 257}, {257}},
      {{2, 1, 3, 1, 4}, {5, 1, 2, 4}}, {{0, 3}, {3}}};
  ThreadPool pool(4);
  uint32_t seed = 1;
  for (const auto& [sa, sb] : cases) {
    const Tensor a = random_f32(sa, seed++), b = random_f32(sb, seed++);
    const Shape so = bshape(sa, sb);
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      for (const char* op : {"Sub", "Max"}) {
        const Tensor y = run_op(op, {a, b}, {}, 17, 1, p)[0];
        ASSERT_EQ(y.shape(), so) << shape_str(sa) << " " << shape_str(sb);
        for (int64_t i = 0; i < y.numel(); ++i) {
          const float va = a.data<float>()[bcast_index(i, so, sa)];
          const float vb = b.data<float>()[bcast_index(i, so, sb)];
          const float want = std::string(op) == "Sub" ? va - vb : std::max(va, vb);
          ASSERT_EQ(y.data<float>()[i], want) << op << " " << shape_str(sa) << " " << shape_str(sb) << " at " << i;
        }
      }
    }
  }
}

// Where broadcasts all three (ONNX Where-9); checked against the naive loop.
TEST(ElementwiseBroadcast, WhereThreeWay) {
  ThreadPool pool(3);
  const std::vector<std::vector<Shape>> cases = {
      {{2, 3}, {2, 3}, {2, 3}}, {{}, {4, 5}, {5}}, {{3, 1}, {1, 4}, {3, 4}}, {{200, 1}, {200, 300}, {1}}};
  uint32_t seed = 7;
  for (const auto& c : cases) {
    Tensor cond(DType::kBool, c[0]);
    std::mt19937 rng(seed++);
    for (int64_t i = 0; i < cond.numel(); ++i) cond.data<bool>()[i] = (rng() & 1) != 0;
    const Tensor x = random_f32(c[1], seed++), y = random_f32(c[2], seed++);
    const Shape so = bshape(bshape(c[0], c[1]), c[2]);
    const Tensor o = run_op("Where", {cond, x, y}, {}, 16, 1, &pool)[0];
    ASSERT_EQ(o.shape(), so);
    for (int64_t i = 0; i < o.numel(); ++i) {
      const bool cv = cond.data<bool>()[bcast_index(i, so, c[0])];
      const float want = cv ? x.data<float>()[bcast_index(i, so, c[1])] : y.data<float>()[bcast_index(i, so, c[2])];
      ASSERT_EQ(o.data<float>()[i], want) << i;
    }
  }
  // Bool and f16 payloads move as raw elements.
  const Tensor ob = run1("Where", {boolean({2}, {true, false}), boolean({2}, {false, false}), boolean({1}, {true})});
  EXPECT_EQ(values<bool>(ob), (std::vector<bool>{false, true}));
  const Tensor oh = run1("Where", {boolean({2}, {true, false}), f16({2}, {1.5f, 2.5f}), f16({2}, {-1, -2})});
  EXPECT_EQ(oh.dtype(), DType::kF16);
  EXPECT_EQ(bits16(oh), (std::vector<uint16_t>{f32_to_f16(1.5f), f32_to_f16(-2.0f)}));
}

// Variadic Sum / Mean / Max broadcast all inputs (hand-computed).
TEST(ElementwiseBroadcast, Variadic) {
  const Tensor a = f32({2, 1}, {1, 2}), b = f32({3}, {10, 20, 30}), c = f32({}, {100});
  EXPECT_EQ(values<float>(run1("Sum", {a, b, c})), (std::vector<float>{111, 121, 131, 112, 122, 132}));
  EXPECT_EQ(values<float>(run1("Mean", {a, b})), (std::vector<float>{5.5f, 10.5f, 15.5f, 6, 11, 16}));
  EXPECT_EQ(values<float>(run1("Max", {a, f32({3}, {0, 1.5f, 3})})), (std::vector<float>{1, 1.5f, 3, 2, 2, 3}));
  EXPECT_EQ(values<int32_t>(run1("Min", {i32({2}, {4, -1}), i32({2}, {3, 7}), i32({1}, {5})})),
            (std::vector<int32_t>{3, -1}));
  const Tensor one = run1("Sum", {b});  // one input: itself
  EXPECT_EQ(values<float>(one), values<float>(b));
}

// ------------------------------------------------------------- edge cases --

// Integer Div truncates toward zero (C++ and ONNX Runtime; numpy's // floors);
// INT_MIN / -1 wraps instead of trapping.
TEST(ElementwiseEdge, IntegerDivision) {
  EXPECT_EQ(values<int32_t>(run1("Div", {i32({4}, {-7, 7, -7, std::numeric_limits<int32_t>::min()}),
                                         i32({4}, {2, -2, -2, -1})})),
            (std::vector<int32_t>{-3, -3, 3, std::numeric_limits<int32_t>::min()}));
  // ONNX test_div_uint8 / numpy: unsigned 7 / 2 = 3.
  EXPECT_EQ(values<uint8_t>(run1("Div", {Tensor::from<uint8_t>({1}, {7}), Tensor::from<uint8_t>({1}, {2})}))[0], 3);
}

// ONNX Mod: fmod=0 takes the divisor's sign (numpy.mod), fmod=1 the
// dividend's (numpy.fmod).
TEST(ElementwiseEdge, ModSigns) {
  const Tensor a = i32({4}, {-7, 7, -7, 7}), b = i32({4}, {3, -3, -3, 3});
  EXPECT_EQ(values<int32_t>(run1("Mod", {a, b})), (std::vector<int32_t>{2, -2, -1, 1}));
  EXPECT_EQ(values<int32_t>(run1("Mod", {a, b}, {{"fmod", ir::Attribute::of(int64_t{1})}})),
            (std::vector<int32_t>{-1, 1, -1, 1}));
  // numpy.mod(-4.5, 2) = 1.5; numpy.fmod(-4.5, 2) = -0.5.
  EXPECT_EQ(values<float>(run1("Mod", {f32({1}, {-4.5f}), f32({1}, {2})}))[0], 1.5f);
  EXPECT_EQ(values<float>(run1("Mod", {f32({1}, {-4.5f}), f32({1}, {2})}, {{"fmod", ir::Attribute::of(int64_t{1})}}))[0], -0.5f);
  // INT_MIN mod -1 is 0, not a trap.
  EXPECT_EQ(values<int32_t>(run1("Mod", {i32({1}, {std::numeric_limits<int32_t>::min()}), i32({1}, {-1})}))[0], 0);
}

// Integer Add/Mul wrap like numpy's fixed-width integers; Abs(int8 -128) is
// -128 in numpy too.
TEST(ElementwiseEdge, IntegerWrap) {
  EXPECT_EQ(values<int32_t>(run1("Add", {i32({1}, {std::numeric_limits<int32_t>::max()}), i32({1}, {1})}))[0],
            std::numeric_limits<int32_t>::min());
  EXPECT_EQ(values<uint16_t>(run1("Mul", {Tensor::from<uint16_t>({1}, {65535}), Tensor::from<uint16_t>({1}, {65535})}))[0], 1);
  EXPECT_EQ(values<int8_t>(run1("Abs", {Tensor::from<int8_t>({2}, {-128, -5})})), (std::vector<int8_t>{-128, 5}));
}

// numpy.maximum / minimum propagate NaN from either side.
TEST(ElementwiseEdge, MinMaxPropagateNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor a = f32({3}, {nan, 1, 2}), b = f32({3}, {1, nan, 3});
  for (const char* op : {"Max", "Min"}) {
    const auto y = values<float>(run1(op, {a, b}));
    EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1])) << op;
    EXPECT_EQ(y[2], std::string(op) == "Max" ? 3.0f : 2.0f);
  }
}

// ONNX Round: half to even (numpy.round). 
TEST(ElementwiseEdge, RoundHalfToEven) {
  const auto y = values<float>(run1("Round", {f32({7}, {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 2.4f, -2.6f})}));
  EXPECT_EQ(y, (std::vector<float>{0, 2, 2, -0.0f, -2, 2, -3}));
  EXPECT_TRUE(std::signbit(y[3]));
}

// ONNX Cast float -> int truncates toward zero; NaN and out-of-range values
// are unspecified there: qforge gives 0 and saturates (documented).
TEST(ElementwiseEdge, CastFloatToInt) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor x = f32({7}, {2.7f, -2.7f, nan, 1e10f, -1e10f, 2147483520.0f, -0.9f});
  EXPECT_EQ(values<int32_t>(run1("Cast", {x}, {{"to", ir::Attribute::of(int64_t{6})}})),
            (std::vector<int32_t>{2, -2, 0, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min(),
                                  2147483520, 0}));
  EXPECT_EQ(values<uint8_t>(run1("Cast", {f32({3}, {300, -5, 254.9f})}, {{"to", ir::Attribute::of(int64_t{2})}})),
            (std::vector<uint8_t>{255, 0, 254}));
  EXPECT_EQ(values<int64_t>(run1("Cast", {f32({2}, {1e30f, -1e30f})}, {{"to", ir::Attribute::of(int64_t{7})}})),
            (std::vector<int64_t>{std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()}));
}

// Integer -> integer keeps the low bits (numpy astype); -> bool is x != 0
// (NaN is True in numpy); bool -> float is 0 / 1. Cast-1's `to` is a name.
TEST(ElementwiseEdge, CastIntegersAndBool) {
  EXPECT_EQ(values<uint8_t>(run1("Cast", {i32({3}, {300, -1, 256})}, {{"to", ir::Attribute::of(int64_t{2})}})),
            (std::vector<uint8_t>{44, 255, 0}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(values<bool>(run1("Cast", {f32({3}, {0, nan, -0.5f})}, {{"to", ir::Attribute::of(int64_t{9})}})),
            (std::vector<bool>{false, true, true}));
  EXPECT_EQ(values<float>(run1("Cast", {boolean({2}, {true, false})}, {{"to", ir::Attribute::of(int64_t{1})}})),
            (std::vector<float>{1, 0}));
  EXPECT_EQ(values<int64_t>(run1("Cast", {f32({1}, {3.9f})}, {{"to", ir::Attribute::of(std::string("INT64"))}}, 1))[0], 3);
  // Same type: the input itself (CastLike too).
  const Tensor x = f32({2}, {1, 2});
  EXPECT_EQ(run1("Cast", {x}, {{"to", ir::Attribute::of(int64_t{1})}}).raw(), x.raw());
  EXPECT_EQ(run1("CastLike", {i32({1}, {5}), f32({}, {0})}).dtype(), DType::kF32);
}

// IEEE round to nearest even into f16: 1 + 2^-11 is the tie between 1 and
// 1 + 2^-10 and goes to 1; from double, 1 + 2^-11 + 2^-40 is above the tie
// and must round up (a double -> float -> f16 chain would round it down).
TEST(ElementwiseEdge, CastToHalfRoundsOnce) {
  EXPECT_EQ(bits16(run1("Cast", {f32({2}, {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f})}, {{"to", ir::Attribute::of(int64_t{10})}})),
            (std::vector<uint16_t>{0x3C00, 0x3C02}));
  const Tensor d = Tensor::from<double>({2}, {1.0 + 0x1p-11 + 0x1p-40, 65520.0});
  EXPECT_EQ(bits16(run1("Cast", {d}, {{"to", ir::Attribute::of(int64_t{10})}})),
            (std::vector<uint16_t>{0x3C01, 0x7C00}));  // 65520 rounds to inf in f16
  // f16 -> f32 is exact.
  EXPECT_EQ(values<float>(run1("Cast", {f16({1}, {0.333251953125f})}, {{"to", ir::Attribute::of(int64_t{1})}}))[0],
            0.333251953125f);
}

// f16 arithmetic is done in f32 and rounded once: 1 + 2^-11 ties to 1.
TEST(ElementwiseEdge, HalfArithmetic) {
  const Tensor y = run1("Add", {f16({2}, {1, 1}), f16({2}, {0x1p-11f, 3 * 0x1p-11f})});
  EXPECT_EQ(y.dtype(), DType::kF16);
  EXPECT_EQ(bits16(y), (std::vector<uint16_t>{0x3C00, 0x3C02}));
  EXPECT_EQ(values<bool>(run1("Less", {f16({2}, {1, 2}), f16({2}, {2, 1})})), (std::vector<bool>{true, false}));
  EXPECT_EQ(bits16(run1("Relu", {f16({2}, {-1, 2})})), (std::vector<uint16_t>{0, 0x4000}));
}

// numpy.clip(x, lo, hi) = minimum(maximum(x, lo), hi): lo > hi gives hi
// everywhere; NaN stays NaN. Clip-6 defaults are float's lowest / max.
TEST(ElementwiseEdge, Clip) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto y = values<float>(run1("Clip", {f32({3}, {-5, 0, 5}), f32({}, {3}), f32({}, {1})}, {}, 13));
  EXPECT_EQ(y, (std::vector<float>{1, 1, 1}));
  y = values<float>(run1("Clip", {f32({2}, {nan, 7}), kAbsent, f32({}, {2})}, {}, 13));
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], 2);
  EXPECT_EQ(values<int8_t>(run1("Clip", {Tensor::from<int8_t>({3}, {-100, 0, 100}), Tensor::from<int8_t>({}, {-10}),
                                         Tensor::from<int8_t>({}, {10})}, {}, 13)),
            (std::vector<int8_t>{-10, 0, 10}));
  const float inf = std::numeric_limits<float>::infinity();
  y = values<float>(run1("Clip", {f32({2}, {-inf, 1})}, {{"max", ir::Attribute::of(0.5f)}}, 6));
  EXPECT_EQ(y, (std::vector<float>{std::numeric_limits<float>::lowest(), 0.5f}));
}

// ONNX Pow-12+: integer bases with integer or float exponents, output the
// base's type (hand-computed); x^2 (the fast path) of negatives is positive.
TEST(ElementwiseEdge, PowTypes) {
  EXPECT_EQ(values<int32_t>(run1("Pow", {i32({3}, {3, -2, 5}), i64({3}, {4, 3, 0})})), (std::vector<int32_t>{81, -8, 1}));
  EXPECT_EQ(values<int64_t>(run1("Pow", {i64({3}, {4, 2, -1}), f32({3}, {0.5f, -1, -3})})), (std::vector<int64_t>{2, 0, -1}));
  EXPECT_EQ(values<float>(run1("Pow", {f32({3}, {-3, 0.5f, 2}), f32({}, {2})})), (std::vector<float>{9, 0.25f, 4}));
  EXPECT_EQ(values<float>(run1("Pow", {f32({2}, {4, 2}), i64({1}, {-1})})), (std::vector<float>{0.25f, 0.5f}));
}

// ONNX BitShift: u8 1 << 7 = 128, 200 >> 3 = 25; shifts of 8+ give 0 (C++
// leaves them undefined; numpy gives 0 for left shifts too).
TEST(ElementwiseEdge, BitShift) {
  const Attrs left = {{"direction", ir::Attribute::of(std::string("LEFT"))}};
  const Attrs right = {{"direction", ir::Attribute::of(std::string("RIGHT"))}};
  EXPECT_EQ(values<uint8_t>(run1("BitShift", {Tensor::from<uint8_t>({3}, {1, 3, 1}), Tensor::from<uint8_t>({3}, {7, 7, 9})}, left)),
            (std::vector<uint8_t>{128, 128, 0}));
  EXPECT_EQ(values<uint16_t>(run1("BitShift", {Tensor::from<uint16_t>({2}, {200, 200}), Tensor::from<uint16_t>({2}, {3, 16})}, right)),
            (std::vector<uint16_t>{25, 0}));
}

// ONNX IsInf attributes pick the sign; IsNaN.
TEST(ElementwiseEdge, IsInfIsNaN) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor x = f32({4}, {inf, -inf, nan, 1});
  EXPECT_EQ(values<bool>(run1("IsInf", {x}, {{"detect_negative", ir::Attribute::of(int64_t{0})}})),
            (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(values<bool>(run1("IsInf", {x}, {{"detect_positive", ir::Attribute::of(int64_t{0})}})),
            (std::vector<bool>{false, true, false, false}));
  EXPECT_EQ(values<bool>(run1("IsNaN", {x})), (std::vector<bool>{false, false, true, false}));
}

// The vectorised exp / tanh / sigmoid against the C library in double, over
// the whole float range they cover, and at the IEEE special values.
TEST(ElementwiseEdge, VectorMathAccuracy) {
  std::vector<float> xs;
  for (float v = -105.0f; v <= 90.0f; v += 0.0137f) xs.push_back(v);
  for (float v = -1.0f; v <= 1.0f; v += 0.000731f) xs.push_back(v);
  xs.push_back(1e-30f);
  xs.push_back(-1e-8f);
  const Tensor x = f32({static_cast<int64_t>(xs.size())}, xs);
  const auto e = values<float>(run1("Exp", {x}));
  const auto t = values<float>(run1("Tanh", {x}));
  const auto s = values<float>(run1("Sigmoid", {x}));
  auto ulps = [](float got, double want) {
    if (std::isinf(want)) return got == static_cast<float>(want) ? 0.0 : 1e9;
    const double w = static_cast<double>(static_cast<float>(want));
    const double ulp = std::max(std::fabs(static_cast<double>(std::nextafter(static_cast<float>(w), 0.0f)) - w),
                                static_cast<double>(std::numeric_limits<float>::denorm_min()));
    return std::fabs(static_cast<double>(got) - want) / ulp;
  };
  double worst_e = 0, worst_t = 0, worst_s = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i];
    worst_e = std::max(worst_e, ulps(e[i], std::exp(v)));
    worst_t = std::max(worst_t, ulps(t[i], std::tanh(v)));
    worst_s = std::max(worst_s, ulps(s[i], 1.0 / (1.0 + std::exp(-v))));
  }
  EXPECT_LE(worst_e, 2.0);
  EXPECT_LE(worst_t, 3.0);
  EXPECT_LE(worst_s, 3.0);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const auto sp = values<float>(run1("Exp", {f32({5}, {-inf, inf, nan, 89.0f, 0})}));
  EXPECT_EQ(sp[0], 0.0f);
  EXPECT_EQ(sp[1], inf);
  EXPECT_TRUE(std::isnan(sp[2]));
  EXPECT_EQ(sp[3], inf);
  EXPECT_EQ(sp[4], 1.0f);
  const auto tp = values<float>(run1("Tanh", {f32({3}, {-inf, inf, nan})}));
  EXPECT_EQ(tp[0], -1.0f);
  EXPECT_EQ(tp[1], 1.0f);
  EXPECT_TRUE(std::isnan(tp[2]));
  const auto s2 = values<float>(run1("Sigmoid", {f32({2}, {-inf, inf})}));
  EXPECT_EQ(s2, (std::vector<float>{0.0f, 1.0f}));
}

// Distance in float ulps (of the correctly rounded result), subnormals
// counted in units of the smallest subnormal.
double ulp_error(float got, double want) {
  if (std::isnan(want)) return std::isnan(got) ? 0.0 : 1e9;
  if (std::isinf(want)) return got == static_cast<float>(want) ? 0.0 : 1e9;
  const float w = static_cast<float>(want);
  const double ulp = std::max(std::fabs(static_cast<double>(std::nextafter(w, 0.0f)) - static_cast<double>(w)),
                              static_cast<double>(std::numeric_limits<float>::denorm_min()));
  return std::fabs(static_cast<double>(got) - want) / ulp;
}

// The vectorised log / softplus / mish against the C library in double,
// over the whole float range (subnormals included) and the IEEE specials.
TEST(ElementwiseEdge, LogSoftplusMishAccuracy) {
  std::vector<float> xs;
  for (uint32_t b = 1; b < 0x7f800000u; b += 9973) xs.push_back(std::bit_cast<float>(b));  // every exponent
  for (float v = 0.5f; v < 2.0f; v += 0.000317f) xs.push_back(v);
  const Tensor x = f32({static_cast<int64_t>(xs.size())}, xs);
  const auto lg = values<float>(run1("Log", {x}));
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) worst = std::max(worst, ulp_error(lg[i], std::log(static_cast<double>(xs[i]))));
  EXPECT_LE(worst, 2.0);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const auto sp = values<float>(run1("Log", {f32({6}, {0.0f, -0.0f, -1.0f, inf, nan, 1.0f})}));
  EXPECT_EQ(sp[0], -inf);
  EXPECT_EQ(sp[1], -inf);
  EXPECT_TRUE(std::isnan(sp[2]) && std::isnan(sp[4]));
  EXPECT_EQ(sp[3], inf);
  EXPECT_EQ(sp[5], 0.0f);

  std::vector<float> ys;
  for (float v = -110.0f; v <= 110.0f; v += 0.0173f) ys.push_back(v);
  const Tensor y = f32({static_cast<int64_t>(ys.size())}, ys);
  const auto so = values<float>(run1("Softplus", {y}));
  const auto mi = values<float>(run1("Mish", {y}, {}, 18));
  double worst_sp = 0, worst_mi = 0;
  for (size_t i = 0; i < ys.size(); ++i) {
    const double v = ys[i];
    const double softplus = v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
    worst_sp = std::max(worst_sp, ulp_error(so[i], softplus));
    // Below -80 softplus(x) ~ e^x is subnormal in f32 and keeps only a few
    // bits, which x * ... then scales up: no f32 evaluation does better there.
    if (v > -80) worst_mi = std::max(worst_mi, ulp_error(mi[i], v * std::tanh(softplus)));
  }
  EXPECT_LE(worst_sp, 4.0);
  EXPECT_LE(worst_mi, 8.0);
  const auto spi = values<float>(run1("Softplus", {f32({3}, {inf, -inf, nan})}));
  EXPECT_EQ(spi[0], inf);
  EXPECT_EQ(spi[1], 0.0f);
  EXPECT_TRUE(std::isnan(spi[2]));
}

// Pow's fast exponents agree with IEEE pow (C library), signed zeros and
// infinities included.
TEST(ElementwiseEdge, PowSmallExponents) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> xs = {-0.0f, 0.0f, -inf, inf, 2.5f, -3.0f, 1e-20f, 7.0f};
  for (float e : {2.0f, 3.0f, 1.0f, -1.0f, 0.5f}) {
    const auto y = values<float>(run1("Pow", {f32({8}, xs), f32({}, {e})}));
    for (size_t i = 0; i < xs.size(); ++i) {
      const float want = std::pow(xs[i], e);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(y[i])) << xs[i] << "^" << e;
      } else {
        EXPECT_LE(ulp_error(y[i], static_cast<double>(want)), 1.0) << xs[i] << "^" << e;
        EXPECT_EQ(std::signbit(y[i]), std::signbit(want)) << xs[i] << "^" << e;
      }
    }
  }
}

// The vectorised erf (Erf, Gelu) against the C library: within 5e-7
// absolute everywhere, and a few ulp near 0 where erf(x) ~ 2x / sqrt(pi).
TEST(ElementwiseEdge, ErfAccuracy) {
  std::vector<float> xs;
  for (float v = -6.0f; v <= 6.0f; v += 0.00113f) xs.push_back(v);
  for (float v : {1e-3f, -1e-6f, 1e-20f, 0.0f}) xs.push_back(v);
  const auto y = values<float>(run1("Erf", {f32({static_cast<int64_t>(xs.size())}, xs)}));
  for (size_t i = 0; i < xs.size(); ++i) {
    const double want = std::erf(static_cast<double>(xs[i]));
    ASSERT_NEAR(y[i], want, 5e-7) << xs[i];
    if (std::fabs(xs[i]) < 0.01f) {
      ASSERT_NEAR(y[i], want, 4e-7 * std::fabs(want)) << xs[i];
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const auto sp = values<float>(run1("Erf", {f32({3}, {nan, inf, -inf})}));
  EXPECT_TRUE(std::isnan(sp[0]));
  EXPECT_EQ(sp[1], 1.0f);
  EXPECT_EQ(sp[2], -1.0f);
}

// erf's arithmetic, one value: the clamp to [-4, 4], the two polynomials in
// x^2 by fused multiply-adds (std::fma, rounded once), then c * p / q.
float erf_formula(float x) {
  float c = x < -4.0f ? -4.0f : x;
  c = c > 4.0f ? 4.0f : c;
  const float x2 = c * c;
  float p = -2.72614225801306e-10f;
  for (float k : {2.77068142495902e-08f, -2.10102402082508e-06f, -5.69250639462346e-05f,
                  -7.34990630326855e-04f, -2.95459980854025e-03f, -1.60960333262415e-02f})
    p = std::fma(p, x2, k);
  float q = -1.45660718464996e-05f;
  for (float k : {-2.13374055278905e-04f, -1.68282697438203e-03f, -7.37332916720468e-03f,
                  -1.42647390514189e-02f})
    q = std::fma(q, x2, k);
  return c * p / q;
}

// Erf, Gelu and ai.qforge ErfGelu give erf_formula's bits on whichever path
// runs (16, 8 or 4 lanes, every tail length; ctest runs this under
// QFORGE_ISA=avx2 and ref too): the fused GELU is then the unfused one bit
// for bit on every ISA.
TEST(ElementwiseEdge, ErfSameBitsOnEveryPath) {
  std::vector<float> xs;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> d(-5.0f, 5.0f);
  for (int i = 0; i < 4000; ++i) xs.push_back(d(rng));
  for (float v : {0.0f, -0.0f, 1e-30f, 4.0f, -4.0f, 3.9999998f, 100.0f}) xs.push_back(v);
  for (size_t n = xs.size() - 17; n <= xs.size(); ++n) {
    const std::vector<float> part(xs.begin(), xs.begin() + static_cast<long>(n));
    const auto y = values<float>(run1("Erf", {f32({static_cast<int64_t>(n)}, part)}));
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(erf_formula(part[i])))
          << "Erf(" << part[i] << "), " << n << " values";
  }
}

// Floor / Ceil / Round's vector forms against the C library (IEEE: signed
// zeros kept, large values, Inf and NaN unchanged), incl. every tail length.
TEST(ElementwiseEdge, FloorCeilRoundMatchLibm) {
  std::vector<float> xs = {0.0f, -0.0f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 0.49999997f, -0.49999997f,
                           8388607.5f, -8388607.5f, 8388608.0f, 1e20f, -1e20f, 4194303.5f, 1e-30f, -1e-30f,
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-100, 100);
  for (int i = 0; i < 1000; ++i) xs.push_back(d(rng));
  for (size_t n = xs.size() - 3; n <= xs.size(); ++n) {
    const Tensor x = f32({static_cast<int64_t>(n)}, std::vector<float>(xs.begin(), xs.begin() + static_cast<long>(n)));
    const auto fl = values<float>(run1("Floor", {x}));
    const auto ce = values<float>(run1("Ceil", {x}));
    const auto ro = values<float>(run1("Round", {x}));
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(fl[i]), std::bit_cast<uint32_t>(std::floor(xs[i]))) << xs[i];
      ASSERT_EQ(std::bit_cast<uint32_t>(ce[i]), std::bit_cast<uint32_t>(std::ceil(xs[i]))) << xs[i];
      ASSERT_EQ(std::bit_cast<uint32_t>(ro[i]), std::bit_cast<uint32_t>(std::nearbyint(xs[i]))) << xs[i];
    }
  }
  EXPECT_TRUE(std::isnan(values<float>(run1("Floor", {f32({1}, {std::numeric_limits<float>::quiet_NaN()})}))[0]));
}

// The vectorised f16 conversions are bit-exact with qforge/quant.h's scalar
// IEEE ones (round to nearest even): every f16 value one way, and a sweep of
// f32 bit patterns (all exponents, NaN, Inf, subnormals, ties) the other.
TEST(ElementwiseEdge, HalfConversionsBitExact) {
  Tensor h(DType::kF16, {65536});
  auto* ph = static_cast<uint16_t*>(h.raw());
  for (uint32_t i = 0; i < 65536; ++i) ph[i] = static_cast<uint16_t>(i);
  const Tensor f = run1("Cast", {h}, {{"to", ir::Attribute::of(int64_t{1})}});
  for (uint32_t i = 0; i < 65536; ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(f.data<float>()[i]), std::bit_cast<uint32_t>(f16_to_f32(static_cast<uint16_t>(i)))) << i;
  std::vector<float> xs;
  for (uint64_t b = 0; b <= 0xffffffffu; b += 65521) xs.push_back(std::bit_cast<float>(static_cast<uint32_t>(b)));
  for (uint32_t e = 100; e < 145; ++e)  // ties and near-ties at every exponent around f16's range
    for (uint32_t m : {0x1000u, 0x3000u, 0x0fffu, 0x1001u, 0x7fffffu, 0x2000u})
      for (uint32_t sgn : {0u, 0x80000000u}) xs.push_back(std::bit_cast<float>(sgn | (e << 23) | m));
  const Tensor y = run1("Cast", {f32({static_cast<int64_t>(xs.size())}, xs)}, {{"to", ir::Attribute::of(int64_t{10})}});
  const auto* py = static_cast<const uint16_t*>(y.raw());
  for (size_t i = 0; i < xs.size(); ++i)
    ASSERT_EQ(py[i], f32_to_f16(xs[i])) << std::hex << std::bit_cast<uint32_t>(xs[i]);
  // bf16 likewise, both ways.
  const Tensor yb = run1("Cast", {f32({static_cast<int64_t>(xs.size())}, xs)}, {{"to", ir::Attribute::of(int64_t{16})}});
  for (size_t i = 0; i < xs.size(); ++i)
    ASSERT_EQ(static_cast<const uint16_t*>(yb.raw())[i], f32_to_bf16(xs[i])) << std::hex << std::bit_cast<uint32_t>(xs[i]);
}

// Sqrt's SIMD block and scalar tail over lengths 0..9; negatives give NaN (IEEE).
TEST(ElementwiseEdge, SqrtLengths) {
  for (int n = 0; n <= 9; ++n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i * i) - (i == 5 ? 100.0f : 0.0f);
    const auto y = values<float>(run1("Sqrt", {f32({n}, v)}));
    ASSERT_EQ(y.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      if (i == 5) EXPECT_TRUE(std::isnan(y[5]));
      else EXPECT_EQ(y[static_cast<size_t>(i)], static_cast<float>(i));
    }
  }
}

// Activations on hand-computed points (ONNX formulas).
TEST(ElementwiseEdge, ActivationFormulas) {
  const Tensor x = f32({4}, {-2, -0.5f, 0.5f, 3});
  EXPECT_EQ(values<float>(run1("HardSwish", {x})), (std::vector<float>{-2 * (0.5f - 2.0f / 6), -0.5f * (0.5f - 0.5f / 6),
                                                                       0.5f * (0.5f + 0.5f / 6), 3}));
  EXPECT_EQ(values<float>(run1("Shrink", {x}, {{"lambd", ir::Attribute::of(1.0f)}, {"bias", ir::Attribute::of(0.5f)}})),
            (std::vector<float>{-1.5f, 0, 0, 2.5f}));
  EXPECT_EQ(values<float>(run1("ThresholdedRelu", {x}, {{"alpha", ir::Attribute::of(0.5f)}})),
            (std::vector<float>{0, 0, 0, 3}));
  EXPECT_EQ(values<float>(run1("Sign", {x})), (std::vector<float>{-1, -1, 1, 1}));
  const auto g = values<float>(run1("Gelu", {x}, {}, 20));
  const auto gt = values<float>(run1("Gelu", {x}, {{"approximate", ir::Attribute::of(std::string("tanh"))}}, 20));
  for (size_t i = 0; i < 4; ++i) {
    const double v = x.data<float>()[i];
    EXPECT_NEAR(g[i], 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))), 1e-6);
    EXPECT_NEAR(gt[i], 0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v))), 1e-6);
  }
  // Relu keeps NaN (numpy.maximum(x, 0)); int8 Relu (Relu-14).
  EXPECT_TRUE(std::isnan(values<float>(run1("Relu", {f32({1}, {std::numeric_limits<float>::quiet_NaN()})}))[0]));
  EXPECT_EQ(values<int8_t>(run1("Relu", {Tensor::from<int8_t>({2}, {-3, 4})})), (std::vector<int8_t>{0, 4}));
}

// PRelu-6 (pytorch-era): a 1-D slope of C values applies per channel (axis 1).
TEST(ElementwiseEdge, PReluLegacyChannelSlope) {
  const Tensor x = f32({1, 2, 3}, {-1, -2, 3, -4, 5, -6});
  EXPECT_EQ(values<float>(run1("PRelu", {x, f32({2}, {0.5f, 2})}, {}, 6)), (std::vector<float>{-0.5f, -1, 3, -8, 5, -12}));
  // PRelu-9+: numpy broadcasting, so [3] applies along the last axis.
  EXPECT_EQ(values<float>(run1("PRelu", {x, f32({3}, {1, 0, 2})}, {}, 16)), (std::vector<float>{-1, 0, 3, -4, 5, -12}));
}

// Add-6 with broadcast=1, axis=0: B [2] runs along A's first axis.
TEST(ElementwiseEdge, LegacyAddAxis) {
  const Attrs a = {{"broadcast", ir::Attribute::of(int64_t{1})}, {"axis", ir::Attribute::of(int64_t{0})}};
  EXPECT_EQ(values<float>(run1("Add", {f32({2, 3}, {0, 0, 0, 0, 0, 0}), f32({2}, {1, 2})}, a, 6)),
            (std::vector<float>{1, 1, 1, 2, 2, 2}));
}

// ONNX Dropout in inference: y = x, mask all true (bool from opset 10, T
// before); training with ratio 0 is a plain copy too (the spec's wording).
TEST(ElementwiseEdge, Dropout) {
  const Tensor x = f32({3}, {1, 2, 3});
  auto outs = run_op("Dropout", {x}, {}, 13, 2);
  EXPECT_EQ(values<float>(outs[0]), values<float>(x));
  EXPECT_EQ(values<bool>(outs[1]), (std::vector<bool>{true, true, true}));
  outs = run_op("Dropout", {x}, {{"ratio", ir::Attribute::of(0.3f)}}, 7, 2);
  EXPECT_EQ(values<float>(outs[1]), (std::vector<float>{1, 1, 1}));
  outs = run_op("Dropout", {x, f32({}, {0.0f}), boolean({}, {true})}, {}, 13, 2);
  EXPECT_EQ(values<float>(outs[0]), values<float>(x));
}

// Empty tensors broadcast to empty outputs (numpy: (0,3) + (3,) -> (0,3)).
TEST(ElementwiseEdge, EmptyTensors) {
  const Tensor y = run1("Add", {f32({0, 3}, {}), f32({3}, {1, 2, 3})});
  EXPECT_EQ(y.shape(), (Shape{0, 3}));
  EXPECT_EQ(run1("Exp", {f32({0}, {})}).shape(), (Shape{0}));
  EXPECT_EQ(run1("Cast", {f32({0}, {})}, {{"to", ir::Attribute::of(int64_t{7})}}).shape(), (Shape{0}));
}

// Identity is a view of its input (no copy).
TEST(ElementwiseEdge, IdentityIsAView) {
  const Tensor x = f32({2}, {1, 2});
  EXPECT_EQ(run1("Identity", {x}).raw(), x.raw());
}

}  // namespace
}  // namespace qforge
