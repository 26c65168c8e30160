// The arithmetic of quantization: parameters, choosing them from a range,
// quantize / dequantize / requantize, and float16 / bfloat16 conversion.
//
// Affine quantization maps a real x to an integer q and back:
//   q = saturate(round(x / scale) + zero_point)     (ONNX QuantizeLinear)
//   x' = (q - zero_point) * scale                   (ONNX DequantizeLinear)
// round() is round-half-to-even and saturate() clamps to the storage type's
// range, as the ONNX spec says. PyTorch multiplies by the float reciprocal of
// the scale instead of dividing (fbgemm and aten's quantize_val); ScaleMode
// selects which, and the two differ only where x / scale lands within an ulp
// of a rounding tie.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qforge/dtype.h"
#include "qforge/tensor.h"

namespace qforge {

enum class Granularity { kPerTensor, kPerAxis, kPerGroup };

// How the quantized values relate to the reals. Scales are float32, as in ONNX.
struct QuantParams {
  DType dtype = DType::kU8;          // storage: i8 u8 i16 u16 i4 u4 i2 u2 (i32 for biases)
  std::vector<float> scale;          // one per tensor, per channel, or per block
  std::vector<int32_t> zero_point;   // same length as scale
  int axis = -1;                     // quantized axis for per-axis / per-group, -1 per tensor
  int64_t block_size = 0;            // per-group: elements of `axis` sharing one scale, else 0
  // How the parameters were chosen (kept so that a saved model can say it):
  bool symmetric = false;
  bool narrow_range = false;
  bool reduce_range = false;

