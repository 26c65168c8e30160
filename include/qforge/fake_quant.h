// Fake quantization for quantization-aware training: values are quantized
// and dequantized in the forward pass so that training sees the rounding,
// and the gradient passes straight through (the straight-through estimator),
// except where the value was clipped, where it is zero. Follows PyTorch's
// fake_quantize_per_tensor_affine / fake_quantize_per_channel_affine and
// torch.ao.quantization.FakeQuantize:
//   q    = zero_point + round(x * (1 / scale))          (float32, half to even)
//   y    = (clamp(q, quant_min, quant_max) - zero_point) * scale
//   dy/dx = 1 if quant_min <= q <= quant_max else 0
#pragma once

#include <cstdint>
#include <memory>
#include <tuple>

#include "qforge/observer.h"
#include "qforge/quant.h"
#include "qforge/tensor.h"

namespace qforge {

// Forward; quant_min / quant_max are the clipping range (param_range() of
// the spec the parameters came from, as PyTorch's FakeQuantize uses).
Tensor fake_quantize(const Tensor& x, const QuantParams& p, int64_t quant_min, int64_t quant_max);
// Backward: grad_out where x was inside the clipping range, else 0.
Tensor fake_quantize_grad(const Tensor& grad_out, const Tensor& x, const QuantParams& p,
                          int64_t quant_min, int64_t quant_max);

// A fake-quantization point with its own observer, for QAT. forward()
// observes (unless frozen), updates the parameters, and fake-quantizes
// (unless disabled); backward() applies the straight-through estimator to
// the input of the last forward().
class FakeQuantize {
 public:
  // Default: PyTorch's default_fake_quant, a moving-average observer.
  explicit FakeQuantize(std::unique_ptr<Observer> observer);
  FakeQuantize(const FakeQuantize& o);
  FakeQuantize& operator=(const FakeQuantize&) = delete;

  Tensor forward(const Tensor& x);
  Tensor backward(const Tensor& grad_out) const;

  void enable_observer(bool on) { observe_ = on; }    // off: freeze the parameters
  void enable_fake_quant(bool on) { fake_quant_ = on; }  // off: pass values through
  bool observer_enabled() const { return observe_; }
  bool fake_quant_enabled() const { return fake_quant_; }
  const QuantParams& params() const;  // throws if no forward() has set them
  const Observer& observer() const { return *observer_; }
  int64_t quant_min() const { return qmin_; }
  int64_t quant_max() const { return qmax_; }

 private:
  std::unique_ptr<Observer> observer_;
  int64_t qmin_, qmax_;
  bool observe_ = true, fake_quant_ = true;
  bool has_params_ = false;
  QuantParams params_;
  Tensor last_input_;  // for backward()
  bool last_was_fake_ = false;
};

}  // namespace qforge
