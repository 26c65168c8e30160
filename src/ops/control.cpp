// Control flow: If (opsets 1-21), Loop (1-21), Scan (8, and 9-21). Their
// bodies are subgraph attributes run through OpContext::run_subgraph, which
// makes this node's scope (and the enclosing ones) visible to the body;
// values are tensors only (qforge has no sequence or optional types, so the
// opset 13+/16+ forms that carry sequences or optionals are not supported).
//
// Loop termination follows the ONNX spec's table for (M, cond):
//   (M, "")     for (i = 0; i < M; ++i): the body's cond output is ignored;
//   ("", cond)  while (cond): cond is re-read from the body each iteration;
//   (M, cond)   both;
//   ("", "")    for (i = 0; ; ++i): the spec defines an infinite loop (the
//               body's cond output is ignored), so qforge refuses to start
//               it rather than hang.
// A while loop whose body hands back its cond input unchanged (directly, or
// through Identity nodes) or a constant true, with no M, never ends either
// and is refused for the same reason. Any other loop whose condition never
// becomes false runs until M: that is the model's own semantics, which
// qforge does not second-guess with an invented iteration limit.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "ops/families.h"
#include "ops/op_util.h"

namespace qforge::ops {
namespace {

const ir::Graph& graph_attr(const ir::Node& node, const char* name) {
  const ir::Graph* g = node.attr_graph(name);
  if (g == nullptr)
    throw Error(Errc::kNotFound, node.describe(),
                std::string("has no graph attribute '") + name + "'",
                "the attribute, which this op requires");
  return *g;
}

bool read_bool(const Tensor& t, const ir::Node& node, const char* what) {
  if (t.dtype() != DType::kBool) bad_type(node, what, t.dtype(), "bool");
  if (t.numel() != 1)
    throw Error(Errc::kShapeMismatch, node.describe(),
                std::string(what) + " has shape " + shape_str(t.shape()), "a single value");
  return *t.data<bool>();
}

// A tensor's bytes, for ops that move whole elements; packed types (several
// elements per byte) only when every slice is whole bytes.
size_t slice_bytes(DType dt, int64_t n, const ir::Node& node) {
  const int64_t bits = static_cast<int64_t>(dtype_bits(dt)) * n;
  if (bits % 8 != 0)
    throw Error(Errc::kUnsupported, node.describe(),
                "would split " + std::string(dtype_name(dt)) + " values inside a byte",
                "slices of whole bytes for packed types");
  return static_cast<size_t>(bits / 8);
}

// Merges what two sources say about one value: a known dtype wins over an
// unknown one (two different ones are an Error); a dimension is kept where
// both agree; shapes of different ranks, or an unknown one, give unknown.
ir::ValueInfo join(const ir::ValueInfo* a, const ir::ValueInfo* b, const ir::Node& node,
                   const std::string& what) {
  ir::ValueInfo r;
  if (!a || !b) return r;
  if (a->dtype && b->dtype && *a->dtype != *b->dtype)
    throw Error(Errc::kTypeMismatch, node.describe(),
                what + " is " + std::string(dtype_name(*a->dtype)) + " in one place and " +
                    std::string(dtype_name(*b->dtype)) + " in the other",
                "the same element type");
  r.dtype = a->dtype ? a->dtype : b->dtype;
  if (a->shape && b->shape && a->shape->size() == b->shape->size()) {
    ir::SymShape s(a->shape->size());
    for (size_t i = 0; i < s.size(); ++i)
      if ((*a->shape)[i] == (*b->shape)[i]) s[i] = (*a->shape)[i];
    r.shape = std::move(s);
  }
  return r;
}

const ir::ValueInfo* output_info(const ir::Graph& g, size_t i) {
  return i < g.outputs.size() ? g.info(g.outputs[i]) : nullptr;
}

// ---- If ----

void if_infer(InferContext& c) {
  const ir::Node& node = c.node();
  const ir::Graph& then_g = graph_attr(node, "then_branch");
  const ir::Graph& else_g = graph_attr(node, "else_branch");
  if (c.input(0).dtype && *c.input(0).dtype != DType::kBool)
    bad_type(node, "input cond", *c.input(0).dtype, "bool");
  // A constant condition decides the branch.
  const ir::Graph* only = nullptr;
  if (const Tensor* k = c.constant(0); k && k->dtype() == DType::kBool && k->numel() == 1)
    only = *k->data<bool>() ? &then_g : &else_g;
  for (int i = 0; i < c.num_outputs(); ++i) {
    const size_t u = static_cast<size_t>(i);
    if (only) {
      if (const ir::ValueInfo* v = output_info(*only, u)) c.output(i) = *v;
      continue;
    }
    c.output(i) = join(output_info(then_g, u), output_info(else_g, u), node,
                       "output " + std::to_string(i) + " of the branches");
  }
}

void if_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const bool cond = read_bool(ctx.input(0), node, "input cond");
  const char* branch = cond ? "then_branch" : "else_branch";
  (void)graph_attr(node, branch);
  std::vector<Tensor> outs = ctx.run_subgraph(branch, {});
  if (outs.size() != static_cast<size_t>(ctx.num_outputs()))
    throw Error(Errc::kShapeMismatch, node.describe(),
                std::string(branch) + " has " + std::to_string(outs.size()) + " outputs",
                std::to_string(ctx.num_outputs()) + ", one per output of the If");
  for (int i = 0; i < ctx.num_outputs(); ++i)
    ctx.set_output(i, std::move(outs[static_cast<size_t>(i)]));
}

// ---- Loop ----

// Loop inputs: M, cond, then N carried values; body: (i, cond, carried...)
// -> (cond, carried..., K scan outputs).
struct LoopArity {
  int64_t n = 0, k = 0;
};

LoopArity loop_arity(const ir::Node& node, const ir::Graph& body, int num_inputs, int num_outputs) {
  LoopArity a;
  a.n = std::max(0, num_inputs - 2);
  if (static_cast<int64_t>(body.inputs.size()) != a.n + 2)
    throw Error(Errc::kShapeMismatch, node.describe(),
                "has a body with " + std::to_string(body.inputs.size()) + " inputs for " +
                    std::to_string(a.n) + " loop-carried values",
                std::to_string(a.n + 2) + " body inputs (iteration_num, cond, the carried values)");
  a.k = static_cast<int64_t>(body.outputs.size()) - 1 - a.n;
  if (a.k < 0)
    throw Error(Errc::kShapeMismatch, node.describe(),
                "has a body with " + std::to_string(body.outputs.size()) + " outputs for " +
                    std::to_string(a.n) + " loop-carried values",
                "at least " + std::to_string(a.n + 1) +
                    " body outputs (cond, the carried values, scan outputs)");
  if (num_outputs != a.n + a.k)
    throw Error(Errc::kShapeMismatch, node.describe(),
                "has " + std::to_string(num_outputs) + " outputs",
                std::to_string(a.n + a.k) + ": the " + std::to_string(a.n) +
                    " carried values and " + std::to_string(a.k) + " scan outputs of its body");
  return a;
}

void loop_infer(InferContext& c) {
  const ir::Node& node = c.node();
  const ir::Graph& body = graph_attr(node, "body");
  const LoopArity a = loop_arity(node, body, c.num_inputs(), c.num_outputs());
  // Carried values: the initial value, where the body agrees with it.
  for (int64_t i = 0; i < a.n; ++i) {
    const int in = static_cast<int>(2 + i);
    const ir::ValueInfo* init = c.has_input(in) ? &c.input(in) : nullptr;
    const ir::ValueInfo* out = output_info(body, static_cast<size_t>(1 + i));
    ir::ValueInfo r = join(init, out, node, "loop-carried value " + std::to_string(i));
    if (!r.dtype && init) r.dtype = init->dtype;
    if (!r.dtype && out) r.dtype = out->dtype;
    c.output(static_cast<int>(i)) = r;
  }
  // Scan outputs: [trip count, the body output's shape].
  ir::Dim trips = c.fresh_dim();
  if (!c.has_input(1) && c.has_input(0))
    if (auto m = constant_ints(c, 0); m && m->size() == 1) trips = std::max<int64_t>((*m)[0], 0);
  for (int64_t k = 0; k < a.k; ++k) {
    const ir::ValueInfo* out = output_info(body, static_cast<size_t>(1 + a.n + k));
    ir::ValueInfo r;
    if (out) {
      r.dtype = out->dtype;
      if (out->shape) {
        ir::SymShape s{trips};
        s.insert(s.end(), out->shape->begin(), out->shape->end());
        r.shape = std::move(s);
      }
    }
    c.output(static_cast<int>(a.n + k)) = r;
  }
}

// True when the body's cond output is certainly its cond input passed
// through unchanged, or a constant true: then a while loop with a true cond
// and no M never ends.
bool cond_stuck_true(const ir::Graph& body) {
  if (body.outputs.empty() || body.inputs.size() < 2) return false;
  std::string v = body.outputs[0];
  auto is_true = [](const Tensor* t) {
    return t && t->dtype() == DType::kBool && t->numel() == 1 && *t->data<bool>();
  };
  for (size_t hops = 0; hops <= body.nodes.size(); ++hops) {
    if (v == body.inputs[1]) return true;
    if (const Tensor* t = body.initializer(v)) return is_true(t);
    const ir::Node* producer = nullptr;
    for (const ir::Node& n : body.nodes)
      if (std::find(n.outputs.begin(), n.outputs.end(), v) != n.outputs.end()) producer = &n;
    if (!producer || !producer->domain.empty()) return false;
    if (producer->op_type == "Identity" && producer->inputs.size() == 1) {
      v = producer->inputs[0];
      continue;
    }
    if (producer->op_type == "Constant") return is_true(producer->attr_tensor("value"));
    return false;
  }
  return false;
}

// Stacks equal-shaped tensors along a new axis `axis` (in [0, rank]) into
// `out`, which has the stacked shape; in reverse order if asked.
void stack_into(const std::vector<Tensor>& parts, int64_t axis, bool reverse, Tensor& out,
                const ir::Node& node) {
  if (parts.empty()) return;
  const Shape& s = parts[0].shape();
  int64_t outer = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= s[static_cast<size_t>(i)];
  const int64_t numel = parts[0].numel();
  const int64_t inner = outer == 0 ? 0 : numel / outer;
  const size_t inner_bytes = slice_bytes(parts[0].dtype(), inner, node);
  const size_t count = parts.size();
  auto* dst = static_cast<char*>(out.raw());
  for (size_t p = 0; p < count; ++p) {
    const auto* src = static_cast<const char*>(parts[reverse ? count - 1 - p : p].raw());
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(dst + (static_cast<size_t>(o) * count + p) * inner_bytes,
                  src + static_cast<size_t>(o) * inner_bytes, inner_bytes);
  }
}

// A scan output of a loop that ran no iteration: the body output's declared
// type and shape (unknown dimensions as 0) with a 0 inserted at `axis`, or
// f32[0] where the body declares nothing.
void empty_stacked_output(OpContext& ctx, int o, const ir::Graph& body, size_t body_out,
                          int64_t axis) {
  Shape s;
  DType dt = DType::kF32;
  if (const ir::ValueInfo* v = output_info(body, body_out)) {
    if (v->dtype) dt = *v->dtype;
    if (v->shape)
      for (const ir::Dim& d : *v->shape) s.push_back(d.known() ? d.size : 0);
  }
  const int64_t ax = normalize_axis(axis, static_cast<int64_t>(s.size()) + 1, ctx.node());
  s.insert(s.begin() + ax, 0);
  ctx.output(o, dt, s);
}

// Checks that an iteration's output matches the first iteration's.
void check_same_slice(const Tensor& first, const Tensor& t, const ir::Node& node,
                      const std::string& what) {
  if (t.dtype() != first.dtype() || t.shape() != first.shape())
    throw Error(Errc::kShapeMismatch, node.describe(),
                what + " is " + std::string(dtype_name(t.dtype())) + shape_str(t.shape()) +
                    " in one iteration and " + std::string(dtype_name(first.dtype())) +
                    shape_str(first.shape()) + " in another",
                "the same type and shape in every iteration");
}

void loop_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const ir::Graph& body = graph_attr(node, "body");
  const LoopArity a = loop_arity(node, body, ctx.num_inputs(), ctx.num_outputs());
  const bool has_m = ctx.has_input(0), has_cond = ctx.has_input(1);
  int64_t max_trips = 0;
  if (has_m) {
    const Tensor& m = ctx.input(0);
    if (m.numel() != 1)
      throw Error(Errc::kShapeMismatch, node.describe(),
                  "input M has shape " + shape_str(m.shape()), "a single value");
    if (m.dtype() != DType::kI64 && m.dtype() != DType::kI32)
      bad_type(node, "input M", m.dtype(), "i64");
    max_trips = to_int64s(m.reshape({1}), node, "input M")[0];
  }
  bool cond = has_cond ? read_bool(ctx.input(1), node, "input cond") : true;
  if (!has_m && !has_cond)
    throw Error(Errc::kInvalidArgument, node.describe(),
                "has neither M nor cond: the ONNX spec defines that as a loop that never ends (the "
                "body's cond output is ignored)",
                "a trip count M, a cond input, or both");
  if (!has_m && cond && cond_stuck_true(body))
    throw Error(
        Errc::kInvalidArgument, node.describe(),
        "would loop forever: it has no trip count M, cond is true and the body returns cond "
        "unchanged (or a constant true)",
        "a trip count M or a body that can set cond to false");

