// Operators: each one is an OpDef in a registry, found by (domain, op_type).
// An OpDef has up to four parts:
//   infer    types and shapes of the outputs from those of the inputs
//            (symbolic dimensions allowed), for import, inspect and passes;
//   check    why a node can't run here ("" if it can), e.g. an unsupported
//            attribute value or input type, for `qforge inspect`;
//   prepare  work done once per Session (prepacked weights), optional;
//   run      the kernel: reads inputs, allocates and writes outputs.
// Semantics follow the ONNX operator specification of the model's opset.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qforge/ir.h"
#include "qforge/tensor.h"

namespace qforge {
class ThreadPool;
}

namespace qforge::ops {

// The domain of qforge's own operators (version 1), for what neither ONNX
// nor ONNX Runtime's com.microsoft contrib ops have: DynamicQuantizeGRU.
// Models that use it run in qforge only.
inline constexpr const char* kQforgeDomain = "ai.qforge";

// An attribute that passes::fuse_transpose_matmul gives a matrix product
// (DynamicQuantizeMatMul, MatMulIntegerToFloat) whose output columns are
// attention's q, k and v: the parts' boundaries [0, c1, ..., N]. The op
// then splits its columns by heads (kernels::QGemmArgs::col_parts) where
// the batch is smaller than the threads. It only places work: no value changes.
inline constexpr const char* kColPartsAttr = "qforge_col_parts";

// What an op's infer function sees. Inputs that are constants (initializers,
// Constant nodes) also have their values.
class InferContext {
 public:
  InferContext(const ir::Node& node, int64_t opset, std::vector<const ir::ValueInfo*> in,
               std::vector<const Tensor*> constants, std::vector<const ir::Graph*> outer = {});

  const ir::Node& node() const { return node_; }
  int64_t opset() const { return opset_; }
  int num_inputs() const { return static_cast<int>(in_.size()); }
  bool has_input(int i) const { return i < num_inputs() && in_[static_cast<size_t>(i)] != nullptr; }
  // Throws Error naming the node if input i is absent.
  const ir::ValueInfo& input(int i) const;
  const Tensor* constant(int i) const;  // nullptr if not a known constant
  int num_outputs() const { return static_cast<int>(out_.size()); }
  ir::ValueInfo& output(int i);
  std::vector<ir::ValueInfo>& outputs() { return out_; }
  // A new symbolic dimension for a size only known at run time.
  ir::Dim fresh_dim();

 private:
  const ir::Node& node_;
  int64_t opset_;
  std::vector<const ir::ValueInfo*> in_;
  std::vector<const Tensor*> constants_;
  std::vector<ir::ValueInfo> out_;
};

// What prepare sees: the node and the values of its constant inputs.
struct PrepareContext {
  const ir::Node& node;
  int64_t opset;
  std::vector<const Tensor*> constants;  // per input; nullptr if not constant
  ThreadPool* pool;
};

// What a kernel sees when it runs.
class OpContext {
 public:
  OpContext(const ir::Node& node, int64_t opset, std::vector<const Tensor*> inputs,
            const void* state, ThreadPool* pool)
      : OpContext(node, opset, std::move(inputs), {}, state, pool) {}
  // The same with a vector whose capacity the outputs reuse (its contents
  // are dropped): an executor hands the same two vectors to every node.
  OpContext(const ir::Node& node, int64_t opset, std::vector<const Tensor*> inputs,
            std::vector<Tensor> output_storage, const void* state, ThreadPool* pool)
      : node_(node), opset_(opset), inputs_(std::move(inputs)), outputs_(std::move(output_storage)),
        state_(state), pool_(pool) {
    outputs_.clear();
    outputs_.resize(node.outputs.size());
  }
  virtual ~OpContext() = default;
  // Moves the input and output vectors out (for the next node's context);
  // this context is done with after it.
  void release_vectors(std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs) {
    inputs = std::move(inputs_);
    outputs = std::move(outputs_);
  }

  const ir::Node& node() const { return node_; }
  int64_t opset() const { return opset_; }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  bool has_input(int i) const { return i < num_inputs() && inputs_[static_cast<size_t>(i)] != nullptr; }
  // Throws Error naming the node if input i is absent.
  const Tensor& input(int i) const;
  int num_outputs() const { return static_cast<int>(outputs_.size()); }
  // False for an optional output the graph does not use.
  bool wants_output(int i) const;
  // Allocates output i (contents unspecified: the kernel writes every element).
  Tensor& output(int i, DType dtype, const Shape& shape);
  // Sets output i to an existing tensor (a view of an input, a subgraph's result).
  void set_output(int i, Tensor t);
  std::vector<Tensor>& outputs() { return outputs_; }
  const void* state() const { return state_; }
  template <typename T> const T& state_as() const { return *static_cast<const T*>(state_); }
  ThreadPool* pool() const { return pool_; }
  // Runs a subgraph attribute of this node (If, Loop, Scan) on the given
  // inputs, with this node's scope visible to it; returns its outputs.
  virtual std::vector<Tensor> run_subgraph(const std::string& attr, const std::vector<Tensor>& inputs);

 protected:
  virtual Tensor allocate(DType dtype, const Shape& shape);

 private:
  const ir::Node& node_;
  int64_t opset_;
  std::vector<const Tensor*> inputs_;
  std::vector<Tensor> outputs_;
  const void* state_;
  ThreadPool* pool_;
};

struct OpDef {
  std::string domain;  // "" for the default domain
  std::string op_type;
  int64_t min_opset = 1;   // the domain opsets this definition covers
  int64_t max_opset = 21;
  std::function<void(InferContext&)> infer;
  std::function<std::string(const InferContext&)> check;  // optional; "" = can run
  std::function<std::shared_ptr<const void>(const PrepareContext&)> prepare;  // optional
  std::function<void(OpContext&)> run;
};

class OpRegistry {
 public:
  void add(OpDef def);
  // The definition for this op at this opset of its domain, or nullptr.
  const OpDef* find(const std::string& domain, const std::string& op_type, int64_t opset) const;
  // Every registered (domain, op_type), sorted, for docs and `doctor`.
  std::vector<std::string> names() const;
  // The registry with all of qforge's operators.
  static const OpRegistry& global();

 private:
  std::vector<OpDef> defs_;
};

// Why qforge can't run this node in this model ("" if it can): an unknown
// op, an opset outside the implemented range, or the op's own check.
std::string unsupported_reason(const ir::Node& node, int64_t opset, const InferContext* ctx = nullptr);

}  // namespace qforge::ops
