// The QDQ groups qforge runs as fused integer ops under --target qforge:
// Softmax -> com.microsoft QLinearSoftmax, LayerNormalization -> ai.qforge
// QLinearLayerNormalization, Resize (nearest) -> Resize on the integers,
// ConvTranspose -> ai.qforge QLinearConvTranspose, and elementwise chains
// of one quantized input (GELU, SiLU) -> one ai.qforge QLinearLookup,
// MatMul -> Add(constant bias) -> one ai.qforge QLinearMatMul with an int32
// bias, and MatMul of two activations -> QLinearMatMul. Reference: the same
// quantized QDQ graph run unfused (DequantizeLinear, the float op,
// QuantizeLinear: ONNX ops each checked by the conformance tests). The first
// ones (and the chains) must reproduce it code for code; QLinearConvTranspose sums in int32
// instead of float, so its codes may differ from the float path's by one
// quantization step where the float sum lands next to a rounding boundary;
// so may the QLinearMatMuls, for the same reason.
#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

#include "qforge/data.h"
#include "qforge/ir.h"
#include "qforge/passes.h"
#include "qforge/quantize.h"
#include "qforge/session.h"
#include "test_util.h"

namespace qforge {
namespace {

Tensor random_tensor(Shape shape, uint32_t seed, float lo, float hi) {
  return test::random_f32(std::move(shape), seed, lo, hi);
}

ir::Node node(const std::string& op, std::vector<std::string> in, const std::string& out) {
  return test::one_output_node(op, std::move(in), out);
}

// x f32[N,3,8,8] -> Conv -> c [N,4,8,8] -> ops -> a [N,C,...] -> Conv (1x1, 2 outputs) -> y.
// `extra` holds the ops' constant inputs.
ir::Model model_with(const std::vector<ir::Node>& ops, int64_t a_channels, std::map<std::string, Tensor> extra) {
  ir::Model m;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, std::vector<ir::Dim>{ir::Dim::sym("N"), 3, 8, 8}, {}};
  m.graph.initializers["W1"] = random_tensor({4, 3, 3, 3}, 1, -0.5f, 0.5f);
  m.graph.initializers["W2"] = random_tensor({2, a_channels, 1, 1}, 2, -0.5f, 0.5f);
  for (auto& [k, v] : extra) m.graph.initializers[k] = std::move(v);
  ir::Node c1 = node("Conv", {"x", "W1"}, "c");
  c1.attrs["pads"] = ir::Attribute::of(std::vector<int64_t>{1, 1, 1, 1});
  m.graph.nodes = {c1};
  m.graph.nodes.insert(m.graph.nodes.end(), ops.begin(), ops.end());
  m.graph.nodes.push_back(node("Conv", {"a", "W2"}, "y"));
  m.graph.outputs = {"y"};
  ir::infer_shapes(m);
  return m;
}

using test::count_op;

// Quantizes the model statically, checks that the op becomes `fused`, and
// returns the largest difference between the codes of `a` from the unfused
// and the fused run (a wide random input).
ir::Model model_with(const ir::Node& op, int64_t a_channels, std::map<std::string, Tensor> extra) {
  return model_with(std::vector<ir::Node>{op}, a_channels, std::move(extra));
}

int max_code_difference(const ir::Model& model, const std::string& op_type, const std::string& fused, DType act) {
  QuantConfig c;
  c.activation_type = act;
  const Tensor calib = random_tensor({16, 3, 8, 8}, 3, -3.0f, 3.0f);
  auto reader = make_calibration_reader(tensor_dataset({{"x", calib}}, "calibration"), BatchOptions{8});
  QuantizeReport rep;
  const ir::Model q = quantize_model(model, c, reader.get(), &rep);
  bool reported = false;
  for (const auto& d : rep.nodes)
    if (d.op_type == op_type) {
      EXPECT_NE(d.how.find(fused), std::string::npos) << op_type << ": " << d.how << " / " << d.reason;
      reported = true;
    }
  EXPECT_TRUE(reported) << op_type;
  ir::Model f = q;
  passes::fuse_qdq(f);
  EXPECT_EQ(count_op(f.graph, fused), 1) << op_type;
  if (fused != op_type) {
    EXPECT_EQ(count_op(f.graph, op_type), 0) << op_type;
  }

  const Tensor x = random_tensor({3, 3, 8, 8}, 4, -4.0f, 4.0f);
  SessionOptions plain;
  plain.optimize = false;
  const Session emulated(q, plain), integer(q);
  std::vector<Tensor> want, got;
  const auto tap_of = [](std::vector<Tensor>& into) {
    return [&into](const std::string& name, const Tensor& v) {
      if (name == "a_prequant_quantized" || name == "a_quantized") into.push_back(v.clone());
    };
  };
  emulated.run({{"x", x}}, nullptr, tap_of(want));
  integer.run({{"x", x}}, nullptr, tap_of(got));
  EXPECT_EQ(want.size(), 1u) << op_type;
  EXPECT_EQ(got.size(), 1u) << op_type;
  if (want.size() != 1 || got.size() != 1) return 256;
  EXPECT_EQ(want[0].dtype(), got[0].dtype());
  EXPECT_EQ(want[0].shape(), got[0].shape());
  if (want[0].shape() != got[0].shape()) return 256;
  const bool sgn = want[0].dtype() == DType::kI8;
  int worst = 0;
  for (int64_t i = 0; i < want[0].numel(); ++i) {
    const auto* w = static_cast<const uint8_t*>(want[0].raw());
    const auto* g = static_cast<const uint8_t*>(got[0].raw());
    const int a = sgn ? static_cast<int8_t>(w[i]) : w[i], b = sgn ? static_cast<int8_t>(g[i]) : g[i];
    worst = std::max(worst, std::abs(a - b));
  }
  return worst;
}

TEST(QFused, SoftmaxIsQLinearSoftmax) {
  for (DType t : {DType::kU8, DType::kI8}) {
    EXPECT_EQ(max_code_difference(model_with(node("Softmax", {"c"}, "a"), 4, {}), "Softmax", "QLinearSoftmax", t), 0);
    ir::Node channels = node("Softmax", {"c"}, "a");  // along a strided axis
    channels.attrs["axis"] = ir::Attribute::of(int64_t{1});
    EXPECT_EQ(max_code_difference(model_with(channels, 4, {}), "Softmax", "QLinearSoftmax", t), 0);
  }
}

TEST(QFused, LayerNormalizationIsQLinearLayerNormalization) {
  for (DType t : {DType::kU8, DType::kI8}) {
    std::map<std::string, Tensor> p = {{"gamma", random_tensor({8}, 5, 0.5f, 1.5f)},
                                       {"beta", random_tensor({8}, 6, -0.5f, 0.5f)}};
    EXPECT_EQ(max_code_difference(model_with(node("LayerNormalization", {"c", "gamma", "beta"}, "a"), 4, p),
                                  "LayerNormalization", "QLinearLayerNormalization", t),
              0);
    ir::Node ln = node("LayerNormalization", {"c", "gamma2"}, "a");  // two axes, no bias
    ln.attrs["axis"] = ir::Attribute::of(int64_t{-2});
    ln.attrs["epsilon"] = ir::Attribute::of(0.01f);
    EXPECT_EQ(max_code_difference(model_with(ln, 4, {{"gamma2", random_tensor({8, 8}, 7, 0.5f, 1.5f)}}),
                                  "LayerNormalization", "QLinearLayerNormalization", t),
              0);
  }
}

TEST(QFused, NearestResizeRunsOnTheIntegers) {
  ir::Node r = node("Resize", {"c", "", "scales"}, "a");
  r.attrs["mode"] = ir::Attribute::of(std::string("nearest"));
  const std::map<std::string, Tensor> p = {{"scales", test::f32_tensor({4}, {1, 1, 2, 1.5f})}};
  EXPECT_EQ(max_code_difference(model_with(r, 4, p), "Resize", "Resize", DType::kU8), 0);
}

TEST(QFused, LinearResizeStaysFloatWithAReason) {
  ir::Node r = node("Resize", {"c", "", "scales"}, "a");
  r.attrs["mode"] = ir::Attribute::of(std::string("linear"));
  QuantConfig c;
  const Tensor calib = random_tensor({8, 3, 8, 8}, 3, -3.0f, 3.0f);
  auto reader = make_calibration_reader(tensor_dataset({{"x", calib}}, "calibration"), BatchOptions{8});
  QuantizeReport rep;
  quantize_model(model_with(r, 4, {{"scales", test::f32_tensor({4}, {1, 1, 2, 2})}}), c, reader.get(), &rep);
  bool seen = false;
  for (const auto& d : rep.nodes)
    if (d.op_type == "Resize") {
      seen = true;
      EXPECT_NE(d.reason.find("no integer kernel for Resize mode linear"), std::string::npos) << d.reason;
    }
  EXPECT_TRUE(seen);
}

TEST(QFused, ConvTransposeIsQLinearConvTransposeWithinOneStep) {
  for (DType t : {DType::kU8, DType::kI8}) {
    ir::Node ct = node("ConvTranspose", {"c", "Wt", "Bt"}, "a");
    ct.attrs["strides"] = ir::Attribute::of(std::vector<int64_t>{2, 2});
    ct.attrs["pads"] = ir::Attribute::of(std::vector<int64_t>{1, 1, 1, 1});
    ct.attrs["output_padding"] = ir::Attribute::of(std::vector<int64_t>{1, 1});
    const std::map<std::string, Tensor> p = {{"Wt", random_tensor({4, 3, 3, 3}, 8, -0.5f, 0.5f)},
                                             {"Bt", random_tensor({3}, 9, -0.5f, 0.5f)}};
    EXPECT_LE(max_code_difference(model_with(ct, 3, p), "ConvTranspose", "QLinearConvTranspose", t), 1);
    // Grouped (weights per tensor), dilated, no bias.
    ir::Node gt = node("ConvTranspose", {"c", "Wg"}, "a");
    gt.attrs["group"] = ir::Attribute::of(int64_t{2});
    gt.attrs["dilations"] = ir::Attribute::of(std::vector<int64_t>{2, 1});
    EXPECT_LE(max_code_difference(model_with(gt, 6, {{"Wg", random_tensor({4, 3, 2, 3}, 10, -0.5f, 0.5f)}}),
                                  "ConvTranspose", "QLinearConvTranspose", t),
              1);
  }
}

// GELU as PyTorch exports it: x * 0.5 * (1 + erf(x / sqrt(2))), five ops
// (Div and Erf stay float, the rest are quantized with Q/DQ pairs between).
TEST(QFused, GeluChainIsOneLookup) {
  const std::map<std::string, Tensor> k = {{"sqrt2", test::f32_tensor({}, {1.4142135f})},
                                           {"one", test::f32_tensor({}, {1.0f})},
                                           {"half", test::f32_tensor({}, {0.5f})}};
  const std::vector<ir::Node> gelu = {node("Div", {"c", "sqrt2"}, "d"), node("Erf", {"d"}, "e"),
                                      node("Add", {"e", "one"}, "f"), node("Mul", {"c", "f"}, "g"),
                                      node("Mul", {"g", "half"}, "a")};
  for (DType t : {DType::kU8, DType::kI8})
    EXPECT_EQ(max_code_difference(model_with(gelu, 4, k), "Mul", "QLinearLookup", t), 0);
}

// SiLU: x * sigmoid(x), the input read twice.
TEST(QFused, SiluChainIsOneLookup) {
  const std::vector<ir::Node> silu = {node("Sigmoid", {"c"}, "s"), node("Mul", {"c", "s"}, "a")};
  EXPECT_EQ(max_code_difference(model_with(silu, 4, {}), "Mul", "QLinearLookup", DType::kU8), 0);
}

int count_op(const ir::Graph& g, const std::string& op, const std::string& domain) {
  int n = 0;
  for (const auto& x : g.nodes) n += x.op_type == op && x.domain == domain;
  return n;
}

ir::Model quantized(const ir::Model& m, QuantTarget target, DType act = DType::kU8) {
  QuantConfig c;
  c.activation_type = act;
  c.target = target;
  const Tensor calib = random_tensor({16, 3, 8, 8}, 3, -3.0f, 3.0f);
  auto reader = make_calibration_reader(tensor_dataset({{"x", calib}}, "calibration"), BatchOptions{8});
  return quantize_model(m, c, reader.get(), nullptr);
}

// A linear layer, x [N, 4, 8, 8] by W [8, 6] plus a bias [6] (either side
// of the Add): the quantizer leaves the MatMul's output float and the bias
// int32 in units of x_scale * w_scale, and fuse_qdq makes the pair one
// ai.qforge QLinearMatMul that adds the bias to its integer sum.
TEST(QFused, MatMulBiasAddIsOneQLinearMatMul) {
  const std::map<std::string, Tensor> p = {{"Wm", random_tensor({8, 4}, 11, -0.5f, 0.5f)},
                                           {"bm", random_tensor({4}, 12, -1.0f, 1.0f)}};
  for (DType t : {DType::kU8, DType::kI8})
    for (bool bias_first : {false, true}) {
      const std::vector<ir::Node> linear = {
          node("MatMul", {"c", "Wm"}, "m"),
          bias_first ? node("Add", {"bm", "m"}, "a") : node("Add", {"m", "bm"}, "a")};
      ir::Model m = model_with(linear, 4, p);
      if (bias_first) {  // (shape inference types an Add by its first input)
        m.graph.values["bm"] = ir::ValueInfo{DType::kF32, ir::to_sym({4}), {}};
        ir::infer_shapes(m);
      }
      EXPECT_LE(max_code_difference(m, "MatMul", "QLinearMatMul", t), 1);
      ir::Model f = quantized(m, QuantTarget::kQforge, t);
      passes::fuse_qdq(f);
      EXPECT_EQ(count_op(f.graph, "QLinearMatMul", "ai.qforge"), 1);
      EXPECT_EQ(count_op(f.graph, "Add"), 0);
      EXPECT_EQ(count_op(f.graph, "QLinearAdd"), 0);
      for (const auto& n : f.graph.nodes)
        if (n.op_type == "QLinearMatMul") {
          EXPECT_EQ(n.num_inputs(), 9);
          EXPECT_EQ(f.graph.initializer(n.inputs[8])->dtype(), DType::kI32);
        }
    }
}

// ONNX Runtime has no such op: --target onnxruntime keeps MatMul and Add
// as two QDQ groups (QLinearMatMul, then QLinearAdd).
TEST(QFused, MatMulBiasAddStaysTwoOpsForOnnxRuntime) {
  const std::map<std::string, Tensor> p = {{"Wm", random_tensor({8, 4}, 11, -0.5f, 0.5f)},
                                           {"bm", random_tensor({4}, 12, -1.0f, 1.0f)}};
  ir::Model f = quantized(model_with({node("MatMul", {"c", "Wm"}, "m"), node("Add", {"m", "bm"}, "a")}, 4, p),
                          QuantTarget::kOnnxRuntime);
  passes::fuse_qdq(f);
  EXPECT_EQ(count_op(f.graph, "QLinearMatMul", ""), 1);
  EXPECT_EQ(count_op(f.graph, "QLinearMatMul", "ai.qforge"), 0);
  EXPECT_EQ(count_op(f.graph, "QLinearAdd"), 1);
}

// Attention's products, both operands activations: c x c^T and that by c.
TEST(QFused, MatMulOfTwoActivationsIsQLinearMatMul) {
  ir::Node tr = node("Transpose", {"c"}, "ct");
  tr.attrs["perm"] = ir::Attribute::of(std::vector<int64_t>{0, 1, 3, 2});
  for (DType t : {DType::kU8, DType::kI8}) {
    EXPECT_LE(max_code_difference(model_with({tr, node("MatMul", {"c", "ct"}, "a")}, 4, {}), "MatMul",
                                  "QLinearMatMul", t),
              1);
    ir::Model f = quantized(
        model_with({tr, node("MatMul", {"c", "ct"}, "s"), node("MatMul", {"s", "c"}, "a")}, 4, {}),
        QuantTarget::kQforge, t);
    passes::fuse_qdq(f);
    EXPECT_EQ(count_op(f.graph, "QLinearMatMul"), 2);
    EXPECT_EQ(count_op(f.graph, "MatMul"), 0);
  }
}

// Split into quantized outputs with the input's parameters (attention's
// Q, K, V): the same Split on the integers, no DequantizeLinear before it.
TEST(QFused, SplitRunsOnTheIntegers) {
  ir::Node sp = test::one_output_node("Split", {"c"}, "s0");
  sp.outputs = {"s0", "s1"};
  sp.attrs["axis"] = ir::Attribute::of(int64_t{1});
  for (DType t : {DType::kU8, DType::kI8}) {
    ir::Node cat = node("Concat", {"s1", "s0"}, "a");
    cat.attrs["axis"] = ir::Attribute::of(int64_t{1});
    const ir::Model m = model_with({sp, cat}, 4, {});
    EXPECT_EQ(max_code_difference(m, "Split", "Split", t), 0);  // "Split on int8"
    ir::Model f = quantized(m, QuantTarget::kQforge, t);
    passes::fuse_qdq(f);
    for (const auto& n : f.graph.nodes) {
      if (n.op_type != "Split") continue;
      for (const auto& p : f.graph.nodes)
        for (const auto& o : p.outputs) EXPECT_FALSE(o == n.inputs[0] && p.op_type == "DequantizeLinear");
      for (const auto& r : f.graph.nodes)
        for (const auto& v : r.inputs)
          for (const auto& o : n.outputs) EXPECT_FALSE(v == o && r.op_type == "QuantizeLinear");
    }
    EXPECT_EQ(count_op(f.graph, "Split"), 1);
  }
}

// The Fashion-MNIST ViT (two encoder layers): after fuse_qdq every linear
// layer with a bias is one QLinearMatMul with the bias (qkv, proj, ff1, ff2
// per layer), the attention products are integer too, and no MatMul or
// bias QLinearAdd is left (the QLinearAdds are the residual connections
// and the position embedding).
TEST(QFused, VitLinearLayersAndAttentionAreInteger) {
  const ir::Model m = ir::load_model(std::string(QFORGE_MODELS_DIR) + "/fmnist/vit.onnx");
  QuantConfig c;
  const Tensor calib = random_tensor({8, 1, 28, 28}, 13, 0.0f, 1.0f);
  auto reader = make_calibration_reader(tensor_dataset({{"image", calib}}, "calibration"), BatchOptions{8});
  ir::Model f = quantize_model(m, c, reader.get(), nullptr);
  passes::fuse_qdq(f);
  EXPECT_EQ(count_op(f.graph, "QLinearMatMul", "ai.qforge"), 8);
  EXPECT_EQ(count_op(f.graph, "QLinearMatMul", ""), 4);
  EXPECT_EQ(count_op(f.graph, "MatMul"), 0);
  EXPECT_EQ(count_op(f.graph, "QLinearAdd"), 5);
  EXPECT_EQ(count_op(f.graph, "Split"), 2);
  // The only float islands left: the input's QuantizeLinear, ReduceMean
  // (DequantizeLinear, QuantizeLinear) and the logits' DequantizeLinear;
  // the attention's Shape nodes read the integers.
  EXPECT_EQ(count_op(f.graph, "QuantizeLinear"), 2);
  EXPECT_EQ(count_op(f.graph, "DequantizeLinear"), 2);
}

}  // namespace
}  // namespace qforge
