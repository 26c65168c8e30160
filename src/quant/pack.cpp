#include "qforge/pack.h"

#include <cstring>
#include <string>

#include "qforge/error.h"

namespace qforge {
namespace {

template <typename T>
void store_as(const int32_t* q, int64_t n, void* dst) {
  T* d = static_cast<T*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<T>(q[i]);
}

template <typename T>
void load_as(const void* src, int64_t n, int32_t* q) {
  const T* s = static_cast<const T*>(src);
  for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int32_t>(s[i]);
}

// Sub-byte fields of `bits` bits, `per` = 8 / bits fields per byte, low first.
void store_packed(const int32_t* q, int64_t n, int bits, void* dst) {
  const int per = 8 / bits;
  const uint32_t mask = (1u << bits) - 1;
  auto* d = static_cast<uint8_t*>(dst);
  const int64_t nbytes = (n + per - 1) / per;
  for (int64_t b = 0; b < nbytes; ++b) {
    uint32_t byte = 0;
    for (int j = 0; j < per; ++j) {
      const int64_t i = b * per + j;
      if (i < n) byte |= (static_cast<uint32_t>(q[i]) & mask) << (j * bits);
    }
    d[b] = static_cast<uint8_t>(byte);
  }
}

void load_packed(const void* src, int64_t n, int bits, bool is_signed, int32_t* q) {
  const int per = 8 / bits;
  const uint32_t mask = (1u << bits) - 1;
  const uint32_t sign = 1u << (bits - 1);
  const auto* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t v = (s[i / per] >> ((i % per) * bits)) & mask;
    // Sign-extend: (v ^ sign) - sign maps 0b1000 to -8 for 4-bit.
    q[i] = is_signed ? static_cast<int32_t>(v ^ sign) - static_cast<int32_t>(sign)
                     : static_cast<int32_t>(v);
  }
}

void require_integer(DType t, const char* what) {
  check(dtype_is_integer(t) && t != DType::kI64, Errc::kTypeMismatch, what,
        "type " + std::string(dtype_name(t)) + " holds no integer codes",
        "i32 i16 u16 i8 u8 i4 u4 i2 u2");
}

}  // namespace

void store_codes(const int32_t* q, int64_t n, DType t, void* dst) {
  switch (t) {
    case DType::kI32:  // for n = 0 the pointers may be null, which memcpy forbids
      if (n > 0) std::memcpy(dst, q, static_cast<size_t>(n) * 4);
      return;
    case DType::kI16: store_as<int16_t>(q, n, dst); return;
    case DType::kU16: store_as<uint16_t>(q, n, dst); return;
    case DType::kI8: store_as<int8_t>(q, n, dst); return;
    case DType::kU8: store_as<uint8_t>(q, n, dst); return;
    case DType::kI4:
    case DType::kU4: store_packed(q, n, 4, dst); return;
    case DType::kI2:
    case DType::kU2: store_packed(q, n, 2, dst); return;
    default: require_integer(t, "store_codes");
  }
}

void load_codes(const void* src, int64_t n, DType t, int32_t* q) {
  switch (t) {
    case DType::kI32:
      if (n > 0) std::memcpy(q, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kI16: load_as<int16_t>(src, n, q); return;
    case DType::kU16: load_as<uint16_t>(src, n, q); return;
    case DType::kI8: load_as<int8_t>(src, n, q); return;
    case DType::kU8: load_as<uint8_t>(src, n, q); return;
    case DType::kI4: load_packed(src, n, 4, true, q); return;
    case DType::kU4: load_packed(src, n, 4, false, q); return;
    case DType::kI2: load_packed(src, n, 2, true, q); return;
    case DType::kU2: load_packed(src, n, 2, false, q); return;
    default: require_integer(t, "load_codes");
  }
}

std::vector<uint8_t> pack_codes(std::span<const int32_t> codes, DType t) {
  require_integer(t, "pack_codes");
  const int64_t lo = dtype_min(t), hi = dtype_max(t);
  for (size_t i = 0; i < codes.size(); ++i)
    check(codes[i] >= lo && codes[i] <= hi, Errc::kInvalidArgument,
          "pack_codes: code " + std::to_string(i),
          "value " + std::to_string(codes[i]) + " does not fit " + std::string(dtype_name(t)),
          "a value in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const auto n = static_cast<int64_t>(codes.size());
  std::vector<uint8_t> out(static_cast<size_t>(storage_bytes(t, n)));
  store_codes(codes.data(), n, t, out.data());
  return out;
}

std::vector<int32_t> unpack_codes(std::span<const uint8_t> bytes, int64_t n, DType t) {
  require_integer(t, "unpack_codes");
  check(n >= 0 && static_cast<int64_t>(bytes.size()) >= storage_bytes(t, n), Errc::kCorrupt,
        "unpack_codes", std::to_string(bytes.size()) + " bytes for " + std::to_string(n) + " " +
                            std::string(dtype_name(t)) + " codes",
        std::to_string(storage_bytes(t, n)) + " bytes");
  std::vector<int32_t> out(static_cast<size_t>(n));
  load_codes(bytes.data(), n, t, out.data());
  return out;
}

}  // namespace qforge
