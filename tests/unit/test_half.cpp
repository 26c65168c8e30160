// float16 and bfloat16 conversion (f32_to_f16 / f16_to_f32, f32_to_bf16 /
// bf16_to_f32) and cast() on tensors.
// Outside references:
//  * the compiler's IEEE binary16 type _Float16 (GCC >= 12 on x86-64):
//    static_cast<float>(_Float16) and static_cast<_Float16>(float), which
//    round to nearest even; exhaustive over all 65536 half bit patterns and
//    on ~2 million seeded random floats (normal, subnormal-half, overflow,
//    exact ties and their neighbours);
//  * IEEE 754 round-to-nearest-even written out in the test over the value
//    sets of binary16 and bfloat16 (bfloat16 = the upper 16 bits of an IEEE
//    binary32, as defined by Google Brain / Intel's BF16 spec), used on its
//    own where _Float16 is missing.
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qforge/pack.h"
#include "qforge/quant.h"

namespace qforge {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kRandomPerKind = 200000;
#else
constexpr size_t kRandomPerKind = 400000;
#endif

bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }
uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }
float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

// The value of a non-negative finite binary16 pattern, from the format's
// definition (5-bit exponent, bias 15, 10-bit fraction, subnormals).
double half_value(uint32_t h) {
  const uint32_t e = h >> 10, m = h & 0x3ffu;
  if (e == 0) return std::ldexp(static_cast<double>(m), -24);
  return std::ldexp(static_cast<double>(1024 + m), static_cast<int>(e) - 25);
}

// Round to nearest, ties to even, onto a format whose non-negative finite
// patterns 0..max_finite are increasing in value; `value(max_finite + 1)` is
// the next power of two (where overflow to Inf starts, by IEEE 754's rule that
// a result is Inf when it rounds, unbounded, to at least that value).
template <typename ValueFn>
uint32_t round_nearest_even(double a, uint32_t max_finite, ValueFn&& value) {
  uint32_t lo = 0, hi = max_finite + 1;  // value(lo) <= a < value(hi)
  if (a >= value(hi)) return max_finite + 1;
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (value(mid) <= a) lo = mid; else hi = mid;
  }
  const double dl = a - value(lo), dh = value(hi) - a;
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1u) == 0 ? lo : hi;
}

uint16_t ref_f32_to_f16(float f) {
  if (std::isnan(f)) return 0x7e00u;
  const uint32_t sign = std::signbit(f) ? 0x8000u : 0u;
  auto value = [](uint32_t h) { return h == 0x7c00u ? 65536.0 : half_value(h); };
  return static_cast<uint16_t>(sign | round_nearest_even(std::fabs(static_cast<double>(f)), 0x7bffu, value));
}

uint16_t ref_f32_to_bf16(float f) {
  if (std::isnan(f)) return 0x7fc0u;
  const uint32_t sign = std::signbit(f) ? 0x8000u : 0u;
  auto value = [](uint32_t h) {
    return h == 0x7f80u ? std::ldexp(1.0, 128) : static_cast<double>(from_bits(h << 16));
  };
  return static_cast<uint16_t>(sign | round_nearest_even(std::fabs(static_cast<double>(f)), 0x7f7fu, value));
}

// Seeded floats of several kinds, for the conversions to 16 bits.
std::vector<float> random_floats_for_half(uint32_t seed, size_t per_kind = kRandomPerKind) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<uint32_t> any;
  std::uniform_int_distribution<uint32_t> mant(0, (1u << 23) - 1);
  std::uniform_int_distribution<uint32_t> half_finite(0, 0x7bfeu);  // has a finite successor
  std::vector<float> v;
  v.reserve(5 * per_kind + 7);
  auto with_exp = [&](int lo, int hi) {  // random sign and mantissa, exponent in [lo, hi]
    std::uniform_int_distribution<int> e(lo, hi);
    const uint32_t s = any(rng) & 0x80000000u;
    return from_bits(s | static_cast<uint32_t>(e(rng) + 127) << 23 | mant(rng));
  };
  for (size_t i = 0; i < per_kind; ++i) {
    v.push_back(from_bits(any(rng)));  // any pattern: NaN, Inf, subnormal float, ...
    v.push_back(with_exp(-14, 15));    // normal halves
    v.push_back(with_exp(-27, -15));   // subnormal halves, and below the smallest
    v.push_back(with_exp(15, 17));     // around 65504 and overflow
    // An exact tie between adjacent halves h and h + 1, or a float next to it.
    const uint32_t h = half_finite(rng);
    const float tie = static_cast<float>((half_value(h) + half_value(h + 1)) / 2);  // exact
    const float t = i % 3 == 0 ? tie : std::nextafter(tie, i % 3 == 1 ? 0.0f : FLT_MAX);
    v.push_back(any(rng) & 1u ? -t : t);
  }
  // The overflow tie: halfway between 65504 and 65536 rounds to even, Inf.
  for (float f : {65504.0f, 65519.996f, 65520.0f, 65520.004f, 65536.0f, FLT_MAX, -65520.0f})
    v.push_back(f);
  return v;
}

