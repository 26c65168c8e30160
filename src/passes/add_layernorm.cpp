// fuse_add_layernorm: an f32 Add read only by a LayerNormalization (a
// post-norm Transformer's x + attention(x) and x + ffn(x)),
//
//   Add(a, b) -> LayerNormalization(., Scale, [B])
//
// becomes one ai.qforge AddLayerNormalization(a, b, Scale, [B]) with the
// LayerNormalization's attributes, where only the normalized output is read
// (no Mean or InvStdDev). The op adds and normalizes with the two ops' own
// code, so the result is bit for bit the unfused one; where a and b have one
// shape at run time (residuals) the sum is never written out.
#include "pass_util.h"
#include "qforge/passes.h"

namespace qforge::passes {
namespace {

bool f32(const ir::Graph& g, const std::string& v) {
  const ir::ValueInfo* i = g.info(v);
  return i != nullptr && i->dtype == DType::kF32;
}

}  // namespace

int fuse_add_layernorm(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int count = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& add = g.nodes[i];
    if (!is_op(add, "Add") || add.inputs.size() != 2 || add.outputs.size() != 1 || dead[i]) continue;
    const std::string &a = add.inputs[0], &b = add.inputs[1];
    if (!f32(g, a) || !f32(g, b)) continue;
    const auto li = uses.sole_reader(add.outputs[0]);
    if (!li || dead[*li]) continue;
    const ir::Node& ln = g.nodes[*li];
    if (!is_op(ln, "LayerNormalization") || ln.inputs.empty() || ln.inputs[0] != add.outputs[0]) continue;
    bool extra_outputs = false;
    for (size_t o = 1; o < ln.outputs.size(); ++o) extra_outputs |= !ln.outputs[o].empty();
    if (extra_outputs) continue;
    ir::Node n;
    n.name = ln.name;
    n.op_type = "AddLayerNormalization";
    n.domain = kQforge;
    n.inputs = {a, b};
    n.inputs.insert(n.inputs.end(), ln.inputs.begin() + 1, ln.inputs.end());
    n.outputs = {ln.outputs[0]};
    n.attrs = ln.attrs;
    dead[i] = true;
    g.nodes[*li] = std::move(n);  // the LayerNormalization's place: Scale and B are ready there
    ++count;
  }
  return finish_qforge_fusion(model, dead, count);
}

}  // namespace qforge::passes
