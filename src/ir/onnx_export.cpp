// ir::Model -> ONNX ModelProto.
#include <onnx/checker.h>

#include "ir/proto.h"
#include "qforge/ir.h"
#include "qforge/npy.h"

namespace qforge::ir {
namespace {

// The newest default-domain opset and IR version that Debian's ONNX (1.12)
// checker knows; newer models are written without the checker.
constexpr int64_t kCheckerMaxOpset = 17;
constexpr int64_t kCheckerMaxIr = 8;

void value_info_to_proto(const std::string& name, const ValueInfo* vi, onnx::ValueInfoProto* p) {
  p->set_name(name);
  if (vi && !vi->dtype && !vi->foreign_type.empty()) {
    p->mutable_type()->ParseFromString(vi->foreign_type);
    return;
  }
  if (!vi || !vi->dtype) return;
  auto* tt = p->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(dtype_info(*vi->dtype).onnx);
  if (!vi->shape) return;
  auto* sp = tt->mutable_shape();
  for (const Dim& d : *vi->shape) {
    auto* dp = sp->add_dim();
    if (d.known()) dp->set_dim_value(d.size);
    else if (!d.symbol.empty()) dp->set_dim_param(d.symbol);
  }
}

void graph_to_proto(const Graph& g, onnx::GraphProto* gp);

void attr_to_proto(const std::string& name, const Attribute& a, onnx::AttributeProto* p) {
  using AP = onnx::AttributeProto;
  p->set_name(name);
  switch (a.kind) {
    case Attribute::Kind::kFloat: p->set_type(AP::FLOAT); p->set_f(a.f); break;
    case Attribute::Kind::kInt: p->set_type(AP::INT); p->set_i(a.i); break;
    case Attribute::Kind::kString: p->set_type(AP::STRING); p->set_s(a.s); break;
    case Attribute::Kind::kTensor: p->set_type(AP::TENSOR); tensor_to_proto(a.t, a.t.name(), p->mutable_t()); break;
    case Attribute::Kind::kGraph: p->set_type(AP::GRAPH); graph_to_proto(*a.g, p->mutable_g()); break;
    case Attribute::Kind::kFloats:
      p->set_type(AP::FLOATS);
      for (float f : a.floats) p->add_floats(f);
      break;
    case Attribute::Kind::kInts:
      p->set_type(AP::INTS);
      for (int64_t i : a.ints) p->add_ints(i);
      break;
    case Attribute::Kind::kStrings:
      p->set_type(AP::STRINGS);
      for (const auto& s : a.strings) p->add_strings(s);
      break;
    case Attribute::Kind::kTensors:
      p->set_type(AP::TENSORS);
      for (const auto& t : a.tensors) tensor_to_proto(t, t.name(), p->add_tensors());
      break;
    case Attribute::Kind::kGraphs:
      p->set_type(AP::GRAPHS);
      for (const auto& g : a.graphs) graph_to_proto(*g, p->add_graphs());
      break;
  }
}

void graph_to_proto(const Graph& g, onnx::GraphProto* gp) {
  gp->set_name(g.name.empty() ? "graph" : g.name);
  if (!g.doc_string.empty()) gp->set_doc_string(g.doc_string);
  for (const auto& [name, t] : g.initializers) tensor_to_proto(t, name, gp->add_initializer());
  for (const std::string& in : g.inputs) value_info_to_proto(in, g.info(in), gp->add_input());
  for (const std::string& out : g.outputs) value_info_to_proto(out, g.info(out), gp->add_output());
  std::unordered_set<std::string> io(g.inputs.begin(), g.inputs.end());
  io.insert(g.outputs.begin(), g.outputs.end());
  for (const Node& n : g.nodes) {
    auto* np = gp->add_node();
    if (!n.name.empty()) np->set_name(n.name);
    np->set_op_type(n.op_type);
    if (!n.domain.empty()) np->set_domain(n.domain);
    if (!n.doc_string.empty()) np->set_doc_string(n.doc_string);
    for (const auto& i : n.inputs) np->add_input(i);
    for (const auto& o : n.outputs) np->add_output(o);
    for (const auto& [an, a] : n.attrs) attr_to_proto(an, a, np->add_attribute());
    // Intermediate values whose type is known keep it (value_info).
    for (const auto& o : n.outputs) {
      const ValueInfo* vi = g.info(o);
      if (!o.empty() && !io.count(o) && vi && (vi->dtype || !vi->foreign_type.empty()))
        value_info_to_proto(o, vi, gp->add_value_info());
    }
  }
}

}  // namespace

std::string serialize_model(const Model& m, const SaveOptions& options) {
  onnx::ModelProto mp;
  mp.set_ir_version(m.ir_version);
  mp.set_producer_name(m.producer_name);
  mp.set_producer_version(m.producer_version);
  if (!m.domain.empty()) mp.set_domain(m.domain);
  if (m.model_version) mp.set_model_version(m.model_version);
  if (!m.doc_string.empty()) mp.set_doc_string(m.doc_string);
  for (const auto& [k, v] : m.metadata) {
    auto* kv = mp.add_metadata_props();
    kv->set_key(k);
    kv->set_value(v);
  }
  for (const auto& [d, v] : m.opsets) {
    auto* o = mp.add_opset_import();
    o->set_domain(d);
    o->set_version(v);
  }
  graph_to_proto(m.graph, mp.mutable_graph());
  if (!options.value_info) mp.mutable_graph()->clear_value_info();
  if (options.run_checker && m.opset("") <= kCheckerMaxOpset && m.ir_version <= kCheckerMaxIr) {
    try {
      onnx::checker::check_model(mp);
    } catch (const std::exception& e) {
      throw Error(Errc::kInvalidArgument, "model '" + m.graph.name + "'",
                  std::string("fails the ONNX checker: ") + e.what());
    }
  }
  std::string bytes;
  check(mp.SerializeToString(&bytes), Errc::kUnsupported, "model '" + m.graph.name + "'",
        "can't be serialized (over 2 GiB?)", "a model under protobuf's 2 GiB limit");
  return bytes;
}

void save_model(const Model& model, const std::string& path, const SaveOptions& options) {
  write_file_atomic(path, serialize_model(model, options));
}

}  // namespace qforge::ir