  std::vector<Tensor> carried;
  for (int64_t i = 0; i < a.n; ++i) {
    const int in = static_cast<int>(2 + i);
    if (!ctx.has_input(in))
      throw Error(Errc::kNotFound, node.describe(),
                  "has no initial value for loop-carried value " + std::to_string(i),
                  "a value for every loop-carried input");
    carried.push_back(ctx.input(in));
  }
  std::vector<std::vector<Tensor>> scans(static_cast<size_t>(a.k));
  std::vector<Tensor> inputs(static_cast<size_t>(2 + a.n));
  for (int64_t it = 0; (!has_m || it < max_trips) && cond; ++it) {
    Tensor iter(DType::kI64, {});
    *iter.data<int64_t>() = it;
    Tensor c(DType::kBool, {});
    *c.data<bool>() = cond;
    inputs[0] = std::move(iter);
    inputs[1] = std::move(c);
    for (int64_t i = 0; i < a.n; ++i)
      inputs[static_cast<size_t>(2 + i)] = carried[static_cast<size_t>(i)];
    std::vector<Tensor> outs = ctx.run_subgraph("body", inputs);
    if (static_cast<int64_t>(outs.size()) != 1 + a.n + a.k)
      throw Error(Errc::kInternal, node.describe(),
                  "got " + std::to_string(outs.size()) + " outputs from its body",
                  std::to_string(1 + a.n + a.k));
    if (has_cond) cond = read_bool(outs[0], node, "the body's cond output");
    for (int64_t i = 0; i < a.n; ++i) {
      Tensor& v = outs[static_cast<size_t>(1 + i)];
      const Tensor& before = carried[static_cast<size_t>(i)];
      if (v.dtype() != before.dtype())
        throw Error(Errc::kTypeMismatch, node.describe(),
                    "loop-carried value " + std::to_string(i) + " changes type from " +
                        std::string(dtype_name(before.dtype())) + " to " +
                        std::string(dtype_name(v.dtype())),
                    "the same type in every iteration");
      carried[static_cast<size_t>(i)] = std::move(v);
    }
    for (int64_t k = 0; k < a.k; ++k) {
      auto& list = scans[static_cast<size_t>(k)];
      Tensor& v = outs[static_cast<size_t>(1 + a.n + k)];
      if (!list.empty()) check_same_slice(list[0], v, node, "scan output " + std::to_string(k));
      list.push_back(std::move(v));
    }
  }
  for (int64_t i = 0; i < a.n; ++i)
    ctx.set_output(static_cast<int>(i), std::move(carried[static_cast<size_t>(i)]));
  for (int64_t k = 0; k < a.k; ++k) {
    const auto& list = scans[static_cast<size_t>(k)];
    const int o = static_cast<int>(a.n + k);
    if (list.empty()) {
      empty_stacked_output(ctx, o, body, static_cast<size_t>(1 + a.n + k), 0);
      continue;
    }
    Shape s = list[0].shape();
    s.insert(s.begin(), static_cast<int64_t>(list.size()));
    Tensor& out = ctx.output(o, list[0].dtype(), s);
    stack_into(list, 0, false, out, node);
  }
}

