#include "qforge/dtype.h"

#include <array>
#include <string>

#include "qforge/error.h"

namespace qforge {
namespace {

// ONNX TensorProto.DataType values (onnx.proto): FLOAT=1 UINT8=2 INT8=3
// UINT16=4 INT16=5 INT32=6 INT64=7 BOOL=9 FLOAT16=10 DOUBLE=11 BFLOAT16=16
// UINT4=21 INT4=22. ONNX 1.12 has no 2-bit type.
constexpr std::array<DTypeInfo, kNumDTypes> kTable = {{
    {DType::kF32, "f32", 32, true, true, false, 1},
    {DType::kF16, "f16", 16, true, true, false, 10},
    {DType::kBF16, "bf16", 16, true, true, false, 16},
    {DType::kF64, "f64", 64, true, true, false, 11},
    {DType::kI64, "i64", 64, false, true, false, 7},
    {DType::kI32, "i32", 32, false, true, false, 6},
    {DType::kI16, "i16", 16, false, true, false, 5},
    {DType::kU16, "u16", 16, false, false, false, 4},
    {DType::kI8, "i8", 8, false, true, false, 3},
    {DType::kU8, "u8", 8, false, false, false, 2},
    {DType::kBool, "bool", 8, false, false, false, 9},
    {DType::kI4, "i4", 4, false, true, true, 22},
    {DType::kU4, "u4", 4, false, false, true, 21},
    {DType::kI2, "i2", 2, false, true, true, 0},
    {DType::kU2, "u2", 2, false, false, true, 0},
}};

constexpr bool table_in_enum_order() {
  for (int i = 0; i < kNumDTypes; ++i)
    if (static_cast<int>(kTable[i].dtype) != i) return false;
  return true;
}
static_assert(table_in_enum_order(), "kTable rows must follow the DType enum order");

}  // namespace

const DTypeInfo& dtype_info(DType t) { return kTable[static_cast<int>(t)]; }

DType dtype_from_name(std::string_view name) {
  for (const auto& row : kTable)
    if (row.name == name) return row.dtype;
  throw Error(Errc::kInvalidArgument, "dtype '" + std::string(name) + "'", "unknown type name",
              "one of f32 f16 bf16 f64 i64 i32 i16 u16 i8 u8 bool i4 u4 i2 u2");
}

DType dtype_from_onnx(int onnx_type) {
  for (const auto& row : kTable)
    if (row.onnx != 0 && row.onnx == onnx_type) return row.dtype;
  throw Error(Errc::kUnsupported, "ONNX data type " + std::to_string(onnx_type),
              "has no qforge equivalent",
              "FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT64, INT32, INT16, UINT16, INT8, UINT8, BOOL, "
              "INT4 or UINT4");
}

int64_t storage_bytes(DType t, int64_t n) {
  const int bits = dtype_bits(t);
  return (n * bits + 7) / 8;
}

int64_t dtype_min(DType t) {
  const auto& i = dtype_info(t);
  if (i.is_float || t == DType::kBool) return 0;
  if (i.bits == 64) return INT64_MIN;  // -(1 << 63) would overflow
  return i.is_signed ? -(int64_t{1} << (i.bits - 1)) : 0;
}

int64_t dtype_max(DType t) {
  const auto& i = dtype_info(t);
  if (t == DType::kBool) return 1;
  if (i.is_float) return 0;
  if (i.bits == 64) return INT64_MAX;
  return i.is_signed ? (int64_t{1} << (i.bits - 1)) - 1 : (int64_t{1} << i.bits) - 1;
}

}  // namespace qforge
