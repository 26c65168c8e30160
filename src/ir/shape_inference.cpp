// Shape and type inference over a graph: each node's OpDef::infer, in
// topological order, recursing into subgraphs with the enclosing scope
// visible.
#include "qforge/ir.h"
#include "qforge/op.h"

namespace qforge::ir {
namespace {

struct Scope {
  const Graph* graph;
  const Scope* parent;
  const ValueInfo* info(const std::string& n) const {
    for (const Scope* s = this; s; s = s->parent)
      if (const ValueInfo* v = s->graph->info(n)) return v;
    return nullptr;
  }
  const Tensor* constant(const std::string& n) const {
    for (const Scope* s = this; s; s = s->parent)
      if (const Tensor* t = s->graph->initializer(n)) return t;
    return nullptr;
  }
};

// Keeps what `declared` knows where inference knows less; refuses a dtype
// conflict when strict.
ValueInfo merge(const ValueInfo& declared, const ValueInfo& inferred, const Node& n,
                const std::string& value, bool strict) {
  ValueInfo r = inferred;
  if (!r.dtype) {
    r.dtype = declared.dtype;
    r.foreign_type = declared.foreign_type;
  }
  else if (declared.dtype && *declared.dtype != *r.dtype && strict)
    throw Error(Errc::kTypeMismatch, n.describe(),
                "produces '" + value + "' as " + std::string(dtype_name(*r.dtype)) +
                    " but the model declares it " + std::string(dtype_name(*declared.dtype)));
  if (!r.shape) {
    r.shape = declared.shape;
  } else if (declared.shape && declared.shape->size() == r.shape->size()) {
    for (size_t i = 0; i < r.shape->size(); ++i)
      if (!(*r.shape)[i].known() && (*declared.shape)[i].known()) (*r.shape)[i] = (*declared.shape)[i];
      else if (!(*r.shape)[i].known() && !(*declared.shape)[i].symbol.empty() &&
               ((*r.shape)[i].symbol.empty() || (*r.shape)[i].symbol.rfind("unk__", 0) == 0))
        (*r.shape)[i] = (*declared.shape)[i];  // a declared name beats "?" or an invented one
  }
  return r;
}

void infer_graph(Graph& g, const Model& m, const Scope* parent, bool strict) {
  Scope scope{&g, parent};
  for (Node& n : g.nodes) {
    for (auto& [an, a] : n.attrs) {
      if (a.g) infer_graph(*a.g, m, &scope, strict);
      for (auto& sg : a.graphs) infer_graph(*sg, m, &scope, strict);
    }
    const int64_t opset = m.opset(n.domain);
    std::vector<const ValueInfo*> in;
    std::vector<const Tensor*> consts;
    static const ValueInfo kUnknown;
    for (const std::string& name : n.inputs) {
      if (name.empty()) {
        in.push_back(nullptr);
        consts.push_back(nullptr);
        continue;
      }
      const ValueInfo* vi = scope.info(name);
      in.push_back(vi ? vi : &kUnknown);
      consts.push_back(scope.constant(name));
    }
    ops::InferContext ctx(n, opset, std::move(in), std::move(consts));
    const ops::OpDef* def = ops::OpRegistry::global().find(n.domain, n.op_type, opset);
    if (!def || !def->infer) {
      if (strict) {
        const std::string why = ops::unsupported_reason(n, opset);
        throw Error(Errc::kUnsupported, n.describe(), why.empty() ? "has no shape inference" : why);
      }
      continue;
    }
    try {
      def->infer(ctx);
    } catch (const Error&) {
      if (strict) throw;
      continue;  // leave the outputs as declared
    }
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      const std::string& o = n.outputs[i];
      if (o.empty()) continue;
      const ValueInfo declared = g.values.count(o) ? g.values[o] : ValueInfo{};
      g.values[o] = merge(declared, ctx.outputs()[i], n, o, strict);
    }
  }
}

}  // namespace

void infer_shapes(Model& model, bool strict) { infer_graph(model.graph, model, nullptr, strict); }

}  // namespace qforge::ir
