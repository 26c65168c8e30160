#include "qforge/fake_quant.h"

#include <algorithm>
#include <cmath>

#include "quant/layout.h"

namespace qforge {
namespace {

void check_inputs(const Tensor& x, const QuantParams& p, int64_t qmin, int64_t qmax) {
  check(x.dtype() == DType::kF32, Errc::kTypeMismatch, x.describe(), "can't be fake-quantized",
        "float32");
  p.validate_for(x.shape(), "fake-quantization parameters for " + x.describe());
  check(qmin < qmax, Errc::kInvalidArgument, "fake quantization",
        "quant range [" + std::to_string(qmin) + ", " + std::to_string(qmax) + "] is empty",
        "quant_min < quant_max");
}

// PyTorch's unclamped code: zero_point + nearbyint(x * (1 / scale)). Kept in
// double so that huge |x| can't overflow an integer.
double raw_code(float x, float scale, int32_t zp) {
  return static_cast<double>(zp) + std::nearbyint(x * (1.0f / scale));
}

// Calls fn(i, x, code, scale, zp) for every element.
template <typename Fn>
void for_each_code(const Tensor& x, const QuantParams& p, Fn&& fn) {
  const float* xd = x.data<float>();
  const auto l = detail::layout_of(x.shape(), p.axis, p.block_size);
  detail::for_each_element(l, p.axis, p.block_size, [&](int64_t i, int64_t k) {
    const float s = p.scale[static_cast<size_t>(k)];
    const int32_t zp = p.zero_point[static_cast<size_t>(k)];
    fn(i, raw_code(xd[i], s, zp), s, zp);
  });
}

}  // namespace

Tensor fake_quantize(const Tensor& x, const QuantParams& p, int64_t qmin, int64_t qmax) {
  check_inputs(x, p, qmin, qmax);
  Tensor y(DType::kF32, x.shape());
  float* yd = y.data<float>();
  for_each_code(x, p, [&](int64_t i, double q, float s, int32_t zp) {
    const double c = std::clamp(q, static_cast<double>(qmin), static_cast<double>(qmax));
    yd[i] = static_cast<float>((c - zp) * static_cast<double>(s));
  });
  return y;
}

Tensor fake_quantize_grad(const Tensor& grad_out, const Tensor& x, const QuantParams& p,
                          int64_t qmin, int64_t qmax) {
  check_inputs(x, p, qmin, qmax);
  check(grad_out.dtype() == DType::kF32 && grad_out.shape() == x.shape(), Errc::kShapeMismatch,
        "gradient " + grad_out.describe(), "does not match the input " + x.describe(),
        "a float32 gradient of the input's shape");
  Tensor g(DType::kF32, x.shape());
  float* gd = g.data<float>();
  const float* go = grad_out.data<float>();
  for_each_code(x, p, [&](int64_t i, double q, float, int32_t) {
    const bool inside = q >= static_cast<double>(qmin) && q <= static_cast<double>(qmax);
    gd[i] = go[i] * (inside ? 1.0f : 0.0f);  // a multiply, as PyTorch: -g * 0 is -0
  });
  return g;
}

FakeQuantize::FakeQuantize(std::unique_ptr<Observer> observer) : observer_(std::move(observer)) {
  check(observer_ != nullptr, Errc::kInvalidArgument, "FakeQuantize", "observer is null");
  std::tie(qmin_, qmax_) = param_range(observer_->spec());
}

FakeQuantize::FakeQuantize(const FakeQuantize& o)
    : observer_(o.observer_->clone()),
      qmin_(o.qmin_),
      qmax_(o.qmax_),
      observe_(o.observe_),
      fake_quant_(o.fake_quant_),
      has_params_(o.has_params_),
      params_(o.params_),
      last_input_(o.last_input_),
      last_was_fake_(o.last_was_fake_) {}

Tensor FakeQuantize::forward(const Tensor& x) {
  if (observe_) {
    observer_->observe(x);
    params_ = observer_->params();
    has_params_ = true;
  }
  last_input_ = x;
  last_was_fake_ = fake_quant_;
  if (!fake_quant_) return x;
  check(has_params_, Errc::kInvalidArgument, "FakeQuantize",
        "fake quantization is on but the observer is frozen before seeing any data",
        "at least one forward() with the observer enabled");
  return fake_quantize(x, params_, qmin_, qmax_);
}

Tensor FakeQuantize::backward(const Tensor& grad_out) const {
  check(!last_input_.empty(), Errc::kInvalidArgument, "FakeQuantize::backward",
        "called before forward()", "a forward() first");
  if (!last_was_fake_) return grad_out;
  return fake_quantize_grad(grad_out, last_input_, params_, qmin_, qmax_);
}

const QuantParams& FakeQuantize::params() const {
  check(has_params_, Errc::kInvalidArgument, "FakeQuantize", "has no parameters yet",
        "a forward() with the observer enabled");
  return params_;
}

}  // namespace qforge
