// passes::fuse_add_layernorm and ai.qforge AddLayerNormalization against the
// unfused Add and LayerNormalization run by the plain ops (each held to
// ONNX's backend data by the conformance run): bit for bit, on 1 and 2
// threads, with inputs of one shape (the one-pass path) and broadcast ones
// (the op's fallback), and the whole of models/transformer4.onnx.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "qforge/error.h"
#include "qforge/op.h"
#include "qforge/thread_pool.h"
#include "qforge/npy.h"
#include "qforge/passes.h"
#include "qforge/session.h"
#include "test_util.h"

namespace qforge {
namespace {

using test::expect_same_bits;

int count_op(const ir::Model& m, const std::string& op) { return test::count_op(m.graph, op); }

// a (shape sa) + b (shape sb) -> LayerNormalization over the last axis, with
// Scale and B of 37; `swap` writes the Add as b + a. extra: "mean" asks for
// LayerNormalization's Mean output, "output" makes the sum a graph output too,
// "reader" gives the sum a second reader (a Relu).
ir::Model add_ln_model(Shape sa, Shape sb, bool swap = false, const std::string& extra = "") {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "g";
  m.graph.inputs = {"a", "b"};
  m.graph.values["a"] = ir::ValueInfo{DType::kF32, ir::to_sym(sa), {}};
  m.graph.values["b"] = ir::ValueInfo{DType::kF32, ir::to_sym(sb), {}};
  m.graph.initializers["scale"] = test::random_f32({37}, 7, 0.5f, 2.0f);
  m.graph.initializers["bias"] = test::random_f32({37}, 8, -1.0f, 1.0f);
  m.graph.nodes.push_back(test::one_output_node("Add", swap ? std::vector<std::string>{"b", "a"}
                                                            : std::vector<std::string>{"a", "b"},
                                                "s"));
  ir::Node ln = test::one_output_node("LayerNormalization", {"s", "scale", "bias"}, "y");
  ln.attrs["epsilon"] = ir::Attribute::of(1e-3f);
  if (extra == "mean") ln.outputs.push_back("mean");
  m.graph.nodes.push_back(ln);
  m.graph.outputs = {"y"};
  if (extra == "output") m.graph.outputs.push_back("s");
  if (extra == "reader") {
    m.graph.nodes.push_back(test::one_output_node("Relu", {"s"}, "r"));
    m.graph.outputs.push_back("r");
  }
  ir::infer_shapes(m);
  return m;
}

TEST(AddLayerNorm, FusesBitExact) {
  struct Case {
    Shape a, b;
  };
  const Case cases[] = {
      {{2, 5, 37}, {2, 5, 37}},  // residual: one pass
      {{2, 5, 37}, {37}},        // broadcast: the fallback
      {{1, 5, 37}, {3, 1, 37}},  // both broadcast
  };
  for (const Case& c : cases)
    for (bool swap : {false, true}) {
      const std::string what = shape_str(c.a) + " + " + shape_str(c.b) + (swap ? " swapped" : "");
      Tensor a = test::random_f32(c.a, 1, -4.0f, 4.0f);
      const Tensor b = test::random_f32(c.b, 2, -4.0f, 4.0f);
      a.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();  // its row becomes NaN, as unfused
      const ir::Model raw = add_ln_model(c.a, c.b, swap);
      ir::Model m = raw;
      EXPECT_EQ(passes::fuse_add_layernorm(m), 1) << what;
      EXPECT_EQ(m.graph.nodes.size(), 1u) << what;
      EXPECT_EQ(count_op(m, "AddLayerNormalization"), 1) << what;
      EXPECT_EQ(passes::fuse_add_layernorm(m), 0) << "a second run finds nothing";
      SessionOptions plain;
      plain.optimize = false;
      const Tensor want = Session(raw, plain).run({{"a", a}, {"b", b}})[0];
      expect_same_bits(Session(m, plain).run({{"a", a}, {"b", b}})[0], want, what + ", fused");
      for (int threads : {1, 2}) {
        SessionOptions so;
        so.threads = threads;
        expect_same_bits(Session(raw, so).run({{"a", a}, {"b", b}})[0], want,
                         what + ", Session's passes, " + std::to_string(threads) + " threads");
      }
    }
}

TEST(AddLayerNorm, LeavesWhatOthersNeed) {
  for (const char* extra : {"mean", "output", "reader"}) {
    ir::Model m = add_ln_model({2, 37}, {2, 37}, false, extra);
    EXPECT_EQ(passes::fuse_add_layernorm(m), 0) << extra;
    EXPECT_EQ(count_op(m, "Add"), 1) << extra;
  }
}

TEST(AddLayerNorm, NamesAMismatchedInput) {
  ir::Model m = add_ln_model({2, 37}, {2, 37});
  ASSERT_EQ(passes::fuse_add_layernorm(m), 1);
  m.graph.values["b"] = ir::ValueInfo{};  // undeclared: the op's own checks see B
  SessionOptions plain;
  plain.optimize = false;
  const Session s(m, plain);
  const Tensor a = test::random_f32({2, 37}, 1, -1.0f, 1.0f);
  test::expect_error([&] { s.run({{"a", a}, {"b", test::random_f32({3, 37}, 2, -1.0f, 1.0f)}}); },
                     "broadcast");
  test::expect_error([&] { s.run({{"a", a}, {"b", Tensor(DType::kF64, {2, 37})}}); }, "input B has type");
}

// LayerNormalization, AddLayerNormalization and QLinearLayerNormalization
// make their Scale and B rows in prepare where both are constants: the run
// on those rows gives the bits of a run that makes them itself (no prepare),
// on 1 and 3 threads; a state prepared on other Scale values is not used.
TEST(AddLayerNorm, PreparedScaleAndBiasAreTheRunsOwn) {
  struct Op {
    std::string domain, type;
    int param;  // Scale's input index
  };
  const Op ops_[] = {{"", "LayerNormalization", 1},
                     {"ai.qforge", "AddLayerNormalization", 2},
                     {"ai.qforge", "QLinearLayerNormalization", 3}};
  const Tensor x = test::random_f32({3, 5, 37}, 1, -4.0f, 4.0f);
  const Tensor skip = test::random_f32({3, 5, 37}, 2, -4.0f, 4.0f);
  Tensor codes(DType::kU8, {3, 5, 37});
  for (int64_t i = 0; i < codes.numel(); ++i) codes.data<uint8_t>()[i] = static_cast<uint8_t>(i * 37 % 256);
  const Tensor scale = test::random_f32({37}, 7, 0.5f, 2.0f), bias = test::random_f32({37}, 8, -1.0f, 1.0f);
  const Tensor other = test::random_f32({37}, 9, 0.5f, 2.0f);
  const Tensor f = Tensor::from<float>({}, {0.05f});
  const Tensor zp = Tensor::from<uint8_t>({}, {128});
  ThreadPool pool(3);
  for (const Op& op : ops_) {
    std::vector<const Tensor*> in;
    if (op.type == "LayerNormalization") in = {&x, &scale, &bias};
    else if (op.type == "AddLayerNormalization") in = {&x, &skip, &scale, &bias};
    else in = {&codes, &f, &zp, &scale, &bias, &f, &zp};
    ir::Node node;
    node.domain = op.domain;
    node.op_type = op.type;
    for (size_t i = 0; i < in.size(); ++i) node.inputs.push_back("i" + std::to_string(i));
    node.outputs = {"y"};
    node.attrs["epsilon"] = ir::Attribute::of(1e-3f);
    const int64_t opset = op.domain.empty() ? 17 : 1;
    const ops::OpDef* def = ops::OpRegistry::global().find(op.domain, op.type, opset);
    ASSERT_NE(def, nullptr) << op.type;
    ASSERT_TRUE(def->prepare) << op.type;
    auto prepared = [&](const Tensor& sc) {
      std::vector<const Tensor*> consts(in.size(), nullptr);
      consts[static_cast<size_t>(op.param)] = &sc;
      consts[static_cast<size_t>(op.param + 1)] = &bias;
      return def->prepare(ops::PrepareContext{node, opset, consts, nullptr});
    };
    const std::shared_ptr<const void> mine = prepared(scale), others = prepared(other);
    ASSERT_NE(mine, nullptr) << op.type;
    auto run = [&](const void* state, ThreadPool* p) {
      ops::OpContext ctx(node, opset, in, state, p);
      def->run(ctx);
      return ctx.outputs().at(0);
    };
    const Tensor want = run(nullptr, nullptr);
    auto same = [&](const Tensor& got, const std::string& what) {  // bytes: f32 or u8
      ASSERT_EQ(got.dtype(), want.dtype()) << what;
      ASSERT_EQ(got.shape(), want.shape()) << what;
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what;
    };
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      same(run(mine.get(), p), op.type + ", prepared");
      same(run(others.get(), p), op.type + ", prepared on other Scale values");
    }
  }
}

// The Transformer's eight residual Add + LayerNormalization pairs (post-norm)
// fuse in the float model, and the logits stay bit for bit those of the
// unfused graph.
TEST(AddLayerNorm, FusesTheTransformersResiduals) {
  const std::string dir = QFORGE_MODELS_DIR;
  const ir::Model raw = ir::load_model(dir + "/transformer4.onnx");
  ir::Model m = raw;
  EXPECT_EQ(passes::fuse_add_layernorm(m), 8);
  EXPECT_EQ(count_op(m, "LayerNormalization"), 0);
  const Tensor x = read_npy(dir + "/transformer4.input.npy");
  test::expect_same_first_output(raw, m, x, "transformer4");
}

}  // namespace
}  // namespace qforge
