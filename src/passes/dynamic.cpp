// fuse_dynamic_matmul: the dynamic quantization of a MatMul or Gemm as
// qforge (and ONNX Runtime's quantizer) writes it,
//
//   DynamicQuantizeLinear(X) -> xq, xs, xz
//   MatMulInteger(xq, W, xz[, w_zp]) -> acc;  Cast(acc, to=float) -> accf
//   Mul(xs, w_scale) -> scale;  Mul(accf, scale) -> y0;  [Add(y0, bias) -> y]
//
// becomes one com.microsoft DynamicQuantizeMatMul(X, W, w_scale[, w_zp][, bias]),
// whose int8 GEMM dequantizes in its epilogue: float(acc) * (xs * w_scale[n])
// + bias[n], the same float32 operations in the same order, so the result is
// bit for bit the unfused one, without four passes over the output.
#include "pass_util.h"
#include "qforge/passes.h"

namespace qforge::passes {

int fuse_dynamic_matmul(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  std::vector<std::pair<size_t, ir::Node>> fused;  // position (the last node of the group) -> new node
  int count = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& d = g.nodes[i];
    if (!is_op(d, "DynamicQuantizeLinear") || d.outputs.size() != 3 || dead[i]) continue;
    const std::string &xq = d.outputs[0], &xs = d.outputs[1], &xz = d.outputs[2];
    const auto mi = uses.sole_reader(xq);
    if (!mi || *mi != uses.sole_reader(xz).value_or(SIZE_MAX)) continue;
    const ir::Node& m = g.nodes[*mi];
    if (!is_op(m, "MatMulInteger") || m.inputs.size() < 3 || m.inputs[0] != xq || m.inputs[2] != xz) continue;
    const Tensor* w = g.initializer(m.inputs[1]);
    const bool has_wzp = m.has_input(3);
    if (!w || w->rank() != 2 || (has_wzp && !g.initializer(m.inputs[3]))) continue;
    const int64_t N = w->dim(1);
    const auto ci = uses.sole_reader(m.outputs[0]);
    if (!ci || !is_op(g.nodes[*ci], "Cast") || g.nodes[*ci].attr_int("to", 0) != 1) continue;
    const auto si = uses.sole_reader(xs);
    if (!si || !is_op(g.nodes[*si], "Mul")) continue;
    const std::string ws = other_input(g.nodes[*si], xs);
    const Tensor* wst = ws.empty() ? nullptr : g.initializer(ws);
    if (!wst || wst->dtype() != DType::kF32 || !(wst->numel() == 1 || (wst->rank() == 1 && wst->numel() == N)))
      continue;
    const auto mmi = uses.sole_reader(g.nodes[*ci].outputs[0]);
    if (!mmi || !is_op(g.nodes[*mmi], "Mul") || uses.sole_reader(g.nodes[*si].outputs[0]) != mmi ||
        other_input(g.nodes[*mmi], g.nodes[*ci].outputs[0]) != g.nodes[*si].outputs[0])
      continue;
    // An Add of a constant [N] bias right after it joins the group.
    size_t last = *mmi;
    std::string bias, y = g.nodes[*mmi].outputs[0];
    if (const auto ai = uses.sole_reader(y); ai && is_op(g.nodes[*ai], "Add")) {
      const std::string b = other_input(g.nodes[*ai], y);
      const Tensor* bt = b.empty() ? nullptr : g.initializer(b);
      if (bt && bt->dtype() == DType::kF32 && bt->rank() == 1 && bt->numel() == N) {
        bias = b;
        last = *ai;
        y = g.nodes[*ai].outputs[0];
      }
    }
    ir::Node n;
    n.name = m.name;
    n.op_type = "DynamicQuantizeMatMul";
    n.domain = kMicrosoft;
    n.inputs = {d.inputs[0], m.inputs[1], ws, has_wzp ? m.inputs[3] : std::string(), bias};
    while (!n.inputs.empty() && n.inputs.back().empty()) n.inputs.pop_back();
    n.outputs = {y};
    for (size_t k : {i, *mi, *ci, *si, *mmi, last}) dead[k] = true;
    fused.emplace_back(last, std::move(n));
    ++count;
  }
  if (count == 0) return 0;
  for (auto& [at, n] : fused) {
    g.nodes[at] = std::move(n);
    dead[at] = false;
  }
  erase_nodes(g, dead);
  if (!model.opsets.count(kMicrosoft)) model.opsets[kMicrosoft] = 1;
  return count;
}

}  // namespace qforge::passes
