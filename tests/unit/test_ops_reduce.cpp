// Unit tests of the reduction-family ops (src/ops/reduce.cpp): Reduce*,
// ArgMax/ArgMin, TopK, CumSum, Resize/Upsample and Einsum. They cover what
// the ONNX backend test data does not: symbolic shape inference, error cases,
// empty reductions, the threaded and general (alternating axes) paths, and
// edge cases. Each test says which reference it checks against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qforge/error.h"
#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/thread_pool.h"

namespace qforge {
namespace {

using ir::Dim;
using ir::SymShape;
using ir::ValueInfo;
using Attrs = std::map<std::string, ir::Attribute>;

ir::Attribute ints(std::vector<int64_t> v) { return ir::Attribute::of(std::move(v)); }
ir::Attribute i1(int64_t v) { return ir::Attribute::of(v); }
ir::Attribute str(const std::string& s) { return ir::Attribute::of(s); }
ir::Attribute flt(float f) { return ir::Attribute::of(f); }
ir::Attribute flts(std::vector<float> v) { return ir::Attribute::of(std::move(v)); }

ir::Node make_node(const std::string& op, const std::vector<bool>& present, size_t n_out, const Attrs& attrs) {
  ir::Node n;
  n.name = "n_" + op;
  n.op_type = op;
  for (size_t i = 0; i < present.size(); ++i) n.inputs.push_back(present[i] ? "in" + std::to_string(i) : "");
  for (size_t i = 0; i < n_out; ++i) n.outputs.push_back("out" + std::to_string(i));
  n.attrs = attrs;
  return n;
}

const ops::OpDef& def_of(const std::string& op, int64_t opset) {
  const ops::OpDef* d = ops::OpRegistry::global().find("", op, opset);
  if (!d) throw std::runtime_error("no op " + op + " at opset " + std::to_string(opset));
  return *d;
}

// ---- inference harness ----
struct In {
  std::optional<ValueInfo> info;  // nullopt: absent
  std::optional<Tensor> value;
};
In sym(DType dt, SymShape s) { return {ValueInfo{dt, std::move(s)}, std::nullopt}; }
In unknown_shape(DType dt) { return {ValueInfo{dt, std::nullopt}, std::nullopt}; }
In konst(Tensor t) { return {ValueInfo{t.dtype(), ir::to_sym(t.shape())}, std::move(t)}; }
In absent() { return {}; }

std::vector<ValueInfo> infer(const std::string& op, int64_t opset, const std::vector<In>& ins, const Attrs& attrs = {},
                             size_t n_out = 1) {
  std::vector<bool> present;
  std::vector<const ValueInfo*> infos;
  std::vector<const Tensor*> consts;
  for (const In& i : ins) {
    present.push_back(i.info.has_value());
    infos.push_back(i.info ? &*i.info : nullptr);
    consts.push_back(i.value ? &*i.value : nullptr);
  }
  const ir::Node n = make_node(op, present, n_out, attrs);
  ops::InferContext ctx(n, opset, infos, consts);
  def_of(op, opset).infer(ctx);
  return ctx.outputs();
}

// ---- run harness ----
std::vector<Tensor> run_op(const std::string& op, int64_t opset, const std::vector<const Tensor*>& ins,
                           const Attrs& attrs = {}, size_t n_out = 1, ThreadPool* pool = nullptr) {
  std::vector<bool> present;
  for (const Tensor* t : ins) present.push_back(t != nullptr);
  const ir::Node n = make_node(op, present, n_out, attrs);
  ops::OpContext ctx(n, opset, ins, nullptr, pool);
  def_of(op, opset).run(ctx);
  return ctx.outputs();
}

Tensor i64s(const std::vector<int64_t>& v) { return Tensor::from<int64_t>({static_cast<int64_t>(v.size())}, v); }
Tensor f32s(Shape s, const std::vector<float>& v) { return Tensor::from<float>(std::move(s), v); }
Tensor iota_f32(Shape s) {
  Tensor t(DType::kF32, s);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(i);
  return t;
}
Tensor random_f32(Shape s, uint32_t seed, float lo = -2.f, float hi = 2.f) {
  Tensor t(DType::kF32, s);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}
std::vector<float> vals(const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); }
std::vector<int64_t> ivals(const Tensor& t) {
  return std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + t.numel());
}

void expect_near_all(const Tensor& got, const std::vector<double>& want, double rtol = 1e-5, double atol = 1e-5) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = got.dtype() == DType::kF32 ? static_cast<double>(got.data<float>()[i]) : got.data<double>()[i];
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g)) << "at " << i;
    } else if (std::isinf(want[i])) {
      EXPECT_EQ(g, want[i]) << "at " << i;
    } else {
      EXPECT_NEAR(g, want[i], atol + rtol * std::fabs(want[i])) << "at " << i;
    }
  }
}

// ===========================================================================
// Reduce*: inference

// ONNX ReduceMean: keepdims=1 keeps reduced axes as 1; symbols of other axes pass through.
TEST(ReduceInfer, MeanLastAxisKeepsSymbols) {
  auto o = infer("ReduceMean", 13, {sym(DType::kF32, {Dim::sym("batch"), Dim::sym("seq"), 768})},
                 {{"axes", ints({-1})}});
  ASSERT_TRUE(o[0].shape);
  EXPECT_EQ(*o[0].shape, (SymShape{Dim::sym("batch"), Dim::sym("seq"), 1}));
  EXPECT_EQ(o[0].dtype, DType::kF32);
}

// ONNX ReduceSum-13: axes as an input. Unknown axes with keepdims=1: the rank
// is kept, dims of size 1 stay 1, others are unknown; with keepdims=0 the rank
// itself is unknown.
TEST(ReduceInfer, SumWithRuntimeAxes) {
  auto o = infer("ReduceSum", 13, {sym(DType::kF32, {Dim::sym("b"), 1, 4}), sym(DType::kI64, {1})});
  ASSERT_TRUE(o[0].shape);
  ASSERT_EQ(o[0].shape->size(), 3u);
  EXPECT_FALSE((*o[0].shape)[0].known());
  EXPECT_EQ((*o[0].shape)[1], Dim(1));
  EXPECT_FALSE((*o[0].shape)[2].known());
  auto o2 = infer("ReduceSum", 13, {sym(DType::kF32, {Dim::sym("b"), 1, 4}), sym(DType::kI64, {1})},
                  {{"keepdims", i1(0)}});
  EXPECT_FALSE(o2[0].shape.has_value());
}

// ONNX ReduceSum-13 with constant axes input, keepdims=0, negative axis.
TEST(ReduceInfer, SumConstantAxesNoKeepdims) {
  auto o = infer("ReduceSum", 13, {sym(DType::kF32, {Dim::sym("n"), 3, 5, 7}), konst(i64s({1, -1}))},
                 {{"keepdims", i1(0)}});
  ASSERT_TRUE(o[0].shape);
  EXPECT_EQ(*o[0].shape, (SymShape{Dim::sym("n"), 5}));
}