// ---- Scan ----

// Element `idx` of `t` along `axis`, without that axis: a view when axis is
// 0, else a copy.
Tensor slice_at(const Tensor& t, int64_t axis, int64_t idx, const ir::Node& node) {
  Shape s = t.shape();
  const int64_t n = s[static_cast<size_t>(axis)];
  s.erase(s.begin() + axis);
  int64_t outer = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= t.shape()[static_cast<size_t>(i)];
  const int64_t inner = shape_numel(s) / std::max<int64_t>(outer, 1);
  const size_t inner_bytes = slice_bytes(t.dtype(), inner, node);
  const auto* src = static_cast<const char*>(t.raw());
  if (axis == 0) {
    const auto* base = static_cast<const char*>(t.storage()->data());
    return Tensor::view(t.dtype(), s, t.storage(),
                        static_cast<size_t>(src - base) + static_cast<size_t>(idx) * inner_bytes);
  }
  Tensor r(t.dtype(), s);
  auto* dst = static_cast<char*>(r.raw());
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(dst + static_cast<size_t>(o) * inner_bytes,
                src + (static_cast<size_t>(o * n + idx)) * inner_bytes, inner_bytes);
  return r;
}

// The scan proper: `iters` iterations over scan inputs along their axes;
// returns the final states in `states` and each iteration's scan outputs.
std::vector<std::vector<Tensor>> scan_loop(OpContext& ctx, std::vector<Tensor>& states,
                                           const std::vector<Tensor>& xs,
                                           const std::vector<int64_t>& axes,
                                           const std::vector<int64_t>& reverse, int64_t iters,
                                           int64_t num_outs) {
  const ir::Node& node = ctx.node();
  std::vector<std::vector<Tensor>> outs(static_cast<size_t>(num_outs));
  std::vector<Tensor> inputs(states.size() + xs.size());
  for (int64_t t = 0; t < iters; ++t) {
    for (size_t i = 0; i < states.size(); ++i) inputs[i] = states[i];
    for (size_t m = 0; m < xs.size(); ++m) {
      const int64_t len = xs[m].shape()[static_cast<size_t>(axes[m])];
      inputs[states.size() + m] = slice_at(xs[m], axes[m], reverse[m] ? len - 1 - t : t, node);
    }
    std::vector<Tensor> r = ctx.run_subgraph("body", inputs);
    if (r.size() != states.size() + static_cast<size_t>(num_outs))
      throw Error(Errc::kInternal, node.describe(),
                  "got " + std::to_string(r.size()) + " outputs from its body",
                  std::to_string(states.size() + static_cast<size_t>(num_outs)));
    for (size_t i = 0; i < states.size(); ++i) {
      if (r[i].dtype() != states[i].dtype())
        throw Error(Errc::kTypeMismatch, node.describe(),
                    "state " + std::to_string(i) + " changes type from " +
                        std::string(dtype_name(states[i].dtype())) + " to " +
                        std::string(dtype_name(r[i].dtype())),
                    "the same type in every iteration");
      states[i] = std::move(r[i]);
    }
    for (int64_t k = 0; k < num_outs; ++k) {
      auto& list = outs[static_cast<size_t>(k)];
      Tensor& v = r[states.size() + static_cast<size_t>(k)];
      if (!list.empty()) check_same_slice(list[0], v, node, "scan output " + std::to_string(k));
      list.push_back(std::move(v));
    }
  }
  return outs;
}

