// quantize / dequantize / requantize over whole tensors, and float16 / bfloat16.
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"
#include "qforge/pack.h"
#include "qforge/quant.h"
#include "quant/layout.h"

namespace qforge {
namespace {

void check_params(const Tensor& x, const QuantParams& p) {
  p.validate_for(x.shape(), "quantization parameters for " + x.describe());
}

}  // namespace

Tensor quantize(const Tensor& x, const QuantParams& p, ScaleMode mode) {
  check(x.dtype() == DType::kF32, Errc::kTypeMismatch, x.describe(), "can't be quantized",
        "float32 input");
  check_params(x, p);
  const auto qmin = static_cast<int32_t>(p.qmin()), qmax = static_cast<int32_t>(p.qmax());
  const float* xd = x.data<float>();
  Tensor q(p.dtype, x.shape());
  q.set_qparams(std::make_shared<QuantParams>(p));
  q.set_name(x.name());
  if (p.axis < 0 && mode == ScaleMode::kDivide && (p.dtype == DType::kU8 || p.dtype == DType::kI8)) {
    const auto& k = kernels::kernels();  // the common case: SIMD per-tensor 8-bit
    if (p.dtype == DType::kU8)
      k.quantize_u8(xd, x.numel(), p.scale[0], p.zero_point[0], qmin, qmax, q.data<uint8_t>());
    else
      k.quantize_i8(xd, x.numel(), p.scale[0], p.zero_point[0], qmin, qmax, q.data<int8_t>());
    return q;
  }
  const auto l = detail::layout_of(x.shape(), p.axis, p.block_size);
  std::vector<int32_t> codes(static_cast<size_t>(x.numel()));
  detail::for_each_element(l, p.axis, p.block_size, [&](int64_t i, int64_t k) {
    const auto ks = static_cast<size_t>(k);
    codes[static_cast<size_t>(i)] =
        quantize_value(xd[i], p.scale[ks], p.zero_point[ks], qmin, qmax, mode);
  });
  store_codes(codes.data(), x.numel(), p.dtype, q.raw());
  return q;
}

Tensor dequantize(const Tensor& q) {
  check(q.qparams() != nullptr, Errc::kInvalidArgument, q.describe(),
        "has no quantization parameters", "a quantized tensor, or explicit parameters");
  return dequantize(q, *q.qparams());
}

Tensor dequantize(const Tensor& q, const QuantParams& p) {
  check(q.dtype() == p.dtype, Errc::kTypeMismatch, q.describe(),
        "does not have the parameters' type", std::string(dtype_name(p.dtype)));
  check_params(q, p);
  Tensor x(DType::kF32, q.shape());
  x.set_name(q.name());
  float* xd = x.data<float>();
  if (p.axis < 0 && (p.dtype == DType::kU8 || p.dtype == DType::kI8)) {
    const auto& k = kernels::kernels();
    if (p.dtype == DType::kU8)
      k.dequantize_u8(q.data<uint8_t>(), q.numel(), p.scale[0], p.zero_point[0], xd);
    else
      k.dequantize_i8(q.data<int8_t>(), q.numel(), p.scale[0], p.zero_point[0], xd);
    return x;
  }
  std::vector<int32_t> codes(static_cast<size_t>(q.numel()));
  load_codes(q.raw(), q.numel(), q.dtype(), codes.data());
  const auto l = detail::layout_of(q.shape(), p.axis, p.block_size);
  detail::for_each_element(l, p.axis, p.block_size, [&](int64_t i, int64_t k) {
    const auto ks = static_cast<size_t>(k);
    xd[i] = dequantize_value(codes[static_cast<size_t>(i)], p.scale[ks], p.zero_point[ks]);
  });
  return x;
}

Tensor requantize(const Tensor& q, const QuantParams& to, ScaleMode mode) {
  return quantize(dequantize(q), to, mode);
}

// ---- float16 / bfloat16 ----

uint16_t f32_to_f16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t exp = (x >> 23) & 0xffu;
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) {  // Inf or NaN; keep NaN quiet and non-zero
    return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0u));
  }
  const int e = static_cast<int>(exp) - 127 + 15;  // rebias
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit 1.
    if (e < -10) return static_cast<uint16_t>(sign);  // below half the smallest subnormal
    mant |= 0x800000u;
    const int shift = 14 - e;  // 24-bit mantissa down to the 10-bit subnormal field
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;  // ties to even
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: fine
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    x = sign;
  } else {  // subnormal half: exact in float32
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  return std::bit_cast<float>(x);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  const uint32_t lsb = (x >> 16) & 1u;
  return static_cast<uint16_t>((x + 0x7fffu + lsb) >> 16);  // ties to even; overflow -> Inf
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

Tensor cast(const Tensor& x, DType to) {
  const int64_t n = x.numel();
  if (x.dtype() == to) return x.clone();
  Tensor y(to, x.shape());
  y.set_name(x.name());
  const DType from = x.dtype();
  if (from == DType::kF32 && (to == DType::kF16 || to == DType::kBF16)) {
    const float* s = x.data<float>();
    auto* d = static_cast<uint16_t*>(y.raw());
    for (int64_t i = 0; i < n; ++i) d[i] = to == DType::kF16 ? f32_to_f16(s[i]) : f32_to_bf16(s[i]);
    return y;
  }
  if ((from == DType::kF16 || from == DType::kBF16) && to == DType::kF32) {
    const auto* s = static_cast<const uint16_t*>(x.raw());
    float* d = y.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = from == DType::kF16 ? f16_to_f32(s[i]) : bf16_to_f32(s[i]);
    return y;
  }
  if (from == DType::kF64 && to == DType::kF32) {
    const double* s = x.data<double>();
    float* d = y.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(s[i]);
    return y;
  }
  if (from == DType::kF32 && to == DType::kF64) {
    const float* s = x.data<float>();
    double* d = y.data<double>();
    for (int64_t i = 0; i < n; ++i) d[i] = s[i];
    return y;
  }
  if (from == DType::kI64 && to == DType::kF32) {  // load_codes has no i64
    const int64_t* s = x.data<int64_t>();
    float* d = y.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(s[i]);
    return y;
  }
  if (to == DType::kF32 && dtype_is_integer(from) && from != DType::kI64) {
    std::vector<int32_t> codes(static_cast<size_t>(n));
    load_codes(x.raw(), n, from, codes.data());
    float* d = y.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(codes[static_cast<size_t>(i)]);
    return y;
  }
  throw Error(Errc::kUnsupported, x.describe(),
              "cast to " + std::string(dtype_name(to)) + " is not implemented",
              "f32<->f16, f32<->bf16, f32<->f64 or integer->f32");
}

}  // namespace qforge
