// The histogram observer against PyTorch 1.13's HistogramObserver (golden
// vectors from scripts/gen_torch_golden.py).
//
// Where qforge and PyTorch differ, and why:
//  * The histogram. PyTorch 1.13 re-bins approximately when the range grows
//    (upsampling and interpolation) and calls torch.histc with the range
//    truncated to integers (min=int(min_val)), which drops or misplaces values
//    unless the range's ends are integers. qforge keeps an exact histogram
//    (power-of-two bins, mergeable, independent of batch order) and resamples
//    it to 2048 bins over [min, max] for the search. The golden data therefore
//    use integer range ends, where PyTorch's histogram is right.
//  * The search. qforge runs the same L2 search (Caffe2's NormMinimization,
//    PyTorch's _non_linear_param_search); on PyTorch's own histogram it must
//    pick the same bins, and on the raw data its range must be within one
//    PyTorch bin of PyTorch's.
#include <cmath>

#include "qforge/observer.h"
#include "test_util.h"

namespace qforge {
namespace {

using test::floats;
using test::torch_golden;

std::string name_of(const nlohmann::json& c) {
  return c["data"].get<std::string>() + " " + c["dtype"].get<std::string>() + " " +
         c["scheme"].get<std::string>();
}

TEST(HistogramGolden, SearchOnTorchHistogramPicksTheSameBins) {
  int n = 0;
  for (const auto& c : torch_golden()["histogram"]) {
    SCOPED_TRACE(name_of(c));
    const auto h = floats(c["histogram"]);
    const std::vector<double> counts(h.begin(), h.end());
    const double lo = c["hist_min"], hi = c["hist_max"];
    const double bin = (hi - lo) / static_cast<double>(counts.size());
    const MinMax r = search_range_l2(counts, lo, hi, 256);
    const double want_lo = c["range_min"], want_hi = c["range_max"];
    EXPECT_EQ(std::lround((r.min[0] - lo) / bin), std::lround((want_lo - lo) / bin));
    EXPECT_EQ(std::lround((r.max[0] - lo) / bin), std::lround((want_hi - lo) / bin));
    ++n;
  }
  EXPECT_EQ(n, 12);
}

TEST(HistogramGolden, RangeWithinOneTorchBin) {
  for (const auto& c : torch_golden()["histogram"]) {
    SCOPED_TRACE(name_of(c));
    QuantSpec spec;
    spec.dtype = dtype_from_name(c["dtype"].get<std::string>());
    spec.symmetric = c["scheme"] == "symmetric";
    HistogramObserver obs(spec);  // RangeMethod::kMse, PyTorch's method
    for (const auto& b : c["batches"]) {
      const auto v = floats(b);
      obs.observe(Tensor::from({static_cast<int64_t>(v.size())}, v));
    }
    const double lo = c["hist_min"], hi = c["hist_max"];
    EXPECT_EQ(obs.histogram().min(), static_cast<float>(lo));
    EXPECT_EQ(obs.histogram().max(), static_cast<float>(hi));
    const double bin = (hi - lo) / 2048;
    const MinMax r = obs.range();
    EXPECT_NEAR(r.min[0], c["range_min"].get<double>(), bin);
    EXPECT_NEAR(r.max[0], c["range_max"].get<double>(), bin);
    // The parameters follow from the range as for MinMax (PyTorch's
    // _calculate_qparams), so they are close but need not be bit-identical.
    const QuantParams p = obs.params();
    const double want_scale = floats(c["scale"])[0];
    EXPECT_NEAR(p.scale[0], want_scale, 2 * bin / 255 + 1e-7);
    EXPECT_LE(std::abs(p.zero_point[0] - c["zero_point"][0].get<int32_t>()), 1);
  }
}

}  // namespace
}  // namespace qforge