// Scan's attributes of ints, one per scan input or output, default 0.
std::vector<int64_t> per_item(const ir::Node& node, const char* name, int64_t count) {
  std::vector<int64_t> v =
      node.attr_ints(name, std::vector<int64_t>(static_cast<size_t>(count), 0));
  if (static_cast<int64_t>(v.size()) != count)
    throw Error(Errc::kInvalidArgument, node.describe(),
                std::string("has ") + std::to_string(v.size()) + " values in '" + name + "'",
                std::to_string(count) + ", one per scan input or output");
  return v;
}

struct ScanArity {
  int64_t n = 0, m = 0, k = 0;
};

// first: index of the first state input (1 for Scan-8, after sequence_lens).
ScanArity scan_arity(const ir::Node& node, const ir::Graph& body, int num_inputs, int num_outputs,
                     int first) {
  ScanArity a;
  a.m = node.attr_int("num_scan_inputs", -1);
  const int64_t given = num_inputs - first;
  if (a.m < 1 || a.m > given)
    throw Error(Errc::kInvalidArgument, node.describe(),
                "has num_scan_inputs " + std::to_string(a.m) + " with " + std::to_string(given) +
                    " state and scan inputs",
                "num_scan_inputs in [1, " + std::to_string(given) + "]");
  a.n = given - a.m;
  if (static_cast<int64_t>(body.inputs.size()) != a.n + a.m)
    throw Error(Errc::kShapeMismatch, node.describe(),
                "has a body with " + std::to_string(body.inputs.size()) + " inputs",
                std::to_string(a.n + a.m) + " (the states, then one slice per scan input)");
  a.k = static_cast<int64_t>(body.outputs.size()) - a.n;
  if (a.k < 0 || num_outputs != a.n + a.k)
    throw Error(Errc::kShapeMismatch, node.describe(),
                "has " + std::to_string(num_outputs) + " outputs and a body with " +
                    std::to_string(body.outputs.size()),
                "as many outputs as the body, the states first");
  return a;
}

