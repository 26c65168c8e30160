// Integer codes in memory, including the packed sub-byte types.
//
// Layout (little end first, like ONNX INT4/UINT4):
//   4-bit (i4, u4): two codes per byte. Code 2k is in bits 0-3 (the low
//     nibble), code 2k+1 in bits 4-7. An odd count leaves the last high
//     nibble zero. 0.5 bytes per code.
//   2-bit (i2, u2): four codes per byte. Code 4k+j is in bits 2j..2j+1, so
//     code 4k is in bits 0-1. A count not a multiple of 4 leaves the unused
//     high fields zero. 0.25 bytes per code. (ONNX 1.12 has no 2-bit type;
//     this is the same low-first order that ONNX's later INT2 uses.)
//   Signed codes are two's complement within their field: i4 -8..7 is
//     0x8..0x7, i2 -2..1 is 0b10..0b01.
//   8-, 16- and 32-bit codes are stored as their C++ types, little-endian.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "qforge/dtype.h"

namespace qforge {

// Writes n codes of type t to dst (storage_bytes(t, n) bytes). Codes must be
// in t's range; this is not checked (use pack_codes for checked packing).
void store_codes(const int32_t* codes, int64_t n, DType t, void* dst);
// Reads n codes of type t from src, sign-extending signed sub-byte codes.
void load_codes(const void* src, int64_t n, DType t, int32_t* codes);

// Checked versions: throw Error naming the first code out of t's range, or a
// byte buffer too short for n codes.
std::vector<uint8_t> pack_codes(std::span<const int32_t> codes, DType t);
std::vector<int32_t> unpack_codes(std::span<const uint8_t> bytes, int64_t n, DType t);

}  // namespace qforge
