// The fast paths of the integer matrix ops built on the int8 GEMM
// (ops/quant_gemm.h); the kernels themselves are tested in test_int8_gemm.cpp.
//
// Each fast op against the reference implementation in quant.cpp
// (ops::reference), bit for bit, on random shapes: batching and broadcasting
// for the matmuls, pads / strides / dilations / groups / depthwise / 1-D to
// 3-D for the convolutions, per-tensor and per-column parameters, weights
// packed in prepare, packed per run, and overridden after packing, on 1 and
// 3 threads. QGemm also against values computed by hand from its definition
// in ONNX Runtime's ContribOperators.md, and against ONNX Runtime 1.30's own
// output (tests/golden/qgemm_ort.json, made by scripts/gen_qgemm_golden.js).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops/quant_gemm.h"
#include "qforge/error.h"
#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/quant.h"
#include "qforge/session.h"
#include "qforge/thread_pool.h"
#include "test_util.h"

namespace qforge {
namespace {

// ---------------------------------------------------------------- the ops

using Attrs = std::map<std::string, ir::Attribute>;
using Inputs = std::vector<std::optional<Tensor>>;
using RefFn = void (*)(ops::OpContext&);
const std::string kMs = "com.microsoft";

ir::Attribute ai(int64_t v) {
  return ir::Attribute::of(v);
}
ir::Attribute ais(std::vector<int64_t> v) {
  return ir::Attribute::of(std::move(v));
}
ir::Attribute af(float v) {
  return ir::Attribute::of(v);
}

ir::Node make_node(const std::string& domain, const std::string& op, const Inputs& in,
                   Attrs attrs) {
  ir::Node node;
  node.name = "n";
  node.op_type = op;
  node.domain = domain;
  for (size_t i = 0; i < in.size(); ++i)
    node.inputs.push_back(in[i] ? "in" + std::to_string(i) : "");
  node.outputs.push_back("out0");
  node.attrs = std::move(attrs);
  return node;
}

std::vector<const Tensor*> pointers(const Inputs& in) {
  std::vector<const Tensor*> r;
  for (const auto& t : in) r.push_back(t ? &*t : nullptr);
  return r;
}

// One op call: the registered definition (the fast path) with weights packed
// in prepare when `packed` lists constant inputs (or packed from `pack_from`
// when given: a stale packing that must not be used), and the reference.
struct OpCall {
  std::string domain = "";
  std::string op;
  int64_t opset = 21;
  Inputs in;
  Attrs attrs;
  std::vector<int> packed;          // inputs prepare sees as constants
  std::optional<Inputs> pack_from;  // prepare on these inputs instead
  // Inputs prepare may also see as constants (B's scales, zero points and
  // bias, whose per-column values MatMulIntegerToFloat and
  // DynamicQuantizeMatMul make in prepare; QLinearConv's quantization
  // parameters and bias, whose per-channel values and depthwise tables it
  // makes there): expect_fast_is_reference runs with and without them.
  std::vector<int> params;
};

// A call of a com.microsoft op (version 1).
OpCall ms_call(const std::string& op) {
  OpCall c;
  c.domain = kMs;
  c.op = op;
  c.opset = 1;
  return c;
}

Tensor run_fast(const OpCall& c, ThreadPool* pool) {
  const ir::Node node = make_node(c.domain, c.op, c.in, c.attrs);
  const ops::OpDef* def = ops::OpRegistry::global().find(c.domain, c.op, c.opset);
  if (def == nullptr) throw std::runtime_error("no OpDef for " + c.op);
  std::shared_ptr<const void> state;
  if (!c.packed.empty()) {
    const Inputs& src = c.pack_from ? *c.pack_from : c.in;
    std::vector<const Tensor*> consts(src.size(), nullptr);
    for (int i : c.packed)  // (an index past the inputs: a trailing optional input left out)
      if (static_cast<size_t>(i) < src.size())
        consts[static_cast<size_t>(i)] =
            src[static_cast<size_t>(i)] ? &*src[static_cast<size_t>(i)] : nullptr;
    EXPECT_TRUE(def->prepare) << c.op << " has no prepare";
    if (def->prepare) state = def->prepare(ops::PrepareContext{node, c.opset, consts, pool});
  }
  ops::OpContext ctx(node, c.opset, pointers(c.in), state.get(), pool);
  def->run(ctx);
  return ctx.outputs().at(0);
}

Tensor run_reference(const OpCall& c, RefFn ref) {
  const ir::Node node = make_node(c.domain, c.op, c.in, c.attrs);
  ops::OpContext ctx(node, c.opset, pointers(c.in), nullptr, nullptr);
  ref(ctx);
  return ctx.outputs().at(0);
}

std::string value_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kU8:
      return std::to_string(int{static_cast<const uint8_t*>(t.raw())[i]});
    case DType::kI8:
      return std::to_string(int{static_cast<const int8_t*>(t.raw())[i]});
    case DType::kI32:
      return std::to_string(t.data<int32_t>()[i]);
    case DType::kF32:
      return std::to_string(t.data<float>()[i]);
    default:
      return "?";
  }
}

// Same dtype, shape and bytes; else the first difference.
::testing::AssertionResult same_tensor(const Tensor& got, const Tensor& want) {
  if (got.dtype() != want.dtype() || got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "got " << dtype_name(got.dtype()) << shape_str(got.shape()) << ", expected "
           << dtype_name(want.dtype()) << shape_str(want.shape());
  if (got.nbytes() == 0 || std::memcmp(got.raw(), want.raw(), got.nbytes()) == 0)
    return ::testing::AssertionSuccess();
  const int64_t es = static_cast<int64_t>(want.nbytes()) / want.numel();
  for (int64_t i = 0; i < want.numel(); ++i)
    if (std::memcmp(static_cast<const uint8_t*>(got.raw()) + i * es,
                    static_cast<const uint8_t*>(want.raw()) + i * es, static_cast<size_t>(es)) != 0)
      return ::testing::AssertionFailure()
             << "element " << i << " of " << shape_str(want.shape()) << " is " << value_at(got, i)
             << ", the reference gives " << value_at(want, i);
  return ::testing::AssertionFailure() << "bytes differ";
}

// The fast path on 1 and 3 threads, with and without packing, equals the reference.
void expect_fast_is_reference(OpCall c, RefFn ref, const std::string& what) {
  SCOPED_TRACE(c.op + ": " + what);
  const Tensor want = run_reference(c, ref);
  ThreadPool pool(3);
  const std::vector<int> packed = c.packed;
  std::vector<int> with_params = packed;
  with_params.insert(with_params.end(), c.params.begin(), c.params.end());
  for (const int pack : {0, 1, 2}) {
    if (pack == 2 && c.params.empty()) continue;
    c.packed = pack == 0 ? std::vector<int>{} : pack == 1 ? packed : with_params;
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      ASSERT_TRUE(same_tensor(run_fast(c, p), want))
          << (pack == 0   ? "packed per run"
              : pack == 1 ? "packed in prepare"
                          : "packed with the parameters")
          << (p ? ", 3 threads" : ", 1 thread");
    }
  }
}

class Rng {
 public:
  explicit Rng(uint32_t seed) : g_(seed) {}
  int64_t range(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(g_);
  }
  bool coin() { return range(0, 1) == 1; }
  float real(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_); }
  DType type8() { return coin() ? DType::kI8 : DType::kU8; }
  // Codes over the type's whole range.
  Tensor codes(DType t, Shape s) {
    Tensor x(t, std::move(s));
    auto* d = static_cast<uint8_t*>(x.raw());
    for (int64_t i = 0; i < x.numel(); ++i) d[i] = static_cast<uint8_t>(range(0, 255));
    return x;
  }
  Tensor code(DType t) { return codes(t, {}); }
  Tensor i32(Shape s, int32_t lo, int32_t hi) {
    Tensor x(DType::kI32, std::move(s));
    for (int64_t i = 0; i < x.numel(); ++i)
      x.data<int32_t>()[i] = static_cast<int32_t>(range(lo, hi));
    return x;
  }
  Tensor f32(Shape s, float lo, float hi) {
    Tensor x(DType::kF32, std::move(s));
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = real(lo, hi);
    return x;
  }

 private:
  std::mt19937 g_;
};

Tensor scalar_f32(float v) {
  return Tensor::from<float>({}, {v});
}

// The typical |sum| of K products of uniform codes: the scale that spreads
// requantized outputs over the code range.
float spread_scale(int64_t K) {
  return 40.0f / (74.0f * 74.0f * std::sqrt(static_cast<float>(std::max<int64_t>(K, 1))));
}

// Matmul shapes: 2-D, batched A with 2-D B (folded into one GEMM), both
// batched with broadcasting, 1-D A or B.
std::pair<Shape, Shape> matmul_shapes(Rng& r, int i) {
  const int64_t M = r.range(1, 40), K = r.range(1, 90), N = r.range(1, 70);
  switch (i % 5) {
    case 0:
      return {{M, K}, {K, N}};
    case 1:
      return {{r.range(1, 3), M, K}, {K, N}};
    case 2:
      return {{2, 1, M, K}, {3, K, N}};
    case 3:
      return {{K}, {r.range(1, 2), K, N}};
    default:
      return {{M, K}, {K}};
  }
}

TEST(Int8GemmOps, MatMulIntegerFastPathIsTheReference) {
  Rng r(1);
  for (int i = 0; i < 40; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType ta = r.type8(), tb = r.type8();
    const int64_t N = bs.size() == 1 ? 1 : bs.back();
    OpCall c;
    c.op = "MatMulInteger";
    c.opset = 10;
    c.in = {r.codes(ta, as), r.codes(tb, bs), std::nullopt, std::nullopt};
    if (i % 4 != 0) c.in[2] = r.code(ta);
    if (i % 3 == 1) c.in[3] = r.code(tb);
    if (i % 3 == 2) c.in[3] = r.codes(tb, {N});  // per column
    c.packed = {1};
    expect_fast_is_reference(c, ops::reference::matmul_integer, "case " + std::to_string(i));
  }
}

