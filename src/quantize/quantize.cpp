// quantize_model: prepare, choose, calibrate, convert (see qforge/quantize.h).
//
// The QDQ form follows ONNX Runtime's quantizer, so that its QDQ fusions
// (and qforge's own, passes::fuse_qdq) find the groups they expect:
//  * a quantized activation T gets one QuantizeLinear -> DequantizeLinear
//    pair; its producer writes "T_prequant" and the DequantizeLinear writes
//    T, so every reader, float or not, and a graph output keep their name;
//  * weights are stored as integers (s8 symmetric in [-127, 127], per output
//    channel by default) behind a DequantizeLinear, and a bias as int32 with
//    scale = input scale x weight scale and zero point 0;
//  * Relu, and Clip from 0, right after a quantized Conv/Gemm/MatMul/Add are
//    dropped when the output's zero point is the bottom of the integer range:
//    quantization then clamps exactly as they did;
//  * shape ops and MaxPool take the parameters of their input, so the
//    runtime can run them on the integers.
#include <algorithm>
#include <array>
#include <cstdio>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "qforge/error.h"
#include "qforge/evaluate.h"
#include "qforge/op.h"
#include "qforge/passes.h"
#include "qforge/quant.h"
#include "qforge/quantize.h"
#include "qforge/session.h"
#include "quantize/float_search.h"

namespace qforge {
namespace {

// ---------------------------------------------------------------- op rules

enum class Role {
  kWeighted,     // Conv, ConvTranspose, Gemm, MatMul: activation, weight, bias
  kBinary,       // Add, Mul: two inputs, each an activation or a constant
  kObserved,     // quantized input(s) and an output with its own range
  kPassthrough,  // output takes input 0's parameters (shape ops, MaxPool)
  kActivation,   // Relu, Clip: absorbed into the producer when exact
  kGather,       // embeddings: the table is a weight, indices stay integers
};

struct OpRule {
  Role role;
  bool all_inputs = false;  // kObserved: every input (Concat), else input 0
  bool qforge_int = false;  // qforge runs the QDQ group with an integer kernel
  bool ort_int = false;     // so does ONNX Runtime's CPU provider
};

const std::map<std::string, OpRule>& op_rules() {
  static const std::map<std::string, OpRule> rules = {
      {"Conv", {Role::kWeighted, false, true, true}},
      {"ConvTranspose", {Role::kWeighted, false, true, true}},  // qforge: QLinearConvTranspose
      {"Gemm", {Role::kWeighted, false, true, true}},
      {"MatMul", {Role::kWeighted, false, true, true}},
      {"Add", {Role::kBinary, false, true, true}},
      {"Mul", {Role::kBinary, false, true, true}},
      {"Concat", {Role::kObserved, true, true, true}},
      {"AveragePool", {Role::kObserved, false, true, true}},
      {"GlobalAveragePool", {Role::kObserved, false, true, true}},
      {"Sigmoid", {Role::kObserved, false, true, true}},
      {"LeakyRelu", {Role::kObserved, false, true, true}},
      {"HardSigmoid", {Role::kObserved, false, true, false}},  // qforge: a QLinearLookup table
      {"HardSwish", {Role::kObserved, false, true, false}},
      {"Softmax", {Role::kObserved, false, true, true}},             // qforge: QLinearSoftmax
      {"LayerNormalization", {Role::kObserved, false, true, false}},  // qforge: QLinearLayerNormalization
      {"Resize", {Role::kObserved, false, false, true}},              // see rule_for
      {"MaxPool", {Role::kPassthrough, false, true, true}},
      {"Reshape", {Role::kPassthrough, false, true, true}},
      {"Transpose", {Role::kPassthrough, false, true, true}},
      {"Flatten", {Role::kPassthrough, false, true, true}},
      {"Squeeze", {Role::kPassthrough, false, true, true}},
      {"Unsqueeze", {Role::kPassthrough, false, true, true}},
      {"Slice", {Role::kPassthrough, false, true, true}},
      // Every output takes the input's parameters; qforge splits the
      // integers (attention's Q, K, V). Float in ONNX Runtime's QDQ graph.
      {"Split", {Role::kPassthrough, false, true, false}},
      {"Relu", {Role::kActivation, false, true, true}},
      {"Clip", {Role::kActivation, false, true, true}},
      {"Gather", {Role::kGather, false, true, true}},
  };
  return rules;
}

// The rule for one node. Resize in nearest mode only picks input elements,
// so its output takes the input's parameters and qforge runs it on the
// integers; its other modes compute new values (float in qforge).
OpRule rule_for(const ir::Node& n) {
  OpRule r = op_rules().at(n.op_type);
  if (n.op_type == "Resize" && n.attr_string("mode", "nearest") == "nearest" &&
      n.attr_string("coordinate_transformation_mode", "half_pixel") != "tf_crop_and_resize") {
    r.role = Role::kPassthrough;
    r.qforge_int = true;
  }
  return r;
}

bool dynamic_op(const std::string& op) {
  return op == "MatMul" || op == "Gemm" || op == "Conv";
}

// LSTM and GRU have no static integer form; they become the dynamically
// quantized com.microsoft DynamicQuantizeLSTM / ai.qforge DynamicQuantizeGRU
// in either mode (see recurrent_node).
bool recurrent_op(const std::string& op) {
  return op == "LSTM" || op == "GRU";
}

// ---------------------------------------------------------------- helpers

struct Settings {
  QuantMode mode;
  DType activation_type, weight_type;
  bool per_channel;
  CalibMethod method;
};

Settings settings_for(const QuantConfig& c, const ir::Node& n) {
  Settings s{c.mode, c.activation_type, c.weight_type, c.per_channel, c.method};
  auto apply = [&](const QuantOverride& o) {
    if (o.mode) s.mode = *o.mode;
    if (o.activation_type) s.activation_type = *o.activation_type;
    if (o.weight_type) s.weight_type = *o.weight_type;
    if (o.per_channel) s.per_channel = *o.per_channel;
    if (o.method) s.method = *o.method;
  };
  if (auto it = c.op_type_overrides.find(n.op_type); it != c.op_type_overrides.end()) apply(it->second);
  if (auto it = c.node_overrides.find(n.name); it != c.node_overrides.end()) apply(it->second);
  return s;
}

bool is_f32(const ir::Graph& g, const std::string& v) {
  if (const Tensor* t = g.initializer(v)) return t->dtype() == DType::kF32;
  const ir::ValueInfo* vi = g.info(v);
  return vi && vi->dtype && *vi->dtype == DType::kF32;
}

// Names not yet used in the graph.
class Namer {
 public:
  explicit Namer(const ir::Graph& g) {
    for (const auto& n : g.nodes) {
      used_.insert(n.name);
      for (const auto& v : n.inputs) used_.insert(v);
      for (const auto& v : n.outputs) used_.insert(v);
    }
    for (const auto& [k, v] : g.initializers) used_.insert(k);
    used_.insert(g.inputs.begin(), g.inputs.end());
    used_.insert(g.outputs.begin(), g.outputs.end());
  }
  std::string operator()(const std::string& base) {
    std::string n = base;
    for (int i = 1; used_.count(n); ++i) n = base + "_" + std::to_string(i);
    used_.insert(n);
    return n;
  }

