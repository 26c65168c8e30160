// Choosing quantization parameters from a range (see qforge/quant.h).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <limits>

#include "kernels/kernels.h"
#include "qforge/pack.h"
#include "qforge/quant.h"
#include "quant/layout.h"

namespace qforge {
using detail::ParamLayout;
using detail::layout_of;
using detail::check_axis;
namespace {

std::string fmt_float(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

bool is_quant_storage(DType t) {
  return dtype_is_integer(t) && t != DType::kI64;
}

}  // namespace

std::pair<int64_t, int64_t> param_range(const QuantSpec& spec) {
  QFORGE_CHECK(is_quant_storage(spec.dtype), Errc::kTypeMismatch, "quantization type",
               std::string(dtype_name(spec.dtype)) + " can't hold quantized values",
               "i8 u8 i16 u16 i32 i4 u4 i2 u2");
  int64_t lo = dtype_min(spec.dtype), hi = dtype_max(spec.dtype);
  if (spec.reduce_range) {
    // One bit less, as PyTorch's calculate_qmin_qmax: i8 [-64, 63], u8 [0, 127].
    const int b = dtype_bits(spec.dtype) - 1;
    if (dtype_info(spec.dtype).is_signed) {
      lo = -(int64_t{1} << (b - 1));
      hi = (int64_t{1} << (b - 1)) - 1;
    } else {
      hi = (int64_t{1} << b) - 1;
    }
  }
  if (spec.narrow_range) lo += 1;  // i8 [-127, 127]: symmetric around 0
  // 2-bit types with both options keep one code or none: no scale fits.
  QFORGE_CHECK(lo < hi, Errc::kInvalidArgument,
               "quantization type " + std::string(dtype_name(spec.dtype)),
               "reduce_range and narrow_range leave the code range [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "], too few codes to choose a scale for",
               "at least two codes: drop reduce_range or narrow_range");
  return {lo, hi};
}

QuantParams choose_params(const QuantSpec& spec, std::span<const float> mins,
                          std::span<const float> maxs, const std::string& subject) {
  QFORGE_CHECK(
      mins.size() == maxs.size() && !mins.empty(), Errc::kInvalidArgument, subject,
      std::to_string(mins.size()) + " minima and " + std::to_string(maxs.size()) + " maxima",
      "the same non-zero number of each");
  const auto [qmin, qmax] = param_range(spec);
  QuantParams p;
  p.dtype = spec.dtype;
  p.axis = spec.axis;
  p.block_size = spec.block_size;
  p.symmetric = spec.symmetric;
  p.narrow_range = spec.narrow_range;
  p.reduce_range = spec.reduce_range;
  p.scale.resize(mins.size());
  p.zero_point.resize(mins.size());
  const float eps = std::numeric_limits<float>::epsilon();  // PyTorch's default eps
  const auto levels = static_cast<float>(qmax - qmin);
  for (size_t i = 0; i < mins.size(); ++i) {
    const float lo = mins[i], hi = maxs[i];
    // The messages are built only on failure: dynamic quantization chooses
    // parameters at every step of a recurrent layer.
    auto where = [&] {
      return mins.size() == 1 ? subject : subject + " (group " + std::to_string(i) + ")";
    };
    if (!(std::isfinite(lo) && std::isfinite(hi)))
      throw Error(Errc::kInvalidArgument, where(),
                  "range [" + fmt_float(lo) + ", " + fmt_float(hi) + "] is not finite",
                  "finite values; the data contains NaN or Inf");
    if (!(lo <= hi))
      throw Error(Errc::kInvalidArgument, where(),
                  "min " + fmt_float(lo) + " is greater than max " + fmt_float(hi), "min <= max");
    const float neg = std::min(lo, 0.0f), pos = std::max(hi, 0.0f);  // widen to contain 0
    float scale;
    int64_t zp;
    if (spec.symmetric) {
      const float amax = std::max(-neg, pos);
      scale = std::max(amax / (levels / 2), eps);
      zp = dtype_info(spec.dtype).is_signed ? 0 : int64_t{1} << (dtype_bits(spec.dtype) - 1);
    } else {
      float width = pos - neg;
      // A range wider than FLT_MAX: divide first (not bit-identical to PyTorch,
      // which returns inf here, but finite and within an ulp of the true value).
      scale = std::isfinite(width) ? width / levels : pos / levels - neg / levels;
      scale = std::max(scale, eps);
      zp = qmin - static_cast<int64_t>(std::nearbyint(neg / scale));
      zp = std::clamp(zp, qmin, qmax);
    }
    p.scale[i] = scale;
    p.zero_point[i] = static_cast<int32_t>(zp);
  }
  return p;
}

QuantParams choose_params(const QuantSpec& spec, float min, float max, const std::string& subject) {
  QFORGE_CHECK(spec.axis < 0, Errc::kInvalidArgument, subject,
               "one range given for per-axis quantization", "one range per channel or block");
  return choose_params(spec, std::span<const float>(&min, 1), std::span<const float>(&max, 1),
                       subject);
}

MinMax find_min_max(const Tensor& x, int axis, int64_t block_size) {
  // Per tensor, the hot case (dynamic quantization of every activation):
  // the kernel table's vector min/max, which also tells whether some value
  // is NaN or infinite (then the loop below finds it for the error).
  if (axis < 0 && x.dtype() == DType::kF32 && x.numel() > 0) {
    float lo = 0.0f, hi = 0.0f;
    if (kernels::kernels().minmax_f32(x.data<float>(), x.numel(), &lo, &hi)) return MinMax{{lo}, {hi}};
  }
  const std::string subject = x.describe();
  check(x.dtype() == DType::kF32, Errc::kTypeMismatch, subject, "is not float32", "f32 data");
  check(x.numel() > 0, Errc::kInvalidArgument, subject, "is empty",
        "at least one element to take a range from");
  check_axis(x.shape(), axis, block_size, subject);
  const ParamLayout l = layout_of(x.shape(), axis, block_size);
  const bool blocked = axis >= 0 && block_size > 0;
  const int64_t n = axis < 0 ? 1 : (blocked ? l.outer * l.groups * l.inner : l.axis_dim);
  MinMax r;
  r.min.assign(static_cast<size_t>(n), std::numeric_limits<float>::infinity());
  r.max.assign(static_cast<size_t>(n), -std::numeric_limits<float>::infinity());
  const float* d = x.data<float>();
  detail::for_each_element(l, axis, block_size, [&](int64_t idx, int64_t k) {
    const float v = d[idx];
    if (!std::isfinite(v))
      throw Error(Errc::kInvalidArgument, subject,
                  std::string(std::isnan(v) ? "NaN" : "Inf") + " at flat index " +
                      std::to_string(idx),
                  "finite values to choose a quantization range from");
    r.min[static_cast<size_t>(k)] = std::min(r.min[static_cast<size_t>(k)], v);
    r.max[static_cast<size_t>(k)] = std::max(r.max[static_cast<size_t>(k)], v);
  });
  return r;
}

QuantParams choose_params_for(const Tensor& x, const QuantSpec& spec) {
  const MinMax mm = find_min_max(x, spec.axis, spec.block_size);
  return choose_params(spec, mm.min, mm.max, x.describe());
}

Shape param_shape(const Shape& x, const QuantParams& p) {
  if (p.axis < 0) return {};
  if (p.block_size <= 0) return {x[static_cast<size_t>(p.axis)]};
  Shape s = x;
  auto& d = s[static_cast<size_t>(p.axis)];
  d = (d + p.block_size - 1) / p.block_size;
  return s;
}

QuantParams params_from_onnx(const Tensor& scale, const Tensor* zero_point, const Shape& x_shape,
                             int axis, int64_t block_size, DType type_if_no_zero_point) {
  check(scale.dtype() == DType::kF32, Errc::kTypeMismatch, "scale " + scale.describe(),
        "is not float32", "a float32 scale");
  QuantParams p;
  p.dtype = zero_point ? zero_point->dtype() : type_if_no_zero_point;
  const float* s = scale.data<float>();
  p.scale.assign(s, s + scale.numel());
  if (zero_point) {
    check(zero_point->shape() == scale.shape(), Errc::kShapeMismatch,
          "zero point " + zero_point->describe(), "does not match scale " + scale.describe(),
          "the scale's shape");
    p.zero_point.resize(static_cast<size_t>(zero_point->numel()));
    load_codes(zero_point->raw(), zero_point->numel(), zero_point->dtype(), p.zero_point.data());
  } else {
    p.zero_point.assign(p.scale.size(), 0);
  }
  // A scalar or a single value is per tensor (for a 1-element 1-D scale on
  // an axis of size 1 the two readings give the same numbers).
  const bool per_tensor = block_size == 0 && scale.rank() <= 1 && scale.numel() == 1;
  if (!per_tensor) {
    const int r = static_cast<int>(x_shape.size());
    p.axis = axis < 0 ? axis + r : axis;
    p.block_size = block_size;
  }
  p.validate_for(x_shape, "quantization parameters " + scale.describe());
  return p;
}

DynamicQuantized dynamic_quantize_linear(const Tensor& x) {
  QuantSpec spec;
  spec.dtype = DType::kU8;
  DynamicQuantized r;
  r.params = choose_params_for(x, spec);
  r.y = quantize(x, r.params);
  return r;
}

void QuantParams::validate_for(const Shape& shape, const std::string& subject) const {
  check(is_quant_storage(dtype), Errc::kTypeMismatch, subject,
        "quantized type " + std::string(dtype_name(dtype)) + " can't hold quantized values",
        "i8 u8 i16 u16 i32 i4 u4 i2 u2");
  check_axis(shape, axis, block_size, subject);
  const int64_t want = shape_numel(param_shape(shape, *this));
  check(static_cast<int64_t>(scale.size()) == want, Errc::kShapeMismatch, subject,
        std::to_string(scale.size()) + " scales for shape " + shape_str(shape) +
            (axis >= 0 ? " on axis " + std::to_string(axis) : std::string()),
        std::to_string(want));
  check(zero_point.size() == scale.size(), Errc::kShapeMismatch, subject,
        std::to_string(zero_point.size()) + " zero points for " + std::to_string(scale.size()) +
            " scales",
        "one zero point per scale");
  for (size_t i = 0; i < scale.size(); ++i) {
    check(std::isfinite(scale[i]) && scale[i] > 0, Errc::kInvalidArgument, subject,
          "scale[" + std::to_string(i) + "] is " + fmt_float(scale[i]),
          "a finite scale > 0");
    check(zero_point[i] >= qmin() && zero_point[i] <= qmax(), Errc::kInvalidArgument, subject,
          "zero_point[" + std::to_string(i) + "] is " + std::to_string(zero_point[i]),
          "a value in [" + std::to_string(qmin()) + ", " + std::to_string(qmax()) + "] for " +
              std::string(dtype_name(dtype)));
  }
}

std::string QuantParams::str() const {
  std::string r(dtype_name(dtype));
  switch (granularity()) {
    case Granularity::kPerTensor: r += " per-tensor"; break;
    case Granularity::kPerAxis: r += " per-axis(" + std::to_string(axis) + ")"; break;
    case Granularity::kPerGroup:
      r += " per-group(axis " + std::to_string(axis) + ", block " + std::to_string(block_size) + ")";
      break;
  }
  if (symmetric) r += " symmetric";
  if (scale.size() == 1) {
    r += " scale=" + fmt_float(scale[0]) + " zp=" + std::to_string(zero_point[0]);
  } else {
    r += " (" + std::to_string(scale.size()) + " scales)";
  }
  return r;
}

}  // namespace qforge
