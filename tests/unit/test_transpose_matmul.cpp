// ai.qforge TransposeMatMul and passes::fuse_transpose_matmul. Reference:
// the same graph unfused, Transpose -> MatMul -> Transpose run by the plain
// ops (each held to ONNX's backend test data by the conformance run); the
// fused op must give its bits exactly, on 1 and 2 threads (ctest runs this
// suite again under QFORGE_ISA=avx2 and ref).
#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <string>

#include "qforge/error.h"
#include "qforge/npy.h"
#include "qforge/op.h"
#include "qforge/passes.h"
#include "qforge/quantize.h"
#include "qforge/session.h"
#include "test_util.h"

using namespace qforge;

namespace {

Tensor random_tensor(Shape shape, uint32_t seed) {
  Tensor t(DType::kF32, std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

ir::Node node(std::string op, std::vector<std::string> in, std::vector<std::string> out) {
  ir::Node n;
  n.op_type = std::move(op);
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  n.name = n.op_type + "_" + n.outputs[0];
  return n;
}

ir::Node transpose(const std::string& in, const std::string& out, std::vector<int64_t> perm) {
  ir::Node t = node("Transpose", {in}, {out});
  t.attrs["perm"] = ir::Attribute::of(std::move(perm));
  return t;
}

// y = Transpose(post(MatMul(Transpose(a, pa), Transpose(b, pb))), py), an
// empty perm leaving its Transpose out; post: Div by `div` (if not 0), then
// Softmax over the last axis (if softmax).
struct Case {
  Shape a, b;
  std::vector<int64_t> pa, pb, py;
  float div = 0;
  bool softmax = false;
};

ir::Model unfused_model(const Case& c) {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "g";
  m.graph.inputs = {"a", "b"};
  m.graph.values["a"] = ir::ValueInfo{DType::kF32, ir::to_sym(c.a), {}};
  m.graph.values["b"] = ir::ValueInfo{DType::kF32, ir::to_sym(c.b), {}};
  std::string a = "a", b = "b";
  if (!c.pa.empty()) m.graph.nodes.push_back(transpose("a", a = "ta", c.pa));
  if (!c.pb.empty()) m.graph.nodes.push_back(transpose("b", b = "tb", c.pb));
  // MatMul's result, then each step's output named in turn; the last is y.
  std::vector<ir::Node> chain = {node("MatMul", {a, b}, {"p"})};
  if (c.div != 0) {
    m.graph.initializers["c"] = Tensor::from<float>({}, {c.div});
    m.graph.values["c"] = ir::ValueInfo{DType::kF32, ir::to_sym({}), {}};
    chain.push_back(node("Div", {"", "c"}, {"q"}));
  }
  if (c.softmax) chain.push_back(node("Softmax", {""}, {"s"}));
  if (!c.py.empty()) chain.push_back(transpose("", "t", c.py));
  for (size_t k = 1; k < chain.size(); ++k) chain[k].inputs[0] = chain[k - 1].outputs[0];
  chain.back().outputs[0] = "y";
  for (ir::Node& n : chain) m.graph.nodes.push_back(std::move(n));
  m.graph.outputs = {"y"};
  ir::infer_shapes(m);
  return m;
}

// The op written directly, whatever the pass would do.
ir::Model fused_model(const Case& c) {
  ir::Model m;
  m.opsets[""] = 17;
  m.opsets["ai.qforge"] = 1;
  m.graph.name = "g";
  m.graph.inputs = {"a", "b"};
  m.graph.values["a"] = ir::ValueInfo{DType::kF32, ir::to_sym(c.a), {}};
  m.graph.values["b"] = ir::ValueInfo{DType::kF32, ir::to_sym(c.b), {}};
  ir::Node n = node("TransposeMatMul", {"a", "b"}, {"y"});
  n.domain = "ai.qforge";
  if (!c.pa.empty()) n.attrs["perm_a"] = ir::Attribute::of(c.pa);
  if (!c.pb.empty()) n.attrs["perm_b"] = ir::Attribute::of(c.pb);
  if (!c.py.empty()) n.attrs["perm_y"] = ir::Attribute::of(c.py);
  if (c.div != 0) n.attrs["div"] = ir::Attribute::of(c.div);
  if (c.softmax) n.attrs["softmax"] = ir::Attribute::of(int64_t{1});
  m.graph.nodes.push_back(n);
  m.graph.outputs = {"y"};
  ir::infer_shapes(m);
  return m;
}

using test::expect_same_bits;

int count_op(const ir::Model& m, const std::string& op) { return test::count_op(m.graph, op); }

}  // namespace

// Strided in place (attention's q, k^T, v and merged heads; a transposed
// A; broadcast batches; K past sgemm's depth block) and transposed first
// (perms that move the last axis away, M == 1 and N == 1, one B for all of
// A's batch), each bit for bit the unfused graph.
TEST(TransposeMatMul, MatchesTheUnfusedOpsBitForBit) {
  const std::vector<Case> cases = {
      {{2, 7, 3, 5}, {2, 7, 3, 5}, {0, 2, 1, 3}, {0, 2, 3, 1}, {0, 2, 1, 3}},     // q @ k^T, merged
      {{2, 7, 3, 5}, {2, 7, 3, 6}, {0, 2, 3, 1}, {0, 2, 1, 3}, {}},               // A transposed
      {{3, 13, 17}, {3, 17, 19}, {}, {}, {1, 0, 2}},                              // only Y
      {{1, 33, 2, 300}, {4, 2, 300, 37}, {0, 2, 1, 3}, {}, {}},                   // broadcast A, K > 256
      {{2, 9, 4}, {2, 9, 6}, {0, 2, 1}, {}, {0, 2, 1}},                           // y's last axis moves: copy
      {{5, 4, 6}, {6, 4, 7}, {2, 0, 1}, {}, {}},                                  // A's last axis moves: copy
      {{2, 1, 3, 8}, {2, 3, 5, 8}, {0, 2, 1, 3}, {0, 1, 3, 2}, {}},               // M == 1
      {{2, 3, 6, 8}, {2, 3, 1, 8}, {}, {0, 1, 3, 2}, {0, 1, 3, 2}},               // N == 1
      {{2, 6, 3, 8}, {11, 8}, {0, 2, 1, 3}, {1, 0}, {}},                          // one B
      // Attention's scores, in place and (M == 1, y's last axis moved) not.
      {{2, 7, 3, 16}, {2, 7, 3, 16}, {0, 2, 1, 3}, {0, 2, 3, 1}, {}, 4.0f, true},
      {{2, 7, 3, 16}, {2, 7, 3, 16}, {0, 2, 1, 3}, {0, 2, 3, 1}, {}, 0.125f, true},  // 2^-3: a multiply too
      {{2, 9, 3, 5}, {2, 9, 3, 5}, {0, 2, 1, 3}, {0, 2, 3, 1}, {}, 2.2360680f, true},
      {{2, 1, 3, 8}, {2, 3, 5, 8}, {0, 2, 1, 3}, {0, 1, 3, 2}, {}, 0.3f, true},
      {{2, 9, 4}, {2, 9, 6}, {0, 2, 1}, {}, {0, 2, 1}, 3.0f, true},
      {{3, 13, 17}, {3, 17, 19}, {}, {}, {}, 0, true},
      {{3, 13, 17}, {3, 17, 19}, {}, {}, {}, 7.0f, false},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Tensor a = random_tensor(c.a, 10 + static_cast<uint32_t>(i));
    const Tensor b = random_tensor(c.b, 50 + static_cast<uint32_t>(i));
    SessionOptions plain;
    plain.optimize = false;
    const Tensor want = Session(unfused_model(c), plain).run({{"a", a}, {"b", b}})[0];
    for (int threads : {1, 2}) {
      SessionOptions so = plain;
      so.threads = threads;
      expect_same_bits(Session(fused_model(c), so).run({{"a", a}, {"b", b}})[0], want,
                       "case " + std::to_string(i) + ", " + std::to_string(threads) + " threads");
    }
  }
}

// Runs the pass on a copy of `raw`; every output stays bit for bit.
static void expect_pass_keeps_bits(const ir::Model& raw, const Case& c, int fused, int transposes_left) {
  ir::Model m = raw;
  EXPECT_EQ(passes::fuse_transpose_matmul(m), fused);
  EXPECT_EQ(count_op(m, "Transpose"), transposes_left);
  const Tensor a = random_tensor(c.a, 1), b = random_tensor(c.b, 2);
  SessionOptions plain;
  plain.optimize = false;
  const std::vector<Tensor> want = Session(raw, plain).run({{"a", a}, {"b", b}});
  const std::vector<Tensor> got = Session(m, plain).run({{"a", a}, {"b", b}});
  ASSERT_EQ(got.size(), want.size());
  for (size_t o = 0; o < want.size(); ++o) expect_same_bits(got[o], want[o], "output " + std::to_string(o));
}

TEST(TransposeMatMul, PassFusesWhatAStridedGemmReads) {
  const Case attention{{2, 7, 3, 5}, {2, 7, 3, 5}, {0, 2, 1, 3}, {0, 2, 3, 1}, {0, 2, 1, 3}};
  ir::Model m = unfused_model(attention);
  EXPECT_EQ(passes::fuse_transpose_matmul(m), 1);
  ASSERT_EQ(m.graph.nodes.size(), 1u);
  EXPECT_EQ(m.graph.nodes[0].op_type, "TransposeMatMul");
  EXPECT_EQ(m.graph.nodes[0].attr_ints("perm_b"), (std::vector<int64_t>{0, 2, 3, 1}));
  EXPECT_EQ(passes::fuse_transpose_matmul(m), 0) << "a second run finds nothing";
  expect_pass_keeps_bits(unfused_model(attention), attention, 1, 0);

  // Attention's scores: Div by a constant and Softmax join.
  const Case scores{{2, 7, 3, 5}, {2, 7, 3, 5}, {0, 2, 1, 3}, {0, 2, 3, 1}, {}, 2.0f, true};
  ir::Model sm = unfused_model(scores);
  EXPECT_EQ(passes::fuse_transpose_matmul(sm), 1);
  ASSERT_EQ(sm.graph.nodes.size(), 1u);
  EXPECT_EQ(sm.graph.nodes[0].attr_float("div", 0), 2.0f);
  EXPECT_EQ(sm.graph.nodes[0].attr_int("softmax", 0), 1);
  expect_pass_keeps_bits(unfused_model(scores), scores, 1, 0);
  // A Softmax over another axis stays a Softmax.
  ir::Model other = unfused_model(scores);
  other.graph.nodes.back().attrs["axis"] = ir::Attribute::of(int64_t{2});
  expect_pass_keeps_bits(other, scores, 1, 0);
  EXPECT_EQ(count_op(other, "Softmax"), 1);

  // perm_y (0, 2, 1) moves the result's last axis: that Transpose stays.
  const Case moved{{2, 9, 4}, {2, 9, 6}, {0, 2, 1}, {}, {0, 2, 1}};
  expect_pass_keeps_bits(unfused_model(moved), moved, 1, 1);

  // Values something else needs are left alone: ta and p are graph outputs,
  // tb has a second reader.
  ir::Model out = unfused_model(attention);
  out.graph.outputs.push_back("ta");
  out.graph.outputs.push_back("p");
  expect_pass_keeps_bits(out, attention, 1, 2);
  ir::Model twice = unfused_model(attention);
  twice.graph.nodes.push_back(node("Relu", {"tb"}, {"r"}));
  twice.graph.outputs.push_back("r");
  expect_pass_keeps_bits(twice, attention, 1, 1);
}

// Attention as PyTorch exports it: x [b, s, 3 h d] -> Split (last axis) ->
// q, k, v -> Reshape (to `target`) -> Transpose -> q k^T / div -> Softmax ->
// @ v -> Transpose -> Reshape [b, s, h d]; extra_reader gives v's Split
// output a second reader (a graph output).
ir::Model attention_model(Shape x, std::vector<int64_t> target, bool extra_reader = false) {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "g";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, ir::to_sym(x), {}};
  const int64_t part = x.back() / 3;
  auto constant = [&](const std::string& name, Tensor t) {
    m.graph.values[name] = ir::ValueInfo{t.dtype(), ir::to_sym(t.shape()), {}};
    m.graph.initializers[name] = std::move(t);
  };
  constant("sizes", Tensor::from<int64_t>({3}, {part, part, part}));
  constant("target", Tensor::from<int64_t>({static_cast<int64_t>(target.size())}, target));
  constant("merged", Tensor::from<int64_t>({3}, {x[0], x[1], part}));
  constant("c", Tensor::from<float>({}, {2.0f}));
  ir::Node sp = node("Split", {"x", "sizes"}, {"q", "k", "v"});
  sp.attrs["axis"] = ir::Attribute::of(int64_t{-1});
  m.graph.nodes.push_back(sp);
  for (const char* v : {"q", "k", "v"}) m.graph.nodes.push_back(node("Reshape", {v, "target"}, {std::string(v) + "r"}));
  m.graph.nodes.push_back(transpose("qr", "qt", {0, 2, 1, 3}));
  m.graph.nodes.push_back(transpose("kr", "kt", {0, 2, 3, 1}));
  m.graph.nodes.push_back(transpose("vr", "vt", {0, 2, 1, 3}));
  m.graph.nodes.push_back(node("MatMul", {"qt", "kt"}, {"s"}));
  m.graph.nodes.push_back(node("Div", {"s", "c"}, {"sd"}));
  m.graph.nodes.push_back(node("Softmax", {"sd"}, {"p"}));
  m.graph.nodes.push_back(node("MatMul", {"p", "vt"}, {"o"}));
  m.graph.nodes.push_back(transpose("o", "ot", {0, 2, 1, 3}));
  m.graph.nodes.push_back(node("Reshape", {"ot", "merged"}, {"y"}));
  m.graph.outputs = {"y"};
  if (extra_reader) m.graph.outputs.push_back("v");
  ir::infer_shapes(m);
  return m;
}

// q, k and v read from the projection's output in place of the Split:
// bit for bit the unfused graph, where the Reshape only splits the last
// axis into heads (strided views; 0 and -1 in the target) and where it
// doesn't (the part copied first); left alone when a Split output has
// another reader.
TEST(TransposeMatMul, ReadsAttentionsHeadsFromTheProjection) {
  struct Want {
    Shape x;
    std::vector<int64_t> target;
    bool extra_reader;
    int splits_left;
  };
  for (const Want& w : {Want{{2, 5, 18}, {2, 5, 2, 3}, false, 0}, Want{{3, 4, 24}, {0, 0, 2, -1}, false, 0},
                        Want{{2, 5, 18}, {1, 10, 2, 3}, false, 0}, Want{{2, 5, 18}, {2, 5, 2, 3}, true, 1}}) {
    const ir::Model raw = attention_model(w.x, w.target, w.extra_reader);
    ir::Model m = raw;
    EXPECT_EQ(passes::fuse_transpose_matmul(m), 2);
    EXPECT_EQ(count_op(m, "Split"), w.splits_left);
    EXPECT_EQ(count_op(m, "Transpose"), 0);
    EXPECT_EQ(count_op(m, "Reshape"), 1 + (w.splits_left ? 3 : 0)) << "only the merge of the heads is left";
    const Tensor x = random_tensor(w.x, 3);
    SessionOptions plain;
    plain.optimize = false;
    const std::vector<Tensor> want = Session(raw, plain).run({{"x", x}});
    for (int threads : {1, 2}) {
      SessionOptions so = plain;
      so.threads = threads;
      const std::vector<Tensor> got = Session(m, so).run({{"x", x}});
      ASSERT_EQ(got.size(), want.size());
      for (size_t o = 0; o < want.size(); ++o)
        expect_same_bits(got[o], want[o], "target " + shape_str(w.target) + ", output " + std::to_string(o));
    }
  }
}

// The dynamically quantized Transformer: the projection that makes q, k and
// v learns their columns (ops::kColPartsAttr), the others don't; with the
// columns split by heads (a batch smaller than the threads) the logits are
// bit for bit those of one thread, whose GEMM splits nothing.
TEST(TransposeMatMul, MarksTheProjectionOfQKV) {
  const std::string dir = QFORGE_MODELS_DIR;
  QuantConfig c;
  c.mode = QuantMode::kDynamic;
  const ir::Model q = quantize_model(ir::load_model(dir + "/transformer4.onnx"), c);
  ir::Model m = q;
  passes::optimize(m);
  int marked = 0, products = 0;
  for (const ir::Node& n : m.graph.nodes) {
    if (n.op_type != "DynamicQuantizeMatMul") continue;
    ++products;
    if (!n.has_attr(ops::kColPartsAttr)) continue;
    ++marked;
    EXPECT_EQ(n.attr_ints(ops::kColPartsAttr), (std::vector<int64_t>{0, 256, 512, 768})) << n.name;
  }
  EXPECT_EQ(products, 4 * 4 + 1);
  EXPECT_EQ(marked, 4) << "one q/k/v projection per layer";

  const Tensor x2 = read_npy(dir + "/transformer4.input.npy");  // [2, 64] token ids
  ASSERT_EQ(x2.shape(), (Shape{2, 64}));
  const int64_t* ids = x2.data<int64_t>();
  const Tensor x1 = Tensor::from<int64_t>({1, 64}, std::vector<int64_t>(ids, ids + 64));
  const std::string in = q.graph.inputs[0];
  SessionOptions one;
  one.threads = 1;
  // batch 1 on 2 threads, batch 2 on 3: each splits q, k and v by heads.
  for (const auto& [x, threads] : {std::pair{x1, 2}, std::pair{x2, 3}}) {
    SessionOptions so;
    so.threads = threads;
    expect_same_bits(Session(q, so).run({{in, x}})[0], Session(q, one).run({{in, x}})[0],
                     "batch " + std::to_string(x.dim(0)) + " on " + std::to_string(threads) +
                         " threads");
  }
}

// Split sizes that don't add up to the axis: the Split stays, to refuse
// them when it runs.
TEST(TransposeMatMul, LeavesASplitThatDoesNotAddUp) {
  ir::Model m = attention_model({2, 5, 18}, {2, 5, 2, 3});
  m.graph.initializers["sizes"] = Tensor::from<int64_t>({3}, {6, 6, 5});
  EXPECT_EQ(passes::fuse_transpose_matmul(m), 2);
  EXPECT_EQ(count_op(m, "Split"), 1);
}

// The Transformer's attention: both MatMuls of each of the 4 layers fuse
// with their Transposes, the scores' Div and Softmax, and the logits stay
// bit for bit those of the unfused graph.
TEST(TransposeMatMul, FusesTheTransformersAttention) {
  const std::string dir = QFORGE_MODELS_DIR;
  const ir::Model raw = ir::load_model(dir + "/transformer4.onnx");
  ir::Model m = raw;
  EXPECT_EQ(passes::fuse_transpose_matmul(m), 8);
  EXPECT_EQ(count_op(m, "Transpose"), 0);
  EXPECT_EQ(count_op(m, "Softmax"), 0);
  EXPECT_EQ(count_op(m, "Split"), 0);
  EXPECT_EQ(count_op(m, "MatMul"), 4 * 4) << "qkv, proj, ff1 and ff2 (constant B) stay MatMuls";
  const Tensor x = read_npy(dir + "/transformer4.input.npy");
  test::expect_same_first_output(raw, m, x, "transformer4");
}

TEST(TransposeMatMul, RejectsABadPerm) {
  const Case c{{2, 3, 4}, {2, 4, 5}, {}, {}, {}};
  ir::Model m = fused_model(c);
  m.graph.nodes[0].attrs["perm_a"] = ir::Attribute::of(std::vector<int64_t>{0, 2, 2});
  SessionOptions plain;
  plain.optimize = false;
  try {
    Session(m, plain).run({{"a", random_tensor(c.a, 1)}, {"b", random_tensor(c.b, 2)}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("perm_a"), std::string::npos) << e.what();
  }
}
