// Properties of qforge's quantization arithmetic that must hold for any
// input, checked on seeded random tensors (so a failure replays):
//  * round trip: |dequantize(quantize(x)) - x| <= scale / 2 (plus float32
//    rounding) for x inside the chosen range, every storage type, affine and
//    symmetric, per tensor / per axis / per group, reduce_range, narrow_range;
//  * 0 is exact; edge cases of choose_params (all zero, constants, ranges
//    without 0, ranges near FLT_MAX, NaN / Inf, empty tensors);
//  * QuantParams::validate_for errors, requantize, observer merging and
//    order independence, histogram range methods, Histogram::resample and
//    the FakeQuantize straight-through estimator.
// Outside references: the formulas documented in qforge/quant.h, which are
// PyTorch's (torch.ao.quantization.observer._calculate_qparams, eps = float32
// epsilon) and ONNX QuantizeLinear / DequantizeLinear; the straight-through
// estimator as in PyTorch's fake_quantize_per_tensor_affine backward. The
// statistical checks use properties of the standard normal distribution
// (P(|x| > 3.89) = 1e-4) and of uniform data.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "qforge/fake_quant.h"
#include "qforge/observer.h"
#include "qforge/pack.h"
#include "qforge/quant.h"
#include "test_util.h"

namespace qforge {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// ---- helpers (independent of the library's own layout code) ----

std::vector<int64_t> unravel(int64_t idx, const Shape& s) {
  std::vector<int64_t> c(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    c[d] = idx % s[d];
    idx /= s[d];
  }
  return c;
}

int64_t ravel(const std::vector<int64_t>& c, const Shape& s) {
  int64_t idx = 0;
  for (size_t d = 0; d < s.size(); ++d) idx = idx * s[d] + c[d];
  return idx;
}

// The parameter governing element `idx`, from the documented layout: per
// axis, the coordinate on the axis; per group, the element's coordinates with
// the axis coordinate divided by the block, flattened row-major over the
// parameter shape [d0, ..., ceil(dA / block), ..., dn].
int64_t group_of(int64_t idx, const Shape& s, int axis, int64_t block) {
  if (axis < 0) return 0;
  auto c = unravel(idx, s);
  const auto a = static_cast<size_t>(axis);
  if (block == 0) return c[a];
  c[a] /= block;
  Shape ps = s;
  ps[a] = (s[a] + block - 1) / block;
  return ravel(c, ps);
}

int64_t group_count(const Shape& s, int axis, int64_t block) {
  if (axis < 0) return 1;
  const auto a = static_cast<size_t>(axis);
  if (block == 0) return s[a];
  Shape ps = s;
  ps[a] = (s[a] + block - 1) / block;
  return shape_numel(ps);
}

// Brute-force per-group minima and maxima.
MinMax brute_min_max(const std::vector<float>& v, const Shape& s, int axis, int64_t block) {
  const auto g = static_cast<size_t>(group_count(s, axis, block));
  MinMax r;
  r.min.assign(g, std::numeric_limits<float>::infinity());
  r.max.assign(g, -std::numeric_limits<float>::infinity());
  for (size_t i = 0; i < v.size(); ++i) {
    const auto k = static_cast<size_t>(group_of(static_cast<int64_t>(i), s, axis, block));
    r.min[k] = std::min(r.min[k], v[i]);
    r.max[k] = std::max(r.max[k], v[i]);
  }
  return r;
}

double ulp(float x) {
  const float a = std::fabs(x);
  return static_cast<double>(std::nextafter(a, std::numeric_limits<float>::infinity())) -
         static_cast<double>(a);
}

std::vector<int32_t> codes_of(const Tensor& q) {
  std::vector<int32_t> v(static_cast<size_t>(q.numel()));
  load_codes(q.raw(), q.numel(), q.dtype(), v.data());
  return v;
}

std::vector<float> values_of(const Tensor& x) {
  const float* d = x.data<float>();
  return std::vector<float>(d, d + x.numel());
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::vector<float> normal_floats(size_t n, float mean, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

Tensor vec_tensor(const std::vector<float>& v) {
  return Tensor::from({static_cast<int64_t>(v.size())}, v);
}

// Checks that `fn` throws a qforge::Error whose what() contains every one of
// `parts`; returns the error (or nothing, after a failure).
template <typename Fn>
std::optional<Error> expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string w = e.what();
    for (const auto& p : parts) EXPECT_NE(w.find(p), std::string::npos) << "'" << p << "' not in: " << w;
    return e;
  }
  ADD_FAILURE() << "no qforge::Error thrown";
  return std::nullopt;
}

const DType kQuantTypes[] = {DType::kU8, DType::kI8, DType::kU16, DType::kI16,
                             DType::kU4, DType::kI4, DType::kU2, DType::kI2};

struct Granule {
  Shape shape;
  int axis;
  int64_t block;
};

// Odd shapes; per-axis on the first, a middle and the last axis; per-group
// with blocks that divide the axis and blocks that don't.
const std::vector<Granule>& granules() {
  static const std::vector<Granule> g = {
      {{37}, -1, 0},        {{7, 5, 3}, -1, 0},   {{37}, 0, 0},         {{7, 5, 3}, 0, 0},
      {{7, 5, 3}, 1, 0},    {{7, 5, 3}, 2, 0},    {{2, 3, 5, 4}, 3, 0}, {{37}, 0, 8},
      {{37}, 0, 37},        {{7, 5, 3}, 1, 5},    {{7, 5, 3}, 1, 2},    {{7, 5, 3}, 2, 3},
      {{7, 5, 3}, 0, 3},    {{13, 9}, 1, 3},      {{13, 9}, 1, 4},      {{13, 9}, 0, 5},
      {{13, 9}, 0, 13},     {{2, 3, 5, 4}, 2, 2},
  };
  return g;
}

std::string spec_str(const QuantSpec& s) {
  return std::string(dtype_name(s.dtype)) + (s.symmetric ? " symmetric" : " affine") +
         (s.reduce_range ? " reduce_range" : "") + (s.narrow_range ? " narrow_range" : "") +
         " axis=" + std::to_string(s.axis) + " block=" + std::to_string(s.block_size);
}

// Random data whose magnitude differs from group to group (so that a wrong
// group mapping shows up as a too-large error), in one of a few kinds of
// range: around 0, all positive, all negative, lopsided.
std::vector<float> group_data(const Granule& g, int kind, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const int64_t n = shape_numel(g.shape);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = group_of(i, g.shape, g.axis, g.block);
    const float mag = std::ldexp(1.0f, static_cast<int>(k % 7) - 3);  // 1/8 .. 8
    float x = u(rng);
    switch (kind) {
      case 0: x = (2 * x - 1) * 3.0f; break;   // [-3, 3]
      case 1: x = 0.5f + 6.5f * x; break;      // [0.5, 7]: 0 not in range
      case 2: x = -9.0f + 8.99f * x; break;    // [-9, -0.01]
      default: x = -0.2f + 11.2f * x; break;   // [-0.2, 11]
    }
    v[static_cast<size_t>(i)] = x * mag;
  }
  return v;
}

