// `qforge quantize MODEL -o OUT --mode dynamic|static [--calib DATA] ...`:
// quantizes a float ONNX model and ends with a summary of what was
// quantized, what stayed float and why, and the size before and after.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "qforge/error.h"
#include "qforge/quantize.h"

namespace qforge::cli {
namespace {

struct Options {
  std::string model, output, calib, config, mode, method, activation_type, weight_type, format, target;
  std::vector<std::string> exclude, op_types;
  std::string ranking;       // --keep-float-from: a sensitivity JSON (qforge compare --sensitivity --json)
  int keep_float = 0;        // how many of its top layers stay float
  bool per_tensor = false, reduce_range = false, quiet = false, no_speed_check = false;
  int64_t speed_batch = 1;
  int64_t calib_batch = 32, calib_samples = 0;
  bool shuffle = false;
  uint64_t seed = 0;
};

void print_summary(const QuantizeReport& r, const QuantConfig& c, const std::string& output) {
  std::printf("quantized %d node(s), kept %d float; %s, %s format, target %s%s\n", r.quantized, r.kept_float,
              quant_mode_name(c.mode), quant_format_name(c.format), quant_target_name(c.target),
              c.reduce_range ? ", 7-bit weights (reduce_range)" : "");
  if (r.calibration_batches)
    std::printf("calibration: %lld samples in %lld batches, %.2f s, method %s\n",
                static_cast<long long>(r.calibration_samples), static_cast<long long>(r.calibration_batches),
                r.calibration_seconds, calib_method_name(c.method));
  // Per op type: how many nodes became what.
  std::map<std::string, std::map<std::string, int>> by_op;
  std::map<std::string, std::vector<std::string>> float_why;  // reason -> nodes
  for (const NodeDecision& d : r.nodes) {
    by_op[d.op_type][d.mode == QuantMode::kFloat ? "float" : d.how] += 1;
    if (d.mode == QuantMode::kFloat) float_why[d.reason].push_back(d.node.empty() ? d.op_type : d.node);
  }
  std::printf("\n%-22s %s\n", "op type", "nodes");
  for (const auto& [op, m] : by_op) {
    std::string s;
    for (const auto& [how, n] : m) s += (s.empty() ? "" : ", ") + std::to_string(n) + " " + how;
    std::printf("%-22s %s\n", op.c_str(), s.c_str());
  }
  if (!float_why.empty()) {
    std::printf("\nleft float:\n");
    for (const auto& [why, nodes] : float_why) {
      std::string list;
      for (size_t i = 0; i < nodes.size() && i < 6; ++i) list += (i ? ", " : "") + nodes[i];
      if (nodes.size() > 6) list += ", ... (" + std::to_string(nodes.size()) + ")";
      std::printf("  %s: %s\n", why.c_str(), list.c_str());
    }
  }
  for (const std::string& n : r.notes) std::printf("note: %s\n", n.c_str());
  if (!r.speed.empty()) {
    std::printf("\nspeed check, batch %lld (median ms of warm runs; int8 includes its own quantize/dequantize):\n",
                static_cast<long long>(c.speed_check_batch));
    std::printf("  %-32s %-14s %10s %10s  %s\n", "node", "op", "int8", "float", "kept");
    for (const SpeedDecision& s : r.speed) {
      // A node the check kept may still end float: its input no longer is quantized.
      bool is_float = s.kept_float;
      for (const NodeDecision& d : r.nodes)
        if (d.node == s.node) is_float = d.mode == QuantMode::kFloat;
      std::printf("  %-32s %-14s %10.4f %10.4f  %s\n", s.node.c_str(), s.op_type.c_str(), s.int_ms, s.float_ms,
                  s.kept_float ? "float" : is_float ? "float (its input is float)" : "int8");
    }
  }
  const double ratio = r.bytes_after > 0 ? static_cast<double>(r.bytes_before) / static_cast<double>(r.bytes_after) : 0;
  std::printf("\nweights: %s -> %s (%.2fx smaller)\nwrote %s\n", human_bytes(r.bytes_before).c_str(),
              human_bytes(r.bytes_after).c_str(), ratio, output.c_str());
}

// The first `n` layers of a sensitivity ranking: those whose quantization
// costs the most.
std::vector<std::string> worst_layers(const std::string& path, int n) {
  check(n >= 0, Errc::kInvalidArgument, "--keep-float " + std::to_string(n), "must be 0 or more");
  if (path.empty()) {
    check(n == 0, Errc::kInvalidArgument, "--keep-float", "needs a ranking", "--keep-float-from SENSITIVITY.json");
    return {};
  }
  std::ifstream f(path);
  check(static_cast<bool>(f), Errc::kNotFound, "ranking file '" + path + "'", "can't be opened");
  std::vector<std::string> nodes;
  try {
    nlohmann::json j = nlohmann::json::parse(f);
    if (j.is_array())  // compare wrote [comparison, sensitivity]
      for (const auto& e : j)
        if (e.value("kind", "") == "sensitivity") j = e;
    check(j.is_object() && j.value("kind", "") == "sensitivity", Errc::kCorrupt, "ranking file '" + path + "'",
          "holds no sensitivity ranking", "the --json of qforge compare --sensitivity");
    for (const auto& l : j.at("layers")) {
      if (static_cast<int>(nodes.size()) == n) break;
      nodes.push_back(l.at("node"));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(Errc::kCorrupt, "ranking file '" + path + "'", std::string("is not a sensitivity ranking: ") + e.what());
  }
  return nodes;
}

int quantize_cmd(const Options& o, CLI::App& sub) {
  QuantConfig c = o.config.empty() ? QuantConfig{} : QuantConfig::load(o.config);
  // Flags given on the command line override the config file.
  if (sub.count("--mode")) c.mode = parse_quant_mode(o.mode, "--mode");
  if (sub.count("--calib-method")) c.method = parse_calib_method(o.method, "--calib-method");
  if (sub.count("--per-tensor")) c.per_channel = !o.per_tensor;
  if (sub.count("--reduce-range")) c.reduce_range = o.reduce_range;
  if (sub.count("--activation-type")) {
    c.activation_type = QuantConfig::from_json("{\"activation_type\": \"" + o.activation_type + "\"}",
                                               "--activation-type").activation_type;
  }
  if (sub.count("--weight-type")) {
    c.weight_type = QuantConfig::from_json("{\"weight_type\": \"" + o.weight_type + "\"}", "--weight-type")
                        .weight_type;
  }
  if (sub.count("--format")) c.format = parse_quant_format(o.format, "--format");
  if (sub.count("--target")) c.target = parse_quant_target(o.target, "--target");
  for (const auto& e : o.exclude) c.exclude.push_back(e);
  for (const auto& t : o.op_types) c.op_types.push_back(t);
  for (const auto& n : worst_layers(o.ranking, o.keep_float)) c.exclude.push_back(n);
  // Never slower than float: on unless turned off here or in the config
  // file, for models qforge will run (it times qforge's kernels, not
  // another runtime's).
  if (o.config.empty() || sub.count("--no-speed-check"))
    c.speed_check = !o.no_speed_check && c.target == QuantTarget::kQforge;
  if (sub.count("--speed-batch")) c.speed_check_batch = o.speed_batch;

  const ir::Model model = ir::load_model(o.model);
  std::unique_ptr<CalibrationDataReader> data;
  int64_t total = -1;
  if (!o.calib.empty()) {
    check(o.calib_batch >= 1, Errc::kInvalidArgument, "--calib-batch " + std::to_string(o.calib_batch),
          "must be at least 1");
    CalibrationOptions co;
    co.input_names = model.graph.inputs;
    co.batch.batch_size = o.calib_batch;
    co.batch.limit = o.calib_samples;
    co.batch.shuffle = o.shuffle;
    co.batch.seed = o.seed;
    data = open_calibration_data(o.calib, co);
    total = data->num_batches();
  }
  QuantizeReport report;
  ir::Model out;
  {
    ProgressBar bar(progress_enabled(o.quiet), "calibrating");
    out = quantize_model(model, c, data.get(), &report,
                         [&bar](const CalibrationProgress& p) {
                           bar.update(p.batches, p.total_batches, p.seconds, p.samples);
                         },
                         total);
  }
  // Without the intermediate values' types and shapes (readers infer them
  // again): on small models they are a large part of the file.
  ir::SaveOptions save;
  save.value_info = false;
  ir::save_model(out, o.output, save);
  if (!o.quiet) print_summary(report, c, o.output);
  return 0;
}

}  // namespace

Command add_quantize(CLI::App& app) {
  auto* sub = app.add_subcommand("quantize", "Quantize an ONNX model (static with calibration data, or dynamic)");
  auto o = std::make_shared<Options>();
  sub->add_option("model", o->model, "float ONNX model")->required();
  sub->add_option("-o,--output", o->output, "where to write the quantized model")->required();
  sub->add_option("--mode", o->mode, "static (default; needs --calib) or dynamic");
  sub->add_option("--calib", o->calib,
                  "calibration data: .npy, .npz, IDX (Fashion-MNIST), a folder of .pb sets or of images");
  sub->add_option("--calib-method", o->method, "minmax (default), avg, entropy, percentile or mse");
  sub->add_option("--calib-batch", o->calib_batch, "calibration batch size (default 32)");
  sub->add_option("--calib-samples", o->calib_samples, "use at most N samples (default: all)");
  sub->add_flag("--shuffle", o->shuffle, "calibrate on a shuffled order (with --calib-samples: a random subset)");
  sub->add_option("--seed", o->seed, "seed for --shuffle (default 0)");
  sub->add_flag("--per-tensor", o->per_tensor, "one scale per weight tensor instead of per output channel");
  sub->add_flag("--reduce-range", o->reduce_range,
                "7-bit weights (s8 [-63, 63]): exact on AVX2's fast vpmaddubsw int8 path");
  sub->add_option("--activation-type", o->activation_type, "u8 (default) or s8");
  sub->add_option("--weight-type", o->weight_type, "s8 (default) or u8");
  sub->add_option("--exclude", o->exclude, "keep these node names or op types float")->take_all();
  sub->add_option("--op-types", o->op_types, "quantize only these op types")->take_all();
  sub->add_option("--keep-float-from", o->ranking, "a sensitivity ranking (qforge compare --sensitivity --json)");
  sub->add_option("--keep-float", o->keep_float, "keep the N layers at the top of that ranking float");
  sub->add_option("--config", o->config, "QuantConfig JSON file (flags given here override it)");
  sub->add_option("--format", o->format, "qdq (default) or qop");
  sub->add_option("--target", o->target, "qforge (default) or onnxruntime: the runtime that must run it in int8");
  sub->add_flag("--no-speed-check", o->no_speed_check,
                "don't time each quantized node against float (by default, nodes slower in int8 stay float)");
  sub->add_option("--speed-batch", o->speed_batch, "batch size the speed check times (default 1)");
  sub->add_flag("-q,--quiet", o->quiet, "no progress bar and no summary");
  return {sub, [o, sub] { return quantize_cmd(*o, *sub); }};
}

}  // namespace qforge::cli
