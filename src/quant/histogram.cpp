// The exact histogram, the histogram observer and its three range searches.
#include <algorithm>
#include <cmath>
#include <limits>

#include "qforge/observer.h"

namespace qforge {
namespace {

// Bins are [j * 2^k, (j + 1) * 2^k). x * 2^-k is exact in double for the
// widths this class picks, so binning has no rounding at all.
int64_t bin_of(double x, int k) { return static_cast<int64_t>(std::floor(std::ldexp(x, -k))); }

// All-zero data may use any width; this one is below every width chosen for
// other data (ilogb(2^-149) - 30 = -179) and keeps 2^-k finite in double, so
// that add() can scale by it (2^1100 would be Inf, and 0 * Inf is NaN).
constexpr int kZeroDataK = -200;

// The finest width considered: 2^-30 of the largest magnitude, which keeps
// bin indices within 2^31 and, being a function of the data alone, keeps the
// histogram independent of batch order.
int k_floor(float lo, float hi) {
  const float amax = std::max(std::fabs(lo), std::fabs(hi));
  return amax == 0.0f ? kZeroDataK : std::ilogb(amax) - 30;
}

// The smallest k >= k_floor for which [lo, hi] spans at most `cap` bins.
// Monotone in the range: a wider range never gets a smaller k.
int k_for(float lo, float hi, int cap) {
  int k = k_floor(lo, hi);
  while (bin_of(hi, k) - bin_of(lo, k) + 1 > cap) ++k;
  return k;
}

// Index j at width 2^k re-expressed at width 2^(k + s): floor(j / 2^s).
int64_t coarsen(int64_t j, int s) {
  if (s >= 63) return j < 0 ? -1 : 0;
  return j >> s;  // arithmetic shift: floor division for negatives too
}

}  // namespace

Histogram::Histogram(int capacity) : capacity_(capacity) {
  check(capacity >= 2, Errc::kInvalidArgument, "histogram",
        "capacity " + std::to_string(capacity), "at least 2 bins");
}

void Histogram::cover(float lo, float hi) {
  const float nlo = empty() ? lo : std::min(min_, lo);
  const float nhi = empty() ? hi : std::max(max_, hi);
  const int nk = std::max(empty() ? kZeroDataK : k_, k_for(nlo, nhi, capacity_));
  const int64_t nfirst = bin_of(nlo, nk);
  std::vector<uint64_t> nc(static_cast<size_t>(bin_of(nhi, nk) - nfirst + 1), 0);
  for (size_t i = 0; i < counts_.size(); ++i)
    if (counts_[i])
      nc[static_cast<size_t>(coarsen(first_ + static_cast<int64_t>(i), nk - k_) - nfirst)] +=
          counts_[i];
  counts_ = std::move(nc);
  k_ = nk;
  first_ = nfirst;
  min_ = nlo;
  max_ = nhi;
}

void Histogram::add(const float* x, int64_t n) {
  if (n <= 0) return;
  const auto [lo_it, hi_it] = std::minmax_element(x, x + n);
  add(x, n, *lo_it, *hi_it);
}

void Histogram::add(const float* x, int64_t n, float batch_min, float batch_max) {
  if (n <= 0) return;
  cover(batch_min, batch_max);
  const double inv = std::ldexp(1.0, -k_);
  for (int64_t i = 0; i < n; ++i)
    ++counts_[static_cast<size_t>(static_cast<int64_t>(std::floor(x[i] * inv)) - first_)];
  total_ += static_cast<uint64_t>(n);
}

void Histogram::merge(const Histogram& o) {
  check(capacity_ == o.capacity_, Errc::kInvalidArgument, "histogram",
        "can't merge capacity " + std::to_string(o.capacity_) + " into " +
            std::to_string(capacity_),
        "equal capacities");
  if (o.empty()) return;
  if (empty()) {
    *this = o;
    return;
  }
  cover(o.min_, o.max_);  // k_ >= o.k_ now: k grows with the range
  for (size_t i = 0; i < o.counts_.size(); ++i)
    if (o.counts_[i])
      counts_[static_cast<size_t>(coarsen(o.first_ + static_cast<int64_t>(i), k_ - o.k_) - first_)] +=
          o.counts_[i];
  total_ += o.total_;
}

std::vector<double> Histogram::resample(int bins, double lo, double hi) const {
  check(bins > 0 && hi > lo, Errc::kInvalidArgument, "histogram resample",
        std::to_string(bins) + " bins on [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
        "bins > 0 and lo < hi");
  std::vector<double> out(static_cast<size_t>(bins), 0.0);
  const double tw = (hi - lo) / bins;
  const double w = std::ldexp(1.0, k_);
  auto target = [&](double v) {
    return std::clamp<int64_t>(static_cast<int64_t>(std::floor((v - lo) / tw)), 0, bins - 1);
  };
  for (size_t i = 0; i < counts_.size(); ++i) {
    const auto c = static_cast<double>(counts_[i]);
    if (c == 0) continue;
    // The part of the bin where values can be: clipped to the data's range.
    const double bin_start = static_cast<double>(first_ + static_cast<int64_t>(i)) * w;
    const double a = std::max<double>(bin_start, min_);
    const double b = std::min<double>(bin_start + w, max_);
    if (b <= a) {  // all the bin's values sit at one point
      out[static_cast<size_t>(target(a))] += c;
      continue;
    }
    const double density = c / (b - a);
    if (a < lo) out[0] += density * (std::min(b, lo) - a);
    if (b > hi) out[static_cast<size_t>(bins - 1)] += density * (b - std::max(a, hi));
    const double sa = std::max(a, lo), sb = std::min(b, hi);
    if (sb <= sa) continue;
    for (int64_t t = target(sa), last = target(sb); t <= last; ++t) {
      const double ta = std::max(sa, lo + static_cast<double>(t) * tw);
      const double tb = t == bins - 1 ? sb : std::min(sb, lo + static_cast<double>(t + 1) * tw);
      if (tb > ta) out[static_cast<size_t>(t)] += density * (tb - ta);
    }
  }
  return out;
}

// ---- range searches ----

namespace {

// The squared error of values spread with `density` over [begin, end],
// measured from 0: density * integral x^2 = density * (end^3 - begin^3) / 3.
double l2_norm(double begin, double end, double density) {
  return density * (end * end * end - begin * begin * begin) / 3;
}

// PyTorch's _compute_quantization_error: the L2 error of quantizing the
// histogram with the range [start_bin, end_bin] split into dst levels.
double l2_error(const std::vector<double>& counts, double bin_width, int64_t start_bin,
                int64_t end_bin, int dst) {
  const double dst_w = bin_width * static_cast<double>(end_bin - start_bin + 1) / dst;
  if (dst_w == 0.0) return 0.0;
  double norm = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] == 0) continue;
    const double begin = (static_cast<double>(s) - static_cast<double>(start_bin)) * bin_width;
    const double end = begin + bin_width;
    const double db = std::clamp(std::floor(begin / dst_w), 0.0, dst - 1.0);
    const double de = std::clamp(std::floor(end / dst_w), 0.0, dst - 1.0);
    const double density = counts[s] / bin_width;
    norm += l2_norm(begin - (db + 0.5) * dst_w, dst_w / 2, density);
    norm += (de - db - 1) * l2_norm(-dst_w / 2, dst_w / 2, density);
    norm += l2_norm(-dst_w / 2, end - (de * dst_w + dst_w / 2), density);
  }
  return norm;
}