// 2-bit types with reduce_range and narrow_range: [0, 0] for i2, [1, 1] for u2.
bool degenerate(const QuantSpec& s) {
  return s.reduce_range && s.narrow_range && dtype_bits(s.dtype) == 2;
}

// ---- round trip ----

TEST(PropsRoundTrip, WithinHalfAStepEverywhere) {
  int checked = 0;
  uint32_t seed = 1;
  for (DType t : kQuantTypes)
    for (int sym = 0; sym < 2; ++sym)
      for (int reduce = 0; reduce < 2; ++reduce)
        for (int narrow = 0; narrow < 2; ++narrow)
          for (const Granule& g : granules()) {
            QuantSpec spec;
            spec.dtype = t;
            spec.symmetric = sym != 0;
            spec.reduce_range = reduce != 0;
            spec.narrow_range = narrow != 0;
            spec.axis = g.axis;
            spec.block_size = g.block;
            if (degenerate(spec)) continue;  // tested in DegenerateParamRange
            const int kind = static_cast<int>(seed % 4);
            const auto xs = group_data(g, kind, ++seed);
            SCOPED_TRACE(spec_str(spec) + " shape " + shape_str(g.shape) + " kind " +
                         std::to_string(kind) + " seed " + std::to_string(seed));
            Tensor x = Tensor::from(g.shape, xs);

            // The ranges are the true per-group minima and maxima.
            const MinMax mm = find_min_max(x, g.axis, g.block);
            const MinMax want = brute_min_max(xs, g.shape, g.axis, g.block);
            ASSERT_EQ(mm.min, want.min);
            ASSERT_EQ(mm.max, want.max);

            const QuantParams p = choose_params_for(x, spec);
            ASSERT_NO_THROW(p.validate_for(g.shape, "test"));
            ASSERT_EQ(p.scale.size(), want.min.size());
            const Tensor q = quantize(x, p);
            ASSERT_EQ(q.dtype(), t);
            const auto codes = codes_of(q);
            const auto back = values_of(dequantize(q));
            for (size_t i = 0; i < xs.size(); ++i) {
              const auto k = static_cast<size_t>(group_of(static_cast<int64_t>(i), g.shape, g.axis, g.block));
              const double s = p.scale[k];
              ASSERT_TRUE(std::isfinite(s) && s > 0);
              // Half a step, plus float32 rounding of x / scale and of the
              // dequantizing product. A code saturated to the storage range
              // may also be off by the rounding of the scale itself: the
              // scale is (max - min) / levels rounded twice, so the top of
              // the grid can miss max by about 2^-23 of the range's width.
              double allow = s / 2 + 4 * ulp(xs[i]);
              if (codes[i] == dtype_min(t) || codes[i] == dtype_max(t))
                allow += 8 * ulp(std::max(std::fabs(want.min[k]), std::fabs(want.max[k])));
              const double err = std::fabs(static_cast<double>(back[i]) - static_cast<double>(xs[i]));
              ASSERT_LE(err, allow) << "element " << i << " x=" << xs[i] << " back=" << back[i]
                                    << " code=" << codes[i] << " scale=" << s
                                    << " zp=" << p.zero_point[k];
            }

            // 0 is exact in every group: zeros dequantize to exactly 0.
            const Tensor zeros(DType::kF32, g.shape);
            const auto z = values_of(dequantize(quantize(zeros, p)));
            for (size_t i = 0; i < z.size(); ++i) ASSERT_EQ(z[i], 0.0f) << "element " << i;
            ++checked;
          }
  // Every non-degenerate combination ran (the 2-bit reduce+narrow ones are
  // the only degenerate ones: 4 of 8 * 8 combinations of 2-bit types).
  EXPECT_EQ(checked, static_cast<int>(8 * 8 - 4) * static_cast<int>(granules().size()));
}

// The formulas of qforge/quant.h, on exact cases.
TEST(PropsRoundTrip, ScaleAndZeroPointFollowTheDocumentedFormulas) {
  for (DType t : kQuantTypes)
    for (int sym = 0; sym < 2; ++sym) {
      QuantSpec spec;
      spec.dtype = t;
      spec.symmetric = sym != 0;
      SCOPED_TRACE(spec_str(spec));
      const auto [qmin, qmax] = param_range(spec);
      const auto levels = static_cast<float>(qmax - qmin);
      const QuantParams p = choose_params(spec, -1.5f, 6.0f);
      if (spec.symmetric) {
        EXPECT_EQ(p.scale[0], 6.0f / (levels / 2));
        EXPECT_EQ(p.zero_point[0], dtype_info(t).is_signed ? 0 : 1 << (dtype_bits(t) - 1));
      } else {
        const float s = 7.5f / levels;
        EXPECT_EQ(p.scale[0], s);
        EXPECT_EQ(p.zero_point[0], qmin - static_cast<int64_t>(std::nearbyint(-1.5f / s)));
      }
    }
}

// ---- edge cases ----

TEST(PropsEdge, AllZeroTensorGetsEpsilonScale) {
  for (DType t : kQuantTypes)
    for (int sym = 0; sym < 2; ++sym) {
      QuantSpec spec;
      spec.dtype = t;
      spec.symmetric = sym != 0;
      SCOPED_TRACE(spec_str(spec));
      const Tensor x(DType::kF32, {3, 5});
      const QuantParams p = choose_params_for(x, spec);
      ASSERT_EQ(p.scale.size(), 1u);
      EXPECT_EQ(p.scale[0], std::numeric_limits<float>::epsilon());  // PyTorch's eps
      const int64_t want_zp = spec.symmetric ? (dtype_info(t).is_signed ? 0 : int64_t{1} << (dtype_bits(t) - 1))
                                             : param_range(spec).first;
      EXPECT_EQ(p.zero_point[0], want_zp);
      for (float v : values_of(dequantize(quantize(x, p)))) EXPECT_EQ(v, 0.0f);
    }
}

