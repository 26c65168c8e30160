// Post-training quantization of a whole model: static (with calibration
// data) and dynamic, written as ONNX that qforge and ONNX Runtime both run.
//
//   prepare    fold Identity, constants and BatchNormalization (qforge/passes.h)
//   choose     for each node: static, dynamic or float, from the QuantConfig
//   calibrate  (static) run the data through the float model; an observer per
//              activation tensor sees each batch as it is computed, so memory
//              holds observers and histograms, never stored activations
//   convert    QDQ: QuantizeLinear / DequantizeLinear pairs around the float
//              ops, weights stored as integers (the default); or QOperator:
//              the same graph with each DQ -> op -> Q group replaced by its
//              integer op (QLinearConv, QLinearMatMul, QLinearAdd, ...)
//
// Dynamic quantization writes DynamicQuantizeLinear + MatMulInteger (or
// ConvInteger), a Cast and the scale multiplication: weights are integers
// ahead of time, activations are quantized per tensor at run time. LSTM and
// GRU become com.microsoft DynamicQuantizeLSTM / ai.qforge
// DynamicQuantizeGRU in either mode (they have no static form).
//
// Static and dynamic nodes may be mixed in one model (QuantConfig overrides).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qforge/data.h"
#include "qforge/dtype.h"
#include "qforge/ir.h"
#include "qforge/observer.h"

namespace qforge {

enum class QuantMode { kStatic, kDynamic, kFloat };
enum class QuantFormat { kQdq, kQOperator };
// Which runtime must be able to run every quantized node (with an integer
// kernel) of the written model.
enum class QuantTarget { kQforge, kOnnxRuntime };
enum class CalibMethod { kMinMax, kMovingAverage, kEntropy, kPercentile, kMse };

const char* quant_mode_name(QuantMode m);        // "static" "dynamic" "float"
const char* quant_format_name(QuantFormat f);    // "qdq" "qop"
const char* quant_target_name(QuantTarget t);    // "qforge" "onnxruntime"
const char* calib_method_name(CalibMethod m);    // "minmax" "avg" "entropy" "percentile" "mse"
// Parse the names above (and a few aliases); Error naming `what` otherwise.
QuantMode parse_quant_mode(const std::string& s, const std::string& what = "mode");
QuantFormat parse_quant_format(const std::string& s, const std::string& what = "format");
QuantTarget parse_quant_target(const std::string& s, const std::string& what = "target");
CalibMethod parse_calib_method(const std::string& s, const std::string& what = "calibration method");

// Settings an op type or a node may override; unset fields inherit.
struct QuantOverride {
  std::optional<QuantMode> mode;
  std::optional<DType> activation_type;  // u8 or s8
  std::optional<DType> weight_type;      // s8 or u8
  std::optional<bool> per_channel;
  std::optional<CalibMethod> method;
};

struct QuantConfig {
  QuantMode mode = QuantMode::kStatic;
  QuantFormat format = QuantFormat::kQdq;
  QuantTarget target = QuantTarget::kQforge;
  DType activation_type = DType::kU8;  // static activations: u8 (affine) or s8
  DType weight_type = DType::kI8;      // weights: s8 symmetric (or u8 affine)
  bool per_channel = true;             // weights per output channel; false: per tensor
  // Activations symmetric around 0 (zero point 0 for s8, 128 for u8).
  bool symmetric_activations = false;
  // Weights: one bit less (PyTorch's reduce_range), for CPUs whose u8 x s8
  // instructions saturate at 16 bits.
  bool reduce_range = false;
  CalibMethod method = CalibMethod::kMinMax;
  double percentile = 99.999;        // kPercentile
  float averaging_constant = 0.01f;  // kMovingAverage
  int histogram_bins = 2048;         // kEntropy, kPercentile, kMse
  // Op types to quantize; empty means every op type qforge can quantize.
  std::vector<std::string> op_types;
  // Node names or op types to keep float.
  std::vector<std::string> exclude;
  // Never slower than float: time each quantized node against its float
  // version on this machine (inputs of `speed_check_batch` samples) and keep
  // float those where the integer version loses. Off by default in the
  // library, so that a config gives the same model on every machine; the
  // CLI turns it on (--no-speed-check turns it off).
  bool speed_check = false;
  int64_t speed_check_batch = 1;
  std::map<std::string, QuantOverride> op_type_overrides;  // by op type ("Conv")
  std::map<std::string, QuantOverride> node_overrides;     // by node name

  // JSON: {"mode": "static", "format": "qdq", "target": "qforge",
  //  "activation_type": "u8", "weight_type": "s8", "per_channel": true,
  //  "symmetric_activations": false, "reduce_range": false,
  //  "calibration": {"method": "minmax", "percentile": 99.999,
  //                  "averaging_constant": 0.01, "bins": 2048},
  //  "op_types": ["Conv", ...], "exclude": ["conv1", "Gemm"],
  //  "op_type_overrides": {"MatMul": {"mode": "dynamic"}},
  //  "node_overrides": {"fc2": {"per_channel": false, "activation_type": "s8"}}}
  // Every key is optional; an unknown key or a bad value is an Error naming
  // it and `subject`.
  static QuantConfig from_json(const std::string& text, const std::string& subject = "config");
  static QuantConfig load(const std::string& path);
  std::string to_json() const;
};

// What became of one node.
struct NodeDecision {
  std::string node, op_type;
  QuantMode mode = QuantMode::kFloat;
  std::string how;     // "QLinearConv", "QDQ", "MatMulInteger", ...
  std::string reason;  // why it stayed float ("excluded by config", ...)
};

// What the speed check measured for one quantized node (median of warm runs).
struct SpeedDecision {
  std::string node, op_type;
  double int_ms = 0, float_ms = 0;  // the node's integer version (with its own quantize/dequantize) and float
  bool kept_float = false;
};

struct CalibrationProgress {
  int64_t batches = 0, samples = 0;
  int64_t total_batches = -1;  // -1: unknown
  double seconds = 0;
};
using CalibrationCallback = std::function<void(const CalibrationProgress&)>;

struct QuantizeReport {
  std::vector<std::string> prepare_log;  // the graph passes that ran
  std::vector<NodeDecision> nodes;       // every node of the prepared graph
  int quantized = 0, kept_float = 0;
  int64_t calibration_batches = 0, calibration_samples = 0;
  double calibration_seconds = 0;
  int64_t bytes_before = 0, bytes_after = 0;  // initializers
  std::vector<std::string> notes;             // target adjustments and the like
  std::vector<SpeedDecision> speed;           // QuantConfig::speed_check
};

// Quantizes a float model. Static nodes need `data` (their activation
// ranges come from it); an Error says so when it is missing or yields no
// batch. `total_batches` (or -1) only feeds the progress callback.
ir::Model quantize_model(const ir::Model& model, const QuantConfig& config,
                         CalibrationDataReader* data = nullptr, QuantizeReport* report = nullptr,
                         const CalibrationCallback& progress = {}, int64_t total_batches = -1);

// Ranges of the activation tensors a static quantization needs, by tensor
// name: the calibration step on its own (for tests and for tools that
// inspect ranges). The model must already be prepared.
std::map<std::string, MinMax> calibrate_ranges(const ir::Model& prepared,
                                               const std::vector<std::string>& tensors,
                                               const QuantConfig& config,
                                               CalibrationDataReader& data,
                                               QuantizeReport* report = nullptr,
                                               const CalibrationCallback& progress = {},
                                               int64_t total_batches = -1);

// Sum of the initializers' bytes (what the weights cost on disk).
int64_t initializer_bytes(const ir::Model& model);

}  // namespace qforge
