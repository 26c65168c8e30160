// Session: a model made ready to run. The plan is computed once: nodes in
// order, each node's kernel, which values die after which node (their
// buffers are reused by later nodes within a run), and each node's prepared
// state (prepacked weights). run() only reads the Session, so several
// threads may call it at once.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qforge/ir.h"
#include "qforge/tensor.h"

namespace qforge {

class ThreadPool;

struct SessionOptions {
  // Threads for kernels: 0 uses the process-wide pool (QFORGE_NUM_THREADS,
  // else one per core); N > 0 gives this Session its own pool of N threads.
  int threads = 0;
  // Refuse to allocate a single tensor larger than this (absurd shapes).
  int64_t max_tensor_bytes = int64_t{16} << 30;
  // Run the graph passes (qforge/passes.h: fold constants and
  // BatchNormalization, fuse Conv/Gemm with Relu/Clip) before planning.
  // model() then returns the optimized graph.
  bool optimize = true;
  // With optimize: run chains of quantized convolutions channels-last
  // (passes::qconv_channels_last), whose values inside a chain are then
  // renamed ("_nhwc"), not observable under their own names.
  bool channels_last = true;
};

struct NodeTime {
  std::string node;
  std::string op_type;
  double ms = 0;
};
struct RunProfile {
  std::vector<NodeTime> nodes;  // in execution order
  double total_ms = 0;
};

struct IoInfo {
  std::string name;
  ir::ValueInfo info;
};

class Session {
 public:
  explicit Session(ir::Model model, SessionOptions options = {});
  explicit Session(const std::string& model_path, SessionOptions options = {});
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
  // Runs the graph on the named inputs; returns the graph's outputs in
  // order. Inputs are checked against the model's declared types and shapes
  // (Error naming the input on a mismatch). With `profile`, each node's time
  // is recorded.
  std::vector<Tensor> run(const NamedTensors& inputs, RunProfile* profile = nullptr) const;

  // Called with each input of the main graph and then, in execution order,
  // each value a node of the main graph produces (not values inside
  // subgraphs), while it is alive: a calibrator sees every activation
  // without the run keeping them all.
  using ValueTap = std::function<void(const std::string& name, const Tensor& value)>;
  std::vector<Tensor> run(const NamedTensors& inputs, RunProfile* profile, const ValueTap& tap) const;

  const std::vector<IoInfo>& inputs() const;
  const std::vector<IoInfo>& outputs() const;
  const ir::Model& model() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qforge