 private:
  std::unordered_set<std::string> used_;
};

Tensor scalar_f32(float v) { return Tensor::from<float>({}, {v}); }

Tensor zero_points(const QuantParams& p, bool per_axis) {
  const Shape shape = per_axis ? Shape{static_cast<int64_t>(p.zero_point.size())} : Shape{};
  Tensor t(p.dtype == DType::kI32 ? DType::kI32 : p.dtype, shape);
  for (size_t i = 0; i < p.zero_point.size(); ++i) {
    switch (t.dtype()) {
      case DType::kU8: t.data<uint8_t>()[i] = static_cast<uint8_t>(p.zero_point[i]); break;
      case DType::kI8: t.data<int8_t>()[i] = static_cast<int8_t>(p.zero_point[i]); break;
      default: t.data<int32_t>()[i] = p.zero_point[i]; break;
    }
  }
  return t;
}

Tensor scales(const QuantParams& p, bool per_axis) {
  if (!per_axis) return scalar_f32(p.scale[0]);
  return Tensor::from<float>({static_cast<int64_t>(p.scale.size())}, p.scale);
}

ir::Node make_node(std::string name, std::string op, std::vector<std::string> in,
                   std::vector<std::string> out) {
  ir::Node n;
  n.name = std::move(name);
  n.op_type = std::move(op);
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

QuantSpec activation_spec(const QuantConfig& c, DType t) {
  QuantSpec s;
  s.dtype = t;
  s.symmetric = c.symmetric_activations;
  return s;
}

// Weights: s8 symmetric in [-127, 127] (or u8 affine), per channel along
// `axis` when the settings ask for it.
QuantSpec weight_spec_for(const QuantConfig& c, const Settings& s, int axis) {
  QuantSpec spec;
  spec.dtype = s.weight_type;
  spec.symmetric = s.weight_type == DType::kI8;
  spec.narrow_range = s.weight_type == DType::kI8;
  spec.reduce_range = c.reduce_range;
  spec.axis = s.per_channel ? axis : -1;
  return spec;
}

std::unique_ptr<Observer> make_observer(const QuantConfig& c, CalibMethod m, const QuantSpec& spec) {
  switch (m) {
    case CalibMethod::kMinMax: return std::make_unique<MinMaxObserver>(spec);
    case CalibMethod::kMovingAverage:
      return std::make_unique<MovingAverageMinMaxObserver>(spec, c.averaging_constant);
    case CalibMethod::kEntropy:
    case CalibMethod::kPercentile:
    case CalibMethod::kMse: {
      HistogramOptions o;
      o.method = m == CalibMethod::kEntropy      ? RangeMethod::kEntropy
                 : m == CalibMethod::kPercentile ? RangeMethod::kPercentile
                                                 : RangeMethod::kMse;
      o.bins = c.histogram_bins;
      o.percentile = c.percentile;
      return std::make_unique<HistogramObserver>(spec, o);
    }
  }
  throw Error(Errc::kInternal, "calibration", "unknown method");
}

// ---------------------------------------------------------------- the quantizer

struct Plan {
  ir::Model model;  // prepared
  std::vector<QuantMode> mode;       // per node of model.graph
  std::vector<Settings> settings;    // per node
  std::vector<std::string> reason;   // why float
  std::map<std::string, DType> act_type;  // activation tensors to quantize -> type
  std::map<std::string, CalibMethod> act_method;
  std::map<std::string, std::string> shares;  // passthrough output -> input it takes params from
  // Softmax outputs for ONNX Runtime: its QLinearSoftmax kernel assumes the
  // output is [0, 1) in steps of 1/256 (zero point qmin), whatever the range
  // calibration saw, and gives wrong codes otherwise (seen in ORT 1.30).
  std::set<std::string> unit_range;
  // --target qforge: Add node -> the MatMul whose bias it adds (plan_bias_adds).
  std::map<size_t, size_t> bias_add;
};

// Which activation tensors a static node quantizes (inputs, then outputs).
void static_tensors(const ir::Graph& g, const ir::Node& n, const OpRule& rule, std::vector<std::string>& ins,
                    std::vector<std::string>& outs) {
  auto act = [&](int i) {
    if (n.has_input(i) && !g.initializer(n.inputs[static_cast<size_t>(i)]) &&
        is_f32(g, n.inputs[static_cast<size_t>(i)]))
      ins.push_back(n.inputs[static_cast<size_t>(i)]);
  };
  switch (rule.role) {
    case Role::kWeighted:
      act(0);
      if (n.op_type == "MatMul" || n.op_type == "Gemm") act(1);
      break;
    case Role::kBinary: act(0); act(1); break;
    case Role::kObserved:
      if (rule.all_inputs)
        for (int i = 0; i < n.num_inputs(); ++i) act(i);
      else
        act(0);
      break;
    case Role::kPassthrough:
    case Role::kActivation: act(0); break;
    case Role::kGather:
      if (!g.initializer(n.inputs[0])) act(0);
      break;
  }
  if (rule.role != Role::kGather || !g.initializer(n.inputs[0]))
    if (!n.outputs.empty() && !n.outputs[0].empty() && is_f32(g, n.outputs[0])) outs.push_back(n.outputs[0]);
  if (n.op_type == "Split")
    for (size_t k = 1; k < n.outputs.size(); ++k)
      if (!n.outputs[k].empty() && is_f32(g, n.outputs[k])) outs.push_back(n.outputs[k]);
}

// Weighted ops need their weight as a float initializer to be quantized
// ahead of time (a MatMul of two activations quantizes both as activations).
bool weight_is_constant(const ir::Graph& g, const ir::Node& n) {
  if (!n.has_input(1)) return false;
  const Tensor* w = g.initializer(n.inputs[1]);
  return w && w->dtype() == DType::kF32;
}

// Why an LSTM or GRU can't become its dynamically quantized op ("" if it can).
std::string recurrent_blocker(const ir::Graph& g, const ir::Node& n, QuantTarget target) {
  if (n.op_type == "GRU" && target == QuantTarget::kOnnxRuntime)
    return "ONNX Runtime has no dynamically quantized GRU (qforge's ai.qforge DynamicQuantizeGRU "
           "runs in qforge only; --target qforge uses it)";
  if (n.inputs.size() < 3 || !is_f32(g, n.inputs[0])) return "input is not float32";
  const Tensor* W = g.initializer(n.inputs[1]);
  const Tensor* R = g.initializer(n.inputs[2]);
  if (!W || !R || W->dtype() != DType::kF32 || R->dtype() != DType::kF32)
    return "W or R is not a float constant";
  if (n.attr_int("layout", 0) != 0) return "layout 1 (batch first) has no quantized form";
  const int64_t dirs = n.attr_string("direction", "forward") == "bidirectional" ? 2 : 1;
  const int64_t G = n.op_type == "LSTM" ? 4 : 3;
  const bool shaped = W->rank() == 3 && R->rank() == 3 && W->dim(0) == dirs && R->dim(0) == dirs &&
                      R->dim(1) == G * R->dim(2) && W->dim(1) == R->dim(1) &&
                      n.attr_int("hidden_size", R->dim(2)) == R->dim(2);
  if (!shaped) return "W and R are not shaped as its attributes say";
  return {};
}

void plan_bias_adds(Plan& p);

Plan choose(const ir::Model& model, const QuantConfig& c, QuantizeReport& rep) {
  Plan p{model, {}, {}, {}, {}, {}, {}, {}, {}};
  ir::Model& m = p.model;
  const passes::OptimizeReport o = [&] {
    passes::OptimizeReport r;
    auto step = [&](const char* name, int n) {
      if (n) r.log.push_back(std::string(name) + ": " + std::to_string(n));
    };
    step("eliminate_identity", passes::eliminate_identity(m));
    step("fold_constants", passes::fold_constants(m));
    step("fold_batchnorm", passes::fold_batchnorm(m));
    step("remove_unused_initializers", passes::remove_unused_initializers(m));
    return r;
  }();
  rep.prepare_log = o.log;
  ir::infer_shapes(m);
  const ir::Graph& g = m.graph;
  const auto& rules = op_rules();
  const std::set<std::string> excluded(c.exclude.begin(), c.exclude.end());
  const std::set<std::string> only(c.op_types.begin(), c.op_types.end());
  std::unordered_set<std::string> quantized;  // activation tensors quantized so far
  std::unordered_map<std::string, int> readers;
  for (const auto& n : g.nodes)
    for (const auto& v : n.inputs) ++readers[v];

  for (const ir::Node& n : g.nodes) {
    Settings s = settings_for(c, n);
    std::string why;
    auto rit = rules.find(n.op_type);
    bool touches_float = false;
    for (const auto& v : n.inputs) touches_float = touches_float || (!v.empty() && is_f32(g, v));
    for (const auto& v : n.outputs) touches_float = touches_float || (!v.empty() && is_f32(g, v));
    if (!touches_float) why = "no float32 tensor (shape or index arithmetic)";
    else if (!n.domain.empty() && n.domain != "ai.onnx") why = "domain '" + n.domain + "' is not quantized";
    else if (excluded.count(n.name)) why = "excluded by name";
    else if (excluded.count(n.op_type)) why = "op type excluded";
    else if (!only.empty() && !only.count(n.op_type)) why = "op type not in the config's op_types";
    else if (s.mode == QuantMode::kFloat) why = "config says float";
    else if (recurrent_op(n.op_type)) {
      why = recurrent_blocker(g, n, c.target);
      if (why.empty() && s.mode == QuantMode::kStatic) {
        // Static quantization would need a fixed range for the hidden state
        // of every step; PyTorch quantizes LSTM/GRU dynamically in its
        // static flow too, and so does qforge.
        s.mode = QuantMode::kDynamic;
        rep.notes.push_back(
            n.describe() + ": " + n.op_type +
            " has no static integer form, so it is quantized dynamically (int8 "
            "weights, activations quantized per step at run time), as PyTorch does");
      }
      if (why.empty() && c.target == QuantTarget::kOnnxRuntime && s.weight_type == DType::kU8 &&
          s.per_channel) {
        s.per_channel = false;
        rep.notes.push_back(n.describe() +
                            ": ONNX Runtime's DynamicQuantizeLSTM takes u8 weights with one zero "
                            "point per direction, so its weights are u8 per direction");
      }
    } else if (s.mode == QuantMode::kDynamic) {
      if (!dynamic_op(n.op_type)) why = "dynamic quantization covers MatMul, Gemm and Conv";
      else if (!weight_is_constant(g, n)) why = "weight is not a constant";
      else if (!is_f32(g, n.inputs[0])) why = "input is not float32";
      else if (n.op_type == "Gemm" && n.attr_int("transA", 0) != 0) why = "Gemm with transA is not quantized";
      else if (n.op_type == "MatMul" && g.initializer(n.inputs[1])->rank() != 2)
        why = "MatMul weight is not 2-D";
      else if (n.op_type == "Conv" && c.target == QuantTarget::kOnnxRuntime && s.weight_type != DType::kU8) {
        // ONNX Runtime's CPU ConvInteger takes u8 weights with one zero point.
        s.weight_type = DType::kU8;
        s.per_channel = false;
        rep.notes.push_back(n.describe() +
                            ": ONNX Runtime's ConvInteger takes only u8 weights with one zero point, "
                            "so its weights are u8 per tensor");
      }
    } else if (rit == rules.end()) {
      why = "no quantized form of " + n.op_type;
    } else {
      const OpRule r = rule_for(n);
      const bool has_int = c.target == QuantTarget::kQforge ? r.qforge_int : r.ort_int;
      if (!has_int)
        why = std::string(c.target == QuantTarget::kQforge ? "qforge" : "ONNX Runtime") +
              " has no integer kernel for " + n.op_type +
              (n.op_type == "Resize" ? " mode " + n.attr_string("mode", "nearest") : std::string());
      else if (n.inputs.empty() || !is_f32(g, n.inputs[0]) || n.outputs.empty() || !is_f32(g, n.outputs[0]))
        why = "not a float32 node";
      else if (r.role == Role::kPassthrough || r.role == Role::kActivation) {
        if (!quantized.count(n.inputs[0])) why = "its input is not quantized";
      } else if (r.role == Role::kGather && !g.initializer(n.inputs[0]) && !quantized.count(n.inputs[0]))
        why = "its input is not quantized";
      else if (r.role == Role::kWeighted && n.op_type == "ConvTranspose" && !weight_is_constant(g, n))
        why = "weight is not a constant";
      else if (n.op_type == "Gemm" && n.attr_int("transA", 0) != 0)
        why = "Gemm with transA is not quantized";
      else if (n.op_type == "Clip") {
        // Clip's bounds must be constants for it to become a range.
        for (int i = 1; i < 3; ++i)
          if (n.has_input(i) && !g.initializer(n.inputs[static_cast<size_t>(i)])) why = "Clip bounds are not constants";
      }
    }
    const QuantMode mode = why.empty() ? s.mode : QuantMode::kFloat;
    p.mode.push_back(mode);
    p.settings.push_back(s);
    p.reason.push_back(why);
    if (mode != QuantMode::kStatic) continue;
    const OpRule r = rule_for(n);
    std::vector<std::string> ins, outs;
    static_tensors(g, n, r, ins, outs);
    for (const auto& t : ins) {
      p.act_type.emplace(t, s.activation_type);
      p.act_method.emplace(t, s.method);
      quantized.insert(t);
    }
    for (const auto& t : outs) {
      if (r.role == Role::kPassthrough || r.role == Role::kGather) p.shares[t] = n.inputs[0];
      if (n.op_type == "Softmax" && c.target == QuantTarget::kOnnxRuntime) {
        p.unit_range.insert(t);
        rep.notes.push_back(n.describe() + ": its output is quantized to [0, 1) in steps of 1/256, "
                            "the range ONNX Runtime's QLinearSoftmax assumes");
      }
      p.act_type.emplace(t, s.activation_type);
      p.act_method.emplace(t, s.method);
      quantized.insert(t);
    }
  }
  if (c.target == QuantTarget::kQforge) plan_bias_adds(p);
  return p;
}

// --target qforge: a static MatMul by a constant [K, N] whose output only a
// static Add of a constant [N] reads leaves that output float, and the Add
// takes the bias as int32 in units of x_scale * w_scale[n] (zero point 0),
// as Conv's bias is; fuse_qdq then makes the pair one ai.qforge
// QLinearMatMul that adds the bias to its integer sum (no QuantizeLinear /
// QLinearAdd between them). ONNX Runtime has no such fusion, so
// --target onnxruntime keeps the quantized MatMul output and a QLinearAdd.
void plan_bias_adds(Plan& p) {
  const ir::Graph& g = p.model.graph;
  std::unordered_map<std::string, size_t> made_by;
  std::unordered_map<std::string, int> reads;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& o : g.nodes[i].outputs) made_by[o] = i;
    for (const auto& v : g.nodes[i].inputs) ++reads[v];
  }
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& a = g.nodes[i];
    if (a.op_type != "Add" || p.mode[i] != QuantMode::kStatic || a.inputs.size() != 2) continue;
    for (size_t side = 0; side < 2; ++side) {
      const std::string& mv = a.inputs[side];
      const Tensor* b = g.initializer(a.inputs[1 - side]);
      auto it = made_by.find(mv);
      if (!b || b->dtype() != DType::kF32 || b->rank() != 1 || it == made_by.end()) continue;
      const size_t mi = it->second;
      const ir::Node& mm = g.nodes[mi];
      if (mm.op_type != "MatMul" || p.mode[mi] != QuantMode::kStatic || !weight_is_constant(g, mm)) continue;
      const Tensor& w = *g.initializer(mm.inputs[1]);
      if (w.rank() != 2 || w.dim(1) != b->numel() || !p.act_type.count(mm.inputs[0])) continue;
      if (reads[mv] != 1 || std::count(g.outputs.begin(), g.outputs.end(), mv)) continue;
      p.bias_add[i] = mi;
      p.act_type.erase(mv);
      p.act_method.erase(mv);
      break;
    }
  }
}