TEST(PropsEdge, ConstantTensors) {
  for (DType t : kQuantTypes)
    for (float c : {2.5f, -2.5f, 1e-20f, -7e12f}) {
      QuantSpec spec;
      spec.dtype = t;
      SCOPED_TRACE(spec_str(spec) + " constant " + std::to_string(c));
      const auto [qmin, qmax] = param_range(spec);
      const Tensor x = Tensor::from({2, 3}, std::vector<float>(6, c));
      const QuantParams p = choose_params_for(x, spec);
      const float s = std::max(std::fabs(c) / static_cast<float>(qmax - qmin),
                               std::numeric_limits<float>::epsilon());
      EXPECT_EQ(p.scale[0], s);
      // A positive constant sits at the top of [0, c]: zp = qmin; a negative
      // one at the bottom of [c, 0]: zp = qmax (when the scale isn't eps).
      if (c > 0 || s == std::numeric_limits<float>::epsilon())
        EXPECT_EQ(p.zero_point[0], qmin);
      else
        EXPECT_EQ(p.zero_point[0], qmax);
      for (float v : values_of(dequantize(quantize(x, p))))
        EXPECT_LE(std::fabs(static_cast<double>(v) - c), s / 2.0 + 4 * ulp(c));
    }
}

TEST(PropsEdge, RangeWithoutZeroIsWidened) {
  for (DType t : kQuantTypes) {
    QuantSpec spec;
    spec.dtype = t;
    SCOPED_TRACE(spec_str(spec));
    const auto xs = test::random_floats(101, 2.0f, 5.0f, 77);
    const Tensor x = vec_tensor(xs);
    const QuantParams p = choose_params_for(x, spec);
    const auto [qmin, qmax] = param_range(spec);
    const float hi = *std::max_element(xs.begin(), xs.end());
    EXPECT_EQ(p.scale[0], hi / static_cast<float>(qmax - qmin));  // range [0, max]
    EXPECT_EQ(p.zero_point[0], qmin);
    const Tensor zero = Tensor::from({1}, std::vector<float>{0.0f});
    EXPECT_EQ(dequantize(quantize(zero, p)).data<float>()[0], 0.0f);
    const auto back = values_of(dequantize(quantize(x, p)));
    for (size_t i = 0; i < xs.size(); ++i)
      EXPECT_LE(std::fabs(static_cast<double>(back[i]) - xs[i]), p.scale[0] / 2.0 + 4 * ulp(xs[i]));
    // All negative: widened to [min, 0], zero point at the top.
    std::vector<float> neg(xs);
    for (auto& v : neg) v = -v;
    const QuantParams pn = choose_params_for(vec_tensor(neg), spec);
    EXPECT_EQ(pn.zero_point[0], qmax);
  }
}

TEST(PropsEdge, HugeRangeDoesNotOverflow) {
  std::vector<float> xs = {3e38f, -3e38f, 0.0f, 1.0f, -1.0f, 1.5e38f, -2.9e38f, 2.99e38f};
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-3e38, 3e38);  // in double: 6e38 overflows float
  for (int i = 0; i < 200; ++i) xs.push_back(static_cast<float>(u(rng)));
  const std::vector<std::vector<float>> datasets = {
      xs, {1e38f, 3e38f, 2e38f}, {-3e38f, -1e30f}, {-3e38f, 1.0f}};
  for (DType t : kQuantTypes)
    for (int sym = 0; sym < 2; ++sym)
      for (const auto& d : datasets) {
        QuantSpec spec;
        spec.dtype = t;
        spec.symmetric = sym != 0;
        SCOPED_TRACE(spec_str(spec) + " n=" + std::to_string(d.size()));
        const Tensor x = vec_tensor(d);
        const QuantParams p = choose_params_for(x, spec);
        ASSERT_TRUE(std::isfinite(p.scale[0]));
        ASSERT_GT(p.scale[0], 0.0f);
        ASSERT_NO_THROW(p.validate_for(x.shape(), "huge"));
        const Tensor q = quantize(x, p);
        const auto codes = codes_of(q);
        const auto back = values_of(dequantize(q));
        const float amax = std::max(std::fabs(*std::min_element(d.begin(), d.end())),
                                    std::fabs(*std::max_element(d.begin(), d.end())));
        for (size_t i = 0; i < d.size(); ++i) {
          // The grid point, exactly (in double): within half a step of x.
          const double exact = static_cast<double>(codes[i] - p.zero_point[0]) * p.scale[0];
          double allow = p.scale[0] / 2.0 + 4 * ulp(d[i]);
          if (codes[i] == dtype_min(t) || codes[i] == dtype_max(t)) allow += 8 * ulp(amax);
          EXPECT_LE(std::fabs(exact - d[i]), allow) << "element " << i << " x=" << d[i];
          // Dequantized in float32, it is finite where the grid point is
          // (with 2 bits, 0 exact and +-3e38 in range, half a step beyond
          // 3e38 is past FLT_MAX: that grid point is not a float).
          if (std::fabs(exact) <= FLT_MAX) {
            ASSERT_TRUE(std::isfinite(back[i])) << "element " << i << " x=" << d[i];
            EXPECT_LE(std::fabs(static_cast<double>(back[i]) - d[i]), allow + ulp(back[i]))
                << "element " << i << " x=" << d[i] << " back=" << back[i];
          }
          if (dtype_bits(t) >= 4) { EXPECT_LE(std::fabs(exact), FLT_MAX) << "element " << i; }
        }
      }
}

TEST(PropsEdge, NanAndInfAreErrorsNamingTensorAndIndex) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf, -inf}) {
    const char* what = std::isnan(bad) ? "NaN" : "Inf";
    SCOPED_TRACE(what);
    auto xs = test::random_floats(24, -1, 1, 3);
    xs[17] = bad;
    Tensor x = Tensor::from({4, 6}, xs);
    x.set_name("act.17");
    expect_error([&] { find_min_max(x); }, {"'act.17'", what, "index 17"});
    expect_error([&] { find_min_max(x, 1); }, {"'act.17'", what, "index 17"});
    expect_error([&] { find_min_max(x, 0, 0); }, {"'act.17'", what, "index 17"});
    expect_error([&] { find_min_max(x, 1, 4); }, {"'act.17'", what, "index 17"});
    QuantSpec spec;
    expect_error([&] { choose_params_for(x, spec); }, {"'act.17'", what, "index 17"});
    MinMaxObserver mo(spec);
    expect_error([&] { mo.observe(x); }, {"'act.17'", what, "index 17"});
    HistogramObserver ho(spec);
    expect_error([&] { ho.observe(x); }, {"'act.17'", what, "index 17"});
    EXPECT_FALSE(ho.has_data());
    // Non-finite bounds given directly.
    expect_error([&] { choose_params(spec, -1.0f, bad, "my range"); }, {"my range", "not finite"});
  }
}

