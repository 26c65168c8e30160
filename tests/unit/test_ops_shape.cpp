// Unit tests of the shape and data-movement ops (src/ops/shape.cpp): symbolic
// shape inference, views, error cases and edge cases the ONNX backend test
// data does not cover. Each test names the reference it checks against.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qforge/error.h"
#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/quant.h"
#include "qforge/thread_pool.h"

namespace qforge {
namespace {

using ir::Dim;
using ir::SymShape;
using ir::ValueInfo;
using Attrs = std::map<std::string, ir::Attribute>;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

ir::Node make_node(const std::string& op, size_t n_in, const std::vector<bool>& absent, size_t n_out,
                   const Attrs& attrs) {
  ir::Node n;
  n.name = "n_" + op;
  n.op_type = op;
  for (size_t i = 0; i < n_in; ++i)
    n.inputs.push_back(i < absent.size() && absent[i] ? "" : "in" + std::to_string(i));
  for (size_t i = 0; i < n_out; ++i) n.outputs.push_back("out" + std::to_string(i));
  n.attrs = attrs;
  return n;
}

const ops::OpDef& def_of(const std::string& op, int64_t opset) {
  const ops::OpDef* d = ops::OpRegistry::global().find("", op, opset);
  if (!d) throw std::runtime_error("no op " + op);
  return *d;
}

// An input for inference: its ValueInfo and, optionally, its constant value.
struct In {
  std::optional<ValueInfo> info;  // nullopt: absent
  std::optional<Tensor> value;
};
In sym(DType dt, SymShape s) { return {ValueInfo{dt, std::move(s)}, std::nullopt}; }
In unknown_shape(DType dt) { return {ValueInfo{dt, std::nullopt}, std::nullopt}; }
In konst(Tensor t) {
  ValueInfo vi{t.dtype(), ir::to_sym(t.shape())};
  return {vi, std::move(t)};
}
Tensor i64s(const std::vector<int64_t>& v) {
  return Tensor::from<int64_t>({static_cast<int64_t>(v.size())}, v);
}
Tensor f32s(Shape s, const std::vector<float>& v) { return Tensor::from<float>(std::move(s), v); }
Tensor iota_f32(Shape s) {
  Tensor t(DType::kF32, s);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(i);
  return t;
}

std::vector<ValueInfo> infer(const std::string& op, int64_t opset, const std::vector<In>& ins,
                             const Attrs& attrs = {}, size_t n_out = 1) {
  std::vector<bool> abs;
  std::vector<const ValueInfo*> infos;
  std::vector<const Tensor*> consts;
  for (const In& i : ins) {
    abs.push_back(!i.info.has_value());
    infos.push_back(i.info ? &*i.info : nullptr);
    consts.push_back(i.value ? &*i.value : nullptr);
  }
  const ir::Node node = make_node(op, ins.size(), abs, n_out, attrs);
  ops::InferContext ctx(node, opset, infos, consts);
  def_of(op, opset).infer(ctx);
  return ctx.outputs();
}

ThreadPool& pool() {
  static ThreadPool p(4);
  return p;
}

// Runs one op on concrete inputs; an empty Tensor() is an absent input.
std::vector<Tensor> run(const std::string& op, int64_t opset, const std::vector<Tensor>& ins,
                        const Attrs& attrs = {}, size_t n_out = 1) {
  std::vector<bool> abs;
  std::vector<const Tensor*> ptrs;
  for (const Tensor& t : ins) {
    abs.push_back(t.empty());
    ptrs.push_back(t.empty() ? nullptr : &t);
  }
  const ir::Node node = make_node(op, ins.size(), abs, n_out, attrs);
  ops::OpContext ctx(node, opset, ptrs, nullptr, &pool());
  def_of(op, opset).run(ctx);
  return ctx.outputs();
}

template <typename T>
std::vector<T> values(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<T>(p, p + t.numel());
}

ir::Attribute A(int64_t v) { return ir::Attribute::of(v); }
ir::Attribute A(int v) { return ir::Attribute::of(static_cast<int64_t>(v)); }
ir::Attribute A(std::vector<int64_t> v) { return ir::Attribute::of(std::move(v)); }
ir::Attribute A(const char* v) { return ir::Attribute::of(std::string(v)); }

std::string dims(const ValueInfo& v) { return v.shape ? ir::sym_shape_str(*v.shape) : "unknown"; }

// ---------------------------------------------------------------------------
// Reshape

// ONNX Reshape: "0 copies the input dimension", "-1 is inferred from the
// remaining dimensions": [batch, 3, 4] with shape [0, -1] is [batch, 12].
TEST(ShapeOpsInfer, ReshapeZeroAndMinusOneKeepSymbol) {
  auto out = infer("Reshape", 14, {sym(DType::kF32, {Dim::sym("batch"), 3, 4}), konst(i64s({0, -1}))});
  EXPECT_EQ(dims(out[0]), "[batch, 12]");
  EXPECT_EQ(out[0].dtype, DType::kF32);
  // [batch, 3, 4] -> [-1, 12]: the -1 must be batch (3 * 4 == 12 cancels).
  out = infer("Reshape", 14, {sym(DType::kF32, {Dim::sym("batch"), 3, 4}), konst(i64s({-1, 12}))});
  EXPECT_EQ(dims(out[0]), "[batch, 12]");
  // [2, seq, 8] -> [0, 0, 2, 4] (hand-computed: copies 2 and seq).
  out = infer("Reshape", 13, {sym(DType::kF32, {2, Dim::sym("seq"), 8}), konst(i64s({0, 0, 2, 4}))});
  EXPECT_EQ(dims(out[0]), "[2, seq, 2, 4]");
  // All known: [2, 3, 4] -> [4, -1] = [4, 6].
  out = infer("Reshape", 13, {sym(DType::kF32, {2, 3, 4}), konst(i64s({4, -1}))});
  EXPECT_EQ(dims(out[0]), "[4, 6]");
}

// A -1 that depends on a symbol times other factors can't be named: a fresh
// symbolic dimension (rank known), never a wrong number.
TEST(ShapeOpsInfer, ReshapeAmbiguousMinusOneIsFresh) {
  auto out = infer("Reshape", 14, {sym(DType::kF32, {Dim::sym("b"), Dim::sym("s"), 4}), konst(i64s({-1, 4}))});
  ASSERT_TRUE(out[0].shape);
  ASSERT_EQ(out[0].shape->size(), 2u);
  EXPECT_FALSE((*out[0].shape)[0].known());
  EXPECT_FALSE((*out[0].shape)[0].symbol.empty());
  EXPECT_EQ((*out[0].shape)[1], Dim(4));
}

// Shape known only at run time: the rank is the length of the shape input.
TEST(ShapeOpsInfer, ReshapeNonConstantShapeGivesRank) {
  auto out = infer("Reshape", 14, {sym(DType::kF32, {2, 3}), sym(DType::kI64, {3})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ(out[0].shape->size(), 3u);
  out = infer("Reshape", 14, {sym(DType::kF32, {2, 3}), sym(DType::kI64, {Dim::sym("n")})});
  EXPECT_FALSE(out[0].shape);
}

// ONNX Reshape-14: "allowzero ... it is invalid to have both 0 and -1".
TEST(ShapeOpsErrors, ReshapeAllowzeroWithMinusOne) {
  EXPECT_THROW(infer("Reshape", 14, {sym(DType::kF32, {2, 3}), konst(i64s({0, -1}))}, {{"allowzero", A(1)}}),
               Error);
  EXPECT_THROW(run("Reshape", 14, {iota_f32({2, 3}), i64s({0, -1})}, {{"allowzero", A(1)}}), Error);
}

// Reshape is a view (no copy); allowzero = 1 makes 0 a real zero dimension.
TEST(ShapeOpsRun, ReshapeIsAViewAndAllowzero) {
  const Tensor x = iota_f32({2, 3, 4});
  auto y = run("Reshape", 14, {x, i64s({0, -1})});
  EXPECT_EQ(y[0].shape(), (Shape{2, 12}));
  EXPECT_EQ(y[0].raw(), x.raw());
  const Tensor e(DType::kF32, {0, 3});
  y = run("Reshape", 14, {e, i64s({3, 0})}, {{"allowzero", A(1)}});
  EXPECT_EQ(y[0].shape(), (Shape{3, 0}));
  // Without allowzero, 0 copies input dim 1 (3): [3, 3] has 9 != 0 elements.
  EXPECT_THROW(run("Reshape", 14, {e, i64s({3, 0})}), Error);
  // Opset 1-4: the shape is an attribute.
  y = run("Reshape", 4, {x}, {{"shape", A(std::vector<int64_t>{4, -1})}});
  EXPECT_EQ(y[0].shape(), (Shape{4, 6}));
}

TEST(ShapeOpsErrors, ReshapeBadTargets) {
  const Tensor x = iota_f32({2, 3});
  EXPECT_THROW(run("Reshape", 13, {x, i64s({4, -1})}), Error);      // 6 % 4 != 0
  EXPECT_THROW(run("Reshape", 13, {x, i64s({-1, -1})}), Error);     // two -1
  EXPECT_THROW(run("Reshape", 13, {x, i64s({-2, 3})}), Error);      // < -1
  EXPECT_THROW(run("Reshape", 13, {x, i64s({0, 0, 0})}), Error);    // copies a missing dim
  EXPECT_THROW(run("Reshape", 13, {x, f32s({2}, {2, 3})}), Error);  // float shape
  EXPECT_THROW(run("Reshape", 13, {x}), Error);                     // missing shape input
  EXPECT_THROW(run("Reshape", 4, {x}), Error);                      // missing shape attribute
}

// ---------------------------------------------------------------------------
// Flatten, Squeeze, Unsqueeze

// ONNX Flatten: [d0..d(axis-1)] x [d(axis)..dn]; a symbolic outer factor alone
// keeps its symbol.
TEST(ShapeOpsInfer, FlattenSymbolic) {
  auto out = infer("Flatten", 13, {sym(DType::kF32, {Dim::sym("batch"), 3, 4})});
  EXPECT_EQ(dims(out[0]), "[batch, 12]");
  out = infer("Flatten", 13, {sym(DType::kF32, {Dim::sym("batch"), 3, 4})}, {{"axis", A(0)}});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ((*out[0].shape)[0], Dim(1));
  EXPECT_FALSE((*out[0].shape)[1].known());
  out = infer("Flatten", 13, {sym(DType::kF32, {2, 3, 4})}, {{"axis", A(-1)}});
  EXPECT_EQ(dims(out[0]), "[6, 4]");
}

TEST(ShapeOpsErrors, FlattenAxisOutOfRange) {
  EXPECT_THROW(run("Flatten", 13, {iota_f32({2, 3})}, {{"axis", A(3)}}), Error);
  EXPECT_THROW(run("Flatten", 9, {iota_f32({2, 3})}, {{"axis", A(-1)}}), Error);  // < 11: no negatives
  const auto y = run("Flatten", 13, {iota_f32({2, 3})}, {{"axis", A(2)}});
  EXPECT_EQ(y[0].shape(), (Shape{6, 1}));
}

// ONNX Unsqueeze-13: axes are an input; positions refer to the output rank.
TEST(ShapeOpsInfer, UnsqueezeSymbolic) {
  auto out = infer("Unsqueeze", 13, {sym(DType::kF32, {Dim::sym("batch"), 3}), konst(i64s({0, -1}))});
  EXPECT_EQ(dims(out[0]), "[1, batch, 3, 1]");
  out = infer("Unsqueeze", 11, {sym(DType::kF32, {Dim::sym("batch"), 3})}, {{"axes", A(std::vector<int64_t>{1})}});
  EXPECT_EQ(dims(out[0]), "[batch, 1, 3]");
  // Non-constant axes of known length: rank known.
  out = infer("Unsqueeze", 13, {sym(DType::kF32, {Dim::sym("batch"), 3}), sym(DType::kI64, {2})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ(out[0].shape->size(), 4u);
}

TEST(ShapeOpsErrors, UnsqueezeBadAxes) {
  const Tensor x = iota_f32({2, 3});
  EXPECT_THROW(run("Unsqueeze", 13, {x, i64s({1, 1})}), Error);  // duplicate
  EXPECT_THROW(run("Unsqueeze", 13, {x, i64s({3})}), Error);     // out of [-3, 3)
  EXPECT_THROW(run("Unsqueeze", 13, {x}), Error);                // missing axes
  EXPECT_THROW(run("Unsqueeze", 11, {x}), Error);                // missing attribute
  const auto y = run("Unsqueeze", 13, {x, i64s({-1, 0})});
  EXPECT_EQ(y[0].shape(), (Shape{1, 2, 3, 1}));
  EXPECT_EQ(y[0].raw(), x.raw());
}

// ONNX Squeeze: without axes, every dimension of size 1 goes; a symbolic dim
// might be 1, so the result's rank is unknown.
TEST(ShapeOpsInfer, SqueezeSymbolic) {
  auto out = infer("Squeeze", 13, {sym(DType::kF32, {Dim::sym("batch"), 1, 3})});
  EXPECT_FALSE(out[0].shape);
  out = infer("Squeeze", 13, {sym(DType::kF32, {Dim::sym("batch"), 1, 3}), konst(i64s({-2}))});
  EXPECT_EQ(dims(out[0]), "[batch, 3]");
  out = infer("Squeeze", 11, {sym(DType::kF32, {1, 2, 1})});
  EXPECT_EQ(dims(out[0]), "[2]");
  EXPECT_THROW(infer("Squeeze", 13, {sym(DType::kF32, {2, 3}), konst(i64s({0}))}), Error);
}

TEST(ShapeOpsErrors, SqueezeNonUnitAxis) {
  EXPECT_THROW(run("Squeeze", 13, {iota_f32({2, 1}), i64s({0})}), Error);
  EXPECT_THROW(run("Squeeze", 13, {iota_f32({2, 1}), i64s({2})}), Error);
  const auto y = run("Squeeze", 13, {iota_f32({1, 2, 1})});
  EXPECT_EQ(y[0].shape(), (Shape{2}));
}

// ---------------------------------------------------------------------------
// Shape, Size

// ONNX Shape-15: start/end clamp to [0, r] after adding r to negatives.
TEST(ShapeOpsInfer, ShapeIsKnownLengthI64) {
  auto out = infer("Shape", 13, {sym(DType::kF32, {Dim::sym("b"), 3, Dim()})});
  EXPECT_EQ(out[0].dtype, DType::kI64);
  EXPECT_EQ(dims(out[0]), "[3]");
  out = infer("Shape", 15, {sym(DType::kF32, {Dim::sym("b"), 3, Dim()})}, {{"start", A(1)}});
  EXPECT_EQ(dims(out[0]), "[2]");
  out = infer("Shape", 15, {sym(DType::kF32, {1, 2, 3, 4})}, {{"start", A(-10)}, {"end", A(-1)}});
  EXPECT_EQ(dims(out[0]), "[3]");
  out = infer("Shape", 15, {sym(DType::kF32, {1, 2})}, {{"start", A(2)}, {"end", A(1)}});
  EXPECT_EQ(dims(out[0]), "[0]");
  const auto y = run("Shape", 15, {iota_f32({2, 3, 4})}, {{"start", A(-2)}});
  EXPECT_EQ(values<int64_t>(y[0]), (std::vector<int64_t>{3, 4}));
  const auto z = run("Size", 13, {iota_f32({2, 3, 4})});
  EXPECT_EQ(z[0].shape(), Shape{});
  EXPECT_EQ(values<int64_t>(z[0]), (std::vector<int64_t>{24}));
}

// ---------------------------------------------------------------------------
// Concat

// ONNX Concat: the axis dimension is the sum, others must match.
TEST(ShapeOpsInfer, ConcatSymbolic) {
  auto out = infer("Concat", 13, {sym(DType::kF32, {Dim::sym("b"), 3}), sym(DType::kF32, {Dim::sym("b"), 5})},
                   {{"axis", A(-1)}});
  EXPECT_EQ(dims(out[0]), "[b, 8]");
  out = infer("Concat", 13, {sym(DType::kF32, {2, 3}), sym(DType::kF32, {Dim::sym("n"), 3})}, {{"axis", A(0)}});
  ASSERT_TRUE(out[0].shape);
  EXPECT_FALSE((*out[0].shape)[0].known());
  EXPECT_EQ((*out[0].shape)[1], Dim(3));
  // A symbolic non-axis dim in one input, known in another: known wins.
  out = infer("Concat", 13, {sym(DType::kF32, {Dim::sym("b"), 3}), sym(DType::kF32, {4, 5})}, {{"axis", A(1)}});
  EXPECT_EQ(dims(out[0]), "[4, 8]");
  EXPECT_THROW(infer("Concat", 13, {sym(DType::kF32, {2, 3}), sym(DType::kF32, {4, 5})}, {{"axis", A(1)}}),
               Error);
  // An input of unknown shape: the rank comes from the others, the axis is unknown.
  out = infer("Concat", 13, {sym(DType::kF32, {Dim::sym("b"), 3}), unknown_shape(DType::kF32)}, {{"axis", A(1)}});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ((*out[0].shape)[0], Dim::sym("b"));
  EXPECT_FALSE((*out[0].shape)[1].known());
}

TEST(ShapeOpsErrors, ConcatMismatch) {
  EXPECT_THROW(run("Concat", 13, {iota_f32({2, 3}), iota_f32({2, 3, 1})}, {{"axis", A(0)}}), Error);
  EXPECT_THROW(run("Concat", 13, {iota_f32({2, 3}), iota_f32({3, 3})}, {{"axis", A(1)}}), Error);
  EXPECT_THROW(run("Concat", 13, {iota_f32({2, 3}), i64s({1, 2, 3})}, {{"axis", A(0)}}), Error);
  EXPECT_THROW(run("Concat", 13, {iota_f32({2, 3})}, {{"axis", A(2)}}), Error);
  EXPECT_THROW(run("Concat", 13, {iota_f32({2, 3})}), Error);  // axis required from opset 4
  EXPECT_THROW(run("Concat", 13, {iota_f32({}), iota_f32({})}, {{"axis", A(0)}}), Error);  // scalars
}

// numpy.concatenate, hand-checked, including an empty input and the
// many-rows parallel path.
TEST(ShapeOpsRun, ConcatValues) {
  const auto y = run("Concat", 13, {f32s({2, 1}, {1, 2}), f32s({2, 0}, {}), f32s({2, 2}, {3, 4, 5, 6})},
                     {{"axis", A(1)}});
  EXPECT_EQ(y[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 3, 4, 2, 5, 6}));
  const Tensor a = iota_f32({1000, 3}), b = iota_f32({1000, 5});
  const auto z = run("Concat", 13, {a, b}, {{"axis", A(1)}});
  const float* p = z[0].data<float>();
  for (int64_t r = 0; r < 1000; ++r) {
    for (int64_t c = 0; c < 3; ++c) ASSERT_EQ(p[r * 8 + c], static_cast<float>(r * 3 + c));
    for (int64_t c = 0; c < 5; ++c) ASSERT_EQ(p[r * 8 + 3 + c], static_cast<float>(r * 5 + c));
  }
}

// ---------------------------------------------------------------------------
// Transpose

// Compared with a naive index computation: y[i] is x at the perm-mapped
// index. f32 (an iota) or u8 (bytes in a pattern; the SIMD byte transpose
// where the contiguous input axis lands next to the innermost one).
void check_transpose(const Shape& s, const std::vector<int64_t>& perm, DType t = DType::kF32) {
  Tensor x = iota_f32(s);
  if (t == DType::kU8) {
    x = Tensor(DType::kU8, s);
    auto* xp = static_cast<uint8_t*>(x.raw());
    for (int64_t i = 0; i < x.numel(); ++i) xp[i] = static_cast<uint8_t>((i * 97 + i / 251) % 256);
  }
  const auto y = run("Transpose", 13, {x}, {{"perm", A(perm)}});
  Shape os;
  for (int64_t p : perm) os.push_back(s[static_cast<size_t>(p)]);
  ASSERT_EQ(y[0].shape(), os);
  ASSERT_EQ(y[0].dtype(), t);
  const size_t es = y[0].nbytes() / static_cast<size_t>(std::max<int64_t>(y[0].numel(), 1));
  std::vector<int64_t> in_st(s.size(), 1);
  for (size_t k = s.size(); k-- > 1;) in_st[k - 1] = in_st[k] * s[k];
  std::vector<int64_t> c(os.size(), 0);
  const auto* yp = static_cast<const uint8_t*>(y[0].raw());
  const auto* xp = static_cast<const uint8_t*>(x.raw());
  for (int64_t i = 0; i < y[0].numel(); ++i) {
    int64_t src = 0;
    for (size_t k = 0; k < os.size(); ++k) src += c[k] * in_st[static_cast<size_t>(perm[k])];
    ASSERT_EQ(std::memcmp(yp + static_cast<size_t>(i) * es, xp + static_cast<size_t>(src) * es, es), 0)
        << "at " << i;
    for (size_t k = os.size(); k-- > 0;) {
      if (++c[k] < os[k]) break;
      c[k] = 0;
    }
  }
}

TEST(ShapeOpsRun, TransposeBytesMatchesNaive) {
  const DType u8 = DType::kU8;
  check_transpose({32, 7, 7, 64}, {0, 3, 1, 2}, u8);  // channels-last codes to NCHW
  check_transpose({3, 17, 5, 33}, {0, 3, 1, 2}, u8);  // partial 16 x 16 blocks
  check_transpose({40, 19}, {1, 0}, u8);              // 2-D
  check_transpose({2, 3, 18, 20}, {1, 0, 3, 2}, u8);  // two outer axes, permuted
  check_transpose({2, 5, 9, 70}, {0, 2, 3, 1}, u8);   // NCHW -> NHWC
  check_transpose({2, 3, 4, 5}, {0, 2, 1, 3}, u8);    // inner rows kept
}

TEST(ShapeOpsRun, TransposeMatchesNaive) {
  check_transpose({67, 131}, {1, 0});                 // tiled 2-D
  check_transpose({3, 40, 33}, {0, 2, 1});            // batched tiled
  check_transpose({2, 5, 9, 70}, {0, 2, 3, 1});       // NCHW -> NHWC
  check_transpose({2, 3, 4, 5}, {0, 2, 1, 3});        // inner rows kept
  check_transpose({4, 3, 2}, {2, 1, 0});              // default-like reverse
  check_transpose({3, 1, 5, 1}, {1, 3, 2, 0});        // size-1 axes
}

// Byte transposes that swap the two innermost output axes (both >= 16) go
// through 16 x 16 vector transposes: against the naive index map, with
// remainders on both axes and outer axes of their own strides.
TEST(ShapeOpsRun, ByteTransposesMatchNaive) {
  const auto check = [](const Shape& s, const std::vector<int64_t>& perm) {
    std::vector<uint8_t> v(static_cast<size_t>(shape_numel(s)));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(i % 251);
    const auto y = run("Transpose", 13, {Tensor::from<uint8_t>(s, v)}, {{"perm", A(perm)}});
    Shape os;
    for (int64_t p : perm) os.push_back(s[static_cast<size_t>(p)]);
    ASSERT_EQ(y[0].shape(), os);
    std::vector<int64_t> in_st(s.size(), 1);
    for (size_t k = s.size(); k-- > 1;) in_st[k - 1] = in_st[k] * s[k];
    std::vector<int64_t> c(os.size(), 0);
    const uint8_t* q = y[0].data<uint8_t>();
    for (int64_t i = 0; i < y[0].numel(); ++i) {
      int64_t src = 0;
      for (size_t k = 0; k < os.size(); ++k) src += c[k] * in_st[static_cast<size_t>(perm[k])];
      ASSERT_EQ(q[i], v[static_cast<size_t>(src)]) << "at " << i;
      for (size_t k = os.size(); k-- > 0;) {
        if (++c[k] < os[k]) break;
        c[k] = 0;
      }
    }
  };
  check({3, 50, 16}, {0, 2, 1});        // attention's K^T
  check({2, 4, 50, 16}, {0, 1, 3, 2});  // with heads
  check({2, 64, 49}, {0, 2, 1});        // channels-first -> channels-last
  check({33, 17}, {1, 0});              // remainders on both axes
  check({2, 20, 5, 40}, {0, 2, 3, 1});  // NCHW -> NHWC, 20 channels
}

// Transposes that keep every non-trivial axis in order are views.
TEST(ShapeOpsRun, TransposeOfUnitAxesIsView) {
  const Tensor x = iota_f32({1, 6, 1, 4});
  const auto y = run("Transpose", 13, {x}, {{"perm", A(std::vector<int64_t>{2, 1, 0, 3})}});
  EXPECT_EQ(y[0].shape(), (Shape{1, 6, 1, 4}));
  EXPECT_EQ(y[0].raw(), x.raw());
  // Default perm reverses the axes (ONNX spec).
  const auto z = run("Transpose", 13, {f32s({2, 3}, {1, 2, 3, 4, 5, 6})});
  EXPECT_EQ(values<float>(z[0]), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(ShapeOpsErrors, TransposeBadPerm) {
  EXPECT_THROW(run("Transpose", 13, {iota_f32({2, 3})}, {{"perm", A(std::vector<int64_t>{0, 0})}}), Error);
  EXPECT_THROW(run("Transpose", 13, {iota_f32({2, 3})}, {{"perm", A(std::vector<int64_t>{0})}}), Error);
  EXPECT_THROW(run("Transpose", 13, {iota_f32({2, 3})}, {{"perm", A(std::vector<int64_t>{0, 2})}}), Error);
  auto out = infer("Transpose", 13, {sym(DType::kF32, {Dim::sym("b"), 3, 4})},
                   {{"perm", A(std::vector<int64_t>{2, 0, 1})}});
  EXPECT_EQ(dims(out[0]), "[4, b, 3]");
}

// Other widths (1, 2, 8 bytes) move the same way.
TEST(ShapeOpsRun, TransposeOtherTypes) {
  std::vector<int64_t> v(40 * 30);
  std::iota(v.begin(), v.end(), int64_t{0});
  const auto y = run("Transpose", 13, {Tensor::from<int64_t>({40, 30}, v)});
  const int64_t* p = y[0].data<int64_t>();
  for (int64_t i = 0; i < 30; ++i)
    for (int64_t j = 0; j < 40; ++j) ASSERT_EQ(p[i * 40 + j], j * 30 + i);
  std::vector<uint8_t> b(20 * 12);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i);
  const auto z = run("Transpose", 13, {Tensor::from<uint8_t>({20, 12}, b)});
  const uint8_t* q = z[0].data<uint8_t>();
  for (int64_t i = 0; i < 12; ++i)
    for (int64_t j = 0; j < 20; ++j) ASSERT_EQ(q[i * 20 + j], static_cast<uint8_t>(j * 12 + i));
}

// ---------------------------------------------------------------------------
// Slice

// ONNX Slice: constant starts/ends on a symbolic input; INT_MAX ends mean
// "to the end", which keeps the symbol on a whole-axis slice.
TEST(ShapeOpsInfer, SliceSymbolic) {
  auto out = infer("Slice", 13, {sym(DType::kF32, {Dim::sym("b"), 10}), konst(i64s({2})), konst(i64s({kI64Max})),
                                 konst(i64s({1}))});
  EXPECT_EQ(dims(out[0]), "[b, 8]");
  out = infer("Slice", 13, {sym(DType::kF32, {Dim::sym("b"), 10}), konst(i64s({0, -3})),
                            konst(i64s({kI64Max, kI64Max}))});
  EXPECT_EQ(dims(out[0]), "[b, 3]");
  // Partial slice of a symbolic axis: fresh dimension.
  out = infer("Slice", 13, {sym(DType::kF32, {Dim::sym("b"), 10}), konst(i64s({1})), konst(i64s({3}))});
  ASSERT_TRUE(out[0].shape);
  EXPECT_NE((*out[0].shape)[0], Dim::sym("b"));
  EXPECT_EQ((*out[0].shape)[1], Dim(10));
  // Non-constant starts with constant axes: only the sliced axis changes.
  out = infer("Slice", 13, {sym(DType::kF32, {Dim::sym("b"), 10}), sym(DType::kI64, {1}), sym(DType::kI64, {1}),
                            konst(i64s({1}))});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ((*out[0].shape)[0], Dim::sym("b"));
  EXPECT_FALSE((*out[0].shape)[1].known());
  // Opset 1-9: attributes.
  out = infer("Slice", 9, {sym(DType::kF32, {5, 10})},
              {{"starts", A(std::vector<int64_t>{1})}, {"ends", A(std::vector<int64_t>{-1})},
               {"axes", A(std::vector<int64_t>{1})}});
  EXPECT_EQ(dims(out[0]), "[5, 8]");
}

// numpy: x[::-3] of arange(10) is [9, 6, 3, 0]; x[8:2:-2] is [8, 6, 4];
// out-of-range starts/ends clamp (ONNX Slice-13 text).
TEST(ShapeOpsRun, SliceNegativeStepsAndClamping) {
  const Tensor x = iota_f32({10});
  auto y = run("Slice", 13, {x, i64s({-1}), i64s({kI64Min}), i64s({0}), i64s({-3})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{9, 6, 3, 0}));
  y = run("Slice", 13, {x, i64s({8}), i64s({2}), Tensor(), i64s({-2})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{8, 6, 4}));
  y = run("Slice", 13, {x, i64s({100}), i64s({-100}), i64s({0}), i64s({-1})});
  EXPECT_EQ(y[0].numel(), 10);
  EXPECT_EQ(values<float>(y[0]).front(), 9.0f);
  y = run("Slice", 13, {x, i64s({5}), i64s({2})});  // empty
  EXPECT_EQ(y[0].shape(), (Shape{0}));
  y = run("Slice", 13, {x, i64s({1}), i64s({kI64Max}), i64s({0}), i64s({kI64Max})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1}));
  // Empty axis, negative step: nothing (no clamp to [0, -1]).
  y = run("Slice", 13, {Tensor(DType::kF32, {0}), i64s({-1}), i64s({kI64Min}), i64s({0}), i64s({-1})});
  EXPECT_EQ(y[0].shape(), (Shape{0}));
}

// A contiguous slice (rows of a row-major tensor) is a view; others copy.
TEST(ShapeOpsRun, SliceContiguousIsView) {
  const Tensor x = iota_f32({6, 4});
  auto y = run("Slice", 13, {x, i64s({2}), i64s({4})});
  EXPECT_EQ(y[0].shape(), (Shape{2, 4}));
  EXPECT_EQ(y[0].raw(), static_cast<const void*>(x.data<float>() + 8));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{8, 9, 10, 11, 12, 13, 14, 15}));
  y = run("Slice", 13, {x, i64s({1, 1}), i64s({3, 3})});
  EXPECT_NE(y[0].raw(), x.raw());
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{5, 6, 9, 10}));
}

TEST(ShapeOpsErrors, SliceBadArgs) {
  const Tensor x = iota_f32({4, 4});
  EXPECT_THROW(run("Slice", 13, {x, i64s({0}), i64s({2}), i64s({0}), i64s({0})}), Error);  // step 0
  EXPECT_THROW(run("Slice", 13, {x, i64s({0, 0}), i64s({2})}), Error);                      // lengths
  EXPECT_THROW(run("Slice", 13, {x, i64s({0}), i64s({2}), i64s({2})}), Error);              // axis
  EXPECT_THROW(run("Slice", 13, {x, i64s({0, 0}), i64s({2, 2}), i64s({1, -1})}), Error);    // repeated
  EXPECT_THROW(run("Slice", 13, {x, i64s({0})}), Error);                                    // no ends
}

// ---------------------------------------------------------------------------
// Gather family

// ONNX Gather: output = data[:axis] + indices.shape + data[axis+1:].
TEST(ShapeOpsInfer, GatherSymbolic) {
  auto out = infer("Gather", 13, {sym(DType::kF32, {Dim::sym("b"), 5, 7}), sym(DType::kI64, {2, Dim::sym("k")})},
                   {{"axis", A(1)}});
  EXPECT_EQ(dims(out[0]), "[b, 2, k, 7]");
  out = infer("Gather", 13, {sym(DType::kI64, {3}), konst(Tensor::from<int64_t>({}, {0}))});
  EXPECT_EQ(dims(out[0]), "[]");
  EXPECT_THROW(infer("Gather", 13, {sym(DType::kF32, {3}), sym(DType::kF32, {2})}), Error);
}

// Negative indices count from the end; out of range is an Error (ONNX
// Gather-13: "accepted range is [-s, s-1]").
TEST(ShapeOpsRun, GatherIndices) {
  const Tensor x = f32s({3, 2}, {1, 2, 3, 4, 5, 6});
  auto y = run("Gather", 13, {x, i64s({-1, 0})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{5, 6, 1, 2}));
  y = run("Gather", 13, {x, Tensor::from<int32_t>({2, 1}, {1, -2})}, {{"axis", A(1)}});
  EXPECT_EQ(y[0].shape(), (Shape{3, 2, 1}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{2, 1, 4, 3, 6, 5}));
  y = run("Gather", 13, {x, Tensor::from<int64_t>({}, {1})});  // scalar index: a view
  EXPECT_EQ(y[0].shape(), (Shape{2}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{3, 4}));
  EXPECT_THROW(run("Gather", 13, {x, i64s({3})}), Error);
  EXPECT_THROW(run("Gather", 13, {x, i64s({-4})}), Error);
  EXPECT_THROW(run("Gather", 13, {x, i64s({0})}, {{"axis", A(2)}}), Error);
  EXPECT_THROW(run("Gather", 13, {x, f32s({1}, {0})}), Error);
}

// ONNX GatherElements examples (axis 1 and axis 0), plus an out-of-range
// index and a shape mismatch.
TEST(ShapeOpsRun, GatherElements) {
  auto y = run("GatherElements", 13,
               {f32s({2, 2}, {1, 2, 3, 4}), Tensor::from<int64_t>({2, 2}, {0, 0, 1, 0})}, {{"axis", A(1)}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 1, 4, 3}));
  y = run("GatherElements", 13,
          {f32s({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}), Tensor::from<int32_t>({2, 3}, {1, 2, 0, 2, 0, -3})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{4, 8, 3, 7, 2, 3}));
  EXPECT_THROW(run("GatherElements", 13, {f32s({2, 2}, {1, 2, 3, 4}), Tensor::from<int64_t>({1, 1}, {2})}),
               Error);
  EXPECT_THROW(run("GatherElements", 13, {f32s({2, 2}, {1, 2, 3, 4}), Tensor::from<int64_t>({1, 3}, {0, 0, 0})}),
               Error);
  EXPECT_THROW(run("GatherElements", 13, {f32s({2, 2}, {1, 2, 3, 4}), i64s({0})}), Error);  // rank
}

