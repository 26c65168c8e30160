// fuse_transpose_matmul: the Transposes around a float MatMul, as attention
// is written (PyTorch's export of q @ k.transpose(-1, -2) on heads split by
// reshape and transpose, and the heads merged back by transpose(1, 2)):
//
//   Transpose(A, perm_a) -> MatMul <- Transpose(B, perm_b)
//                             |
//                           Transpose(., perm_y)
//
// becomes one ai.qforge TransposeMatMul(A, B) with the perms as attributes;
// so do a Div by a scalar f32 constant and a Softmax over the last axis
// that follow the MatMul (attention's scores), as its attributes div and
// softmax (then without perm_y).
// A Transpose joins only if it keeps the last axis where a strided GEMM can
// read it (perm_a, perm_b: the source's last axis is one of the last two;
// perm_y: the last axis stays last), so that the op reads its operands and
// writes its result in place instead of copying them; the op's sums are
// MatMul's, bit for bit. Then (read_split_parts) operands that are parts of
// one Split, each reshaped, read the Split's input instead.
#include <algorithm>

#include "pass_util.h"
#include "qforge/op.h"
#include "qforge/passes.h"

namespace qforge::passes {
namespace {

// A Transpose node's explicit perm (the default, reversing the axes, is
// left alone: its rank isn't always known here).
std::optional<std::vector<int64_t>> perm_of(const ir::Node& t) {
  if (!is_op(t, "Transpose") || t.inputs.size() != 1 || t.outputs.size() != 1 || !t.has_attr("perm"))
    return std::nullopt;
  std::vector<int64_t> p = t.attr_ints("perm");
  if (p.size() < 2) return std::nullopt;
  return p;
}

// A Softmax over its input's last axis (its rank known). Before opset 13
// the input is coerced to 2-D at axis, which is the same for the last one.
bool last_axis_softmax(const ir::Graph& g, const ir::Node& s, int64_t opset) {
  const ir::ValueInfo* x = g.info(s.inputs[0]);
  if (x == nullptr || !x->shape || x->shape->empty()) return false;
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  int64_t axis = s.attr_int("axis", opset < 13 ? 1 : -1);
  if (axis < 0) axis += rank;
  return axis == rank - 1;
}

bool f32(const ir::Graph& g, const std::string& v) {
  const ir::ValueInfo* i = g.info(v);
  return i != nullptr && i->dtype == DType::kF32;
}

// The [begin, end) of each output of a Split along its input's last axis
// (of known size), from constant sizes (input 1, or the attribute before
// opset 13) or equal parts; nullopt otherwise.
std::optional<std::vector<std::pair<int64_t, int64_t>>> split_columns(const ir::Graph& g, const Uses& uses,
                                                                      const ir::Node& sp, int64_t opset) {
  const ir::ValueInfo* x = g.info(sp.inputs[0]);
  if (x == nullptr || !x->shape || x->shape->empty()) return std::nullopt;
  const int64_t rank = static_cast<int64_t>(x->shape->size());
  int64_t axis = sp.attr_int("axis", 0);
  if (axis < 0) axis += rank;
  if (axis != rank - 1) return std::nullopt;
  std::vector<int64_t> sizes;
  if (opset >= 13 && sp.inputs.size() > 1 && !sp.inputs[1].empty()) {
    const Tensor* t = uses.pinned.count(sp.inputs[1]) ? nullptr : g.initializer(sp.inputs[1]);
    if (t == nullptr || t->dtype() != DType::kI64) return std::nullopt;
    sizes.assign(t->data<int64_t>(), t->data<int64_t>() + t->numel());
  } else if (opset < 13 && sp.has_attr("split")) {
    sizes = sp.attr_ints("split");
  } else {
    const ir::Dim last = x->shape->back();
    const int64_t n = static_cast<int64_t>(sp.outputs.size());
    if (!last.known() || opset >= 18 || last.size % n != 0) return std::nullopt;
    sizes.assign(static_cast<size_t>(n), last.size / n);
  }
  if (sizes.size() != sp.outputs.size()) return std::nullopt;
  std::vector<std::pair<int64_t, int64_t>> cols;
  int64_t at = 0;
  for (int64_t v : sizes) {
    if (v < 0) return std::nullopt;
    cols.emplace_back(at, at + v);
    at += v;
  }
  // Sizes that don't add up to the axis: the Split itself must refuse them.
  if (!x->shape->back().known() || at != x->shape->back().size) return std::nullopt;
  return cols;
}

// Second step: a TransposeMatMul operand made by Reshape (to a shape
// computed at run time) from one output of a Split along the last axis
// (attention's q, k and v from one projection) reads the Split's input:
// attribute a_cols / b_cols (the part's columns) and the Reshape's target
// as input 2 / 3. Only when every output of the Split is read so, so that
// the Split goes.
void read_split_parts(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  const auto producer = producers(g);
  struct Part {
    size_t node;
    int k;  // the operand
    size_t reshape;
  };
  std::unordered_map<size_t, std::vector<Part>> by_split;  // Split node -> the parts read
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& t = g.nodes[i];
    if (t.domain != kQforge || t.op_type != "TransposeMatMul" || t.inputs.size() != 2) continue;
    for (int k = 0; k < 2; ++k) {
      const std::string& v = t.inputs[static_cast<size_t>(k)];
      const auto r = producer.find(v);
      if (r == producer.end() || uses.sole_reader(v) != i) continue;
      const ir::Node& rs = g.nodes[r->second];
      if (!is_op(rs, "Reshape") || rs.inputs.size() != 2 || rs.attr_int("allowzero", 0) != 0) continue;
      const auto sp = producer.find(rs.inputs[0]);
      if (sp == producer.end() || uses.sole_reader(rs.inputs[0]) != r->second) continue;
      if (!is_op(g.nodes[sp->second], "Split")) continue;
      by_split[sp->second].push_back({i, k, r->second});
    }
  }
  std::vector<bool> dead(g.nodes.size(), false);
  for (const auto& [si, parts] : by_split) {
    const ir::Node& sp = g.nodes[si];
    const auto cols = split_columns(g, uses, sp, model.opset(""));
    if (!cols || parts.size() != sp.outputs.size()) continue;
    for (const Part& p : parts) {
      ir::Node& t = g.nodes[p.node];
      const ir::Node& rs = g.nodes[p.reshape];
      const size_t j = static_cast<size_t>(
          std::find(sp.outputs.begin(), sp.outputs.end(), rs.inputs[0]) - sp.outputs.begin());
      t.inputs.resize(4);
      t.inputs[static_cast<size_t>(p.k)] = sp.inputs[0];
      t.inputs[static_cast<size_t>(p.k) + 2] = rs.inputs[1];
      t.attrs[p.k == 0 ? "a_cols" : "b_cols"] =
          ir::Attribute::of(std::vector<int64_t>{(*cols)[j].first, (*cols)[j].second});
      dead[p.reshape] = true;
    }
    // The product that makes the parts (attention's q, k and v) learns
    // their columns, to split its work by heads (ops::kColPartsAttr).
    const auto mm = producer.find(sp.inputs[0]);
    if (mm != producer.end() && uses.sole_reader(sp.inputs[0]) == si) {
      ir::Node& m = g.nodes[mm->second];
      if (m.domain == kMicrosoft &&
          (m.op_type == "DynamicQuantizeMatMul" || m.op_type == "MatMulIntegerToFloat")) {
        std::vector<int64_t> bounds{0};
        for (const auto& c : *cols) bounds.push_back(c.second);
        m.attrs[ops::kColPartsAttr] = ir::Attribute::of(bounds);
      }
    }
    for (ir::Node& t : g.nodes)  // inputs 2 and 3 are optional: trailing empty ones go
      if (t.domain == kQforge && t.op_type == "TransposeMatMul")
        while (t.inputs.size() > 2 && t.inputs.back().empty()) t.inputs.pop_back();
    dead[si] = true;
  }
  erase_nodes(g, dead);
}

}  // namespace