// Observed tensors: the quantized ones that don't share their input's parameters.
std::vector<std::string> observed_tensors(const Plan& p) {
  std::vector<std::string> v;
  for (const auto& [t, ty] : p.act_type)
    if (!p.shares.count(t)) v.push_back(t);
  return v;
}

class Converter {
 public:
  Converter(Plan& p, const QuantConfig& c, const std::map<std::string, MinMax>& ranges)
      : p_(p), c_(c), g_(p.model.graph), name_(p.model.graph), ranges_(ranges) {}

  // Rewrites p.model.graph; fills how / reason per node in `decisions`.
  void run(std::vector<NodeDecision>& decisions);

 private:
  const QuantParams& act_params(const std::string& t);
  std::pair<std::string, std::string> params(const std::string& base, const QuantParams& qp, bool per_axis);
  std::string behind_dq(const std::string& base, const Tensor& q, const QuantParams& qp,
                        std::vector<ir::Node>& out);
  void qdq_pair(const std::string& base, const std::string& from, const std::string& to, const QuantParams& qp,
                std::vector<ir::Node>& out);
  std::string constant(const std::string& w, const QuantSpec& spec, std::vector<ir::Node>& out);
  std::string bias(const std::string& b, const QuantParams& x, const QuantParams& w,
                   std::vector<ir::Node>& out);
  void static_node(ir::Node& n, const Settings& s, std::vector<ir::Node>& out);
  void bias_add(ir::Node& n, size_t matmul, std::vector<ir::Node>& out);
  std::string dynamic_node(ir::Node& n, const Settings& s, std::vector<ir::Node>& out);
  std::string recurrent_node(ir::Node& n, const Settings& s, std::vector<ir::Node>& out);
  std::array<std::string, 3> recurrent_weight(const std::string& w, const Settings& s);
  void quantize_outputs(ir::Node& n, std::vector<ir::Node>& out);
  void quantize_emitted(std::vector<ir::Node>& out, size_t from);
  bool absorb(size_t i);
  std::string input(const std::string& v) const {
    auto it = renamed_.find(v);
    return it == renamed_.end() ? v : it->second;
  }

