// The graph passes of qforge/passes.h. They work on the main graph; values
// that subgraphs read count as uses, so a pass never removes or renames
// something a subgraph needs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "qforge/error.h"
#include "qforge/passes.h"
#include "qforge/session.h"
#include "passes/pass_util.h"

namespace qforge::passes {
namespace {

const Tensor* f32_initializer(const ir::Graph& g, const std::string& name) {
  const Tensor* t = name.empty() ? nullptr : g.initializer(name);
  return t != nullptr && t->dtype() == DType::kF32 ? t : nullptr;
}

// A name not used in the graph yet, from `base`.
std::string fresh_name(const ir::Graph& g, const std::string& base) {
  std::string n = base;
  for (int i = 1; g.initializers.count(n) || g.values.count(n); ++i) n = base + "_" + std::to_string(i);
  return n;
}

bool is_random(const ir::Node& n) {
  return n.op_type.rfind("Random", 0) == 0 || n.op_type == "Multinomial" || n.op_type == "Bernoulli";
}

// Quantization ops stay: QDQ models keep DequantizeLinear on their integer
// weights, which the quantized kernels recognise.
bool keep_unfolded(const ir::Node& n) {
  return n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear" ||
         n.op_type == "DynamicQuantizeLinear";
}

bool has_subgraph(const ir::Node& n) {
  for (const auto& [an, a] : n.attrs)
    if (a.g || !a.graphs.empty()) return true;
  return false;
}

// The scalar f32 value of an initializer, if it is one.
std::optional<float> scalar_f32(const ir::Graph& g, const std::string& name) {
  const Tensor* t = f32_initializer(g, name);
  if (t == nullptr || t->numel() != 1) return std::nullopt;
  return t->data<float>()[0];
}

}  // namespace

int eliminate_identity(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::unordered_map<std::string, std::string> alias;  // removed output -> its source
  std::vector<bool> dead(g.nodes.size(), false);
  int changed = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& n = g.nodes[i];
    if (!n.domain.empty() || n.inputs.empty() || n.outputs.empty() || n.inputs[0].empty()) continue;
    const bool identity = n.op_type == "Identity";
    // Dropout in inference: no mask wanted, training_mode absent (or a
    // constant false), so the output is the input.
    bool dropout = n.op_type == "Dropout" && (n.outputs.size() < 2 || n.outputs[1].empty());
    if (dropout && n.has_input(2)) {
      const Tensor* tm = g.initializer(n.inputs[2]);
      dropout = tm != nullptr && tm->dtype() == DType::kBool && tm->numel() == 1 && !tm->data<bool>()[0];
    }
    if (!identity && !dropout) continue;
    const std::string& out = n.outputs[0];
    if (uses.pinned.count(out)) continue;  // keeps a graph output's (or a capture's) name
    std::string src = n.inputs[0];
    if (auto it = alias.find(src); it != alias.end()) src = it->second;
    alias[out] = src;
    dead[i] = true;
    ++changed;
  }
  if (changed == 0) return 0;
  for (ir::Node& n : g.nodes)
    for (std::string& in : n.inputs)
      if (auto it = alias.find(in); it != alias.end()) in = it->second;
  erase_nodes(g, dead);
  return changed;
}

