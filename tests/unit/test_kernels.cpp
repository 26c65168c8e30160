// The SIMD quantize / dequantize kernels against the scalar reference
// kernels (kernels/ref), bit for bit, for every ISA this CPU can run: lengths
// 0..70 and around tile edges, unaligned pointers, zero points across the
// range, tiny and huge scales, +-Inf, NaN, huge values, exact .5 ties, values
// at and just past the clamp bounds; with guard bytes after the output to
// catch writes past the end. ISAs the CPU lacks are skipped at run time.
// Also the kernel table plumbing (kernels_for, parse_isa) and the tensor
// quantize() fast path against a loop over quantize_value.
// Outside reference: ONNX QuantizeLinear (round half to even, saturate), as
// restated in qforge/quant.h; here it is the reference kernels' contract.
#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/kernels.h"
#include "kernels/qgemm.h"
#include "qforge/pack.h"
#include "qforge/quant.h"

namespace qforge {
namespace kernels {
// For GoogleTest's messages: "avx2", not "4-byte object <01-00 00-00>".
inline void PrintTo(Isa isa, std::ostream* os) { *os << isa_name(isa); }
}  // namespace kernels
namespace {

using kernels::Isa;

bool cpu_has(Isa isa) {
  const auto a = kernels::available_isas();
  return std::find(a.begin(), a.end(), isa) != a.end();
}

std::vector<size_t> lengths() {
  std::vector<size_t> v;
  for (size_t n = 0; n <= 70; ++n) v.push_back(n);
  for (size_t n : {127, 128, 129, 1000, 1023, 1024, 1025}) v.push_back(n);
  return v;
}

// Inputs for a given scale: random values spread over the whole code range
// and beyond, with special values mixed in at random positions.
std::vector<float> quantize_inputs(size_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                                   uint32_t seed) {
  std::mt19937 rng(seed);
  const float inf = std::numeric_limits<float>::infinity();
  const auto s = static_cast<double>(scale);
  const double lo = static_cast<double>(qmin - zp), hi = static_cast<double>(qmax - zp);
  std::uniform_real_distribution<double> code(lo - 20, hi + 20);
  std::uniform_int_distribution<int> tie(static_cast<int>(lo) - 3, static_cast<int>(hi) + 3);
  auto as_float = [](double v) {
    return static_cast<float>(std::clamp(v, -static_cast<double>(FLT_MAX), static_cast<double>(FLT_MAX)));
  };
  const std::vector<float> special = {
      inf, -inf, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
      FLT_MAX, -FLT_MAX, 1e30f, -1e30f, 3e9f, -3e9f, 0.0f, -0.0f, FLT_MIN, -FLT_MIN,
      std::numeric_limits<float>::denorm_min(),
      as_float(lo * s), as_float(hi * s),                  // at the clamp bounds
      as_float((lo - 0.5) * s), as_float((hi + 0.5) * s),  // half a step past them
      as_float((lo + 0.5) * s), as_float((hi - 0.5) * s),
      std::nextafter(as_float(hi * s), inf), std::nextafter(as_float(lo * s), -inf)};
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const auto r = rng() % 8;
    if (r == 0) {
      v[i] = special[rng() % special.size()];
    } else if (r <= 2) {
      // An exact tie k + 0.5 in code units when the scale is a power of two,
      // near one otherwise.
      v[i] = as_float((tie(rng) + 0.5) * s);
    } else {
      v[i] = as_float(code(rng) * s);
    }
  }
  return v;
}

struct QCase {
  float scale;
  int32_t zp, qmin, qmax;
};

// Scales: powers of two (exact ties), ordinary, tiny, subnormal and huge.
const float kScales[] = {1.0f, 0.25f, 0x1p-10f, 0.0173f, 3.7f, 1e-30f, 1e-40f, 1e30f, 0.1f};

std::vector<QCase> u8_cases() {
  std::vector<QCase> c;
  for (float s : kScales)
    for (int32_t zp : {0, 1, 77, 128, 254, 255}) c.push_back({s, zp, 0, 255});
  c.push_back({0.5f, 10, 0, 127});   // a reduced range
  c.push_back({0.5f, 128, 1, 255});  // narrow
  return c;
}

std::vector<QCase> i8_cases() {
  std::vector<QCase> c;
  for (float s : kScales)
    for (int32_t zp : {-128, -127, -1, 0, 1, 100, 127}) c.push_back({s, zp, -128, 127});
  c.push_back({0.5f, 0, -64, 63});
  c.push_back({0.5f, -3, -127, 127});
  return c;
}

constexpr size_t kGuard = 64;
constexpr uint8_t kGuardByte = 0xcd;

// Runs fn on each length and offset and compares with ref; `Out` is the
// output element type. Inputs are placed at offset 1..3 elements from an
// aligned buffer too.
template <typename In, typename Out, typename Fn, typename RefFn, typename MakeInput>
void compare(const char* what, Fn fn, RefFn ref, MakeInput make_input) {
  for (size_t n : lengths())
    for (size_t off = 0; off < 4; ++off) {
      SCOPED_TRACE(std::string(what) + " n=" + std::to_string(n) + " offset=" + std::to_string(off));
      const std::vector<In> in_values = make_input(n, static_cast<uint32_t>(n * 4 + off));
      std::vector<In> in(n + off + 1);
      std::copy(in_values.begin(), in_values.end(), in.begin() + static_cast<std::ptrdiff_t>(off));
      const size_t bytes = n * sizeof(Out);
      std::vector<uint8_t> got(off * sizeof(Out) + bytes + kGuard, kGuardByte);
      std::vector<uint8_t> want(bytes + 1, 0);
      Out* g = reinterpret_cast<Out*>(got.data() + off * sizeof(Out));
      fn(in.data() + off, static_cast<int64_t>(n), g);
      ref(in.data() + off, static_cast<int64_t>(n), reinterpret_cast<Out*>(want.data()));
      ASSERT_EQ(std::memcmp(got.data() + off * sizeof(Out), want.data(), bytes), 0) << [&] {
        for (size_t i = 0; i < n; ++i) {
          Out a, b;
          std::memcpy(&a, got.data() + off * sizeof(Out) + i * sizeof(Out), sizeof(Out));
          std::memcpy(&b, want.data() + i * sizeof(Out), sizeof(Out));
          if (std::memcmp(&a, &b, sizeof(Out)) != 0)
            return "first difference at element " + std::to_string(i) + ": " + std::to_string(+a) +
                   " vs ref " + std::to_string(+b) + " input " + std::to_string(+in_values[i]);
        }
        return std::string();
      }();
      for (size_t i = 0; i < off * sizeof(Out); ++i) ASSERT_EQ(got[i], kGuardByte) << "wrote before the output";
      for (size_t i = off * sizeof(Out) + bytes; i < got.size(); ++i)
        ASSERT_EQ(got[i], kGuardByte) << "wrote past the end, byte " << i - off * sizeof(Out) - bytes;
    }
}

class KernelsVsRef : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!cpu_has(GetParam()))
      GTEST_SKIP() << "this CPU lacks " << kernels::isa_name(GetParam()) << " ("
                   << kernels::isa_features(GetParam()) << ")";
    table_ = kernels::kernels_for(GetParam());
  }
  kernels::KernelTable table_;
};

