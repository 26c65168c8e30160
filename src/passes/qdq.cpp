// fuse_qdq: DequantizeLinear -> float op -> QuantizeLinear groups become
// integer ops (see qforge/passes.h). A group fuses when:
//  * every quantized input of the op comes from a DequantizeLinear whose
//    scale and zero point are initializers (per tensor for activations; a
//    weight may be per output channel);
//  * the op's output is read only by one QuantizeLinear (per tensor,
//    constant parameters) and is not a graph output;
// and then the integer op reads the DequantizeLinears' integer inputs and
// writes the QuantizeLinear's output. DequantizeLinear nodes nothing reads
// any more go away. The fused node keeps the float op's name.
#include <cmath>
#include <cstring>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "passes/pass_util.h"
#include "qforge/op.h"
#include "qforge/passes.h"
#include "qforge/quant.h"
#include "qforge/session.h"

namespace qforge::passes {
namespace {

// The integer side of a DequantizeLinear or QuantizeLinear.
struct QSide {
  std::string q;      // integer tensor (DQ input, or Q output)
  std::string scale;  // initializer
  std::string zp;     // initializer
  int64_t axis = 1;
  bool per_tensor = true;
};

const ir::Node* producer_of(const ir::Graph& g, const std::unordered_map<std::string, size_t>& made_by,
                            const std::string& v) {
  auto it = made_by.find(v);
  return it == made_by.end() ? nullptr : &g.nodes[it->second];
}

std::optional<QSide> side_of(const ir::Graph& g, const ir::Node& n) {
  if (n.num_inputs() < 3 || n.inputs[1].empty() || n.inputs[2].empty()) return std::nullopt;
  const Tensor* s = g.initializer(n.inputs[1]);
  const Tensor* z = g.initializer(n.inputs[2]);
  if (!s || !z || s->dtype() != DType::kF32 || s->numel() != z->numel()) return std::nullopt;
  if (n.has_attr("block_size") && n.attr_int("block_size", 0) != 0) return std::nullopt;
  if (n.has_attr("output_dtype") && n.attr_int("output_dtype", 0) != 0) return std::nullopt;
  QSide d;
  d.q = n.op_type == "DequantizeLinear" ? n.inputs[0] : n.outputs[0];
  d.scale = n.inputs[1];
  d.zp = n.inputs[2];
  d.axis = n.attr_int("axis", 1);
  d.per_tensor = s->numel() == 1 && s->rank() <= 1;
  return d;
}

bool same_params(const ir::Graph& g, const QSide& a, const QSide& b) {
  if (!a.per_tensor || !b.per_tensor) return false;
  const Tensor& as = *g.initializer(a.scale);
  const Tensor& bs = *g.initializer(b.scale);
  const Tensor& az = *g.initializer(a.zp);
  const Tensor& bz = *g.initializer(b.zp);
  return as.data<float>()[0] == bs.data<float>()[0] && az.dtype() == bz.dtype() &&
         std::memcmp(az.raw(), bz.raw(), az.nbytes()) == 0;
}

bool is_int8(const ir::Graph& g, const QSide& s) {
  const DType t = g.initializer(s.zp)->dtype();
  return t == DType::kU8 || t == DType::kI8;
}

// Ops whose integer form is the same op on the integers, when input and
// output share their parameters.
bool passthrough(const ir::Node& n) {
  const std::string& op = n.op_type;
  if (op == "Resize")  // nearest picks input elements; tf_crop_and_resize may fill with a float
    return n.attr_string("mode", "nearest") == "nearest" &&
           n.attr_string("coordinate_transformation_mode", "half_pixel") != "tf_crop_and_resize";
  return op == "MaxPool" || op == "Reshape" || op == "Transpose" || op == "Flatten" || op == "Squeeze" ||
         op == "Unsqueeze" || op == "Slice";
}

// Elementwise ops of one activation input that fuse into a 256-entry
// ai.qforge QLinearLookup (others inputs, if any, constants). Sigmoid and
// LeakyRelu keep ONNX Runtime's QLinearSigmoid / QLinearLeakyRelu.
bool table_op(const std::string& op) {
  static const char* ops[] = {"HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Softplus", "Softsign", "Erf",
                              "Exp", "Neg", "Abs", "Relu", "Clip", "Gelu", "Celu", "ThresholdedRelu"};
  for (const char* o : ops)
    if (op == o) return true;
  return false;
}

// The 256 results of `n` on the codes of x, quantized with y's parameters:
// the op runs on the dequantized codes in a one-node Session (qforge's own
// kernel), and each result is quantized as QuantizeLinear does.
std::optional<Tensor> lookup_table(const ir::Model& m, const ir::Node& n, const QSide& x, const QSide& y) {
  const ir::Graph& g = m.graph;
  const Tensor& xz = *g.initializer(x.zp);
  const Tensor& yz = *g.initializer(y.zp);
  const float xs = g.initializer(x.scale)->data<float>()[0], ys = g.initializer(y.scale)->data<float>()[0];
  const bool xsigned = xz.dtype() == DType::kI8, ysigned = yz.dtype() == DType::kI8;
  const int32_t xzp = xsigned ? xz.data<int8_t>()[0] : xz.data<uint8_t>()[0];
  const int32_t yzp = ysigned ? yz.data<int8_t>()[0] : yz.data<uint8_t>()[0];
  Tensor in(DType::kF32, {256});
  for (int i = 0; i < 256; ++i) in.data<float>()[i] = dequantize_value(xsigned ? i - 128 : i, xs, xzp);
  ir::Model one;
  one.opsets = m.opsets;
  one.graph.name = "table";
  one.graph.inputs = {"x"};
  one.graph.values["x"] = ir::ValueInfo{DType::kF32, ir::to_sym({256}), {}};
  ir::Node f = n;
  const std::string x_name = "x";
  f.inputs[0] = x_name;  // (assigning the literal trips GCC 12's -Wrestrict false positive)
  for (size_t k = 1; k < f.inputs.size(); ++k) {
    if (f.inputs[k].empty()) continue;
    const Tensor* c = g.initializer(f.inputs[k]);
    if (!c) return std::nullopt;  // a second activation: not a table
    one.graph.initializers[f.inputs[k]] = *c;
  }
  f.outputs = {"y"};
  one.graph.nodes = {f};
  one.graph.outputs = {"y"};
  std::vector<Tensor> out;
  try {
    ir::infer_shapes(one);
    SessionOptions so;
    so.optimize = false;
    out = Session(std::move(one), so).run({{"x", in}});
  } catch (const Error&) {
    return std::nullopt;  // the float node itself will say what is wrong
  }
  if (out.size() != 1 || out[0].dtype() != DType::kF32 || out[0].numel() != 256) return std::nullopt;
  Tensor t(ysigned ? DType::kI8 : DType::kU8, {256});
  const int32_t qmin = ysigned ? -128 : 0, qmax = ysigned ? 127 : 255;
  for (int i = 0; i < 256; ++i) {
    const int32_t q = quantize_value(out[0].data<float>()[i], ys, yzp, qmin, qmax);
    if (ysigned) t.data<int8_t>()[i] = static_cast<int8_t>(q);
    else t.data<uint8_t>()[i] = static_cast<uint8_t>(q);
  }
  return t;
}

class Fuser {
 public:
  explicit Fuser(ir::Model& m) : m_(m), g_(m.graph), uses_(g_) {
    for (size_t i = 0; i < g_.nodes.size(); ++i)
      for (const auto& o : g_.nodes[i].outputs)
        if (!o.empty()) made_by_[o] = i;
    has_qgemm_ = ops::OpRegistry::global().find(kMicrosoft, "QGemm", 1) != nullptr;
  }