  Plan& p_;
  const QuantConfig& c_;
  ir::Graph& g_;
  Namer name_;
  const std::map<std::string, MinMax>& ranges_;
  std::map<std::string, QuantParams> params_;         // activation tensor -> params
  std::map<std::string, QuantParams> const_params_;   // DequantizeLinear output of a constant -> params
  std::map<std::string, std::string> const_cache_;    // constant + spec -> its DequantizeLinear output
  std::map<std::string, std::string> renamed_;        // quantized graph input -> its DequantizeLinear output
  std::unordered_set<std::string> emitted_;
};

const QuantParams& Converter::act_params(const std::string& t) {
  if (auto it = params_.find(t); it != params_.end()) return it->second;
  QuantParams qp;
  if (auto s = p_.shares.find(t); s != p_.shares.end()) {
    qp = act_params(s->second);
  } else if (p_.unit_range.count(t)) {
    qp.dtype = p_.act_type.at(t);
    qp.scale = {1.0f / 256.0f};
    qp.zero_point = {static_cast<int32_t>(qp.qmin())};
  } else {
    auto r = ranges_.find(t);
    if (r == ranges_.end()) throw Error(Errc::kInternal, "tensor '" + t + "'", "has no calibrated range");
    qp = choose_params(activation_spec(c_, p_.act_type.at(t)), r->second.min, r->second.max,
                       "activation '" + t + "'");
  }
  return params_.emplace(t, qp).first->second;
}

// Scale and zero-point initializers for qp, named after `base`.
std::pair<std::string, std::string> Converter::params(const std::string& base, const QuantParams& qp,
                                                      bool per_axis) {
  const std::string sn = name_(base + "_scale");
  const std::string zn = name_(base + "_zero_point");
  g_.initializers[sn] = scales(qp, per_axis);
  g_.initializers[zn] = zero_points(qp, per_axis);
  return {sn, zn};
}

// Integer codes q (an initializer) behind a DequantizeLinear with qp's
// parameters (per axis when qp.axis >= 0); returns the DequantizeLinear's output.
std::string Converter::behind_dq(const std::string& base, const Tensor& q, const QuantParams& qp,
                                 std::vector<ir::Node>& out) {
  const bool per_axis = qp.axis >= 0;
  const std::string qn = name_(base + "_quantized");
  g_.initializers[qn] = Tensor::view(q.dtype(), q.shape(), q.storage());
  const auto [sn, zn] = params(base, qp, per_axis);
  const std::string dq = name_(base + "_dequantized");
  ir::Node d = make_node(name_(base + "_DequantizeLinear"), "DequantizeLinear", {qn, sn, zn}, {dq});
  if (per_axis) d.attrs["axis"] = ir::Attribute::of(int64_t{qp.axis});
  out.push_back(std::move(d));
  return dq;
}

// QuantizeLinear(from) -> DequantizeLinear -> to, per tensor with qp's parameters.
void Converter::qdq_pair(const std::string& base, const std::string& from, const std::string& to,
                         const QuantParams& qp, std::vector<ir::Node>& out) {
  const std::string q = name_(base + "_quantized");
  const auto [sn, zn] = params(base, qp, false);
  out.push_back(make_node(name_(base + "_QuantizeLinear"), "QuantizeLinear", {from, sn, zn}, {q}));
  out.push_back(make_node(name_(base + "_DequantizeLinear"), "DequantizeLinear", {q, sn, zn}, {to}));
}

// A constant stored as integers behind a DequantizeLinear (once per
// constant and spec); returns the DequantizeLinear's output.
std::string Converter::constant(const std::string& w, const QuantSpec& spec, std::vector<ir::Node>& out) {
  const std::string key = w + "|" + std::to_string(spec.axis) + "|" + std::string(dtype_name(spec.dtype)) + "|" +
                          (spec.symmetric ? "s" : "a");
  if (auto it = const_cache_.find(key); it != const_cache_.end()) return it->second;
  const Tensor& wt = *g_.initializer(w);
  const QuantParams qp = choose_params_for(wt, spec);
  const std::string dq = behind_dq(w, quantize(wt, qp), qp, out);
  const_params_[dq] = qp;
  const_cache_[key] = dq;
  return dq;
}

// A 1-D bias as int32 with scale x_scale * w_scale[c] and zero point 0.
std::string Converter::bias(const std::string& b, const QuantParams& x, const QuantParams& w,
                            std::vector<ir::Node>& out) {
  const Tensor& bt = *g_.initializer(b);
  QuantParams qp;
  qp.dtype = DType::kI32;
  qp.axis = w.scale.size() > 1 ? 0 : -1;
  for (float ws : w.scale) qp.scale.push_back(x.scale[0] * ws);
  qp.zero_point.assign(qp.scale.size(), 0);
  // A product that underflows to 0 would divide by zero.
  for (float& s : qp.scale)
    if (!(s > 0 && std::isfinite(s))) s = std::numeric_limits<float>::min();
  return behind_dq(b, quantize(bt, qp), qp, out);
}

// Relu, or Clip from 0, whose input is the sole output of a quantized
// Conv/Gemm/MatMul/Add read by nothing else, and whose own output's zero
// point is the bottom of the range: quantization clamps as it did.
bool Converter::absorb(size_t i) {
  const ir::Node& r = g_.nodes[i];
  if (p_.mode[i] != QuantMode::kStatic || (r.op_type != "Relu" && r.op_type != "Clip")) return false;
  const std::string& t = r.inputs[0];
  size_t producer = g_.nodes.size();
  int reads = 0;
  for (size_t j = 0; j < g_.nodes.size(); ++j) {
    for (const auto& o : g_.nodes[j].outputs)
      if (o == t) producer = j;
    for (const auto& v : g_.nodes[j].inputs) reads += v == t;
  }
  if (producer == g_.nodes.size() || p_.mode[producer] != QuantMode::kStatic || reads != 1) return false;
  const std::string& pop = g_.nodes[producer].op_type;
  if (pop != "Conv" && pop != "ConvTranspose" && pop != "Gemm" && pop != "MatMul" && pop != "Add") return false;
  if (std::count(g_.outputs.begin(), g_.outputs.end(), t)) return false;
  const QuantParams& y = act_params(r.outputs[0]);
  if (y.zero_point[0] != y.qmin()) return false;
  if (r.op_type == "Clip") {
    auto bound = [&](int k, float dflt) {
      if (r.has_input(k)) return g_.initializer(r.inputs[static_cast<size_t>(k)])->data<float>()[0];
      if (r.has_attr(k == 1 ? "min" : "max")) return r.attr_float(k == 1 ? "min" : "max", dflt);
      return dflt;
    };
    const float lo = bound(1, -std::numeric_limits<float>::infinity());
    const float hi = bound(2, std::numeric_limits<float>::infinity());
    if (lo != 0.0f || dequantize_value(static_cast<int32_t>(y.qmax()), y.scale[0], y.zero_point[0]) > hi)
      return false;
  }
  // The producer writes the activation's output directly.
  for (auto& o : g_.nodes[producer].outputs)
    if (o == t) o = r.outputs[0];
  return true;
}

void Converter::quantize_outputs(ir::Node& n, std::vector<ir::Node>& out) {
  out.push_back(n);
  quantize_emitted(out, out.size() - 1);
}