int fold_constants(ir::Model& model, int64_t max_bytes) {
  ir::Graph& g = model.graph;
  int changed = 0;
  for (bool again = true; again;) {
    again = false;
    const Uses uses(g);
    std::vector<bool> dead(g.nodes.size(), false);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const ir::Node& n = g.nodes[i];
      if (n.inputs.empty() || is_random(n) || has_subgraph(n) || keep_unfolded(n)) continue;
      bool all_const = true;
      for (const std::string& in : n.inputs)
        all_const = all_const && (in.empty() || (g.initializers.count(in) && !uses.pinned.count(in)));
      if (!all_const) continue;
      // Outputs that are graph outputs stay produced by a node (a model
      // whose output is a constant keeps its shape of a graph).
      bool pinned_out = false;
      for (const std::string& o : n.outputs) pinned_out = pinned_out || (!o.empty() && uses.pinned.count(o));
      if (pinned_out) continue;
      // Evaluate the node alone in a model of its own.
      ir::Model one;
      one.opsets = model.opsets;
      one.ir_version = model.ir_version;
      ir::Node copy = n;
      one.graph.nodes.push_back(copy);
      for (const std::string& in : n.inputs)
        if (!in.empty()) one.graph.initializers.emplace(in, g.initializers.at(in));
      for (const std::string& o : n.outputs)
        if (!o.empty()) one.graph.outputs.push_back(o);
      std::vector<Tensor> outs;
      try {
        ir::infer_shapes(one);
        SessionOptions so;
        so.threads = 1;
        so.optimize = false;
        so.max_tensor_bytes = max_bytes;
        outs = Session(std::move(one), so).run({});
      } catch (const Error&) {
        continue;  // unsupported or failing here: left to run time, which reports it
      }
      size_t k = 0;
      for (const std::string& o : n.outputs)
        if (!o.empty()) {
          Tensor t = outs[k++];
          t.set_name(o);
          g.initializers[o] = std::move(t);
        }
      dead[i] = true;
      ++changed;
      again = true;
    }
    erase_nodes(g, dead);
  }
  return changed;
}

int fold_batchnorm(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const std::string& o : g.nodes[i].outputs)
      if (!o.empty()) producer[o] = i;
  std::vector<bool> dead(g.nodes.size(), false);
  int changed = 0;
  for (size_t bi = 0; bi < g.nodes.size(); ++bi) {
    const ir::Node& bn = g.nodes[bi];
    if (bn.op_type != "BatchNormalization" || !bn.domain.empty() || bn.inputs.size() < 5) continue;
    bool extra_out = false;  // training-mode outputs (running mean/var) in use
    for (size_t o = 1; o < bn.outputs.size(); ++o) extra_out = extra_out || !bn.outputs[o].empty();
    if (extra_out || bn.attr_int("training_mode", 0) != 0) continue;
    const std::string& x = bn.inputs[0];
    auto pit = producer.find(x);
    if (pit == producer.end() || dead[pit->second] || uses.sole_reader(x) != bi) continue;
    ir::Node& p = g.nodes[pit->second];
    const bool conv = p.op_type == "Conv" && p.domain.empty();
    const bool gemm = p.op_type == "Gemm" && p.domain.empty();
    if (!conv && !gemm) continue;
    const Tensor* scale = f32_initializer(g, bn.inputs[1]);
    const Tensor* shift = f32_initializer(g, bn.inputs[2]);
    const Tensor* mean = f32_initializer(g, bn.inputs[3]);
    const Tensor* var = f32_initializer(g, bn.inputs[4]);
    const Tensor* w = f32_initializer(g, p.inputs.size() > 1 ? p.inputs[1] : "");
    if (!scale || !shift || !mean || !var || !w || w->rank() < 2) continue;
    // Output channels and where they sit in W.
    int64_t M = 0;
    bool trans_b = false;
    if (conv) {
      M = w->dim(0);
    } else {
      trans_b = p.attr_int("transB", 0) != 0;
      M = trans_b ? w->dim(0) : w->dim(1);
    }
    if (scale->numel() != M || shift->numel() != M || mean->numel() != M || var->numel() != M) continue;
    const Tensor* b = p.has_input(2) ? f32_initializer(g, p.inputs[2]) : nullptr;
    if (p.has_input(2) && (b == nullptr || b->numel() != M)) continue;
    const float alpha = gemm ? p.attr_float("alpha", 1.0f) : 1.0f;
    const float beta = gemm ? p.attr_float("beta", 1.0f) : 1.0f;
    const double eps = bn.attr_float("epsilon", 1e-5f);
    // y = s * (conv(x) - mean) + shift, s = scale / sqrt(var + eps).
    std::vector<double> s(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m)
      s[static_cast<size_t>(m)] =
          static_cast<double>(scale->data<float>()[m]) / std::sqrt(static_cast<double>(var->data<float>()[m]) + eps);
    Tensor w2(DType::kF32, w->shape());
    const float* pw = w->data<float>();
    float* pw2 = w2.data<float>();
    const int64_t total = w->numel();
    if (conv || trans_b) {
      const int64_t per = total / M;
      for (int64_t i = 0; i < total; ++i)
        pw2[i] = static_cast<float>(pw[i] * s[static_cast<size_t>(i / per)] * alpha);
    } else {
      for (int64_t i = 0; i < total; ++i)
        pw2[i] = static_cast<float>(pw[i] * s[static_cast<size_t>(i % M)] * alpha);
    }
    Tensor b2(DType::kF32, {M});
    for (int64_t m = 0; m < M; ++m) {
      const double bias = b != nullptr ? beta * static_cast<double>(b->data<float>()[m]) : 0.0;
      b2.data<float>()[m] = static_cast<float>((bias - mean->data<float>()[m]) * s[static_cast<size_t>(m)] +
                                               shift->data<float>()[m]);
    }
    const std::string wn = fresh_name(g, p.name.empty() ? "bnfold_W" : p.name + "_bnfold_W");
    const std::string bname = fresh_name(g, p.name.empty() ? "bnfold_B" : p.name + "_bnfold_B");
    w2.set_name(wn);
    b2.set_name(bname);
    g.initializers[wn] = std::move(w2);
    g.initializers[bname] = std::move(b2);
    p.inputs.resize(std::max<size_t>(p.inputs.size(), 3));
    p.inputs[1] = wn;
    p.inputs[2] = bname;
    if (gemm) {
      p.attrs.erase("alpha");
      p.attrs.erase("beta");
    }
    p.outputs[0] = bn.outputs[0];
    dead[bi] = true;
    ++changed;
  }
  if (changed) erase_nodes(g, dead);
  return changed;
}