void scan9_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const ir::Graph& body = graph_attr(node, "body");
  const ScanArity a = scan_arity(node, body, ctx.num_inputs(), ctx.num_outputs(), 0);
  const std::vector<int64_t> in_dirs = per_item(node, "scan_input_directions", a.m);
  const std::vector<int64_t> out_dirs = per_item(node, "scan_output_directions", a.k);
  std::vector<int64_t> in_axes = per_item(node, "scan_input_axes", a.m);
  std::vector<int64_t> out_axes = per_item(node, "scan_output_axes", a.k);
  std::vector<Tensor> states, xs;
  for (int64_t i = 0; i < a.n + a.m; ++i)
    (i < a.n ? states : xs).push_back(ctx.input(static_cast<int>(i)));
  int64_t len = -1;
  for (int64_t m = 0; m < a.m; ++m) {
    const Tensor& x = xs[static_cast<size_t>(m)];
    if (x.rank() < 1)
      throw Error(Errc::kShapeMismatch, node.describe(),
                  "scan input " + std::to_string(m) + " is a scalar", "a tensor of rank >= 1");
    int64_t& ax = in_axes[static_cast<size_t>(m)];
    ax = normalize_axis(ax, x.rank(), node);
    const int64_t l = x.shape()[static_cast<size_t>(ax)];
    if (len >= 0 && l != len)
      throw Error(Errc::kShapeMismatch, node.describe(),
                  "scan input " + std::to_string(m) + " has " + std::to_string(l) +
                      " elements along its scan axis, another " + std::to_string(len),
                  "the same sequence length for every scan input");
    len = l;
  }
  auto outs = scan_loop(ctx, states, xs, in_axes, in_dirs, len, a.k);
  for (int64_t i = 0; i < a.n; ++i)
    ctx.set_output(static_cast<int>(i), std::move(states[static_cast<size_t>(i)]));
  for (int64_t k = 0; k < a.k; ++k) {
    const auto& list = outs[static_cast<size_t>(k)];
    const int o = static_cast<int>(a.n + k);
    if (list.empty()) {
      empty_stacked_output(ctx, o, body, static_cast<size_t>(a.n + k),
                           out_axes[static_cast<size_t>(k)]);
      continue;
    }
    const int64_t r = list[0].rank();
    const int64_t ax = normalize_axis(out_axes[static_cast<size_t>(k)], r + 1, node);
    Shape s = list[0].shape();
    s.insert(s.begin() + ax, static_cast<int64_t>(list.size()));
    Tensor& out = ctx.output(o, list[0].dtype(), s);
    stack_into(list, ax, out_dirs[static_cast<size_t>(k)] != 0, out, node);
  }
}

