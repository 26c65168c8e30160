// passes::fuse_dynamic_matmul: the dynamic MatMul/Gemm groups of a model
// quantized by qforge become com.microsoft DynamicQuantizeMatMul, and the
// model computes bit for bit what the unfused graph computes (reference:
// the unfused graph run by the ONNX ops DynamicQuantizeLinear,
// MatMulInteger, Cast, Mul and Add, which the conformance tests check).
#include <gtest/gtest.h>

#include "qforge/npy.h"
#include "qforge/passes.h"
#include "qforge/quantize.h"
#include "qforge/session.h"

namespace qforge {
namespace {

int count_op(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op_type == op;
  return n;
}

void check_model(const std::string& name, int want_fused) {
  const std::string dir = QFORGE_MODELS_DIR;
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  const ir::Model q = quantize_model(ir::load_model(dir + "/" + name + ".onnx"), c);
  ir::Model fused = q;
  EXPECT_EQ(passes::fuse_dynamic_matmul(fused), want_fused) << name;
  EXPECT_EQ(count_op(fused.graph, "DynamicQuantizeMatMul"), want_fused) << name;
  EXPECT_EQ(count_op(fused.graph, "MatMulInteger"), 0) << name;
  EXPECT_EQ(passes::fuse_dynamic_matmul(fused), 0) << name << ": a second run finds nothing";

  const Tensor x = read_npy(dir + "/" + name + ".input.npy");
  const std::string input = q.graph.inputs[0];
  SessionOptions plain;
  plain.optimize = false;
  const Tensor want = Session(q, plain).run({{input, x}})[0];
  const Tensor got = Session(fused, plain).run({{input, x}})[0];
  const Tensor opt = Session(q).run({{input, x}})[0];  // Session's own passes include the fusion
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < want.numel(); ++i) {
    ASSERT_EQ(got.data<float>()[i], want.data<float>()[i]) << name << " element " << i;
    ASSERT_EQ(opt.data<float>()[i], want.data<float>()[i]) << name << " element " << i;
  }
}

TEST(FuseDynamicMatMul, CnnGemmsAreBitExact) { check_model("fashion_cnn", 2); }

// 4 layers x (the joint q/k/v projection, the output projection, 2 feed-forward) + the head.
TEST(FuseDynamicMatMul, TransformerProjectionsAreBitExact) { check_model("transformer4", 4 * 4 + 1); }

TEST(FuseDynamicMatMul, LeavesAGroupWhoseScaleHasASecondReader) {
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  ir::Model q = quantize_model(ir::load_model(std::string(QFORGE_MODELS_DIR) + "/fashion_cnn.onnx"), c);
  // Make the first DynamicQuantizeLinear's scale a graph output: it must survive.
  for (const auto& n : q.graph.nodes)
    if (n.op_type == "DynamicQuantizeLinear" && n.name.find("fc1") != std::string::npos) {
      q.graph.outputs.push_back(n.outputs[1]);
      break;
    }
  EXPECT_EQ(passes::fuse_dynamic_matmul(q), 1);
  EXPECT_EQ(count_op(q.graph, "MatMulInteger"), 1);
}

}  // namespace
}  // namespace qforge