int fuse_activations(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  const int64_t opset = model.opset("");
  int changed = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    ir::Node& p = g.nodes[i];
    const bool conv = p.op_type == "Conv" && p.domain.empty();
    const bool gemm = p.op_type == "Gemm" && p.domain.empty();
    if ((!conv && !gemm) || dead[i] || p.outputs.empty()) continue;
    // f32 only: the fused ops run on f32.
    const ir::ValueInfo* vi = g.info(p.outputs[0]);
    if (vi == nullptr || vi->dtype != DType::kF32) continue;
    const auto r = uses.sole_reader(p.outputs[0]);
    if (!r || dead[*r]) continue;
    const ir::Node& a = g.nodes[*r];
    if (!a.domain.empty() || a.inputs.empty() || a.inputs[0] != p.outputs[0]) continue;
    std::vector<float> params;
    if (a.op_type == "Relu") {
    } else if (a.op_type == "Clip" && conv) {
      float lo = -INFINITY, hi = INFINITY;
      if (opset < 11) {
        lo = a.attr_float("min", opset < 6 ? -INFINITY : std::numeric_limits<float>::lowest());
        hi = a.attr_float("max", opset < 6 ? INFINITY : std::numeric_limits<float>::max());
      } else {
        if (a.has_input(1)) {
          auto v = scalar_f32(g, a.inputs[1]);
          if (!v) continue;
          lo = *v;
        }
        if (a.has_input(2)) {
          auto v = scalar_f32(g, a.inputs[2]);
          if (!v) continue;
          hi = *v;
        }
      }
      if (std::isnan(lo) || std::isnan(hi)) continue;
      params = {lo, hi};
    } else {
      continue;
    }
    p.domain = kMicrosoft;
    p.op_type = conv ? "FusedConv" : "FusedGemm";
    p.attrs["activation"] = ir::Attribute::of(std::string(a.op_type));
    if (!params.empty()) p.attrs["activation_params"] = ir::Attribute::of(params);
    p.outputs[0] = a.outputs[0];
    dead[*r] = true;
    ++changed;
  }
  if (changed) {
    erase_nodes(g, dead);
    if (!model.opsets.count(kMicrosoft)) model.opsets[kMicrosoft] = 1;
  }
  return changed;
}