// Scan-8: a leading batch axis on every state and scan input; scan inputs
// are [batch, seq, ...]; optional sequence_lens [batch] (scan outputs are
// zero past a batch entry's length).
void scan8_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const ir::Graph& body = graph_attr(node, "body");
  const ScanArity a = scan_arity(node, body, ctx.num_inputs(), ctx.num_outputs(), 1);
  const std::vector<int64_t> dirs = per_item(node, "directions", a.m);
  std::vector<const Tensor*> in;
  for (int64_t i = 0; i < a.n + a.m; ++i) in.push_back(&ctx.input(static_cast<int>(1 + i)));
  if (in.empty() || in[0]->rank() < 1)
    throw Error(Errc::kShapeMismatch, node.describe(), "input 1 is a scalar",
                "tensors with a leading batch axis");
  const int64_t batch = in[0]->dim(0);
  int64_t len = -1;
  for (size_t i = 0; i < in.size(); ++i) {
    const bool is_scan = static_cast<int64_t>(i) >= a.n;
    if (in[i]->rank() < (is_scan ? 2 : 1) || in[i]->dim(0) != batch)
      throw Error(Errc::kShapeMismatch, node.describe(),
                  "input " + std::to_string(i + 1) + " has shape " + shape_str(in[i]->shape()),
                  is_scan ? "[batch, sequence, ...] with the batch size of the others"
                          : "[batch, ...] with the batch size of the others");
    if (is_scan) {
      if (len >= 0 && in[i]->dim(1) != len)
        throw Error(Errc::kShapeMismatch, node.describe(),
                    "scan inputs have different sequence lengths", "the same sequence length");
      len = in[i]->dim(1);
    }
  }
  std::vector<int64_t> lens(static_cast<size_t>(batch), len);
  if (ctx.has_input(0)) {
    lens = to_int64s(ctx.input(0), node, "input sequence_lens");
    if (static_cast<int64_t>(lens.size()) != batch)
      throw Error(Errc::kShapeMismatch, node.describe(),
                  "input sequence_lens has " + std::to_string(lens.size()) + " values",
                  std::to_string(batch) + ", one per batch entry");
    for (int64_t l : lens)
      if (l < 0 || l > len)
        throw Error(Errc::kInvalidArgument, node.describe(),
                    "has a sequence length of " + std::to_string(l),
                    "lengths in [0, " + std::to_string(len) + "]");
  }
  // Per batch entry: final states and the scan outputs.
  std::vector<std::vector<Tensor>> states_b(static_cast<size_t>(batch));
  std::vector<std::vector<std::vector<Tensor>>> outs_b(static_cast<size_t>(batch));
  const std::vector<int64_t> axes(static_cast<size_t>(a.m), 0);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<Tensor> states, xs;
    for (size_t i = 0; i < in.size(); ++i)
      (static_cast<int64_t>(i) < a.n ? states : xs).push_back(slice_at(*in[i], 0, b, node));
    outs_b[static_cast<size_t>(b)] =
        scan_loop(ctx, states, xs, axes, dirs, lens[static_cast<size_t>(b)], a.k);
    states_b[static_cast<size_t>(b)] = std::move(states);
  }
  for (int64_t i = 0; i < a.n; ++i) {
    std::vector<Tensor> parts;
    for (int64_t b = 0; b < batch; ++b)
      parts.push_back(states_b[static_cast<size_t>(b)][static_cast<size_t>(i)]);
    for (const Tensor& p : parts) check_same_slice(parts[0], p, node, "state " + std::to_string(i));
    Shape s = parts.empty() ? in[static_cast<size_t>(i)]->shape() : parts[0].shape();
    if (!parts.empty()) s.insert(s.begin(), batch);
    const DType dt = parts.empty() ? in[static_cast<size_t>(i)]->dtype() : parts[0].dtype();
    Tensor& out = ctx.output(static_cast<int>(i), dt, s);
    stack_into(parts, 0, false, out, node);
  }
  for (int64_t k = 0; k < a.k; ++k) {
    // The element shape from any iteration that ran.
    const Tensor* proto = nullptr;
    for (const auto& ob : outs_b)
      if (!ob[static_cast<size_t>(k)].empty()) proto = &ob[static_cast<size_t>(k)][0];
    Shape elem;
    DType dt = DType::kF32;
    if (proto) {
      elem = proto->shape();
      dt = proto->dtype();
    } else if (const ir::ValueInfo* v = output_info(body, static_cast<size_t>(a.n + k))) {
      if (v->dtype) dt = *v->dtype;
      if (v->shape)
        for (const ir::Dim& d : *v->shape) elem.push_back(d.known() ? d.size : 0);
    }
    Shape s = elem;
    s.insert(s.begin(), {batch, len});
    Tensor& out = ctx.output(static_cast<int>(a.n + k), dt, s);
    const size_t eb = slice_bytes(dt, shape_numel(elem), node);
    auto* dst = static_cast<char*>(out.raw());
    std::memset(dst, 0, out.nbytes());
    for (int64_t b = 0; b < batch; ++b) {
      const auto& list = outs_b[static_cast<size_t>(b)][static_cast<size_t>(k)];
      for (size_t t = 0; t < list.size(); ++t) {
        check_same_slice(*proto, list[t], node, "scan output " + std::to_string(k));
        std::memcpy(dst + (static_cast<size_t>(b * len) + t) * eb, list[t].raw(), eb);
      }
    }
  }
}

