// ai.qforge QLinearLookup: fuse_qdq turns DequantizeLinear -> f -> QuantizeLinear
// (f a one-input elementwise op without an ONNX Runtime QLinear form) into a
// 256-entry table. Reference: the same QDQ graph run unfused (the ONNX ops
// DequantizeLinear, f, QuantizeLinear, each checked by the conformance
// tests), which the table must reproduce code for code.
#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "qforge/data.h"
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

// x f32[N,3,8,8] -> Conv -> c -> act -> a -> Conv -> y
ir::Model model_with(const ir::Node& act) {
  ir::Model m;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, std::vector<ir::Dim>{ir::Dim::sym("N"), 3, 8, 8}, {}};
  m.graph.initializers["W1"] = random_tensor({4, 3, 3, 3}, 1, -0.5f, 0.5f);
  m.graph.initializers["W2"] = random_tensor({2, 4, 1, 1}, 2, -0.5f, 0.5f);
  m.graph.nodes = {node("Conv", {"x", "W1"}, "c"), act, node("Conv", {"a", "W2"}, "y")};
  m.graph.outputs = {"y"};
  ir::infer_shapes(m);
  return m;
}

using test::count_op;

void check_table(const ir::Node& act, DType activation_type) {
  QuantConfig c;
  c.activation_type = activation_type;
  const Tensor calib = random_tensor({16, 3, 8, 8}, 3, -3.0f, 3.0f);
  auto reader = make_calibration_reader(tensor_dataset({{"x", calib}}, "calibration"), BatchOptions{8});
  QuantizeReport rep;
  const ir::Model q = quantize_model(model_with(act), c, reader.get(), &rep);
  for (const auto& d : rep.nodes)
    if (d.op_type == act.op_type) {
      EXPECT_EQ(d.how, "QLinearLookup") << act.op_type;
    }

  ir::Model fused = q;
  passes::fuse_qdq(fused);
  EXPECT_EQ(count_op(fused.graph, "QLinearLookup"), 1) << act.op_type;
  EXPECT_EQ(count_op(fused.graph, act.op_type), 0) << act.op_type;

  // Every code the lookup's input can take, and then some: a wide input.
  const Tensor x = random_tensor({4, 3, 8, 8}, 4, -4.0f, 4.0f);
  SessionOptions plain;
  plain.optimize = false;
  const Session emulated(q, plain), integer(q);
  std::vector<Tensor> want_a, got_a;
  // The lookup's output itself, as codes: the tensor the QuantizeLinear after act writes.
  const auto tap_of = [](std::vector<Tensor>& into) {
    return [&into](const std::string& name, const Tensor& v) {
      if (name == "a_prequant_quantized" || name == "a_quantized") into.push_back(v.clone());
    };
  };
  emulated.run({{"x", x}}, nullptr, tap_of(want_a));
  integer.run({{"x", x}}, nullptr, tap_of(got_a));
  ASSERT_EQ(want_a.size(), 1u) << act.op_type;
  ASSERT_EQ(got_a.size(), 1u) << act.op_type;
  ASSERT_EQ(want_a[0].nbytes(), got_a[0].nbytes());
  EXPECT_EQ(std::memcmp(want_a[0].raw(), got_a[0].raw(), want_a[0].nbytes()), 0) << act.op_type;
  const Tensor y1 = emulated.run({{"x", x}})[0], y2 = integer.run({{"x", x}})[0];
  for (int64_t i = 0; i < y1.numel(); ++i) ASSERT_EQ(y1.data<float>()[i], y2.data<float>()[i]) << i;
}

TEST(QLinearLookup, HardSwishU8) { check_table(node("HardSwish", {"c"}, "a"), DType::kU8); }
TEST(QLinearLookup, HardSwishS8) { check_table(node("HardSwish", {"c"}, "a"), DType::kI8); }

TEST(QLinearLookup, HardSigmoidWithAttributes) {
  ir::Node h = node("HardSigmoid", {"c"}, "a");
  h.attrs["alpha"] = ir::Attribute::of(0.3f);
  h.attrs["beta"] = ir::Attribute::of(0.4f);
  check_table(h, DType::kU8);
  check_table(h, DType::kI8);
}

// The op itself on every byte, in a length that is no multiple of the
// 64-byte vector loop (AVX-512 VBMI) so that its scalar tail runs too:
// entry i of the table for the code whose byte is i XOR the sign bit.
TEST(QLinearLookup, EveryCodeThroughTheTable) {
  for (DType t : {DType::kU8, DType::kI8}) {
    const int64_t n = 3 * 256 + 37;
    ir::Model m;
    m.graph.name = "g";
    m.graph.inputs = {"x"};
    m.graph.values["x"] = ir::ValueInfo{t, ir::to_sym({n}), {}};
    Tensor table(t, {256});
    for (int i = 0; i < 256; ++i) static_cast<uint8_t*>(table.raw())[i] = static_cast<uint8_t>(i * 37 + 11);
    m.graph.initializers["t"] = table;
    ir::Node op = node("QLinearLookup", {"x", "t"}, "y");
    op.domain = "ai.qforge";
    m.graph.nodes = {op};
    m.graph.outputs = {"y"};
    m.opsets["ai.qforge"] = 1;
    ir::infer_shapes(m);
    Tensor x(t, {n});
    auto* xb = static_cast<uint8_t*>(x.raw());
    for (int64_t i = 0; i < n; ++i) xb[i] = static_cast<uint8_t>(i * 101 + 7);
    const Tensor y = Session(m).run({{"x", x}})[0];
    const auto* yb = static_cast<const uint8_t*>(y.raw());
    const int flip = t == DType::kI8 ? 0x80 : 0;
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(yb[i], static_cast<const uint8_t*>(table.raw())[xb[i] ^ flip]) << i;
  }
}

TEST(QLinearLookup, BadTableIsAnError) {
  ir::Model m;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kU8, ir::to_sym({4}), {}};
  m.graph.initializers["t"] = Tensor(DType::kU8, {255});
  ir::Node n = node("QLinearLookup", {"x", "t"}, "y");
  n.domain = "ai.qforge";
  m.graph.nodes = {n};
  m.graph.outputs = {"y"};
  m.opsets["ai.qforge"] = 1;
  ir::infer_shapes(m);
  SessionOptions plain;
  plain.optimize = false;
  const Session s(m, plain);
  test::expect_error([&] { s.run({{"x", Tensor(DType::kU8, {4})}}); }, "256 entries");
}

}  // namespace
}  // namespace qforge
