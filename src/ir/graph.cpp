#include <algorithm>
#include <set>
#include <unordered_set>

#include "qforge/ir.h"

namespace qforge::ir {

std::string Dim::str() const {
  if (known()) return std::to_string(size);
  return symbol.empty() ? "?" : symbol;
}

std::string sym_shape_str(const SymShape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + s[i].str();
  return r + "]";
}

SymShape to_sym(const Shape& s) { return SymShape(s.begin(), s.end()); }

std::optional<Shape> to_concrete(const SymShape& s) {
  Shape r;
  for (const Dim& d : s) {
    if (!d.known()) return std::nullopt;
    r.push_back(d.size);
  }
  return r;
}

std::string ValueInfo::str() const {
  std::string r = dtype ? std::string(dtype_name(*dtype)) : "?";
  return r + (shape ? sym_shape_str(*shape) : "[...]");
}

const char* attr_kind_name(Attribute::Kind k) {
  switch (k) {
    case Attribute::Kind::kFloat: return "float";
    case Attribute::Kind::kInt: return "int";
    case Attribute::Kind::kString: return "string";
    case Attribute::Kind::kTensor: return "tensor";
    case Attribute::Kind::kGraph: return "graph";
    case Attribute::Kind::kFloats: return "floats";
    case Attribute::Kind::kInts: return "ints";
    case Attribute::Kind::kStrings: return "strings";
    case Attribute::Kind::kTensors: return "tensors";
    case Attribute::Kind::kGraphs: return "graphs";
  }
  return "?";
}

std::string Node::describe() const {
  std::string d = domain.empty() ? op_type : domain + "." + op_type;
  if (name.empty()) {
    const std::string out = outputs.empty() ? std::string("?") : outputs[0];
    return "node producing '" + out + "' (" + d + ")";
  }
  return "node '" + name + "' (" + d + ")";
}

const Attribute& Node::attr(const std::string& a) const {
  auto it = attrs.find(a);
  QFORGE_CHECK(it != attrs.end(), Errc::kNotFound, describe(), "has no attribute '" + a + "'",
               "the attribute, which this op requires");
  return it->second;
}

namespace {
const Attribute* typed(const Node& n, const std::string& a, Attribute::Kind k) {
  auto it = n.attrs.find(a);
  if (it == n.attrs.end()) return nullptr;
  // Ops read attributes on every run: the message is built only on failure.
  QFORGE_CHECK(it->second.kind == k, Errc::kInvalidArgument, n.describe(),
               "attribute '" + a + "' is a " + attr_kind_name(it->second.kind),
               std::string("a ") + attr_kind_name(k));
  return &it->second;
}
}  // namespace

int64_t Node::attr_int(const std::string& a, int64_t dflt) const {
  const Attribute* p = typed(*this, a, Attribute::Kind::kInt);
  return p ? p->i : dflt;
}
float Node::attr_float(const std::string& a, float dflt) const {
  const Attribute* p = typed(*this, a, Attribute::Kind::kFloat);
  return p ? p->f : dflt;
}
std::string Node::attr_string(const std::string& a, const std::string& dflt) const {
  const Attribute* p = typed(*this, a, Attribute::Kind::kString);
  return p ? p->s : dflt;
}
std::vector<int64_t> Node::attr_ints(const std::string& a, std::vector<int64_t> dflt) const {
  const Attribute* p = typed(*this, a, Attribute::Kind::kInts);
  return p ? p->ints : dflt;
}
std::vector<float> Node::attr_floats(const std::string& a, std::vector<float> dflt) const {
  const Attribute* p = typed(*this, a, Attribute::Kind::kFloats);
  return p ? p->floats : dflt;
}
const Tensor* Node::attr_tensor(const std::string& a) const {
  const Attribute* p = typed(*this, a, Attribute::Kind::kTensor);
  return p ? &p->t : nullptr;
}
const Graph* Node::attr_graph(const std::string& a) const {
  const Attribute* p = typed(*this, a, Attribute::Kind::kGraph);
  return p ? p->g.get() : nullptr;
}

const ValueInfo* Graph::info(const std::string& v) const {
  auto it = values.find(v);
  return it == values.end() ? nullptr : &it->second;
}

const Tensor* Graph::initializer(const std::string& v) const {
  auto it = initializers.find(v);
  return it == initializers.end() ? nullptr : &it->second;
}

void Graph::topo_sort() {
  const std::string where = name.empty() ? std::string("graph") : "graph '" + name + "'";
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const std::string& o : nodes[i].outputs) {
      if (o.empty()) continue;
      auto [it, fresh] = producer.emplace(o, i);
      check(fresh, Errc::kCorrupt, nodes[i].describe(),
            "produces '" + o + "', which " + nodes[it->second].describe() + " also produces",
            "each value produced once (SSA)");
    }
  // Kahn's algorithm, taking the lowest-index ready node first so an
  // already sorted graph keeps its order.
  std::vector<std::vector<size_t>> users(nodes.size());
  std::vector<size_t> pending(nodes.size(), 0);
  auto deps_of = [&](const Node& n, auto&& add) {
    for (const std::string& in : n.inputs) {
      auto it = producer.find(in);
      if (!in.empty() && it != producer.end()) add(it->second);
    }
    // Subgraphs may read values of this graph: those are dependencies too.
    for (const auto& [an, a] : n.attrs) {
      std::vector<const Graph*> gs;
      if (a.g) gs.push_back(a.g.get());
      for (const auto& g : a.graphs) gs.push_back(g.get());
      for (const Graph* g : gs)
        for (const std::string& c : g->captured_names()) {
          auto it = producer.find(c);
          if (it != producer.end()) add(it->second);
        }
    }
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::set<size_t> deps;
    deps_of(nodes[i], [&](size_t p) { deps.insert(p); });
    check(!deps.count(i), Errc::kCorrupt, nodes[i].describe(), "uses its own output",
          "an acyclic graph");
    pending[i] = deps.size();
    for (size_t p : deps) users[p].push_back(i);
  }
  std::set<size_t> ready;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (pending[i] == 0) ready.insert(i);
  std::vector<size_t> order;
  while (!ready.empty()) {
    const size_t i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(i);
    for (size_t u : users[i])
      if (--pending[u] == 0) ready.insert(u);
  }
  if (order.size() != nodes.size()) {
    for (size_t i = 0; i < nodes.size(); ++i)
      if (pending[i] != 0)
        throw Error(Errc::kCorrupt, nodes[i].describe() + " in " + where,
                    "is on a cycle (its inputs depend on its own outputs)", "an acyclic graph");
  }
  std::vector<Node> sorted;
  sorted.reserve(nodes.size());
  for (size_t i : order) sorted.push_back(std::move(nodes[i]));
  nodes = std::move(sorted);
}

std::vector<std::string> Graph::captured_names() const {
  std::unordered_set<std::string> defined(inputs.begin(), inputs.end());
  for (const auto& [n, t] : initializers) defined.insert(n);
  for (const Node& n : nodes)
    for (const std::string& o : n.outputs) defined.insert(o);
  std::vector<std::string> captured;
  std::unordered_set<std::string> seen;
  auto use = [&](const std::string& v) {
    if (!v.empty() && !defined.count(v) && seen.insert(v).second) captured.push_back(v);
  };
  for (const Node& n : nodes) {
    for (const std::string& in : n.inputs) use(in);
    for (const auto& [an, a] : n.attrs) {
      if (a.g)
        for (const std::string& c : a.g->captured_names()) use(c);
      for (const auto& g : a.graphs)
        for (const std::string& c : g->captured_names()) use(c);
    }
  }
  for (const std::string& o : outputs) use(o);
  return captured;
}

int64_t Model::opset(const std::string& domain_name) const {
  const std::string d = domain_name == "ai.onnx" ? "" : domain_name;
  auto it = opsets.find(d);
  return it == opsets.end() ? 0 : it->second;
}

}  // namespace qforge::ir