  int run() {
    dead_.assign(g_.nodes.size(), false);
    int fused = 0;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (dead_[i] || !g_.nodes[i].domain.empty()) continue;
      fused += fuse(i);
    }
    if (fused == 0) return 0;
    // DequantizeLinear nodes whose output nothing reads any more (a fused
    // MatMul -> Add leaves its MatMul dead: erase first, then count readers).
    erase_nodes(g_, dead_);
    dead_.assign(g_.nodes.size(), false);
    const Uses after(g_);
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      const ir::Node& n = g_.nodes[i];
      if (dead_[i] || n.op_type != "DequantizeLinear") continue;
      if (!after.readers.count(n.outputs[0]) && !after.pinned.count(n.outputs[0])) dead_[i] = true;
    }
    erase_nodes(g_, dead_);
    if (uses_ms_ && !m_.opsets.count(kMicrosoft)) m_.opsets[kMicrosoft] = 1;
    if (uses_qforge_ && !m_.opsets.count(kQforge)) m_.opsets[kQforge] = 1;
    return fused;
  }

 private:
  // Input k from a DequantizeLinear with constant parameters.
  std::optional<QSide> dq_input(const ir::Node& n, int k) const {
    if (!n.has_input(k)) return std::nullopt;
    const ir::Node* p = producer_of(g_, made_by_, n.inputs[static_cast<size_t>(k)]);
    if (!p || p->op_type != "DequantizeLinear" || !p->domain.empty()) return std::nullopt;
    auto s = side_of(g_, *p);
    if (!s || !is_int8(g_, *s)) return std::nullopt;
    return s;
  }
  // The QuantizeLinear that alone reads output 0 of node i.
  std::optional<std::pair<size_t, QSide>> q_output(size_t i) const {
    const ir::Node& n = g_.nodes[i];
    if (n.outputs.size() != 1) return std::nullopt;
    auto r = uses_.sole_reader(n.outputs[0]);
    if (!r || dead_[*r]) return std::nullopt;
    const ir::Node& q = g_.nodes[*r];
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.inputs[0] != n.outputs[0]) return std::nullopt;
    auto s = side_of(g_, q);
    if (!s || !s->per_tensor || !is_int8(g_, *s)) return std::nullopt;
    return std::make_pair(*r, *s);
  }

  // Replaces node i and its QuantizeLinear by `f`.
  int replace(size_t i, size_t q, ir::Node f) {
    f.name = g_.nodes[i].name;
    f.outputs = {g_.nodes[q].outputs[0]};
    uses_ms_ = uses_ms_ || f.domain == kMicrosoft;
    g_.values.erase(g_.nodes[i].outputs[0]);
    g_.nodes[i] = std::move(f);
    dead_[q] = true;
    return 1;
  }

  int fuse(size_t i);
  std::optional<std::string> int_bias(const std::string& v, const QSide& x, const Tensor& ws) const;
  int fuse_matmul_bias(size_t i, size_t qi, const QSide& y);
  int fuse_split(size_t i);

  ir::Model& m_;
  ir::Graph& g_;
  Uses uses_;
  std::unordered_map<std::string, size_t> made_by_;
  std::vector<bool> dead_;
  bool has_qgemm_ = false;
  bool uses_ms_ = false;
  bool uses_qforge_ = false;
};

