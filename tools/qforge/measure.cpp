// `qforge eval`, `qforge bench` and `qforge compare`: accuracy, speed and
// memory, and per-layer error of models on the same data, printed as
// tables and, with --json, written for `qforge report`.
#include <cstdio>
#include <sstream>

#include "cli_util.h"
#include "commands.h"
#include "qforge/error.h"
#include "qforge/evaluate.h"
#include "results.h"

namespace qforge::cli {
namespace {

// "name=1x3x224x224"
std::pair<std::string, Shape> parse_shape(const std::string& spec) {
  const size_t eq = spec.find('=');
  check(eq != std::string::npos && eq > 0, Errc::kInvalidArgument, "--shape " + spec, "is not NAME=D0xD1x...");
  Shape s;
  std::stringstream ss(spec.substr(eq + 1));
  std::string d;
  while (std::getline(ss, d, 'x')) {
    check(!d.empty() && d.find_first_not_of("0123456789") == std::string::npos, Errc::kInvalidArgument,
          "--shape " + spec, "has a dimension '" + d + "' that is not a number", "NAME=D0xD1x...");
    s.push_back(std::stoll(d));
  }
  return {spec.substr(0, eq), s};
}

struct EvalArgs {
  std::vector<std::string> models;
  std::string data, labels, metric = "top1", json;
  int64_t batch = 32, limit = 0;
  int threads = 0;
  bool quiet = false;
};

int eval_cmd(const EvalArgs& a) {
  EvalOptions o;
  o.metric = parse_metric(a.metric, "--metric");
  o.labels = a.labels;
  check(a.batch >= 1, Errc::kInvalidArgument, "--batch " + std::to_string(a.batch), "must be at least 1");
  o.batch.batch_size = a.batch;
  o.batch.limit = a.limit;
  o.threads = a.threads;
  EvalResult r;
  {
    ProgressBar bar(progress_enabled(a.quiet), "evaluating");
    o.progress = [&](int64_t done, int64_t total, double s) { bar.update(done, total, s); };
    r = evaluate(a.models, a.data, o);
  }
  if (!a.json.empty()) write_json(a.json, to_json(r));
  print_eval(r);
  if (!a.json.empty()) std::printf("\nwrote %s\n", a.json.c_str());
  return 0;
}

struct BenchArgs {
  std::vector<std::string> models, shapes;
  std::string json;
  int64_t batch = 1;
  int threads = 0, runs = 30, warmup = 3, block = 10;
  bool quiet = false;
};

int bench_cmd(const BenchArgs& a) {
  BenchOptions o;
  o.batch = a.batch;
  o.threads = a.threads;
  o.runs = a.runs;
  o.warmup = a.warmup;
  o.block = a.block;
  for (const auto& s : a.shapes) o.shapes.push_back(parse_shape(s));
  std::vector<BenchResult> r;
  {
    ProgressBar bar(progress_enabled(a.quiet), "timing", "rounds");
    o.progress = [&](int64_t done, int64_t total, double s) { bar.update(done, total, s); };
    r = benchmark(a.models, o);
  }
  if (!a.json.empty()) write_json(a.json, to_json(r, o));
  print_bench(r, o);
  if (!a.json.empty()) std::printf("\nwrote %s\n", a.json.c_str());
  return 0;
}

struct CompareArgs {
  std::string float_model, quant_model, data, json, calib, config, mode, metric = "top1", ranking;
  int64_t batch = 32, limit = 256, calib_samples = 512, eval_limit = 1000;
  size_t top = 20;
  int threads = 0;
  bool sensitivity = false, quiet = false;
};

int compare_cmd(const CompareArgs& a, CLI::App& sub) {
  check(!a.quant_model.empty() || a.sensitivity, Errc::kInvalidArgument, "compare",
        "needs a quantized model to compare, or --sensitivity", "qforge compare FLOAT QUANT --data DATA");
  nlohmann::json out = nlohmann::json::array();
  if (!a.quant_model.empty()) {
    CompareOptions o;
    o.batch.batch_size = a.batch;
    o.batch.limit = a.limit;
    o.threads = a.threads;
    CompareResult r;
    {
      ProgressBar bar(progress_enabled(a.quiet), "comparing");
      o.progress = [&](int64_t done, int64_t total, double s) { bar.update(done, total, s); };
      r = compare_models(a.float_model, a.quant_model, a.data, o);
    }
    print_compare(r, a.top);
    out.push_back(to_json(r));
  }
  if (a.sensitivity) {
    QuantConfig c = a.config.empty() ? QuantConfig{} : QuantConfig::load(a.config);
    if (sub.count("--mode")) c.mode = parse_quant_mode(a.mode, "--mode");
    EvalOptions e;
    e.metric = parse_metric(a.metric, "--metric");
    e.batch.batch_size = a.batch;
    e.batch.limit = a.eval_limit;
    e.threads = a.threads;
    BatchOptions cb;
    cb.batch_size = a.batch;
    cb.limit = a.calib_samples;
    SensitivityResult r;
    {
      ProgressBar bar(progress_enabled(a.quiet), "scanning", "layers");
      r = sensitivity_scan(ir::load_model(a.float_model), c, a.calib, cb, a.data, e,
                           [&](int64_t done, int64_t total, double s) { bar.update(done, total, s); });
    }
    if (!a.quant_model.empty()) std::printf("\n");
    print_sensitivity(r);
    out.push_back(to_json(r));
  }
  if (!a.json.empty()) {
    write_json(a.json, out.size() == 1 ? out[0] : out);
    std::printf("\nwrote %s\n", a.json.c_str());
  }
  return 0;
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "A metric (top1, top5, mse, cosine, perplexity) for models on the same data");
  auto a = std::make_shared<EvalArgs>();
  sub->add_option("models", a->models, "ONNX models (the first is the reference for agreement, mse, cosine)")
      ->required();
  sub->add_option("--data", a->data, "data: IDX (labels found beside), .npy, .npz, .pb sets, image folder")
      ->required();
  sub->add_option("--labels", a->labels, "labels file (IDX or .npy), one row per sample");
  sub->add_option("--metric", a->metric, "top1 (default), top5, mse, cosine or perplexity");
  sub->add_option("--batch", a->batch, "batch size (default 32)");
  sub->add_option("--limit", a->limit, "use the first N samples (default: all)");
  sub->add_option("--threads", a->threads, "threads (default: all cores)");
  sub->add_option("--json", a->json, "also write the results as JSON (for qforge report)");
  sub->add_flag("-q,--quiet", a->quiet, "no progress bar");
  return {sub, [a] { return eval_cmd(*a); }};
}

Command add_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "Load time, latency percentiles, throughput and peak memory, interleaved");
  auto a = std::make_shared<BenchArgs>();
  sub->add_option("models", a->models, "ONNX models (ratios are against the first)")->required();
  sub->add_option("--batch", a->batch, "batch size: each input's first symbolic dimension (default 1)");
  sub->add_option("--threads", a->threads, "threads (default: all cores)");
  sub->add_option("--runs", a->runs, "timed runs per model (default 30)");
  sub->add_option("--warmup", a->warmup, "untimed runs per model first (default 3)");
  sub->add_option("--block", a->block,
                  "timed runs of one model per turn (default 10); with several models each turn "
                  "starts with an untimed run that warms the caches");
  sub->add_option("--shape", a->shapes, "NAME=D0xD1x... for inputs the batch doesn't fix");
  sub->add_option("--json", a->json, "also write the results as JSON (for qforge report)");
  sub->add_flag("-q,--quiet", a->quiet, "no progress bar");
  return {sub, [a] { return bench_cmd(*a); }};
}