TEST(PropsEdge, EmptyTensorHasNoRange) {
  EXPECT_THROW(find_min_max(Tensor(DType::kF32, {0})), Error);
  EXPECT_THROW(find_min_max(Tensor(DType::kF32, {3, 0, 2}), 0), Error);
  EXPECT_THROW(find_min_max(Tensor()), Error);
  Tensor e(DType::kF32, {0, 4});
  e.set_name("nothing");
  expect_error([&] { choose_params_for(e, QuantSpec{}); }, {"'nothing'", "empty"});
  // Observers ignore empty tensors, and then have no parameters to give.
  MinMaxObserver o{QuantSpec{}};
  o.observe(e);
  EXPECT_FALSE(o.has_data());
  EXPECT_THROW(o.params(), Error);
}

// 2-bit types with reduce_range and narrow_range leave one code or none to
// choose a scale for: that must be refused, not turned into an infinite or
// NaN scale.
TEST(PropsEdge, DegenerateParamRange) {
  for (DType t : {DType::kU2, DType::kI2})
    for (int sym = 0; sym < 2; ++sym) {
      QuantSpec spec;
      spec.dtype = t;
      spec.symmetric = sym != 0;
      spec.reduce_range = true;
      spec.narrow_range = true;
      SCOPED_TRACE(spec_str(spec));
      expect_error([&] { param_range(spec); }, {std::string(dtype_name(t)), "reduce_range", "narrow_range"});
      EXPECT_THROW(choose_params(spec, -1.0f, 1.0f), Error);
      EXPECT_THROW(choose_params(spec, 0.0f, 0.0f), Error);
      EXPECT_THROW(FakeQuantize(std::make_unique<MinMaxObserver>(spec)), Error);
      // One option alone leaves 2 or 3 codes, enough.
      QuantSpec one = spec;
      one.narrow_range = false;
      EXPECT_LT(param_range(one).first, param_range(one).second);
      one.narrow_range = true;
      one.reduce_range = false;
      EXPECT_LT(param_range(one).first, param_range(one).second);
    }
}

// ---- QuantParams::validate_for ----

TEST(PropsValidate, ErrorsNameTheProblem) {
  QuantParams p;
  p.dtype = DType::kU8;
  p.axis = 1;
  p.scale = {0.1f, 0.2f, 0.3f};
  p.zero_point = {0, 0, 0};
  auto e = expect_error([&] { p.validate_for({4, 5}, "weights"); }, {"weights", "3 scales", "axis 1"});
  if (e) { EXPECT_EQ(e->expected(), "5"); }
  p.axis = -1;
  e = expect_error([&] { p.validate_for({4, 5}, "weights"); }, {"weights", "3 scales"});
  if (e) { EXPECT_EQ(e->expected(), "1"); }
  // Per group: [4, 6] on axis 1 with blocks of 4 needs [4, 2] = 8 scales.
  p.axis = 1;
  p.block_size = 4;
  p.scale.assign(4, 0.1f);
  p.zero_point.assign(4, 0);
  e = expect_error([&] { p.validate_for({4, 6}, "weights"); }, {"weights", "4 scales"});
  if (e) { EXPECT_EQ(e->expected(), "8"); }
  p.scale.assign(8, 0.1f);
  p.zero_point.assign(8, 0);
  EXPECT_NO_THROW(p.validate_for({4, 6}, "weights"));
  p.zero_point.assign(7, 0);
  expect_error([&] { p.validate_for({4, 6}, "weights"); }, {"weights", "7 zero points"});

  QuantParams a;
  a.dtype = DType::kI8;
  a.axis = 2;
  a.scale = {1.0f, 1.0f};
  a.zero_point = {0, 0};
  expect_error([&] { a.validate_for({2, 2}, "w"); }, {"w", "axis 2", "out of range"});
  a.axis = -1;
  a.block_size = 2;
  a.scale = {1.0f};
  a.zero_point = {0};
  expect_error([&] { a.validate_for({2, 2}, "w"); }, {"w", "block_size 2"});

  for (float bad : {0.0f, -0.5f, std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity()}) {
    QuantParams s;
    s.dtype = DType::kI8;
    s.axis = 0;
    s.scale = {1.0f, bad, 1.0f};
    s.zero_point = {0, 0, 0};
    SCOPED_TRACE(bad);
    expect_error([&] { s.validate_for({3, 4}, "w"); }, {"w", "scale[1]", "finite scale > 0"});
    // The public entry points refuse such parameters too.
    EXPECT_THROW(quantize(Tensor(DType::kF32, {3, 4}), s), Error);
  }
  {
    QuantParams s;
    s.dtype = DType::kI8;
    s.scale = {std::numeric_limits<float>::quiet_NaN()};
    s.zero_point = {0};
    expect_error([&] { s.validate_for({3}, "w"); }, {"scale[0]", "nan"});
  }

  struct Zp {
    DType t;
    int32_t zp;
    const char* range;
  };
  for (const Zp& z : {Zp{DType::kU8, 256, "[0, 255]"}, Zp{DType::kU8, -1, "[0, 255]"},
                      Zp{DType::kI8, 128, "[-128, 127]"}, Zp{DType::kI4, 8, "[-8, 7]"},
                      Zp{DType::kU4, 16, "[0, 15]"}, Zp{DType::kI2, -3, "[-2, 1]"},
                      Zp{DType::kU16, 65536, "[0, 65535]"}}) {
    QuantParams s;
    s.dtype = z.t;
    s.scale = {1.0f};
    s.zero_point = {z.zp};
    SCOPED_TRACE(dtype_name(z.t));
    expect_error([&] { s.validate_for({3}, "w"); },
                 {"zero_point[0]", std::to_string(z.zp), z.range});
    EXPECT_THROW(dequantize(Tensor(z.t, {3}), s), Error);
  }

  QuantParams f;
  f.dtype = DType::kF32;
  f.scale = {1.0f};
  f.zero_point = {0};
  expect_error([&] { f.validate_for({3}, "w"); }, {"f32"});
}

// ---- requantize ----