TEST_P(KernelsVsRef, TableIsForThisIsa) {
  EXPECT_EQ(table_.isa, GetParam());
  EXPECT_NE(table_.quantize_u8, &kernels::f32_qu8_quantize__ref);
  EXPECT_NE(table_.quantize_i8, &kernels::f32_qs8_quantize__ref);
  EXPECT_NE(table_.dequantize_u8, &kernels::qu8_f32_dequantize__ref);
  EXPECT_NE(table_.dequantize_i8, &kernels::qs8_f32_dequantize__ref);
  ASSERT_EQ(table_.names.size(), 6u);
  for (size_t i = 0; i < 4; ++i) {
    const std::string& kernel = table_.names[i].second;
    // avxvnni uses avx2's kernels for all but the int8 GEMM, dotprod NEON's.
    EXPECT_NE(kernel.find(std::string("__") + kernels::isa_name(kernels::base_isa(GetParam()))),
              std::string::npos)
        << kernel;
  }
  // The int8 GEMM entry names the kernel the table holds, first (AVX-512
  // without VNNI uses another ISA's; test_int8_gemm.cpp checks the choice).
  ASSERT_NE(table_.qgemm, nullptr);
  EXPECT_EQ(table_.names[4].second.rfind(table_.qgemm->name, 0), 0u) << table_.names[4].second;
}