// ---- float16 ----

TEST(Half, F16ToF32ExhaustiveAgainstDefinition) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    const auto u = static_cast<uint16_t>(h);
    if (f16_is_nan(u)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      continue;
    }
    const double mag = (h & 0x7fffu) == 0x7c00u ? std::numeric_limits<double>::infinity() : half_value(h & 0x7fffu);
    const double want = h & 0x8000u ? -mag : mag;
    ASSERT_EQ(static_cast<double>(f), want) << std::hex << h;
    ASSERT_EQ(std::signbit(f), (h & 0x8000u) != 0) << std::hex << h;
  }
}

#if defined(__FLT16_MAX__)
TEST(Half, F16ToF32ExhaustiveAgainstCompiler) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto u = static_cast<uint16_t>(h);
    const float got = f16_to_f32(u);
    const float want = static_cast<float>(std::bit_cast<_Float16>(u));
    if (f16_is_nan(u)) {
      ASSERT_TRUE(std::isnan(got) && std::isnan(want)) << std::hex << h;
      continue;
    }
    ASSERT_EQ(bits(got), bits(want)) << std::hex << h;
  }
}
#endif

TEST(Half, F32ToF16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto u = static_cast<uint16_t>(h);
    const float f = f16_to_f32(u);
    const uint16_t back = f32_to_f16(f);
    if (f16_is_nan(u)) {
      ASSERT_TRUE(f16_is_nan(back)) << std::hex << h << " -> " << back;
      continue;
    }
    ASSERT_EQ(back, u) << std::hex << h;
#if defined(__FLT16_MAX__)
    ASSERT_EQ(std::bit_cast<uint16_t>(static_cast<_Float16>(f)), u) << std::hex << h;
#endif
  }
}

TEST(Half, F32ToF16RandomAndTies) {
  const auto v = random_floats_for_half(20240611);
  size_t ties = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = v[i];
    const uint16_t got = f32_to_f16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(f16_is_nan(got)) << "element " << i << " bits " << std::hex << bits(f);
      continue;
    }
    const uint16_t want = ref_f32_to_f16(f);
    ASSERT_EQ(got, want) << "element " << i << " x=" << f << " bits " << std::hex << bits(f);
#if defined(__FLT16_MAX__)
    ASSERT_EQ(std::bit_cast<uint16_t>(static_cast<_Float16>(f)), want)
        << "reference disagrees with the compiler at " << f;
#endif
    // Count exact ties (the value is halfway between the two neighbours).
    const float fh = f16_to_f32(got);
    if (std::isfinite(fh) && std::fabs(fh) <= 65504.0f) {
      const double d = std::fabs(static_cast<double>(f) - fh);
      const uint16_t other = static_cast<uint16_t>((got & 0x7fffu) == 0 ? 1 : got + (std::fabs(f) > std::fabs(fh) ? 1 : -1));
      if ((other & 0x7fffu) <= 0x7bffu && d != 0 && d == std::fabs(static_cast<double>(f16_to_f32(other)) - f)) {
        ++ties;
        ASSERT_EQ(got & 1u, 0u) << "tie at " << f << " not rounded to even";
      }
    }
  }
  EXPECT_GT(ties, kRandomPerKind / 4);  // the tie kind above made many
}