// ONNX GatherND example 5 (batch_dims = 1) and an out-of-range tuple.
TEST(ShapeOpsRun, GatherNDBatchDims) {
  const Tensor data = Tensor::from<int32_t>({2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  auto y = run("GatherND", 13, {data, Tensor::from<int64_t>({2, 1}, {1, 0})}, {{"batch_dims", A(1)}});
  EXPECT_EQ(y[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(values<int32_t>(y[0]), (std::vector<int32_t>{2, 3, 4, 5}));
  y = run("GatherND", 13, {data, Tensor::from<int64_t>({2, 3}, {0, 1, 1, 1, 0, -1})});
  EXPECT_EQ(values<int32_t>(y[0]), (std::vector<int32_t>{3, 5}));
  EXPECT_THROW(run("GatherND", 13, {data, Tensor::from<int64_t>({1, 2}, {2, 0})}), Error);
  EXPECT_THROW(run("GatherND", 13, {data, Tensor::from<int64_t>({1, 4}, {0, 0, 0, 0})}), Error);
  EXPECT_THROW(run("GatherND", 13, {data, Tensor::from<int64_t>({1, 1}, {0})}, {{"batch_dims", A(3)}}), Error);
  auto out = infer("GatherND", 13, {sym(DType::kF32, {Dim::sym("b"), 4, 5}), sym(DType::kI64, {Dim::sym("n"), 1})});
  EXPECT_EQ(dims(out[0]), "[n, 4, 5]");
}

// ---------------------------------------------------------------------------
// Scatter family

// ONNX ScatterElements-16 reductions (hand-computed, duplicates accumulate).
TEST(ShapeOpsRun, ScatterElementsReductions) {
  const Tensor data = f32s({1, 5}, {1, 2, 3, 4, 5});
  const Tensor idx = Tensor::from<int64_t>({1, 3}, {1, 1, -1});
  const Tensor upd = f32s({1, 3}, {2, 3, 10});
  auto y = run("ScatterElements", 16, {data, idx, upd}, {{"axis", A(1)}, {"reduction", A("add")}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 7, 3, 4, 15}));
  y = run("ScatterElements", 16, {data, idx, upd}, {{"axis", A(1)}, {"reduction", A("mul")}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 12, 3, 4, 50}));
  y = run("ScatterElements", 18, {data, idx, upd}, {{"axis", A(1)}, {"reduction", A("max")}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 3, 3, 4, 10}));
  // The data input is not modified.
  EXPECT_EQ(values<float>(data), (std::vector<float>{1, 2, 3, 4, 5}));
  EXPECT_THROW(run("ScatterElements", 16, {data, idx, upd}, {{"axis", A(1)}, {"reduction", A("max")}}), Error);
  EXPECT_THROW(run("ScatterElements", 13, {data, Tensor::from<int64_t>({1, 1}, {5}), f32s({1, 1}, {0})},
                   {{"axis", A(1)}}),
               Error);
  EXPECT_THROW(run("ScatterElements", 13, {data, idx, f32s({1, 2}, {0, 0})}, {{"axis", A(1)}}), Error);
  EXPECT_THROW(run("ScatterElements", 13, {data, idx, Tensor::from<int64_t>({1, 3}, {0, 0, 0})}, {{"axis", A(1)}}),
               Error);
}

// ONNX ScatterND: slices replaced / accumulated (hand-computed).
TEST(ShapeOpsRun, ScatterND) {
  const Tensor data = f32s({4, 2}, {1, 1, 2, 2, 3, 3, 4, 4});
  const Tensor idx = Tensor::from<int64_t>({3, 1}, {0, -1, 0});
  const Tensor upd = f32s({3, 2}, {5, 6, 7, 8, 1, 1});
  auto y = run("ScatterND", 16, {data, idx, upd}, {{"reduction", A("add")}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{7, 8, 2, 2, 3, 3, 11, 12}));
  y = run("ScatterND", 13, {data, Tensor::from<int64_t>({1, 2}, {2, 1}), f32s({1}, {9})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 1, 2, 2, 3, 9, 4, 4}));
  EXPECT_THROW(run("ScatterND", 13, {data, Tensor::from<int64_t>({1, 1}, {4}), f32s({1, 2}, {0, 0})}), Error);
  EXPECT_THROW(run("ScatterND", 13, {data, idx, f32s({3}, {0, 0, 0})}), Error);
}