// The outputs of out[from...] that static nodes read quantized get their
// QuantizeLinear -> DequantizeLinear pair, after the node that writes them
// (under a new name) and under their own name, for every reader.
void Converter::quantize_emitted(std::vector<ir::Node>& out, size_t from) {
  std::vector<ir::Node> qdq;
  for (size_t k = from; k < out.size(); ++k)
    for (auto& o : out[k].outputs) {
      if (o.empty() || !p_.act_type.count(o) || emitted_.count(o)) continue;
      emitted_.insert(o);
      const QuantParams& qp = act_params(o);
      const std::string pre = name_(o + "_prequant");
      if (const ir::ValueInfo* vi = g_.info(o)) g_.values[pre] = *vi;
      qdq_pair(o, pre, o, qp, qdq);
      o = pre;
    }
  for (auto& q : qdq) out.push_back(std::move(q));
}

void Converter::static_node(ir::Node& n, const Settings& s, std::vector<ir::Node>& out) {
  const OpRule rule = rule_for(n);
  const std::vector<std::string> orig = n.inputs;
  for (auto& v : n.inputs) v = input(v);
  if (rule.role == Role::kWeighted && weight_is_constant(g_, n)) {
    const int rank = g_.initializer(orig[1])->rank();
    int axis = -1;
    if (n.op_type == "Conv") axis = 0;
    else if (n.op_type == "ConvTranspose") axis = n.attr_int("group", 1) == 1 ? 1 : -1;
    else if (n.op_type == "Gemm") axis = n.attr_int("transB", 0) ? 0 : 1;
    else if (rank == 2) axis = 1;  // MatMul [K, N]: per column
    n.inputs[1] = constant(orig[1], weight_spec_for(c_, s, axis), out);
    const QuantParams& wp = const_params_.at(n.inputs[1]);
    const Tensor* b = n.has_input(2) ? g_.initializer(orig[2]) : nullptr;
    const bool plain_gemm = n.op_type != "Gemm" ||
                            (n.attr_float("alpha", 1) == 1 && n.attr_float("beta", 1) == 1);
    if (b && b->dtype() == DType::kF32 && b->rank() == 1 && plain_gemm &&
        p_.act_type.count(orig[0]) &&
        (wp.scale.size() == 1 || static_cast<int64_t>(wp.scale.size()) == b->numel()))
      n.inputs[2] = bias(orig[2], act_params(orig[0]), wp, out);
  } else if (rule.role == Role::kBinary) {
    for (int k = 0; k < 2 && k < n.num_inputs(); ++k) {
      const Tensor* t = g_.initializer(orig[static_cast<size_t>(k)]);
      if (!t || t->dtype() != DType::kF32) continue;
      // A constant operand: its own range, the activations' type.
      n.inputs[static_cast<size_t>(k)] = constant(orig[static_cast<size_t>(k)], activation_spec(c_, s.activation_type), out);
    }
  } else if (rule.role == Role::kGather && g_.initializer(orig[0])) {
    n.inputs[0] = constant(orig[0], weight_spec_for(c_, s, -1), out);
  }
  quantize_outputs(n, out);
}

// The Add of a MatMul's bias (Plan::bias_add): the MatMul's output stays
// float, the bias becomes int32 in units of the MatMul's x_scale * w_scale.
void Converter::bias_add(ir::Node& n, size_t matmul, std::vector<ir::Node>& out) {
  const ir::Node& mm = g_.nodes[matmul];
  // The MatMul's weight, as static_node quantized it (per column: axis 1).
  const std::string w = constant(mm.inputs[1], weight_spec_for(c_, p_.settings[matmul], 1), out);
  const QuantParams& wp = const_params_.at(w);
  for (auto& v : n.inputs) v = g_.initializer(v) ? bias(v, act_params(mm.inputs[0]), wp, out) : input(v);
  quantize_outputs(n, out);
}

// DynamicQuantizeLinear -> MatMulInteger / ConvInteger -> Cast -> Mul by
// x_scale * w_scale (-> Add bias). Returns the integer op's type.
std::string Converter::dynamic_node(ir::Node& n, const Settings& s, std::vector<ir::Node>& out) {
  const std::string x = input(n.inputs[0]);
  const std::string y = n.outputs[0];
  const std::string base = n.name.empty() ? y : n.name;
  Tensor w = *g_.initializer(n.inputs[1]);
  const bool conv = n.op_type == "Conv";
  std::string b;  // float bias to add, if any
  Tensor bias_value;
  if (n.op_type == "Gemm") {
    if (n.attr_int("transB", 0)) {  // store [K, N]
      const int64_t N = w.shape()[0], K = w.shape()[1];
      Tensor t(DType::kF32, {K, N});
      for (int64_t i = 0; i < N; ++i)
        for (int64_t k = 0; k < K; ++k) t.data<float>()[k * N + i] = w.data<float>()[i * K + k];
      w = t;
    } else {
      w = w.clone();
    }
    const float alpha = n.attr_float("alpha", 1);
    if (alpha != 1)
      for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] *= alpha;
    if (n.has_input(2)) {
      b = input(n.inputs[2]);
      const float beta = n.attr_float("beta", 1);
      if (beta != 1) {
        const Tensor* c = g_.initializer(b);
        if (!c) throw Error(Errc::kUnsupported, n.describe(), "has beta != 1 and a bias that is not a constant");
        bias_value = c->clone();
        for (int64_t i = 0; i < bias_value.numel(); ++i) bias_value.data<float>()[i] *= beta;
        b = name_(b + "_scaled");
        g_.initializers[b] = bias_value;
      }
    }
  } else if (conv && n.has_input(2)) {
    const Tensor* c = g_.initializer(n.inputs[2]);
    if (!c) throw Error(Errc::kUnsupported, n.describe(), "has a bias that is not a constant");
    Shape sh(static_cast<size_t>(w.rank() - 1), 1);  // [M, 1, 1]: broadcasts over [N, M, H, W]
    sh[0] = c->numel();
    b = name_(n.inputs[2] + "_reshaped");
    g_.initializers[b] = Tensor::view(DType::kF32, sh, c->clone().storage());
  }
  const QuantSpec spec = weight_spec_for(c_, s, conv ? 0 : 1);
  const QuantParams qp = choose_params_for(w, spec);
  const Tensor q = quantize(w, qp);
  const std::string& wn = n.inputs[1];
  const std::string qn = name_(wn + "_quantized");
  g_.initializers[qn] = Tensor::view(q.dtype(), q.shape(), q.storage());
  const auto [sn, zn] = params(wn, qp, spec.axis >= 0);
  if (conv && spec.axis >= 0) {  // [M, 1, 1]: broadcasts over ConvInteger's [N, M, H, W]
    Shape sh(static_cast<size_t>(w.rank() - 1), 1);
    sh[0] = static_cast<int64_t>(qp.scale.size());
    g_.initializers[sn] = Tensor::view(DType::kF32, sh, g_.initializers[sn].storage());
  }

  const std::string xq = name_(x + "_quantized"), xs = name_(x + "_scale"), xz = name_(x + "_zero_point");
  out.push_back(make_node(name_(base + "_DynamicQuantizeLinear"), "DynamicQuantizeLinear", {x}, {xq, xs, xz}));
  const std::string acc = name_(y + "_int32");
  ir::Node integer = make_node(n.name, conv ? "ConvInteger" : "MatMulInteger", {xq, qn, xz, zn}, {acc});
  if (conv) integer.attrs = n.attrs;
  out.push_back(std::move(integer));
  const std::string accf = name_(y + "_int32_float");
  ir::Node cast = make_node(name_(base + "_Cast"), "Cast", {acc}, {accf});
  cast.attrs["to"] = ir::Attribute::of(int64_t{1});  // FLOAT
  out.push_back(std::move(cast));
  const std::string scale = name_(y + "_scale");
  out.push_back(make_node(name_(base + "_scale_Mul"), "Mul", {xs, sn}, {scale}));
  const std::string pre = b.empty() ? y : name_(y + "_nobias");
  out.push_back(make_node(name_(base + "_Mul"), "Mul", {accf, scale}, {pre}));
  if (!b.empty()) out.push_back(make_node(name_(base + "_bias_Add"), "Add", {pre, b}, {y}));
  return conv ? "ConvInteger" : "MatMulInteger";
}

