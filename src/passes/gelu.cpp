// fuse_erf_gelu: GELU as PyTorch's exporter writes it (F.gelu, nn.GELU),
//
//   Div(x, c_div) -> Erf -> Add(., c_add) -> Mul(x, .) -> Mul(., c_mul)
//
// (c_div = sqrt 2, c_add = 1, c_mul = 0.5 there; any scalar f32 constants
// match, and Add and Mul take their operands in either order) becomes one
// ai.qforge ErfGelu(x) with those constants as attributes. The op computes
// ((erf(x / c_div) + c_add) * x) * c_mul per element with the Erf op's own
// erf, the same float32 operations in the same order, so the result is bit
// for bit the unfused one, in one pass over x instead of five.
#include "pass_util.h"
#include "qforge/passes.h"

namespace qforge::passes {

int fuse_erf_gelu(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int count = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& d = g.nodes[i];
    if (!is_op(d, "Div") || d.inputs.size() != 2 || d.outputs.size() != 1 || dead[i]) continue;
    const std::string& x = d.inputs[0];
    const ir::ValueInfo* xi = g.info(x);
    if (xi == nullptr || xi->dtype != DType::kF32) continue;  // f32 only (the op's one type)
    const auto c_div = f32_scalar(g, uses, d.inputs[1]);
    const auto ei = uses.sole_reader(d.outputs[0]);
    if (!c_div || !ei || dead[*ei] || !is_op(g.nodes[*ei], "Erf")) continue;
    const auto ai = uses.sole_reader(g.nodes[*ei].outputs[0]);
    if (!ai || dead[*ai] || !is_op(g.nodes[*ai], "Add")) continue;
    const auto c_add = f32_scalar(g, uses, other_input(g.nodes[*ai], g.nodes[*ei].outputs[0]));
    const auto mi = uses.sole_reader(g.nodes[*ai].outputs[0]);
    if (!c_add || !mi || dead[*mi] || !is_op(g.nodes[*mi], "Mul") ||
        other_input(g.nodes[*mi], g.nodes[*ai].outputs[0]) != x)
      continue;
    const auto hi = uses.sole_reader(g.nodes[*mi].outputs[0]);
    if (!hi || dead[*hi] || !is_op(g.nodes[*hi], "Mul")) continue;
    const auto c_mul = f32_scalar(g, uses, other_input(g.nodes[*hi], g.nodes[*mi].outputs[0]));
    if (!c_mul) continue;
    ir::Node n;
    n.name = g.nodes[*ei].name;
    n.op_type = "ErfGelu";
    n.domain = kQforge;
    n.inputs = {x};
    n.outputs = {g.nodes[*hi].outputs[0]};
    n.attrs["div"] = ir::Attribute::of(*c_div);
    n.attrs["add"] = ir::Attribute::of(*c_add);
    n.attrs["mul"] = ir::Attribute::of(*c_mul);
    for (size_t k : {i, *ei, *ai, *mi}) dead[k] = true;
    g.nodes[*hi] = std::move(n);  // the last node's place: x and the constants are ready there
    ++count;
  }
  return finish_qforge_fusion(model, dead, count);
}

}  // namespace qforge::passes