// ---------------------------------------------------------------------------
// Expand, Tile

// ONNX Expand: bidirectional broadcasting of the input with the shape.
TEST(ShapeOpsInfer, ExpandSymbolic) {
  auto out = infer("Expand", 13, {sym(DType::kF32, {Dim::sym("b"), 1}), konst(i64s({1, 4}))});
  EXPECT_EQ(dims(out[0]), "[b, 4]");
  out = infer("Expand", 13, {sym(DType::kF32, {3, 1}), konst(i64s({2, 1, 6}))});
  EXPECT_EQ(dims(out[0]), "[2, 3, 6]");
  out = infer("Expand", 13, {sym(DType::kF32, {3, 1}), sym(DType::kI64, {3})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ(out[0].shape->size(), 3u);
  EXPECT_EQ((*out[0].shape)[1], Dim(3));
  EXPECT_THROW(infer("Expand", 13, {sym(DType::kF32, {3, 2}), konst(i64s({4, 5}))}), Error);
}

// numpy.broadcast_to([[1], [2], [3]], (2, 3, 2)), and the identity case as a view.
TEST(ShapeOpsRun, ExpandValues) {
  const Tensor x = f32s({3, 1}, {1, 2, 3});
  auto y = run("Expand", 13, {x, i64s({2, 1, 2})});
  EXPECT_EQ(y[0].shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}));
  y = run("Expand", 13, {x, i64s({1})});
  EXPECT_EQ(y[0].raw(), x.raw());
  EXPECT_THROW(run("Expand", 13, {x, i64s({2, 2})}), Error);
  EXPECT_THROW(run("Expand", 13, {x, i64s({-1})}), Error);
}

