// `qforge roundtrip FILE.npy`: chooses quantization parameters for a float
// tensor with an observer, quantizes, dequantizes, and reports the error.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "qforge/npy.h"
#include "qforge/observer.h"
#include "qforge/quant.h"

namespace qforge::cli {
namespace {

struct Options {
  std::string file, dtype = "u8", observer = "minmax", output;
  bool symmetric = false, reduce_range = false, narrow = false;
  int axis = -1;
  int64_t block = 0;
};

std::unique_ptr<Observer> make_observer(const Options& o, const QuantSpec& spec) {
  if (o.observer == "minmax") return std::make_unique<MinMaxObserver>(spec);
  if (o.observer == "avg") return std::make_unique<MovingAverageMinMaxObserver>(spec);
  HistogramOptions h;
  if (o.observer == "mse") h.method = RangeMethod::kMse;
  else if (o.observer == "entropy") h.method = RangeMethod::kEntropy;
  else if (o.observer == "percentile") h.method = RangeMethod::kPercentile;
  else
    throw Error(Errc::kInvalidArgument, "--observer " + o.observer, "is not a known observer",
                "minmax, avg, mse, entropy or percentile");
  return std::make_unique<HistogramObserver>(spec, h);
}

int run(const Options& o) {
  Tensor x = read_npy(o.file);
  x.set_name(o.file);
  if (x.dtype() != DType::kF32) x = cast(x, DType::kF32);
  QuantSpec spec;
  spec.dtype = dtype_from_name(o.dtype);
  spec.symmetric = o.symmetric;
  spec.reduce_range = o.reduce_range;
  spec.narrow_range = o.narrow;
  spec.axis = o.axis;
  spec.block_size = o.block;
  auto obs = make_observer(o, spec);
  obs->observe(x);
  const QuantParams p = obs->params();
  const Tensor q = quantize(x, p);
  const Tensor y = dequantize(q);

  // Error of the round trip, split into values inside the chosen range (where
  // it is at most scale / 2) and values clipped outside it.
  const float* xd = x.data<float>();
  const float* yd = y.data<float>();
  double sig = 0, noise = 0, max_err = 0;
  int64_t clipped = 0;
  const MinMax r = obs->range();
  const bool per_tensor = p.axis < 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double e = std::fabs(static_cast<double>(xd[i]) - yd[i]);
    sig += static_cast<double>(xd[i]) * xd[i];
    noise += e * e;
    max_err = std::max(max_err, e);
    if (per_tensor && (xd[i] < r.min[0] || xd[i] > r.max[0])) ++clipped;
  }
  const double sqnr = noise == 0 ? INFINITY : 10 * std::log10(sig / noise);
  std::printf("input      %s from %s\n", x.describe().c_str(), o.file.c_str());
  std::printf("observer   %s\n", obs->kind().c_str());
  std::printf("params     %s\n", p.str().c_str());
  if (per_tensor) std::printf("range      [%.6g, %.6g] (%lld values clipped)\n", r.min[0], r.max[0], static_cast<long long>(clipped));
  std::printf("size       %zu bytes f32 -> %zu bytes %s (%.2fx smaller)\n", x.nbytes(), q.nbytes(),
              o.dtype.c_str(), static_cast<double>(x.nbytes()) / static_cast<double>(q.nbytes()));
  std::printf("max |err|  %.6g (%.3f of the smallest scale)\n", max_err,
              max_err / *std::min_element(p.scale.begin(), p.scale.end()));
  std::printf("SQNR       %.2f dB\n", sqnr);
  if (!o.output.empty()) {
    write_npy(o.output, y);
    std::printf("wrote      %s (dequantized)\n", o.output.c_str());
  }
  return 0;
}

}  // namespace

Command add_roundtrip(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("roundtrip", "Quantize and dequantize a float tensor (.npy) and report the error");
  cmd->add_option("file", opts->file, "float tensor, .npy")->required()->check(CLI::ExistingFile);
  cmd->add_option("--dtype", opts->dtype, "quantized type: u8 i8 u16 i16 u4 i4 u2 i2")->capture_default_str();
  cmd->add_option("--observer", opts->observer, "minmax, avg, mse, entropy or percentile")->capture_default_str();
  cmd->add_flag("--symmetric", opts->symmetric, "symmetric range (zero point 0, or 2^(bits-1) unsigned)");
  cmd->add_flag("--reduce-range", opts->reduce_range, "choose the scale for one bit less");
  cmd->add_flag("--narrow-range", opts->narrow, "drop the lowest code (i8: [-127, 127])");
  cmd->add_option("--axis", opts->axis, "per-channel along this axis");
  cmd->add_option("--block", opts->block, "per-group: block size along --axis");
  cmd->add_option("-o,--output", opts->output, "write the dequantized tensor here (.npy)");
  return {cmd, [opts] { return run(*opts); }};
}

}  // namespace qforge::cli