// MXNet / ONNX Runtime style smoothing: zeros get eps, taken evenly from the
// non-zero entries, so that KL divergence is finite. Returns false if all zero.
bool smooth(std::vector<double>& p) {
  constexpr double kEps = 1e-4;
  size_t zeros = 0;
  for (double v : p) zeros += v == 0;
  if (zeros == p.size()) return false;
  const double take = kEps * static_cast<double>(zeros) / static_cast<double>(p.size() - zeros);
  for (double& v : p) v = v == 0 ? kEps : std::max(v - take, kEps * 1e-3);
  return true;
}

double kl_divergence(const std::vector<double>& p, const std::vector<double>& q) {
  double sp = 0, sq = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    sp += p[i];
    sq += q[i];
  }
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double pi = p[i] / sp, qi = q[i] / sq;
    if (pi > 0) kl += pi * std::log(pi / qi);
  }
  return kl;
}

}  // namespace

MinMax search_range_l2(const std::vector<double>& counts, double lo, double hi, int dst) {
  const auto nb = static_cast<int64_t>(counts.size());
  check(nb > 0 && hi > lo && dst >= 2, Errc::kInvalidArgument, "L2 range search",
        "got " + std::to_string(nb) + " bins on [" + std::to_string(lo) + ", " +
            std::to_string(hi) + "] for " + std::to_string(dst) + " levels",
        "bins > 0, lo < hi and at least 2 levels");
  const double bin_width = (hi - lo) / static_cast<double>(nb);
  std::vector<double> csum(counts.size());
  double total = 0;
  for (size_t i = 0; i < counts.size(); ++i) csum[i] = total += counts[i];

  // Greedy, as Caffe2's NormMinimization: move whichever end passes more
  // bins to cut the next 1e-5 quantile, while the error keeps falling.
  constexpr double kStep = 1e-5;
  double alpha = 0.0, beta = 1.0, norm_min = std::numeric_limits<double>::infinity();
  int64_t start = 0, end = nb - 1;
  while (alpha < beta) {
    const double next_alpha = alpha + kStep, next_beta = beta - kStep;
    int64_t l = start, r = end;
    while (l < end && csum[static_cast<size_t>(l)] < next_alpha * total) ++l;
    while (r > start && csum[static_cast<size_t>(r)] > next_beta * total) --r;
    int64_t next_start = start, next_end = end;
    if (l - start > end - r) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start && next_end == end) continue;
    const double norm = l2_error(counts, bin_width, next_start, next_end, dst);
    if (norm > norm_min) break;
    norm_min = norm;
    start = next_start;
    end = next_end;
  }
  return {{static_cast<float>(lo + bin_width * static_cast<double>(start))},
          {static_cast<float>(lo + bin_width * static_cast<double>(end + 1))}};
}