// numpy.tile([[1, 2], [3, 4]], (2, 3)) (hand-checked).
TEST(ShapeOpsRun, TileValues) {
  const auto y = run("Tile", 13, {f32s({2, 2}, {1, 2, 3, 4}), i64s({2, 3})});
  EXPECT_EQ(y[0].shape(), (Shape{4, 6}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4,
                                                      1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4}));
  EXPECT_THROW(run("Tile", 13, {f32s({2, 2}, {1, 2, 3, 4}), i64s({2})}), Error);
  EXPECT_THROW(run("Tile", 13, {f32s({2, 2}, {1, 2, 3, 4}), i64s({2, -1})}), Error);
  const auto z = run("Tile", 13, {f32s({2, 2}, {1, 2, 3, 4}), i64s({0, 1})});
  EXPECT_EQ(z[0].shape(), (Shape{0, 2}));
  auto out = infer("Tile", 13, {sym(DType::kF32, {Dim::sym("b"), 3}), konst(i64s({1, 2}))});
  EXPECT_EQ(dims(out[0]), "[b, 6]");
}

// ---------------------------------------------------------------------------
// Split

// ONNX Split-18: num_outputs with an uneven last chunk (7 -> 3, 3, 1).
TEST(ShapeOpsRun, SplitNumOutputsUneven) {
  const Tensor x = iota_f32({7});
  const auto y = run("Split", 18, {x}, {{"num_outputs", A(3)}}, 3);
  ASSERT_EQ(y.size(), 3u);
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{0, 1, 2}));
  EXPECT_EQ(values<float>(y[1]), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(values<float>(y[2]), (std::vector<float>{6}));
  // Splits along the outermost axis are views.
  EXPECT_EQ(y[1].raw(), static_cast<const void*>(x.data<float>() + 3));
  auto out = infer("Split", 18, {sym(DType::kF32, {7, Dim::sym("b")})}, {{"num_outputs", A(3)}}, 3);
  EXPECT_EQ(dims(out[2]), "[1, b]");
  // Before opset 18 an uneven equal split is an error.
  EXPECT_THROW(run("Split", 13, {x}, {}, 3), Error);
  EXPECT_THROW(run("Split", 18, {x}, {{"num_outputs", A(2)}}, 3), Error);
}

