// compare_models(): per-tensor error of a quantized model against its float
// original; sensitivity_scan(): which layers cost the most when quantized.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "eval/eval_util.h"
#include "qforge/error.h"
#include "qforge/evaluate.h"
#include "qforge/quant.h"

namespace qforge {
namespace {

using eval_detail::seconds_since;

// Where an integer tensor of the quantized model stands for a float one: a
// DequantizeLinear with constant parameters reads it.
struct Dequantizer {
  std::string float_name;  // the DequantizeLinear's output
  const ir::Node* node;
};

// Running sums for one tensor over all batches.
struct ErrorSums {
  double xx = 0, qq = 0, xq = 0, nn = 0, max_abs = 0;
  int64_t count = 0;
  void add(const Tensor& x, const Tensor& q) {
    const float* a = x.data<float>();
    const float* b = q.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double u = a[i], v = b[i], d = u - v;
      xx += u * u, qq += v * v, xq += u * v, nn += d * d;
      max_abs = std::max(max_abs, std::fabs(d));
    }
    count += x.numel();
  }
};

QuantParams dq_params(const ir::Graph& g, const ir::Node& dq, const Tensor& q) {
  const Tensor* scale = g.initializer(dq.inputs[1]);
  const Tensor* zp = dq.has_input(2) ? g.initializer(dq.inputs[2]) : nullptr;
  return params_from_onnx(*scale, zp, q.shape(), static_cast<int>(dq.attr_int("axis", 1)),
                          dq.attr_int("block_size", 0), q.dtype());
}

}  // namespace

CompareResult compare_models(const std::string& float_path, const std::string& quant_path,
                             const std::string& data_path, const CompareOptions& opts) {
  const ir::Model fm = ir::load_model(float_path);
  const ir::Model qm = ir::load_model(quant_path);
  SessionOptions fo;
  fo.threads = opts.threads;
  fo.optimize = false;  // every float tensor keeps its name
  const Session fs(fm, fo);
  SessionOptions qo;
  qo.threads = opts.threads;  // optimized: the integer kernels qforge runs,
  qo.channels_last = false;   // with every quantized tensor under its name
  const Session qs(qm, qo);

  std::unordered_map<std::string, Dequantizer> dq;
  for (const ir::Node& n : qm.graph.nodes)
    if (n.op_type == "DequantizeLinear" && n.domain.empty() && n.num_inputs() >= 2 &&
        qm.graph.initializer(n.inputs[1]) && (!n.has_input(2) || qm.graph.initializer(n.inputs[2])))
      dq.emplace(n.inputs[0], Dequantizer{n.outputs[0], &n});
  std::unordered_map<std::string, const ir::Node*> producer;
  for (const ir::Node& n : fm.graph.nodes)
    for (const std::string& o : n.outputs) producer[o] = &n;

  std::shared_ptr<Dataset> data = open_dataset(data_path, opts.image);
  BatchOptions bo = opts.batch;
  bo.batch_size = eval_detail::batch_size_for(fs, bo.batch_size);
  eval_detail::Feeder ffeed(data, fs, bo), qfeed(data, qs, bo);

  CompareResult r;
  r.float_model = float_path;
  r.quant_model = quant_path;
  r.data = data->describe();
  std::map<std::string, ErrorSums> sums;
  std::unordered_map<std::string, Tensor> float_values;
  Session::NamedTensors inputs;
  Tensor label;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done = 0;
  const int64_t total = ffeed.num_batches();
  while (ffeed.next(inputs, label)) {
    float_values.clear();
    fs.run(inputs, nullptr, [&](const std::string& name, const Tensor& v) {
      if (v.dtype() == DType::kF32 && producer.count(name)) float_values[name] = v.clone();
    });
    r.samples += inputs.empty() || inputs[0].second.rank() == 0 ? 1 : inputs[0].second.dim(0);
    qfeed.next(inputs, label);
    std::set<std::string> seen;  // each float tensor once per batch
    auto compare = [&](const std::string& name, const Tensor& value) {
      auto it = float_values.find(name);
      if (it == float_values.end() || seen.count(name)) return;
      check(value.shape() == it->second.shape(), Errc::kShapeMismatch,
            "tensor '" + name + "' of model '" + quant_path + "'",
            "has shape " + shape_str(value.shape()) + ", the float model's has " + shape_str(it->second.shape()),
            "a quantized model of the same float model");
      seen.insert(name);
      sums[name].add(it->second, value);
    };
    qs.run(inputs, nullptr, [&](const std::string& name, const Tensor& v) {
      auto d = dq.find(name);
      if (d != dq.end() && dtype_is_integer(v.dtype())) {
        std::string fname = d->second.float_name;
        const std::string suffix = "_dequantized";  // a quantized graph input
        if (!float_values.count(fname) && fname.size() > suffix.size() &&
            fname.compare(fname.size() - suffix.size(), suffix.size(), suffix) == 0)
          fname.resize(fname.size() - suffix.size());
        compare(fname, dequantize(v, dq_params(qm.graph, *d->second.node, v)));
      } else if (v.dtype() == DType::kF32) {
        compare(name, v);
      }
    });
    if (opts.progress) opts.progress(++done, total, seconds_since(t0));
  }
  check(r.samples > 0, Errc::kNotFound, data->describe(), "holds no samples", "at least one");
  const std::set<std::string> outputs(fm.graph.outputs.begin(), fm.graph.outputs.end());
  for (const auto& [name, s] : sums) {
    TensorError e;
    e.tensor = name;
    const ir::Node* p = producer.at(name);
    e.node = p->name;
    e.op_type = p->op_type;
    e.sqnr_db = s.nn == 0 ? std::numeric_limits<double>::infinity()
                          : s.xx == 0 ? -std::numeric_limits<double>::infinity()
                                      : 10.0 * std::log10(s.xx / s.nn);
    e.cosine = (s.xx == 0 && s.qq == 0) ? 1.0 : (s.xx == 0 || s.qq == 0) ? 0.0 : s.xq / std::sqrt(s.xx * s.qq);
    e.max_abs = s.max_abs;
    e.elements = s.count;
    e.is_output = outputs.count(name) > 0;
    r.tensors.push_back(e);
  }
  std::stable_sort(r.tensors.begin(), r.tensors.end(),
                   [](const TensorError& a, const TensorError& b) { return a.sqnr_db < b.sqnr_db; });
  return r;
}