// One quantize kernel against its reference over every case; T is the code type.
template <typename T, typename Fn, typename RefFn>
void check_quantize(const char* name, const std::vector<QCase>& cases, Fn kernel, RefFn ref) {
  for (const QCase& c : cases) {
    SCOPED_TRACE("scale=" + std::to_string(c.scale) + " zp=" + std::to_string(c.zp) + " [" +
                 std::to_string(c.qmin) + ", " + std::to_string(c.qmax) + "]");
    compare<float, T>(
        name, [&](const float* x, int64_t n, T* y) { kernel(x, n, c.scale, c.zp, c.qmin, c.qmax, y); },
        [&](const float* x, int64_t n, T* y) { ref(x, n, c.scale, c.zp, c.qmin, c.qmax, y); },
        [&](size_t n, uint32_t seed) { return quantize_inputs(n, c.scale, c.zp, c.qmin, c.qmax, seed); });
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST_P(KernelsVsRef, QuantizeU8) {
  check_quantize<uint8_t>("quantize_u8", u8_cases(), table_.quantize_u8, kernels::f32_qu8_quantize__ref);
}

TEST_P(KernelsVsRef, QuantizeI8) {
  check_quantize<int8_t>("quantize_i8", i8_cases(), table_.quantize_i8, kernels::f32_qs8_quantize__ref);
}

template <typename Code>
std::vector<Code> random_codes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(std::numeric_limits<Code>::min(), std::numeric_limits<Code>::max());
  std::vector<Code> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = i % 5 == 0 ? (i % 2 ? std::numeric_limits<Code>::min() : std::numeric_limits<Code>::max())
                      : static_cast<Code>(d(rng));
  return v;
}

TEST_P(KernelsVsRef, DequantizeU8) {
  for (float s : kScales)
    for (int32_t zp : {0, 1, 128, 255}) {
      SCOPED_TRACE("scale=" + std::to_string(s) + " zp=" + std::to_string(zp));
      compare<uint8_t, float>(
          "dequantize_u8", [&](const uint8_t* x, int64_t n, float* y) { table_.dequantize_u8(x, n, s, zp, y); },
          [&](const uint8_t* x, int64_t n, float* y) { kernels::qu8_f32_dequantize__ref(x, n, s, zp, y); },
          [](size_t n, uint32_t seed) { return random_codes<uint8_t>(n, seed); });
      if (HasFatalFailure()) return;
    }
}

TEST_P(KernelsVsRef, DequantizeI8) {
  for (float s : kScales)
    for (int32_t zp : {-128, -1, 0, 127}) {
      SCOPED_TRACE("scale=" + std::to_string(s) + " zp=" + std::to_string(zp));
      compare<int8_t, float>(
          "dequantize_i8", [&](const int8_t* x, int64_t n, float* y) { table_.dequantize_i8(x, n, s, zp, y); },
          [&](const int8_t* x, int64_t n, float* y) { kernels::qs8_f32_dequantize__ref(x, n, s, zp, y); },
          [](size_t n, uint32_t seed) { return random_codes<int8_t>(n, seed); });
      if (HasFatalFailure()) return;
    }
}

// Every u8 / i8 code, against the definition (q - zp) * scale in float32.
TEST_P(KernelsVsRef, DequantizeEveryCode) {
  std::vector<uint8_t> u(256);
  std::vector<int8_t> s(256);
  for (int i = 0; i < 256; ++i) {
    u[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
    s[static_cast<size_t>(i)] = static_cast<int8_t>(i - 128);
  }
  std::vector<float> y(256);
  table_.dequantize_u8(u.data(), 256, 0.37f, 131, y.data());
  for (int i = 0; i < 256; ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(y[static_cast<size_t>(i)]),
              std::bit_cast<uint32_t>(static_cast<float>(i - 131) * 0.37f)) << i;
  table_.dequantize_i8(s.data(), 256, 0.37f, -5, y.data());
  for (int i = 0; i < 256; ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(y[static_cast<size_t>(i)]),
              std::bit_cast<uint32_t>(static_cast<float>(i - 128 + 5) * 0.37f)) << i;
}

// Ties and saturation against the definition, not only against ref.
TEST_P(KernelsVsRef, TiesRoundToEvenAndValuesSaturate) {
  const std::vector<float> x = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, 127.5f, -128.5f,
                                1000.0f, -1000.0f, std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::quiet_NaN(), 3.0f, -3.0f, 0.49999997f};
  const std::vector<int> want_i8 = {0, 2, 2, 0, -2, -2, 126, 127, -128, 127, -128, 127, -128, -128, 3, -3, 0};
  // Padded to 3 * 16 + 1 elements so that every SIMD path sees them.
  std::vector<float> in;
  std::vector<int> want;
  while (in.size() < 49) {
    in.insert(in.end(), x.begin(), x.end());
    want.insert(want.end(), want_i8.begin(), want_i8.end());
  }
  std::vector<int8_t> y(in.size());
  table_.quantize_i8(in.data(), static_cast<int64_t>(in.size()), 1.0f, 0, -128, 127, y.data());
  for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(y[i], want[i]) << "x=" << in[i];
  std::vector<uint8_t> yu(in.size());
  table_.quantize_u8(in.data(), static_cast<int64_t>(in.size()), 1.0f, 128, 0, 255, yu.data());
  for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(yu[i], want[i] + 128) << "x=" << in[i];
}

// A range kernel against std::minmax_element (the outside reference) on
// random data of every length, each pointer offset by one element from an
// aligned start; and false for a NaN or an infinity at every position.
void check_minmax(kernels::MinMaxF32Fn fn) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1000.0f, 1000.0f);
  for (size_t n : lengths()) {
    if (n == 0) continue;
    std::vector<float> buf(n + 1);
    for (float& v : buf) v = d(rng);
    const float* x = buf.data() + 1;
    const auto [lo, hi] = std::minmax_element(x, x + n);
    float got_lo = 0.0f, got_hi = 0.0f;
    ASSERT_TRUE(fn(x, static_cast<int64_t>(n), &got_lo, &got_hi)) << "n=" << n;
    ASSERT_EQ(got_lo, *lo) << "n=" << n;
    ASSERT_EQ(got_hi, *hi) << "n=" << n;
    if (n > 70) continue;
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()})
      for (size_t at = 0; at < n; ++at) {
        std::vector<float> y(x, x + n);
        y[at] = bad;
        ASSERT_FALSE(fn(y.data(), static_cast<int64_t>(n), &got_lo, &got_hi))
            << "n=" << n << " " << bad << " at " << at;
      }
  }
}