TEST(PropsRequantize, EqualsQuantizeOfDequantize) {
  std::mt19937 rng(2024);
  struct From {
    DType t;
    int axis;
  };
  const Shape shape{5, 67};  // 67: not a multiple of any SIMD width
  const std::vector<QuantParams> targets = [&] {
    std::vector<QuantParams> v;
    for (DType t : {DType::kU8, DType::kI8, DType::kI4, DType::kU16, DType::kU2}) {
      QuantParams p;
      p.dtype = t;
      p.scale = {0.037f};
      p.zero_point = {static_cast<int32_t>((dtype_min(t) + dtype_max(t)) / 2)};
      v.push_back(p);
      p.axis = 0;
      p.scale = {0.01f, 0.5f, 0.023f, 3.0f, 0.0625f};
      p.zero_point = {static_cast<int32_t>(dtype_min(t)), static_cast<int32_t>(dtype_max(t)),
                      0, static_cast<int32_t>(dtype_max(t) / 2), static_cast<int32_t>(dtype_min(t) / 2)};
      v.push_back(p);
    }
    return v;
  }();
  for (const From& from : {From{DType::kU8, -1}, From{DType::kI8, -1}, From{DType::kI8, 1},
                           From{DType::kI4, 0}, From{DType::kU16, -1}, From{DType::kI2, -1}}) {
    // Random codes with random parameters.
    QuantParams fp;
    fp.dtype = from.t;
    fp.axis = from.axis;
    const size_t ng = from.axis < 0 ? 1 : static_cast<size_t>(shape[static_cast<size_t>(from.axis)]);
    std::uniform_int_distribution<int32_t> code(static_cast<int32_t>(dtype_min(from.t)),
                                                static_cast<int32_t>(dtype_max(from.t)));
    std::uniform_real_distribution<float> sc(0.001f, 2.0f);
    for (size_t k = 0; k < ng; ++k) {
      fp.scale.push_back(sc(rng));
      fp.zero_point.push_back(code(rng));
    }
    std::vector<int32_t> codes(static_cast<size_t>(shape_numel(shape)));
    for (auto& c : codes) c = code(rng);
    Tensor q(from.t, shape);
    store_codes(codes.data(), q.numel(), from.t, q.raw());
    q.set_qparams(std::make_shared<QuantParams>(fp));

    // Also twice the scale: odd code differences land on (or within an ulp
    // of) .5 ties, where dividing and multiplying by the reciprocal differ.
    std::vector<QuantParams> tos = targets;
    QuantParams twice = fp;
    for (auto& sv : twice.scale) sv *= 2;
    tos.push_back(twice);
    std::vector<int32_t> by_mode[2];
    for (const QuantParams& to : tos)
      for (ScaleMode mode : {ScaleMode::kDivide, ScaleMode::kMultiplyReciprocal}) {
        SCOPED_TRACE(fp.str() + " -> " + to.str() +
                     (mode == ScaleMode::kDivide ? " divide" : " reciprocal"));
        const Tensor r = requantize(q, to, mode);
        ASSERT_EQ(r.dtype(), to.dtype);
        ASSERT_NE(r.qparams(), nullptr);
        EXPECT_EQ(r.qparams()->scale, to.scale);
        const auto got = codes_of(r);
        // The same through the public tensor functions...
        EXPECT_EQ(got, codes_of(quantize(dequantize(q), to, mode)));
        // ...and element by element from the primitives.
        for (size_t i = 0; i < codes.size(); ++i) {
          const auto kf = static_cast<size_t>(group_of(static_cast<int64_t>(i), shape, fp.axis, 0));
          const auto kt = static_cast<size_t>(group_of(static_cast<int64_t>(i), shape, to.axis, 0));
          const float x = dequantize_value(codes[i], fp.scale[kf], fp.zero_point[kf]);
          const int32_t want = quantize_value(x, to.scale[kt], to.zero_point[kt],
                                              static_cast<int32_t>(to.qmin()),
                                              static_cast<int32_t>(to.qmax()), mode);
          ASSERT_EQ(got[i], want) << "element " << i << " x=" << x;
        }
        if (&to == &tos.back()) by_mode[mode == ScaleMode::kDivide ? 0 : 1] = got;
      }
    if (dtype_bits(from.t) >= 8) {
      // The two modes are different computations (qforge/quant.h) and on
      // this data they must disagree somewhere, or the test above could not
      // tell a requantize that ignores `mode`.
      EXPECT_NE(by_mode[0], by_mode[1]) << fp.str();
    }
  }
}

// ---- observers: merging ----

// Batches with wildly different scales, an all-zero first batch and a
// constant batch.
std::vector<std::vector<float>> merge_batches(size_t n, uint32_t seed) {
  std::vector<std::vector<float>> b;
  b.emplace_back(n, 0.0f);
  b.push_back(normal_floats(n, 0.0f, 1e-3f, seed));
  b.push_back(normal_floats(n, 0.0f, 1e3f, seed + 1));
  b.emplace_back(n, 7.25f);
  b.push_back(normal_floats(n, 0.5f, 2.0f, seed + 2));
  b.push_back(test::random_floats(n, -1e-4f, 3e-4f, seed + 3));
  b.emplace_back(n, -0.125f);
  return b;
}

// An observer's range and parameters, computed once (the histogram range
// searches are not cheap under the sanitizers).
struct Outcome {
  MinMax range;
  QuantParams params;
};
Outcome outcome(const Observer& o) { return {o.range(), o.params()}; }

void expect_same_params(const Observer& a, const Outcome& want) {
  const Outcome got = outcome(a);
  EXPECT_EQ(got.range.min, want.range.min);
  EXPECT_EQ(got.range.max, want.range.max);
  EXPECT_EQ(got.params.scale, want.params.scale);
  EXPECT_EQ(got.params.zero_point, want.params.zero_point);
}
void expect_same_params(const Observer& a, const Observer& b) { expect_same_params(a, outcome(b)); }

TEST(PropsObserverMerge, MinMaxSplitEqualsWhole) {
  struct Cfg {
    DType t;
    bool sym;
    int axis;
    int64_t block;
  };
  const Shape shape{6, 5};
  for (const Cfg& c : {Cfg{DType::kU8, false, -1, 0}, Cfg{DType::kI8, true, -1, 0},
                       Cfg{DType::kI8, true, 0, 0}, Cfg{DType::kU4, false, 1, 0},
                       Cfg{DType::kI4, false, 1, 2}}) {
    QuantSpec spec;
    spec.dtype = c.t;
    spec.symmetric = c.sym;
    spec.axis = c.axis;
    spec.block_size = c.block;
    SCOPED_TRACE(spec_str(spec));
    const auto batches = merge_batches(30, 11);
    MinMaxObserver whole(spec), a(spec), b(spec), rev(spec);
    for (size_t i = 0; i < batches.size(); ++i) {
      const Tensor x = Tensor::from(shape, batches[i]);
      whole.observe(x);
      (i % 3 == 1 ? b : a).observe(x);
    }
    for (size_t i = batches.size(); i-- > 0;) rev.observe(Tensor::from(shape, batches[i]));
    MinMaxObserver ab(a);
    ab.merge(b);
    MinMaxObserver ba(b);
    ba.merge(a);
    expect_same_params(ab, whole);
    expect_same_params(ba, whole);
    expect_same_params(rev, whole);
    // Merging an observer that saw nothing changes nothing, either way round.
    MinMaxObserver empty(spec);
    ab.merge(empty);
    expect_same_params(ab, whole);
    empty.merge(whole);
    expect_same_params(empty, whole);
  }
}

