// The graph passes (qforge/passes.h). References: PyTorch 1.13's output for
// a model with BatchNormalization kept in the graph (tests/data/passes/,
// made by scripts/make_pass_models.py), and, for the small graphs built
// here, the same graph run without the passes (each op of which is held to
// ONNX's backend test data by the conformance run).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>

#include "qforge/error.h"
#include "qforge/npy.h"
#include "qforge/passes.h"
#include "qforge/session.h"
#include "test_util.h"

using namespace qforge;

namespace {

const std::string kDataDir = std::string(QFORGE_MODELS_DIR) + "/../tests/data/passes/";

int count_op(const ir::Model& m, const std::string& op) {
  int n = 0;
  for (const ir::Node& node : m.graph.nodes) n += node.op_type == op;
  return n;
}

Tensor random_tensor(Shape shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(DType::kF32, std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

ir::Node node(std::string op, std::vector<std::string> in, std::vector<std::string> out,
              std::string name = "") {
  ir::Node n;
  n.op_type = std::move(op);
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  n.name = name.empty() ? n.op_type + "_" + n.outputs[0] : std::move(name);
  return n;
}

// x f32[2,3,6,6] -> Conv(W 4x3x3x3, B, pad 1) -> "c" -> (the nodes given).
ir::Model conv_model(std::vector<ir::Node> tail, std::vector<std::string> outputs) {
  ir::Model m;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, ir::to_sym({2, 3, 6, 6}), {}};
  m.graph.initializers["W"] = random_tensor({4, 3, 3, 3}, 1);
  m.graph.initializers["B"] = random_tensor({4}, 2);
  ir::Node c = node("Conv", {"x", "W", "B"}, {"c"}, "conv");
  c.attrs["pads"] = ir::Attribute::of(std::vector<int64_t>{1, 1, 1, 1});
  m.graph.nodes.push_back(c);
  for (ir::Node& n : tail) m.graph.nodes.push_back(std::move(n));
  m.graph.outputs = std::move(outputs);
  ir::infer_shapes(m);
  return m;
}

// Runs `m` with and without the passes; both outputs must agree.
void expect_same_results(const ir::Model& m, float tol = 1e-5f) {
  const Tensor x = random_tensor({2, 3, 6, 6}, 7, -2.0f, 2.0f);
  SessionOptions plain;
  plain.optimize = false;
  const std::vector<Tensor> want = Session(m, plain).run({{"x", x}});
  const std::vector<Tensor> got = Session(m).run({{"x", x}});
  ASSERT_EQ(got.size(), want.size());
  for (size_t o = 0; o < want.size(); ++o) {
    ASSERT_EQ(got[o].shape(), want[o].shape());
    for (int64_t i = 0; i < want[o].numel(); ++i)
      ASSERT_NEAR(got[o].data<float>()[i], want[o].data<float>()[i], tol) << "output " << o << " at " << i;
  }
}

}  // namespace

TEST(Passes, FoldsBatchNormAndFusesActivationsMatchingPyTorch) {
  const ir::Model raw = ir::load_model(kDataDir + "convbn.onnx");
  ASSERT_EQ(count_op(raw, "BatchNormalization"), 3);
  ir::Model m = raw;
  const passes::OptimizeReport r = passes::optimize(m);
  EXPECT_EQ(count_op(m, "BatchNormalization"), 0);
  EXPECT_EQ(count_op(m, "Cast"), 0);  // Clip's bounds, folded
  EXPECT_EQ(count_op(m, "Relu"), 0);
  EXPECT_EQ(count_op(m, "Clip"), 0);
  EXPECT_EQ(count_op(m, "FusedConv"), 2);
  EXPECT_EQ(count_op(m, "FusedGemm"), 1);
  EXPECT_EQ(count_op(m, "Gemm"), 1);  // the head has no activation
  EXPECT_GT(r.total, 0);
  EXPECT_EQ(m.opset("com.microsoft"), 1);
  // The BatchNormalization parameters and the unfolded weights are gone.
  EXPECT_LT(m.graph.initializers.size(), raw.graph.initializers.size());

  const Tensor x = read_npy(kDataDir + "convbn.input.npy");
  const Tensor want = read_npy(kDataDir + "convbn.output.npy");
  for (bool optimize : {false, true}) {
    SessionOptions so;
    so.optimize = optimize;
    const std::vector<Tensor> y = Session(raw, so).run({{"image", x}});
    ASSERT_EQ(y[0].shape(), want.shape());
    for (int64_t i = 0; i < want.numel(); ++i)
      EXPECT_NEAR(y[0].data<float>()[i], want.data<float>()[i], 1e-4f) << "optimize=" << optimize << " at " << i;
  }
}

TEST(Passes, FusesConvWithReluAndConstantClip) {
  {
    ir::Model m = conv_model({node("Relu", {"c"}, {"y"})}, {"y"});
    expect_same_results(m);
    EXPECT_EQ(passes::fuse_activations(m), 1);
    ASSERT_EQ(m.graph.nodes.size(), 1u);
    EXPECT_EQ(m.graph.nodes[0].op_type, "FusedConv");
    EXPECT_EQ(m.graph.nodes[0].domain, "com.microsoft");
    EXPECT_EQ(m.graph.nodes[0].attr_string("activation", ""), "Relu");
    EXPECT_EQ(m.graph.nodes[0].outputs[0], "y");
  }
  {
    ir::Model m = conv_model({node("Clip", {"c", "lo", "hi"}, {"y"})}, {"y"});
    m.graph.initializers["lo"] = Tensor::from<float>({}, {-0.5f});
    m.graph.initializers["hi"] = Tensor::from<float>({}, {0.75f});
    expect_same_results(m);
    EXPECT_EQ(passes::fuse_activations(m), 1);
    EXPECT_EQ(m.graph.nodes[0].attr_floats("activation_params"), (std::vector<float>{-0.5f, 0.75f}));
  }
}

TEST(Passes, LeavesWhatOthersNeed) {
  // The conv output is a graph output too: no fusion.
  ir::Model a = conv_model({node("Relu", {"c"}, {"y"})}, {"y", "c"});
  EXPECT_EQ(passes::fuse_activations(a), 0);
  expect_same_results(a);
  // Two readers of the conv output: no fusion.
  ir::Model b = conv_model({node("Relu", {"c"}, {"y"}), node("Sigmoid", {"c"}, {"z"})}, {"y", "z"});
  EXPECT_EQ(passes::fuse_activations(b), 0);
  // Clip with a bound that is a graph input: not a constant, no fusion.
  ir::Model c = conv_model({node("Clip", {"c", "lo"}, {"y"})}, {"y"});
  c.graph.inputs.push_back("lo");
  c.graph.values["lo"] = ir::ValueInfo{DType::kF32, ir::SymShape{}, {}};
  EXPECT_EQ(passes::fuse_activations(c), 0);
  // Relu after BatchNormalization whose input has a second reader: nothing
  // folds, nothing fuses across.
  ir::Model d = conv_model({node("BatchNormalization", {"c", "s", "t", "mu", "var"}, {"bn"}),
                            node("Relu", {"bn"}, {"y"}), node("Neg", {"c"}, {"z"})},
                           {"y", "z"});
  for (const char* n : {"s", "t", "mu"}) d.graph.initializers[n] = random_tensor({4}, 3);
  d.graph.initializers["var"] = random_tensor({4}, 4, 0.5f, 1.5f);
  ir::infer_shapes(d);
  EXPECT_EQ(passes::fold_batchnorm(d), 0);
  expect_same_results(d);
}

TEST(Passes, FoldsBatchNormIntoConv) {
  ir::Model m = conv_model({node("BatchNormalization", {"c", "s", "t", "mu", "var"}, {"y"})}, {"y"});
  m.graph.initializers["s"] = random_tensor({4}, 3, 0.5f, 2.0f);
  m.graph.initializers["t"] = random_tensor({4}, 4);
  m.graph.initializers["mu"] = random_tensor({4}, 5);
  m.graph.initializers["var"] = random_tensor({4}, 6, 0.1f, 2.0f);
  m.graph.nodes[1].attrs["epsilon"] = ir::Attribute::of(0.01f);
  ir::infer_shapes(m);
  expect_same_results(m, 1e-4f);
  ir::Model f = m;
  EXPECT_EQ(passes::fold_batchnorm(f), 1);
  EXPECT_EQ(count_op(f, "BatchNormalization"), 0);
  EXPECT_EQ(f.graph.nodes[0].outputs[0], "y");
  EXPECT_EQ(passes::remove_unused_initializers(f), 6);  // W, B, s, t, mu, var
}

TEST(Passes, FoldsConstantsButNotQuantizationOrOverridableInputs) {
  ir::Model m = conv_model({node("Add", {"c", "k"}, {"y"})}, {"y"});
  // k = Transpose(Wt): foldable. Then a DequantizeLinear of an int8
  // initializer, which stays for the quantized kernels.
  m.graph.initializers["Wt"] = random_tensor({1, 6, 6, 4}, 8);
  ir::Node tr = node("Transpose", {"Wt"}, {"k"});
  tr.attrs["perm"] = ir::Attribute::of(std::vector<int64_t>{0, 3, 1, 2});
  m.graph.nodes.insert(m.graph.nodes.begin(), tr);
  m.graph.initializers["q"] = Tensor::from<int8_t>({4}, {1, -2, 3, -4});
  m.graph.initializers["qs"] = Tensor::from<float>({}, {0.5f});
  m.graph.nodes.push_back(node("DequantizeLinear", {"q", "qs"}, {"dq"}));
  m.graph.outputs.push_back("dq");
  ir::infer_shapes(m);
  expect_same_results(m);
  ir::Model f = m;
  EXPECT_EQ(passes::fold_constants(f), 1);
  EXPECT_EQ(count_op(f, "Transpose"), 0);
  EXPECT_EQ(count_op(f, "DequantizeLinear"), 1);
  ASSERT_NE(f.graph.initializer("k"), nullptr);
  EXPECT_EQ(f.graph.initializer("k")->shape(), (Shape{1, 4, 6, 6}));
  // An initializer that is also a graph input may be replaced at run time.
  ir::Model g = m;
  g.graph.inputs.push_back("Wt");
  EXPECT_EQ(passes::fold_constants(g), 0);
}

TEST(Passes, RemovesIdentityAndInferenceDropout) {
  ir::Model m = conv_model({node("Identity", {"c"}, {"i"}), node("Dropout", {"i"}, {"d"}),
                            node("Relu", {"d"}, {"y"}), node("Identity", {"y"}, {"out"})},
                           {"out"});
  expect_same_results(m);
  EXPECT_EQ(passes::eliminate_identity(m), 2);  // the last Identity names the graph output
  EXPECT_EQ(count_op(m, "Identity"), 1);
  EXPECT_EQ(count_op(m, "Dropout"), 0);
  EXPECT_EQ(m.graph.nodes[1].inputs[0], "c");
  // Then the Relu fuses into the Conv.
  EXPECT_EQ(passes::fuse_activations(m), 1);
  expect_same_results(m);
}

namespace {

struct ConvPoolCase {
  std::string name;
  Shape x, w;
  int64_t group = 1;
  std::vector<int64_t> strides, pads;
  bool relu = true;
  bool fused = true;  // whether fuse_conv_maxpool applies
  std::vector<int64_t> pool_pads = {};
  bool pool_indices = false;
  bool conv_is_output = false;
};

// x -> Conv (W, B constant) [-> Relu] -> MaxPool 2x2 / 2 -> y.
ir::Model conv_pool_model(const ConvPoolCase& c) {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, ir::to_sym(c.x), {}};
  m.graph.initializers["W"] = random_tensor(c.w, 11);
  m.graph.initializers["B"] = random_tensor({c.w[0]}, 12);
  ir::Node conv = node("Conv", {"x", "W", "B"}, {"c"}, "conv");
  if (c.group != 1) conv.attrs["group"] = ir::Attribute::of(c.group);
  if (!c.strides.empty()) conv.attrs["strides"] = ir::Attribute::of(c.strides);
  if (!c.pads.empty()) conv.attrs["pads"] = ir::Attribute::of(c.pads);
  m.graph.nodes.push_back(conv);
  std::string in = "c";
  if (c.relu) {
    m.graph.nodes.push_back(node("Relu", {"c"}, {"r"}));
    in = "r";
  }
  ir::Node pool = node("MaxPool", {in}, {"y"}, "pool");
  if (c.pool_indices) pool.outputs.push_back("idx");
  pool.attrs["kernel_shape"] = ir::Attribute::of(std::vector<int64_t>{2, 2});
  pool.attrs["strides"] = ir::Attribute::of(std::vector<int64_t>{2, 2});
  if (!c.pool_pads.empty()) pool.attrs["pads"] = ir::Attribute::of(c.pool_pads);
  m.graph.nodes.push_back(pool);
  m.graph.outputs = {"y"};
  if (c.pool_indices) m.graph.outputs.push_back("idx");
  if (c.conv_is_output) m.graph.outputs.push_back(in);
  ir::infer_shapes(m);
  return m;
}

}  // namespace

