// The float runtime's executor. A GraphPlan is built once per graph (and per
// subgraph): every value gets a slot, every node a Step with its kernel,
// prepared state and the slots that die after it. A run fills a Frame of
// slots; dead intermediate buffers go back to a per-run pool and are reused
// by later nodes of a fitting size.
#include "qforge/session.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "qforge/op.h"
#include "qforge/passes.h"
#include "qforge/thread_pool.h"

namespace qforge {
namespace {

struct GraphPlan;

struct Step {
  const ir::Node* node = nullptr;
  const ops::OpDef* def = nullptr;
  int64_t opset = 0;
  std::vector<int> in;   // slot per input, -1 if absent
  std::vector<int> out;  // slot per output, -1 if unused
  std::vector<int> dead_after;  // slots whose last reader is this step
  std::shared_ptr<const void> state;
  std::map<std::string, std::unique_ptr<GraphPlan>> subplans;  // by attribute name
  // Index of this step's entry in a run's StepMemo list, or -1: a step of
  // the main graph computing shapes (see shape_pure), whose outputs a run
  // reuses while its inputs are those of the last run.
  int memo = -1;
};

struct GraphPlan {
  const ir::Graph* graph = nullptr;
  std::unordered_map<std::string, int> slot_of;
  int num_slots = 0;
  std::vector<std::pair<int, const Tensor*>> constants;
  // By slot: the initializer a slot holds, else nullptr. A run reads
  // constants through these, without copying them into its frame (a model
  // has several per node, each copy a shape allocation per run); a value
  // the frame holds (a graph input of the same name) comes first.
  std::vector<const Tensor*> const_at;
  std::vector<int> inputs, outputs;
  std::vector<std::pair<int, std::string>> captured;  // filled from enclosing frames
  std::vector<Step> steps;
  int num_memos = 0;  // steps with a memo (main graph only)