ir::Node make(const std::string& op, const std::string& domain, std::vector<std::string> in) {
  ir::Node n;
  n.op_type = op;
  n.domain = domain;
  n.inputs = std::move(in);
  return n;
}

int Fuser::fuse(size_t i) {
  const ir::Node n = g_.nodes[i];  // a copy: replace() overwrites the slot
  const std::string& op = n.op_type;
  if (op == "Split") return fuse_split(i);
  if (op == "Shape" && n.num_inputs() == 1) {
    // Shape of a dequantized tensor is the shape of its integers: read
    // those, so the DequantizeLinear can go once nothing else reads it
    // (the ViT's attention reads its input's shape).
    const ir::Node* p = producer_of(g_, made_by_, n.inputs[0]);
    if (!p || p->op_type != "DequantizeLinear" || !p->domain.empty()) return 0;
    g_.nodes[i].inputs[0] = p->inputs[0];
    return 1;
  }
  auto out = q_output(i);
  if (!out) return 0;
  const auto& [qi, y] = *out;
  if (op == "Add" && fuse_matmul_bias(i, qi, y)) return 1;
  auto x = dq_input(n, 0);
  if (!x || !x->per_tensor) return 0;

  if (passthrough(n)) {
    if (!same_params(g_, *x, y)) return 0;
    ir::Node f = n;
    f.inputs[0] = x->q;
    return replace(i, qi, std::move(f));
  }
  if (op == "Conv" || op == "ConvTranspose" || op == "MatMul" || op == "Gemm") {
    auto w = dq_input(n, 1);
    if (!w) return 0;
    // A MatMul of two activations (attention's Q x K^T and weights x V)
    // takes its B per tensor; QLinearMatMul packs it per call.
    const bool const_w = g_.initializer(w->q) != nullptr;
    if (!const_w && !(op == "MatMul" && w->per_tensor)) return 0;
    const Tensor& ws = *g_.initializer(w->scale);
    std::string bias;
    if (n.has_input(2)) {
      auto b = int_bias(n.inputs[2], *x, ws);
      if (!b) return 0;
      bias = *b;
    }
    if (op == "ConvTranspose") {
      // Per output channel is W's axis 1, which is all of them only with group 1.
      if (!w->per_tensor && (w->axis != 1 || n.attr_int("group", 1) != 1)) return 0;
      ir::Node f = make("QLinearConvTranspose", kQforge,
                        {x->q, x->scale, x->zp, w->q, w->scale, w->zp, y.scale, y.zp});
      if (!bias.empty()) f.inputs.push_back(bias);
      f.attrs = n.attrs;
      uses_qforge_ = true;
      return replace(i, qi, std::move(f));
    }
    if (op == "Conv") {
      if (!w->per_tensor && w->axis != 0) return 0;
      ir::Node f = make("QLinearConv", "", {x->q, x->scale, x->zp, w->q, w->scale, w->zp, y.scale, y.zp});
      if (!bias.empty()) f.inputs.push_back(bias);
      f.attrs = n.attrs;
      return replace(i, qi, std::move(f));
    }
    if (op == "MatMul") {
      if (!bias.empty()) return 0;
      if (!w->per_tensor && !(g_.initializer(w->q)->rank() == 2 && (w->axis == 1 || w->axis == -1))) return 0;
      ir::Node f = make("QLinearMatMul", "", {x->q, x->scale, x->zp, w->q, w->scale, w->zp, y.scale, y.zp});
      return replace(i, qi, std::move(f));
    }
    // Gemm -> com.microsoft QGemm (where this build has it).
    if (!has_qgemm_ || n.attr_int("transA", 0) != 0 || n.attr_float("beta", 1) != 1) return 0;
    const int64_t channel_axis = n.attr_int("transB", 0) ? 0 : 1;
    if (!w->per_tensor && w->axis != channel_axis) return 0;
    ir::Node f = make("QGemm", kMicrosoft, {x->q, x->scale, x->zp, w->q, w->scale, w->zp, bias, y.scale, y.zp});
    f.attrs = n.attrs;
    f.attrs.erase("beta");
    return replace(i, qi, std::move(f));
  }
  if (op == "Add" || op == "Mul") {
    auto b = dq_input(n, 1);
    if (!b || !b->per_tensor) return 0;
    ir::Node f = make(op == "Add" ? "QLinearAdd" : "QLinearMul", kMicrosoft,
                      {x->q, x->scale, x->zp, b->q, b->scale, b->zp, y.scale, y.zp});
    return replace(i, qi, std::move(f));
  }
  if (op == "Sigmoid" || op == "LeakyRelu" || op == "AveragePool" || op == "GlobalAveragePool") {
    ir::Node f = make("QLinear" + op, kMicrosoft, {x->q, x->scale, x->zp, y.scale, y.zp});
    f.attrs = n.attrs;
    return replace(i, qi, std::move(f));
  }
  if (op == "Softmax") {
    auto it = m_.opsets.find("");
    ir::Node f = make("QLinearSoftmax", kMicrosoft, {x->q, x->scale, x->zp, y.scale, y.zp});
    f.attrs = n.attrs;
    f.attrs["opset"] = ir::Attribute::of(int64_t{it == m_.opsets.end() ? 13 : it->second});
    return replace(i, qi, std::move(f));
  }
  if (op == "LayerNormalization") {
    if (n.attr_int("stash_type", 1) != 1) return 0;
    ir::Node f = make("QLinearLayerNormalization", kQforge,
                      {x->q, x->scale, x->zp, n.inputs[1], n.has_input(2) ? n.inputs[2] : "", y.scale, y.zp});
    f.attrs = n.attrs;
    f.attrs.erase("stash_type");
    uses_qforge_ = true;
    return replace(i, qi, std::move(f));
  }
  if (table_op(op) && n.outputs.size() == 1) {
    std::optional<Tensor> table = lookup_table(m_, n, *x, y);
    if (!table) return 0;
    std::string name = n.name.empty() ? n.outputs[0] : n.name;
    name.append("_table");
    while (g_.initializers.count(name) || made_by_.count(name)) name.push_back('_');
    g_.initializers[name] = std::move(*table);
    ir::Node f = make("QLinearLookup", kQforge, {x->q, name});
    uses_qforge_ = true;
    return replace(i, qi, std::move(f));
  }
  if (op == "Concat") {
    ir::Node f = make("QLinearConcat", kMicrosoft, {y.scale, y.zp});
    for (int k = 0; k < n.num_inputs(); ++k) {
      auto in = dq_input(n, k);
      if (!in || !in->per_tensor) return 0;
      f.inputs.insert(f.inputs.end(), {in->q, in->scale, in->zp});
    }
    f.attrs = n.attrs;
    return replace(i, qi, std::move(f));
  }
  return 0;
}