namespace {

// A tensor of random 8-bit codes.
Tensor random_codes(DType t, const Shape& shape, uint32_t seed) {
  Tensor x(t, shape);
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) static_cast<uint8_t*>(x.raw())[i] = static_cast<uint8_t>(rng());
  return x;
}

// `raw` run by an optimizing Session (1 and 2 threads) gives the unoptimized
// run's outputs: bit for bit, or within atol (f32 outputs, when atol > 0).
void expect_optimized_run_identical(const ir::Model& raw, const Tensor& x, const std::string& what,
                                    float atol = 0) {
  SessionOptions plain;
  plain.optimize = false;
  const std::vector<Tensor> want = Session(raw, plain).run({{"x", x}});
  for (int threads : {1, 2}) {
    SessionOptions so;
    so.threads = threads;
    const std::vector<Tensor> got = Session(raw, so).run({{"x", x}});
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t o = 0; o < want.size(); ++o) {
      ASSERT_EQ(got[o].shape(), want[o].shape()) << what << ", output " << o;
      ASSERT_EQ(got[o].dtype(), want[o].dtype()) << what << ", output " << o;
      if (atol > 0 && want[o].dtype() == DType::kF32) {
        for (int64_t i = 0; i < want[o].numel(); ++i)
          ASSERT_NEAR(got[o].data<float>()[i], want[o].data<float>()[i], atol)
              << what << ", output " << o << ", threads " << threads << " at " << i;
        continue;
      }
      EXPECT_EQ(std::memcmp(got[o].raw(), want[o].raw(), want[o].nbytes()), 0)
          << what << ", output " << o << ", threads " << threads;
    }
  }
}