  int slot(const std::string& name) {
    auto [it, fresh] = slot_of.emplace(name, num_slots);
    if (fresh) ++num_slots;
    return it->second;
  }
};

// Why each node can't run, all at once, so the user sees the whole list.
void collect_unsupported(const ir::Graph& g, const ir::Model& m, std::vector<std::string>& out) {
  for (const ir::Node& n : g.nodes) {
    const std::string why = ops::unsupported_reason(n, m.opset(n.domain));
    if (!why.empty()) out.push_back(n.describe() + ": " + why);
    for (const auto& [an, a] : n.attrs) {
      if (a.g) collect_unsupported(*a.g, m, out);
      for (const auto& sg : a.graphs) collect_unsupported(*sg, m, out);
    }
  }
}

// Ops of the default domain whose outputs depend on nothing but their
// inputs and attributes, the arithmetic of a graph's shape computations
// (Shape -> Gather -> Unsqueeze -> Concat -> Reshape's shape input).
bool pure_op(const ir::Node& n) {
  static const std::unordered_set<std::string> ops = {
      "Shape", "Size", "Constant", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Identity",
      "Reshape", "Slice", "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Floor", "Ceil", "Sqrt",
      "Min", "Max", "Equal", "Less", "Greater", "Not", "And", "Or", "Where", "Range", "ReduceProd"};
  return (n.domain.empty() || n.domain == "ai.onnx") && ops.count(n.op_type) != 0;
}

// Shape and Size read only their input's shape, not its values.
bool reads_only_shape(const ir::Node& n) { return n.op_type == "Shape" || n.op_type == "Size"; }

// A node of the main graph that computes from shapes: a pure_op whose inputs
// are constants or outputs of such nodes, or Shape / Size (which read only
// their input's shape), and none of whose outputs leaves the graph (the
// caller gets a tensor the memo doesn't share). Marked in `pure` by output name.
bool shape_pure(const ir::Node& n, const ir::Graph& g, const std::unordered_set<std::string>& pure) {
  if (!pure_op(n)) return false;
  for (const auto& [an, a] : n.attrs)
    if (a.g || !a.graphs.empty()) return false;
  for (const std::string& o : n.outputs)
    if (std::find(g.outputs.begin(), g.outputs.end(), o) != g.outputs.end()) return false;
  if (reads_only_shape(n)) return true;
  for (const std::string& in : n.inputs)
    if (!in.empty() && !pure.count(in) && !g.initializers.count(in)) return false;
  return true;
}

std::unique_ptr<GraphPlan> build_plan(const ir::Graph& g, const ir::Model& m, ThreadPool* pool,
                                      bool main_graph = false) {
  auto plan = std::make_unique<GraphPlan>();
  plan->graph = &g;
  for (const auto& [name, t] : g.initializers) plan->constants.emplace_back(plan->slot(name), &t);
  for (const std::string& in : g.inputs) plan->inputs.push_back(plan->slot(in));
  std::unordered_set<std::string> defined(g.inputs.begin(), g.inputs.end());
  for (const auto& [name, t] : g.initializers) defined.insert(name);
  for (const ir::Node& n : g.nodes)
    for (const std::string& o : n.outputs) defined.insert(o);
  for (const std::string& c : g.captured_names()) plan->captured.emplace_back(plan->slot(c), c);

  std::vector<int> last_use;  // by slot: index of the last step reading it
  auto touch = [&](int s, int step) {
    if (static_cast<size_t>(s) >= last_use.size()) last_use.resize(static_cast<size_t>(s) + 1, -1);
    last_use[static_cast<size_t>(s)] = step;
  };
  std::unordered_set<std::string> pure;  // outputs of shape_pure nodes
  for (const ir::Node& n : g.nodes) {
    Step st;
    st.node = &n;
    if (main_graph && shape_pure(n, g, pure)) {
      st.memo = plan->num_memos++;
      for (const std::string& o : n.outputs) pure.insert(o);
    }
    st.opset = m.opset(n.domain);
    st.def = ops::OpRegistry::global().find(n.domain, n.op_type, st.opset);
    const int idx = static_cast<int>(plan->steps.size());
    std::vector<const Tensor*> consts;
    for (const std::string& in : n.inputs) {
      if (in.empty()) {
        st.in.push_back(-1);
        consts.push_back(nullptr);
        continue;
      }
      const int s = plan->slot(in);
      st.in.push_back(s);
      touch(s, idx);
      consts.push_back(g.initializer(in));
    }
    for (const auto& [an, a] : n.attrs) {
      if (a.g) st.subplans[an] = build_plan(*a.g, m, pool);
      for (const auto& sg : a.graphs) (void)sg;  // GRAPHS attributes: no op here uses them
      if (a.g)
        for (const std::string& c : a.g->captured_names())
          if (defined.count(c)) touch(plan->slot(c), idx);
    }
    for (const std::string& o : n.outputs) {
      const int s = o.empty() ? -1 : plan->slot(o);
      st.out.push_back(s);
      if (s >= 0) touch(s, idx);  // an output nobody reads dies right away
    }
    if (st.def && st.def->prepare)
      st.state = st.def->prepare(ops::PrepareContext{n, st.opset, consts, pool});
    plan->steps.push_back(std::move(st));
  }
  for (const std::string& o : g.outputs) plan->outputs.push_back(plan->slot(o));
  plan->const_at.assign(static_cast<size_t>(plan->num_slots), nullptr);
  for (const auto& [s, t] : plan->constants) plan->const_at[static_cast<size_t>(s)] = t;

  // Values that die: node outputs, neither graph outputs nor constants.
  std::unordered_set<int> keep(plan->outputs.begin(), plan->outputs.end());
  for (const auto& [s, t] : plan->constants) keep.insert(s);
  for (int s : plan->inputs) keep.insert(s);
  for (const auto& [s, n] : plan->captured) keep.insert(s);
  for (size_t s = 0; s < last_use.size(); ++s)
    if (last_use[s] >= 0 && !keep.count(static_cast<int>(s)))
      plan->steps[static_cast<size_t>(last_use[s])].dead_after.push_back(static_cast<int>(s));
  return plan;
}

// Buffers of dead values, reused within a run and kept for the next one (a
// Session keeps one pool per concurrent run), so that a warm run takes its
// intermediate buffers from memory already touched instead of from fresh
// pages the kernel faults in one by one.
class BufferPool {
 public:
  std::shared_ptr<Storage> get(size_t bytes) {
    auto it = std::lower_bound(free_.begin(), free_.end(), bytes, by_size);
    if (it != free_.end() && it->first <= 2 * bytes + 4096) {
      auto s = std::move(it->second);
      free_.erase(it);
      return s;
    }
    auto s = Storage::allocate_uninitialized(bytes);
    mine_.insert(s.get());
    return s;
  }
  void release(Tensor& t) {
    const auto& s = t.storage();
    if (s && s.use_count() == 1 && mine_.count(s.get())) {
      const size_t bytes = s->size();
      free_.emplace(std::upper_bound(free_.begin(), free_.end(), bytes,
                                     [](size_t b, const Entry& e) { return b < e.first; }),
                    bytes, s);
    }
    t = Tensor();
  }
  // After a run: forget the buffers given away (the outputs), whose
  // addresses may come back as someone else's storage.
  void end_run() {
    mine_.clear();
    for (const auto& [bytes, s] : free_) mine_.insert(s.get());
  }