TEST(Half, F32ToF16SpecialValues) {
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);                              // largest finite
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                              // tie with 2^16: to even, Inf
  EXPECT_EQ(f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);                 // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);                 // half of it: tie to even 0
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);                 // 1.5 * 2^-24: tie to even 2
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);                 // smallest normal
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);              // rounds up into the normals
  EXPECT_EQ(f32_to_f16(FLT_MIN), 0x0000);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);          // tie, even below
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);      // tie, even above
  EXPECT_TRUE(f16_is_nan(f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(f16_is_nan(f32_to_f16(std::numeric_limits<float>::signaling_NaN())));
  EXPECT_TRUE(f16_is_nan(f32_to_f16(from_bits(0x7f800001u))));  // payload only in low bits
  EXPECT_TRUE(f16_is_nan(f32_to_f16(from_bits(0xff800001u))));
}

// ---- bfloat16 ----

TEST(Half, Bf16ExhaustiveRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto u = static_cast<uint16_t>(h);
    const float f = bf16_to_f32(u);
    if (bf16_is_nan(u)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_TRUE(bf16_is_nan(f32_to_bf16(f))) << std::hex << h;
      continue;
    }
    ASSERT_EQ(bits(f), h << 16) << std::hex << h;  // bfloat16 is the top half of a float32
    ASSERT_EQ(f32_to_bf16(f), u) << std::hex << h;
  }
}

TEST(Half, Bf16TiesToEvenAndOverflow) {
  std::mt19937 rng(77);
  std::uniform_int_distribution<uint32_t> pat(0, 0xffffu);
  int ties = 0;
  for (int i = 0; i < 100000; ++i) {
    const uint32_t h = pat(rng);
    if ((h & 0x7f80u) == 0x7f80u) continue;  // Inf / NaN: no successor
    // Exactly halfway between h and the next pattern away from 0.
    const float tie = from_bits(h << 16 | 0x8000u);
    const uint32_t even = (h & 1u) == 0 ? h : h + 1;  // h + 1 may be Inf: 0x7f7f -> 0x7f80
    ASSERT_EQ(f32_to_bf16(tie), even) << std::hex << h;
    ASSERT_EQ(f32_to_bf16(std::nextafter(tie, 0.0f)), h) << std::hex << h;
    ASSERT_EQ(f32_to_bf16(from_bits(h << 16 | 0x8001u)), h + 1) << std::hex << h;
    ++ties;
  }
  EXPECT_GT(ties, 90000);
  // Overflow: past the largest finite bf16 (0x7f7f) by half an ulp or more.
  EXPECT_EQ(f32_to_bf16(FLT_MAX), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-FLT_MAX), 0xff80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7f8000u)), 0x7f80);  // tie, 0x7f7f is odd: up to Inf
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(from_bits(0x00008000u)), 0x0000);  // subnormal tie, to even 0
  EXPECT_EQ(f32_to_bf16(from_bits(0x00018000u)), 0x0002);  // subnormal tie, to even 2
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(from_bits(0x7f800001u))));  // payload only in low bits
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(from_bits(0xffffffffu))));
}

TEST(Half, Bf16RandomAgainstReference) {
  const auto v = random_floats_for_half(99);
  std::mt19937 rng(100);
  std::uniform_int_distribution<uint32_t> any;
  std::vector<float> w(v);
  for (size_t i = 0; i < kRandomPerKind; ++i) w.push_back(from_bits(any(rng)));
  for (size_t i = 0; i < w.size(); ++i) {
    const float f = w[i];
    const uint16_t got = f32_to_bf16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(bf16_is_nan(got)) << std::hex << bits(f);
      continue;
    }
    ASSERT_EQ(got, ref_f32_to_bf16(f)) << "x=" << f << " bits " << std::hex << bits(f);
  }
}

// ---- cast() on tensors ----

std::vector<float> cast_inputs() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.5f, 65504.0f, 65520.0f, 1e10f, -1e-10f,
                          std::ldexp(1.0f, -25), 3.14159265f, FLT_MAX, FLT_MIN,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), from_bits(0x3f808000u)};
  const auto r = random_floats_for_half(5, 1000);
  v.insert(v.end(), r.begin(), r.end());
  return v;
}