// x (8-bit codes) -> QLinearConv (constant W, scales, zero points, bias) ->
// "c" -> MaxPool 2x2 / 2 -> y: the graph fuse_qdq leaves for a quantized
// Conv -> MaxPool.
ir::Model qconv_pool_model(const ConvPoolCase& c, DType tx, DType ty, uint32_t seed) {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{tx, ir::to_sym(c.x), {}};
  std::mt19937 rng(seed);
  auto codes = [&](DType t, Shape s) {
    Tensor v(t, std::move(s));
    for (int64_t i = 0; i < v.numel(); ++i) static_cast<uint8_t*>(v.raw())[i] = static_cast<uint8_t>(rng());
    return v;
  };
  const int64_t M = c.w[0];
  const float k = static_cast<float>(c.w[1] * c.w[2] * c.w[3]);
  m.graph.initializers["xs"] = Tensor::from<float>({}, {0.02f});
  m.graph.initializers["xz"] = codes(tx, {});
  m.graph.initializers["W"] = codes(DType::kI8, c.w);
  m.graph.initializers["ws"] = random_tensor({M}, seed + 1, 0.005f, 0.01f);
  m.graph.initializers["wz"] = Tensor(DType::kI8, {M});
  m.graph.initializers["ys"] = Tensor::from<float>({}, {0.02f * 0.0075f * 40.0f * std::sqrt(k) / 74.0f});
  m.graph.initializers["yz"] = codes(ty, {});
  Tensor b(DType::kI32, {M});
  for (int64_t i = 0; i < M; ++i) b.data<int32_t>()[i] = static_cast<int32_t>(rng() % 20001) - 10000;
  m.graph.initializers["B"] = b;
  ir::Node conv = node("QLinearConv", {"x", "xs", "xz", "W", "ws", "wz", "ys", "yz", "B"}, {"c"}, "conv");
  if (c.group != 1) conv.attrs["group"] = ir::Attribute::of(c.group);
  if (!c.strides.empty()) conv.attrs["strides"] = ir::Attribute::of(c.strides);
  if (!c.pads.empty()) conv.attrs["pads"] = ir::Attribute::of(c.pads);
  m.graph.nodes.push_back(conv);
  ir::Node pool = node("MaxPool", {"c"}, {"y"}, "pool");
  pool.attrs["kernel_shape"] = ir::Attribute::of(std::vector<int64_t>{2, 2});
  pool.attrs["strides"] = ir::Attribute::of(std::vector<int64_t>{2, 2});
  if (!c.pool_pads.empty()) pool.attrs["pads"] = ir::Attribute::of(c.pool_pads);
  m.graph.nodes.push_back(pool);
  m.graph.outputs = {"y"};
  if (c.conv_is_output) m.graph.outputs.push_back("c");
  ir::infer_shapes(m);
  return m;
}

}  // namespace

