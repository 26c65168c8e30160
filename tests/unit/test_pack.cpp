// Integer codes in memory: pack_codes / unpack_codes (and store_codes /
// load_codes under them) for every integer storage type.
//  * round trip for every type and every length 0..67;
//  * the sub-byte layout, exhaustively: every 4-bit and 2-bit code in every
//    slot of a byte, with the expected bytes written by hand from the layout
//    documented in qforge/pack.h (code 2k in the low nibble, code 4k+j in
//    bits 2j..2j+1, two's complement fields, unused fields zero);
//  * 8-, 16- and 32-bit codes as little-endian C++ integers;
//  * errors: out-of-range codes (naming the index), short buffers.
// Outside reference: the ONNX INT4 / UINT4 layout (onnx/docs/Operators.md and
// docs/IR.md, "4 bit integer types": the first element is stored in the 4
// least significant bits), with its example [1, -2, 3] -> bytes 0xE1 0x03.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qforge/error.h"
#include "qforge/pack.h"

namespace qforge {
namespace {

const DType kCodeTypes[] = {DType::kI4, DType::kU4, DType::kI2, DType::kU2, DType::kI8,
                            DType::kU8, DType::kI16, DType::kU16, DType::kI32};

// The storage range, written out by hand.
std::pair<int64_t, int64_t> range_of(DType t) {
  switch (t) {
    case DType::kI2: return {-2, 1};
    case DType::kU2: return {0, 3};
    case DType::kI4: return {-8, 7};
    case DType::kU4: return {0, 15};
    case DType::kI8: return {-128, 127};
    case DType::kU8: return {0, 255};
    case DType::kI16: return {-32768, 32767};
    case DType::kU16: return {0, 65535};
    case DType::kI32: return {INT32_MIN, INT32_MAX};
    default: ADD_FAILURE() << "no code type"; return {0, 0};
  }
}

int bits_of(DType t) {
  switch (t) {
    case DType::kI2: case DType::kU2: return 2;
    case DType::kI4: case DType::kU4: return 4;
    case DType::kI8: case DType::kU8: return 8;
    case DType::kI16: case DType::kU16: return 16;
    default: return 32;
  }
}

// The expected bytes of a code sequence, from pack.h's layout: fields of
// `bits` bits, low field first; signed codes in two's complement; multi-byte
// codes little-endian; unused trailing fields zero.
std::vector<uint8_t> expected_bytes(const std::vector<int32_t>& codes, DType t) {
  const int bits = bits_of(t);
  std::vector<uint8_t> out;
  if (bits >= 8) {
    for (int32_t c : codes) {
      const auto u = static_cast<uint32_t>(c);  // two's complement
      for (int b = 0; b < bits / 8; ++b) out.push_back(static_cast<uint8_t>((u >> (8 * b)) & 0xffu));
    }
    return out;
  }
  const size_t per = static_cast<size_t>(8 / bits);
  out.assign((codes.size() + per - 1) / per, 0);
  for (size_t i = 0; i < codes.size(); ++i) {
    const int32_t c = codes[i];
    const auto field = static_cast<uint32_t>(c < 0 ? c + (1 << bits) : c);  // two's complement
    out[i / per] = static_cast<uint8_t>(out[i / per] | (field << (bits * static_cast<int>(i % per))));
  }
  return out;
}

std::string name(DType t) { return std::string(dtype_name(t)); }

TEST(Pack, RoundTripEveryTypeAndLength) {
  std::mt19937 rng(4321);
  int checked = 0;
  for (DType t : kCodeTypes) {
    const auto [lo, hi] = range_of(t);
    EXPECT_EQ(dtype_min(t), lo) << name(t);
    EXPECT_EQ(dtype_max(t), hi) << name(t);
    std::uniform_int_distribution<int64_t> d(lo, hi);
    for (size_t n = 0; n <= 67; ++n) {
      SCOPED_TRACE(name(t) + " n=" + std::to_string(n));
      std::vector<int32_t> codes(n);
      for (auto& c : codes) c = static_cast<int32_t>(d(rng));
      // Include both ends of the range.
      if (n >= 1) codes[0] = static_cast<int32_t>(lo);
      if (n >= 2) codes[n - 1] = static_cast<int32_t>(hi);
      const auto bytes = pack_codes(codes, t);
      ASSERT_EQ(static_cast<int64_t>(bytes.size()), storage_bytes(t, static_cast<int64_t>(n)));
      ASSERT_EQ(bytes.size(), (n * static_cast<size_t>(bits_of(t)) + 7) / 8);
      ASSERT_EQ(bytes, expected_bytes(codes, t));
      ASSERT_EQ(unpack_codes(bytes, static_cast<int64_t>(n), t), codes);
      // A longer buffer is fine: only the first storage_bytes are read.
      auto longer = bytes;
      longer.push_back(0xff);
      ASSERT_EQ(unpack_codes(longer, static_cast<int64_t>(n), t), codes);
      // store_codes writes exactly storage_bytes(t, n) bytes.
      std::vector<uint8_t> buf(bytes.size() + 8, 0xa5);
      store_codes(codes.data(), static_cast<int64_t>(n), t, buf.data());
      for (size_t i = bytes.size(); i < buf.size(); ++i) ASSERT_EQ(buf[i], 0xa5) << "byte " << i;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 9 * 68);
}

TEST(Pack, FourBitExhaustive) {
  for (DType t : {DType::kI4, DType::kU4}) {
    const auto [lo, hi] = range_of(t);
    // Every pair of codes in the two nibbles of a byte.
    for (int64_t a = lo; a <= hi; ++a)
      for (int64_t b = lo; b <= hi; ++b) {
        const auto na = static_cast<uint8_t>(a & 0xf), nb = static_cast<uint8_t>(b & 0xf);
        const uint8_t want = static_cast<uint8_t>(na | (nb << 4));  // code 0 low, code 1 high
        const std::vector<int32_t> codes{static_cast<int32_t>(a), static_cast<int32_t>(b)};
        const auto got = pack_codes(codes, t);
        ASSERT_EQ(got.size(), 1u);
        ASSERT_EQ(got[0], want) << name(t) << " " << a << ", " << b;
        // The same pair in the second byte of a longer sequence.
        const std::vector<int32_t> codes4{0, 0, static_cast<int32_t>(a), static_cast<int32_t>(b)};
        const auto got4 = pack_codes(codes4, t);
        ASSERT_EQ(got4, (std::vector<uint8_t>{0, want}));
        // An odd count leaves the last high nibble zero.
        const auto got1 = pack_codes(std::vector<int32_t>{static_cast<int32_t>(a)}, t);
        ASSERT_EQ(got1, std::vector<uint8_t>{na});
      }
    // Every byte decodes to its two nibbles, sign-extended for i4.
    for (int byte = 0; byte < 256; ++byte) {
      const std::vector<uint8_t> buf{static_cast<uint8_t>(byte)};
      const int l = byte & 0xf, h = byte >> 4;
      const int32_t wl = t == DType::kI4 && l >= 8 ? l - 16 : l;
      const int32_t wh = t == DType::kI4 && h >= 8 ? h - 16 : h;
      ASSERT_EQ(unpack_codes(buf, 2, t), (std::vector<int32_t>{wl, wh})) << name(t) << " byte " << byte;
      ASSERT_EQ(unpack_codes(buf, 1, t), (std::vector<int32_t>{wl})) << name(t) << " byte " << byte;
    }
  }
}

TEST(Pack, TwoBitExhaustive) {
  for (DType t : {DType::kI2, DType::kU2}) {
    const auto [lo, hi] = range_of(t);
    auto field = [](int64_t c) { return static_cast<unsigned>(c < 0 ? c + 4 : c); };
    // Every combination of the four fields of a byte (4^4 = 256).
    for (int64_t c0 = lo; c0 <= hi; ++c0)
      for (int64_t c1 = lo; c1 <= hi; ++c1)
        for (int64_t c2 = lo; c2 <= hi; ++c2)
          for (int64_t c3 = lo; c3 <= hi; ++c3) {
            // Code 4k + j in bits 2j..2j+1.
            const auto want = static_cast<uint8_t>(field(c0) | field(c1) << 2 | field(c2) << 4 | field(c3) << 6);
            const std::vector<int32_t> codes{static_cast<int32_t>(c0), static_cast<int32_t>(c1),
                                             static_cast<int32_t>(c2), static_cast<int32_t>(c3)};
            ASSERT_EQ(pack_codes(codes, t), std::vector<uint8_t>{want})
                << name(t) << " " << c0 << " " << c1 << " " << c2 << " " << c3;
            // Shorter counts leave the unused high fields zero.
            for (size_t n = 1; n < 4; ++n) {
              const std::vector<int32_t> part(codes.begin(), codes.begin() + static_cast<std::ptrdiff_t>(n));
              const auto mask = static_cast<uint8_t>((1u << (2 * n)) - 1);
              ASSERT_EQ(pack_codes(part, t), std::vector<uint8_t>{static_cast<uint8_t>(want & mask)})
                  << name(t) << " n=" << n;
            }
          }
    // A code in each slot position with the others zero, in a later byte.
    for (int64_t c = lo; c <= hi; ++c)
      for (size_t slot = 0; slot < 4; ++slot) {
        std::vector<int32_t> codes(8, 0);
        codes[4 + slot] = static_cast<int32_t>(c);
        const auto got = pack_codes(codes, t);
        ASSERT_EQ(got, (std::vector<uint8_t>{0, static_cast<uint8_t>(field(c) << (2 * slot))}))
            << name(t) << " code " << c << " slot " << slot;
      }
    // Every byte decodes to its four fields.
    for (int byte = 0; byte < 256; ++byte) {
      std::vector<int32_t> want;
      for (int j = 0; j < 4; ++j) {
        const int f = (byte >> (2 * j)) & 3;
        want.push_back(t == DType::kI2 && f >= 2 ? f - 4 : f);
      }
      ASSERT_EQ(unpack_codes(std::vector<uint8_t>{static_cast<uint8_t>(byte)}, 4, t), want)
          << name(t) << " byte " << byte;
    }
  }
}

TEST(Pack, OnnxInt4Example) {
  // ONNX: [1, -2, 3] as INT4 is stored as 0xE1 0x03 (-2 is 0xE; element 0 in
  // the low nibble of byte 0, element 2 in the low nibble of byte 1).
  const std::vector<int32_t> v{1, -2, 3};
  const auto bytes = pack_codes(v, DType::kI4);
  EXPECT_EQ(bytes, (std::vector<uint8_t>{0xE1, 0x03}));
  EXPECT_EQ(bytes, expected_bytes(v, DType::kI4));  // and the doc's layout agrees
  EXPECT_EQ(unpack_codes(bytes, 3, DType::kI4), v);
  // UINT4 [1, 14, 3]: the same bytes.
  EXPECT_EQ(pack_codes(std::vector<int32_t>{1, 14, 3}, DType::kU4), (std::vector<uint8_t>{0xE1, 0x03}));
  EXPECT_EQ(unpack_codes(bytes, 3, DType::kU4), (std::vector<int32_t>{1, 14, 3}));
  EXPECT_EQ(dtype_info(DType::kI4).onnx, 22);  // TensorProto.INT4
  EXPECT_EQ(dtype_info(DType::kU4).onnx, 21);  // TensorProto.UINT4
}

TEST(Pack, OutOfRangeCodesNameTheIndex) {
  struct Bad {
    DType t;
    int32_t v;
  };
  for (const Bad& b : {Bad{DType::kI4, 8}, Bad{DType::kI4, -9}, Bad{DType::kU4, 16}, Bad{DType::kU4, -1},
                       Bad{DType::kI2, 2}, Bad{DType::kI2, -3}, Bad{DType::kU2, 4}, Bad{DType::kU8, 256},
                       Bad{DType::kU8, -1}, Bad{DType::kI8, 128}, Bad{DType::kI8, -129},
                       Bad{DType::kI16, 32768}, Bad{DType::kU16, 65536}, Bad{DType::kU16, -1}}) {
    SCOPED_TRACE(name(b.t) + " " + std::to_string(b.v));
    std::vector<int32_t> codes(50, 0);
    codes[37] = b.v;
    codes[41] = b.v;  // only the first is named
    try {
      pack_codes(codes, b.t);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find("code 37"), std::string::npos) << w;
      EXPECT_EQ(w.find("code 41"), std::string::npos) << w;
      EXPECT_NE(w.find(std::to_string(b.v)), std::string::npos) << w;
      EXPECT_NE(w.find(name(b.t)), std::string::npos) << w;
    }
  }
}

TEST(Pack, ShortBuffersAndBadTypesThrow) {
  const std::vector<uint8_t> three(3, 0);
  for (DType t : kCodeTypes) {
    SCOPED_TRACE(name(t));
    // The longest count that fits in 3 bytes, and one more.
    const int64_t fits = 3 * 8 / bits_of(t);
    EXPECT_NO_THROW(unpack_codes(three, fits, t));
    try {
      unpack_codes(three, fits + 1, t);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kCorrupt);
      EXPECT_NE(std::string(e.what()).find("3 bytes"), std::string::npos) << e.what();
    }
    EXPECT_THROW(unpack_codes(std::vector<uint8_t>{}, 1, t), Error);
    EXPECT_THROW(unpack_codes(three, -1, t), Error);
    EXPECT_NO_THROW(unpack_codes(std::vector<uint8_t>{}, 0, t));
  }
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kBool, DType::kI64}) {
    SCOPED_TRACE(name(t));
    EXPECT_THROW(pack_codes(std::vector<int32_t>{0}, t), Error);
    EXPECT_THROW(unpack_codes(three, 1, t), Error);
  }
}

}  // namespace
}  // namespace qforge