TEST(Int8GemmOps, QLinearMatMulFastPathIsTheReference) {
  Rng r(2);
  for (int i = 0; i < 40; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType ta = r.type8(), tb = r.type8(), ty = r.type8();
    const int64_t K = as.back(), N = bs.size() == 1 ? 1 : bs.back();
    OpCall c;
    c.op = "QLinearMatMul";
    c.opset = i % 2 == 0 ? 10 : 21;
    const bool per_col = i % 3 != 0;
    Tensor b_scale = per_col ? r.f32({N}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f));
    c.in = {r.codes(ta, as),
            scalar_f32(r.real(0.5f, 2.0f)),
            r.code(ta),
            r.codes(tb, bs),
            b_scale,
            per_col ? r.codes(tb, {N}) : r.code(tb),
            scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
            r.code(ty)};
    if (i % 7 == 3) {  // multipliers of exactly 0.5: ties everywhere
      c.in[1] = scalar_f32(1.0f);
      c.in[4] = scalar_f32(1.0f);
      c.in[6] = scalar_f32(2.0f);
    }
    if (i % 8 == 5) {  // opset 21: f16 scales (the multiplier is rounded to f16 twice)
      for (const int k : {1, 4, 6}) {
        const Tensor& f = *c.in[static_cast<size_t>(k)];
        Tensor h(DType::kF16, f.shape());
        for (int64_t e = 0; e < f.numel(); ++e)
          static_cast<uint16_t*>(h.raw())[e] = f32_to_f16(f.data<float>()[e]);
        c.in[static_cast<size_t>(k)] = h;
      }
    }
    c.packed = {3};
    expect_fast_is_reference(c, ops::reference::qlinear_matmul, "case " + std::to_string(i));
  }
}

// ai.qforge QLinearMatMul: the same with an int32 bias [N] added to the
// sum (fuse_qdq's MatMul -> Add); B constant (packed in prepare) or given
// per run (the small matrices' direct loop, or the GEMM for wide ones).
TEST(Int8GemmOps, QforgeQLinearMatMulWithBiasFastPathIsTheReference) {
  Rng r(12);
  for (int i = 0; i < 40; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType ta = r.type8(), tb = r.type8(), ty = r.type8();
    const int64_t K = as.back(), N = bs.size() == 1 ? 1 : bs.back();
    OpCall c;
    c.domain = "ai.qforge";
    c.op = "QLinearMatMul";
    c.opset = 1;
    const bool per_col = i % 3 != 0;
    c.in = {r.codes(ta, as),
            scalar_f32(r.real(0.5f, 2.0f)),
            r.code(ta),
            r.codes(tb, bs),
            per_col ? r.f32({N}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f)),
            per_col ? r.codes(tb, {N}) : r.code(tb),
            scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
            r.code(ty),
            r.i32({N}, -20000, 20000)};
    c.packed = {3};
    expect_fast_is_reference(c, ops::reference::qlinear_matmul, "case " + std::to_string(i));
  }
}

// Where the int32 sum could differ from the reference's int64 one (K past
// the bound with extreme zero points), the op must still give the reference
// result: it falls back.
TEST(Int8GemmOps, QLinearMatMulBeyondTheInt32BoundFallsBack) {
  Rng r(3);
  const int64_t K = 33100;
  Tensor a(DType::kU8, {2, K}), b(DType::kI8, {K, 3});
  std::memset(a.raw(), 255, a.nbytes());
  std::memset(b.raw(), 0x80, b.nbytes());  // -128
  OpCall c;
  c.op = "QLinearMatMul";
  c.opset = 10;
  c.in = {a,
          scalar_f32(1.0f),
          Tensor::from<uint8_t>({}, {0}),
          b,
          scalar_f32(1.0f),
          Tensor::from<int8_t>({}, {127}),
          scalar_f32(1e7f),
          Tensor::from<uint8_t>({}, {128})};
  c.packed = {3};
  expect_fast_is_reference(c, ops::reference::qlinear_matmul, "K = 33100, worst zero points");
  // The exact sum is -255 * 255 * 33100 = -2152327500 (below int32's range):
  // times 1e-7 that is -215.23, and with zero point 128 saturates to 0.
  EXPECT_EQ(static_cast<const uint8_t*>(run_fast(c, nullptr).raw())[0], 0);
}

TEST(Int8GemmOps, MatMulIntegerToFloatFastPathIsTheReference) {
  Rng r(4);
  for (int i = 0; i < 30; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType ta = r.type8(), tb = r.type8();
    const int64_t N = bs.size() == 1 ? 1 : bs.back();
    OpCall c = ms_call("MatMulIntegerToFloat");
    const bool per_col = i % 2 == 1;
    c.in = {r.codes(ta, as),
            r.codes(tb, bs),
            scalar_f32(r.real(1e-3f, 1e-2f)),
            per_col ? r.f32({N}, -1e-2f, 1e-2f) : scalar_f32(r.real(1e-3f, 1e-2f)),
            std::nullopt,
            std::nullopt,
            std::nullopt};
    if (i % 3 != 0) c.in[4] = r.code(ta);
    if (i % 4 == 1) c.in[5] = r.code(tb);
    if (i % 4 == 2) c.in[5] = r.codes(tb, {N});
    if (i % 2 == 0) c.in[6] = r.f32({N}, -2.0f, 2.0f);
    c.packed = {1};
    c.params = {3, 5, 6};
    expect_fast_is_reference(c, ops::reference::matmul_integer_to_float,
                             "case " + std::to_string(i));
  }
}

TEST(Int8GemmOps, DynamicQuantizeMatMulFastPathIsTheReference) {
  Rng r(5);
  for (int i = 0; i < 20; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType tb = r.type8();
    const int64_t N = bs.size() == 1 ? 1 : bs.back();
    OpCall c = ms_call("DynamicQuantizeMatMul");
    const float lo = i % 3 == 0 ? 0.5f : -3.0f;  // ranges with and without 0 inside
    c.in = {r.f32(as, lo, 2.0f), r.codes(tb, bs),
            i % 2 ? r.f32({N}, 1e-3f, 1e-2f) : scalar_f32(0.01f), std::nullopt, std::nullopt};
    if (i % 3 == 1) c.in[3] = r.code(tb);
    if (i % 3 == 2) c.in[3] = r.codes(tb, {N});
    if (i % 2 == 0) c.in[4] = r.f32({N}, -1.0f, 1.0f);
    c.packed = {1};
    c.params = {2, 3, 4};
    expect_fast_is_reference(c, ops::reference::dynamic_quantize_matmul,
                             "case " + std::to_string(i));
  }
}