// The QLinearConv -> MaxPool 2x2 / 2 of a quantized graph as ai.qforge
// QLinearConvMaxPool: the Session's fused graph gives the unfused graph's
// codes bit for bit (u8 and s8, 1 and 2 threads), and the pass leaves alone
// what it must.
TEST(Passes, FusesQLinearConvWithMaxPool2x2) {
  const std::vector<ConvPoolCase> cases = {
      {"3x3 pad 1 (cnn_bn's conv1)", {4, 1, 28, 28}, {32, 1, 3, 3}, 1, {}, {1, 1, 1, 1}},
      {"3x3 pad 1, 32 channels in", {3, 32, 14, 14}, {64, 32, 3, 3}, 1, {}, {1, 1, 1, 1}},
      {"odd output, stride 2", {2, 4, 21, 18}, {6, 4, 3, 3}, 1, {2, 2}, {1, 1, 1, 1}},
      {"grouped", {2, 4, 8, 8}, {6, 2, 3, 3}, 2, {}, {1, 1, 1, 1}},
      {"depthwise (pools after)", {2, 6, 12, 13}, {6, 1, 3, 3}, 6, {}, {1, 1, 1, 1}},
      {"pool with pads: left alone", {1, 3, 8, 8}, {4, 3, 3, 3}, 1, {}, {1, 1, 1, 1}, true, false, {1, 1, 1, 1}},
      {"conv output also a graph output: left alone", {1, 3, 8, 8}, {4, 3, 3, 3}, 1, {}, {1, 1, 1, 1}, true, false, {}, false, true},
  };
  uint32_t seed = 70;
  for (const ConvPoolCase& c : cases)
    for (const DType t : {DType::kU8, DType::kI8}) {
      const ir::Model raw = qconv_pool_model(c, t, t, seed++);
      ir::Model m = raw;
      passes::optimize(m);
      EXPECT_EQ(count_op(m, "QLinearConvMaxPool"), c.fused ? 1 : 0) << c.name;
      EXPECT_EQ(count_op(m, "MaxPool"), c.fused ? 0 : 1) << c.name;
      expect_optimized_run_identical(raw, random_codes(t, c.x, seed++),
                                     c.name + ", " + std::string(dtype_name(t)));
    }
}