  Granularity granularity() const {
    if (axis < 0) return Granularity::kPerTensor;
    return block_size > 0 ? Granularity::kPerGroup : Granularity::kPerAxis;
  }
  int bits() const { return dtype_bits(dtype); }
  bool is_signed() const { return dtype_info(dtype).is_signed; }
  // Storage range, the bounds quantize() saturates to: [-128, 127] for i8.
  int64_t qmin() const { return dtype_min(dtype); }
  int64_t qmax() const { return dtype_max(dtype); }
  // Throws Error if the parameters can't describe a tensor of this shape
  // (wrong count of scales, axis out of range, non-positive or non-finite scale,
  // zero point outside the storage range).
  void validate_for(const Shape& shape, const std::string& subject) const;
  std::string str() const;  // "u8 per-tensor scale=0.1 zp=3"
};

// What the user asks for; choose_params() turns it plus a range into QuantParams.
struct QuantSpec {
  DType dtype = DType::kU8;
  bool symmetric = false;
  // Drop the lowest code when choosing the scale: i8 uses [-127, 127].
  bool narrow_range = false;
  // Choose the scale for one bit less (i8 [-64, 63], u8 [0, 127]), as
  // PyTorch's reduce_range does, leaving headroom for non-VNNI x86 kernels.
  // Values are still saturated to the full storage range.
  bool reduce_range = false;
  int axis = -1;            // per-axis / per-group axis; -1 per tensor
  int64_t block_size = 0;   // per-group block along axis; 0 none
};

// The integer range the scale is chosen for: the storage range narrowed by
// narrow_range and reduce_range (PyTorch's quant_min / quant_max).
std::pair<int64_t, int64_t> param_range(const QuantSpec& spec);

// Parameters for real ranges [min[i], max[i]], one entry per tensor, channel
// or block (see the layout below). As PyTorch's observers and ONNX Runtime do:
//  * the range is first widened to contain 0, so that 0 is exact;
//  * affine: scale = (max - min) / (qmax - qmin), zero_point = qmin - round(min / scale)
//    clamped to [qmin, qmax];
//  * symmetric: scale = max(|min|, |max|) / ((qmax - qmin) / 2), zero_point 0 for
//    signed types and 2^(bits-1) for unsigned ones (PyTorch's 128 for u8);
//  * scale is at least float32 epsilon (PyTorch's eps), so an all-zero tensor or
//    min == max gives a valid scale;
//  * arithmetic in float32, as PyTorch does, so results match it bit for bit;
//    a range too wide for float32 ((max - min) overflows) is handled without
//    overflow. NaN or Inf bounds throw Error naming `subject`.
QuantParams choose_params(const QuantSpec& spec, std::span<const float> min,
                          std::span<const float> max, const std::string& subject = "range");
QuantParams choose_params(const QuantSpec& spec, float min, float max,
                          const std::string& subject = "range");

// Per-tensor, per-axis or per-block minima and maxima of a float32 tensor.
// Throws Error naming the tensor and the index of the first NaN or Inf.
struct MinMax {
  std::vector<float> min, max;
};
MinMax find_min_max(const Tensor& x, int axis = -1, int64_t block_size = 0);

// find_min_max + choose_params.
QuantParams choose_params_for(const Tensor& x, const QuantSpec& spec);

// Layout of per-group parameters (ONNX's blocked quantization): for an input
// of shape [d0, ..., dA, ..., dn] and axis A, the scales have shape
// [d0, ..., ceil(dA / block), ..., dn], row-major. Per-axis: one scale per dA.
Shape param_shape(const Shape& x, const QuantParams& p);

enum class ScaleMode {
  kDivide,             // round(x / scale): the ONNX spec, ONNX Runtime. The default.
  kMultiplyReciprocal  // round(x * (1.0f / scale)): PyTorch's quantize_per_tensor/channel.
};

// Quantizes a float32 tensor. The result has dtype p.dtype (sub-byte types
// packed, see qforge/pack.h) and carries p. NaN saturates to qmin (what the
// x86 max/min instructions give; ONNX leaves it undefined); +-Inf saturate.
Tensor quantize(const Tensor& x, const QuantParams& p, ScaleMode mode = ScaleMode::kDivide);
// Dequantizes with the tensor's own QuantParams, or with the given ones.
Tensor dequantize(const Tensor& q);
Tensor dequantize(const Tensor& q, const QuantParams& p);
// Re-expresses q with other parameters: quantize(dequantize(q), to), computed
// per element in float32 as ONNX Runtime's reference kernels do.
Tensor requantize(const Tensor& q, const QuantParams& to, ScaleMode mode = ScaleMode::kDivide);

// Element-level primitives, exposed for kernels and tests.
// Rounds half to even and saturates to [qmin, qmax] (clamping before the
// integer conversion, so huge values can't overflow).
inline int32_t quantize_value(float x, float scale, int32_t zero_point, int32_t qmin, int32_t qmax,
                              ScaleMode mode = ScaleMode::kDivide);
inline float dequantize_value(int32_t q, float scale, int32_t zero_point) {
  return static_cast<float>(static_cast<int64_t>(q) - zero_point) * scale;  // i32 codes: no overflow
}

// The inputs of ONNX QuantizeLinear / DequantizeLinear as QuantParams.
// scale: a scalar or 1-element tensor (per tensor), a 1-D tensor of
// x_shape[axis] values (per axis), or, with block_size > 0, a tensor of x's
// rank (blocked). zero_point: optional, same shape as scale; its type is the
// quantized type; without it the type is `type_if_no_zero_point` and zero
// points are 0. axis may be negative (counted from the end), as in ONNX.
QuantParams params_from_onnx(const Tensor& scale, const Tensor* zero_point, const Shape& x_shape,
                             int axis = 1, int64_t block_size = 0,
                             DType type_if_no_zero_point = DType::kU8);

// ONNX DynamicQuantizeLinear: u8, affine, per tensor, range widened to
// contain 0, scale = (max - min) / 255 (at least float32 epsilon, so an
// all-zero input gives a usable scale where the ONNX reference divides by 0).
struct DynamicQuantized {
  Tensor y;
  QuantParams params;
};
DynamicQuantized dynamic_quantize_linear(const Tensor& x);

// IEEE float16 and bfloat16, round to nearest even; NaN stays NaN, overflow
// goes to Inf (f16) and subnormals are kept.
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t h);
// Whole tensors: f32 <-> f16 / bf16 (and f64 <-> f32, and integers -> f32).
Tensor cast(const Tensor& x, DType to);

// --- implementation of the inline primitive ---
inline int32_t quantize_value(float x, float scale, int32_t zero_point, int32_t qmin, int32_t qmax,
                              ScaleMode mode) {
  // The scaling is float32 arithmetic, as in ONNX and PyTorch; the clamp and
  // the rounding run in double so that i32 bounds are exact. [lo, hi] are
  // integers, so clamping before rounding gives the same result as after.
  const double v = mode == ScaleMode::kDivide ? x / scale : x * (1.0f / scale);
  const double lo = static_cast<double>(qmin) - zero_point;
  const double hi = static_cast<double>(qmax) - zero_point;
  double c = v > lo ? v : lo;  // NaN -> lo, like x86 maxps
  c = c < hi ? c : hi;
  return static_cast<int32_t>(static_cast<int64_t>(std::nearbyint(c)) + zero_point);
}

}  // namespace qforge