int fuse_conv_maxpool(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int changed = 0;
  using ints = std::vector<int64_t>;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    ir::Node& c = g.nodes[i];
    const bool conv = (c.op_type == "Conv" && c.domain.empty()) ||
                      (c.op_type == "FusedConv" && c.domain == kMicrosoft);
    // QLinearConv (fuse_qdq's): its codes pooled, as MaxPool on them does.
    const bool qconv = c.op_type == "QLinearConv" && c.domain.empty();
    if ((!conv && !qconv) || dead[i] || c.outputs.size() != 1) continue;
    if (conv && (c.inputs.size() < 2 || c.inputs.size() > 3)) continue;
    if (qconv && (c.inputs.size() < 8 || c.inputs.size() > 9)) continue;
    // 2-D, f32 (QLinearConv: 8-bit codes, always), constant weights (so
    // that prepare packs them).
    const std::string& wname = c.inputs[qconv ? 3 : 1];
    const auto w = g.initializers.find(wname);
    if (w == g.initializers.end() || w->second.rank() != 4 || uses.pinned.count(wname)) continue;
    const ir::ValueInfo* vi = g.info(c.outputs[0]);
    if (!qconv && (vi == nullptr || vi->dtype != DType::kF32)) continue;
    const auto r = uses.sole_reader(c.outputs[0]);
    if (!r || dead[*r]) continue;
    const ir::Node& m = g.nodes[*r];
    if (m.op_type != "MaxPool" || !m.domain.empty() || m.inputs.empty() || m.inputs[0] != c.outputs[0])
      continue;
    if (m.outputs.size() > 1 && !m.outputs[1].empty()) continue;  // Indices
    const bool plain = m.attr_ints("kernel_shape") == ints{2, 2} &&
                       m.attr_ints("strides", {1, 1}) == ints{2, 2} &&
                       m.attr_ints("dilations", {1, 1}) == ints{1, 1} &&
                       m.attr_ints("pads", {0, 0, 0, 0}) == ints{0, 0, 0, 0} &&
                       m.attr_string("auto_pad", "NOTSET") == "NOTSET" &&
                       m.attr_int("ceil_mode", 0) == 0 && m.attr_int("storage_order", 0) == 0;
    if (!plain) continue;
    c.domain = kQforge;
    c.op_type = qconv ? "QLinearConvMaxPool" : "ConvMaxPool";
    c.outputs[0] = m.outputs[0];
    dead[*r] = true;
    ++changed;
  }
  if (changed) {
    erase_nodes(g, dead);
    if (!model.opsets.count(kQforge)) model.opsets[kQforge] = 1;
  }
  return changed;
}