TEST(PropsObserverMerge, HistogramSplitEqualsWholeAndOrderDoesNotMatter) {
  const size_t n = kSanitized ? 500 : 1000;
  for (RangeMethod m : {RangeMethod::kMse, RangeMethod::kEntropy, RangeMethod::kPercentile})
    for (int sym = 0; sym < 2; ++sym) {
      QuantSpec spec;
      spec.dtype = sym ? DType::kI8 : DType::kU8;
      spec.symmetric = sym != 0;
      HistogramOptions opt;
      opt.method = m;
      SCOPED_TRACE(std::string(range_method_name(m)) + " " + spec_str(spec));
      const auto batches = merge_batches(n, 21);
      HistogramObserver whole(spec, opt), a(spec, opt), b(spec, opt), rev(spec, opt);
      for (size_t i = 0; i < batches.size(); ++i) {
        const Tensor x = vec_tensor(batches[i]);
        whole.observe(x);
        (i % 2 == 0 ? a : b).observe(x);
        // After every batch, the merged split equals the whole so far.
        HistogramObserver ab(a);
        ab.merge(b);
        ASSERT_TRUE(ab.histogram() == whole.histogram()) << "after batch " << i;
      }
      for (size_t i = batches.size(); i-- > 0;) rev.observe(vec_tensor(batches[i]));
      HistogramObserver ab(a), ba(b);
      ab.merge(b);
      ba.merge(a);
      EXPECT_EQ(whole.histogram().total(), n * batches.size());
      EXPECT_TRUE(ab.histogram() == whole.histogram());
      EXPECT_TRUE(ba.histogram() == whole.histogram());
      EXPECT_TRUE(rev.histogram() == whole.histogram());
      const Outcome want = outcome(whole);
      expect_same_params(ab, want);
      expect_same_params(ba, want);
      expect_same_params(rev, want);
      // The histogram's bounds are the data's.
      float lo = 0, hi = 0;
      for (const auto& v : batches) {
        lo = std::min(lo, *std::min_element(v.begin(), v.end()));
        hi = std::max(hi, *std::max_element(v.begin(), v.end()));
      }
      EXPECT_EQ(whole.histogram().min(), lo);
      EXPECT_EQ(whole.histogram().max(), hi);
    }
}

TEST(PropsObserverMerge, HistogramOfOneTensorSplitAnywhere) {
  const auto all = normal_floats(kSanitized ? 4000 : 8000, 0.3f, 1.7f, 99);
  std::mt19937 rng(5);
  for (int trial = 0; trial < 5; ++trial) {
    HistogramObserver whole{QuantSpec{}}, a{QuantSpec{}}, b{QuantSpec{}};
    whole.observe(vec_tensor(all));
    size_t i = 0;
    while (i < all.size()) {
      const size_t len = std::min<size_t>(all.size() - i, std::uniform_int_distribution<size_t>(1, 900)(rng));
      const std::vector<float> part(all.begin() + static_cast<std::ptrdiff_t>(i),
                                    all.begin() + static_cast<std::ptrdiff_t>(i + len));
      (rng() % 2 ? a : b).observe(vec_tensor(part));
      i += len;
    }
    a.merge(b);
    EXPECT_TRUE(a.histogram() == whole.histogram()) << "trial " << trial;
    expect_same_params(a, whole);
  }
}

TEST(PropsObserverMerge, AllZeroHistogramThenData) {
  // An all-zero histogram can have any bin width; merging it with real data
  // (either way round) or adding data to it must give the usual histogram.
  const auto data = normal_floats(500, 0.0f, 3.0f, 8);
  std::vector<float> zeros(100, 0.0f);
  Histogram z;
  z.add(zeros.data(), static_cast<int64_t>(zeros.size()));
  EXPECT_EQ(z.total(), 100u);
  uint64_t in_zero_bin = 0;
  for (auto c : z.counts()) in_zero_bin += c;
  EXPECT_EQ(in_zero_bin, 100u);

  Histogram whole;
  whole.add(data.data(), static_cast<int64_t>(data.size()));
  whole.add(zeros.data(), static_cast<int64_t>(zeros.size()));
  Histogram a = z;
  a.add(data.data(), static_cast<int64_t>(data.size()));
  Histogram b;
  b.add(data.data(), static_cast<int64_t>(data.size()));
  Histogram c = z;
  c.merge(b);
  b.merge(z);
  EXPECT_TRUE(a == whole);
  EXPECT_TRUE(b == whole);
  EXPECT_TRUE(c == whole);
  // The all-zero histogram's bin width 2^k is a usable double (neither 0 nor
  // its reciprocal Inf: binning multiplies by 2^-k).
  EXPECT_GT(std::ldexp(1.0, z.exponent()), 0.0);
  EXPECT_TRUE(std::isfinite(std::ldexp(1.0, -z.exponent())));
  Histogram z2;
  z2.add(zeros.data(), 1);
  z2.merge(z);
  z2.add(zeros.data(), 2);
  EXPECT_EQ(z2.total(), 103u);
  EXPECT_EQ(z2.min(), 0.0f);
  EXPECT_EQ(z2.max(), 0.0f);
}

TEST(PropsObserverMerge, IncompatibleObserversAreRefused) {
  QuantSpec u8;
  QuantSpec i8;
  i8.dtype = DType::kI8;
  QuantSpec sym = u8;
  sym.symmetric = true;
  QuantSpec chan = u8;
  chan.axis = 0;
  QuantSpec narrow = u8;
  narrow.narrow_range = true;
  QuantSpec reduce = u8;
  reduce.reduce_range = true;
  MinMaxObserver mm(u8);
  mm.observe(vec_tensor({1.0f, 2.0f}));
  for (const QuantSpec& other : {i8, sym, chan, narrow, reduce}) {
    MinMaxObserver o(other);
    EXPECT_THROW(mm.merge(o), Error);
    EXPECT_THROW(o.merge(mm), Error);
  }
  MovingAverageMinMaxObserver ma(u8);
  HistogramObserver hm(u8);
  EXPECT_THROW(mm.merge(ma), Error);
  EXPECT_THROW(ma.merge(mm), Error);
  EXPECT_THROW(mm.merge(hm), Error);
  EXPECT_THROW(hm.merge(mm), Error);
  HistogramOptions ent;
  ent.method = RangeMethod::kEntropy;
  HistogramObserver he(u8, ent);
  expect_error([&] { hm.merge(he); }, {"histogram_mse", "histogram_entropy"});
  HistogramOptions bins;
  bins.bins = 1024;
  HistogramObserver hb(u8, bins);
  EXPECT_THROW(hm.merge(hb), Error);
  HistogramOptions cap;
  cap.capacity = 1000;
  HistogramObserver hc(u8, cap);
  EXPECT_THROW(hm.merge(hc), Error);
  // A refused merge leaves the observer as it was.
  EXPECT_EQ(mm.range().min, std::vector<float>{1.0f});
  EXPECT_EQ(mm.range().max, std::vector<float>{2.0f});
}