// The int32 constant behind the DequantizeLinear that writes v, if it is a
// 1-D bias in units of x_scale * w_scale (per tensor, or per output channel
// as w_scale is) with zero point 0: what QLinearConv and QGemm add to
// their integer sums.
std::optional<std::string> Fuser::int_bias(const std::string& v, const QSide& x, const Tensor& ws) const {
  const ir::Node* bp = producer_of(g_, made_by_, v);
  if (!bp || bp->op_type != "DequantizeLinear" || !bp->domain.empty()) return std::nullopt;
  const Tensor* bq = g_.initializer(bp->inputs[0]);
  const Tensor* bs = bp->num_inputs() > 1 ? g_.initializer(bp->inputs[1]) : nullptr;
  if (!bq || !bs || bq->dtype() != DType::kI32 || bq->rank() != 1 || bs->dtype() != DType::kF32) return std::nullopt;
  if (bp->has_input(2)) {
    const Tensor* bz = g_.initializer(bp->inputs[2]);
    if (!bz || bz->dtype() != DType::kI32) return std::nullopt;
    for (int64_t k = 0, nz = bz->numel(); k < nz; ++k)
      if (bz->data<int32_t>()[k] != 0) return std::nullopt;
  }
  if (bs->numel() != 1 && bs->numel() != ws.numel()) return std::nullopt;
  if (bs->numel() == 1 && ws.numel() != 1) return std::nullopt;
  const float xs = g_.initializer(x.scale)->data<float>()[0];
  for (int64_t k = 0, nb = bs->numel(); k < nb; ++k) {
    const float want = xs * ws.data<float>()[ws.numel() == 1 ? 0 : k];
    if (std::fabs(bs->data<float>()[k] - want) > 1e-6f * want) return std::nullopt;
  }
  return bp->inputs[0];
}