int qconv_channels_last(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  const size_t count = g.nodes.size();
  auto conv = [&](size_t i) {
    const ir::Node& n = g.nodes[i];
    const bool plain = n.op_type == "QLinearConv" && n.domain.empty();
    const bool pooled = n.op_type == "QLinearConvMaxPool" && n.domain == kQforge;
    if ((!plain && !pooled) || n.outputs.size() != 1 || n.inputs.size() < 8) return false;
    const auto w = g.initializers.find(n.inputs[3]);
    return w != g.initializers.end() && w->second.rank() == 4 && !uses.pinned.count(n.inputs[3]);
  };
  // Links: a conv whose output only the next conv reads, as its x.
  std::vector<bool> linked_in(count, false), linked_out(count, false), gap(count, false),
      feeds_gap(count, false);
  int links = 0;
  for (size_t i = 0; i < count; ++i) {
    if (!conv(i)) continue;
    const auto r = uses.sole_reader(g.nodes[i].outputs[0]);
    if (r && conv(*r) && g.nodes[*r].inputs[0] == g.nodes[i].outputs[0]) {
      linked_out[i] = linked_in[*r] = true;
      ++links;
    }
  }
  if (links == 0) return 0;
  // A chain's last conv read only by a QLinearGlobalAveragePool: that reads
  // it channels-last.
  for (size_t i = 0; i < count; ++i) {
    if (!linked_in[i] || linked_out[i]) continue;
    const auto r = uses.sole_reader(g.nodes[i].outputs[0]);
    if (!r) continue;
    const ir::Node& p = g.nodes[*r];
    if (p.op_type == "QLinearGlobalAveragePool" && p.domain == kMicrosoft && p.outputs.size() == 1 &&
        p.inputs[0] == g.nodes[i].outputs[0] && p.attr_int("channels_last", 0) == 0)
      gap[*r] = feeds_gap[i] = true;
  }
  // The value info of `to`: that of `from` ([N, C, H, W]) as [N, H, W, C].
  auto nhwc_info = [&](const std::string& from, const std::string& to) {
    const ir::ValueInfo* vi = g.info(from);
    ir::ValueInfo v = vi != nullptr ? *vi : ir::ValueInfo{};
    if (v.shape && v.shape->size() == 4)
      v.shape = ir::SymShape{(*v.shape)[0], (*v.shape)[2], (*v.shape)[3], (*v.shape)[1]};
    else
      v.shape.reset();
    g.values[to] = v;
  };
  auto transpose = [](const std::string& in, const std::string& out, std::vector<int64_t> perm) {
    ir::Node t;
    t.op_type = "Transpose";
    t.name = out;
    t.inputs = {in};
    t.outputs = {out};
    t.attrs["perm"] = ir::Attribute::of(std::move(perm));
    return t;
  };
  std::vector<ir::Node> nodes;
  std::unordered_map<std::string, std::string> renamed;  // values inside chains
  int changed = 0;
  for (size_t i = 0; i < count; ++i) {
    ir::Node n = std::move(g.nodes[i]);
    const bool cl = linked_in[i] || linked_out[i];
    if (!cl && !gap[i]) {
      nodes.push_back(std::move(n));
      continue;
    }
    if (auto r = renamed.find(n.inputs[0]); r != renamed.end()) n.inputs[0] = r->second;
    if (cl && !linked_in[i]) {  // the chain's input, made channels-last
      const std::string x = n.outputs[0] + "_x_nhwc";
      nhwc_info(n.inputs[0], x);
      nodes.push_back(transpose(n.inputs[0], x, {0, 2, 3, 1}));
      n.inputs[0] = x;
    }
    if (cl) n.domain = kQforge;  // QLinearConv -> ai.qforge QLinearConv
    n.attrs["channels_last"] = ir::Attribute::of(int64_t{1});
    ++changed;
    const std::string y = n.outputs[0];
    if (cl && (linked_out[i] || feeds_gap[i])) {  // read channels-last, under a new name
      nhwc_info(y, y + "_nhwc");
      n.outputs[0] = y + "_nhwc";
      renamed[y] = n.outputs[0];
      nodes.push_back(std::move(n));
      continue;
    }
    // The chain's output (or the pool's [N, 1, 1, C]), transposed back.
    nhwc_info(y, y + "_nhwc");
    n.outputs[0] = y + "_nhwc";
    nodes.push_back(std::move(n));
    nodes.push_back(transpose(y + "_nhwc", y, {0, 3, 1, 2}));
  }
  g.nodes = std::move(nodes);
  if (!model.opsets.count(kQforge)) model.opsets[kQforge] = 1;
  return changed;
}