// A recurrent weight [dirs, G*H, K] (ONNX's W or R) as the quantized ops
// take it: each direction transposed to [K, G*H] (so that it is the K x N
// matrix of the product), quantized per output column (or with one scale per
// direction); scales and zero points [dirs, G*H] (or [dirs]). Returns the
// initializers: codes, scale, zero point.
std::array<std::string, 3> Converter::recurrent_weight(const std::string& w, const Settings& s) {
  const Tensor& wt = *g_.initializer(w);
  const int64_t D = wt.dim(0), N = wt.dim(1), K = wt.dim(2);
  const QuantSpec spec = weight_spec_for(c_, s, 0);  // axis 0 of one direction's [N, K]: per column
  Tensor codes(spec.dtype, {D, K, N});
  QuantParams all;  // every direction's parameters, one after the other
  all.dtype = spec.dtype;
  for (int64_t d = 0; d < D; ++d) {
    const float* src = wt.data<float>() + d * N * K;
    const Tensor slice = Tensor::from<float>({N, K}, std::vector<float>(src, src + N * K));
    const QuantParams qp = choose_params_for(slice, spec);
    const Tensor q = quantize(slice, qp);
    const auto* qb = static_cast<const uint8_t*>(q.raw());  // 8-bit codes, one byte each
    auto* cb = static_cast<uint8_t*>(codes.raw()) + d * K * N;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) cb[k * N + n] = qb[n * K + k];
    all.scale.insert(all.scale.end(), qp.scale.begin(), qp.scale.end());
    all.zero_point.insert(all.zero_point.end(), qp.zero_point.begin(), qp.zero_point.end());
  }
  const Shape ps = spec.axis >= 0 ? Shape{D, N} : Shape{D};
  const std::string qn = name_(w + "_quantized"), sn = name_(w + "_scale"),
                    zn = name_(w + "_zero_point");
  g_.initializers[qn] = codes;
  g_.initializers[sn] = scales(all, true).reshape(ps);
  g_.initializers[zn] = zero_points(all, true).reshape(ps);
  return {qn, sn, zn};
}

// LSTM -> com.microsoft DynamicQuantizeLSTM (ONNX Runtime's contrib op),
// GRU -> ai.qforge DynamicQuantizeGRU: the same inputs with W and R
// quantized ahead of time (recurrent_weight) and their scales and zero
// points appended; X and each step's hidden state are quantized by the op
// at run time. Returns the new op's type.
std::string Converter::recurrent_node(ir::Node& n, const Settings& s, std::vector<ir::Node>& out) {
  const bool lstm = n.op_type == "LSTM";
  const std::string domain = lstm ? "com.microsoft" : ops::kQforgeDomain;
  if (!n.has_attr("hidden_size"))  // ONNX Runtime's op requires it
    n.attrs["hidden_size"] = ir::Attribute::of(g_.initializer(n.inputs[2])->dim(2));
  const auto w = recurrent_weight(n.inputs[1], s);
  const auto r = recurrent_weight(n.inputs[2], s);
  // X as it is, even where static nodes read a quantized copy of a graph
  // input: the op quantizes it itself.
  std::vector<std::string> in = n.inputs;
  in.resize(lstm ? 8 : 6);  // X W R B sequence_lens initial_h [initial_c P]
  in[1] = w[0];
  in[2] = r[0];
  in.insert(in.end(), {w[1], w[2], r[1], r[2]});
  n.inputs = std::move(in);
  n.op_type = lstm ? "DynamicQuantizeLSTM" : "DynamicQuantizeGRU";
  n.domain = domain;
  n.attrs.erase("layout");           // always 0 here; the quantized ops have no such attribute
  n.attrs.erase("output_sequence");  // LSTM-1's, which ONNX Runtime's kernel ignores too
  if (!p_.model.opsets.count(domain)) p_.model.opsets[domain] = 1;
  quantize_outputs(n, out);  // for static readers of Y, Y_h, Y_c
  return n.op_type;
}

void Converter::run(std::vector<NodeDecision>& decisions) {
  const size_t count = g_.nodes.size();
  std::vector<bool> absorbed(count, false);
  for (size_t i = 0; i < count; ++i)
    if (absorb(i)) absorbed[i] = true;
  std::vector<ir::Node> out;
  // Graph inputs that static nodes read quantized.
  for (const std::string& in : g_.inputs) {
    if (!p_.act_type.count(in) || g_.initializer(in)) continue;
    const QuantParams& qp = act_params(in);
    const std::string dq = name_(in + "_dequantized");
    qdq_pair(in, in, dq, qp, out);
    renamed_[in] = dq;
    emitted_.insert(in);
  }
  for (size_t i = 0; i < count; ++i) {
    ir::Node n = g_.nodes[i];
    NodeDecision d{n.name, n.op_type, p_.mode[i], "", p_.reason[i]};
    if (absorbed[i]) {
      d.how = "absorbed: its input's quantization clamps as it did";
    } else if (p_.mode[i] == QuantMode::kStatic) {
      if (auto it = p_.bias_add.find(i); it != p_.bias_add.end()) bias_add(n, it->second, out);
      else static_node(n, p_.settings[i], out);
      d.how = "QDQ";
    } else if (p_.mode[i] == QuantMode::kDynamic) {
      // Its float outputs may be quantized for the static nodes that read them.
      const size_t from = out.size();
      d.how = recurrent_op(n.op_type) ? recurrent_node(n, p_.settings[i], out) : dynamic_node(n, p_.settings[i], out);
      quantize_emitted(out, from);
    } else {
      // Float: reads what it read (quantized graph inputs stay float for it);
      // its outputs may still be quantized for the static nodes that read them.
      quantize_outputs(n, out);
    }
    decisions.push_back(std::move(d));
  }
  g_.nodes = std::move(out);
  g_.topo_sort();
}

using ObserverMap = std::unordered_map<std::string, std::unique_ptr<Observer>>;

int64_t batch_samples(const NamedTensors& batch) {
  for (const auto& [k, t] : batch)
    if (t.rank() > 0) return t.shape()[0];
  return 1;
}

std::map<std::string, MinMax> calibrate_with(const ir::Model& prepared, ObserverMap& obs,
                                             CalibrationDataReader& data, QuantizeReport* report,
                                             const CalibrationCallback& progress, int64_t total_batches) {
  SessionOptions so;
  so.optimize = false;  // observe the prepared graph's own tensors
  Session session(prepared, so);
  int64_t batch_index = 0;
  const Session::ValueTap tap = [&](const std::string& name, const Tensor& v) {
    auto it = obs.find(name);
    if (it == obs.end() || v.dtype() != DType::kF32) return;
    try {
      it->second->observe(v);
    } catch (const Error& e) {
      throw Error(e.code(), "activation '" + name + "' in calibration batch " + std::to_string(batch_index + 1),
                  e.problem(), e.expected());
    }
  };
  CalibrationProgress pr;
  pr.total_batches = total_batches;
  const auto t0 = std::chrono::steady_clock::now();
  while (auto batch = data.next()) {
    session.run(*batch, nullptr, tap);
    ++batch_index;
    pr.batches += 1;
    pr.samples += batch_samples(*batch);
    pr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress) progress(pr);
  }
  if (pr.batches == 0)
    throw Error(Errc::kInvalidArgument, "calibration data", "yielded no batch",
                "at least one batch of model inputs");
  if (report) {
    report->calibration_batches = pr.batches;
    report->calibration_samples = pr.samples;
    report->calibration_seconds = pr.seconds;
  }
  std::map<std::string, MinMax> ranges;
  for (const auto& [name, o] : obs) {
    if (!o->has_data())
      throw Error(Errc::kInternal, "tensor '" + name + "'", "was never computed during calibration");
    ranges[name] = o->range();
  }
  return ranges;
}

}  // namespace