TEST(ShapeOpsRun, SplitInnerAxisAndErrors) {
  const Tensor x = iota_f32({2, 5});
  auto y = run("Split", 13, {x, i64s({2, 3})}, {{"axis", A(1)}}, 2);
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{0, 1, 5, 6}));
  EXPECT_EQ(values<float>(y[1]), (std::vector<float>{2, 3, 4, 7, 8, 9}));
  y = run("Split", 11, {x}, {{"axis", A(-1)}, {"split", A(std::vector<int64_t>{4, 1})}}, 2);
  EXPECT_EQ(values<float>(y[1]), (std::vector<float>{4, 9}));
  EXPECT_THROW(run("Split", 13, {x, i64s({2, 2})}, {{"axis", A(1)}}, 2), Error);    // sum 4 != 5
  EXPECT_THROW(run("Split", 13, {x, i64s({5})}, {{"axis", A(1)}}, 2), Error);       // count
  EXPECT_THROW(run("Split", 13, {x, i64s({6, -1})}, {{"axis", A(1)}}, 2), Error);   // negative
  auto out = infer("Split", 13, {sym(DType::kF32, {Dim::sym("b"), 6}), konst(i64s({2, 4}))}, {{"axis", A(1)}}, 2);
  EXPECT_EQ(dims(out[0]), "[b, 2]");
  EXPECT_EQ(dims(out[1]), "[b, 4]");
}