TEST(PropsObserverMerge, MovingAverageOfSameBatchesIsUnchanged) {
  for (int axis : {-1, 1}) {
    QuantSpec spec;
    spec.dtype = DType::kI8;
    spec.axis = axis;
    MovingAverageMinMaxObserver a(spec), b(spec);
    for (const auto& v : merge_batches(12, 31)) {
      const Tensor x = Tensor::from({3, 4}, v);
      a.observe(x);
      b.observe(x);
    }
    MovingAverageMinMaxObserver ab(a);
    ab.merge(b);
    expect_same_params(ab, a);
    expect_same_params(ab, b);
    // Sanity: it is a moving average, neither the last batch's range nor
    // the overall one.
    MinMaxObserver all(spec), last(spec);
    for (const auto& v : merge_batches(12, 31)) all.observe(Tensor::from({3, 4}, v));
    last.observe(Tensor::from({3, 4}, merge_batches(12, 31).back()));
    EXPECT_NE(a.range().max, all.range().max);
    EXPECT_NE(a.range().max, last.range().max);
  }
}

// ---- observers: the histogram's range methods ----

MinMax hist_range(RangeMethod m, const QuantSpec& spec, const std::vector<float>& v,
                  double percentile = 99.999) {
  HistogramOptions opt;
  opt.method = m;
  opt.percentile = percentile;
  HistogramObserver o(spec, opt);
  o.observe(vec_tensor(v));
  return o.range();
}

TEST(PropsHistogramRange, PercentileOfStandardNormal) {
  const auto v = normal_floats(100000, 0.0f, 1.0f, 12345);
  for (int sym = 0; sym < 2; ++sym) {
    QuantSpec spec;
    spec.dtype = sym ? DType::kI8 : DType::kU8;
    spec.symmetric = sym != 0;
    const MinMax r = hist_range(RangeMethod::kPercentile, spec, v, 99.99);
    SCOPED_TRACE(spec_str(spec));
    // 99.99 % of N(0, 1) lies within +-3.89.
    EXPECT_GE(r.min[0], -4.5f);
    EXPECT_LE(r.max[0], 4.5f);
    EXPECT_LE(r.min[0], -3.0f);
    EXPECT_GE(r.max[0], 3.0f);
    // And the values kept are about 99.99 % of them.
    const auto kept = std::count_if(v.begin(), v.end(), [&](float x) { return x >= r.min[0] && x <= r.max[0]; });
    EXPECT_GE(kept, 99980);
  }
}

TEST(PropsHistogramRange, EntropyAndMseClipOutliers) {
  auto v = normal_floats(100000, 0.0f, 1.0f, 4242);
  for (int i = 0; i < 10; ++i) {
    v.push_back(1000.0f);
    v.push_back(-1000.0f);
  }
  for (RangeMethod m : {RangeMethod::kEntropy, RangeMethod::kMse})
    for (int sym = 0; sym < 2; ++sym) {
      QuantSpec spec;
      spec.dtype = sym ? DType::kI8 : DType::kU8;
      spec.symmetric = sym != 0;
      SCOPED_TRACE(std::string(range_method_name(m)) + " " + spec_str(spec));
      const MinMax r = hist_range(m, spec, v);
      EXPECT_GE(r.min[0], -1000.0f);
      EXPECT_LE(r.max[0], 1000.0f);
      EXPECT_LT(r.min[0], r.max[0]);
      EXPECT_LT(r.max[0] - r.min[0], 2000.0f);
    }
}

TEST(PropsHistogramRange, MseKeepsUniformRange) {
  const auto v = test::random_floats(100000, 0.0f, 1.0f, 777);
  const float lo = *std::min_element(v.begin(), v.end());
  const float hi = *std::max_element(v.begin(), v.end());
  const MinMax r = hist_range(RangeMethod::kMse, QuantSpec{}, v);
  EXPECT_GE(r.min[0], lo);
  EXPECT_LE(r.max[0], hi);
  EXPECT_GE(r.max[0] - r.min[0], 0.95f * (hi - lo));
}

TEST(PropsHistogramRange, ConstantDataGivesItsValue) {
  for (RangeMethod m : {RangeMethod::kMse, RangeMethod::kEntropy, RangeMethod::kPercentile}) {
    const MinMax r = hist_range(m, QuantSpec{}, std::vector<float>(50, 3.5f));
    EXPECT_EQ(r.min, std::vector<float>{3.5f});
    EXPECT_EQ(r.max, std::vector<float>{3.5f});
  }
}

// ---- Histogram::resample ----

TEST(PropsHistogramResample, PreservesTotal) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    const auto v = normal_floats(2000 + static_cast<size_t>(trial) * 37, static_cast<float>(trial % 5) - 2.0f,
                                 std::ldexp(1.0f, trial % 9 - 4), 100u + static_cast<uint32_t>(trial));
    Histogram h(trial % 2 ? 4096 : 64);
    h.add(v.data(), static_cast<int64_t>(v.size()));
    const double lo0 = h.min(), hi0 = h.max(), w = hi0 - lo0;
    std::uniform_real_distribution<double> u(-0.3, 1.3);
    double lo = lo0 + u(rng) * w, hi = lo0 + u(rng) * w;
    if (lo > hi) std::swap(lo, hi);
    if (hi - lo < 1e-3 * w) hi = lo + 1e-3 * w;
    const int bins = std::uniform_int_distribution<int>(1, 3000)(rng);
    for (auto [a, b] : {std::pair{lo, hi}, std::pair{lo0, hi0}}) {
      const auto r = h.resample(bins, a, b);
      ASSERT_EQ(r.size(), static_cast<size_t>(bins));
      double sum = 0;
      for (double c : r) {
        EXPECT_GE(c, 0.0);
        sum += c;
      }
      EXPECT_NEAR(sum, static_cast<double>(h.total()), 1e-9 * static_cast<double>(h.total()))
          << "trial " << trial << " bins " << bins << " on [" << a << ", " << b << "]";
    }
  }
}