namespace {

// Appends QLinearConv `name` (in -> out, C -> M channels, k x k, group,
// stride, pad; i8 weights per channel, u8 activations) with its constants.
void add_qconv(ir::Model& m, std::mt19937& rng, const std::string& name, const std::string& in,
               const std::string& out, int64_t C, int64_t M, int64_t k, int64_t group, int64_t stride,
               int64_t pad) {
  auto u8 = [&](Shape s) {
    Tensor v(DType::kU8, std::move(s));
    for (int64_t i = 0; i < v.numel(); ++i) static_cast<uint8_t*>(v.raw())[i] = static_cast<uint8_t>(rng());
    return v;
  };
  Tensor w(DType::kI8, {M, C / group, k, k});
  for (int64_t i = 0; i < w.numel(); ++i) static_cast<int8_t*>(w.raw())[i] = static_cast<int8_t>(rng());
  Tensor b(DType::kI32, {M});
  for (int64_t i = 0; i < M; ++i) b.data<int32_t>()[i] = static_cast<int32_t>(rng() % 20001) - 10000;
  const float K = static_cast<float>(C / group * k * k);
  auto& init = m.graph.initializers;
  init[name + ".xs"] = Tensor::from<float>({}, {0.02f});
  init[name + ".xz"] = u8({});
  init[name + ".w"] = w;
  init[name + ".ws"] = random_tensor({M}, static_cast<uint32_t>(rng()), 0.005f, 0.01f);
  init[name + ".wz"] = Tensor(DType::kI8, {M});
  init[name + ".ys"] = Tensor::from<float>({}, {0.02f * 0.0075f * 40.0f * std::sqrt(K) / 74.0f});
  init[name + ".yz"] = u8({});
  init[name + ".b"] = b;
  ir::Node c = node("QLinearConv", {in, name + ".xs", name + ".xz", name + ".w", name + ".ws",
                                    name + ".wz", name + ".ys", name + ".yz", name + ".b"},
                    {out}, name);
  c.attrs["group"] = ir::Attribute::of(group);
  c.attrs["strides"] = ir::Attribute::of(std::vector<int64_t>{stride, stride});
  c.attrs["pads"] = ir::Attribute::of(std::vector<int64_t>{pad, pad, pad, pad});
  m.graph.nodes.push_back(c);
}

// x u8[2, 3, 13, 12] -> conv 3->16 3x3 -> depthwise 16 s2 -> pointwise
// 16->24 -> MaxPool 2x2 -> conv 24->8 3x3 -> tail: QLinearGlobalAveragePool
// (gap), or Flatten and a com.microsoft QGemm of 72 -> 10 (fc 1: B [72, 10],
// u8 out; fc 2: transB, B [10, 72], float out), or nothing; the graph
// output is the last value; with `side`, the depthwise output is a graph
// output too (the chain is cut there).
ir::Model qconv_chain_model(bool gap, bool side, int fc = 0) {
  ir::Model m;
  m.opsets[""] = 17;
  m.opsets["com.microsoft"] = 1;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kU8, ir::to_sym({2, 3, 13, 12}), {}};
  std::mt19937 rng(90);
  add_qconv(m, rng, "a", "x", "a", 3, 16, 3, 1, 1, 1);
  add_qconv(m, rng, "b", "a", "b", 16, 16, 3, 16, 2, 1);
  add_qconv(m, rng, "c", "b", "c", 16, 24, 1, 1, 1, 0);
  ir::Node pool = node("MaxPool", {"c"}, {"p"}, "pool");
  pool.attrs["kernel_shape"] = ir::Attribute::of(std::vector<int64_t>{2, 2});
  pool.attrs["strides"] = ir::Attribute::of(std::vector<int64_t>{2, 2});
  m.graph.nodes.push_back(pool);
  add_qconv(m, rng, "d", "p", "d", 24, 8, 3, 1, 1, 1);
  m.graph.outputs = {"d"};
  if (gap) {
    m.graph.initializers["gs"] = Tensor::from<float>({}, {0.05f});
    m.graph.initializers["gz"] = Tensor::from<uint8_t>({}, {3});
    ir::Node n = node("QLinearGlobalAveragePool", {"d", "gs", "gz", "gs", "gz"}, {"y"}, "gap");
    n.domain = "com.microsoft";
    m.graph.nodes.push_back(n);
    m.graph.outputs = {"y"};
  }
  if (fc != 0) {
    ir::Node flat = node("Flatten", {"d"}, {"flat"}, "flatten");
    m.graph.nodes.push_back(flat);
    const bool tb = fc == 2;
    Tensor w(DType::kI8, tb ? Shape{10, 72} : Shape{72, 10});
    for (int64_t i = 0; i < w.numel(); ++i) static_cast<int8_t*>(w.raw())[i] = static_cast<int8_t>(rng());
    Tensor bias(DType::kI32, {10});
    for (int64_t i = 0; i < 10; ++i) bias.data<int32_t>()[i] = static_cast<int32_t>(rng() % 2001) - 1000;
    auto& init = m.graph.initializers;
    init["fc.as"] = Tensor::from<float>({}, {0.02f});
    init["fc.az"] = Tensor::from<uint8_t>({}, {static_cast<uint8_t>(rng())});
    init["fc.w"] = w;
    init["fc.ws"] = random_tensor({10}, static_cast<uint32_t>(rng()), 0.005f, 0.01f);
    init["fc.wz"] = Tensor(DType::kI8, {10});
    init["fc.b"] = bias;
    std::vector<std::string> in = {"flat", "fc.as", "fc.az", "fc.w", "fc.ws", "fc.wz", "fc.b"};
    if (!tb) {
      init["fc.ys"] = Tensor::from<float>({}, {0.02f * 0.0075f * 40.0f * std::sqrt(72.0f) / 74.0f});
      init["fc.yz"] = Tensor::from<uint8_t>({}, {128});
      in.insert(in.end(), {"fc.ys", "fc.yz"});
    }
    ir::Node q = node("QGemm", in, {"y"}, "fc");
    q.domain = "com.microsoft";
    q.attrs["transB"] = ir::Attribute::of(int64_t{tb ? 1 : 0});
    m.graph.nodes.push_back(q);
    m.graph.outputs = {"y"};
  }
  if (side) m.graph.outputs.push_back("b");
  // The initializers' value infos, as a loaded model has them: the convs'
  // output shapes (which fold_transpose_into_qgemm needs) follow from W's.
  for (const auto& [name, t] : m.graph.initializers)
    m.graph.values[name] = ir::ValueInfo{t.dtype(), ir::to_sym(t.shape()), {}};
  ir::infer_shapes(m);
  return m;
}

}  // namespace