// ---------------------------------------------------------------------------
// Pad

// numpy.pad([1, 2, 3], (2, 2), mode) for reflect / edge / constant, and
// ONNX Pad-19 wrap (numpy 'wrap').
TEST(ShapeOpsRun, PadModes) {
  const Tensor x = f32s({3}, {1, 2, 3});
  auto y = run("Pad", 13, {x, i64s({2, 2})}, {{"mode", A("reflect")}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{3, 2, 1, 2, 3, 2, 1}));
  y = run("Pad", 13, {x, i64s({2, 2})}, {{"mode", A("edge")}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 1, 1, 2, 3, 3, 3}));
  y = run("Pad", 13, {x, i64s({1, 2}), f32s({}, {9})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{9, 1, 2, 3, 9, 9}));
  y = run("Pad", 19, {x, i64s({2, 2})}, {{"mode", A("wrap")}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{2, 3, 1, 2, 3, 1, 2}));
  // Negative pads crop.
  y = run("Pad", 13, {x, i64s({-1, 1})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{2, 3, 0}));
  // Opset 2-10: attributes, float value.
  y = run("Pad", 2, {x}, {{"pads", A(std::vector<int64_t>{1, 0})}, {"value", ir::Attribute::of(1.5f)}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1.5f, 1, 2, 3}));
  EXPECT_THROW(run("Pad", 13, {x, i64s({2, 2})}, {{"mode", A("wrap")}}), Error);  // wrap is opset 19
}