// Add(MatMul(DQ(x), DQ(W)), DQ(int32 bias)) -> Q, the MatMul's float output
// read only by the Add (what the quantizer writes for --target qforge):
// one ai.qforge QLinearMatMul whose int32 sum gets the bias, as
// QLinearConv's does. W is a constant [K, N], per tensor or per column;
// the bias [N] is in units of x_scale * w_scale. The fused node takes the
// MatMul's name; the MatMul is dropped.
int Fuser::fuse_matmul_bias(size_t i, size_t qi, const QSide& y) {
  const ir::Node& add = g_.nodes[i];
  if (add.num_inputs() != 2) return 0;
  for (int side = 0; side < 2; ++side) {
    const std::string& mv = add.inputs[static_cast<size_t>(side)];
    auto mit = made_by_.find(mv);
    if (mit == made_by_.end() || dead_[mit->second]) continue;
    const size_t mi = mit->second;
    const ir::Node& mm = g_.nodes[mi];
    if (mm.op_type != "MatMul" || !mm.domain.empty() || mm.outputs.size() != 1) continue;
    auto r = uses_.sole_reader(mv);
    if (!r || *r != i || uses_.pinned.count(mv)) continue;
    auto x = dq_input(mm, 0);
    auto w = dq_input(mm, 1);
    if (!x || !x->per_tensor || !w) continue;
    const Tensor* wq = g_.initializer(w->q);
    if (!wq || wq->rank() != 2) continue;
    if (!w->per_tensor && !(w->axis == 1 || w->axis == -1)) continue;
    auto bias = int_bias(add.inputs[static_cast<size_t>(1 - side)], *x, *g_.initializer(w->scale));
    if (!bias || g_.initializer(*bias)->numel() != wq->dim(1)) continue;
    ir::Node f = make("QLinearMatMul", kQforge,
                      {x->q, x->scale, x->zp, w->q, w->scale, w->zp, y.scale, y.zp, *bias});
    const std::string name = mm.name;
    g_.values.erase(mv);
    dead_[mi] = true;
    uses_qforge_ = true;
    replace(i, qi, std::move(f));
    g_.nodes[i].name = name;
    return 1;
  }
  return 0;
}