MinMax search_range_entropy(const std::vector<double>& counts, double lo, double hi, int dst) {
  const auto n = static_cast<int64_t>(counts.size());
  check(n >= 2 && n % 2 == 0 && lo == -hi && hi > 0 && dst >= 2 && dst <= n,
        Errc::kInvalidArgument, "entropy range search",
        "got " + std::to_string(n) + " bins on [" + std::to_string(lo) + ", " +
            std::to_string(hi) + "] for " + std::to_string(dst) + " levels",
        "an even number of bins, at least the number of levels, on a range symmetric about 0");
  const int64_t half = n / 2;
  const double bw = (hi - lo) / static_cast<double>(n);
  std::vector<double> prefix(counts.size() + 1, 0.0);
  for (size_t i = 0; i < counts.size(); ++i) prefix[i + 1] = prefix[i] + counts[i];

  double best_kl = std::numeric_limits<double>::infinity();
  int64_t best_i = half;
  for (int64_t i = (dst + 1) / 2; i <= half; ++i) {
    // Window [half - i, half + i): the range [-i * bw, i * bw].
    const int64_t b0 = half - i, len = 2 * i;
    std::vector<double> p(counts.begin() + b0, counts.begin() + b0 + len);
    // q: the window (without outliers) merged into dst levels, each level's
    // mass spread evenly over the bins where p is non-zero.
    std::vector<double> q(static_cast<size_t>(len), 0.0);
    const int64_t m = len / dst;
    p.front() += prefix[static_cast<size_t>(b0)];                                 // left outliers
    p.back() += prefix[static_cast<size_t>(n)] - prefix[static_cast<size_t>(b0 + len)];  // right
    for (int64_t g = 0; g < dst; ++g) {
      const int64_t s = g * m, e = g == dst - 1 ? len : s + m;
      const double mass = prefix[static_cast<size_t>(b0 + e)] - prefix[static_cast<size_t>(b0 + s)];
      int64_t nonzero = 0;
      for (int64_t j = s; j < e; ++j) nonzero += p[static_cast<size_t>(j)] != 0;
      if (nonzero == 0) continue;
      for (int64_t j = s; j < e; ++j)
        if (p[static_cast<size_t>(j)] != 0) q[static_cast<size_t>(j)] = mass / static_cast<double>(nonzero);
    }
    if (!smooth(p) || !smooth(q)) continue;
    const double kl = kl_divergence(p, q);
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  const auto t = static_cast<float>(static_cast<double>(best_i) * bw);
  return {{-t}, {t}};
}

MinMax search_range_percentile(const std::vector<double>& counts, double lo, double hi,
                               double percentile, bool symmetric) {
  const auto n = static_cast<int64_t>(counts.size());
  check(n > 0 && hi > lo && percentile > 0 && percentile <= 100, Errc::kInvalidArgument,
        "percentile range search",
        "percentile " + std::to_string(percentile) + " over " + std::to_string(n) + " bins",
        "a percentile in (0, 100] and a non-empty range");
  const double bw = (hi - lo) / static_cast<double>(n);
  double total = 0;
  for (double c : counts) total += c;
  // First bin at which the cumulative share reaches `share`.
  auto first_reaching = [](const std::vector<double>& h, double share, double sum) {
    double acc = 0;
    for (size_t i = 0; i < h.size(); ++i) {
      acc += h[i];
      if (acc >= share * sum) return static_cast<int64_t>(i);
    }
    return static_cast<int64_t>(h.size()) - 1;
  };
  if (symmetric) {
    check(n % 2 == 0 && lo == -hi, Errc::kInvalidArgument, "percentile range search",
          "symmetric search on [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
          "an even number of bins on a range symmetric about 0");
    const int64_t half = n / 2;
    std::vector<double> mag(static_cast<size_t>(half));  // histogram of |x|
    for (int64_t j = 0; j < half; ++j)
      mag[static_cast<size_t>(j)] = counts[static_cast<size_t>(half + j)] + counts[static_cast<size_t>(half - 1 - j)];
    const auto t = static_cast<float>(static_cast<double>(first_reaching(mag, percentile / 100, total) + 1) * bw);
    return {{-t}, {t}};
  }
  const double cut = (100.0 - percentile) / 200.0;
  const int64_t l = first_reaching(counts, cut, total);
  const int64_t r = first_reaching(counts, 1.0 - cut, total);
  return {{static_cast<float>(lo + static_cast<double>(l) * bw)},
          {static_cast<float>(lo + static_cast<double>(r + 1) * bw)}};
}

// ---- the observer ----

const char* range_method_name(RangeMethod m) {
  switch (m) {
    case RangeMethod::kMse: return "mse";
    case RangeMethod::kEntropy: return "entropy";
    case RangeMethod::kPercentile: return "percentile";
  }
  return "?";
}

HistogramObserver::HistogramObserver(QuantSpec spec, HistogramOptions opt)
    : Observer(spec), opt_(opt), hist_(opt.capacity) {
  check(spec.axis < 0, Errc::kUnsupported, "histogram observer",
        "per-axis quantization (axis " + std::to_string(spec.axis) + ")",
        "per-tensor; use a MinMax observer per channel");
  check(opt.bins >= 2 && opt.bins % 2 == 0, Errc::kInvalidArgument, "histogram observer",
        std::to_string(opt.bins) + " bins", "an even number of bins >= 2");
}

std::string HistogramObserver::kind() const {
  return std::string("histogram_") + range_method_name(opt_.method);
}

void HistogramObserver::observe(const Tensor& x) {
  if (x.numel() == 0) return;
  const MinMax mm = find_min_max(x);  // also rejects non-float and non-finite data
  hist_.add(x.data<float>(), x.numel(), mm.min[0], mm.max[0]);
  observed_ = true;
}

MinMax HistogramObserver::range() const {
  if (hist_.empty()) return {};
  const float lo = hist_.min(), hi = hist_.max();
  if (lo == hi) return {{lo}, {hi}};
  const auto [qmin, qmax] = param_range(spec_);
  MinMax r;
  switch (opt_.method) {
    case RangeMethod::kMse:
      // PyTorch searches with 2^bits levels whatever the reduced range.
      return search_range_l2(hist_.resample(opt_.bins, lo, hi), lo, hi,
                             1 << std::min(dtype_bits(spec_.dtype), 16));
    case RangeMethod::kEntropy: {
      const double a = std::max(std::fabs(lo), std::fabs(hi));
      r = search_range_entropy(hist_.resample(opt_.bins, -a, a), -a, a,
                               static_cast<int>(std::min<int64_t>(qmax - qmin + 1, opt_.bins)));
      break;
    }
    case RangeMethod::kPercentile:
      if (spec_.symmetric) {
        const double a = std::max(std::fabs(lo), std::fabs(hi));
        r = search_range_percentile(hist_.resample(opt_.bins, -a, a), -a, a, opt_.percentile, true);
      } else {
        r = search_range_percentile(hist_.resample(opt_.bins, lo, hi), lo, hi, opt_.percentile, false);
      }
      break;
  }
  // Never wider than the data.
  r.min[0] = std::max(r.min[0], lo);
  r.max[0] = std::min(r.max[0], hi);
  return r;
}

void HistogramObserver::merge(const Observer& other) {
  check_mergeable(other);
  const auto& o = static_cast<const HistogramObserver&>(other);
  check(o.opt_.bins == opt_.bins && o.opt_.percentile == opt_.percentile, Errc::kInvalidArgument,
        kind() + " observer", "can't merge observers with different histogram options",
        "equal bins and percentile");
  hist_.merge(o.hist_);
  observed_ = observed_ || o.observed_;
}

}  // namespace qforge