// 2-D constant pad (numpy.pad) and ONNX Pad-18 axes input.
TEST(ShapeOpsRun, Pad2DAndAxes) {
  const Tensor x = f32s({2, 2}, {1, 2, 3, 4});
  auto y = run("Pad", 13, {x, i64s({1, 0, 0, 1})});
  EXPECT_EQ(y[0].shape(), (Shape{3, 3}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{0, 0, 0, 1, 2, 0, 3, 4, 0}));
  y = run("Pad", 18, {x, i64s({1, 1}), Tensor(), i64s({-1})}, {{"mode", A("edge")}});
  EXPECT_EQ(y[0].shape(), (Shape{2, 4}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 1, 2, 2, 3, 3, 4, 4}));
  EXPECT_THROW(run("Pad", 13, {x, i64s({1, 1})}), Error);               // 2 pads for rank 2
  EXPECT_THROW(run("Pad", 13, {x, i64s({-3, 0, 0, 0})}), Error);        // negative size
  EXPECT_THROW(run("Pad", 13, {x, i64s({1, 0, 0, 0}), Tensor::from<int64_t>({}, {1})}), Error);  // value type
  EXPECT_THROW(run("Pad", 13, {Tensor(DType::kF32, {0, 2}), i64s({1, 0, 0, 0})}, {{"mode", A("reflect")}}),
               Error);
  auto out = infer("Pad", 13, {sym(DType::kF32, {Dim::sym("b"), 3}), konst(i64s({0, 1, 0, 1}))});
  EXPECT_EQ(dims(out[0]), "[b, 5]");
}

// ---------------------------------------------------------------------------
// ConstantOfShape, Range, NonZero, Trilu, OneHot, EyeLike, DepthToSpace

// ONNX ConstantOfShape: default value is f32 0; the value attribute's type
// decides the output type.
TEST(ShapeOpsRun, ConstantOfShape) {
  auto y = run("ConstantOfShape", 13, {i64s({2, 3})});
  EXPECT_EQ(y[0].dtype(), DType::kF32);
  EXPECT_EQ(values<float>(y[0]), std::vector<float>(6, 0.0f));
  y = run("ConstantOfShape", 13, {i64s({2})}, {{"value", ir::Attribute::of(Tensor::from<int64_t>({1}, {7}))}});
  EXPECT_EQ(values<int64_t>(y[0]), (std::vector<int64_t>{7, 7}));
  EXPECT_THROW(run("ConstantOfShape", 13, {i64s({-1})}), Error);
  auto out = infer("ConstantOfShape", 13, {konst(i64s({4, 5}))},
                   {{"value", ir::Attribute::of(Tensor::from<int32_t>({1}, {1}))}});
  EXPECT_EQ(out[0].dtype, DType::kI32);
  EXPECT_EQ(dims(out[0]), "[4, 5]");
}