// Split whose every output is read only by a QuantizeLinear with the
// input's parameters: the same Split on the integers (several outputs, so
// not the one-output groups of fuse()).
int Fuser::fuse_split(size_t i) {
  const ir::Node& n = g_.nodes[i];
  auto x = dq_input(n, 0);
  if (!x || !x->per_tensor) return 0;
  std::vector<size_t> qs;
  for (const auto& o : n.outputs) {
    if (o.empty()) return 0;
    auto r = uses_.sole_reader(o);
    if (!r || dead_[*r]) return 0;
    const ir::Node& q = g_.nodes[*r];
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.inputs[0] != o) return 0;
    auto y = side_of(g_, q);
    if (!y || !same_params(g_, *x, *y)) return 0;
    qs.push_back(*r);
  }
  ir::Node f = n;
  f.inputs[0] = x->q;
  for (size_t k = 0; k < qs.size(); ++k) {
    g_.values.erase(f.outputs[k]);
    f.outputs[k] = g_.nodes[qs[k]].outputs[0];
    dead_[qs[k]] = true;
  }
  g_.nodes[i] = std::move(f);
  return 1;
}

// ---------------------------------------------------------------- chains as tables

// Elementwise ops a chain may hold: each output element depends only on the
// same element of the inputs (scalar constants broadcast).
bool chain_op(const ir::Node& n) {
  static const std::unordered_set<std::string> ops = {
      "Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Erf", "Tanh", "Sigmoid", "Relu", "Exp", "Log", "Neg",
      "Abs", "Sqrt", "Reciprocal", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus", "Softsign", "Clip",
      "LeakyRelu", "Gelu", "Celu", "Floor", "Ceil", "Round", "Identity"};
  return n.domain.empty() && n.outputs.size() == 1 && ops.count(n.op_type) > 0;
}

// A scalar constant: an initializer of one element and rank <= 1 (so that
// it can't grow the result's rank when it broadcasts).
bool scalar_constant(const ir::Graph& g, const Uses& uses, const std::string& v) {
  const Tensor* t = g.initializer(v);
  return t && t->numel() == 1 && t->rank() <= 1 && !uses.pinned.count(v);
}