TEST_P(KernelsVsRef, MinMaxF32) {
#if defined(__x86_64__)
  EXPECT_NE(table_.minmax_f32, &kernels::f32_minmax__ref);  // AArch64 uses the reference
#endif
  check_minmax(table_.minmax_f32);
}

TEST(KernelsRef, MinMaxF32) { check_minmax(&kernels::f32_minmax__ref); }

// The SIMD ISAs of the architecture this is compiled for.
#if defined(__aarch64__)
#define QFORGE_SIMD_ISAS Isa::kNeon, Isa::kDotprod
#else
#define QFORGE_SIMD_ISAS Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512
#endif
INSTANTIATE_TEST_SUITE_P(AllSimdIsas, KernelsVsRef, ::testing::Values(QFORGE_SIMD_ISAS),
                         [](const ::testing::TestParamInfo<Isa>& i) {
                           return std::string(kernels::isa_name(i.param));
                         });

// ---- the kernel table ----

TEST(KernelsTable, IsaNamesParse) {
  for (Isa i : {Isa::kRef, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kNeon, Isa::kDotprod})
    EXPECT_EQ(kernels::parse_isa(kernels::isa_name(i)), i);
  try {
    kernels::parse_isa("bogus");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bogus"), std::string::npos) << e.what();
  }
  EXPECT_THROW(kernels::parse_isa(""), Error);
  EXPECT_THROW(kernels::parse_isa("AVX2"), Error);
  EXPECT_THROW(kernels::parse_isa("sve"), Error);
}

TEST(KernelsTable, AvailableIsasAndDefault) {
  const auto a = kernels::available_isas();
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a.front(), Isa::kRef);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));  // best last
  const kernels::KernelTable ref = kernels::kernels_for(Isa::kRef);
  EXPECT_EQ(ref.quantize_u8, &kernels::f32_qu8_quantize__ref);
  EXPECT_EQ(ref.dequantize_i8, &kernels::qs8_f32_dequantize__ref);
  const char* env = std::getenv("QFORGE_ISA");
  if (env == nullptr || *env == '\0') {
    EXPECT_EQ(kernels::kernels().isa, a.back());
  } else {
    EXPECT_EQ(kernels::kernels().isa, kernels::parse_isa(env));
  }
  // scripts/test_arm.sh says which ISA the automatic choice must make on the
  // CPU it emulates.
  if (const char* want = std::getenv("QFORGE_EXPECT_ISA")) {
    EXPECT_STREQ(kernels::isa_name(kernels::kernels().isa), want);
  }
}

// kernels_for(isa, cpu) throws kUnsupported naming the ISA and the features it needs.
void expect_refused(Isa isa, const CpuFeatures& cpu) {
  try {
    kernels::kernels_for(isa, cpu);
    ADD_FAILURE() << "kernels_for(" << kernels::isa_name(isa) << ") did not throw on " << cpu.arch;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUnsupported);
    EXPECT_NE(std::string(e.what()).find(kernels::isa_name(isa)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(kernels::isa_features(isa)), std::string::npos) << e.what();
  }
}