 private:
  using Entry = std::pair<size_t, std::shared_ptr<Storage>>;
  static bool by_size(const Entry& e, size_t b) { return e.first < b; }
  // Sorted by size (a vector: its capacity stays from run to run, where a
  // multimap allocated a node per release).
  std::vector<Entry> free_;
  std::unordered_set<const Storage*> mine_;
};

// A memo step's (Step::memo) inputs and outputs from the last run that
// kept them: each input's type, shape and bytes (Shape and Size: type and
// shape only). A run whose inputs match takes the outputs instead of running
// the step. Only small values are kept (kMemoBytes per tensor): the memo
// is for the few int64s of a shape computation.
class StepMemo {
 public:
  static constexpr size_t kMemoBytes = 4096;

  bool holds(const Step& st, const std::vector<const Tensor*>& in) const {
    if (!valid_ || in.size() != keys_.size()) return false;
    const bool shape_only = reads_only_shape(*st.node);
    for (size_t i = 0; i < in.size(); ++i) {
      const Key& k = keys_[i];
      const Tensor* t = in[i];
      if ((t != nullptr) != k.present) return false;
      if (t == nullptr) continue;
      if (t->dtype() != k.dtype || t->shape() != k.shape) return false;
      if (!shape_only && (t->nbytes() != k.bytes.size() || std::memcmp(t->raw(), k.bytes.data(), k.bytes.size()) != 0))
        return false;
    }
    return true;
  }
  const std::vector<Tensor>& outputs() const { return out_; }

  // Keeps this run's inputs and outputs, where all are small.
  void keep(const Step& st, const std::vector<const Tensor*>& in, const std::vector<Tensor>& out) {
    valid_ = false;
    const bool shape_only = reads_only_shape(*st.node);
    for (const Tensor* t : in)
      if (t != nullptr && !shape_only && t->nbytes() > kMemoBytes) return;
    for (const Tensor& t : out)
      if (t.nbytes() > kMemoBytes) return;
    keys_.resize(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      Key& k = keys_[i];
      k.present = in[i] != nullptr;
      k.bytes.clear();
      if (!k.present) continue;
      k.dtype = in[i]->dtype();
      k.shape = in[i]->shape();
      if (!shape_only) {
        const auto* b = static_cast<const unsigned char*>(in[i]->raw());
        k.bytes.assign(b, b + in[i]->nbytes());
      }
    }
    out_ = out;
    valid_ = true;
  }

 private:
  struct Key {
    bool present = false;
    DType dtype = DType::kF32;
    Shape shape;
    std::vector<unsigned char> bytes;
  };
  bool valid_ = false;
  std::vector<Key> keys_;
  std::vector<Tensor> out_;
};

// What a run keeps for the next one: its buffers and its memos.
struct RunCache {
  BufferPool buffers;
  std::vector<StepMemo> memos;
};

struct RunState {
  BufferPool* pool = nullptr;
  std::vector<StepMemo>* memos = nullptr;  // by Step::memo, main graph only
  RunProfile* profile = nullptr;
  const Session::ValueTap* tap = nullptr;  // main graph only
  ThreadPool* threads = nullptr;
  int64_t max_bytes = 0;
};

struct Frame {
  const GraphPlan* plan;
  const Frame* parent;
  std::vector<Tensor> slots;

  // The value in slot s: the frame's, else the plan's constant, else nullptr.
  const Tensor* value(int s) const {
    const Tensor& t = slots[static_cast<size_t>(s)];
    return !t.empty() ? &t : plan->const_at[static_cast<size_t>(s)];
  }