// A large enough for its range and codes to be taken in parts on the pool
// (one per thread, at least 2^15 values each): the extremes in different
// parts, and a NaN in the last part still refused as the reference does.
TEST(Int8GemmOps, DynamicQuantizeMatMulInPartsIsTheReference) {
  Rng r(6);
  Tensor a = r.f32({3, 200, 300}, -1.0f, 1.0f);
  float* x = a.data<float>();
  x[a.numel() - 1] = 7.5f;   // the maximum, in the last part
  x[a.numel() / 2] = -4.0f;  // the minimum, in the middle one
  OpCall c = ms_call("DynamicQuantizeMatMul");
  c.in = {a, r.codes(DType::kI8, {300, 40}), r.f32({40}, 1e-3f, 1e-2f), std::nullopt,
          r.f32({40}, -1.0f, 1.0f)};
  c.packed = {1};
  expect_fast_is_reference(c, ops::reference::dynamic_quantize_matmul, "parts");
  x[a.numel() - 2] = std::numeric_limits<float>::quiet_NaN();
  c.in[0] = a;
  ThreadPool pool(3);
  EXPECT_THROW(run_reference(c, ops::reference::dynamic_quantize_matmul), Error);
  try {
    run_fast(c, &pool);
    ADD_FAILURE() << "a NaN in A was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

// A past the 8 MiB of codes each thread keeps between calls gets codes of
// its own for the call; calls before and after it reuse the kept buffer. Each
// is the reference's result.
TEST(Int8GemmOps, DynamicQuantizeMatMulLargeAIsTheReference) {
  Rng r(7);
  OpCall c = ms_call("DynamicQuantizeMatMul");
  c.in = {std::nullopt, r.codes(DType::kI8, {8, 3}), r.f32({3}, 1e-3f, 1e-2f), std::nullopt,
          r.f32({3}, -1.0f, 1.0f)};
  c.packed = {1};
  for (const int64_t rows : {int64_t{1000}, int64_t{(8 << 20) / 8 + 1}, int64_t{3000}}) {
    Tensor a = r.f32({rows, 8}, -2.0f, 2.0f);
    a.data<float>()[a.numel() - 1] = 9.0f;  // the maximum, at the end
    c.in[0] = a;
    expect_fast_is_reference(c, ops::reference::dynamic_quantize_matmul,
                             std::to_string(rows) + " rows");
  }
}

// B's per-column values made in prepare are used only while the inputs are
// the tensors they were made from: prepared on other scales, zero points and
// bias (or without them), a run on these is still the reference's.
TEST(Int8GemmOps, DynamicQuantizeMatMulParamsMadeFromOtherTensorsAreNotUsed) {
  Rng r(8);
  OpCall c = ms_call("DynamicQuantizeMatMul");
  c.in = {r.f32({2, 5, 64}, -2.0f, 2.0f), r.codes(DType::kI8, {64, 40}), r.f32({40}, 1e-3f, 1e-2f),
          r.codes(DType::kI8, {40}), r.f32({40}, -1.0f, 1.0f)};
  const Tensor want = run_reference(c, ops::reference::dynamic_quantize_matmul);
  c.packed = {1, 2, 3, 4};
  ASSERT_TRUE(same_tensor(run_fast(c, nullptr), want)) << "prepared on the same tensors";
  Inputs other = c.in;
  other[2] = r.f32({40}, 1e-3f, 1e-2f);
  other[3] = r.codes(DType::kI8, {40});
  other[4] = r.f32({40}, -1.0f, 1.0f);
  for (int k = 2; k <= 4; ++k) {
    Inputs from = c.in;
    from[static_cast<size_t>(k)] = other[static_cast<size_t>(k)];
    c.pack_from = from;
    EXPECT_TRUE(same_tensor(run_fast(c, nullptr), want)) << "prepared on another input " << k;
    from[static_cast<size_t>(k)] = std::nullopt;
    c.pack_from = from;
    EXPECT_TRUE(same_tensor(run_fast(c, nullptr), want)) << "prepared without input " << k;
  }
}

// A random convolution: 1-D to 3-D, groups (and depthwise), kernel sizes,
// strides, dilations, pads or auto_pad.
struct ConvCase {
  Shape x, w;
  Attrs attrs;
};

ConvCase random_conv(Rng& r, int i) {
  const size_t S = i % 6 == 5 ? 1 : (i % 6 == 4 ? 3 : 2);
  const bool depthwise = S == 2 && i % 4 == 1;
  const int64_t group = depthwise ? r.range(1, 6) : r.range(1, 3);
  const int64_t Cg = depthwise ? 1 : r.range(1, 5), Mg = depthwise ? 1 : r.range(1, 7);
  ConvCase c;
  c.x = {r.range(1, 2), Cg * group};
  c.w = {Mg * group, Cg};
  std::vector<int64_t> strides, dil, pads(2 * S);
  for (size_t s = 0; s < S; ++s) {
    const int64_t k = r.range(1, S == 3 ? 2 : 3);
    strides.push_back(r.range(1, 2));
    dil.push_back(r.range(1, 2));
    pads[s] = r.range(0, 2);
    pads[s + S] = r.range(0, 2);
    c.w.push_back(k);
    c.x.push_back((k - 1) * dil.back() + 1 + r.range(0, S == 3 ? 3 : 8));
  }
  c.attrs = {{"group", ai(group)}, {"strides", ais(strides)}, {"dilations", ais(dil)}};
  if (i % 7 == 6)
    c.attrs["auto_pad"] = ir::Attribute::of(std::string(i % 2 ? "SAME_UPPER" : "SAME_LOWER"));
  else
    c.attrs["pads"] = ais(pads);
  return c;
}

std::string conv_what(const ConvCase& cc, int i) {
  return "case " + std::to_string(i) + ": x " + shape_str(cc.x) + " w " + shape_str(cc.w) +
         " group " + std::to_string(cc.attrs.count("group") ? cc.attrs.at("group").i : 1);
}

// A QLinearConv call of this geometry on these inputs, its weights packed.
OpCall qlinear_conv_call(const ConvCase& cc, Inputs in) {
  OpCall c;
  c.op = "QLinearConv";
  c.opset = 10;
  c.attrs = cc.attrs;
  c.in = std::move(in);
  c.packed = {3};
  c.params = {1, 2, 4, 5, 6, 7, 8};
  return c;
}

// Random QLinearConv inputs for this geometry: random 8-bit types, scales
// per tensor or per channel (i), a bias on even i.
Inputs random_qconv_inputs(Rng& r, const ConvCase& cc, int i) {
  const DType tx = r.type8(), tw = r.type8(), ty = r.type8();
  const int64_t M = cc.w[0], K = cc.w[1] * shape_numel(Shape(cc.w.begin() + 2, cc.w.end()));
  const bool per_ch = i % 3 != 0;
  Inputs in = {r.codes(tx, cc.x),
               scalar_f32(r.real(0.5f, 2.0f)),
               r.code(tx),
               r.codes(tw, cc.w),
               per_ch ? r.f32({M}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f)),
               per_ch ? r.codes(tw, {M}) : r.code(tw),
               scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
               r.code(ty),
               std::nullopt};
  if (i % 2 == 0) in[8] = r.i32({M}, -50000, 50000);
  return in;
}

TEST(Int8GemmOps, QLinearConvFastPathIsTheReference) {
  Rng r(6);
  for (int i = 0; i < 60; ++i) {
    const ConvCase cc = random_conv(r, i);
    const OpCall c = qlinear_conv_call(cc, random_qconv_inputs(r, cc, i));
    expect_fast_is_reference(c, ops::reference::qlinear_conv, conv_what(cc, i));
  }
}

// One input channel (a first layer's grayscale image): im2col from a padded
// plane with 4-byte kernel-row copies, u8 rows padded with zeros to a
// multiple of 4 that the GEMM reads in place (a_rows_padded), kernel rows of
// 3 taps as 4-byte words ending in x's zero point (times a weight 0), and no
// row sums where the weights have no zero point. Kernel rows of 1-4 taps (5 and
// a W dilation: the general im2col), planes narrower than 4, pads past the
// image, strides, H dilations, weights with and without zero points, and a
// 200 x 200 image whose second im2col chunk starts mid-row.
TEST(Int8GemmOps, OneChannelQLinearConvIsTheReference) {
  Rng r(19);
  for (int i = 0; i < 40; ++i) {
    const int64_t KH = r.range(1, 5), KW = i % 10 == 9 ? 5 : r.range(1, 4);
    const int64_t dh = r.range(1, 2), dw = i % 10 == 8 ? 2 : 1;
    const bool big = i == 0;
    ConvCase cc;
    cc.x = {r.range(1, 3), 1, big ? 200 : (KH - 1) * dh + r.range(1, 9),
            big ? 200 : (KW - 1) * dw + r.range(1, 9)};
    cc.w = {r.range(1, 40), 1, KH, KW};
    cc.attrs = {{"strides", ais({r.range(1, 3), r.range(1, 3)})},
                {"dilations", ais({dh, dw})},
                {"pads", ais({r.range(0, 2), r.range(0, 2), r.range(0, 2), r.range(0, 2)})}};
    const int64_t M = cc.w[0];
    const DType tx = i % 4 == 3 ? DType::kI8 : DType::kU8, tw = i % 5 == 4 ? DType::kU8 : DType::kI8;
    const bool w_zp = i % 3 == 2 || tw == DType::kU8;
    const OpCall c = qlinear_conv_call(
        cc, {r.codes(tx, cc.x), scalar_f32(r.real(0.5f, 2.0f)), r.code(tx), r.codes(tw, cc.w),
             r.f32({M}, 0.5f, 2.0f), w_zp ? r.codes(tw, {M}) : Tensor(tw, {M}),
             scalar_f32(1.0f / spread_scale(KH * KW) * r.real(0.5f, 2.0f)), r.code(DType::kU8),
             r.i32({M}, -500, 500)});
    expect_fast_is_reference(c, ops::reference::qlinear_conv, conv_what(cc, i));
  }
}

// [N, C, H, W] -> [N, H, W, C], any 8-bit type.
Tensor to_nhwc(const Tensor& x) {
  const int64_t N = x.dim(0), C = x.dim(1), S = x.dim(2) * x.dim(3);
  Tensor y(x.dtype(), {N, x.dim(2), x.dim(3), C});
  const auto* a = static_cast<const uint8_t*>(x.raw());
  auto* b = static_cast<uint8_t*>(y.raw());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) b[(n * S + s) * C + c] = a[(n * C + c) * S + s];
  return y;
}

// MaxPool 2x2 / 2 (floor) of the codes of a [N, C, H, W] u8 / i8 tensor,
// written out here: the test's own oracle for the fused pooling.
Tensor pool2x2(const Tensor& x) {
  Tensor y(x.dtype(), {x.dim(0), x.dim(1), x.dim(2) / 2, x.dim(3) / 2});
  const bool s8 = x.dtype() == DType::kI8;
  const auto* a = static_cast<const uint8_t*>(x.raw());
  auto* b = static_cast<uint8_t*>(y.raw());
  auto val = [&](int64_t i) { return s8 ? int{static_cast<int8_t>(a[i])} : int{a[i]}; };
  const int64_t H = x.dim(2), W = x.dim(3);
  for (int64_t p = 0; p < x.dim(0) * x.dim(1); ++p)
    for (int64_t i = 0; i < y.dim(2); ++i)
      for (int64_t j = 0; j < y.dim(3); ++j) {
        int m = -1000;
        for (int64_t di = 0; di < 2; ++di)
          for (int64_t dj = 0; dj < 2; ++dj) m = std::max(m, val((p * H + 2 * i + di) * W + 2 * j + dj));
        b[(p * y.dim(2) + i) * y.dim(3) + j] = static_cast<uint8_t>(m);
      }
  return y;
}

