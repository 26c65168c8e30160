#include <algorithm>
#include <atomic>

#include "ops/families.h"
#include "qforge/op.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {

InferContext::InferContext(const ir::Node& node, int64_t opset, std::vector<const ir::ValueInfo*> in,
                           std::vector<const Tensor*> constants, std::vector<const ir::Graph*>)
    : node_(node), opset_(opset), in_(std::move(in)), constants_(std::move(constants)),
      out_(node.outputs.size()) {
  constants_.resize(in_.size(), nullptr);
}

const ir::ValueInfo& InferContext::input(int i) const {
  if (!(has_input(i)))
    throw Error(Errc::kNotFound, node_.describe(), "has no input " + std::to_string(i),
                "the input, which this op requires");
  return *in_[static_cast<size_t>(i)];
}

const Tensor* InferContext::constant(int i) const {
  return i < num_inputs() ? constants_[static_cast<size_t>(i)] : nullptr;
}

ir::ValueInfo& InferContext::output(int i) {
  if (!(i >= 0 && i < num_outputs()))
    throw Error(Errc::kInvalidArgument, node_.describe(), "has no output " + std::to_string(i),
                std::to_string(num_outputs()) + " outputs");
  return out_[static_cast<size_t>(i)];
}

ir::Dim InferContext::fresh_dim() {
  static std::atomic<int64_t> counter{0};
  return ir::Dim::sym("unk__" + std::to_string(counter++));
}

const Tensor& OpContext::input(int i) const {
  if (!(has_input(i)))
    throw Error(Errc::kNotFound, node_.describe(), "has no input " + std::to_string(i),
                "the input, which this op requires");
  return *inputs_[static_cast<size_t>(i)];
}

bool OpContext::wants_output(int i) const {
  return i < num_outputs() && !node_.outputs[static_cast<size_t>(i)].empty();
}

Tensor& OpContext::output(int i, DType dtype, const Shape& shape) {
  if (!(i >= 0 && i < num_outputs()))
    throw Error(Errc::kInvalidArgument, node_.describe(), "has no output " + std::to_string(i),
                std::to_string(num_outputs()) + " outputs");
  auto& o = outputs_[static_cast<size_t>(i)];
  o = allocate(dtype, shape);
  return o;
}

void OpContext::set_output(int i, Tensor t) {
  if (!(i >= 0 && i < num_outputs()))
    throw Error(Errc::kInvalidArgument, node_.describe(), "has no output " + std::to_string(i),
                std::to_string(num_outputs()) + " outputs");
  outputs_[static_cast<size_t>(i)] = std::move(t);
}

Tensor OpContext::allocate(DType dtype, const Shape& shape) {
  return Tensor::view(dtype, shape,
                      Storage::allocate_uninitialized(
                          static_cast<size_t>(storage_bytes(dtype, shape_numel(shape)))));
}

std::vector<Tensor> OpContext::run_subgraph(const std::string& attr, const std::vector<Tensor>&) {
  throw Error(Errc::kUnsupported, node_.describe(),
              "needs to run subgraph '" + attr + "' outside a Session");
}

void OpRegistry::add(OpDef def) { defs_.push_back(std::move(def)); }

const OpDef* OpRegistry::find(const std::string& domain, const std::string& op_type,
                              int64_t opset) const {
  const std::string d = domain == "ai.onnx" ? "" : domain;
  for (const OpDef& def : defs_)
    if (def.op_type == op_type && def.domain == d && opset >= def.min_opset && opset <= def.max_opset)
      return &def;
  return nullptr;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> r;
  for (const OpDef& d : defs_) r.push_back(d.domain.empty() ? d.op_type : d.domain + "." + d.op_type);
  std::sort(r.begin(), r.end());
  r.erase(std::unique(r.begin(), r.end()), r.end());
  return r;
}

const OpRegistry& OpRegistry::global() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    register_elementwise_ops(r);
    register_shape_ops(r);
    register_nn_ops(r);
    register_reduce_ops(r);
    register_rnn_ops(r);
    register_quant_rnn_ops(r);
    register_control_ops(r);
    register_quant_ops(r);
    register_lookup_ops(r);
    return r;
  }();
  return registry;
}

std::string unsupported_reason(const ir::Node& node, int64_t opset, const InferContext* ctx) {
  const OpRegistry& reg = OpRegistry::global();
  const OpDef* def = reg.find(node.domain, node.op_type, opset);
  const std::string dom = node.domain.empty() ? std::string() : node.domain + ".";
  if (!def) {
    for (int64_t v = 1; v <= 21; ++v)
      if (reg.find(node.domain, node.op_type, v))
        return "qforge implements " + dom + node.op_type + " for other opsets, not opset " +
               std::to_string(opset);
    if (!node.domain.empty() && opset == 0)
      return "the model does not import domain '" + node.domain + "'";
    return "no kernel for op " + dom + node.op_type;
  }
  if (def->check && ctx) return def->check(*ctx);
  return {};
}

}  // namespace qforge::ops
