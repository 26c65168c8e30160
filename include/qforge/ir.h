// The intermediate representation: a Model holds a Graph of Nodes connected
// by named values, as in ONNX. Edges are names (a node's inputs and outputs
// are value names; "" marks an absent optional input), so passes rewrite a
// graph by editing vectors and strings, and rebuild any index they need.
//
// Types and shapes of values live in Graph::values (ValueInfo). A dimension
// is a known size, a symbol ("batch"), or unknown; shape inference
// (infer_shapes) fills in what it can from the ops' rules.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "qforge/tensor.h"

namespace qforge::ir {

struct Graph;

// One dimension: a size >= 0, or a symbol, or unknown (size -1, no symbol).
struct Dim {
  int64_t size = -1;
  std::string symbol;

  Dim() = default;
  Dim(int64_t s) : size(s) {}  // NOLINT: sizes convert implicitly
  static Dim sym(std::string name) { Dim d; d.symbol = std::move(name); return d; }
  bool known() const noexcept { return size >= 0; }
  bool operator==(const Dim& o) const { return size == o.size && symbol == o.symbol; }
  std::string str() const;  // "3", "batch" or "?"
};
using SymShape = std::vector<Dim>;
std::string sym_shape_str(const SymShape& s);  // "[batch, 3, ?]"
SymShape to_sym(const Shape& s);
// The concrete shape, if every dimension is known.
std::optional<Shape> to_concrete(const SymShape& s);

// What is known about a value's type and shape.
struct ValueInfo {
  std::optional<DType> dtype;     // nullopt: unknown
  std::optional<SymShape> shape;  // nullopt: unknown rank
  // A type qforge can't represent (strings, sequences, optionals), kept as a
  // serialized onnx.TypeProto so that export writes it back unchanged.
  std::string foreign_type;
  std::string str() const;        // "f32[batch, 3]", "?"
};

struct Attribute {
  enum class Kind { kFloat, kInt, kString, kTensor, kGraph, kFloats, kInts, kStrings, kTensors, kGraphs };
  Kind kind = Kind::kInt;
  float f = 0;
  int64_t i = 0;
  std::string s;
  Tensor t;
  std::shared_ptr<Graph> g;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;
  std::vector<std::shared_ptr<Graph>> graphs;

  static Attribute of(float v) { Attribute a; a.kind = Kind::kFloat; a.f = v; return a; }
  static Attribute of(int64_t v) { Attribute a; a.kind = Kind::kInt; a.i = v; return a; }
  static Attribute of(std::string v) { Attribute a; a.kind = Kind::kString; a.s = std::move(v); return a; }
  static Attribute of(std::vector<int64_t> v) { Attribute a; a.kind = Kind::kInts; a.ints = std::move(v); return a; }
  static Attribute of(std::vector<float> v) { Attribute a; a.kind = Kind::kFloats; a.floats = std::move(v); return a; }
  static Attribute of(Tensor v) { Attribute a; a.kind = Kind::kTensor; a.t = std::move(v); return a; }
};
const char* attr_kind_name(Attribute::Kind k);

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" is the default ONNX domain ("ai.onnx")
  std::vector<std::string> inputs;   // "" for an absent optional input
  std::vector<std::string> outputs;  // "" for an unused optional output
  std::map<std::string, Attribute> attrs;
  std::string doc_string;

  // "node 'conv1' (Conv)": how errors name a node.
  std::string describe() const;

  bool has_attr(const std::string& a) const { return attrs.count(a) != 0; }
  // Typed attribute access with a default; a present attribute of the wrong
  // kind is an Error naming the node and the attribute.
  int64_t attr_int(const std::string& a, int64_t dflt) const;
  float attr_float(const std::string& a, float dflt) const;
  std::string attr_string(const std::string& a, const std::string& dflt) const;
  std::vector<int64_t> attr_ints(const std::string& a, std::vector<int64_t> dflt = {}) const;
  std::vector<float> attr_floats(const std::string& a, std::vector<float> dflt = {}) const;
  const Tensor* attr_tensor(const std::string& a) const;       // nullptr if absent
  const Graph* attr_graph(const std::string& a) const;         // nullptr if absent
  // Throws when the attribute is absent.
  const Attribute& attr(const std::string& a) const;

  int num_inputs() const { return static_cast<int>(inputs.size()); }
  bool has_input(int i) const { return i < num_inputs() && !inputs[static_cast<size_t>(i)].empty(); }
};

struct Graph {
  std::string name;
  std::vector<Node> nodes;             // in topological order after import
  std::vector<std::string> inputs;     // runtime inputs (not initializers)
  std::vector<std::string> outputs;
  std::map<std::string, Tensor> initializers;
  std::unordered_map<std::string, ValueInfo> values;  // types and shapes, by value name
  std::string doc_string;

  const ValueInfo* info(const std::string& v) const;
  const Tensor* initializer(const std::string& v) const;
  // Sorts nodes topologically (stable: keeps the existing order where it
  // can). Names produced by no node and not graph inputs or initializers are
  // taken from the outer scope (subgraphs), and listed in `outer` if given.
  // Throws Error naming a node on a cycle or on a value produced twice.
  void topo_sort();
  // Every value name used by this graph or its subgraphs that none of them
  // defines: what a subgraph captures from its enclosing graphs.
  std::vector<std::string> captured_names() const;
};

struct Model {
  int64_t ir_version = 8;
  std::map<std::string, int64_t> opsets{{"", 17}};  // domain -> version
  std::string producer_name = "qforge";
  std::string producer_version = QFORGE_VERSION;
  std::string domain;
  int64_t model_version = 0;
  std::string doc_string;
  std::vector<std::pair<std::string, std::string>> metadata;
  Graph graph;

  int64_t opset(const std::string& domain_name) const;  // 0 if not imported
};

struct LoadOptions {
  // Refuse tensors larger than this many bytes (corrupt or hostile files).
  int64_t max_tensor_bytes = int64_t{16} << 30;
  // Nesting limit for subgraphs (If/Loop bodies within bodies).
  int max_subgraph_depth = 32;
  // Run shape inference after import.
  bool infer_shapes = true;
};

// Loads an ONNX model file. External data is memory-mapped, not copied.
// Throws qforge::Error naming the file, node or tensor at fault.
Model load_model(const std::string& path, const LoadOptions& options = {});
// Parses a serialized ModelProto held in memory (no external data).
Model parse_model(const std::string& bytes, const std::string& subject = "model",
                  const LoadOptions& options = {});

struct SaveOptions {
  bool run_checker = true;  // the ONNX checker (for the opsets it knows)
  // The main graph's value_info (types and shapes of intermediate values).
  // Readers infer them again; without them a small model's file is smaller.
  bool value_info = true;
};
// Writes the model as ONNX, through a temporary file and a rename.
void save_model(const Model& model, const std::string& path, const SaveOptions& options = {});
// Serializes to a ModelProto byte string; the checker runs if asked.
std::string serialize_model(const Model& model, const SaveOptions& options = {});

// Fills Graph::values for every value the ops' rules can type, recursively
// for subgraphs. Refuses (Error naming the node) type mismatches, missing
// inputs and unsupported ops when `strict`; otherwise leaves them unknown.
void infer_shapes(Model& model, bool strict = false);

}  // namespace qforge::ir
