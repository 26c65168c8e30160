#include "results.h"

#include <cmath>
#include <cstdio>

#include "cli_util.h"

namespace qforge::cli {
namespace {

// JSON has no infinity: an exact match's SQNR is written as null.
nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

}  // namespace

nlohmann::json to_json(const EvalResult& r) {
  nlohmann::json models = nlohmann::json::array();
  for (const ModelScore& s : r.models) {
    nlohmann::json m = {{"model", s.model}, {"value", finite_or_null(s.value)}, {"run_seconds", s.run_seconds}};
    if (s.agreement >= 0) m["agreement"] = s.agreement;
    models.push_back(m);
  }
  return {{"kind", "eval"},           {"metric", metric_name(r.metric)},
          {"higher_is_better", higher_is_better(r.metric)},
          {"data", r.data},           {"reference", r.reference},
          {"samples", r.samples},     {"models", models}};
}

nlohmann::json to_json(const std::vector<BenchResult>& r, const BenchOptions& o) {
  nlohmann::json models = nlohmann::json::array();
  for (const BenchResult& b : r)
    models.push_back({{"model", b.model},
                      {"file_bytes", b.file_bytes},
                      {"load_ms", b.load_ms},
                      {"p50_ms", b.p50_ms},
                      {"p90_ms", b.p90_ms},
                      {"p99_ms", b.p99_ms},
                      {"mean_ms", b.mean_ms},
                      {"samples_per_s", b.samples_per_s},
                      {"peak_rss_bytes", b.peak_rss_bytes},
                      {"rss_added_bytes", b.rss_added_bytes},
                      {"rss_exact", b.rss_exact}});
  return {{"kind", "bench"}, {"batch", o.batch}, {"threads", o.threads}, {"runs", o.runs}, {"block", o.block}, {"models", models}};
}

nlohmann::json to_json(const CompareResult& r) {
  nlohmann::json t = nlohmann::json::array();
  for (const TensorError& e : r.tensors)
    t.push_back({{"tensor", e.tensor},
                 {"node", e.node},
                 {"op_type", e.op_type},
                 {"sqnr_db", finite_or_null(e.sqnr_db)},
                 {"cosine", e.cosine},
                 {"max_abs", e.max_abs},
                 {"elements", e.elements},
                 {"is_output", e.is_output}});
  return {{"kind", "compare"}, {"float_model", r.float_model}, {"quant_model", r.quant_model},
          {"data", r.data},    {"samples", r.samples},         {"tensors", t}};
}

nlohmann::json to_json(const SensitivityResult& r) {
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerSensitivity& l : r.layers)
    layers.push_back({{"node", l.node}, {"op_type", l.op_type}, {"value", l.value}, {"gain", l.gain}});
  return {{"kind", "sensitivity"},
          {"metric", metric_name(r.metric)},
          {"float_value", r.float_value},
          {"quant_value", r.quant_value},
          {"layers", layers}};
}

void write_json(const std::string& path, const nlohmann::json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

void print_eval(const EvalResult& r) {
  const bool pct = r.metric == Metric::kTop1 || r.metric == Metric::kTop5;
  std::printf("%s on %s, %lld samples, against %s\n\n", metric_name(r.metric), r.data.c_str(),
              static_cast<long long>(r.samples), r.reference.c_str());
  std::printf("%-44s %12s %10s %12s %10s\n", "model", metric_name(r.metric), "change", "agree top-1", "run s");
  for (size_t k = 0; k < r.models.size(); ++k) {
    const ModelScore& s = r.models[k];
    char value[32], change[32] = "", agree[32] = "";
    std::snprintf(value, sizeof value, pct ? "%.2f %%" : "%.6g", s.value);
    if (k > 0) std::snprintf(change, sizeof change, pct ? "%+.2f" : "%+.3g", s.value - r.models[0].value);
    if (s.agreement >= 0) std::snprintf(agree, sizeof agree, "%.2f %%", s.agreement);
    std::printf("%-44s %12s %10s %12s %10.2f\n", s.model.c_str(), value, change, agree, s.run_seconds);
  }
}

void print_bench(const std::vector<BenchResult>& r, const BenchOptions& o) {
  std::printf("batch %lld, %s thread(s), %d timed runs per model, interleaved in blocks of %d\n\n",
              static_cast<long long>(o.batch), o.threads > 0 ? std::to_string(o.threads).c_str() : "default",
              o.runs, o.block);
  std::printf("%-40s %10s %9s %9s %9s %9s %11s %11s\n", "model", "file", "load ms", "p50 ms", "p90 ms", "p99 ms",
              "samples/s", "peak RSS");
  for (const BenchResult& b : r)
    std::printf("%-40s %10s %9.2f %9.3f %9.3f %9.3f %11.1f %11s\n", b.model.c_str(),
                human_bytes(b.file_bytes).c_str(), b.load_ms, b.p50_ms, b.p90_ms, b.p99_ms, b.samples_per_s,
                human_bytes(b.peak_rss_bytes).c_str());
  if (r.size() > 1) {
    std::printf("\nagainst %s:\n", r[0].model.c_str());
    for (size_t k = 1; k < r.size(); ++k)
      std::printf("  %-40s %.2fx faster (p50), %.2fx smaller file, memory added %s vs %s\n", r[k].model.c_str(),
                  r[k].p50_ms > 0 ? r[0].p50_ms / r[k].p50_ms : 0.0,
                  r[k].file_bytes > 0 ? static_cast<double>(r[0].file_bytes) / static_cast<double>(r[k].file_bytes) : 0.0,
                  human_bytes(r[k].rss_added_bytes).c_str(), human_bytes(r[0].rss_added_bytes).c_str());
  }
  if (!r.empty() && !r[0].rss_exact)
    std::printf("note: the peak resident size could not be reset between models (/proc/self/clear_refs); "
                "peaks are the process's so far\n");
}

void print_compare(const CompareResult& r, size_t top) {
  std::printf("%s vs %s on %s, %lld samples: %zu tensors compared, worst first\n\n", r.quant_model.c_str(),
              r.float_model.c_str(), r.data.c_str(), static_cast<long long>(r.samples), r.tensors.size());
  std::printf("%-36s %-18s %10s %10s %12s\n", "tensor (node)", "op", "SQNR dB", "cosine", "max |err|");
  for (size_t i = 0; i < r.tensors.size() && i < top; ++i) {
    const TensorError& e = r.tensors[i];
    std::string name = e.tensor + (e.is_output ? " [output]" : "");
    std::printf("%-36s %-18s %10.2f %10.6f %12.5g\n", name.c_str(), e.op_type.c_str(), e.sqnr_db, e.cosine,
                e.max_abs);
  }
  if (r.tensors.size() > top) std::printf("... %zu more (--top N)\n", r.tensors.size() - top);
}

void print_sensitivity(const SensitivityResult& r) {
  std::printf("sensitivity (%s): float %.4g, quantized %.4g; each node left float in turn, best gain first\n\n",
              metric_name(r.metric), r.float_value, r.quant_value);
  std::printf("%-36s %-16s %12s %10s\n", "node left float", "op", metric_name(r.metric), "gain");
  for (const LayerSensitivity& l : r.layers)
    std::printf("%-36s %-16s %12.4g %+10.4g\n", l.node.c_str(), l.op_type.c_str(), l.value, l.gain);
}

}  // namespace qforge::cli
