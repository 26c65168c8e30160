// Helpers shared by the graph passes: who reads each value, and removing
// nodes while keeping the order of the rest.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "qforge/ir.h"

namespace qforge::passes {

inline constexpr const char* kMicrosoft = "com.microsoft";
inline constexpr const char* kQforge = "ai.qforge";  // qforge's own ops (QLinearLookup)

// Who reads each value: node indices (a node that reads a value twice is
// listed twice), plus whether a graph output or a subgraph reads it.
struct Uses {
  std::unordered_map<std::string, std::vector<size_t>> readers;
  std::unordered_set<std::string> pinned;  // graph outputs and subgraph captures

  explicit Uses(const ir::Graph& g) {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const ir::Node& n = g.nodes[i];
      for (const std::string& in : n.inputs)
        if (!in.empty()) readers[in].push_back(i);
      for (const auto& [an, a] : n.attrs) {
        std::vector<const ir::Graph*> subs;
        if (a.g) subs.push_back(a.g.get());
        for (const auto& sg : a.graphs) subs.push_back(sg.get());
        for (const ir::Graph* sg : subs)
          for (const std::string& c : sg->captured_names()) pinned.insert(c);
      }
    }
    pinned.insert(g.outputs.begin(), g.outputs.end());
    // An initializer that is also a graph input can be overridden at run
    // time: it is not a constant.
    pinned.insert(g.inputs.begin(), g.inputs.end());
  }
  // The one node that reads v, if exactly one does and nothing else needs it.
  std::optional<size_t> sole_reader(const std::string& v) const {
    if (pinned.count(v)) return std::nullopt;
    auto it = readers.find(v);
    if (it == readers.end() || it->second.size() != 1) return std::nullopt;
    return it->second[0];
  }
};

// The index of the node that writes each value.
inline std::unordered_map<std::string, size_t> producers(const ir::Graph& g) {
  std::unordered_map<std::string, size_t> p;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const std::string& o : g.nodes[i].outputs) p[o] = i;
  return p;
}

// An ONNX-domain node of this op type.
inline bool is_op(const ir::Node& n, const char* op) { return n.domain.empty() && n.op_type == op; }

// The other input of a two-input node, given one of them; empty if `v` isn't one.
inline std::string other_input(const ir::Node& n, const std::string& v) {
  if (n.inputs.size() != 2) return {};
  if (n.inputs[0] == v) return n.inputs[1];
  if (n.inputs[1] == v) return n.inputs[0];
  return {};
}

// The value of a one-element f32 constant input, if `name` is one.
inline std::optional<float> f32_scalar(const ir::Graph& g, const Uses& uses, const std::string& name) {
  const Tensor* t = name.empty() || uses.pinned.count(name) ? nullptr : g.initializer(name);
  if (t == nullptr || t->dtype() != DType::kF32 || t->numel() != 1) return std::nullopt;
  return t->data<float>()[0];
}

// Removes the nodes marked dead, keeping the order of the rest.
inline void erase_nodes(ir::Graph& g, const std::vector<bool>& dead) {
  std::vector<ir::Node> kept;
  kept.reserve(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!dead[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

// The end of a pass that wrote `count` ai.qforge nodes in the places of the
// nodes it replaced: removes those marked dead and declares the domain.
inline int finish_qforge_fusion(ir::Model& model, const std::vector<bool>& dead, int count) {
  if (count == 0) return 0;
  erase_nodes(model.graph, dead);
  if (!model.opsets.count(kQforge)) model.opsets[kQforge] = 1;
  return count;
}

}  // namespace qforge::passes
