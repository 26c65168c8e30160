// benchmark(): load time, resident memory and latency percentiles of models
// measured in one run.
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "eval/eval_util.h"
#include "qforge/error.h"
#include "qforge/evaluate.h"

namespace qforge {
namespace {

using eval_detail::seconds_since;

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"), 0 where absent.
int64_t proc_status_bytes(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, field.size() + 1, field + ":") == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  return 0;
}

// Resets the peak resident size (VmHWM) to the current one (Linux 4.0+).
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

Session::NamedTensors synthetic_inputs(const Session& s, int64_t batch,
                                       const std::vector<std::pair<std::string, Shape>>& shapes,
                                       const std::string& model) {
  Session::NamedTensors in;
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (const IoInfo& io : s.inputs()) {
    Shape shape;
    auto given = std::find_if(shapes.begin(), shapes.end(), [&](const auto& p) { return p.first == io.name; });
    if (given != shapes.end()) {
      shape = given->second;
    } else {
      check(io.info.shape.has_value(), Errc::kInvalidArgument, "model '" + model + "' input '" + io.name + "'",
            "has no declared shape", "--shape " + io.name + "=D0xD1x...");
      for (size_t d = 0; d < io.info.shape->size(); ++d) {
        const ir::Dim& dim = (*io.info.shape)[d];
        if (dim.known()) shape.push_back(dim.size);
        else if (d == 0) shape.push_back(batch);
        else
          throw Error(Errc::kInvalidArgument, "model '" + model + "' input '" + io.name + "'",
                      "has dimension " + std::to_string(d) + " '" + dim.str() + "' that the batch doesn't fix",
                      "--shape " + io.name + "=D0xD1x...");
      }
    }
    const DType dt = io.info.dtype.value_or(DType::kF32);
    Tensor t(dt, shape);
    if (dt == DType::kF32)
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = uniform(rng);
    in.emplace_back(io.name, std::move(t));
  }
  return in;
}

std::vector<BenchResult> benchmark(const std::vector<std::string>& models, const BenchOptions& o) {
  check(!models.empty(), Errc::kInvalidArgument, "bench", "needs at least one model");
  check(o.batch >= 1, Errc::kInvalidArgument, "batch " + std::to_string(o.batch), "must be at least 1");
  check(o.runs >= 1 && o.warmup >= 0, Errc::kInvalidArgument, "runs " + std::to_string(o.runs), "must be at least 1");
  check(o.block >= 1, Errc::kInvalidArgument, "block " + std::to_string(o.block), "must be at least 1");
  SessionOptions so;
  so.threads = o.threads;
  std::vector<BenchResult> res(models.size());
  // Phase 1, one model at a time: load time and peak memory.
  for (size_t k = 0; k < models.size(); ++k) {
    BenchResult& r = res[k];
    r.model = models[k];
    std::error_code ec;
    r.file_bytes = static_cast<int64_t>(std::filesystem::file_size(models[k], ec));
    check(!ec, Errc::kNotFound, "model '" + models[k] + "'", "can't be read: " + ec.message());
    // The first load in a process also pays one-time costs (page faults in
    // the code, the thread pool): time two loads and keep the faster; measure
    // memory on the second.
    auto t0 = std::chrono::steady_clock::now();
    { const Session warm(models[k], so); }
    r.load_ms = 1e3 * seconds_since(t0);
    malloc_trim(0);
    r.rss_exact = reset_peak_rss();
    const int64_t before = proc_status_bytes("VmRSS");
    t0 = std::chrono::steady_clock::now();
    {
      const Session s(models[k], so);
      r.load_ms = std::min(r.load_ms, 1e3 * seconds_since(t0));
      const auto inputs = synthetic_inputs(s, o.batch, o.shapes, models[k]);
      for (int i = 0; i < std::max(1, o.warmup); ++i) s.run(inputs);
      r.peak_rss_bytes = proc_status_bytes("VmHWM");
    }
    r.rss_added_bytes = std::max<int64_t>(0, r.peak_rss_bytes - before);
  }
  // Phase 2, all loaded: runs interleaved round-robin in blocks (see evaluate.h).
  std::vector<Session> sessions;
  std::vector<Session::NamedTensors> inputs;
  sessions.reserve(models.size());
  for (const std::string& m : models) {
    sessions.emplace_back(m, so);
    inputs.push_back(synthetic_inputs(sessions.back(), o.batch, o.shapes, m));
  }
  for (int w = 0; w < o.warmup; ++w)
    for (size_t k = 0; k < sessions.size(); ++k) sessions[k].run(inputs[k]);
  std::vector<std::vector<double>> ms(models.size());
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < o.runs; i += o.block) {
    const int n = std::min(o.block, o.runs - i);
    for (size_t k = 0; k < sessions.size(); ++k) {
      if (sessions.size() > 1) sessions[k].run(inputs[k]);  // warms the caches again, untimed
      for (int j = 0; j < n; ++j) {
        const auto t0 = std::chrono::steady_clock::now();
        sessions[k].run(inputs[k]);
        ms[k].push_back(1e3 * seconds_since(t0));
      }
    }
    if (o.progress) o.progress(i + n, o.runs, seconds_since(start));
  }
  for (size_t k = 0; k < models.size(); ++k) {
    BenchResult& r = res[k];
    r.p50_ms = percentile(ms[k], 50);
    r.p90_ms = percentile(ms[k], 90);
    r.p99_ms = percentile(ms[k], 99);
    double sum = 0;
    for (double v : ms[k]) sum += v;
    r.mean_ms = sum / static_cast<double>(ms[k].size());
    const Tensor& first = inputs[k].empty() ? Tensor() : inputs[k][0].second;
    const int64_t batch = first.rank() > 0 ? first.dim(0) : 1;  // a fixed batch may differ from o.batch
    r.samples_per_s = r.mean_ms > 0 ? 1e3 * static_cast<double>(batch) / r.mean_ms : 0;
  }
  return res;
}

}  // namespace qforge