namespace {

// Converts a chosen and calibrated plan (its model is consumed), and says in
// rep.nodes what each static node runs as.
ir::Model convert(Plan& plan, const QuantConfig& config, const std::map<std::string, MinMax>& ranges,
                  QuantizeReport& rep) {
  Converter conv(plan, config, ranges);
  conv.run(rep.nodes);
  ir::Model out = std::move(plan.model);
  passes::remove_unused_initializers(out);
  ir::infer_shapes(out);
  // What each static node runs as: its integer op once the QDQ groups are
  // fused (what qforge's Session does, and what --format qop writes).
  ir::Model fused = out;
  passes::fuse_qdq(fused);
  std::unordered_map<std::string, const ir::Node*> node_of;
  for (const auto& n : fused.graph.nodes)
    if (!n.name.empty()) node_of[n.name] = &n;
  // An Add whose bias went into the QLinearMatMul before it: Add -> that MatMul's name.
  std::unordered_map<std::string, std::string> matmul_of, bias_of;
  for (const auto& n : out.graph.nodes)
    if (n.op_type == "MatMul") matmul_of[n.outputs[0]] = n.name;
  for (const auto& n : out.graph.nodes)
    if (n.op_type == "Add")
      for (const auto& v : n.inputs)
        if (auto m = matmul_of.find(v); m != matmul_of.end()) bias_of[n.name] = m->second;
  for (auto& d : rep.nodes) {
    if (d.how != "QDQ") continue;
    auto it = node_of.find(d.node);
    auto folded = bias_of.find(d.node);
    if (it == node_of.end() && folded != bias_of.end() && node_of.count(folded->second) &&
        node_of[folded->second]->op_type == "QLinearMatMul" && node_of[folded->second]->num_inputs() == 9) {
      d.how = "bias added in the QLinearMatMul's integer sum";
      continue;
    }
    if (it == node_of.end()) {
      // fuse_qdq removes a float node only when an elementwise chain it is
      // part of became one table.
      d.how = "in an elementwise chain run as one QLinearLookup";
      continue;
    }
    const ir::Node& n = *it->second;
    // Unfused, a shape op or MaxPool writes floats that a QuantizeLinear reads.
    bool int8_out = true;
    for (const auto& r : fused.graph.nodes)
      if (r.op_type == "QuantizeLinear" && r.inputs[0] == n.outputs[0]) int8_out = false;
    if (n.op_type != d.op_type) d.how = n.op_type;
    else if (int8_out) d.how = n.op_type + " on int8";
    else d.how = "QDQ around a float kernel";
  }
  if (config.format == QuantFormat::kQOperator) {
    out = std::move(fused);
    passes::remove_unused_initializers(out);  // the fused DequantizeLinears' parameters
  }
  return out;
}

// The speed check: each quantized node's time in the quantized model (the
// node itself, the QuantizeLinear nodes only it reads, the DequantizeLinear
// nodes that read only it, and the helper nodes of its dynamic form) against
// its time in the float model, both run as qforge runs them (optimized), as
// medians of warm runs alternating between the two models.
std::vector<SpeedDecision> time_nodes(const ir::Model& float_model, const ir::Model& quantized,
                                      const std::vector<NodeDecision>& nodes, int64_t batch) {
  const Session fs(float_model), qs(quantized);
  const Session::NamedTensors fin = synthetic_inputs(fs, batch, {}, "float model");
  const Session::NamedTensors qin = synthetic_inputs(qs, batch, {}, "quantized model");
  std::map<std::string, const NodeDecision*> checked;
  for (const NodeDecision& d : nodes)
    if (d.mode != QuantMode::kFloat && d.how.rfind("absorbed", 0) != 0 && !d.node.empty()) checked[d.node] = &d;
  // Owner of each node of the quantized graph as it runs.
  const ir::Graph& qg = qs.model().graph;
  std::unordered_map<std::string, std::string> owner, producer_owner;
  static const char* kDynamicParts[] = {"_DynamicQuantizeLinear", "_Cast", "_scale_Mul", "_Mul", "_bias_Add"};
  for (const ir::Node& n : qg.nodes) {
    for (const auto& [x, d] : checked) {
      bool mine = n.name == x;
      for (const char* part : kDynamicParts) mine = mine || n.name == x + part;
      if (mine) owner[n.name] = x;
    }
  }
  for (const ir::Node& n : qg.nodes)
    if (owner.count(n.name))
      for (const auto& o : n.outputs) producer_owner[o] = owner[n.name];
  for (const ir::Node& n : qg.nodes) {
    if (owner.count(n.name) || n.outputs.empty()) continue;
    if (n.op_type == "DequantizeLinear" && producer_owner.count(n.inputs[0])) {
      owner[n.name] = producer_owner[n.inputs[0]];
    } else if (n.op_type == "QuantizeLinear") {
      std::string who;
      bool one = true;
      for (const ir::Node& r : qg.nodes)
        for (const auto& in : r.inputs)
          if (in == n.outputs[0]) {
            auto it = owner.find(r.name);
            if (it == owner.end() || (!who.empty() && who != it->second)) one = false;
            else who = it->second;
          }
      if (one && !who.empty()) owner[n.name] = who;
    }
  }
  constexpr int kWarm = 2, kRuns = 15;
  std::map<std::string, std::vector<double>> int_ms, float_ms;
  for (int r = 0; r < kWarm + kRuns; ++r) {
    RunProfile pf, pq;
    fs.run(fin, &pf);
    qs.run(qin, &pq);
    if (r < kWarm) continue;
    std::map<std::string, double> fi, qi;
    for (const NodeTime& t : pf.nodes)
      if (checked.count(t.node)) fi[t.node] += t.ms;
    for (const NodeTime& t : pq.nodes)
      if (auto it = owner.find(t.node); it != owner.end()) qi[it->second] += t.ms;
    for (const auto& [x, ms] : fi) float_ms[x].push_back(ms);
    for (const auto& [x, ms] : qi) int_ms[x].push_back(ms);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::vector<SpeedDecision> out;
  for (const NodeDecision& d : nodes) {
    if (!checked.count(d.node) || !int_ms.count(d.node) || !float_ms.count(d.node)) continue;
    SpeedDecision s{d.node, d.op_type, median(int_ms[d.node]), median(float_ms[d.node]), false};
    s.kept_float = s.int_ms > s.float_ms;
    out.push_back(s);
  }
  return out;
}

// Median time of whole runs of a and b, alternating: the first, the second.
// Unprofiled (a per-node clock would favour the model with fewer nodes), 15
// runs each or more, until each has run for 25 ms: a small model's
// differences of a few percent are then above the run-to-run noise.
std::pair<double, double> time_models(const ir::Model& a, const ir::Model& b, int64_t batch) {
  const Session sa(a), sb(b);
  const Session::NamedTensors ia = synthetic_inputs(sa, batch), ib = synthetic_inputs(sb, batch);
  std::vector<double> ta, tb;
  double total_a = 0, total_b = 0;
  auto timed = [](const Session& s, const Session::NamedTensors& in) {
    const auto t0 = std::chrono::steady_clock::now();
    s.run(in);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int r = 0; r < 2; ++r) timed(sa, ia), timed(sb, ib);  // warm
  while (ta.size() < 15 || (std::min(total_a, total_b) < 25.0 && ta.size() < 5000)) {
    ta.push_back(timed(sa, ia));
    tb.push_back(timed(sb, ib));
    total_a += ta.back();
    total_b += tb.back();
  }
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {ta[ta.size() / 2], tb[tb.size() / 2]};
}

// Quantizes `model` again with the nodes of `floats` kept float: the ranges
// calibrated before cover the tensors the new plan observes, but for a
// tensor that took its parameters from another (after a shape op or
// MaxPool) and is now observed on its own, which gets that one's range, and
// for a tensor observed only now (the input of an integer node whose
// producer is now float), calibrated on `data` again (one more pass over
// it, counted in *passes). nullopt (why says why) where such a range can't
// be had.
std::optional<ir::Model> requantize(const ir::Model& model, const QuantConfig& config,
                                    const Plan& plan, const std::set<std::string>& floats,
                                    CalibrationDataReader* data,
                                    std::map<std::string, MinMax>& ranges, QuantizeReport& rep2,
                                    std::string& why, int* passes) {
  QuantConfig again = config;
  again.exclude.insert(again.exclude.end(), floats.begin(), floats.end());
  Plan plan2 = choose(model, again, rep2);
  for (const auto& [t, from] : plan.shares) {
    std::string root = from;
    for (int hops = 0; !ranges.count(root) && plan.shares.count(root) && hops < 1000; ++hops)
      root = plan.shares.at(root);
    if (!ranges.count(t) && ranges.count(root)) ranges[t] = ranges.at(root);
  }
  ObserverMap obs;
  for (const std::string& t : observed_tensors(plan2))
    if (!ranges.count(t))
      obs[t] = make_observer(again, plan2.act_method.at(t),
                             activation_spec(again, plan2.act_type.at(t)));
  if (!obs.empty()) {
    if (data == nullptr) {
      why = "a calibrated range is missing for the re-quantization";
      return std::nullopt;
    }
    try {
      data->rewind();
    } catch (const Error& e) {
      why = "a range is missing for the re-quantization and the calibration data can't be "
            "read again (" + e.problem() + ")";
      return std::nullopt;
    }
    const std::map<std::string, MinMax> more =
        calibrate_with(plan2.model, obs, *data, nullptr, {}, -1);
    ranges.insert(more.begin(), more.end());
    ++*passes;
  }
  return convert(plan2, again, ranges, rep2);
}

// QuantConfig::speed_check: times the quantized model `out` node by node
// against the prepared float one, and looks for a faster model with some of
// the nodes that lose kept float (float_search.h), each candidate quantized
// again and timed as a whole. `plan` is the first plan (for its shared
// ranges), `prepared` its float graph, `data` the calibration data (static)
// or null; rep gets the decisions.
void speed_check(const ir::Model& model, const ir::Model& prepared, const QuantConfig& config, const Plan& plan,
                 std::map<std::string, MinMax>& ranges, CalibrationDataReader* data, ir::Model& out,
                 QuantizeReport& rep) {
  check(config.speed_check_batch >= 1, Errc::kInvalidArgument,
        "speed_check_batch " + std::to_string(config.speed_check_batch), "must be at least 1");
  try {
    rep.speed = time_nodes(prepared, out, rep.nodes, config.speed_check_batch);
  } catch (const Error& e) {
    // A model whose inputs the check can't make up (a sequence length that
    // no batch size fixes): quantized as configured, and said so.
    rep.notes.push_back(std::string("speed check skipped: ") + e.what());
    return;
  }
  std::map<std::string, SpeedDecision*> slower;
  for (SpeedDecision& s : rep.speed)
    if (s.kept_float) slower[s.node] = &s;
  for (auto& [n, s] : slower) s->kept_float = false;  // until a faster model keeps it float
  if (slower.empty()) return;
  // The losing nodes by kind (op type; a MatMul or Gemm on constant weights
  // apart from one on two activations), the kind that lost the most time first.
  std::map<std::string, std::pair<double, std::set<std::string>>> by_kind;
  for (const auto& [n, s] : slower) {
    std::string kind = s->op_type;
    for (const ir::Node& node : model.graph.nodes)
      if (node.name == n && (kind == "MatMul" || kind == "Gemm"))
        kind += node.inputs.size() > 1 && model.graph.initializer(node.inputs[1]) ? " (weights)"
                                                                                  : " (activations)";
    by_kind[kind].first += s->int_ms - s->float_ms;
    by_kind[kind].second.insert(n);
  }
  std::vector<std::pair<double, std::set<std::string>>> by_loss;
  for (auto& [k, v] : by_kind) by_loss.push_back(std::move(v));
  std::stable_sort(by_loss.begin(), by_loss.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  // Candidates, quantized again with their nodes float (float_search.h).
  struct Candidate {
    std::set<std::string> floats;
    ir::Model model;
    QuantizeReport rep;
  };
  int tried = 0, passes = 0;
  std::string refused;
  auto make = [&](const std::set<std::string>& floats) -> std::optional<Candidate> {
    Candidate c{floats, {}, {}};
    std::string why;
    std::optional<ir::Model> m =
        requantize(model, config, plan, floats, data, ranges, c.rep, why, &passes);
    if (!m) {
      refused = why;
      return std::nullopt;
    }
    ++tried;
    c.model = std::move(*m);
    return c;
  };
  auto time = [&](const Candidate& a, const Candidate& b) {
    return time_models(a.model, b.model, config.speed_check_batch);
  };
  std::vector<std::set<std::string>> kinds;
  for (auto& [loss, nodes] : by_loss) kinds.push_back(std::move(nodes));
  std::optional<Candidate> best =
      quantize_detail::search_float_set(Candidate{{}, out, {}}, kinds, make, time);
  auto note_passes = [&] {
    if (passes > 0)
      rep.notes.push_back("speed check: " + std::to_string(passes) +
                          " more pass(es) over the calibration data, for tensors a mixed "
                          "model quantizes that the first did not");
  };
  if (!best) {
    note_passes();
    rep.notes.push_back("speed check: " +
                        (tried == 0 ? refused
                                    : "no set of the " + std::to_string(slower.size()) +
                                          " slower node(s) kept float made the model faster (" +
                                          std::to_string(tried) + " tried)") +
                        "; kept the model quantized throughout");
    return;
  }
  const auto [all_int_ms, best_ms] = time_models(out, best->model, config.speed_check_batch);
  const std::set<std::string>& kept = best->floats;
  for (NodeDecision& d : best->rep.nodes)
    if (auto it = slower.find(d.node); it != slower.end() && kept.count(d.node)) {
      char why[160];
      std::snprintf(why, sizeof why, "slower in int8 on this CPU (%.3f ms vs %.3f ms float, batch %lld)",
                    it->second->int_ms, it->second->float_ms, static_cast<long long>(config.speed_check_batch));
      d.reason = why;
      it->second->kept_float = true;
    }
  rep.nodes = std::move(best->rep.nodes);
  rep.notes = std::move(best->rep.notes);
  out = std::move(best->model);
  char whole[200];
  std::snprintf(whole, sizeof whole,
                "speed check: the model takes %.3f ms with %zu of the %zu slower node(s) "
                "float, %.3f ms quantized throughout (%d set(s) tried)",
                best_ms, kept.size(), slower.size(), all_int_ms, tried);
  rep.notes.push_back(whole);
  note_passes();
}

}  // namespace

ir::Model quantize_model(const ir::Model& model, const QuantConfig& config, CalibrationDataReader* data,
                         QuantizeReport* report, const CalibrationCallback& progress, int64_t total_batches) {
  QuantizeReport local;
  QuantizeReport& rep = report ? *report : local;
  rep = QuantizeReport{};
  rep.bytes_before = initializer_bytes(model);
  Plan plan = choose(model, config, rep);
  std::map<std::string, MinMax> ranges;
  const std::vector<std::string> observed = observed_tensors(plan);
  if (!observed.empty()) {
    if (!data)
      throw Error(Errc::kInvalidArgument, "static quantization",
                  "needs calibration data for " + std::to_string(observed.size()) + " activation tensor(s)",
                  "a CalibrationDataReader (the CLI's --calib DATA), or --mode dynamic");
    ObserverMap obs;
    for (const std::string& t : observed)
      obs[t] = make_observer(config, plan.act_method.at(t), activation_spec(config, plan.act_type.at(t)));
    ranges = calibrate_with(plan.model, obs, *data, &rep, progress, total_batches);
  }
  const ir::Model prepared = plan.model;  // the float graph the quantized one replaces
  ir::Model out = convert(plan, config, ranges, rep);
  if (config.speed_check) speed_check(model, prepared, config, plan, ranges, data, out, rep);
  for (const auto& d : rep.nodes) (d.mode == QuantMode::kFloat ? rep.kept_float : rep.quantized) += 1;
  rep.bytes_after = initializer_bytes(out);
  return out;
}

int64_t initializer_bytes(const ir::Model& model) {
  int64_t n = 0;
  for (const auto& [k, t] : model.graph.initializers) n += static_cast<int64_t>(t.nbytes());
  return n;
}

std::map<std::string, MinMax> calibrate_ranges(const ir::Model& prepared, const std::vector<std::string>& tensors,
                                               const QuantConfig& config, CalibrationDataReader& data,
                                               QuantizeReport* report, const CalibrationCallback& progress,
                                               int64_t total_batches) {
  ObserverMap obs;
  for (const std::string& t : tensors)
    obs[t] = make_observer(config, config.method, activation_spec(config, config.activation_type));
  return calibrate_with(prepared, obs, data, report, progress, total_batches);
}

}  // namespace qforge
