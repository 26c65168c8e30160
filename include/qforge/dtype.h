// Element types. One row per type in a table (dtype.cpp): adding a type is
// adding a row. Packed types (i4/u4/i2/u2) store several elements per byte;
// their layout is documented in qforge/pack.h.
#pragma once

#include <cstdint>
#include <string_view>

namespace qforge {

enum class DType : uint8_t {
  kF32, kF16, kBF16, kF64,
  kI64, kI32, kI16, kU16, kI8, kU8, kBool,
  kI4, kU4, kI2, kU2,
};
inline constexpr int kNumDTypes = 15;

struct DTypeInfo {
  DType dtype;
  std::string_view name;  // short name used in messages and on the CLI: "f32", "u4"
  int bits;               // bits per element: 32, 16, 8, 4, 2, or 1*8 for bool
  bool is_float;
  bool is_signed;         // for integers; floats are signed too
  bool is_packed;         // fewer than 8 bits per element, several per byte
  int onnx;               // onnx::TensorProto::DataType value, 0 where ONNX has none
};

const DTypeInfo& dtype_info(DType t);
inline std::string_view dtype_name(DType t) { return dtype_info(t).name; }
inline int dtype_bits(DType t) { return dtype_info(t).bits; }
inline bool dtype_is_integer(DType t) { return !dtype_info(t).is_float && t != DType::kBool; }

// Parses a short name ("f32", "i8", ...); throws qforge::Error if unknown.
DType dtype_from_name(std::string_view name);
// Maps an ONNX TensorProto data type; throws qforge::Error if qforge has no such type.
DType dtype_from_onnx(int onnx_type);

// Bytes needed to store n elements of t, densely packed (packed types round up).
int64_t storage_bytes(DType t, int64_t n);

// The integer range of a quantized storage type, e.g. [-128, 127] for i8.
int64_t dtype_min(DType t);
int64_t dtype_max(DType t);

// C++ type to DType, for typed accessors.
template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::kF32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::kF64; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::kI64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::kI32; };
template <> struct DTypeOf<int16_t> { static constexpr DType value = DType::kI16; };
template <> struct DTypeOf<uint16_t> { static constexpr DType value = DType::kU16; };
template <> struct DTypeOf<int8_t> { static constexpr DType value = DType::kI8; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::kU8; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::kBool; };

}  // namespace qforge