int fold_transpose_into_qgemm(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int changed = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& t = g.nodes[i];
    if (!is_op(t, "Transpose") || t.inputs.size() != 1 || t.outputs.size() != 1 ||
        t.attr_ints("perm", {}) != std::vector<int64_t>{0, 3, 1, 2})
      continue;
    const ir::ValueInfo* xi = g.info(t.inputs[0]);
    if (xi == nullptr || !xi->shape || xi->shape->size() != 4) continue;
    const ir::SymShape& xs = *xi->shape;
    if (!xs[1].known() || !xs[2].known() || !xs[3].known()) continue;
    const int64_t H = xs[1].size, W = xs[2].size, C = xs[3].size;
    const auto fi = uses.sole_reader(t.outputs[0]);
    if (!fi) continue;
    ir::Node& f = g.nodes[*fi];
    if (!is_op(f, "Flatten") || f.inputs[0] != t.outputs[0] || f.outputs.size() != 1 ||
        f.attr_int("axis", 1) != 1)
      continue;
    const auto qi = uses.sole_reader(f.outputs[0]);
    if (!qi) continue;
    ir::Node& q = g.nodes[*qi];
    if (q.op_type != "QGemm" || q.domain != kMicrosoft || q.inputs.size() < 6 ||
        q.inputs[0] != f.outputs[0] || q.attr_int("transA", 0) != 0)
      continue;
    const std::string& bn = q.inputs[3];
    const Tensor* b = g.initializer(bn);
    const bool trans_b = q.attr_int("transB", 0) != 0;
    if (b == nullptr || !uses.sole_reader(bn) || b->rank() != 2 ||
        (b->dtype() != DType::kU8 && b->dtype() != DType::kI8) ||
        b->dim(trans_b ? 1 : 0) != C * H * W)
      continue;
    // Row k (NCHW order) of B moves to k2 (NHWC order); with transB, column.
    Tensor nb(b->dtype(), b->shape());
    const auto* from = static_cast<const uint8_t*>(b->raw());
    auto* to = static_cast<uint8_t*>(nb.raw());
    const int64_t N = b->dim(trans_b ? 0 : 1), K = C * H * W;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < H * W; ++s) {
        const int64_t k = c * H * W + s, k2 = s * C + c;
        if (trans_b)
          for (int64_t n = 0; n < N; ++n) to[n * K + k2] = from[n * K + k];
        else
          std::memcpy(to + k2 * N, from + k * N, static_cast<size_t>(N));
      }
    g.initializers[bn] = std::move(nb);
    f.inputs[0] = t.inputs[0];
    g.values.erase(t.outputs[0]);
    dead[i] = true;
    ++changed;
  }
  if (changed) erase_nodes(g, dead);
  return changed;
}

int remove_unused_initializers(ir::Model& model) {
  ir::Graph& g = model.graph;
  const Uses uses(g);
  int changed = 0;
  for (auto it = g.initializers.begin(); it != g.initializers.end();) {
    if (!uses.readers.count(it->first) && !uses.pinned.count(it->first)) {
      g.values.erase(it->first);
      it = g.initializers.erase(it);
      ++changed;
    } else {
      ++it;
    }
  }
  return changed;
}

OptimizeReport optimize(ir::Model& model, bool channels_last) {
  OptimizeReport r;
  auto step = [&](const char* name, int n) {
    if (n > 0) r.log.push_back(std::string(name) + ": " + std::to_string(n));
    r.total += n;
  };
  step("eliminate_identity", eliminate_identity(model));
  step("fold_constants", fold_constants(model));
  step("fold_batchnorm", fold_batchnorm(model));
  step("fuse_qdq", fuse_qdq(model));
  step("fuse_dynamic_matmul", fuse_dynamic_matmul(model));
  step("fuse_erf_gelu", fuse_erf_gelu(model));
  step("fuse_add_layernorm", fuse_add_layernorm(model));
  step("fuse_transpose_matmul", fuse_transpose_matmul(model));
  step("fuse_activations", fuse_activations(model));
  step("fuse_conv_maxpool", fuse_conv_maxpool(model));
  if (channels_last) step("qconv_channels_last", qconv_channels_last(model));
  step("fold_transpose_into_qgemm", fold_transpose_into_qgemm(model));
  step("remove_unused_initializers", remove_unused_initializers(model));
  return r;
}

}  // namespace qforge::passes