void scan_infer(InferContext& c, bool v8) {
  const ir::Node& node = c.node();
  const ir::Graph& body = graph_attr(node, "body");
  const ScanArity a = scan_arity(node, body, c.num_inputs(), c.num_outputs(), v8 ? 1 : 0);
  const int first = v8 ? 1 : 0;
  ir::Dim len, batch;
  // The sequence length from the first scan input whose shape is known.
  std::vector<int64_t> in_axes = v8 ? std::vector<int64_t>(static_cast<size_t>(a.m), 1)
                                    : per_item(node, "scan_input_axes", a.m);
  for (int64_t m = 0; m < a.m; ++m) {
    const int in = static_cast<int>(first + a.n + m);
    if (!c.has_input(in) || !c.input(in).shape) continue;
    const ir::SymShape& s = *c.input(in).shape;
    if (s.empty()) continue;
    const int64_t ax =
        normalize_axis(in_axes[static_cast<size_t>(m)], static_cast<int64_t>(s.size()), node);
    len = s[static_cast<size_t>(ax)];
    if (v8) batch = s[0];
    break;
  }
  for (int64_t i = 0; i < a.n; ++i) {
    const int in = static_cast<int>(first + i);
    if (c.has_input(in)) c.output(static_cast<int>(i)) = c.input(in);
  }
  const std::vector<int64_t> out_axes = v8 ? std::vector<int64_t>(static_cast<size_t>(a.k), 0)
                                           : per_item(node, "scan_output_axes", a.k);
  for (int64_t k = 0; k < a.k; ++k) {
    const ir::ValueInfo* out = output_info(body, static_cast<size_t>(a.n + k));
    ir::ValueInfo r;
    if (out) {
      r.dtype = out->dtype;
      if (out->shape) {
        ir::SymShape s = *out->shape;
        const int64_t ax = normalize_axis(out_axes[static_cast<size_t>(k)],
                                          static_cast<int64_t>(s.size()) + 1, node);
        s.insert(s.begin() + ax, len);
        if (v8) s.insert(s.begin(), batch);
        r.shape = std::move(s);
      }
    }
    c.output(static_cast<int>(a.n + k)) = r;
  }
}

}  // namespace

void register_control_ops(OpRegistry& r) {
  r.add({.domain = "",
         .op_type = "If",
         .min_opset = 1,
         .max_opset = 21,
         .infer = if_infer,
         .run = if_run});
  r.add({.domain = "",
         .op_type = "Loop",
         .min_opset = 1,
         .max_opset = 21,
         .infer = loop_infer,
         .run = loop_run});
  r.add({.domain = "",
         .op_type = "Scan",
         .min_opset = 8,
         .max_opset = 8,
         .infer = [](InferContext& c) { scan_infer(c, true); },
         .run = scan8_run});
  r.add({.domain = "",
         .op_type = "Scan",
         .min_opset = 9,
         .max_opset = 21,
         .infer = [](InferContext& c) { scan_infer(c, false); },
         .run = scan9_run});
}

}  // namespace qforge::ops