// A chain of quantized convs run channels-last (qconv_channels_last): one
// Transpose in, one out (after the QLinearGlobalAveragePool that reads the
// chain channels-last, or after the last conv), none between; the outputs
// those of the graph as written (NCHW, no pass), bit for bit, on 1 and 2
// threads; a chain cut by a value that is also a graph output.
TEST(Passes, RunsQLinearConvChainsChannelsLast) {
  struct Case {
    bool gap, side;
    int transposes, channels_last;
  };
  for (const Case c : {Case{true, false, 2, 5}, Case{false, false, 2, 4}, Case{true, true, 4, 5}}) {
    const ir::Model raw = qconv_chain_model(c.gap, c.side);
    ir::Model m = raw;
    passes::optimize(m);
    int cl = 0;
    for (const ir::Node& n : m.graph.nodes) cl += n.attr_int("channels_last", 0) != 0;
    const std::string what = std::string(c.gap ? "gap" : "no gap") + (c.side ? ", side output" : "");
    EXPECT_EQ(count_op(m, "Transpose"), c.transposes) << what;
    EXPECT_EQ(cl, c.channels_last) << what;
    EXPECT_EQ(count_op(m, "QLinearConvMaxPool"), 1) << what;
    expect_optimized_run_identical(raw, random_codes(DType::kU8, {2, 3, 13, 12}, 91), what);
  }
}

