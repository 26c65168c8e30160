// If, Loop and Scan (src/ops/control.cpp) beyond ONNX's backend test data:
// loop termination in each (M, cond) mode of the spec's table, zero-trip
// loops, outer-scope values seen from nested bodies, Scan's axes and
// directions, Scan-8's batch axis and sequence_lens, symbolic shape
// inference, and bad input (a qforge::Error, never a crash or a hang).
//
// Reference: the ONNX operator spec (If, Loop, Scan doc strings, opsets
// 8-16), with expected values worked out by hand in each test's comment.
// The bodies use no other operator (their outputs are their inputs or
// outer-scope values, rearranged), so these tests depend on nothing but
// the control-flow ops themselves.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "test_util.h"
#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/session.h"

namespace qforge {
namespace {

using test::expect_error;

std::shared_ptr<ir::Graph> graph(const std::string& name, std::vector<std::string> inputs,
                                 std::vector<std::string> outputs,
                                 std::vector<ir::Node> nodes = {}) {
  auto g = std::make_shared<ir::Graph>();
  g->name = name;
  g->inputs = std::move(inputs);
  g->outputs = std::move(outputs);
  g->nodes = std::move(nodes);
  return g;
}

ir::Attribute graph_attr(std::shared_ptr<ir::Graph> g) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kGraph;
  a.g = std::move(g);
  return a;
}

ir::Node node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
  ir::Node n;
  n.name = op + "0";
  n.op_type = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

// A model of one node; `feed` are its graph inputs, `consts` initializers.
std::vector<Tensor> run(const ir::Node& n, const Session::NamedTensors& feed, int64_t opset = 16,
                        const Session::NamedTensors& consts = {}) {
  ir::Model m;
  m.opsets[""] = opset;
  m.graph.name = "main";
  for (const auto& [name, t] : feed) {
    m.graph.inputs.push_back(name);
    m.graph.values[name] = ir::ValueInfo{t.dtype(), ir::to_sym(t.shape())};
  }
  for (const auto& [name, t] : consts) m.graph.initializers[name] = t;
  for (const std::string& o : n.outputs)
    if (!o.empty()) m.graph.outputs.push_back(o);
  m.graph.nodes.push_back(n);
  Session s(std::move(m));
  return s.run(feed);
}

Tensor b1(bool v) {
  return Tensor::from<bool>({}, {v});
}
Tensor i64(int64_t v) {
  return Tensor::from<int64_t>({}, {v});
}

std::vector<int64_t> ints(const Tensor& t) {
  return {t.data<int64_t>(), t.data<int64_t>() + t.numel()};
}
std::vector<float> floats(const Tensor& t) {
  return {t.data<float>(), t.data<float>() + t.numel()};
}

// ---- If ----

// Spec: "If conditional": the then_branch's outputs when cond is true, else
// the else_branch's. Branch outputs here are outer-scope values.
ir::Node if_node() {
  ir::Node n = node("If", {"cond"}, {"out"});
  n.attrs["then_branch"] = graph_attr(graph("then", {}, {"x"}));
  n.attrs["else_branch"] = graph_attr(graph("else", {}, {"y"}));
  return n;
}

TEST(IfOp, PicksTheBranch) {
  const Tensor x = Tensor::from<float>({2}, {1, 2}), y = Tensor::from<float>({3}, {7, 8, 9});
  EXPECT_EQ(floats(run(if_node(), {{"cond", b1(true)}, {"x", x}, {"y", y}})[0]),
            (std::vector<float>{1, 2}));
  EXPECT_EQ(floats(run(if_node(), {{"cond", b1(false)}, {"x", x}, {"y", y}})[0]),
            (std::vector<float>{7, 8, 9}));
  // A one-element cond of rank 1 is accepted ("must contain a single element").
  EXPECT_EQ(
      floats(run(if_node(), {{"cond", Tensor::from<bool>({1}, {false})}, {"x", x}, {"y", y}})[0]),
      (std::vector<float>{7, 8, 9}));
}

TEST(IfOp, BadCond) {
  const Tensor x = Tensor::from<float>({1}, {1});
  expect_error(
      [&] {
        run(if_node(), {{"cond", Tensor::from<float>({}, {1})}, {"x", x}, {"y", x}});
      },
      "input cond is f32");
  expect_error(
      [&] {
        run(if_node(), {{"cond", Tensor::from<bool>({2}, {true, false})}, {"x", x}, {"y", x}});
      },
      "a single value");
  ir::Node n = if_node();
  n.attrs.erase("else_branch");
  expect_error([&] { run(n, {{"cond", b1(false)}, {"x", x}, {"y", x}}); }, "else_branch");
  // A branch with the wrong number of outputs.
  n = if_node();
  n.attrs["then_branch"] = graph_attr(graph("then", {}, {"x", "y"}));
  expect_error(
      [&] {
        run(n, {{"cond", b1(true)}, {"x", x}, {"y", x}});
      },
      "then_branch has 2 outputs");
}

ir::ValueInfo vi(DType dt, ir::SymShape s) {
  return ir::ValueInfo{dt, std::move(s)};
}

// Inference: the branches' declared outputs where they agree; a dimension
// they disagree on is unknown, different ranks give an unknown shape, and
// a constant cond picks its branch.
TEST(IfInfer, JoinsBranches) {
  const ops::OpDef* def = ops::OpRegistry::global().find("", "If", 16);
  ASSERT_TRUE(def);
  auto make = [](ir::ValueInfo a, ir::ValueInfo b) {
    ir::Node n = node("If", {"cond"}, {"out"});
    auto t = graph("then", {}, {"a"});
    auto e = graph("else", {}, {"b"});
    t->values["a"] = std::move(a);
    e->values["b"] = std::move(b);
    n.attrs["then_branch"] = graph_attr(t);
    n.attrs["else_branch"] = graph_attr(e);
    return n;
  };
  const ir::ValueInfo cond = vi(DType::kBool, {});
  const ir::Dim N = ir::Dim::sym("N");
  {
    const ir::Node n = make(vi(DType::kF32, {N, 3}), vi(DType::kF32, {N, 4}));
    ops::InferContext c(n, 16, {&cond}, {nullptr});
    def->infer(c);
    EXPECT_EQ(c.output(0).str(), "f32[N, ?]");
  }
  {
    const ir::Node n = make(vi(DType::kF32, {N, 3}), vi(DType::kF32, {N, 3}));
    ops::InferContext c(n, 16, {&cond}, {nullptr});
    def->infer(c);
    EXPECT_EQ(c.output(0).str(), "f32[N, 3]");
  }
  {
    const ir::Node n = make(vi(DType::kF32, {N, 3}), vi(DType::kF32, {3}));
    ops::InferContext c(n, 16, {&cond}, {nullptr});
    def->infer(c);
    EXPECT_EQ(c.output(0).str(), "f32[...]");
  }
  {
    const ir::Node n = make(vi(DType::kF32, {N, 3}), vi(DType::kI64, {3}));
    ops::InferContext c(n, 16, {&cond}, {nullptr});
    expect_error([&] { def->infer(c); }, "same element type");
  }
  {
    const ir::Node n = make(vi(DType::kF32, {N, 3}), vi(DType::kI64, {3}));
    const Tensor k = b1(false);
    ops::InferContext c(n, 16, {&cond}, {&k});
    def->infer(c);
    EXPECT_EQ(c.output(0).str(), "i64[3]");
  }
}

// ---- Loop ----

// body(i, cond_in, v_in) -> (cond_out, v_out, scan): by default
// (cond_in, i, i): the carried value becomes the iteration number and the
// scan output collects the iteration numbers.
ir::Node loop_node(std::vector<std::string> in, const std::string& cond_out = "cond_in",
                   std::vector<std::string> body_out = {"i", "i"}) {
  ir::Node n = node("Loop", std::move(in), {"v_final", "scan"});
  std::vector<std::string> outs{cond_out};
  outs.insert(outs.end(), body_out.begin(), body_out.end());
  auto body = graph("body", {"i", "cond_in", "v_in"}, outs);
  body->values["i"] = vi(DType::kI64, {});
  body->values["cond_in"] = vi(DType::kBool, {});
  n.attrs["body"] = graph_attr(body);
  return n;
}

// (M, cond): a for loop of M iterations; scan output [0, 1, ..., M-1].
TEST(LoopOp, TripCount) {
  const auto out =
      run(loop_node({"M", "cond", "v"}), {{"M", i64(5)}, {"cond", b1(true)}, {"v", i64(-1)}});
  EXPECT_EQ(ints(out[0]), (std::vector<int64_t>{4}));
  EXPECT_EQ(out[1].shape(), (Shape{5}));
  EXPECT_EQ(ints(out[1]), (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

// Zero iterations (M = 0, or a false cond): the carried value is its
// initial value and each scan output has a leading 0 dimension.
TEST(LoopOp, ZeroTrips) {
  for (const auto& feed :
       {Session::NamedTensors{{"M", i64(0)}, {"cond", b1(true)}, {"v", i64(-1)}},
        Session::NamedTensors{{"M", i64(3)}, {"cond", b1(false)}, {"v", i64(-1)}},
        Session::NamedTensors{{"M", i64(-4)}, {"cond", b1(true)}, {"v", i64(-1)}}}) {
    const auto out = run(loop_node({"M", "cond", "v"}), feed);
    EXPECT_EQ(ints(out[0]), (std::vector<int64_t>{-1}));
    EXPECT_EQ(out[1].shape(), (Shape{0}));
    EXPECT_EQ(out[1].dtype(), DType::kI64);  // the body's declared type of "i"
  }
}

// (M, ""): "for (int i=0; i < trip_count; ++i) { cond = ...; // ignored }":
// a body cond of false does not stop the loop.
TEST(LoopOp, CondOutputIgnoredWithoutCondInput) {
  const auto out =
      run(loop_node({"M", "", "v"}, "stop"), {{"M", i64(3)}, {"v", i64(-1)}, {"stop", b1(false)}});
  EXPECT_EQ(ints(out[1]), (std::vector<int64_t>{0, 1, 2}));
}

// ("", cond): a while loop: the body's cond is re-read; here it is an
// outer-scope false, so exactly one iteration runs.
TEST(LoopOp, WhileLoopStopsOnCond) {
  const auto out = run(loop_node({"", "cond", "v"}, "stop"),
                       {{"cond", b1(true)}, {"v", i64(-1)}, {"stop", b1(false)}});
  EXPECT_EQ(ints(out[0]), (std::vector<int64_t>{0}));
  EXPECT_EQ(ints(out[1]), (std::vector<int64_t>{0}));
  // (M, cond): the cond stops it before M.
  const auto out2 = run(loop_node({"M", "cond", "v"}, "stop"),
                        {{"M", i64(10)}, {"cond", b1(true)}, {"v", i64(-1)}, {"stop", b1(false)}});
  EXPECT_EQ(ints(out2[1]), (std::vector<int64_t>{0}));
}

// Loops the spec makes infinite are refused, not run: ("", "") ignores the
// body's cond; ("", true) with a body returning cond unchanged never ends.
TEST(LoopOp, RefusesLoopsThatNeverEnd) {
  expect_error([&] { run(loop_node({"", "", "v"}), {{"v", i64(0)}}); }, "neither M nor cond");
  expect_error(
      [&] {
        run(loop_node({"", "cond", "v"}), {{"cond", b1(true)}, {"v", i64(0)}});
      },
      "would loop forever");
  // Through an Identity, and a constant true initializer of the body.
  ir::Node n = loop_node({"", "cond", "v"}, "c2");
  n.attrs["body"].g->nodes.push_back(node("Identity", {"cond_in"}, {"c2"}));
  expect_error([&] { run(n, {{"cond", b1(true)}, {"v", i64(0)}}); }, "would loop forever");
  n = loop_node({"", "cond", "v"}, "yes");
  n.attrs["body"].g->initializers["yes"] = b1(true);
  expect_error([&] { run(n, {{"cond", b1(true)}, {"v", i64(0)}}); }, "would loop forever");
  // But a false cond means zero iterations, which is fine.
  const auto out = run(loop_node({"", "cond", "v"}), {{"cond", b1(false)}, {"v", i64(7)}});
  EXPECT_EQ(ints(out[0]), (std::vector<int64_t>{7}));
}

TEST(LoopOp, BadInputs) {
  const Session::NamedTensors ok{{"M", i64(2)}, {"cond", b1(true)}, {"v", i64(0)}};
  expect_error(
      [&] {
        run(loop_node({"M", "cond", "v"}),
            {{"M", Tensor::from<float>({}, {2})}, {"cond", b1(true)}, {"v", i64(0)}});
      },
      "input M is f32");
  expect_error(
      [&] {
        run(loop_node({"M", "cond", "v"}),
            {{"M", Tensor::from<int64_t>({2}, {1, 2})}, {"cond", b1(true)}, {"v", i64(0)}});
      },
      "input M has shape [2]");
  expect_error(
      [&] {
        run(loop_node({"M", "cond", "v"}), {{"M", i64(2)}, {"cond", i64(1)}, {"v", i64(0)}});
      },
      "input cond is i64");
  // The body's cond output must be bool: here it is the i64 iteration number.
  expect_error(
      [&] {
        run(loop_node({"M", "cond", "v"}, "i"), ok);
      },
      "the body's cond output is i64");
  // Arity: a body with 2 inputs for 1 carried value; a node with 1 output.
  ir::Node n = loop_node({"M", "cond", "v"});
  n.attrs["body"].g->inputs.pop_back();
  expect_error([&] { run(n, ok); }, "body with 2 inputs");
  n = loop_node({"M", "cond", "v"});
  n.outputs.pop_back();
  expect_error([&] { run(n, ok); }, "has 1 outputs");
  n = loop_node({"M", "cond", "v"});
  n.attrs.erase("body");
  expect_error([&] { run(n, ok); }, "'body'");
}

// Scan outputs must have one shape in every iteration; carried values one
// type. body(i, c, a, b) -> (c, b, a, a) swaps a and b each iteration.
TEST(LoopOp, ShapeOrTypeChangesAreErrors) {
  ir::Node n = node("Loop", {"M", "cond", "a", "b"}, {"a_f", "b_f", "scan"});
  n.attrs["body"] =
      graph_attr(graph("body", {"i", "c", "a_in", "b_in"}, {"c", "b_in", "a_in", "a_in"}));
  expect_error(
      [&] {
        run(n, {{"M", i64(2)},
                {"cond", b1(true)},
                {"a", Tensor::from<float>({2}, {1, 2})},
                {"b", Tensor::from<float>({3}, {1, 2, 3})}});
      },
      "same type and shape in every iteration");
  expect_error(
      [&] {
        run(n, {{"M", i64(2)},
                {"cond", b1(true)},
                {"a", Tensor::from<float>({2}, {1, 2})},
                {"b", i64(1)}});
      },
      "changes type");
  // Shapes of carried values may change (opset 11+): one iteration is fine.
  const auto out = run(n, {{"M", i64(1)},
                           {"cond", b1(true)},
                           {"a", Tensor::from<float>({2}, {1, 2})},
                           {"b", Tensor::from<float>({3}, {3, 4, 5})}});
  EXPECT_EQ(floats(out[0]), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(floats(out[1]), (std::vector<float>{1, 2}));
  EXPECT_EQ(out[2].shape(), (Shape{1, 2}));
}

// A nested body: Loop { If(flag) { outer x } else { outer y } } collects x
// or y per iteration: outer-scope values resolve through two levels.
TEST(LoopOp, NestedBodySeesOuterScope) {
  ir::Node inner = if_node();
  inner.inputs = {"flag"};
  inner.outputs = {"picked"};
  ir::Node n = node("Loop", {"M", "", "v"}, {"v_final", "scan"});
  n.attrs["body"] = graph_attr(graph("body", {"i", "c", "v_in"}, {"c", "v_in", "picked"}, {inner}));
  const Tensor x = Tensor::from<float>({2}, {1, 2}), y = Tensor::from<float>({2}, {3, 4});
  const auto out = run(n, {{"M", i64(3)}, {"v", i64(0)}, {"flag", b1(false)}, {"x", x}, {"y", y}});
  EXPECT_EQ(out[1].shape(), (Shape{3, 2}));
  EXPECT_EQ(floats(out[1]), (std::vector<float>{3, 4, 3, 4, 3, 4}));
}

TEST(LoopInfer, Shapes) {
  const ops::OpDef* def = ops::OpRegistry::global().find("", "Loop", 16);
  ASSERT_TRUE(def);
  ir::Node n = loop_node({"M", "", "v"}, "cond_in", {"v_in", "s"});
  auto& body = *n.attrs["body"].g;
  body.values["v_in"] = vi(DType::kF32, {ir::Dim::sym("N"), 2});
  body.values["s"] = vi(DType::kF32, {ir::Dim::sym("K"), 3});
  const ir::ValueInfo m = vi(DType::kI64, {}), v = vi(DType::kF32, {ir::Dim::sym("N"), 2});
  const Tensor four = i64(4);
  {
    // Constant M and no cond: exactly M iterations.
    ops::InferContext c(n, 16, {&m, nullptr, &v}, {&four, nullptr, nullptr});
    def->infer(c);
    EXPECT_EQ(c.output(0).str(), "f32[N, 2]");
    EXPECT_EQ(c.output(1).str(), "f32[4, K, 3]");
  }
  {
    // With a cond the trip count is a fresh symbol.
    const ir::ValueInfo cond = vi(DType::kBool, {});
    n.inputs = {"M", "cond", "v"};
    ops::InferContext c(n, 16, {&m, &cond, &v}, {&four, nullptr, nullptr});
    def->infer(c);
    const ir::SymShape& s = *c.output(1).shape;
    ASSERT_EQ(s.size(), 3u);
    EXPECT_FALSE(s[0].known());
    EXPECT_FALSE(s[0].symbol.empty());
  }
}

// ---- Scan ----

// Scan-9 body(s_in, x_in) -> (s_out = x_in, y = s_in): the state becomes
// the current slice, the scan output the previous state. With
// x = [[1,2],[3,4],[5,6]] and s0 = [0,0], by hand:
//   forward:  y = [[0,0],[1,2],[3,4]], s = [5,6]
//   reverse input: slices 2,1,0: y = [[0,0],[5,6],[3,4]], s = [1,2]
ir::Node scan_node() {
  ir::Node n = node("Scan", {"s0", "x"}, {"s", "y"});
  n.attrs["num_scan_inputs"] = ir::Attribute::of(int64_t{1});
  n.attrs["body"] = graph_attr(graph("body", {"s_in", "x_in"}, {"x_in", "s_in"}));
  return n;
}

TEST(ScanOp, ForwardAndReverse) {
  const Tensor x = Tensor::from<float>({3, 2}, {1, 2, 3, 4, 5, 6});
  const Tensor s0 = Tensor::from<float>({2}, {0, 0});
  auto out = run(scan_node(), {{"s0", s0}, {"x", x}});
  EXPECT_EQ(floats(out[0]), (std::vector<float>{5, 6}));
  EXPECT_EQ(out[1].shape(), (Shape{3, 2}));
  EXPECT_EQ(floats(out[1]), (std::vector<float>{0, 0, 1, 2, 3, 4}));

  ir::Node n = scan_node();
  n.attrs["scan_input_directions"] = ir::Attribute::of(std::vector<int64_t>{1});
  out = run(n, {{"s0", s0}, {"x", x}});
  EXPECT_EQ(floats(out[0]), (std::vector<float>{1, 2}));
  EXPECT_EQ(floats(out[1]), (std::vector<float>{0, 0, 5, 6, 3, 4}));

  // Reverse output: "prepending": y = [[3,4],[1,2],[0,0]].
  n = scan_node();
  n.attrs["scan_output_directions"] = ir::Attribute::of(std::vector<int64_t>{1});
  out = run(n, {{"s0", s0}, {"x", x}});
  EXPECT_EQ(floats(out[1]), (std::vector<float>{3, 4, 1, 2, 0, 0}));
}

// Axes: x^T = [[1,3,5],[2,4,6]] scanned along axis 1 gives the same slices;
// output axis 1 (or -1) stacks them as columns: y^T = [[0,1,3],[0,2,4]].
TEST(ScanOp, Axes) {
  const Tensor xt = Tensor::from<float>({2, 3}, {1, 3, 5, 2, 4, 6});
  const Tensor s0 = Tensor::from<float>({2}, {0, 0});
  for (int64_t out_axis : {1, -1}) {
    ir::Node n = scan_node();
    n.attrs["scan_input_axes"] = ir::Attribute::of(std::vector<int64_t>{-1});
    n.attrs["scan_output_axes"] = ir::Attribute::of(std::vector<int64_t>{out_axis});
    const auto out = run(n, {{"s0", s0}, {"x", xt}});
    EXPECT_EQ(floats(out[0]), (std::vector<float>{5, 6}));
    EXPECT_EQ(out[1].shape(), (Shape{2, 3}));
    EXPECT_EQ(floats(out[1]), (std::vector<float>{0, 1, 3, 0, 2, 4}));
  }
}

// A zero-length scan: the states pass through; a scan output is empty with
// the body's declared shape around the 0 (here f32[2] stacked on axis 1).
TEST(ScanOp, ZeroLength) {
  ir::Node n = scan_node();
  n.attrs["scan_output_axes"] = ir::Attribute::of(std::vector<int64_t>{1});
  n.attrs["body"].g->values["s_in"] = vi(DType::kF32, {2});
  const Tensor s0 = Tensor::from<float>({2}, {4, 5});
  const auto out = run(n, {{"s0", s0}, {"x", Tensor(DType::kF32, {0, 2})}});
  EXPECT_EQ(floats(out[0]), (std::vector<float>{4, 5}));
  EXPECT_EQ(out[1].shape(), (Shape{2, 0}));
}

TEST(ScanOp, BadInputs) {
  const Tensor s0 = Tensor::from<float>({2}, {0, 0});
  ir::Node n = node("Scan", {"s0", "x", "x2"}, {"s", "y"});
  n.attrs["num_scan_inputs"] = ir::Attribute::of(int64_t{2});
  n.attrs["body"] = graph_attr(graph("body", {"s_in", "x_in", "x2_in"}, {"x_in", "s_in"}));
  expect_error(
      [&] {
        run(n,
            {{"s0", s0}, {"x", Tensor(DType::kF32, {3, 2})}, {"x2", Tensor(DType::kF32, {4, 2})}});
      },
      "same sequence length");
  ir::Node m = scan_node();
  m.attrs["num_scan_inputs"] = ir::Attribute::of(int64_t{3});
  expect_error(
      [&] {
        run(m, {{"s0", s0}, {"x", Tensor(DType::kF32, {3, 2})}});
      },
      "num_scan_inputs 3");
  m = scan_node();
  m.attrs["scan_input_axes"] = ir::Attribute::of(std::vector<int64_t>{2});
  expect_error([&] { run(m, {{"s0", s0}, {"x", Tensor(DType::kF32, {3, 2})}}); }, "axis 2");
  m = scan_node();
  m.attrs["scan_input_axes"] = ir::Attribute::of(std::vector<int64_t>{0, 0});
  expect_error(
      [&] {
        run(m, {{"s0", s0}, {"x", Tensor(DType::kF32, {3, 2})}});
      },
      "one per scan input");
  // A state whose shape changes makes the scan output's slices differ.
  expect_error(
      [&] {
        run(scan_node(), {{"s0", Tensor(DType::kF32, {3})}, {"x", Tensor(DType::kF32, {3, 2})}});
      },
      "same type and shape");
}

// Scan-8: batch axis first; sequence_lens [3, 1]: batch entry 1 runs one
// step, its scan output is zero after it and its state is its first slice.
//   x[0] = [[1,2],[3,4],[5,6]] -> y[0] = [[0,0],[1,2],[3,4]], s[0] = [5,6]
//   x[1] = [[7,8],[9,10],[11,12]], s0[1] = [-1,-1]
//        -> y[1] = [[-1,-1],[0,0],[0,0]], s[1] = [7,8]
TEST(ScanOp, Scan8BatchAndLengths) {
  ir::Node n = scan_node();
  n.inputs = {"lens", "s0", "x"};
  const Tensor x = Tensor::from<float>({2, 3, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  const Tensor s0 = Tensor::from<float>({2, 2}, {0, 0, -1, -1});
  const auto out = run(n, {{"lens", Tensor::from<int64_t>({2}, {3, 1})}, {"s0", s0}, {"x", x}}, 8);
  EXPECT_EQ(floats(out[0]), (std::vector<float>{5, 6, 7, 8}));
  EXPECT_EQ(out[1].shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(floats(out[1]), (std::vector<float>{0, 0, 1, 2, 3, 4, -1, -1, 0, 0, 0, 0}));
  expect_error(
      [&] {
        run(n, {{"lens", Tensor::from<int64_t>({2}, {4, 1})}, {"s0", s0}, {"x", x}}, 8);
      },
      "sequence length of 4");
}

TEST(ScanInfer, Shapes) {
  const ops::OpDef* def = ops::OpRegistry::global().find("", "Scan", 11);
  ASSERT_TRUE(def);
  ir::Node n = scan_node();
  n.attrs["scan_output_axes"] = ir::Attribute::of(std::vector<int64_t>{1});
  n.attrs["body"].g->values["s_in"] = vi(DType::kF32, {2});
  const ir::ValueInfo s0 = vi(DType::kF32, {2}), x = vi(DType::kF32, {ir::Dim::sym("T"), 2});
  ops::InferContext c(n, 11, {&s0, &x}, {nullptr, nullptr});
  def->infer(c);
  EXPECT_EQ(c.output(0).str(), "f32[2]");
  EXPECT_EQ(c.output(1).str(), "f32[2, T]");
}

}  // namespace
}  // namespace qforge