Command add_compare(CLI::App& app) {
  auto* sub = app.add_subcommand("compare", "Per-tensor SQNR of a quantized model against its float original; "
                                            "--sensitivity ranks layers by what quantizing them costs");
  auto a = std::make_shared<CompareArgs>();
  sub->add_option("float", a->float_model, "float ONNX model")->required();
  sub->add_option("quantized", a->quant_model, "its quantized version (optional with --sensitivity)");
  sub->add_option("--data", a->data, "inputs (and, for --sensitivity, labels)")->required();
  sub->add_option("--batch", a->batch, "batch size (default 32)");
  sub->add_option("--limit", a->limit, "samples for the per-tensor comparison (default 256; 0: all)");
  sub->add_option("--top", a->top, "print the N worst tensors (default 20)");
  sub->add_flag("--sensitivity", a->sensitivity, "leave one layer float at a time and rank the layers");
  sub->add_option("--calib", a->calib, "--sensitivity: calibration data for static quantization");
  sub->add_option("--calib-samples", a->calib_samples, "--sensitivity: calibration samples (default 512)");
  sub->add_option("--config", a->config, "--sensitivity: QuantConfig JSON file");
  sub->add_option("--mode", a->mode, "--sensitivity: static (default) or dynamic");
  sub->add_option("--metric", a->metric, "--sensitivity: top1 (default), top5, mse, cosine, perplexity");
  sub->add_option("--eval-limit", a->eval_limit, "--sensitivity: samples scored per variant (default 1000)");
  sub->add_option("--threads", a->threads, "threads (default: all cores)");
  sub->add_option("--json", a->json, "also write the results as JSON (for qforge report and quantize --keep-float)");
  sub->add_flag("-q,--quiet", a->quiet, "no progress bar");
  return {sub, [a, sub] { return compare_cmd(*a, *sub); }};
}

}  // namespace qforge::cli