// The chain's output flattened into a QGemm (a classifier): the Transpose
// back to NCHW is folded into the QGemm's B (fold_transpose_into_qgemm), so
// only the chain's input Transpose is left, and the outputs are the graph's
// as written (no pass), bit for bit, on 1 and 2 threads: B [K, N] with a u8
// output, and transB with a float output. With B also a graph output (not a
// constant to rewrite), or the Flatten's output read twice, the Transpose stays.
TEST(Passes, FoldsTheTransposeBeforeAClassifierIntoItsWeights) {
  for (int fc : {1, 2}) {
    const ir::Model raw = qconv_chain_model(false, false, fc);
    ir::Model m = raw;
    passes::optimize(m);
    const std::string what = fc == 1 ? "B [K, N]" : "transB";
    EXPECT_EQ(count_op(m, "Transpose"), 1) << what;
    EXPECT_EQ(count_op(m, "Flatten"), 1) << what;
    expect_optimized_run_identical(raw, random_codes(DType::kU8, {2, 3, 13, 12}, 92), what);
  }
  ir::Model pinned = qconv_chain_model(false, false, 1);
  pinned.graph.outputs.push_back("fc.w");
  passes::optimize(pinned);
  EXPECT_EQ(count_op(pinned, "Transpose"), 2) << "B a graph output";
  ir::Model twice = qconv_chain_model(false, false, 1);
  twice.graph.outputs.push_back("flat");
  passes::optimize(twice);
  EXPECT_EQ(count_op(twice, "Transpose"), 2) << "the Flatten's output a graph output";
}

// The fused ConvMaxPool against the unfused Conv -> (Relu) -> MaxPool graph
// run by the plain ops, on the padded-plane path (pooling as the grid is
// copied out) and on the paths that pool afterwards (1x1, depthwise), with
// odd output sizes (the last row / column dropped, floor), 1 and 2 threads;
// and the cases the pass must leave alone.
TEST(Passes, FusesConvWithMaxPool2x2) {
  const std::vector<ConvPoolCase> cases = {
      {"3x3 pad 1", {2, 3, 10, 12}, {8, 3, 3, 3}, 1, {}, {1, 1, 1, 1}},
      {"3x3 odd output, no relu", {3, 2, 9, 11}, {5, 2, 3, 3}, 1, {}, {1, 1, 1, 1}, false},
      {"5x5 stride 2", {1, 4, 21, 18}, {6, 4, 5, 5}, 1, {2, 2}, {2, 2, 2, 2}},
      {"grouped", {2, 4, 8, 8}, {6, 2, 3, 3}, 2, {}, {1, 1, 1, 1}},
      {"one image in bands (over 2^20 multiply-adds)", {1, 16, 38, 34}, {32, 16, 3, 3}, 1, {}, {1, 1, 1, 1}},
      {"1x1 (pools after)", {2, 5, 7, 8}, {4, 5, 1, 1}},
      {"depthwise (pools after)", {2, 6, 12, 13}, {6, 1, 3, 3}, 6, {}, {1, 1, 1, 1}},
      {"pool with pads: left alone", {1, 3, 8, 8}, {4, 3, 3, 3}, 1, {}, {1, 1, 1, 1}, true, false, {1, 1, 1, 1}},
      {"pool with Indices: left alone", {1, 3, 8, 8}, {4, 3, 3, 3}, 1, {}, {1, 1, 1, 1}, true, false, {}, true},
      {"conv output also a graph output: left alone", {1, 3, 8, 8}, {4, 3, 3, 3}, 1, {}, {1, 1, 1, 1}, true, false, {}, false, true},
  };
  uint32_t seed = 40;
  for (const ConvPoolCase& c : cases) {
    const ir::Model raw = conv_pool_model(c);
    ir::Model m = raw;
    passes::optimize(m);
    EXPECT_EQ(count_op(m, "ConvMaxPool"), c.fused ? 1 : 0) << c.name;
    EXPECT_EQ(count_op(m, "MaxPool"), c.fused ? 0 : 1) << c.name;
    expect_optimized_run_identical(raw, random_tensor(c.x, seed++, -2.0f, 2.0f), c.name, 1e-4f);
  }
}

