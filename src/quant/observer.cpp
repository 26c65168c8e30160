// MinMax and MovingAverage observers (see qforge/observer.h).
#include <algorithm>
#include <limits>

#include "qforge/observer.h"

namespace qforge {

QuantParams Observer::params() const {
  check(observed_, Errc::kInvalidArgument, kind() + " observer", "has observed no data",
        "at least one non-empty tensor before asking for parameters");
  const MinMax r = range();
  return choose_params(spec_, r.min, r.max, kind() + " observer");
}

void Observer::check_mergeable(const Observer& other) const {
  const QuantSpec& a = spec_;
  const QuantSpec& b = other.spec_;
  const bool same = kind() == other.kind() && a.dtype == b.dtype && a.symmetric == b.symmetric &&
                    a.narrow_range == b.narrow_range && a.reduce_range == b.reduce_range &&
                    a.axis == b.axis && a.block_size == b.block_size;
  check(same, Errc::kInvalidArgument, kind() + " observer",
        "can't merge a " + other.kind() + " observer with a different configuration",
        "an observer of the same kind and QuantSpec");
}

namespace {

// Per-channel observers need the same channel (or group) count every time.
void check_channels(const MinMax& have, const MinMax& got, const std::string& subject) {
  check(have.min.size() == got.min.size(), Errc::kShapeMismatch, subject,
        "has " + std::to_string(got.min.size()) + " channels after " +
            std::to_string(have.min.size()),
        "the same channel count in every batch");
}

// Folds b into a element-wise (min of mins, max of maxes); an empty a takes b.
void fold(MinMax& a, const MinMax& b, const std::string& subject) {
  if (a.min.empty()) {
    a = b;
    return;
  }
  check_channels(a, b, subject);
  for (size_t i = 0; i < a.min.size(); ++i) {
    a.min[i] = std::min(a.min[i], b.min[i]);
    a.max[i] = std::max(a.max[i], b.max[i]);
  }
}

}  // namespace

void MinMaxObserver::observe(const Tensor& x) {
  if (x.numel() == 0) return;
  fold(mm_, find_min_max(x, spec_.axis, spec_.block_size), x.describe());
  observed_ = true;
}

MinMax MinMaxObserver::range() const { return mm_; }

void MinMaxObserver::merge(const Observer& other) {
  check_mergeable(other);
  const auto& o = static_cast<const MinMaxObserver&>(other);
  if (!o.observed_) return;
  fold(mm_, o.mm_, "merged minmax observer");
  observed_ = true;
}

MovingAverageMinMaxObserver::MovingAverageMinMaxObserver(QuantSpec spec, float averaging_constant)
    : Observer(spec), c_(averaging_constant) {
  check(c_ > 0.0f && c_ <= 1.0f, Errc::kInvalidArgument, "moving average observer",
        "averaging constant " + std::to_string(c_), "a value in (0, 1]");
}

void MovingAverageMinMaxObserver::observe(const Tensor& x) {
  if (x.numel() == 0) return;
  const MinMax cur = find_min_max(x, spec_.axis, spec_.block_size);
  if (mm_.min.empty()) {
    mm_ = cur;
  } else {
    check_channels(mm_, cur, x.describe());
    // float32, in PyTorch's order: min + c * (cur - min).
    for (size_t i = 0; i < cur.min.size(); ++i) {
      mm_.min[i] = mm_.min[i] + c_ * (cur.min[i] - mm_.min[i]);
      mm_.max[i] = mm_.max[i] + c_ * (cur.max[i] - mm_.max[i]);
    }
  }
  ++batches_;
  observed_ = true;
}

MinMax MovingAverageMinMaxObserver::range() const { return mm_; }

void MovingAverageMinMaxObserver::merge(const Observer& other) {
  check_mergeable(other);
  const auto& o = static_cast<const MovingAverageMinMaxObserver&>(other);
  if (!o.observed_) return;
  if (!observed_) {
    *this = o;
    return;
  }
  check_channels(mm_, o.mm_, "merged moving average observer");
  const double wa = static_cast<double>(batches_), wb = static_cast<double>(o.batches_);
  for (size_t i = 0; i < mm_.min.size(); ++i) {
    mm_.min[i] = static_cast<float>((mm_.min[i] * wa + o.mm_.min[i] * wb) / (wa + wb));
    mm_.max[i] = static_cast<float>((mm_.max[i] * wa + o.mm_.max[i] * wb) / (wa + wb));
  }
  batches_ += o.batches_;
}

}  // namespace qforge