int fuse_transpose_matmul(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  const auto producer = producers(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int count = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& mm = g.nodes[i];
    if (!is_op(mm, "MatMul") || mm.inputs.size() != 2 || mm.outputs.size() != 1 || dead[i]) continue;
    if (!f32(g, mm.inputs[0]) || !f32(g, mm.inputs[1])) continue;  // the op's one type
    if (g.initializer(mm.inputs[1]) != nullptr) continue;  // MatMul packs a constant B once
    ir::Node n;
    n.name = mm.name;
    n.op_type = "TransposeMatMul";
    n.domain = kQforge;
    n.inputs = mm.inputs;
    n.outputs = mm.outputs;
    std::vector<size_t> joined;
    for (size_t k = 0; k < 2; ++k) {
      const auto it = producer.find(mm.inputs[k]);
      if (it == producer.end() || dead[it->second] || uses.sole_reader(mm.inputs[k]) != i) continue;
      const ir::Node& t = g.nodes[it->second];
      const auto perm = perm_of(t);
      if (!perm) continue;
      const int64_t last = static_cast<int64_t>(perm->size()) - 1;
      if (perm->back() != last && (*perm)[perm->size() - 2] != last) continue;  // no strided GEMM reads it
      n.inputs[k] = t.inputs[0];
      n.attrs[k == 0 ? "perm_a" : "perm_b"] = ir::Attribute::of(*perm);
      joined.push_back(it->second);
    }
    // The nodes after the MatMul join in turn; the fused node takes the last
    // one's place, where its inputs are ready.
    size_t place = i;
    auto join = [&](size_t r, const char* attr, ir::Attribute a) {
      n.outputs = g.nodes[r].outputs;
      n.attrs[attr] = std::move(a);
      joined.push_back(place);
      place = r;
    };
    auto next = [&](const char* op) -> std::optional<size_t> {
      const auto r = uses.sole_reader(n.outputs[0]);
      if (!r || dead[*r] || !is_op(g.nodes[*r], op) || g.nodes[*r].outputs.size() != 1) return std::nullopt;
      return r;
    };
    if (const auto r = next("Div"); r && g.nodes[*r].inputs.size() == 2 && g.nodes[*r].inputs[0] == n.outputs[0]) {
      if (const auto c = f32_scalar(g, uses, g.nodes[*r].inputs[1])) join(*r, "div", ir::Attribute::of(*c));
    }
    if (const auto r = next("Softmax"); r && last_axis_softmax(g, g.nodes[*r], model.opset("")))
      join(*r, "softmax", ir::Attribute::of(int64_t{1}));
    if (const auto r = next("Transpose"); r && place == i) {
      const auto perm = perm_of(g.nodes[*r]);
      if (perm && perm->back() == static_cast<int64_t>(perm->size()) - 1) join(*r, "perm_y", ir::Attribute::of(*perm));
    }
    if (n.attrs.empty()) continue;
    for (size_t k : joined) dead[k] = true;
    dead[place] = false;
    g.nodes[place] = std::move(n);
    ++count;
  }
  if (count == 0) return 0;
  erase_nodes(g, dead);
  if (!model.opsets.count(kQforge)) model.opsets[kQforge] = 1;
  read_split_parts(model);
  return count;
}

}  // namespace qforge::passes