  const Tensor* lookup(const std::string& name) const {
    for (const Frame* f = this; f; f = f->parent) {
      auto it = f->plan->slot_of.find(name);
      if (it == f->plan->slot_of.end()) continue;
      if (const Tensor* t = f->value(it->second)) return t;
    }
    return nullptr;
  }
};

std::vector<Tensor> execute(const GraphPlan& plan, const Frame* parent,
                            const std::vector<Tensor>& inputs, RunState& rs);

class StepContext : public ops::OpContext {
 public:
  StepContext(const Step& st, std::vector<const Tensor*> in, std::vector<Tensor> out,
              const Frame& frame, RunState& rs)
      : OpContext(*st.node, st.opset, std::move(in), std::move(out), st.state.get(), rs.threads),
        step_(st), frame_(frame), rs_(rs) {}

  std::vector<Tensor> run_subgraph(const std::string& attr, const std::vector<Tensor>& inputs) override {
    auto it = step_.subplans.find(attr);
    if (!(it != step_.subplans.end()))
      throw Error(Errc::kNotFound, node().describe(), "has no subgraph attribute '" + attr + "'");
    return execute(*it->second, &frame_, inputs, rs_);
  }

 protected:
  Tensor allocate(DType dtype, const Shape& shape) override {
    int64_t n = 1;
    for (int64_t d : shape) {
      if (!(d >= 0))
        throw Error(Errc::kShapeMismatch, node().describe(),
                    "computed an output of shape " + shape_str(shape), "dimensions >= 0");
      if (d != 0 && n > std::numeric_limits<int64_t>::max() / 8 / d) n = -1;
      if (n < 0) break;
      n *= d;
    }
    const int64_t bytes = n < 0 ? -1 : storage_bytes(dtype, n);
    if (!(bytes >= 0 && bytes <= rs_.max_bytes))
      throw Error(
          Errc::kShapeMismatch, node().describe(),
          "would allocate an output of " + std::string(dtype_name(dtype)) + shape_str(shape),
          "at most " + std::to_string(rs_.max_bytes) + " bytes (SessionOptions::max_tensor_bytes)");
    return Tensor::view(dtype, shape, rs_.pool->get(static_cast<size_t>(bytes)));
  }

