// Measuring models: accuracy on data (evaluate), speed and memory
// (benchmark), per-tensor error of a quantized model against its float
// original (compare_models), and which layers cost the most accuracy when
// quantized (sensitivity_scan). The CLI's eval, bench, compare and report
// commands are thin shells over these.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "qforge/data.h"
#include "qforge/quantize.h"
#include "qforge/session.h"

namespace qforge {

// ------------------------------------------------------------------ metrics

enum class Metric {
  kTop1,        // % of samples whose largest score is the label's
  kTop5,        // % whose label is among the 5 largest scores
  kMse,         // mean squared error of the first output against a reference
  kCosine,      // mean per-sample cosine similarity against a reference
  kPerplexity,  // exp(mean cross-entropy) of logits [B, T, V] against token ids [B, T]
};
const char* metric_name(Metric m);  // "top1" "top5" "mse" "cosine" "perplexity"
Metric parse_metric(const std::string& s, const std::string& what = "metric");
bool higher_is_better(Metric m);

// Progress of a long loop: items done of total (-1: unknown), seconds so far.
using ProgressCallback = std::function<void(int64_t done, int64_t total, double seconds)>;

struct EvalOptions {
  Metric metric = Metric::kTop1;
  BatchOptions batch{32};  // batch_size 32, in order, all samples (limit 0)
  // A file of labels (IDX or NPY, one row per sample). Empty: the data's
  // own "label" tensor (IDX images find their labels file beside them). For
  // mse and cosine, the reference outputs; empty: the first model's outputs.
  // For perplexity, token ids [N, T]; empty: the next token of the model's
  // integer input (language modelling).
  std::string labels;
  ImageOptions image;
  int threads = 0;
  ProgressCallback progress;  // batches
};

struct ModelScore {
  std::string model;
  double value = 0;
  // top1/top5: % of samples whose top-1 class is the first model's; -1 otherwise.
  double agreement = -1;
  double run_seconds = 0;  // time spent in Session::run
};

struct EvalResult {
  Metric metric = Metric::kTop1;
  std::string data, reference;  // what the metric compares with ("labels", a model)
  int64_t samples = 0;
  std::vector<ModelScore> models;
};

// Each model on the same batches of `data` (a path open_dataset takes).
// Errors name the model, the data or the labels: counts that differ,
// outputs that aren't class scores for top1, and the like.
EvalResult evaluate(const std::vector<std::string>& models, const std::string& data, const EvalOptions& opts);
// The same over models already loaded; names label them in the result.
EvalResult evaluate(const std::vector<const Session*>& sessions, const std::vector<std::string>& names,
                    const std::string& data, const EvalOptions& opts);

// ---------------------------------------------------------------- benchmark

struct BenchOptions {
  int64_t batch = 1;  // the size of each input's first symbolic dimension
  int threads = 0;
  int warmup = 3;
  int runs = 30;  // timed runs per model, interleaved across the models in blocks
  int block = 10;  // consecutive timed runs of one model before the next model's turn
  // Shapes for inputs whose shape isn't fixed by the batch, by input name.
  std::vector<std::pair<std::string, Shape>> shapes;
  ProgressCallback progress;  // timed rounds
};

struct BenchResult {
  std::string model;
  int64_t file_bytes = 0;
  double load_ms = 0;                       // Session construction, weights prepacked
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, mean_ms = 0;
  double samples_per_s = 0;                 // batch / mean latency
  int64_t peak_rss_bytes = 0;               // the process's peak while this model alone loaded and ran
  int64_t rss_added_bytes = 0;              // that peak less the resident memory before loading
  bool rss_exact = true;                    // false: the peak could not be reset between models
};

// Load time and memory are measured with one model loaded at a time; then
// all are loaded and timed round-robin in blocks: each model's turn is one
// untimed run (the previous model has evicted its weights and buffers from
// the caches) and then `block` timed runs, so every timed run is warm, as in
// a deployment that runs one model over and over and as the peers' own
// loops are timed, while a slow phase of the machine still falls on every
// model alike. With one model there is nothing to interleave: its runs are
// back to back. Inputs are deterministic pseudo-random values (floats in
// [0, 1), integers 0).
std::vector<BenchResult> benchmark(const std::vector<std::string>& models, const BenchOptions& opts);

// Those inputs for one session: each input's first symbolic dimension set to
// `batch`, or its shape from `shapes`; an Error naming `model` and the input
// when another dimension isn't fixed.
Session::NamedTensors synthetic_inputs(const Session& session, int64_t batch,
                                       const std::vector<std::pair<std::string, Shape>>& shapes = {},
                                       const std::string& model = "model");

// ------------------------------------------------------------------ compare

struct TensorError {
  std::string tensor;         // the float model's tensor name
  std::string node, op_type;  // the float model's node that computes it
  double sqnr_db = 0;         // 10 log10(sum x^2 / sum (x - q)^2); +inf when equal
  double cosine = 0;          // of the whole tensor, over all samples
  double max_abs = 0;
  int64_t elements = 0;
  bool is_output = false;
};

struct CompareOptions {
  BatchOptions batch{32};
  ImageOptions image;
  int threads = 0;
  ProgressCallback progress;
};

struct CompareResult {
  std::string float_model, quant_model, data;
  int64_t samples = 0;
  std::vector<TensorError> tensors;  // worst SQNR first
};

// Runs both models on the data and compares every tensor of the float model
// that the quantized model also computes (as floats, or as integers it
// dequantizes: a DequantizeLinear reads them), node by node. The quantized
// model runs as qforge runs it, on its integer kernels.
CompareResult compare_models(const std::string& float_model, const std::string& quant_model,
                             const std::string& data, const CompareOptions& opts);

// -------------------------------------------------------------- sensitivity

struct LayerSensitivity {
  std::string node, op_type;
  double value = 0;  // the metric with this node left float, the rest quantized as configured
  double gain = 0;   // how much better than the fully quantized model (in the metric's better direction)
};

struct SensitivityResult {
  Metric metric = Metric::kTop1;
  double float_value = 0, quant_value = 0;
  std::vector<LayerSensitivity> layers;  // largest gain first
};

// Quantizes `model` as `config` says, then once more per quantized node
// with that node left float, and evaluates each on `data`. Calibration
// batches are read once and replayed (at most `calib.limit` samples, which
// must be set). progress: quantizations done.
SensitivityResult sensitivity_scan(const ir::Model& model, const QuantConfig& config,
                                   const std::string& calib, const BatchOptions& calib_batch,
                                   const std::string& data, const EvalOptions& eval,
                                   const ProgressCallback& progress = {});

}  // namespace qforge