TEST(Half, CastF32ToF16AndBackIsElementWise) {
  const auto v = cast_inputs();
  Tensor x = Tensor::from({static_cast<int64_t>(v.size())}, v);
  x.set_name("w");
  for (DType t : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor h = cast(x, t);
    ASSERT_EQ(h.dtype(), t);
    ASSERT_EQ(h.shape(), x.shape());
    EXPECT_EQ(h.name(), "w");
    const auto* hd = static_cast<const uint16_t*>(h.raw());
    const Tensor back = cast(h, DType::kF32);
    ASSERT_EQ(back.dtype(), DType::kF32);
    const float* bd = back.data<float>();
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t want = t == DType::kF16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      ASSERT_EQ(hd[i], want) << "element " << i;
      const float wf = t == DType::kF16 ? f16_to_f32(want) : bf16_to_f32(want);
      ASSERT_EQ(bits(bd[i]), bits(wf)) << "element " << i;
    }
  }
  // A 2-D shape and an empty tensor keep their shapes.
  const Tensor m = cast(Tensor::from({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6}), DType::kF16);
  EXPECT_EQ(m.shape(), (Shape{2, 3}));
  EXPECT_EQ(cast(Tensor(DType::kF32, {0, 4}), DType::kBF16).shape(), (Shape{0, 4}));
}

TEST(Half, CastF64AndF32) {
  const std::vector<double> d = {0.0, -1.0, 0.1, 1e300, -1e-300, 3.4028235677973366e38, 1.0 / 3};
  const Tensor x = Tensor::from({static_cast<int64_t>(d.size())}, d);
  const Tensor f = cast(x, DType::kF32);
  for (size_t i = 0; i < d.size(); ++i)
    EXPECT_EQ(bits(f.data<float>()[i]), bits(static_cast<float>(d[i]))) << "element " << i;
  // And back to f64 (qforge/quant.h: "f64 <-> f32"): exact.
  const Tensor g = cast(f, DType::kF64);
  ASSERT_EQ(g.dtype(), DType::kF64);
  for (size_t i = 0; i < d.size(); ++i)
    EXPECT_EQ(g.data<double>()[i], static_cast<double>(f.data<float>()[i])) << "element " << i;
}

TEST(Half, CastIntegersToF32) {
  std::mt19937 rng(31);
  for (DType t : {DType::kI32, DType::kI16, DType::kU16, DType::kI8, DType::kU8, DType::kI4,
                  DType::kU4, DType::kI2, DType::kU2}) {
    SCOPED_TRACE(dtype_name(t));
    std::uniform_int_distribution<int64_t> u(dtype_min(t), dtype_max(t));
    std::vector<int32_t> codes(53);
    for (auto& c : codes) c = static_cast<int32_t>(u(rng));
    codes[0] = static_cast<int32_t>(dtype_min(t));
    codes[1] = static_cast<int32_t>(dtype_max(t));
    Tensor q(t, {53});
    store_codes(codes.data(), 53, t, q.raw());
    const Tensor f = cast(q, DType::kF32);
    ASSERT_EQ(f.dtype(), DType::kF32);
    for (size_t i = 0; i < codes.size(); ++i)
      ASSERT_EQ(f.data<float>()[i], static_cast<float>(codes[i])) << "element " << i;
  }
  // i64 is an integer type too.
  const std::vector<int64_t> big = {0, -5, int64_t{1} << 40, -(int64_t{1} << 62) - 1};
  const Tensor f = cast(Tensor::from({4}, big), DType::kF32);
  for (size_t i = 0; i < big.size(); ++i)
    EXPECT_EQ(f.data<float>()[i], static_cast<float>(big[i])) << "element " << i;
}

TEST(Half, CastSameTypeIsADeepCopyAndUnsupportedThrows) {
  Tensor x = Tensor::from({3}, std::vector<float>{1, 2, 3});
  Tensor y = cast(x, DType::kF32);
  y.data<float>()[0] = 9;
  EXPECT_EQ(x.data<float>()[0], 1.0f);
  EXPECT_THROW(cast(x, DType::kI8), Error);
  EXPECT_THROW(cast(x, DType::kU4), Error);
  EXPECT_THROW(cast(cast(x, DType::kF16), DType::kBF16), Error);
}

}  // namespace
}  // namespace qforge