// ONNX Reduce*-18: noop_with_empty_axes=1 and no axes leaves the shape as is;
// without it, empty axes reduce everything (keepdims=0 gives a scalar).
TEST(ReduceInfer, NoopAndReduceAll) {
  auto o = infer("ReduceMax", 18, {sym(DType::kF32, {Dim::sym("n"), 3})}, {{"noop_with_empty_axes", i1(1)}});
  ASSERT_TRUE(o[0].shape);
  EXPECT_EQ(*o[0].shape, (SymShape{Dim::sym("n"), 3}));
  auto o2 = infer("ReduceL2", 11, {sym(DType::kF32, {Dim::sym("n"), 3})}, {{"keepdims", i1(0)}});
  ASSERT_TRUE(o2[0].shape);
  EXPECT_TRUE(o2[0].shape->empty());
  auto o3 = infer("ReduceLogSumExp", 18, {unknown_shape(DType::kF64)}, {});
  EXPECT_FALSE(o3[0].shape.has_value());
  EXPECT_EQ(o3[0].dtype, DType::kF64);
}

// ONNX: axes must be in [-r, r-1]: an Error naming the node.
TEST(ReduceInfer, AxisOutOfRangeIsError) {
  try {
    infer("ReduceMean", 13, {sym(DType::kF32, {2, 3})}, {{"axes", ints({2})}});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ReduceMean"), std::string::npos) << e.what();
  }
}

// ===========================================================================
// Reduce*: kernels

// Naive reference in double (numpy semantics: np.sum / np.mean / ... over axes).
std::vector<double> naive_reduce(const std::string& op, const Tensor& x, const std::vector<int64_t>& axes) {
  const Shape& s = x.shape();
  const size_t r = s.size();
  std::vector<bool> red(r, axes.empty());
  for (int64_t a : axes) red[static_cast<size_t>(a < 0 ? a + static_cast<int64_t>(r) : a)] = true;
  Shape os;
  for (size_t d = 0; d < r; ++d)
    if (!red[d]) os.push_back(s[d]);
  const int64_t no = shape_numel(os);
  std::vector<std::vector<double>> groups(static_cast<size_t>(no));
  const float* p = x.data<float>();
  std::vector<int64_t> idx(r, 0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t o = 0;
    for (size_t d = 0; d < r; ++d)
      if (!red[d]) o = o * s[d] + idx[d];
    groups[static_cast<size_t>(o)].push_back(static_cast<double>(p[i]));
    for (size_t d = r; d-- > 0;) {
      if (++idx[d] < s[d]) break;
      idx[d] = 0;
    }
  }
  std::vector<double> out;
  for (const auto& g : groups) {
    double v = 0;
    if (op == "ReduceSum") for (double e : g) v += e;
    else if (op == "ReduceMean") { for (double e : g) v += e; v /= static_cast<double>(g.size()); }
    else if (op == "ReduceMax") { v = -INFINITY; for (double e : g) v = std::max(v, e); }
    else if (op == "ReduceMin") { v = INFINITY; for (double e : g) v = std::min(v, e); }
    else if (op == "ReduceProd") { v = 1; for (double e : g) v *= e; }
    else if (op == "ReduceL1") for (double e : g) v += std::fabs(e);
    else if (op == "ReduceL2") { for (double e : g) v += e * e; v = std::sqrt(v); }
    else if (op == "ReduceSumSquare") for (double e : g) v += e * e;
    else if (op == "ReduceLogSum") { for (double e : g) v += e; v = std::log(v); }
    else if (op == "ReduceLogSumExp") { for (double e : g) v += std::exp(e); v = std::log(v); }
    out.push_back(v);
  }
  return out;
}

// Every Reduce op on every combination of axes of a [3, 4, 5, 6] input
// (covering the "innermost axis reduced", "innermost kept" and alternating
// layouts) against the naive numpy-style reference above.
TEST(ReduceRun, AllOpsAllAxisSetsMatchNaive) {
  const Tensor x = random_f32({3, 4, 5, 6}, 7, 0.5f, 1.5f);  // positive: LogSum is defined
  const char* ops_[] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                        "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"};
  ThreadPool pool(3);
  for (const char* op : ops_) {
    for (int mask = 0; mask < 16; ++mask) {
      std::vector<int64_t> axes;
      for (int d = 0; d < 4; ++d)
        if (mask & (1 << d)) axes.push_back(d);
      Attrs at{{"keepdims", i1(0)}};
      if (!axes.empty()) at["axes"] = ints(axes);
      const auto y = run_op(op, 11, {&x}, at, 1, mask % 2 ? &pool : nullptr);
      SCOPED_TRACE(std::string(op) + " mask " + std::to_string(mask));
      expect_near_all(y[0], naive_reduce(op, x, axes), 1e-4, 1e-4);
    }
  }
}