// numpy.arange semantics: ceil((limit - start) / delta) elements.
TEST(ShapeOpsRun, Range) {
  auto y = run("Range", 11, {Tensor::from<int32_t>({}, {10}), Tensor::from<int32_t>({}, {4}),
                             Tensor::from<int32_t>({}, {-3})});
  EXPECT_EQ(values<int32_t>(y[0]), (std::vector<int32_t>{10, 7}));
  y = run("Range", 11, {f32s({}, {0}), f32s({}, {1}), f32s({}, {0.25f})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{0, 0.25f, 0.5f, 0.75f}));
  y = run("Range", 11, {f32s({}, {1}), f32s({}, {0}), f32s({}, {1})});
  EXPECT_EQ(y[0].shape(), (Shape{0}));
  EXPECT_THROW(run("Range", 11, {f32s({}, {0}), f32s({}, {1}), f32s({}, {0})}), Error);
  EXPECT_THROW(run("Range", 11, {f32s({}, {0}), i64s({1}), f32s({}, {1})}), Error);
  auto out = infer("Range", 11, {konst(Tensor::from<int64_t>({}, {0})), konst(Tensor::from<int64_t>({}, {10})),
                                 konst(Tensor::from<int64_t>({}, {3}))});
  EXPECT_EQ(dims(out[0]), "[4]");
  out = infer("Range", 11, {sym(DType::kI64, {}), sym(DType::kI64, {}), sym(DType::kI64, {})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ(out[0].shape->size(), 1u);
}

// numpy.nonzero: row-major coordinates; -0.0 (f16 0x8000) is zero.
TEST(ShapeOpsRun, NonZero) {
  auto y = run("NonZero", 13, {f32s({2, 2}, {1, 0, -0.0f, 3})});
  EXPECT_EQ(y[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(values<int64_t>(y[0]), (std::vector<int64_t>{0, 1, 0, 1}));
  Tensor h(DType::kF16, {3});
  uint16_t* p = static_cast<uint16_t*>(h.raw());
  p[0] = 0x8000;
  p[1] = f32_to_f16(2.0f);
  p[2] = 0;
  y = run("NonZero", 13, {h});
  EXPECT_EQ(values<int64_t>(y[0]), (std::vector<int64_t>{1}));
  auto out = infer("NonZero", 13, {sym(DType::kF32, {Dim::sym("b"), 3})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ((*out[0].shape)[0], Dim(2));
}

// ONNX Trilu (numpy.triu / numpy.tril), including a k far outside the matrix.
TEST(ShapeOpsRun, Trilu) {
  const Tensor x = f32s({2, 3}, {1, 2, 3, 4, 5, 6});
  auto y = run("Trilu", 14, {x, Tensor::from<int64_t>({}, {1})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{0, 2, 3, 0, 0, 6}));
  y = run("Trilu", 14, {x}, {{"upper", A(0)}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 0, 0, 4, 5, 0}));
  y = run("Trilu", 14, {x, Tensor::from<int64_t>({}, {kI64Max})}, {{"upper", A(0)}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  y = run("Trilu", 14, {x, Tensor::from<int64_t>({}, {kI64Min})});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_THROW(run("Trilu", 14, {f32s({3}, {1, 2, 3})}), Error);
}

// ONNX OneHot: axis 0 inserts depth first; negative indices count from
// depth; out-of-range indices give all off values.
TEST(ShapeOpsRun, OneHot) {
  auto y = run("OneHot", 11, {i64s({0, -1, 5}), f32s({}, {3}), f32s({2}, {0, 1})}, {{"axis", A(0)}});
  EXPECT_EQ(y[0].shape(), (Shape{3, 3}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{1, 0, 0, 0, 0, 0, 0, 1, 0}));
  y = run("OneHot", 11, {f32s({2}, {1.0f, NAN}), i64s({2}), Tensor::from<int32_t>({2}, {-1, 7})});
  EXPECT_EQ(y[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(values<int32_t>(y[0]), (std::vector<int32_t>{-1, 7, -1, -1}));
  EXPECT_THROW(run("OneHot", 11, {i64s({0}), f32s({}, {0}), f32s({2}, {0, 1})}), Error);
  EXPECT_THROW(run("OneHot", 11, {i64s({0}), f32s({}, {2}), f32s({3}, {0, 1, 2})}), Error);
  auto out = infer("OneHot", 11, {sym(DType::kI64, {Dim::sym("b")}), konst(Tensor::from<int64_t>({}, {10})),
                                  sym(DType::kF32, {2})});
  EXPECT_EQ(dims(out[0]), "[b, 10]");
}

// ONNX EyeLike: ones on the k-th diagonal, dtype attribute (ONNX type ids).
TEST(ShapeOpsRun, EyeLike) {
  auto y = run("EyeLike", 9, {iota_f32({2, 3})}, {{"k", A(1)}, {"dtype", A(7)}});  // 7 = INT64
  EXPECT_EQ(y[0].dtype(), DType::kI64);
  EXPECT_EQ(values<int64_t>(y[0]), (std::vector<int64_t>{0, 1, 0, 0, 0, 1}));
  y = run("EyeLike", 9, {iota_f32({2, 2})}, {{"k", A(kI64Max)}});
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_THROW(run("EyeLike", 9, {iota_f32({2})}), Error);
}

// DepthToSpace CRD vs DCR on one channel block (ONNX doc formulas).
TEST(ShapeOpsRun, DepthToSpaceModes) {
  const Tensor x = iota_f32({1, 4, 1, 1});
  auto y = run("DepthToSpace", 13, {x}, {{"blocksize", A(2)}, {"mode", A("CRD")}});
  EXPECT_EQ(y[0].shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{0, 1, 2, 3}));
  const Tensor x8 = iota_f32({1, 8, 1, 1});
  y = run("DepthToSpace", 13, {x8}, {{"blocksize", A(2)}, {"mode", A("DCR")}});
  EXPECT_EQ(y[0].shape(), (Shape{1, 2, 2, 2}));
  // DCR: output channel c, block (i, j) reads input channel (i*2 + j)*2 + c.
  EXPECT_EQ(values<float>(y[0]), (std::vector<float>{0, 2, 4, 6, 1, 3, 5, 7}));
  // SpaceToDepth undoes DCR DepthToSpace.
  const auto z = run("SpaceToDepth", 13, {y[0]}, {{"blocksize", A(2)}});
  EXPECT_EQ(values<float>(z[0]), values<float>(x8));
  EXPECT_THROW(run("DepthToSpace", 13, {iota_f32({1, 3, 1, 1})}, {{"blocksize", A(2)}}), Error);
  EXPECT_THROW(run("SpaceToDepth", 13, {iota_f32({1, 1, 3, 2})}, {{"blocksize", A(2)}}), Error);
  EXPECT_THROW(run("DepthToSpace", 13, {iota_f32({4, 1, 1})}, {{"blocksize", A(2)}}), Error);
  auto out = infer("DepthToSpace", 13, {sym(DType::kF32, {Dim::sym("n"), 8, 3, 5})}, {{"blocksize", A(2)}});
  EXPECT_EQ(dims(out[0]), "[n, 2, 6, 10]");
}

// Ops that only move bytes take every non-packed type, bool included.
TEST(ShapeOpsRun, BoolAndHalfData) {
  const Tensor b = Tensor::from<bool>({2, 2}, {true, false, false, true});
  const auto y = run("Transpose", 13, {b});
  EXPECT_EQ(values<bool>(y[0]), (std::vector<bool>{true, false, false, true}));
  const auto z = run("Concat", 13, {b, b}, {{"axis", A(0)}});
  EXPECT_EQ(z[0].shape(), (Shape{4, 2}));
  Tensor h(DType::kF16, {2});
  const auto w = run("Pad", 2, {h}, {{"pads", A(std::vector<int64_t>{1, 0})}, {"value", ir::Attribute::of(1.0f)}});
  EXPECT_EQ(static_cast<const uint16_t*>(w[0].raw())[0], f32_to_f16(1.0f));
}

}  // namespace
}  // namespace qforge

namespace qforge {
namespace {

// Inference must never crash on unknown shapes or types: it leaves the
// output unknown (or of known rank) or throws qforge::Error (the brief's
// contract for infer; checked against "no exception other than Error").
TEST(ShapeOpsInfer, UnknownInputsNeverCrash) {
  struct Case {
    const char* op;
    int64_t opset;
    size_t n_in, n_out;
    Attrs attrs;
  };
  const std::vector<Case> cases = {
      {"Reshape", 14, 2, 1, {}},          {"Reshape", 4, 1, 1, {{"shape", A(std::vector<int64_t>{-1})}}},
      {"Flatten", 13, 1, 1, {}},          {"Squeeze", 13, 2, 1, {}},
      {"Squeeze", 11, 1, 1, {}},          {"Unsqueeze", 13, 2, 1, {}},
      {"Transpose", 13, 1, 1, {}},        {"Concat", 13, 3, 1, {{"axis", A(0)}}},
      {"Split", 13, 2, 2, {}},            {"Split", 18, 1, 3, {{"num_outputs", A(3)}}},
      {"Slice", 13, 5, 1, {}},            {"Gather", 13, 2, 1, {}},
      {"GatherElements", 13, 2, 1, {}},   {"GatherND", 13, 2, 1, {}},
      {"ScatterElements", 16, 3, 1, {}},  {"ScatterND", 16, 3, 1, {}},
      {"Expand", 13, 2, 1, {}},           {"Tile", 13, 2, 1, {}},
      {"Pad", 18, 4, 1, {}},              {"Shape", 15, 1, 1, {}},
      {"Size", 13, 1, 1, {}},             {"ConstantOfShape", 13, 1, 1, {}},
      {"Range", 11, 3, 1, {}},            {"NonZero", 13, 1, 1, {}},
      {"DepthToSpace", 13, 1, 1, {{"blocksize", A(2)}}},
      {"SpaceToDepth", 13, 1, 1, {{"blocksize", A(2)}}},
      {"Trilu", 14, 2, 1, {}},            {"OneHot", 11, 3, 1, {}},
      {"EyeLike", 9, 1, 1, {}},
  };
  for (const Case& c : cases) {
    for (int variant = 0; variant < 2; ++variant) {
      std::vector<In> ins;
      for (size_t i = 0; i < c.n_in; ++i)
        ins.push_back(variant == 0 ? unknown_shape(DType::kF32) : In{ValueInfo{}, std::nullopt});
      try {
        (void)infer(c.op, c.opset, ins, c.attrs, c.n_out);
      } catch (const Error&) {
        // acceptable: a clear error
      } catch (const std::exception& e) {
        ADD_FAILURE() << c.op << " threw a non-qforge exception: " << e.what();
      }
    }
  }
}

// Rank-known, symbolic inputs with non-constant second inputs: outputs keep
// what is known (ONNX shape-inference style), checked by hand.
TEST(ShapeOpsInfer, NonConstantArgumentsKeepRank) {
  auto out = infer("Tile", 13, {sym(DType::kF32, {Dim::sym("b"), 3}), sym(DType::kI64, {2})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ(out[0].shape->size(), 2u);
  out = infer("Pad", 13, {sym(DType::kF32, {Dim::sym("b"), 3}), sym(DType::kI64, {4})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ(out[0].shape->size(), 2u);
  out = infer("ConstantOfShape", 13, {sym(DType::kI64, {3})});
  ASSERT_TRUE(out[0].shape);
  EXPECT_EQ(out[0].shape->size(), 3u);
  EXPECT_EQ(out[0].dtype, DType::kF32);
  out = infer("Split", 13, {sym(DType::kF32, {Dim::sym("b"), 6}), sym(DType::kI64, {2})}, {{"axis", A(1)}}, 2);
  ASSERT_TRUE(out[1].shape);
  EXPECT_EQ((*out[1].shape)[0], Dim::sym("b"));
  EXPECT_FALSE((*out[1].shape)[1].known());
}

}  // namespace
}  // namespace qforge

namespace qforge {
namespace {

// Hostile pads (near INT64 limits) are an Error, never signed overflow
// (UBSan would abort) or a huge allocation.
TEST(ShapeOpsErrors, PadExtremePads) {
  const Tensor x = iota_f32({10});
  EXPECT_THROW(run("Pad", 13, {x, i64s({-kI64Max, kI64Max})}), Error);
  EXPECT_THROW(run("Pad", 13, {x, i64s({kI64Max, kI64Max})}), Error);
  auto out = infer("Pad", 13, {sym(DType::kF32, {10}), konst(i64s({kI64Max, kI64Max}))});
  ASSERT_TRUE(out[0].shape);
  EXPECT_FALSE((*out[0].shape)[0].known());
}

}  // namespace
}  // namespace qforge
