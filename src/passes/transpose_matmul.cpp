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
// MatMul's, bit for bit.
#include "pass_util.h"
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

}  // namespace

int fuse_transpose_matmul(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const std::string& o : g.nodes[i].outputs) producer[o] = i;
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
  return count;
}

}  // namespace qforge::passes