// A CPU without AVX2 or AVX-512, or an AArch64 one without NEON or dotprod
// (posed with a CpuFeatures value, so this runs on any machine): those ISAs
// are refused with an Error naming them; so are the other architecture's.
TEST(KernelsTable, MissingIsaIsRefused) {
  CpuFeatures plain;
  plain.arch = "x86_64";
  plain.model = "a CPU without AVX";
  EXPECT_EQ(kernels::available_isas(plain), std::vector<Isa>{Isa::kRef});
  EXPECT_NO_THROW(kernels::kernels_for(Isa::kRef, plain));
  CpuFeatures avx2_only = plain;
  avx2_only.avx = avx2_only.avx2 = avx2_only.fma = avx2_only.f16c = true;
  expect_refused(Isa::kAvx2, plain);
  expect_refused(Isa::kAvx512, plain);
  expect_refused(Isa::kAvx512, avx2_only);
  expect_refused(Isa::kAvxVnni, plain);
  expect_refused(Isa::kAvxVnni, avx2_only);
  CpuFeatures arm_plain;
  arm_plain.arch = "aarch64";
  CpuFeatures neon_only = arm_plain;
  neon_only.neon = true;
  expect_refused(Isa::kNeon, arm_plain);
  expect_refused(Isa::kDotprod, arm_plain);
  expect_refused(Isa::kDotprod, neon_only);
#if defined(__x86_64__)
  EXPECT_NO_THROW(kernels::kernels_for(Isa::kAvx2, avx2_only));
  // AVX-VNNI needs AVX2 as well (its kernel's other instructions are AVX2's).
  CpuFeatures vnni = avx2_only;
  vnni.avxvnni = true;
  EXPECT_EQ(kernels::available_isas(vnni), (std::vector<Isa>{Isa::kRef, Isa::kAvx2, Isa::kAvxVnni}));
  EXPECT_NO_THROW(kernels::kernels_for(Isa::kAvxVnni, vnni));
  vnni.avx2 = false;
  EXPECT_EQ(kernels::available_isas(vnni), std::vector<Isa>{Isa::kRef});
  expect_refused(Isa::kNeon, cpu_features());
  expect_refused(Isa::kDotprod, cpu_features());
#elif defined(__aarch64__)
  EXPECT_EQ(kernels::available_isas(neon_only), (std::vector<Isa>{Isa::kRef, Isa::kNeon}));
  CpuFeatures dot = neon_only;
  dot.dotprod = true;
  EXPECT_EQ(kernels::available_isas(dot), (std::vector<Isa>{Isa::kRef, Isa::kNeon, Isa::kDotprod}));
  expect_refused(Isa::kAvx2, dot);
  expect_refused(Isa::kAvx512, dot);
#endif
  // On this CPU: every ISA it reports can be built.
  for (Isa i : kernels::available_isas()) EXPECT_NO_THROW(kernels::kernels_for(i));
}

// ---- the tensor API's dispatched fast path ----

TEST(KernelsTensorApi, QuantizeMatchesQuantizeValue) {
  for (DType t : {DType::kU8, DType::kI8})
    for (float s : {0.05f, 1.0f, 0.0173f, 1e-30f})
      for (int32_t zp : {static_cast<int32_t>(dtype_min(t)), static_cast<int32_t>(dtype_min(t)) + 3, 0,
                         static_cast<int32_t>(dtype_max(t))}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " scale " + std::to_string(s) + " zp " + std::to_string(zp));
        const auto qmin = static_cast<int32_t>(dtype_min(t)), qmax = static_cast<int32_t>(dtype_max(t));
        const auto xs = quantize_inputs(1025, s, zp, qmin, qmax, 9);
        QuantParams p;
        p.dtype = t;
        p.scale = {s};
        p.zero_point = {zp};
        const Tensor q = quantize(Tensor::from({5, 205}, xs), p, ScaleMode::kDivide);
        std::vector<int32_t> got(xs.size());
        load_codes(q.raw(), q.numel(), t, got.data());
        for (size_t i = 0; i < xs.size(); ++i)
          ASSERT_EQ(got[i], quantize_value(xs[i], s, zp, qmin, qmax, ScaleMode::kDivide))
              << "element " << i << " x=" << xs[i];
        // And dequantize (also dispatched) against dequantize_value.
        const Tensor d = dequantize(q);
        for (size_t i = 0; i < xs.size(); ++i)
          ASSERT_EQ(std::bit_cast<uint32_t>(d.data<float>()[i]),
                    std::bit_cast<uint32_t>(dequantize_value(got[i], s, zp))) << "element " << i;
      }
}

}  // namespace
}  // namespace qforge