 private:
  const Step& step_;
  const Frame& frame_;
  RunState& rs_;
};

std::vector<Tensor> execute(const GraphPlan& plan, const Frame* parent,
                            const std::vector<Tensor>& inputs, RunState& rs) {
  Frame f{&plan, parent, std::vector<Tensor>(static_cast<size_t>(plan.num_slots))};
  for (const auto& [s, name] : plan.captured) {
    const Tensor* t = parent ? parent->lookup(name) : nullptr;
    if (!(t != nullptr))
      throw Error(Errc::kNotFound, "graph '" + plan.graph->name + "'",
                  "uses '" + name + "' from its enclosing scope, which has no such value");
    f.slots[static_cast<size_t>(s)] = *t;
  }
  // A subgraph may take fewer inputs than it declares (Loop's optional ones).
  for (size_t i = 0; i < plan.inputs.size() && i < inputs.size(); ++i)
    f.slots[static_cast<size_t>(plan.inputs[i])] = inputs[i];
  const Session::ValueTap* tap = parent ? nullptr : rs.tap;
  if (tap)
    for (size_t i = 0; i < plan.inputs.size() && i < inputs.size(); ++i)
      (*tap)(plan.graph->inputs[i], inputs[i]);

  // One input and one output vector for every step (their capacity reused).
  std::vector<const Tensor*> in;
  std::vector<Tensor> outs;
  for (const Step& st : plan.steps) {
    in.clear();
    for (size_t i = 0; i < st.in.size(); ++i) {
      const int s = st.in[i];
      if (s < 0) {
        in.push_back(nullptr);
        continue;
      }
      const Tensor* t = f.value(s);
      if (t == nullptr)
        throw Error(Errc::kNotFound, st.node->describe(),
                    "reads '" + st.node->inputs[i] + "', which has no value at this point");
      in.push_back(t);
    }
    // The clock is read only for a profile: a read costs 27 ns on the 2-core
    // VM, 4 us a run of the Transformer's 148 steps at batch 1.
    const auto t0 = rs.profile ? std::chrono::steady_clock::now()
                               : std::chrono::steady_clock::time_point{};
    StepMemo* memo = st.memo >= 0 && parent == nullptr && rs.memos != nullptr
                         ? &(*rs.memos)[static_cast<size_t>(st.memo)]
                         : nullptr;
    if (memo != nullptr && memo->holds(st, in)) {
      outs = memo->outputs();
    } else {
      StepContext ctx(st, std::move(in), std::move(outs), f, rs);
      st.def->run(ctx);
      ctx.release_vectors(in, outs);
      for (size_t i = 0; i < st.out.size(); ++i)
        if (!(st.out[i] < 0 || !outs[i].empty()))
          throw Error(
              Errc::kInternal, st.node->describe(),
              "did not produce output " + std::to_string(i) + " ('" + st.node->outputs[i] + "')");
      if (memo != nullptr) memo->keep(st, in, outs);
    }
    if (rs.profile) {
      const auto t1 = std::chrono::steady_clock::now();
      rs.profile->nodes.push_back(
          {st.node->name, st.node->op_type, std::chrono::duration<double, std::milli>(t1 - t0).count()});
    }
    for (size_t i = 0; i < st.out.size(); ++i) {
      const int s = st.out[i];
      if (s < 0) continue;
      f.slots[static_cast<size_t>(s)] = std::move(outs[i]);
      if (tap) (*tap)(st.node->outputs[i], f.slots[static_cast<size_t>(s)]);
    }
    outs.clear();  // an optional output nobody reads goes now, as with the context
    for (int s : st.dead_after) rs.pool->release(f.slots[static_cast<size_t>(s)]);
  }
  std::vector<Tensor> out;
  for (size_t i = 0; i < plan.outputs.size(); ++i) {
    const Tensor* t = f.value(plan.outputs[i]);
    if (t == nullptr) {
      const Tensor* outer = parent ? parent->lookup(plan.graph->outputs[i]) : nullptr;
      if (!(outer != nullptr))
        throw Error(Errc::kNotFound, "graph '" + plan.graph->name + "'",
                    "has no value for output '" + plan.graph->outputs[i] + "'");
      out.push_back(*outer);
    } else {
      out.push_back(*t);
    }
  }
  return out;
}

}  // namespace

struct Session::Impl {
  std::unique_ptr<ir::Model> model;
  SessionOptions options;
  std::unique_ptr<ThreadPool> own_pool;
  ThreadPool* pool = nullptr;
  std::unique_ptr<GraphPlan> plan;
  std::vector<IoInfo> inputs, outputs;
  std::mutex caches_mu;  // caches of finished runs, one taken per run
  std::vector<std::unique_ptr<RunCache>> caches;
};

Session::Session(ir::Model model, SessionOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->model = std::make_unique<ir::Model>(std::move(model));
  impl_->options = options;
  if (options.threads > 0) {
    impl_->own_pool = std::make_unique<ThreadPool>(options.threads);
    impl_->pool = impl_->own_pool.get();
  } else {
    impl_->pool = &default_thread_pool();
  }
  if (options.optimize) passes::optimize(*impl_->model, options.channels_last);
  const ir::Model& m = *impl_->model;
  std::vector<std::string> bad;
  collect_unsupported(m.graph, m, bad);
  if (!bad.empty()) {
    std::string list;
    for (size_t i = 0; i < bad.size() && i < 8; ++i) list += (i ? "; " : "") + bad[i];
    if (bad.size() > 8) list += "; and " + std::to_string(bad.size() - 8) + " more";
    throw Error(Errc::kUnsupported, "model '" + m.graph.name + "'",
                "has " + std::to_string(bad.size()) + " node(s) qforge can't run: " + list);
  }
  for (const auto* list : {&m.graph.inputs, &m.graph.outputs})
    for (const std::string& n : *list) {
      const ir::ValueInfo* vi = m.graph.info(n);
      if (!(!vi || vi->foreign_type.empty()))
        throw Error(Errc::kUnsupported, "model '" + m.graph.name + "'",
                    "has " + std::string(list == &m.graph.inputs ? "input '" : "output '") + n +
                        "' of a type qforge can't run (a sequence, map, optional or string tensor)",
                    "numeric tensors");
    }
  impl_->plan = build_plan(m.graph, m, impl_->pool, true);
  for (const std::string& n : m.graph.inputs)
    impl_->inputs.push_back({n, m.graph.info(n) ? *m.graph.info(n) : ir::ValueInfo{}});
  for (const std::string& n : m.graph.outputs)
    impl_->outputs.push_back({n, m.graph.info(n) ? *m.graph.info(n) : ir::ValueInfo{}});
}

Session::Session(const std::string& model_path, SessionOptions options)
    : Session(ir::load_model(model_path), options) {}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

const std::vector<IoInfo>& Session::inputs() const { return impl_->inputs; }
const std::vector<IoInfo>& Session::outputs() const { return impl_->outputs; }
const ir::Model& Session::model() const { return *impl_->model; }

std::vector<Tensor> Session::run(const NamedTensors& inputs, RunProfile* profile) const {
  return run(inputs, profile, ValueTap{});
}

std::vector<Tensor> Session::run(const NamedTensors& inputs, RunProfile* profile,
                                 const ValueTap& tap) const {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Tensor> ordered(impl_->inputs.size());
  std::unordered_map<std::string, int64_t> symbols;  // symbolic dim -> size bound in this run
  for (const auto& [name, t] : inputs) {
    auto it = std::find_if(impl_->inputs.begin(), impl_->inputs.end(),
                           [&](const IoInfo& io) { return io.name == name; });
    if (it == impl_->inputs.end()) {
      std::string names;
      for (const IoInfo& io : impl_->inputs) names += (names.empty() ? "" : ", ") + io.name;
      throw Error(Errc::kNotFound, "input '" + name + "'", "is not an input of the model",
                  "one of: " + names);
    }
    const ir::ValueInfo& vi = it->info;
    const std::string subject = "input '" + name + "'";
    if (!(!t.empty() || vi.shape))
      throw Error(Errc::kInvalidArgument, subject, "is an empty tensor handle");
    if (vi.dtype)
      if (!(t.dtype() == *vi.dtype))
        throw Error(Errc::kTypeMismatch, subject, "is " + std::string(dtype_name(t.dtype())),
                    std::string(dtype_name(*vi.dtype)) + " as the model declares");
    if (vi.shape) {
      const ir::SymShape& want = *vi.shape;
      bool ok = want.size() == t.shape().size();
      for (size_t d = 0; ok && d < want.size(); ++d) {
        if (want[d].known()) ok = want[d].size == t.shape()[d];
        else if (!want[d].symbol.empty()) {
          auto [sit, fresh] = symbols.emplace(want[d].symbol, t.shape()[d]);
          ok = fresh || sit->second == t.shape()[d];
        }
      }
      if (!(ok))
        throw Error(Errc::kShapeMismatch, subject, "has shape " + shape_str(t.shape()),
                    ir::sym_shape_str(want) + " as the model declares");
    }
    ordered[static_cast<size_t>(it - impl_->inputs.begin())] = t;
  }
  for (size_t i = 0; i < ordered.size(); ++i)
    if (!(!ordered[i].empty()))
      throw Error(Errc::kNotFound, "input '" + impl_->inputs[i].name + "'", "was not given",
                  "a value for every model input");

  std::unique_ptr<RunCache> cache;
  {
    std::lock_guard<std::mutex> lock(impl_->caches_mu);
    if (!impl_->caches.empty()) {
      cache = std::move(impl_->caches.back());
      impl_->caches.pop_back();
    }
  }
  if (!cache) cache = std::make_unique<RunCache>();
  cache->memos.resize(static_cast<size_t>(impl_->plan->num_memos));
  RunState rs;
  rs.pool = &cache->buffers;
  rs.memos = &cache->memos;
  rs.profile = profile;
  rs.tap = tap ? &tap : nullptr;
  rs.threads = impl_->pool;
  rs.max_bytes = impl_->options.max_tensor_bytes;
  if (profile) *profile = RunProfile{};
  std::vector<Tensor> out = execute(*impl_->plan, nullptr, ordered, rs);
  cache->buffers.end_run();
  {
    std::lock_guard<std::mutex> lock(impl_->caches_mu);
    impl_->caches.push_back(std::move(cache));
  }
  if (profile)
    profile->total_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace qforge