// Elementwise chains that start from one 8-bit tensor and end in a
// QuantizeLinear (GELU written as Div, Erf, Add, Mul, Mul with Q/DQ pairs
// between; x * sigmoid(x); ...) become one ai.qforge QLinearLookup: the
// chain run once on the 256 codes is its table. The chain is grown back
// from the QuantizeLinear, through elementwise ops, scalar constants and
// QuantizeLinear -> DequantizeLinear pairs (rounding is elementwise too),
// as far as it still reads a single quantized tensor. Its nodes stay for
// any other reader; dead_code removes the rest.
class ChainTables {
 public:
  explicit ChainTables(ir::Model& m) : m_(m), g_(m.graph), uses_(g_) {
    for (size_t i = 0; i < g_.nodes.size(); ++i)
      for (const auto& o : g_.nodes[i].outputs)
        if (!o.empty()) made_by_[o] = i;
  }

  int run() {
    int fused = 0;
    // Latest first, so a chain is taken whole rather than in pieces; the
    // QuantizeLinears inside a chain already taken are left to dead_code.
    std::set<size_t> taken;
    for (size_t i = g_.nodes.size(); i-- > 0;) {
      const ir::Node& q = g_.nodes[i];
      if (q.op_type != "QuantizeLinear" || !q.domain.empty() || taken.count(i)) continue;
      auto y = side_of(g_, q);
      if (!y || !y->per_tensor || !is_int8(g_, *y)) continue;
      std::vector<size_t> cone;
      std::string leaf;
      if (!grow(i, cone, leaf)) continue;
      std::optional<Tensor> table = run_chain(cone, leaf, q.outputs[0]);
      if (!table) continue;
      taken.insert(cone.begin(), cone.end());
      std::string name = q.outputs[0] + "_table";
      while (g_.initializers.count(name) || made_by_.count(name)) name.push_back('_');
      g_.initializers[name] = std::move(*table);
      ir::Node f;
      f.op_type = "QLinearLookup";
      f.domain = kQforge;
      f.name = q.name.empty() ? name : q.name;
      f.inputs = {leaf, name};
      f.outputs = q.outputs;
      g_.nodes[i] = std::move(f);
      ++fused;
    }
    if (fused > 0 && !m_.opsets.count(kQforge)) m_.opsets[kQforge] = 1;
    return fused;
  }

 private:
  // The QuantizeLinear and the DequantizeLinear of a pair with constant per-tensor 8-bit parameters.
  bool qdq_node(const ir::Node& n) const {
    if ((n.op_type != "QuantizeLinear" && n.op_type != "DequantizeLinear") || !n.domain.empty()) return false;
    auto s = side_of(g_, n);
    return s && s->per_tensor && is_int8(g_, *s);
  }

  // The chain ending in QuantizeLinear node qi: its nodes in graph order and
  // the one quantized tensor it reads. False if there is none of two or more ops.
  bool grow(size_t qi, std::vector<size_t>& cone, std::string& leaf) const {
    // Leaves: 8-bit tensors read by a DequantizeLinear of the chain. Expand
    // the latest-made leaf (through its QuantizeLinear) until one is left.
    std::set<size_t> nodes{qi};
    std::set<std::string> leaves;
    std::vector<std::string> todo{g_.nodes[qi].inputs[0]};
    auto walk = [&]() -> bool {
      while (!todo.empty()) {
        const std::string v = todo.back();
        todo.pop_back();
        if (scalar_constant(g_, uses_, v)) continue;
        auto it = made_by_.find(v);
        if (it == made_by_.end()) return false;
        const ir::Node& n = g_.nodes[it->second];
        if (nodes.count(it->second)) continue;
        if (n.op_type == "DequantizeLinear" && qdq_node(n)) {
          nodes.insert(it->second);
          if (!scalar_constant(g_, uses_, n.inputs[0])) leaves.insert(n.inputs[0]);
          continue;
        }
        if (!chain_op(n)) return false;
        nodes.insert(it->second);
        for (const auto& in : n.inputs)
          if (!in.empty()) todo.push_back(in);
      }
      return true;
    };
    if (!walk()) return false;
    std::optional<std::pair<std::set<size_t>, std::string>> best;
    for (int step = 0; step < 32 && !leaves.empty(); ++step) {
      int ops = 0;
      for (size_t k : nodes) ops += g_.nodes[k].op_type != "QuantizeLinear" && g_.nodes[k].op_type != "DequantizeLinear";
      if (leaves.size() == 1 && ops >= 2) best = std::make_pair(nodes, *leaves.begin());
      // Expand the leaf made last, through its QuantizeLinear.
      std::string last;
      size_t last_at = 0;
      for (const auto& l : leaves) {
        auto it = made_by_.find(l);
        if (it != made_by_.end() && it->second >= last_at) {
          last = l;
          last_at = it->second;
        }
      }
      if (last.empty() || !qdq_node(g_.nodes[last_at]) || g_.nodes[last_at].op_type != "QuantizeLinear") break;
      leaves.erase(last);
      nodes.insert(last_at);
      todo.push_back(g_.nodes[last_at].inputs[0]);
      if (!walk()) break;
    }
    if (!best) return false;
    cone.assign(best->first.begin(), best->first.end());  // node indices: graph order
    leaf = best->second;
    return true;
  }