// Hand-computed: x = iota over [2, 3, 4], ReduceSum over axes (0, 2): for each
// j, sum_{i,k} (12 i + 4 j + k) = 60 + 32 j. keepdims=1 gives [1, 3, 1].
TEST(ReduceRun, AlternatingAxesHandComputed) {
  const Tensor x = iota_f32({2, 3, 4});
  const auto y = run_op("ReduceSum", 11, {&x}, {{"axes", ints({0, 2})}});
  EXPECT_EQ(y[0].shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(vals(y[0]), (std::vector<float>{60, 92, 124}));
}

// The LayerNorm-style and NCHW spatial cases, big enough for the threaded
// paths (including few outputs with long rows, split into parts), against the
// naive reference.
TEST(ReduceRun, LargeThreadedCases) {
  ThreadPool pool(4);
  {
    const Tensor x = random_f32({8, 16, 768}, 11);
    const auto y = run_op("ReduceMean", 18, {&x, nullptr}, {{"keepdims", i1(1)}}, 1, &pool);
    // opset 18 without axes input: reduce all -> [1, 1, 1]
    EXPECT_EQ(y[0].shape(), (Shape{1, 1, 1}));
    expect_near_all(y[0], naive_reduce("ReduceMean", x, {}), 1e-4, 1e-5);
    const Tensor ax = i64s({-1});
    const auto y2 = run_op("ReduceMean", 18, {&x, &ax}, {}, 1, &pool);
    EXPECT_EQ(y2[0].shape(), (Shape{8, 16, 1}));
    expect_near_all(y2[0], naive_reduce("ReduceMean", x, {2}), 1e-4, 1e-5);
  }
  {
    const Tensor x = random_f32({2, 3, 64, 96}, 12);
    const auto y = run_op("ReduceMax", 13, {&x}, {{"axes", ints({2, 3})}}, 1, &pool);
    EXPECT_EQ(y[0].shape(), (Shape{2, 3, 1, 1}));
    expect_near_all(y[0], naive_reduce("ReduceMax", x, {2, 3}), 0, 0);
  }
  {
    // Reduce the outer axis of a [4096, 300] input: innermost axis kept.
    const Tensor x = random_f32({4096, 300}, 13);
    const Tensor ax = i64s({0});
    const auto y = run_op("ReduceSum", 13, {&x, &ax}, {{"keepdims", i1(0)}}, 1, &pool);
    expect_near_all(y[0], naive_reduce("ReduceSum", x, {0}), 1e-4, 1e-2);
  }
}

// ONNX reference (onnx/reference/ops/op_reduce_*.py): reducing an empty set
// gives 0 for sums, 1 for products, -inf for ReduceMax / ReduceLogSum(Exp),
// +inf for ReduceMin; the output keeps the non-reduced shape.
TEST(ReduceRun, EmptyReductions) {
  const Tensor x(DType::kF32, {2, 0, 3});
  const Tensor ax = i64s({1});
  auto run = [&](const char* op) { return run_op(op, 18, {&x, &ax}, {{"keepdims", i1(1)}})[0]; };
  EXPECT_EQ(run("ReduceSum").shape(), (Shape{2, 1, 3}));
  EXPECT_EQ(vals(run("ReduceSum")), std::vector<float>(6, 0.f));
  EXPECT_EQ(vals(run("ReduceProd")), std::vector<float>(6, 1.f));
  EXPECT_EQ(vals(run("ReduceSumSquare")), std::vector<float>(6, 0.f));
  EXPECT_EQ(vals(run("ReduceMax")), std::vector<float>(6, -INFINITY));
  EXPECT_EQ(vals(run("ReduceMin")), std::vector<float>(6, INFINITY));
  EXPECT_EQ(vals(run("ReduceLogSum")), std::vector<float>(6, -INFINITY));
  EXPECT_EQ(vals(run("ReduceLogSumExp")), std::vector<float>(6, -INFINITY));
  // Reducing a non-empty axis of an empty tensor: empty output.
  const Tensor ax2 = i64s({2});
  EXPECT_EQ(run_op("ReduceSum", 18, {&x, &ax2}, {})[0].shape(), (Shape{2, 0, 1}));
}

// ONNX reference ReduceSumSquare_18: with noop_with_empty_axes and no axes it
// returns np.square(data); ReduceSum returns the data unchanged.
TEST(ReduceRun, NoopWithEmptyAxes) {
  const Tensor x = f32s({2, 2}, {1, -2, 3, -4});
  const Tensor empty = Tensor::from<int64_t>({0}, {});
  auto y = run_op("ReduceSumSquare", 18, {&x, &empty}, {{"noop_with_empty_axes", i1(1)}});
  EXPECT_EQ(y[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(vals(y[0]), (std::vector<float>{1, 4, 9, 16}));
  auto y2 = run_op("ReduceSum", 13, {&x, nullptr}, {{"noop_with_empty_axes", i1(1)}});
  EXPECT_EQ(vals(y2[0]), (std::vector<float>{1, -2, 3, -4}));
  // Without the flag an empty axes list reduces everything.
  auto y3 = run_op("ReduceSum", 13, {&x, &empty}, {{"keepdims", i1(0)}});
  EXPECT_EQ(y3[0].shape(), Shape{});
  EXPECT_EQ(vals(y3[0]), (std::vector<float>{-2}));
}

// LogSumExp is computed stably (numpy reference subtracts the max): large
// inputs give log(2) + 1000, not inf.
TEST(ReduceRun, LogSumExpIsStable) {
  const Tensor x = f32s({2}, {1000.f, 1000.f});
  const auto y = run_op("ReduceLogSumExp", 13, {&x}, {{"keepdims", i1(0)}});
  EXPECT_NEAR(y[0].data<float>()[0], 1000.f + std::log(2.f), 1e-3);
}

// ReduceLogSumExp over a wide range of values (the float path uses a
// polynomial exp) against log(sum(exp(x))) in double; rows whose maximum is
// -inf or +inf give -inf / +inf as in the ONNX reference (log(0), log(inf)).
TEST(ReduceRun, LogSumExpAccuracyAndInfinities) {
  const Tensor x = random_f32({16, 300}, 21, -100.f, 20.f);
  const auto y = run_op("ReduceLogSumExp", 13, {&x}, {{"axes", ints({1})}, {"keepdims", i1(0)}});
  std::vector<double> want;
  for (int64_t r = 0; r < 16; ++r) {
    double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < 300; ++j) mx = std::max(mx, static_cast<double>(x.data<float>()[r * 300 + j]));
    for (int64_t j = 0; j < 300; ++j) s += std::exp(static_cast<double>(x.data<float>()[r * 300 + j]) - mx);
    want.push_back(std::log(s) + mx);
  }
  expect_near_all(y[0], want, 1e-6, 1e-6);
  const Tensor inf = f32s({3, 2}, {-INFINITY, -INFINITY, -INFINITY, 0.f, INFINITY, 1.f});
  const auto z = run_op("ReduceLogSumExp", 13, {&inf}, {{"axes", ints({1})}, {"keepdims", i1(0)}});
  EXPECT_EQ(vals(z[0]), (std::vector<float>{-INFINITY, 0.f, INFINITY}));
}

// Integer reductions keep the dtype (numpy: np.sum(int32) cast back to int32);
// ReduceMean of ints truncates like numpy's mean().astype(int).
TEST(ReduceRun, IntegerTypes) {
  const Tensor x = Tensor::from<int32_t>({2, 3}, {1, 2, 4, -3, 5, 7});
  const auto s = run_op("ReduceSum", 11, {&x}, {{"axes", ints({1})}, {"keepdims", i1(0)}});
  ASSERT_EQ(s[0].dtype(), DType::kI32);
  EXPECT_EQ((std::vector<int32_t>(s[0].data<int32_t>(), s[0].data<int32_t>() + 2)), (std::vector<int32_t>{7, 9}));
  const auto m = run_op("ReduceMean", 11, {&x}, {{"axes", ints({1})}, {"keepdims", i1(0)}});
  EXPECT_EQ((std::vector<int32_t>(m[0].data<int32_t>(), m[0].data<int32_t>() + 2)), (std::vector<int32_t>{2, 3}));
  const Tensor b = Tensor::from<uint8_t>({3}, {4, 200, 7});
  const auto mx = run_op("ReduceMax", 13, {&b}, {{"keepdims", i1(0)}});
  EXPECT_EQ(mx[0].data<uint8_t>()[0], 200);
}

// Bad input: an Error (never a crash) for duplicate axes, out-of-range axes,
// a wrong axes tensor type and an unsupported dtype.
TEST(ReduceRun, Errors) {
  const Tensor x = iota_f32({2, 3});
  EXPECT_THROW(run_op("ReduceSum", 11, {&x}, {{"axes", ints({1, 1})}}), Error);
  EXPECT_THROW(run_op("ReduceSum", 11, {&x}, {{"axes", ints({-3})}}), Error);
  const Tensor fax = f32s({1}, {0});
  EXPECT_THROW(run_op("ReduceSum", 13, {&x, &fax}), Error);
  const Tensor i8 = Tensor::from<int8_t>({2}, {1, 2});
  EXPECT_THROW(run_op("ReduceSum", 13, {&i8}), Error);
  const Tensor scalar = f32s({}, {3});
  EXPECT_THROW(run_op("ReduceSum", 11, {&scalar}, {{"axes", ints({0})}}), Error);
  EXPECT_THROW(run_op("ReduceSum", 13, {nullptr}), Error);  // missing data input
}

// ===========================================================================
// ArgMax / ArgMin

// ONNX ArgMax select_last_index: ties resolve to the first (0) or the last (1)
// index. Hand-computed: rows [2,2,1] and [3,1,3].
TEST(ArgRun, SelectLastIndex) {
  const Tensor x = f32s({2, 3}, {2, 2, 1, 3, 1, 3});
  EXPECT_EQ(ivals(run_op("ArgMax", 12, {&x}, {{"axis", i1(1)}, {"keepdims", i1(0)}})[0]), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(ivals(run_op("ArgMax", 12, {&x}, {{"axis", i1(1)}, {"keepdims", i1(0)}, {"select_last_index", i1(1)}})[0]),
            (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(ivals(run_op("ArgMin", 12, {&x}, {{"axis", i1(1)}, {"select_last_index", i1(1)}})[0]),
            (std::vector<int64_t>{2, 1}));
}

// numpy argmax / argmin along long rows (the vectorised search path): the
// first occurrence of the extreme, or the last with select_last_index.
TEST(ArgRun, LongRows) {
  std::vector<float> v(2 * 500);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37) % 101);
  v[123] = 500;
  v[400] = 500;
  v[500 + 7] = -5;
  v[500 + 499] = -5;
  const Tensor x = f32s({2, 500}, v);
  EXPECT_EQ(ivals(run_op("ArgMax", 13, {&x}, {{"axis", i1(1)}})[0])[0], 123);
  EXPECT_EQ(ivals(run_op("ArgMax", 13, {&x}, {{"axis", i1(1)}, {"select_last_index", i1(1)}})[0])[0], 400);
  EXPECT_EQ(ivals(run_op("ArgMin", 13, {&x}, {{"axis", i1(1)}})[0])[1], 7);
  EXPECT_EQ(ivals(run_op("ArgMin", 13, {&x}, {{"axis", i1(1)}, {"select_last_index", i1(1)}})[0])[1], 499);
}

// numpy argmin over axis 0 (inner dimension > 1), keepdims=1 shape [1, 3].
TEST(ArgRun, OuterAxis) {
  const Tensor x = f32s({3, 3}, {5, 1, 9, 2, 8, 0, 7, 0, 4});
  const auto y = run_op("ArgMin", 13, {&x}, {{"axis", i1(0)}});
  EXPECT_EQ(y[0].shape(), (Shape{1, 3}));
  EXPECT_EQ(ivals(y[0]), (std::vector<int64_t>{1, 2, 1}));
}

// ONNX ArgMax: int64 output; inference drops the axis with keepdims=0.
TEST(ArgInfer, Shape) {
  auto o = infer("ArgMax", 13, {sym(DType::kF32, {Dim::sym("n"), 10, 7})}, {{"axis", i1(1)}, {"keepdims", i1(0)}});
  EXPECT_EQ(o[0].dtype, DType::kI64);
  ASSERT_TRUE(o[0].shape);
  EXPECT_EQ(*o[0].shape, (SymShape{Dim::sym("n"), 7}));
}

// numpy raises on argmax of an empty sequence; ONNX has no answer: an Error.
TEST(ArgRun, EmptyAxisIsError) {
  const Tensor x(DType::kF32, {2, 0});
  EXPECT_THROW(run_op("ArgMax", 13, {&x}, {{"axis", i1(1)}}), Error);
  EXPECT_THROW(run_op("ArgMax", 13, {&x}, {{"axis", i1(2)}}), Error);
}

// ===========================================================================
// TopK

// ONNX TopK: "if two elements are equal, the one with the lower index appears
// first". Hand-computed on [3, 1, 3, 2, 3].
TEST(TopKRun, TiesPreferLowerIndex) {
  const Tensor x = f32s({5}, {3, 1, 3, 2, 3});
  const Tensor k = i64s({2});
  auto y = run_op("TopK", 11, {&x, &k}, {}, 2);
  EXPECT_EQ(vals(y[0]), (std::vector<float>{3, 3}));
  EXPECT_EQ(ivals(y[1]), (std::vector<int64_t>{0, 2}));
  auto s = run_op("TopK", 11, {&x, &k}, {{"largest", i1(0)}}, 2);
  EXPECT_EQ(vals(s[0]), (std::vector<float>{1, 2}));
  EXPECT_EQ(ivals(s[1]), (std::vector<int64_t>{1, 3}));
  const Tensor k3 = i64s({5});
  auto all = run_op("TopK", 11, {&x, &k3}, {}, 2);
  EXPECT_EQ(ivals(all[1]), (std::vector<int64_t>{0, 2, 4, 3, 1}));
}

// TopK along a non-last axis against a hand-computed example; opset 1 takes k
// as an attribute.
TEST(TopKRun, MiddleAxisAndOpset1) {
  const Tensor x = f32s({2, 3, 2}, {1, 6, 5, 2, 3, 4, 9, 7, 8, 8, 7, 9});
  auto y = run_op("TopK", 1, {&x}, {{"k", i1(1)}, {"axis", i1(1)}}, 2);
  EXPECT_EQ(y[0].shape(), (Shape{2, 1, 2}));
  EXPECT_EQ(vals(y[0]), (std::vector<float>{5, 6, 9, 9}));
  EXPECT_EQ(ivals(y[1]), (std::vector<int64_t>{1, 0, 0, 2}));
}

// The small-k path (one scan with a sorted buffer) and the nth_element path
// agree with a full stable sort by (value, index) (ONNX TopK ordering), on
// data with many ties, for largest and smallest.
TEST(TopKRun, SmallKMatchesStableSort) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> d(0, 20);
  std::vector<float> v(3 * 1000);
  for (float& f : v) f = static_cast<float>(d(rng));
  const Tensor x = f32s({3, 1000}, v);
  for (int64_t k : {2, 10, 64, 300}) {
    for (int largest : {0, 1}) {
      const Tensor kt = i64s({k});
      auto y = run_op("TopK", 11, {&x, &kt}, {{"largest", i1(largest)}}, 2);
      for (int64_t r = 0; r < 3; ++r) {
        std::vector<int64_t> id(1000);
        for (int64_t j = 0; j < 1000; ++j) id[static_cast<size_t>(j)] = j;
        const float* row = v.data() + r * 1000;
        std::stable_sort(id.begin(), id.end(), [&](int64_t p, int64_t q) {
          return largest ? row[p] > row[q] : row[p] < row[q];
        });
        for (int64_t j = 0; j < k; ++j) {
          ASSERT_EQ(y[1].data<int64_t>()[r * k + j], id[static_cast<size_t>(j)]) << "k " << k << " row " << r;
          ASSERT_EQ(y[0].data<float>()[r * k + j], row[id[static_cast<size_t>(j)]]);
        }
      }
    }
  }
}

// NaN must not break the sort (std::sort needs a strict weak order): NaN is
// treated as the largest value, and the call returns sane indices.
TEST(TopKRun, NaNDoesNotCrash) {
  std::vector<float> v(200);
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 7 == 0 ? NAN : static_cast<float>(i % 13);
  const Tensor x = f32s({200}, v);
  const Tensor k = i64s({50});
  auto y = run_op("TopK", 11, {&x, &k}, {}, 2);
  std::vector<int64_t> idx = ivals(y[1]);
  for (int64_t i : idx) EXPECT_TRUE(i >= 0 && i < 200);
  std::sort(idx.begin(), idx.end());
  EXPECT_EQ(std::unique(idx.begin(), idx.end()), idx.end());
  EXPECT_TRUE(std::isnan(y[0].data<float>()[0]));
}

// Bad k: negative, larger than the axis, or not a single value: an Error.
TEST(TopKRun, BadK) {
  const Tensor x = f32s({3}, {1, 2, 3});
  const Tensor k4 = i64s({4}), kneg = i64s({-1}), k2v = i64s({1, 1});
  EXPECT_THROW(run_op("TopK", 11, {&x, &k4}, {}, 2), Error);
  EXPECT_THROW(run_op("TopK", 11, {&x, &kneg}, {}, 2), Error);
  EXPECT_THROW(run_op("TopK", 11, {&x, &k2v}, {}, 2), Error);
  EXPECT_THROW(run_op("TopK", 11, {&x, nullptr}, {}, 2), Error);
  EXPECT_THROW(run_op("TopK", 1, {&x}, {}, 2), Error);  // opset 1 needs attribute k
}

// ONNX TopK shape inference: the axis becomes k when k is a constant, else unknown.
TEST(TopKInfer, ConstantAndRuntimeK) {
  auto o = infer("TopK", 11, {sym(DType::kF32, {Dim::sym("b"), 10}), konst(i64s({3}))}, {}, 2);
  ASSERT_TRUE(o[0].shape);
  EXPECT_EQ(*o[0].shape, (SymShape{Dim::sym("b"), 3}));
  EXPECT_EQ(o[1].dtype, DType::kI64);
  auto o2 = infer("TopK", 11, {sym(DType::kF32, {Dim::sym("b"), 10}), sym(DType::kI64, {1})}, {}, 2);
  ASSERT_TRUE(o2[0].shape);
  EXPECT_EQ((*o2[0].shape)[0], Dim::sym("b"));
  EXPECT_FALSE((*o2[0].shape)[1].known());
}

// ===========================================================================
// CumSum

// ONNX CumSum doc examples: exclusive/reverse on [1, 2, 3] (hand-computed),
// and along axis 0 of a 2-D input (inner dimension > 1).
TEST(CumSumRun, Modes) {
  const Tensor x = f32s({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor a1 = Tensor::from<int32_t>({}, {1});
  const Tensor a0 = i64s({0});
  EXPECT_EQ(vals(run_op("CumSum", 14, {&x, &a1})[0]), (std::vector<float>{1, 3, 6, 4, 9, 15}));
  EXPECT_EQ(vals(run_op("CumSum", 14, {&x, &a1}, {{"exclusive", i1(1)}, {"reverse", i1(1)}})[0]),
            (std::vector<float>{5, 3, 0, 11, 6, 0}));
  EXPECT_EQ(vals(run_op("CumSum", 14, {&x, &a0}, {{"reverse", i1(1)}})[0]), (std::vector<float>{5, 7, 9, 4, 5, 6}));
  EXPECT_EQ(vals(run_op("CumSum", 14, {&x, &a0}, {{"exclusive", i1(1)}})[0]), (std::vector<float>{0, 0, 0, 1, 2, 3}));
  const Tensor bad = i64s({2});
  EXPECT_THROW(run_op("CumSum", 14, {&x, &bad}), Error);
  const Tensor two = i64s({0, 1});
  EXPECT_THROW(run_op("CumSum", 14, {&x, &two}), Error);
}

// ===========================================================================
// Resize / Upsample

// ONNX Resize nearest, asymmetric, floor: each output pixel copies input
// pixel floor(x / 2) (hand-computed 2x upsample of [[1, 2], [3, 4]]).
TEST(ResizeRun, NearestUpsample2x) {
  const Tensor x = f32s({1, 1, 2, 2}, {1, 2, 3, 4});
  const Tensor sc = f32s({4}, {1, 1, 2, 2});
  auto y = run_op("Resize", 13, {&x, nullptr, &sc},
                  {{"coordinate_transformation_mode", str("asymmetric")}, {"nearest_mode", str("floor")}});
  EXPECT_EQ(y[0].shape(), (Shape{1, 1, 4, 4}));
  EXPECT_EQ(vals(y[0]), (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
}

// ONNX Upsample (opset 9) nearest with integer scales = np.repeat per axis;
// opset 7 takes the scales as an attribute. Also runs on int64 data.
TEST(ResizeRun, UpsampleNearest) {
  const Tensor x = Tensor::from<int64_t>({1, 2}, {7, 8});
  const Tensor sc = f32s({2}, {2, 3});
  auto y = run_op("Upsample", 9, {&x, &sc});
  EXPECT_EQ(y[0].shape(), (Shape{2, 6}));
  EXPECT_EQ(ivals(y[0]), (std::vector<int64_t>{7, 7, 7, 8, 8, 8, 7, 7, 7, 8, 8, 8}));
  auto y7 = run_op("Upsample", 7, {&x}, {{"scales", flts({2, 3})}});
  EXPECT_EQ(ivals(y7[0]), ivals(y[0]));
}

// ONNX Resize linear, half_pixel: x_original = (x + 0.5) / scale - 0.5, with
// edge clamping. Hand-computed 1-D [0, 10] -> 4: x_orig = -0.25, 0.25, 0.75,
// 1.25 -> 0, 2.5, 7.5, 10.
TEST(ResizeRun, LinearHalfPixel) {
  const Tensor x = f32s({1, 2}, {0, 10});
  const Tensor sizes = i64s({1, 4});
  auto y = run_op("Resize", 13, {&x, nullptr, nullptr, &sizes}, {{"mode", str("linear")}});
  EXPECT_EQ(vals(y[0]), (std::vector<float>{0, 2.5f, 7.5f, 10}));
  // The same on a non-last axis (inner > 1): [[0, 100], [10, 200]] along axis 0.
  const Tensor x2 = f32s({2, 2}, {0, 100, 10, 200});
  const Tensor sizes2 = i64s({4, 2});
  auto y2 = run_op("Resize", 13, {&x2, nullptr, nullptr, &sizes2}, {{"mode", str("linear")}});
  EXPECT_EQ(vals(y2[0]), (std::vector<float>{0, 100, 2.5f, 125, 7.5f, 175, 10, 200}));
}

// Cubic with scale 1 is the identity (Keys kernel: W(0) = 1, W(+-1) = W(2) = 0).
TEST(ResizeRun, CubicIdentity) {
  const Tensor x = random_f32({1, 1, 5, 6}, 3);
  const Tensor sc = f32s({4}, {1, 1, 1, 1});
  auto y = run_op("Resize", 19, {&x, nullptr, &sc}, {{"mode", str("cubic")}});
  EXPECT_EQ(vals(y[0]), vals(x));
}

// tf_crop_and_resize: coordinates outside [0, in - 1] give extrapolation_value
// (ONNX spec). roi [0, 2] along a length-3 axis, 3 outputs: x_orig = 0, 2, 4
// -> values 1, 3 and the extrapolation value.
TEST(ResizeRun, TfCropAndResizeExtrapolates) {
  const Tensor x = f32s({3}, {1, 2, 3});
  const Tensor roi = f32s({2}, {0, 2});
  const Tensor sizes = i64s({3});
  auto y = run_op("Resize", 13, {&x, &roi, nullptr, &sizes},
                  {{"mode", str("linear")}, {"coordinate_transformation_mode", str("tf_crop_and_resize")},
                   {"extrapolation_value", flt(-7.f)}});
  EXPECT_EQ(vals(y[0]), (std::vector<float>{1, 3, -7}));
  auto yn = run_op("Resize", 13, {&x, &roi, nullptr, &sizes},
                   {{"coordinate_transformation_mode", str("tf_crop_and_resize")}, {"extrapolation_value", flt(-7.f)}});
  EXPECT_EQ(vals(yn[0]), (std::vector<float>{1, 3, -7}));
}

// ONNX Resize-18 axes and keep_aspect_ratio_policy: sizes given for axes
// (2, 3) only; not_larger picks scale = min(6/4, 6/2) = 1.5, so the output is
// round(1.5 * [4, 2]) = [6, 3].
TEST(ResizeRun, AxesAndAspectPolicy) {
  const Tensor x = iota_f32({1, 1, 4, 2});
  const Tensor sizes = i64s({6, 6});
  auto y = run_op("Resize", 18, {&x, nullptr, nullptr, &sizes},
                  {{"axes", ints({2, 3})}, {"keep_aspect_ratio_policy", str("not_larger")}});
  EXPECT_EQ(y[0].shape(), (Shape{1, 1, 6, 3}));
}

// Bad or unsupported input: an Error for both scales and sizes, neither,
// wrong counts, non-positive scales, antialias (refused, kUnsupported), an
// unknown mode, and linear on integers (kUnsupported).
TEST(ResizeRun, Errors) {
  const Tensor x = iota_f32({1, 1, 2, 2});
  const Tensor sc = f32s({4}, {1, 1, 2, 2});
  const Tensor sz = i64s({1, 1, 4, 4});
  const Tensor sc3 = f32s({3}, {1, 2, 2});
  const Tensor sc0 = f32s({4}, {1, 1, 0, 2});
  EXPECT_THROW(run_op("Resize", 13, {&x, nullptr, &sc, &sz}), Error);
  EXPECT_THROW(run_op("Resize", 13, {&x, nullptr, nullptr, nullptr}), Error);
  EXPECT_THROW(run_op("Resize", 13, {&x, nullptr, &sc3}), Error);
  EXPECT_THROW(run_op("Resize", 13, {&x, nullptr, &sc0}), Error);
  EXPECT_THROW(run_op("Resize", 13, {&x, nullptr, &sc}, {{"mode", str("bicubic")}}), Error);
  try {
    run_op("Resize", 18, {&x, nullptr, &sc}, {{"antialias", i1(1)}, {"mode", str("linear")}});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUnsupported);
  }
  const Tensor xi = Tensor::from<int32_t>({1, 2}, {1, 2});
  const Tensor sci = f32s({2}, {1, 2});
  try {
    run_op("Resize", 13, {&xi, nullptr, &sci}, {{"mode", str("linear")}});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUnsupported);
  }
  // nearest on integers is fine
  EXPECT_EQ(run_op("Resize", 13, {&xi, nullptr, &sci})[0].shape(), (Shape{1, 4}));
  // check() reports antialias without running
  const ir::Node n = make_node("Resize", {true, false, true}, 1, {{"antialias", i1(1)}});
  const ValueInfo vx{DType::kF32, SymShape{1, 1, 2, 2}}, vs{DType::kF32, SymShape{4}};
  ops::InferContext ctx(n, 18, {&vx, nullptr, &vs}, {});
  EXPECT_FALSE(def_of("Resize", 18).check(ctx).empty());
}

// ONNX Resize shape inference: floor(in * scale) from constant scales, symbols
// kept on axes with scale 1; constant sizes are the output; runtime scales
// leave the resized axes unknown but keep the rank.
TEST(ResizeInfer, Shapes) {
  auto o = infer("Resize", 13, {sym(DType::kF32, {Dim::sym("n"), 3, 5, 7}), absent(), konst(f32s({4}, {1, 1, 2, 0.5f}))});
  ASSERT_TRUE(o[0].shape);
  EXPECT_EQ(*o[0].shape, (SymShape{Dim::sym("n"), 3, 10, 3}));
  auto o2 = infer("Resize", 13, {sym(DType::kF32, {Dim::sym("n"), 3, 5, 7}), absent(), absent(), konst(i64s({1, 3, 8, 8}))});
  ASSERT_TRUE(o2[0].shape);
  EXPECT_EQ(*o2[0].shape, (SymShape{1, 3, 8, 8}));
  auto o3 = infer("Resize", 11, {sym(DType::kF32, {Dim::sym("n"), 3, 5, 7}), absent(), sym(DType::kF32, {4})});
  ASSERT_TRUE(o3[0].shape);
  EXPECT_EQ(o3[0].shape->size(), 4u);
  EXPECT_FALSE((*o3[0].shape)[2].known());
  auto o4 = infer("Upsample", 7, {sym(DType::kF32, {Dim::sym("n"), 3, 5, 7})}, {{"scales", flts({1, 1, 2, 2})}});
  ASSERT_TRUE(o4[0].shape);
  EXPECT_EQ(*o4[0].shape, (SymShape{Dim::sym("n"), 3, 10, 14}));
}

// ===========================================================================
// Einsum

// Naive einsum for two operands with explicit output (numpy.einsum semantics):
// loops over every label combination.
std::vector<double> naive_einsum2(const std::string& a_l, const Tensor& a, const std::string& b_l, const Tensor& b,
                                  const std::string& out_l, std::map<char, int64_t> sizes) {
  std::string labels;
  for (const auto& [c, s] : sizes) labels += c;
  std::map<char, int64_t> idx;
  for (char c : labels) idx[c] = 0;
  int64_t total = 1;
  for (char c : labels) total *= sizes[c];
  int64_t n_out = 1;
  for (char c : out_l) n_out *= sizes[c];
  std::vector<double> out(static_cast<size_t>(n_out), 0.0);
  auto offset = [&](const std::string& ls, const Shape& shape) {
    int64_t o = 0;
    for (size_t d = 0; d < ls.size(); ++d) o = o * shape[d] + idx[ls[d]];
    return o;
  };
  for (int64_t t = 0; t < total; ++t) {
    int64_t rem = t;
    for (size_t k = labels.size(); k-- > 0;) {
      idx[labels[k]] = rem % sizes[labels[k]];
      rem /= sizes[labels[k]];
    }
    const double va = static_cast<double>(a.data<float>()[offset(a_l, a.shape())]);
    const double vb = b_l.empty() ? 1.0 : static_cast<double>(b.data<float>()[offset(b_l, b.shape())]);
    Shape os;
    for (char c : out_l) os.push_back(sizes[c]);
    out[static_cast<size_t>(offset(out_l, os))] += va * vb;
  }
  return out;
}

// Common two-operand forms against the naive loop: batched matmul, attention
// scores (transposed B), outer product, inner product, and a contraction over
// two labels with a label summed away on one side only.
TEST(EinsumRun, TwoOperandFormsMatchNaive) {
  struct Case {
    std::string a, b, out;
    std::map<char, int64_t> sizes;
  };
  const std::vector<Case> cases = {
      {"bij", "bjk", "bik", {{'b', 3}, {'i', 4}, {'j', 5}, {'k', 6}}},
      {"bhqd", "bhkd", "bhqk", {{'b', 2}, {'h', 3}, {'q', 4}, {'k', 5}, {'d', 8}}},
      {"i", "j", "ij", {{'i', 3}, {'j', 4}}},
      {"i", "i", "", {{'i', 7}}},
      {"ijk", "kjl", "li", {{'i', 2}, {'j', 3}, {'k', 4}, {'l', 5}}},
      {"ijm", "jk", "ik", {{'i', 2}, {'j', 3}, {'k', 4}, {'m', 3}}},
  };
  uint32_t seed = 100;
  for (const Case& c : cases) {
    Shape sa, sb;
    for (char ch : c.a) sa.push_back(c.sizes.at(ch));
    for (char ch : c.b) sb.push_back(c.sizes.at(ch));
    const Tensor a = random_f32(sa, seed++), b = random_f32(sb, seed++);
    const auto y = run_op("Einsum", 12, {&a, &b}, {{"equation", str(c.a + "," + c.b + "->" + c.out)}});
    SCOPED_TRACE(c.a + "," + c.b + "->" + c.out);
    Shape so;
    for (char ch : c.out) so.push_back(c.sizes.at(ch));
    EXPECT_EQ(y[0].shape(), so);
    expect_near_all(y[0], naive_einsum2(c.a, a, c.b, b, c.out, c.sizes), 1e-4, 1e-4);
  }
}

// numpy.einsum single-operand forms: transpose, diagonal (trace along
// repeated labels), row sums, full sum; hand-computed on iota data.
TEST(EinsumRun, SingleOperand) {
  const Tensor x = iota_f32({3, 3});
  EXPECT_EQ(vals(run_op("Einsum", 12, {&x}, {{"equation", str("ij->ji")}})[0]),
            (std::vector<float>{0, 3, 6, 1, 4, 7, 2, 5, 8}));
  EXPECT_EQ(vals(run_op("Einsum", 12, {&x}, {{"equation", str("ii->i")}})[0]), (std::vector<float>{0, 4, 8}));
  EXPECT_EQ(vals(run_op("Einsum", 12, {&x}, {{"equation", str("ii")}})[0]), (std::vector<float>{12}));
  EXPECT_EQ(vals(run_op("Einsum", 12, {&x}, {{"equation", str("ij->i")}})[0]), (std::vector<float>{3, 12, 21}));
  EXPECT_EQ(vals(run_op("Einsum", 12, {&x}, {{"equation", str("ij->")}})[0]), (std::vector<float>{36}));
  // Implicit output: letters used once, in alphabetical order -> "ji" is a transpose.
  EXPECT_EQ(vals(run_op("Einsum", 12, {&x}, {{"equation", str("ji")}})[0]),
            (std::vector<float>{0, 3, 6, 1, 4, 7, 2, 5, 8}));
}

// Transposes large enough for the tiled copy, against index arithmetic
// (numpy.einsum 'ij->ji' and 'abc->cab' are permutations).
TEST(EinsumRun, TiledTransposes) {
  const Tensor x = iota_f32({70, 45});
  const auto y = run_op("Einsum", 12, {&x}, {{"equation", str("ij->ji")}});
  ASSERT_EQ(y[0].shape(), (Shape{45, 70}));
  for (int64_t j = 0; j < 45; ++j)
    for (int64_t i = 0; i < 70; ++i) ASSERT_EQ(y[0].data<float>()[j * 70 + i], static_cast<float>(i * 45 + j));
  const Tensor z = iota_f32({9, 10, 33});
  const auto w = run_op("Einsum", 12, {&z}, {{"equation", str("abc->cab")}});
  ASSERT_EQ(w[0].shape(), (Shape{33, 9, 10}));
  for (int64_t c = 0; c < 33; ++c)
    for (int64_t a = 0; a < 9; ++a)
      for (int64_t b = 0; b < 10; ++b)
        ASSERT_EQ(w[0].data<float>()[(c * 9 + a) * 10 + b], static_cast<float>((a * 10 + b) * 33 + c));
}

// numpy.einsum ellipsis broadcasting: [1, 2, 3] x [4, 3, 2] -> [4, 2, 2]; each
// batch of the result equals the plain matmul of the broadcast operand.
TEST(EinsumRun, EllipsisBroadcastAndImplicit) {
  const Tensor a = random_f32({1, 2, 3}, 1), b = random_f32({4, 3, 2}, 2);
  const auto y = run_op("Einsum", 12, {&a, &b}, {{"equation", str("...ij,...jk->...ik")}});
  EXPECT_EQ(y[0].shape(), (Shape{4, 2, 2}));
  for (int64_t bt = 0; bt < 4; ++bt)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < 2; ++k) {
        double s = 0;
        for (int64_t j = 0; j < 3; ++j)
          s += static_cast<double>(a.data<float>()[i * 3 + j]) * static_cast<double>(b.data<float>()[bt * 6 + j * 2 + k]);
        EXPECT_NEAR(y[0].data<float>()[bt * 4 + i * 2 + k], s, 1e-5);
      }
  // Implicit "ij,jk" is a matmul (output ik).
  const Tensor m = random_f32({2, 3}, 3), n = random_f32({3, 4}, 4);
  const auto z = run_op("Einsum", 12, {&m, &n}, {{"equation", str("ij,jk")}});
  EXPECT_EQ(z[0].shape(), (Shape{2, 4}));
  expect_near_all(z[0], naive_einsum2("ij", m, "jk", n, "ik", {{'i', 2}, {'j', 3}, {'k', 4}}), 1e-5, 1e-5);
}

// Three operands, contracted pairwise: ij,jk,kl->il equals (A B) C.
TEST(EinsumRun, ThreeOperands) {
  const Tensor a = random_f32({2, 3}, 5), b = random_f32({3, 4}, 6), c = random_f32({4, 2}, 7);
  const auto y = run_op("Einsum", 12, {&a, &b, &c}, {{"equation", str("ij,jk,kl->il")}});
  EXPECT_EQ(y[0].shape(), (Shape{2, 2}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t l = 0; l < 2; ++l) {
      double s = 0;
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t k = 0; k < 4; ++k)
          s += static_cast<double>(a.data<float>()[i * 3 + j]) * static_cast<double>(b.data<float>()[j * 4 + k]) *
               static_cast<double>(c.data<float>()[k * 2 + l]);
      EXPECT_NEAR(y[0].data<float>()[i * 2 + l], s, 1e-5);
    }
}

// The generic (non-f32) path: f64 and i64 batched matmul, hand-computed.
TEST(EinsumRun, OtherTypes) {
  const Tensor a = Tensor::from<int64_t>({2, 2}, {1, 2, 3, 4});
  const Tensor b = Tensor::from<int64_t>({2, 2}, {5, 6, 7, 8});
  const auto y = run_op("Einsum", 12, {&a, &b}, {{"equation", str("ij,jk->ik")}});
  EXPECT_EQ(ivals(y[0]), (std::vector<int64_t>{19, 22, 43, 50}));
  const auto yt = run_op("Einsum", 12, {&a, &b}, {{"equation", str("ij,kj->ik")}});
  EXPECT_EQ(ivals(yt[0]), (std::vector<int64_t>{17, 23, 39, 53}));
  const Tensor d = Tensor::from<double>({2, 2}, {1, 2, 3, 4});
  const auto yd = run_op("Einsum", 12, {&d, &d}, {{"equation", str("ij,ij->")}});
  EXPECT_EQ(yd[0].data<double>()[0], 30.0);
}

// Bad equations and shapes: an Error (never a crash).
TEST(EinsumRun, Errors) {
  const Tensor a = iota_f32({2, 3}), b = iota_f32({4, 5});
  EXPECT_THROW(run_op("Einsum", 12, {&a, &b}, {{"equation", str("ij,jk->ik")}}), Error);  // j: 3 vs 4
  EXPECT_THROW(run_op("Einsum", 12, {&a}, {{"equation", str("ijk->i")}}), Error);         // rank
  EXPECT_THROW(run_op("Einsum", 12, {&a}, {{"equation", str("ij->iz")}}), Error);         // z not in inputs
  EXPECT_THROW(run_op("Einsum", 12, {&a}, {{"equation", str("ij->ii")}}), Error);         // repeated output
  EXPECT_THROW(run_op("Einsum", 12, {&a}, {{"equation", str("i.j->i")}}), Error);         // stray '.'
  EXPECT_THROW(run_op("Einsum", 12, {&a}, {{"equation", str("i1->i")}}), Error);          // bad char
  EXPECT_THROW(run_op("Einsum", 12, {&a, &b}, {{"equation", str("ij->i")}}), Error);      // term count
  EXPECT_THROW(run_op("Einsum", 12, {&a}, {}), Error);                                    // no equation
  EXPECT_THROW(run_op("Einsum", 12, {&a}, {{"equation", str("ii->i")}}), Error);          // diag of 2x3
}

// Einsum inference with symbolic dims: labels take their input's dimension,
// '...' dims broadcast (numpy), implicit output sorted.
TEST(EinsumInfer, SymbolicShapes) {
  auto o = infer("Einsum", 12,
                 {sym(DType::kF32, {Dim::sym("b"), 12, Dim::sym("q"), 64}), sym(DType::kF32, {Dim::sym("b"), 12, Dim::sym("k"), 64})},
                 {{"equation", str("bhqd,bhkd->bhqk")}});
  ASSERT_TRUE(o[0].shape);
  EXPECT_EQ(*o[0].shape, (SymShape{Dim::sym("b"), 12, Dim::sym("q"), Dim::sym("k")}));
  auto o2 = infer("Einsum", 12, {sym(DType::kF64, {Dim::sym("n"), 5, 5})}, {{"equation", str("...ii ->...i")}});
  ASSERT_TRUE(o2[0].shape);
  EXPECT_EQ(*o2[0].shape, (SymShape{Dim::sym("n"), 5}));
  EXPECT_EQ(o2[0].dtype, DType::kF64);
  auto o3 = infer("Einsum", 12, {sym(DType::kF32, {1, 2, 3}), sym(DType::kF32, {Dim::sym("z"), 3, 4})},
                  {{"equation", str("...ij,...jk")}});
  ASSERT_TRUE(o3[0].shape);
  EXPECT_EQ(*o3[0].shape, (SymShape{Dim::sym("z"), 2, 4}));
  auto o4 = infer("Einsum", 12, {unknown_shape(DType::kF32)}, {{"equation", str("...i->i")}});
  EXPECT_FALSE(o4[0].shape.has_value());
  EXPECT_THROW(infer("Einsum", 12, {sym(DType::kF32, {2, 3})}, {{"equation", str("ijk->i")}}), Error);
}

}  // namespace
}  // namespace qforge