namespace {

// Calibration batches read once and replayed for every quantization.
class ReplayReader final : public CalibrationDataReader {
 public:
  explicit ReplayReader(CalibrationDataReader& src) {
    while (auto b = src.next()) batches_.push_back(std::move(*b));
  }
  std::optional<NamedTensors> next() override {
    if (pos_ >= batches_.size()) return std::nullopt;
    return batches_[pos_++];
  }
  void rewind() override { pos_ = 0; }
  int64_t num_batches() const override { return static_cast<int64_t>(batches_.size()); }

 private:
  std::vector<NamedTensors> batches_;
  size_t pos_ = 0;
};

double score_model(const ir::Model& m, const std::string& name, const std::string& data, const EvalOptions& eval) {
  SessionOptions so;
  so.threads = eval.threads;
  const Session s(m, so);
  EvalOptions quiet = eval;
  quiet.progress = {};
  return evaluate({&s}, {name}, data, quiet).models[0].value;
}

}  // namespace

SensitivityResult sensitivity_scan(const ir::Model& model, const QuantConfig& config, const std::string& calib,
                                   const BatchOptions& calib_batch, const std::string& data,
                                   const EvalOptions& eval, const ProgressCallback& progress) {
  std::unique_ptr<ReplayReader> replay;
  // Without data, quantize_model itself says that static nodes need some.
  if (!calib.empty()) {
    CalibrationOptions co;
    co.input_names = model.graph.inputs;
    co.batch = calib_batch;
    if (co.batch.limit <= 0) co.batch.limit = 512;  // the batches are held in memory
    auto reader = open_calibration_data(calib, co);
    replay = std::make_unique<ReplayReader>(*reader);
  }
  auto quantize = [&](const QuantConfig& c, QuantizeReport* rep) {
    if (replay) replay->rewind();
    return quantize_model(model, c, replay.get(), rep);
  };
  SensitivityResult r;
  r.metric = eval.metric;
  r.float_value = score_model(model, "float", data, eval);
  QuantizeReport base;
  r.quant_value = score_model(quantize(config, &base), "quantized", data, eval);
  std::vector<const NodeDecision*> candidates;
  for (const NodeDecision& d : base.nodes)
    if (d.mode != QuantMode::kFloat && d.how.rfind("absorbed", 0) != 0 && !d.node.empty()) candidates.push_back(&d);
  const auto t0 = std::chrono::steady_clock::now();
  const double sign = higher_is_better(eval.metric) ? 1.0 : -1.0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    QuantConfig c = config;
    c.exclude.push_back(candidates[i]->node);
    LayerSensitivity l;
    l.node = candidates[i]->node;
    l.op_type = candidates[i]->op_type;
    l.value = score_model(quantize(c, nullptr), l.node, data, eval);
    l.gain = sign * (l.value - r.quant_value);
    r.layers.push_back(l);
    if (progress) progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(candidates.size()), seconds_since(t0));
  }
  std::stable_sort(r.layers.begin(), r.layers.end(),
                   [](const LayerSensitivity& a, const LayerSensitivity& b) { return a.gain > b.gain; });
  return r;
}

}  // namespace qforge