// ai.qforge QLinearConvMaxPool (fuse_conv_maxpool's QLinearConv -> MaxPool
// 2x2 / 2): the fast path (the GEMM's channels-last tiles pooled before the
// transpose, chunks of whole row pairs, or the kernel's pooled epilogue,
// kernels::qgemm_pool2x2, where it has one; depthwise pooled after) against
// its reference, and that against QLinearConv's reference pooled by the
// test. Odd output heights and widths (floor), strides, groups, 1x1,
// depthwise, u8 / s8 outputs, per-channel zero points, with and without a
// bias, planes of several chunks, 1 and 3 threads.
TEST(Int8GemmOps, QLinearConvMaxPoolIsQLinearConvThenMaxPool) {
  Rng r(41);
  const std::vector<ConvCase> fixed = {
      {{32, 1, 28, 28}, {32, 1, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},      // cnn_bn's conv1
      {{3, 32, 14, 14}, {64, 32, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},     // conv2
      {{1, 16, 61, 47}, {24, 16, 3, 3}, {{"pads", ais({1, 0, 1, 0})}}},     // several chunks, odd sizes
      {{2, 8, 12, 12}, {12, 4, 3, 3}, {{"group", ai(2)}, {"strides", ais({2, 1})}}},
      {{2, 6, 9, 8}, {5, 6, 1, 1}, {}},                                      // 1x1, odd height
      {{2, 20, 11, 10}, {20, 1, 3, 3}, {{"group", ai(20)}, {"pads", ais({1, 1, 1, 1})}}},  // depthwise
      {{1, 3, 3, 1}, {4, 3, 2, 1}, {}},                                      // one output column: empty
  };
  for (int i = 0; i < 36; ++i) {
    ConvCase cc;
    if (i < static_cast<int>(fixed.size())) {
      cc = fixed[static_cast<size_t>(i)];
    } else {
      cc = random_conv(r, i / 4 * 6 + i % 4);  // (2-D: i % 6 < 4)
    }
    const DType tx = r.type8(), tw = r.type8(), ty = r.type8();
    const int64_t M = cc.w[0], K = cc.w[1] * cc.w[2] * cc.w[3];
    OpCall c;
    c.domain = "ai.qforge";
    c.op = "QLinearConvMaxPool";
    c.opset = 1;
    c.attrs = cc.attrs;
    c.in = {r.codes(tx, cc.x),
            scalar_f32(r.real(0.5f, 2.0f)),
            r.code(tx),
            r.codes(tw, cc.w),
            i % 2 ? r.f32({M}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f)),
            i % 2 ? r.codes(tw, {M}) : r.code(tw),
            scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
            r.code(ty),
            r.i32({M}, -50000, 50000)};
    if (i % 5 == 2) c.in.pop_back();  // no bias
    c.packed = {3};
    c.params = {1, 2, 4, 5, 6, 7, 8};
    expect_fast_is_reference(c, ops::reference::qlinear_conv_maxpool, conv_what(cc, i));
    OpCall plain = c;
    plain.domain = "";
    plain.op = "QLinearConv";
    plain.opset = 10;
    const Tensor want = pool2x2(run_reference(plain, ops::reference::qlinear_conv));
    EXPECT_TRUE(same_tensor(run_reference(c, ops::reference::qlinear_conv_maxpool), want))
        << conv_what(cc, i);
    // channels_last: x and y [N, H, W, C], the same codes moved.
    OpCall last = c;
    last.attrs["channels_last"] = ai(1);
    last.in[0] = to_nhwc(*c.in[0]);
    expect_fast_is_reference(last, ops::reference::qlinear_conv_maxpool, conv_what(cc, i) + " channels_last");
    EXPECT_TRUE(same_tensor(run_reference(last, ops::reference::qlinear_conv_maxpool), to_nhwc(want)))
        << conv_what(cc, i);
  }
}

// QLinearConvMaxPool's fast path pools the int32 sums and requantizes only
// the maxima where every multiplier is positive (requantization then never
// decreases with the sum), in float32 where that gives the float64 codes
// and in float64 for a row with a lane where it might not: a multiplier of
// exactly 1/2 (every odd sum a tie, rounded to even), sums past +-2^24
// (from a bias), a negative or zero multiplier on one channel (pooled as
// codes then), 16 to 64 channels (vectors and a scalar tail), u8 and s8
// outputs; against the reference, on 1 and 3 threads. x and w stay within
// a few codes of their zero points where the rounding is under test, so
// that the outputs don't saturate.
TEST(Int8GemmOps, QLinearConvMaxPoolPoolsSumsBeforeRequantizing) {
  Rng r(47);
  struct Case {
    const char* what;
    int64_t M;
    float w_scale;       // every channel's, but channel 0's where w0 is set
    float w0;            // channel 0's w_scale (NaN: the same as the others)
    int32_t bias_lo, bias_hi;
    int near;            // x and w within this many codes of their zero points (0: any codes)
  };
  const float same = std::numeric_limits<float>::quiet_NaN();
  const std::vector<Case> cases = {
      {"multiplier 1/2: ties", 32, 0.5f, same, -100, 100, 2},
      {"multiplier 1/2, 40 channels", 40, 0.5f, same, -100, 100, 2},
      {"sums past 2^24", 16, 1.0f / (1 << 18), same, (1 << 24) - 2000, (1 << 24) + 40000, 3},
      {"sums below -2^24", 32, 1.0f / (1 << 18), same, -(1 << 24) - 40000, -(1 << 24) + 2000, 3},
      {"a negative multiplier", 32, 0.5f, -0.5f, -100, 100, 2},
      {"a zero multiplier", 32, 0.37f, 0.0f, -100, 100, 2},
      {"spread", 64, 4.0f / spread_scale(9 * 8), same, -5000, 5000, 0},
  };
  // Codes of type t within `near` of zp's (any code where near is 0).
  auto codes_near = [&](DType t, Shape shape, int32_t zp, int near) {
    if (near == 0) return r.codes(t, std::move(shape));
    Tensor x(t, std::move(shape));
    auto* d = static_cast<uint8_t*>(x.raw());
    for (int64_t i = 0; i < x.numel(); ++i) d[i] = static_cast<uint8_t>(zp + r.range(-near, near));
    return x;
  };
  for (const Case& k : cases) {
    for (const DType ty : {DType::kU8, DType::kI8}) {
      const int64_t C = 8;
      std::vector<float> ws(static_cast<size_t>(k.M), k.w_scale);
      if (!std::isnan(k.w0)) ws[0] = k.w0;
      OpCall c;
      c.domain = "ai.qforge";
      c.op = "QLinearConvMaxPool";
      c.opset = 1;
      c.attrs = {{"pads", ais({1, 1, 1, 1})}};
      c.in = {codes_near(DType::kU8, {2, C, 13, 10}, 100, k.near),
              scalar_f32(1.0f),
              Tensor::from<uint8_t>({}, {100}),
              codes_near(DType::kI8, {k.M, C, 3, 3}, 0, k.near),
              Tensor::from<float>({k.M}, ws),
              Tensor::from<int8_t>({k.M}, std::vector<int8_t>(static_cast<size_t>(k.M), 0)),
              scalar_f32(1.0f),
              ty == DType::kU8 ? Tensor::from<uint8_t>({}, {128}) : Tensor::from<int8_t>({}, {0}),
              r.i32({k.M}, k.bias_lo, k.bias_hi)};
      c.packed = {3};
      c.params = {1, 2, 4, 5, 6, 7, 8};
      expect_fast_is_reference(c, ops::reference::qlinear_conv_maxpool,
                               std::string(k.what) + (ty == DType::kU8 ? ", u8 y" : ", s8 y"));
    }
  }
  // Sums past 2^24 whose float32 product rounds to the other side of a
  // half-integer than the float64 one (so that only the float64 redo gives
  // the reference's code): x all at its zero point makes every sum its
  // channel's bias; the multipliers are found here, 16 of them.
  std::vector<int32_t> bias;
  std::vector<float> mult;
  for (int32_t v = (1 << 24) + 1; bias.size() < 16 && v < (1 << 24) + 200000; v += 2) {
    const float s = static_cast<float>(100.5 / (static_cast<double>(v) - 0.5));
    float f = static_cast<float>(v) * s;  // the float32 path without its redo
    f = std::min(std::max(f, -128.0f), 127.0f);
    if (static_cast<int32_t>(std::nearbyint(f)) != kernels::requantize_double(v, s, 0, -128, 127)) {
      bias.push_back(v);
      mult.push_back(s);
    }
  }
  ASSERT_EQ(bias.size(), 16u) << "no sums found where float32 alone rounds differently";
  OpCall c;
  c.domain = "ai.qforge";
  c.op = "QLinearConvMaxPool";
  c.opset = 1;
  c.attrs = {{"pads", ais({1, 1, 1, 1})}};
  Tensor x(DType::kU8, {1, 4, 6, 6});
  std::memset(x.raw(), 77, x.nbytes());
  c.in = {x, scalar_f32(1.0f), Tensor::from<uint8_t>({}, {77}), r.codes(DType::kI8, {16, 4, 3, 3}),
          Tensor::from<float>({16}, mult), Tensor::from<int8_t>({16}, std::vector<int8_t>(16, 0)),
          scalar_f32(1.0f), Tensor::from<int8_t>({}, {0}), Tensor::from<int32_t>({16}, bias)};
  c.packed = {3};
  c.params = {1, 2, 4, 5, 6, 7, 8};
  expect_fast_is_reference(c, ops::reference::qlinear_conv_maxpool, "float32 rounds the other way");
}

// QLinearConvMaxPool where the AVX-512 VNNI kernel's pooled epilogue reads
// A's rows from the padded channels-last plane instead of im2col rows
// (kernels::QImplicitRows: u8 x, s8 weights without zero points, one group,
// kernel rows of whole 4-byte groups or kw4's words): against the
// reference, NCHW and channels-last, 1 and 3 threads. cnn_bn's second conv,
// planes of several chunks, strides along H and W, a dilation along H,
// kernel rows of 12 bytes (3 channels, 4 taps), a 1 x 1 with stride 2, a
// one-channel image with 3-tap kernel rows read as 4-byte words (kw4: the
// 4th byte is the next input byte, times a weight 0) and with 4-tap rows,
// odd sizes, and beside them cases that take the im2col path (a W
// dilation, kernel rows of 18 bytes, weights with a zero point), for
// contrast.
TEST(Int8GemmOps, QLinearConvMaxPoolReadsThePaddedPlane) {
  Rng r(53);
  const std::vector<ConvCase> cases = {
      {{1, 32, 14, 14}, {64, 32, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},  // cnn_bn's conv2
      {{2, 16, 61, 47}, {24, 16, 3, 3}, {{"pads", ais({1, 0, 1, 0})}}},  // several chunks
      {{1, 8, 23, 18}, {20, 8, 3, 3}, {{"strides", ais({2, 1})}, {"pads", ais({1, 1, 0, 1})}}},
      {{1, 8, 13, 26}, {16, 8, 3, 3}, {{"strides", ais({1, 2})}, {"pads", ais({1, 1, 1, 1})}}},
      {{1, 4, 19, 15}, {33, 4, 3, 3}, {{"dilations", ais({2, 1})}, {"pads", ais({2, 1, 2, 1})}}},
      {{2, 3, 11, 12}, {17, 3, 2, 4}, {{"pads", ais({0, 1, 1, 2})}}},  // kernel rows of 12 bytes
      {{1, 12, 9, 9}, {40, 12, 1, 1}, {{"strides", ais({2, 2})}}},      // 1 x 1, stride 2
      {{2, 1, 28, 28}, {32, 1, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},   // cnn_bn's conv1: kw4 words
      // kw4 with a stride and a dilation along H; then 4-tap rows of one channel
      {{1, 1, 20, 13}, {12, 1, 3, 3}, {{"strides", ais({2, 1})}, {"dilations", ais({2, 1})}}},
      {{1, 1, 17, 15}, {8, 1, 2, 4}, {{"strides", ais({1, 2})}, {"pads", ais({0, 2, 1, 0})}}},
      {{1, 8, 12, 12}, {16, 8, 3, 3}, {{"dilations", ais({1, 2})}}},    // im2col: a W dilation
      {{1, 6, 10, 10}, {16, 6, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},   // im2col: rows of 18 bytes
  };
  for (size_t i = 0; i < cases.size() + 1; ++i) {
    const bool zp = i == cases.size();  // the first case again, weights with a zero point
    const ConvCase& cc = cases[zp ? 0 : i];
    const int64_t M = cc.w[0], K = cc.w[1] * cc.w[2] * cc.w[3];
    const DType ty = r.type8();
    OpCall c;
    c.domain = "ai.qforge";
    c.op = "QLinearConvMaxPool";
    c.opset = 1;
    c.attrs = cc.attrs;
    c.in = {r.codes(DType::kU8, cc.x),
            scalar_f32(r.real(0.5f, 2.0f)),
            r.code(DType::kU8),
            r.codes(DType::kI8, cc.w),
            i % 2 ? r.f32({M}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f)),
            zp ? r.codes(DType::kI8, {M})
               : Tensor::from<int8_t>({M}, std::vector<int8_t>(static_cast<size_t>(M), 0)),
            scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
            r.code(ty),
            r.i32({M}, -50000, 50000)};
    if (i % 3 == 1) c.in.pop_back();  // no bias
    c.packed = {3};
    c.params = {1, 2, 4, 5, 6, 7, 8};
    const std::string what = conv_what(cc, static_cast<int>(i)) + (zp ? ", w zero points" : "");
    expect_fast_is_reference(c, ops::reference::qlinear_conv_maxpool, what);
    OpCall last = c;
    last.attrs["channels_last"] = ai(1);
    last.in[0] = to_nhwc(*c.in[0]);
    expect_fast_is_reference(last, ops::reference::qlinear_conv_maxpool, what + " channels_last");
  }
}

ConvCase random_depthwise(Rng& r, int i);  // below

// ai.qforge QLinearConv with channels_last (passes::qconv_channels_last):
// x and y [N, H, W, C]; the GEMM path reads x and writes y in place, the
// depthwise loop copies its rows; against the reference (which transposes
// around QLinearConv's) and that against QLinearConv's reference moved by
// the test: random 2-D geometries, depthwise ones, and layers of the CNNs.
TEST(Int8GemmOps, ChannelsLastQLinearConvIsQLinearConv) {
  Rng r(43);
  const std::vector<ConvCase> fixed = {
      {{2, 32, 28, 28}, {32, 1, 3, 3}, {{"group", ai(32)}, {"strides", ais({2, 2})}, {"pads", ais({1, 1, 1, 1})}}},
      {{2, 32, 14, 14}, {64, 32, 1, 1}, {}},
      {{2, 128, 7, 7}, {128, 1, 3, 3}, {{"group", ai(128)}, {"pads", ais({1, 1, 1, 1})}}},
      {{1, 20, 9, 11}, {20, 1, 3, 3}, {{"group", ai(20)}, {"pads", ais({1, 0, 1, 2})}}},  // C off the lanes
      {{2, 8, 12, 12}, {12, 4, 3, 3}, {{"group", ai(2)}, {"strides", ais({2, 1})}}},
  };
  for (int i = 0; i < 40; ++i) {
    ConvCase cc;
    if (i < static_cast<int>(fixed.size())) {
      cc = fixed[static_cast<size_t>(i)];
    } else {
      cc = i % 2 ? random_depthwise(r, i) : random_conv(r, i / 4 * 6 + i % 4);
    }
    const DType tx = r.type8(), tw = r.type8(), ty = r.type8();
    const int64_t M = cc.w[0], K = cc.w[1] * cc.w[2] * cc.w[3];
    OpCall plain;
    plain.op = "QLinearConv";
    plain.opset = 10;
    plain.attrs = cc.attrs;
    plain.in = {r.codes(tx, cc.x),
                scalar_f32(r.real(0.5f, 2.0f)),
                r.code(tx),
                r.codes(tw, cc.w),
                i % 3 ? r.f32({M}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f)),
                i % 3 ? r.codes(tw, {M}) : r.code(tw),
                scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
                r.code(ty),
                r.i32({M}, -50000, 50000)};
    plain.packed = {3};
    plain.params = {1, 2, 4, 5, 6, 7, 8};
    OpCall last = plain;
    last.domain = "ai.qforge";
    last.opset = 1;
    last.attrs["channels_last"] = ai(1);
    last.in[0] = to_nhwc(*plain.in[0]);
    expect_fast_is_reference(last, ops::reference::qlinear_conv, conv_what(cc, i));
    EXPECT_TRUE(same_tensor(run_reference(last, ops::reference::qlinear_conv),
                            to_nhwc(run_reference(plain, ops::reference::qlinear_conv))))
        << conv_what(cc, i);
  }
}

// ai.qforge QLinearConvTranspose (written by fuse_qdq for a quantized
// ConvTranspose): the GEMM + col2im path against its scalar reference, on
// Conv's random geometries turned around (W is [C, M / group, k...]).
TEST(Int8GemmOps, QLinearConvTransposeFastPathIsTheReference) {
  Rng r(16);
  for (int i = 0; i < 60; ++i) {
    ConvCase cc = random_conv(r, i);
    const int64_t group = cc.attrs.at("group").i, M = cc.w[0], Mg = M / group;
    Shape w = {cc.x[1], Mg};
    w.insert(w.end(), cc.w.begin() + 2, cc.w.end());
    cc.w = w;
    const size_t S = cc.x.size() - 2;
    if (cc.attrs.count("pads")) {
      // ConvTranspose pads crop the output: keep at least one position.
      std::vector<int64_t> pads = cc.attrs.at("pads").ints;
      for (size_t s = 0; s < S; ++s) {
        const int64_t full = cc.attrs.at("strides").ints[s] * (cc.x[2 + s] - 1) +
                             (cc.w[2 + s] - 1) * cc.attrs.at("dilations").ints[s] + 1;
        if (pads[s] + pads[s + S] >= full) pads[s] = pads[s + S] = 0;
      }
      cc.attrs["pads"] = ais(pads);
    }
    if (i % 5 == 2) {
      std::vector<int64_t> op;
      for (size_t s = 0; s < S; ++s) op.push_back(cc.attrs.at("strides").ints[s] - 1);
      cc.attrs["output_padding"] = ais(op);
    }
    const DType tx = r.type8(), tw = r.type8(), ty = r.type8();
    const int64_t K = cc.x[1] / group * shape_numel(Shape(cc.w.begin() + 2, cc.w.end()));
    const bool per_ch = group == 1 && i % 3 != 0;
    // Per-channel zero points: equal ones take the GEMM, differing ones the reference.
    Tensor wzp = per_ch ? r.codes(tw, {M}) : r.code(tw);
    if (per_ch && i % 2 == 0)
      for (int64_t k = 1; k < M; ++k) static_cast<uint8_t*>(wzp.raw())[k] = static_cast<uint8_t*>(wzp.raw())[0];
    OpCall c;
    c.domain = "ai.qforge";
    c.op = "QLinearConvTranspose";
    c.opset = 1;
    c.attrs = cc.attrs;
    c.in = {r.codes(tx, cc.x),
            scalar_f32(r.real(0.5f, 2.0f)),
            r.code(tx),
            r.codes(tw, cc.w),
            per_ch ? r.f32({M}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f)),
            std::move(wzp),
            scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
            r.code(ty),
            std::nullopt};
    if (i % 2 == 0) c.in[8] = r.i32({M}, -50000, 50000);
    c.packed = {3};
    expect_fast_is_reference(c, ops::reference::qlinear_conv_transpose, conv_what(cc, i));
  }
}

TEST(Int8GemmOps, ConvIntegerFastPathIsTheReference) {
  Rng r(7);
  for (int i = 0; i < 60; ++i) {
    const ConvCase cc = random_conv(r, i);
    const DType tx = r.type8(), tw = r.type8();
    OpCall c;
    c.op = "ConvInteger";
    c.opset = 10;
    c.attrs = cc.attrs;
    c.in = {r.codes(tx, cc.x), r.codes(tw, cc.w), std::nullopt, std::nullopt};
    if (i % 3 != 0) c.in[2] = r.code(tx);
    const int zp_kind = i / 3 % 3;  // not i % 3: depthwise cases get all three
    if (zp_kind == 1) c.in[3] = r.code(tw);
    if (zp_kind == 2) c.in[3] = r.codes(tw, {cc.w[0]});
    c.packed = {1};
    expect_fast_is_reference(c, ops::reference::conv_integer, conv_what(cc, i));
  }
}

// Bigger layers: several chunks of output positions, several groups.
TEST(Int8GemmOps, ConvLayersOfRealisticSize) {
  Rng r(8);
  const std::vector<ConvCase> cases = {
      {{1, 16, 30, 30}, {32, 16, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},
      {{2, 32, 14, 14},
       {64, 8, 3, 3},
       {{"group", ai(4)}, {"strides", ais({2, 2})}, {"pads", ais({1, 1, 1, 1})}}},
      {{1, 24, 20, 20}, {24, 1, 5, 5}, {{"group", ai(24)}, {"pads", ais({2, 2, 2, 2})}}},
      // Depthwise with long rows, strided and dilated, asymmetric pads, and
      // a short-rowed strided one (6 and 5 channels: one partial lane block).
      {{2, 6, 11, 80},
       {6, 1, 3, 3},
       {{"group", ai(6)}, {"strides", ais({2, 1})}, {"dilations", ais({1, 2})}, {"pads", ais({1, 2, 0, 1})}}},
      {{1, 5, 9, 100}, {5, 1, 3, 4}, {{"group", ai(5)}, {"strides", ais({1, 3})}, {"pads", ais({0, 1, 2, 0})}}},
      {{2, 7, 13, 17}, {7, 1, 3, 3}, {{"group", ai(7)}, {"strides", ais({2, 2})}, {"pads", ais({1, 1, 1, 1})}}},
      {{1, 64, 9, 9}, {48, 64, 1, 1}, {}},
      // One group of several channels (im2col from a padded plane): cnn_bn's
      // second layer, kernel rows of 96 bytes; rows of 36 bytes (a last
      // 32-byte piece overlapping the first), W dilated (a copy per tap of
      // 12 bytes), strides and pads past the image; rows of 18 and 6 bytes.
      {{1, 32, 14, 14}, {64, 32, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},
      {{2, 12, 15, 13},
       {20, 12, 3, 3},
       {{"strides", ais({2, 1})}, {"dilations", ais({1, 2})}, {"pads", ais({3, 0, 2, 4})}}},
      {{1, 12, 11, 9}, {8, 12, 2, 3}, {{"strides", ais({1, 2})}, {"pads", ais({0, 2, 1, 0})}}},
      {{1, 6, 10, 10}, {5, 6, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},
      {{1, 2, 7, 8}, {3, 2, 2, 3}, {{"pads", ais({2, 2, 2, 2})}}},
  };
  int i = 0;
  for (const ConvCase& cc : cases) {
    const int64_t M = cc.w[0], K = cc.w[1] * cc.w[2] * cc.w[3];
    OpCall c;
    c.op = "QLinearConv";
    c.opset = 10;
    c.attrs = cc.attrs;
    c.in = {r.codes(DType::kU8, cc.x),
            scalar_f32(0.02f),
            r.code(DType::kU8),
            r.codes(DType::kI8, cc.w),
            r.f32({M}, 0.01f, 0.02f),
            Tensor(DType::kI8, {M}),
            scalar_f32(0.02f * 0.015f / spread_scale(K) * 3),
            r.code(DType::kU8),
            r.i32({M}, -5000, 5000)};
    c.packed = {3};
    c.params = {1, 2, 4, 5, 6, 7, 8};
    expect_fast_is_reference(c, ops::reference::qlinear_conv, "layer " + std::to_string(i++));
  }
}

// ---------------------------------------------------------------- depthwise

// A random depthwise 2-D convolution (group == C == M, one channel per
// group): the channels-last direct path (depthwise_2d in quant_gemm.cpp).
// Channel counts off the 16-lane blocks, tiny planes (1 x 1, 2 x 3), kernels
// 3 x 3, 5 x 5, 1 x 3 and random, strides 1-3, dilations 1-2, asymmetric
// pads (or auto_pad), batches 1-3.
ConvCase random_depthwise(Rng& r, int i) {
  static const int64_t kChannels[] = {1, 3, 16, 17, 32, 33, 5, 48};
  static const int64_t kKernels[][2] = {{3, 3}, {5, 5}, {1, 3}, {3, 1}, {2, 4}, {1, 1}};
  const int64_t C = kChannels[i % 8];
  const int64_t KH = i % 7 == 6 ? r.range(1, 5) : kKernels[i % 6][0];
  const int64_t KW = i % 7 == 6 ? r.range(1, 5) : kKernels[i % 6][1];
  const std::vector<int64_t> strides = {r.range(1, 3), r.range(1, 3)};
  const std::vector<int64_t> dil = {r.range(1, 2), r.range(1, 2)};
  std::vector<int64_t> pads = {r.range(0, 2), r.range(0, 2), r.range(0, 2), r.range(0, 2)};
  int64_t H = 0, W = 0;
  switch (i % 5) {
    case 0:  // a 1 x 1 or 2 x 3 plane: most taps in the padding
      H = i % 2 ? 1 : 2;
      W = i % 2 ? 1 : 3;
      pads = {KH - 1, KW - 1, KH - 1, KW - 1};  // (at least one output)
      break;
    default:
      H = (KH - 1) * dil[0] + r.range(1, 12);
      W = (KW - 1) * dil[1] + r.range(1, 30);
  }
  ConvCase c;
  c.x = {r.range(1, 3), C, H, W};
  c.w = {C, 1, KH, KW};
  c.attrs = {{"group", ai(C)}, {"strides", ais(strides)}, {"dilations", ais(dil)}};
  if (i % 11 == 10)
    c.attrs["auto_pad"] = ir::Attribute::of(std::string(i % 2 ? "SAME_UPPER" : "SAME_LOWER"));
  else
    c.attrs["pads"] = ais(pads);
  return c;
}

// QLinearConv: u8 / s8 activations, weights and outputs, per-tensor and
// per-channel weight scales and zero points, with and without bias; on 1 and
// 3 threads (expect_fast_is_reference). Under QFORGE_ISA=ref (ctest
// Int8GemmOps.depthwise_isa_ref) the same loops run without vectors.
TEST(Int8GemmOps, DepthwiseQLinearConvIsTheReference) {
  Rng r(21);
  for (int i = 0; i < 120; ++i) {
    const ConvCase cc = random_depthwise(r, i);
    const OpCall c = qlinear_conv_call(cc, random_qconv_inputs(r, cc, i));
    expect_fast_is_reference(c, ops::reference::qlinear_conv, conv_what(cc, i));
  }
}

// QLinearConv's per-channel values and depthwise tables made in prepare are
// used only while the inputs are the tensors they were made from: prepared
// on another x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
// y_zero_point or B (or without it), a run on these is still the
// reference's. Depthwise and grouped convolutions, random 8-bit types.
TEST(Int8GemmOps, QLinearConvParamsMadeFromOtherTensorsAreNotUsed) {
  Rng r(23);
  for (int i = 0; i < 4; ++i) {
    ConvCase cc;
    cc.x = {1, 6, 7, 7};
    cc.w = i % 2 == 0 ? Shape{6, 1, 3, 3} : Shape{8, 3, 3, 3};
    cc.attrs = {{"group", ai(i % 2 == 0 ? 6 : 2)}, {"pads", ais({1, 1, 1, 1})}};
    OpCall c = qlinear_conv_call(cc, random_qconv_inputs(r, cc, 2 * i + 2));  // with B
    ASSERT_TRUE(c.in[8]);
    const Tensor want = run_reference(c, ops::reference::qlinear_conv);
    c.packed = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_TRUE(same_tensor(run_fast(c, nullptr), want))
        << conv_what(cc, i) << ", prepared on them";
    const Inputs other = random_qconv_inputs(r, cc, 2 * i + 2);
    for (int k = 1; k <= 8; ++k) {
      const auto ki = static_cast<size_t>(k);
      Inputs from = c.in;
      from[ki] = other[ki];
      // A zero point: the same type and shape with one code changed (the
      // other draw's may be of another type).
      if (k == 2 || k == 5 || k == 7) {
        from[ki] = r.codes(c.in[ki]->dtype(), c.in[ki]->shape());
        std::memcpy(from[ki]->raw(), c.in[ki]->raw(), c.in[ki]->nbytes());
        static_cast<uint8_t*>(from[ki]->raw())[0] ^= 0x11;
      }
      if (k == 3) from[ki] = r.codes(c.in[ki]->dtype(), c.in[ki]->shape());
      c.pack_from = from;
      EXPECT_TRUE(same_tensor(run_fast(c, nullptr), want))
          << conv_what(cc, i) << ", prepared on another input " << k;
      if (k != 8) continue;
      from[ki] = std::nullopt;
      c.pack_from = from;
      EXPECT_TRUE(same_tensor(run_fast(c, nullptr), want))
          << conv_what(cc, i) << ", prepared without B";
    }
  }
}

// ConvInteger: int32 outputs, wrapping sums (no exactness condition), zero
// points absent, per tensor or per channel.
TEST(Int8GemmOps, DepthwiseConvIntegerIsTheReference) {
  Rng r(22);
  for (int i = 0; i < 60; ++i) {
    const ConvCase cc = random_depthwise(r, i);
    const DType tx = r.type8(), tw = r.type8();
    OpCall c;
    c.op = "ConvInteger";
    c.opset = 10;
    c.attrs = cc.attrs;
    c.in = {r.codes(tx, cc.x), r.codes(tw, cc.w), std::nullopt, std::nullopt};
    if (i % 3 != 0) c.in[2] = r.code(tx);
    const int zp_kind = i / 3 % 3;
    if (zp_kind == 1) c.in[3] = r.code(tw);
    if (zp_kind == 2) c.in[3] = r.codes(tw, {cc.w[0]});
    c.packed = {1};
    expect_fast_is_reference(c, ops::reference::conv_integer, conv_what(cc, i));
  }
  // A sum past int32: 1 x 34000 taps of (0 - 255) * (0 - 255) = 65025 each
  // (2.2e9), which the reference wraps to int32; two channels, one window
  // and a second one shifted by the padding.
  OpCall c;
  c.op = "ConvInteger";
  c.opset = 10;
  c.attrs = {{"group", ai(2)}, {"pads", ais({0, 1, 0, 0})}};
  c.in = {Tensor(DType::kU8, {1, 2, 1, 34000}), Tensor(DType::kU8, {2, 1, 1, 34000}),
          Tensor::from<uint8_t>({}, {255}), Tensor::from<uint8_t>({}, {255})};
  c.packed = {1};
  expect_fast_is_reference(c, ops::reference::conv_integer, "sums past int32");
}

// Ties: multipliers 0.5 and 0.25 (exact in float and double) on small sums,
// so many products end in .5 and must round half to even (2.5 -> 2, 3.5 ->
// 4, -2.5 -> -2), and outputs that saturate at both ends.
TEST(Int8GemmOps, DepthwiseRoundsHalfToEven) {
  Rng r(24);
  for (const DType ty : {DType::kU8, DType::kI8}) {
    const int64_t C = 20;
    Tensor x(DType::kU8, {2, C, 9, 11}), w(DType::kI8, {C, 1, 3, 3});
    for (int64_t i = 0; i < x.numel(); ++i)
      static_cast<uint8_t*>(x.raw())[i] = static_cast<uint8_t>(r.range(124, 132));
    for (int64_t i = 0; i < w.numel(); ++i)
      static_cast<int8_t*>(w.raw())[i] = static_cast<int8_t>(r.range(-3, 3));
    Tensor ws(DType::kF32, {C});
    for (int64_t m = 0; m < C; ++m) ws.data<float>()[m] = m % 3 == 2 ? 40.0f : (m % 2 ? 0.5f : 0.25f);
    OpCall c;
    c.op = "QLinearConv";
    c.opset = 10;
    c.attrs = {{"group", ai(C)}, {"pads", ais({1, 1, 1, 1})}, {"strides", ais({1, 2})}};
    c.in = {x,
            scalar_f32(1.0f),
            Tensor::from<uint8_t>({}, {128}),
            w,
            ws,
            Tensor(DType::kI8, {C}),
            scalar_f32(1.0f),
            ty == DType::kU8 ? Tensor::from<uint8_t>({}, {128}) : Tensor::from<int8_t>({}, {0}),
            r.i32({C}, -7, 7)};
    c.packed = {3};
    c.params = {1, 2, 4, 5, 6, 7, 8};
    expect_fast_is_reference(c, ops::reference::qlinear_conv, std::string(dtype_name(ty)) + " output");
  }
}

// Layers of the Fashion-MNIST depthwise-separable CNN (models/fmnist/
// dwsep_cnn.onnx) and bigger planes cut into several bands of output rows
// (per image, and more on 3 threads with one image).
TEST(Int8GemmOps, DepthwiseLayersOfRealisticSize) {
  Rng r(23);
  const auto dw = [](int64_t n, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s) {
    const int64_t p = k / 2;
    return ConvCase{{n, C, H, W},
                    {C, 1, k, k},
                    {{"group", ai(C)}, {"strides", ais({s, s})}, {"pads", ais({p, p, p, p})}}};
  };
  const std::vector<ConvCase> cases = {dw(3, 32, 28, 28, 3, 2), dw(2, 64, 14, 14, 3, 2),
                                       dw(2, 128, 7, 7, 3, 1),  dw(1, 32, 150, 150, 3, 1),
                                       dw(1, 24, 97, 131, 5, 2), dw(2, 40, 64, 64, 3, 2)};
  int i = 0;
  for (const ConvCase& cc : cases) {
    const int64_t M = cc.w[0], K = cc.w[2] * cc.w[3];
    OpCall c;
    c.op = "QLinearConv";
    c.opset = 10;
    c.attrs = cc.attrs;
    c.in = {r.codes(DType::kU8, cc.x),
            scalar_f32(0.02f),
            r.code(DType::kU8),
            r.codes(DType::kI8, cc.w),
            r.f32({M}, 0.01f, 0.02f),
            Tensor(DType::kI8, {M}),
            scalar_f32(0.02f * 0.015f / spread_scale(K) * 3),
            r.code(DType::kU8),
            r.i32({M}, -5000, 5000)};
    c.packed = {3};
    c.params = {1, 2, 4, 5, 6, 7, 8};
    expect_fast_is_reference(c, ops::reference::qlinear_conv, "layer " + std::to_string(i++));
  }
}

// com.microsoft QLinearGlobalAveragePool: the fast path (channels across
// the vector lanes, the float sums in the reference's order) against the
// plain loop, bit for bit: u8 and i8, NCHW and channels_last, 1- to 3-D
// planes, channel counts that are and aren't a multiple of the lanes, scales
// that make many averages land on ties and saturate at both ends.
TEST(Int8GemmOps, QLinearGlobalAveragePoolFastPathIsTheReference) {
  Rng r(31);
  const std::vector<Shape> shapes = {{32, 128, 7, 7}, {3, 20, 5, 9}, {2, 17, 11}, {1, 5, 3, 4, 2},
                                     {4, 1, 28, 28},  {2, 64, 1, 1}};
  int i = 0;
  for (const Shape& s : shapes)
    for (const bool last : {false, true}) {
      const DType t = r.type8();
      Shape xs = s;
      if (last) std::rotate(xs.begin() + 1, xs.begin() + 2, xs.end());  // [N, spatial..., C]
      OpCall c = ms_call("QLinearGlobalAveragePool");
      c.attrs = {{"channels_last", ai(last ? 1 : 0)}};
      const float ys = i % 3 == 0 ? 0.25f : r.real(0.002f, 0.05f);
      c.in = {r.codes(t, xs), scalar_f32(i % 3 == 0 ? 0.5f : r.real(0.01f, 0.1f)), r.code(t),
              scalar_f32(ys), r.code(t)};
      expect_fast_is_reference(c, ops::reference::qlinear_global_average_pool,
                               shape_str(xs) + (last ? " channels_last" : ""));
      ++i;
    }
}

// Weights packed in prepare are used only for the tensor they were packed
// from: an initializer overridden at run time (same shape) is packed anew.
TEST(Int8GemmOps, PackedWeightsOfAnotherTensorAreNotUsed) {
  Rng r(9);
  OpCall c;
  c.op = "MatMulInteger";
  c.opset = 10;
  c.in = {r.codes(DType::kU8, {5, 40}), r.codes(DType::kI8, {40, 20}), std::nullopt, std::nullopt};
  c.packed = {1};
  c.pack_from = Inputs{c.in[0], r.codes(DType::kI8, {40, 20}), std::nullopt, std::nullopt};
  ASSERT_TRUE(same_tensor(run_fast(c, nullptr), run_reference(c, ops::reference::matmul_integer)));
  OpCall v;
  v.op = "QLinearConv";
  v.opset = 10;
  v.in = {r.codes(DType::kU8, {1, 4, 6, 6}),
          scalar_f32(1.0f),
          r.code(DType::kU8),
          r.codes(DType::kI8, {6, 4, 3, 3}),
          scalar_f32(1.0f),
          r.code(DType::kI8),
          scalar_f32(300.0f),
          r.code(DType::kU8),
          std::nullopt};
  v.packed = {3};
  v.pack_from = v.in;
  (*v.pack_from)[3] = r.codes(DType::kI8, {6, 4, 3, 3});
  ASSERT_TRUE(same_tensor(run_fast(v, nullptr), run_reference(v, ops::reference::qlinear_conv)));
}

// Through a Session: weights as initializers (packed once in prepare) on a
// 2-thread pool, the same as the reference.
TEST(Int8GemmOps, SessionPacksInitializerWeights) {
  Rng r(10);
  const Tensor x = r.codes(DType::kU8, {2, 8, 12, 12}), w = r.codes(DType::kI8, {16, 8, 3, 3});
  const Tensor xs = scalar_f32(0.05f), xz = r.code(DType::kU8), ws = r.f32({16}, 0.01f, 0.02f),
               wz = Tensor(DType::kI8, {16}), ys = scalar_f32(0.1f), yz = r.code(DType::kU8),
               bias = r.i32({16}, -1000, 1000);
  ir::Model m;
  m.opsets[""] = 13;
  m.graph.name = "main";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kU8, ir::to_sym(x.shape())};
  const std::vector<std::pair<std::string, Tensor>> inits = {{"xs", xs}, {"xz", xz}, {"w", w},
                                                             {"ws", ws}, {"wz", wz}, {"ys", ys},
                                                             {"yz", yz}, {"b", bias}};
  for (const auto& [name, t] : inits) m.graph.initializers[name] = t;
  ir::Node n;
  n.name = "n";
  n.op_type = "QLinearConv";
  n.inputs = {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"};
  n.outputs = {"y"};
  n.attrs = {{"pads", ais({1, 1, 1, 1})}};
  m.graph.nodes.push_back(n);
  m.graph.outputs = {"y"};
  SessionOptions so;
  so.threads = 2;
  Session s(std::move(m), so);
  const Tensor got = s.run({{"x", x}}).at(0);
  OpCall c;
  c.op = "QLinearConv";
  c.opset = 13;
  c.attrs = n.attrs;
  c.in = {x, xs, xz, w, ws, wz, ys, yz, bias};
  EXPECT_TRUE(same_tensor(got, run_reference(c, ops::reference::qlinear_conv)));
}

// ---------------------------------------------------------------- QGemm

OpCall qgemm_call(Inputs in, Attrs attrs = {}) {
  OpCall c = ms_call("QGemm");
  c.in = std::move(in);
  c.attrs = std::move(attrs);
  c.packed = {3};
  return c;
}

// Worked by hand from ContribOperators.md's definition: acc = C + (A - a_zp)(B - b_zp),
// Y = acc * alpha * a_scale * b_scale[n] (/ y_scale, rounded half to even, + y_zp).
TEST(Int8GemmOps, QGemmByHand) {
  // A - 10 = [[0, 10, 20], [-10, 245, 118]]; B = [[1, -1], [2, 0], [-3, 4]] (b_zp 0):
  // sums [[0 + 20 - 60, 0 + 0 + 80], [-10 + 490 - 354, 10 + 0 + 472]] = [[-40, 80], [126, 482]].
  const Tensor A = Tensor::from<uint8_t>({2, 3}, {10, 20, 30, 0, 255, 128});
  const Tensor At = Tensor::from<uint8_t>({3, 2}, {10, 0, 20, 255, 30, 128});
  const Tensor B = Tensor::from<int8_t>({3, 2}, {1, -1, 2, 0, -3, 4});
  const Tensor Bt = Tensor::from<int8_t>({2, 3}, {1, 2, -3, -1, 0, 4});
  const Tensor a_zp = Tensor::from<uint8_t>({}, {10}), b_zp = Tensor::from<int8_t>({}, {0});
  const Tensor C = Tensor::from<int32_t>({2}, {5, -6});  // acc [[-35, 74], [131, 476]]
  const Tensor b_scale = Tensor::from<float>({2}, {2.0f, 1.0f});
  const Attrs half = {{"alpha", af(0.5f)}};
  // Float: scale = 0.5 * 0.25 * [2, 1] = [0.25, 0.125].
  for (const bool ta : {false, true})
    for (const bool tb : {false, true}) {
      Attrs at = half;
      at["transA"] = ai(ta);
      at["transB"] = ai(tb);
      const Inputs in = {ta ? At : A, scalar_f32(0.25f), a_zp, tb ? Bt : B, b_scale, b_zp, C};
      for (RefFn fn : {static_cast<RefFn>(nullptr), ops::reference::qgemm}) {
        const OpCall call = qgemm_call(in, at);
        const Tensor y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
        ASSERT_EQ(y.dtype(), DType::kF32);
        ASSERT_EQ(y.shape(), (Shape{2, 2}));
        const float* v = y.data<float>();
        EXPECT_EQ(v[0], -8.75f);
        EXPECT_EQ(v[1], 9.25f);
        EXPECT_EQ(v[2], 32.75f);
        EXPECT_EQ(v[3], 59.5f);
      }
    }
  // Quantized, y_scale 0.5: acc * [0.5, 0.25] = [[-17.5, 18.5], [65.5, 119]],
  // rounded half to even [[-18, 18], [66, 119]], + y_zp.
  for (RefFn fn : {static_cast<RefFn>(nullptr), ops::reference::qgemm}) {
    OpCall call = qgemm_call({A, scalar_f32(0.25f), a_zp, B, b_scale, b_zp, C, scalar_f32(0.5f),
                              Tensor::from<uint8_t>({}, {100})},
                             half);
    Tensor y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
    ASSERT_EQ(y.dtype(), DType::kU8);
    EXPECT_EQ(std::vector<uint8_t>(y.data<uint8_t>(), y.data<uint8_t>() + 4),
              (std::vector<uint8_t>{82, 118, 166, 219}));
    // y_zp 200 saturates the second row: 266, 319 -> 255.
    call.in[8] = Tensor::from<uint8_t>({}, {200});
    y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
    EXPECT_EQ(std::vector<uint8_t>(y.data<uint8_t>(), y.data<uint8_t>() + 4),
              (std::vector<uint8_t>{182, 218, 255, 255}));
    // C as a column [M, 1] = [[5], [-6]]: acc [[-35, 85], [120, 476]] -> *[0.5, 0.25] =
    // [[-17.5, 21.25], [60, 119]] -> [[-18, 21], [60, 119]] + 100.
    call.in[6] = Tensor::from<int32_t>({2, 1}, {5, -6});
    call.in[8] = Tensor::from<uint8_t>({}, {100});
    y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
    EXPECT_EQ(std::vector<uint8_t>(y.data<uint8_t>(), y.data<uint8_t>() + 4),
              (std::vector<uint8_t>{82, 121, 160, 219}));
  }
}

TEST(Int8GemmOps, QGemmFastPathIsTheReference) {
  Rng r(11);
  for (int i = 0; i < 60; ++i) {
    const int64_t M = r.range(1, 40), K = r.range(0, 80), N = r.range(1, 50);
    const bool ta = r.coin(), tb = r.coin();
    const DType tA = r.type8(), tB = r.type8(), tY = r.type8();
    const bool per_col = i % 2 == 1;
    Inputs in = {r.codes(tA, ta ? Shape{K, M} : Shape{M, K}),
                 scalar_f32(r.real(0.01f, 0.1f)),
                 r.code(tA),
                 r.codes(tB, tb ? Shape{N, K} : Shape{K, N}),
                 per_col ? r.f32({N}, 0.01f, 0.1f) : scalar_f32(r.real(0.01f, 0.1f)),
                 per_col ? r.codes(tB, {N}) : r.code(tB),
                 std::nullopt,
                 std::nullopt,
                 std::nullopt};
    const Shape c_shapes[] = {{}, {N}, {1, N}, {M, 1}, {M, N}, {1}};
    if (i % 7 != 0) in[6] = r.i32(c_shapes[i % 6], -100000, 100000);
    const float y_scale = 0.05f * 0.05f / spread_scale(K) / 40.0f * 4.0f;
    if (i % 3 != 0) {
      in[7] = scalar_f32(y_scale * r.real(0.5f, 2.0f));
      in[8] = r.code(tY);
    } else if (i % 6 == 3) {
      in[7] =
          scalar_f32(y_scale);  // y_scale without y_zero_point: float output divided by it (ORT)
    }
    if (i % 5 == 2) in[5] = std::nullopt;  // b_zero_point absent: 0
    const Attrs at = {
        {"transA", ai(ta)}, {"transB", ai(tb)}, {"alpha", af(i % 4 == 1 ? -1.5f : 1.0f)}};
    expect_fast_is_reference(qgemm_call(in, at), ops::reference::qgemm,
                             "case " + std::to_string(i));
  }
}

TEST(Int8GemmOps, QGemmRefusesBadInput) {
  Rng r(12);
  const Tensor A = r.codes(DType::kU8, {2, 3}), B = r.codes(DType::kI8, {3, 4});
  const Tensor az = r.code(DType::kU8), bz = r.code(DType::kI8), s = scalar_f32(0.1f);
  auto expect_error = [](const OpCall& c, Errc code) {
    for (RefFn fn : {static_cast<RefFn>(nullptr), ops::reference::qgemm}) {
      try {
        if (fn)
          run_reference(c, fn);
        else
          run_fast(c, nullptr);
        ADD_FAILURE() << "no error";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(e.subject().find("node 'n'"), std::string::npos) << e.what();
      }
    }
  };
  expect_error(qgemm_call({A, s, az, r.codes(DType::kI8, {4, 4}), s, bz}),
               Errc::kShapeMismatch);  // K
  expect_error(qgemm_call({A, s, az, B, s, bz}, {{"transA", ai(1)}}), Errc::kShapeMismatch);
  expect_error(qgemm_call({r.codes(DType::kU8, {2, 3, 1}), s, az, B, s, bz}), Errc::kShapeMismatch);
  expect_error(qgemm_call({A, s, az, B, r.f32({3}, 0.1f, 0.2f), bz}),
               Errc::kShapeMismatch);  // b_scale
  expect_error(qgemm_call({A, s, az, B, s, r.codes(DType::kI8, {2})}), Errc::kShapeMismatch);
  expect_error(qgemm_call({A, s, r.code(DType::kI8), B, s, bz}), Errc::kTypeMismatch);  // a_zp type
  expect_error(qgemm_call({A, s, az, B, s, bz, r.i32({3}, 0, 1)}), Errc::kShapeMismatch);  // C
  expect_error(qgemm_call({A, s, az, B, s, bz, r.f32({4}, 0, 1)}), Errc::kTypeMismatch);
  expect_error(qgemm_call({A, s, az, B, s, bz, std::nullopt, std::nullopt, az}),
               Errc::kInvalidArgument);
  expect_error(qgemm_call({A, s, az, B, s, bz, std::nullopt, scalar_f32(0.0f), az}),
               Errc::kInvalidArgument);
  expect_error(qgemm_call({r.f32({2, 3}, 0, 1), s, az, B, s, bz}), Errc::kTypeMismatch);
}

TEST(Int8GemmOps, QGemmInfersShapeAndType) {
  auto vi = [](std::optional<DType> t, ir::SymShape s) {
    ir::ValueInfo v;
    v.dtype = t;
    v.shape = std::move(s);
    return v;
  };
  const ir::ValueInfo a = vi(DType::kU8, {ir::Dim(7), ir::Dim()}),
                      b = vi(DType::kI8, {ir::Dim(5), ir::Dim(9)});
  const ir::ValueInfo f = vi(DType::kF32, {}), z8 = vi(DType::kI8, {});
  auto infer = [&](std::vector<const ir::ValueInfo*> in, Attrs attrs) {
    Inputs present;
    for (const auto* p : in) present.push_back(p ? std::optional<Tensor>(Tensor()) : std::nullopt);
    const ir::Node node = make_node(kMs, "QGemm", present, std::move(attrs));
    ops::InferContext ctx(node, 1, in, std::vector<const Tensor*>(in.size(), nullptr));
    ops::OpRegistry::global().find(kMs, "QGemm", 1)->infer(ctx);
    return ctx.outputs().at(0);
  };
  ir::ValueInfo y = infer({&a, &f, &z8, &b, &f, &z8}, {});
  EXPECT_EQ(y.dtype, DType::kF32);
  EXPECT_EQ(ir::sym_shape_str(*y.shape), "[7, 9]");
  y = infer({&a, &f, &z8, &b, &f, &z8, nullptr, &f, &z8}, {{"transA", ai(1)}, {"transB", ai(1)}});
  EXPECT_EQ(y.dtype, DType::kI8);
  EXPECT_EQ(y.shape->at(1).size, 5);
  EXPECT_FALSE(y.shape->at(0).known());
}

// ONNX Runtime 1.30's own QGemm outputs (CPU provider, on an AVX-512 VNNI
// machine, where its u8 x s8 products are exact), for inputs and models made
// by scripts/gen_qgemm_golden.js: float and quantized outputs, transA /
// transB, alpha, per-column B, every C shape.
TEST(Int8GemmOps, QGemmMatchesOnnxRuntime) {
  const nlohmann::json j = test::load_json(std::string(QFORGE_GOLDEN_DIR) + "/qgemm_ort.json");
  ASSERT_GE(j.at("cases").size(), 8u);
  for (const auto& c : j.at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    Inputs in;
    for (const auto& t : c.at("inputs")) {
      if (t.is_null()) {
        in.push_back(std::nullopt);
        continue;
      }
      const std::string type = t.at("type");
      const Shape shape = t.at("shape").get<Shape>();
      if (type == "float32") {
        in.push_back(Tensor::from<float>(shape, test::floats(t.at("data"))));
      } else if (type == "int32") {
        in.push_back(Tensor::from<int32_t>(shape, t.at("data").get<std::vector<int32_t>>()));
      } else {
        const auto v = t.at("data").get<std::vector<int32_t>>();
        Tensor x(type == "int8" ? DType::kI8 : DType::kU8, shape);
        for (size_t i = 0; i < v.size(); ++i)
          static_cast<uint8_t*>(x.raw())[i] = static_cast<uint8_t>(v[i]);
        in.push_back(x);
      }
    }
    Attrs at = {{"transA", ai(c.at("transA").get<int64_t>())},
                {"transB", ai(c.at("transB").get<int64_t>())},
                {"alpha", af(c.at("alpha").get<float>())}};
    const OpCall call = qgemm_call(in, at);
    const auto& want = c.at("output");
    for (RefFn fn : {static_cast<RefFn>(nullptr), ops::reference::qgemm}) {
      const Tensor y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
      ASSERT_EQ(y.shape(), want.at("shape").get<Shape>());
      if (want.at("type") == "float32") {
        ASSERT_EQ(y.dtype(), DType::kF32);
        const std::vector<float> w = test::floats(want.at("data"));
        for (size_t i = 0; i < w.size(); ++i)
          ASSERT_EQ(y.data<float>()[i], w[i]) << "element " << i;
      } else {
        ASSERT_EQ(dtype_name(y.dtype()), std::string(want.at("type") == "int8" ? "i8" : "u8"));
        const auto w = want.at("data").get<std::vector<int32_t>>();
        for (size_t i = 0; i < w.size(); ++i)
          ASSERT_EQ(std::stoi(value_at(y, static_cast<int64_t>(i))), w[i]) << "element " << i;
      }
    }
  }
}

}  // namespace
}  // namespace qforge