  // The chain run on every code of the leaf: the table of 256 output codes.
  std::optional<Tensor> run_chain(const std::vector<size_t>& cone, const std::string& leaf,
                                  const std::string& out) const {
    const Tensor* zp_probe = nullptr;
    for (size_t k : cone)
      if (g_.nodes[k].op_type == "DequantizeLinear" && g_.nodes[k].inputs[0] == leaf)
        zp_probe = g_.initializer(g_.nodes[k].inputs[2]);
    if (!zp_probe) return std::nullopt;
    const DType t = zp_probe->dtype();
    Tensor codes(t, {256});
    for (int i = 0; i < 256; ++i) static_cast<uint8_t*>(codes.raw())[i] = static_cast<uint8_t>(i ^ (t == DType::kI8 ? 0x80 : 0));
    ir::Model one;
    one.opsets = m_.opsets;
    one.graph.name = "chain";
    one.graph.inputs = {leaf};
    one.graph.values[leaf] = ir::ValueInfo{t, ir::to_sym({256}), {}};
    for (size_t k : cone) {
      const ir::Node& n = g_.nodes[k];
      one.graph.nodes.push_back(n);
      for (const auto& in : n.inputs)
        if (const Tensor* c = g_.initializer(in)) one.graph.initializers[in] = *c;
    }
    one.graph.outputs = {out};
    std::vector<Tensor> r;
    try {
      ir::infer_shapes(one);
      SessionOptions so;
      so.optimize = false;
      r = Session(std::move(one), so).run({{leaf, codes}});
    } catch (const Error&) {
      return std::nullopt;
    }
    if (r.size() != 1 || r[0].numel() != 256 || (r[0].dtype() != DType::kU8 && r[0].dtype() != DType::kI8))
      return std::nullopt;
    // Entry i is for the code i (u8) or i - 128 (i8), as QLinearLookup reads it.
    return r[0];
  }

  ir::Model& m_;
  ir::Graph& g_;
  Uses uses_;
  std::unordered_map<std::string, size_t> made_by_;
};

// Drops nodes none of whose outputs anything reads (or a graph output is).
int dead_code(ir::Graph& g) {
  int removed = 0;
  for (bool again = true; again;) {
    again = false;
    const Uses uses(g);
    std::vector<bool> dead(g.nodes.size(), false);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      bool used = false;
      for (const auto& o : g.nodes[i].outputs) used = used || (!o.empty() && (uses.readers.count(o) || uses.pinned.count(o)));
      if (!used) {
        dead[i] = true;
        again = true;
        ++removed;
      }
    }
    if (again) erase_nodes(g, dead);
  }
  return removed;
}

}  // namespace

int fuse_qdq(ir::Model& model) {
  int total = ChainTables(model).run();
  if (total > 0) dead_code(model.graph);
  // A fusion can expose another (a passthrough after a fused Conv).
  for (int round = 0; round < 8; ++round) {
    Fuser f(model);
    const int n = f.run();
    total += n;
    if (n == 0) break;
  }
  return total;
}

}  // namespace qforge::passes