TEST(PropsHistogramResample, SameGridGivesCountsBack) {
  // 16 bins of width 1 at integer positions j (a capacity of 16 forces
  // width 2^0 for data spanning [j0 + 0.5, j0 + 15.5]; see Histogram's
  // doc), every value at a bin centre, random multiplicities.
  for (int j0 : {0, -8, -16, 5}) {
    std::mt19937 rng(static_cast<uint32_t>(j0 + 100));
    std::vector<float> v;
    std::vector<uint64_t> want(16);
    for (int j = 0; j < 16; ++j) {
      const auto c = std::uniform_int_distribution<int>(j == 0 || j == 15 ? 1 : 0, 9)(rng);
      want[static_cast<size_t>(j)] = static_cast<uint64_t>(c);
      for (int i = 0; i < c; ++i) v.push_back(static_cast<float>(j0 + j) + 0.5f);
    }
    std::shuffle(v.begin(), v.end(), rng);
    Histogram h(16);
    h.add(v.data(), static_cast<int64_t>(v.size()));
    ASSERT_EQ(h.exponent(), 0);
    ASSERT_EQ(h.first_bin(), j0);
    ASSERT_EQ(h.counts(), want);
    const auto r = h.resample(16, j0, j0 + 16);
    for (size_t j = 0; j < 16; ++j) EXPECT_EQ(r[j], static_cast<double>(want[j])) << "bin " << j << " j0 " << j0;
  }
}

// ---- fake quantization ----

TEST(PropsFakeQuant, GradientIsZeroExactlyWhereClipped) {
  const auto xs = test::random_floats(4000, -40.0f, 40.0f, 55);
  const auto go = test::random_floats(4000, -2.0f, 2.0f, 56);
  const Shape shape{40, 100};
  const Tensor x = Tensor::from(shape, xs), g = Tensor::from(shape, go);
  QuantParams pt;
  pt.dtype = DType::kU8;
  pt.scale = {0.1f};
  pt.zero_point = {27};
  QuantParams pc;
  pc.dtype = DType::kI8;
  pc.axis = 0;
  for (int c = 0; c < 40; ++c) {
    pc.scale.push_back(0.01f * static_cast<float>(c + 1));
    pc.zero_point.push_back(c * 6 - 120);
  }
  struct Case {
    QuantParams p;
    int64_t qmin, qmax;
  };
  for (const Case& c : {Case{pt, 0, 255}, Case{pt, 0, 127}, Case{pc, -128, 127}, Case{pc, -127, 127}}) {
    SCOPED_TRACE(c.p.str() + " [" + std::to_string(c.qmin) + ", " + std::to_string(c.qmax) + "]");
    const auto y = values_of(fake_quantize(x, c.p, c.qmin, c.qmax));
    const auto gi = values_of(fake_quantize_grad(g, x, c.p, c.qmin, c.qmax));
    int clipped = 0, passed = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const auto k = static_cast<size_t>(group_of(static_cast<int64_t>(i), shape, c.p.axis, 0));
      const float s = c.p.scale[k];
      const int32_t zp = c.p.zero_point[k];
      // The clipping rule of qforge/fake_quant.h (PyTorch's).
      const double q = static_cast<double>(zp) + std::nearbyint(xs[i] * (1.0f / s));
      const bool inside = q >= static_cast<double>(c.qmin) && q <= static_cast<double>(c.qmax);
      const double lo = static_cast<double>(c.qmin - zp) * s, hi = static_cast<double>(c.qmax - zp) * s;
      if (inside) {
        ++passed;
        ASSERT_TRUE(same_bits(gi[i], go[i])) << "element " << i;
        ASSERT_LE(std::fabs(static_cast<double>(y[i]) - xs[i]), s / 2.0 + 4 * ulp(xs[i])) << "element " << i;
      } else {
        ++clipped;
        ASSERT_EQ(gi[i], 0.0f) << "element " << i;
        // Clipped values come out at an end of the range.
        ASSERT_NEAR(y[i], xs[i] < 0 ? lo : hi, 4 * ulp(static_cast<float>(xs[i] < 0 ? lo : hi))) << "element " << i;
      }
    }
    EXPECT_GT(clipped, 100);
    EXPECT_GT(passed, 100);
  }
}

TEST(PropsFakeQuant, DisabledFakeQuantPassesThrough) {
  FakeQuantize fq(std::make_unique<MovingAverageMinMaxObserver>(QuantSpec{}));
  fq.enable_fake_quant(false);
  const auto xs = test::random_floats(64, -3, 3, 9);
  const Tensor x = Tensor::from({8, 8}, xs);
  const Tensor y = fq.forward(x);
  EXPECT_EQ(values_of(y), xs);
  // The observer still ran.
  EXPECT_TRUE(fq.observer().has_data());
  EXPECT_NO_THROW(fq.params());
  const Tensor g = Tensor::from({8, 8}, test::random_floats(64, -1, 1, 10));
  EXPECT_EQ(values_of(fq.backward(g)), values_of(g));
  // Turned back on, it quantizes: some value moves.
  fq.enable_fake_quant(true);
  EXPECT_NE(values_of(fq.forward(x)), xs);
}

TEST(PropsFakeQuant, FrozenObserverKeepsParams) {
  FakeQuantize fq(std::make_unique<MinMaxObserver>(QuantSpec{}));
  const Tensor first = Tensor::from({4}, std::vector<float>{-1.0f, 0.25f, 0.5f, 1.0f});
  fq.forward(first);
  const QuantParams frozen = fq.params();
  fq.enable_observer(false);
  const Tensor wide = Tensor::from({4}, std::vector<float>{-100.0f, 3.0f, 50.0f, 100.0f});
  for (int i = 0; i < 3; ++i) {
    const auto y = values_of(fq.forward(wide));
    EXPECT_EQ(fq.params().scale, frozen.scale);
    EXPECT_EQ(fq.params().zero_point, frozen.zero_point);
    // With the old range, the wide values are clipped to it...
    EXPECT_NEAR(y[0], -1.0f, frozen.scale[0]);
    EXPECT_NEAR(y[3], 1.0f, frozen.scale[0]);
    // ...and their gradient is zero.
    const auto g = values_of(fq.backward(Tensor::from({4}, std::vector<float>{1, 1, 1, 1})));
    EXPECT_EQ(g, (std::vector<float>{0, 0, 0, 0}));
  }
  EXPECT_EQ(fq.observer().range().max, std::vector<float>{1.0f});
  fq.enable_observer(true);
  fq.forward(wide);
  EXPECT_NE(fq.params().scale, frozen.scale);
}

TEST(PropsFakeQuant, FrozenBeforeAnyDataIsAnError) {
  FakeQuantize fq(std::make_unique<MinMaxObserver>(QuantSpec{}));
  fq.enable_observer(false);
  EXPECT_THROW(fq.forward(Tensor::from({2}, std::vector<float>{1, 2})), Error);
  EXPECT_THROW(fq.params(), Error);
}

}  // namespace
}  // namespace qforge