namespace {

// x f32[3, 37] -> Div(x, c_div) -> Erf -> Add(., c_add) -> Mul(x, .) -> Mul(., c_mul) -> y,
// PyTorch's export of F.gelu; `swap` writes each Add / Mul with its operands
// the other way round.
ir::Model erf_gelu_model(bool swap, bool erf_is_output = false, Shape add_shape = {}) {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, ir::to_sym({3, 37}), {}};
  m.graph.initializers["c_div"] = Tensor::from<float>({}, {1.4142135381698608f});
  m.graph.initializers["c_add"] =
      Tensor::from<float>(add_shape, std::vector<float>(static_cast<size_t>(shape_numel(add_shape)), 1.0f));
  m.graph.initializers["c_mul"] = Tensor::from<float>({}, {0.5f});
  auto two = [&](std::string a, std::string b) {
    return swap ? std::vector<std::string>{b, a} : std::vector<std::string>{a, b};
  };
  m.graph.nodes.push_back(node("Div", {"x", "c_div"}, {"d"}));
  m.graph.nodes.push_back(node("Erf", {"d"}, {"e"}));
  m.graph.nodes.push_back(node("Add", two("e", "c_add"), {"a"}));
  m.graph.nodes.push_back(node("Mul", two("x", "a"), {"p"}));
  m.graph.nodes.push_back(node("Mul", two("p", "c_mul"), {"y"}));
  m.graph.outputs = {"y"};
  if (erf_is_output) m.graph.outputs.push_back("e");
  ir::infer_shapes(m);
  return m;
}

using test::expect_same_bits;

}  // namespace

// ai.qforge ErfGelu against the unfused Div, Erf, Add, Mul, Mul run by the
// plain ops (held to ONNX's backend data by the conformance run): bit for
// bit, over values from -10 to 10 and the special ones, on 1 and 2 threads.
TEST(Passes, FusesErfGeluBitExact) {
  Tensor x = random_tensor({3, 37}, 90, -10.0f, 10.0f);
  const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 3e38f, -3e38f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
  for (size_t i = 0; i < std::size(specials); ++i) x.data<float>()[i * 11] = specials[i];
  for (bool swap : {false, true}) {
    const ir::Model raw = erf_gelu_model(swap);
    ir::Model m = raw;
    EXPECT_EQ(passes::fuse_erf_gelu(m), 1);
    EXPECT_EQ(m.graph.nodes.size(), 1u);
    EXPECT_EQ(count_op(m, "ErfGelu"), 1);
    EXPECT_EQ(passes::fuse_erf_gelu(m), 0) << "a second run finds nothing";
    SessionOptions plain;
    plain.optimize = false;
    const Tensor want = Session(raw, plain).run({{"x", x}})[0];
    expect_same_bits(Session(m, plain).run({{"x", x}})[0], want, "fused");
    for (int threads : {1, 2}) {
      SessionOptions so;
      so.threads = threads;
      expect_same_bits(Session(raw, so).run({{"x", x}})[0], want, "Session's passes");
    }
  }
}

TEST(Passes, LeavesErfGeluChainsItCannotFuse) {
  ir::Model a = erf_gelu_model(false, /*erf_is_output=*/true);
  EXPECT_EQ(passes::fuse_erf_gelu(a), 0) << "Erf's output is also a graph output";
  ir::Model b = erf_gelu_model(false, false, /*add_shape=*/{37});
  EXPECT_EQ(passes::fuse_erf_gelu(b), 0) << "the added constant is not a scalar";
}

// The four GELUs of models/transformer4.onnx (the float model) fuse, and the
// logits stay bit for bit those of the unfused graph.
TEST(Passes, FusesTheTransformersGelus) {
  const std::string dir = QFORGE_MODELS_DIR;
  const ir::Model raw = ir::load_model(dir + "/transformer4.onnx");
  ir::Model m = raw;
  EXPECT_EQ(passes::fuse_erf_gelu(m), 4);
  EXPECT_EQ(count_op(m, "Erf"), 0);
  const Tensor x = read_npy(dir + "/transformer4.input.npy");
  test::expect_same_first_output(raw, m, x, "transformer4");
}
