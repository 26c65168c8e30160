// Observers watch float tensors during calibration and propose quantization
// parameters (PyTorch's torch.ao.quantization observers, in C++).
//
//   MinMaxObserver              running min / max (per tensor, per channel or per group)
//   MovingAverageMinMaxObserver exponential moving average of each batch's min / max
//   HistogramObserver           a histogram, and a range chosen from it by L2 error
//                               (PyTorch's search), KL divergence (TensorRT / ONNX
//                               Runtime "entropy") or a percentile
//
// Per-channel variants are the same classes with QuantSpec::axis >= 0.
// Observers of the same kind and configuration merge, so calibration can be
// split across threads or machines; MinMax and Histogram merge exactly (the
// merged observer equals one that saw all the data).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qforge/quant.h"
#include "qforge/tensor.h"

namespace qforge {

class Observer {
 public:
  explicit Observer(QuantSpec spec) : spec_(spec) {}
  virtual ~Observer() = default;

  // Records a float32 tensor. An empty tensor is ignored (as PyTorch does);
  // NaN or Inf throws Error naming the tensor and the index.
  virtual void observe(const Tensor& x) = 0;
  // The real range chosen so far, per tensor / channel / group.
  virtual MinMax range() const = 0;
  // Parameters for range(); throws Error if nothing was observed.
  virtual QuantParams params() const;
  // Folds in another observer of the same kind and spec; throws Error otherwise.
  virtual void merge(const Observer& other) = 0;
  virtual std::string kind() const = 0;
  virtual std::unique_ptr<Observer> clone() const = 0;
  bool has_data() const { return observed_; }
  const QuantSpec& spec() const { return spec_; }

 protected:
  void check_mergeable(const Observer& other) const;
  QuantSpec spec_;
  bool observed_ = false;
};

class MinMaxObserver : public Observer {
 public:
  explicit MinMaxObserver(QuantSpec spec) : Observer(spec) {}
  void observe(const Tensor& x) override;
  MinMax range() const override;
  void merge(const Observer& other) override;
  std::string kind() const override { return "minmax"; }
  std::unique_ptr<Observer> clone() const override { return std::make_unique<MinMaxObserver>(*this); }

 private:
  MinMax mm_;
};

// PyTorch's MovingAverage(PerChannel)MinMaxObserver: the first batch sets the
// range; each later one moves it by c * (batch_min - min), c = 0.01 by default.
// merge() averages the two ranges weighted by their batch counts, which is not
// the same as one observer over all batches (a moving average depends on the
// order of the batches); it is what data-parallel calibration can do.
class MovingAverageMinMaxObserver : public Observer {
 public:
  explicit MovingAverageMinMaxObserver(QuantSpec spec, float averaging_constant = 0.01f);
  void observe(const Tensor& x) override;
  MinMax range() const override;
  void merge(const Observer& other) override;
  std::string kind() const override { return "moving_average_minmax"; }
  std::unique_ptr<Observer> clone() const override {
    return std::make_unique<MovingAverageMinMaxObserver>(*this);
  }

 private:
  float c_;
  int64_t batches_ = 0;
  MinMax mm_;
};

// An exact, mergeable histogram. Bins have width 2^k and sit on multiples of
// 2^k, at most `capacity` of them between the data's min and max; when new
// data widen the range past capacity, k grows and pairs of bins merge. k is
// a function of the data's min and max only, so the histogram is a function
// of the multiset of values seen: batch order and splitting don't change it.
// With capacity 4096 a bin is at most 1/2047 of the range.
class Histogram {
 public:
  explicit Histogram(int capacity = 4096);
  void add(const float* x, int64_t n);  // x must be finite
  // The same, for a caller that already knows the batch's min and max.
  void add(const float* x, int64_t n, float batch_min, float batch_max);
  void merge(const Histogram& other);
  bool empty() const { return total_ == 0; }
  uint64_t total() const { return total_; }
  float min() const { return min_; }
  float max() const { return max_; }
  int exponent() const { return k_; }            // bin width is 2^exponent()
  int64_t first_bin() const { return first_; }  // counts()[0] covers [first * 2^k, (first + 1) * 2^k)
  const std::vector<uint64_t>& counts() const { return counts_; }
  int capacity() const { return capacity_; }
  bool operator==(const Histogram& o) const = default;

  // The counts spread over `bins` equal bins on [lo, hi], assuming values are
  // spread evenly inside each bin (clipped to the data's [min, max]). Values
  // below lo or above hi land in the first or last bin.
  std::vector<double> resample(int bins, double lo, double hi) const;

 private:
  void cover(float lo, float hi);  // re-bins so that [lo, hi] fits
  int capacity_;
  int k_ = 0;
  int64_t first_ = 0;
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  float min_ = 0, max_ = 0;
};

enum class RangeMethod {
  kMse,         // least squared error: PyTorch HistogramObserver's search (Caffe2's
                // NormMinimization), greedy on 2048 bins over [min, max]
  kEntropy,     // least KL divergence between the clipped and the quantized
                // distribution (TensorRT, ONNX Runtime's CalibrationMethod.Entropy)
  kPercentile,  // keep `percentile` % of the values, cut evenly at both ends
                // (|x| for symmetric specs), as ONNX Runtime's Percentile method
};
const char* range_method_name(RangeMethod m);

struct HistogramOptions {
  RangeMethod method = RangeMethod::kMse;
  int bins = 2048;             // resolution of the search
  double percentile = 99.999;  // for kPercentile
  int capacity = 4096;         // of the underlying exact Histogram
};

// Per tensor only (like PyTorch's HistogramObserver).
class HistogramObserver : public Observer {
 public:
  explicit HistogramObserver(QuantSpec spec, HistogramOptions opt = {});
  void observe(const Tensor& x) override;
  MinMax range() const override;  // the range the method chooses
  void merge(const Observer& other) override;
  std::string kind() const override;
  std::unique_ptr<Observer> clone() const override {
    return std::make_unique<HistogramObserver>(*this);
  }
  const Histogram& histogram() const { return hist_; }
  const HistogramOptions& options() const { return opt_; }

 private:
  HistogramOptions opt_;
  Histogram hist_;
};

// The range searches on their own, over `counts` in equal bins on [lo, hi]
// (for tests against other implementations' histograms, and for reuse).
// dst_levels: number of quantization levels (256 for 8 bits).
MinMax search_range_l2(const std::vector<double>& counts, double lo, double hi, int dst_levels);
MinMax search_range_entropy(const std::vector<double>& counts, double lo, double hi,
                            int dst_levels);
MinMax search_range_percentile(const std::vector<double>& counts, double lo, double hi,
                               double percentile, bool symmetric);

}  // namespace qforge
