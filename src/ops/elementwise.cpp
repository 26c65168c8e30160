// The elementwise operators: unary math and activations, binary arithmetic
// with numpy broadcasting, variadic Min / Max / Sum / Mean, comparisons and
// logic, Where, Cast / CastLike, Identity and Dropout (inference).
//
// How the kernels are built:
//  * every op is a functor (a struct with an inline operator()), and the
//    loops are templates over it, so the inner loops are plain contiguous
//    loops the compiler vectorises; the dtype is dispatched once per call;
//  * broadcasting (make_plan) drops size-1 output dimensions and merges
//    neighbours that every input walks contiguously (or repeats), so the
//    output becomes rows of one contiguous inner run in which each input
//    either advances (stride 1) or repeats one value (stride 0). Same-shape,
//    scalar, [N,C,H,W] + [C,1,1] and [B,S,D] + [D] all reach a vector loop;
//    the outer dimensions are walked with an odometer;
//  * big outputs are split over the thread pool (grains keep tiny tensors on
//    the calling thread);
//  * exp, tanh, sigmoid, erf, log, softplus (and Gelu, Mish built on them),
//    f16 conversions and the ops whose selects GCC won't if-convert are
//    written on GCC vector types (see "vector math" below), 4 lanes in the
//    baseline build and 8 in AVX2 functions chosen at run time;
//  * f16 / bf16 inputs are computed in f32 and rounded back to nearest even;
//  * integer arithmetic wraps (two's complement) instead of overflowing, and
//    integer division or modulus by zero is an Error, never a crash;
//  * float -> integer casts truncate toward zero and saturate (NaN -> 0):
//    ONNX leaves out-of-range values unspecified, C++ makes them UB.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstring>
#include <limits>
#include <numbers>
#include <string>
#include <type_traits>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernels/kernels.h"
#include "ops/families.h"
#include "ops/op_util.h"
#include "qforge/quant.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {
namespace {

constexpr int64_t kCheapGrain = int64_t{1} << 15;  // elements per task, ops of a few cycles
constexpr int64_t kVecMathGrain = int64_t{1} << 13;  // vectorised exp, tanh, erf
constexpr int64_t kHeavyGrain = int64_t{1} << 12;  // elements per task, transcendental ops

// Runs fn(begin, end) over [0, n), split over the pool when n is big.
template <class F>
void parallel(const OpContext& ctx, int64_t n, int64_t grain, const F& fn) {
  if (n <= 0) return;
  if (n <= grain || ctx.pool() == nullptr) {
    fn(int64_t{0}, n);
    return;
  }
  ctx.pool()->parallel_for(n, grain, [&](int64_t b, int64_t e) { fn(b, e); });
}

// ---------------------------------------------------------------- types --

enum TypeSet : unsigned {
  kFloat = 1,     // f32, f64 (and f16 / bf16, computed in f32)
  kSigned = 2,    // i8 i16 i32 i64
  kUnsigned = 4,  // u8 u16
  kBoolT = 8,
  kInt = kSigned | kUnsigned,
  kNumeric = kFloat | kInt,
  kSignedNum = kFloat | kSigned,
};

template <class T>
constexpr unsigned type_bit() {
  if constexpr (std::is_same_v<T, bool>) return kBoolT;
  else if constexpr (std::is_floating_point_v<T>) return kFloat;
  else if constexpr (std::is_signed_v<T>) return kSigned;
  else return kUnsigned;
}

std::string types_str(unsigned set) {
  std::vector<std::string> parts;
  if (set & kFloat) parts.emplace_back("f32, f64, f16, bf16");
  if ((set & kInt) == kInt) parts.emplace_back("i8, u8, i16, u16, i32, i64");
  else if (set & kSigned) parts.emplace_back("i8, i16, i32, i64");
  else if (set & kUnsigned) parts.emplace_back("u8, u16");
  if (set & kBoolT) parts.emplace_back("bool");
  std::string r;
  for (size_t i = 0; i < parts.size(); ++i) r += (i == 0 ? "" : ", ") + parts[i];
  return "one of " + r;
}

// Calls f(T{}) for dt's C++ type when it is in Set; otherwise an Error naming
// the node. f16 / bf16 are not dispatched here: callers widen them to f32.
template <unsigned Set, class F>
void dispatch(DType dt, const ir::Node& node, const char* what, F&& f) {
  auto go = [&](auto z) {
    using T = decltype(z);
    if constexpr ((type_bit<T>() & Set) != 0) f(z);
    else bad_type(node, what, dt, types_str(Set).c_str());
  };
  switch (dt) {
    case DType::kF32: go(float{}); break;
    case DType::kF64: go(double{}); break;
    case DType::kI64: go(int64_t{}); break;
    case DType::kI32: go(int32_t{}); break;
    case DType::kI16: go(int16_t{}); break;
    case DType::kU16: go(uint16_t{}); break;
    case DType::kI8: go(int8_t{}); break;
    case DType::kU8: go(uint8_t{}); break;
    case DType::kBool: go(bool{}); break;
    default: bad_type(node, what, dt, types_str(Set).c_str());
  }
}

bool is_half(DType d) { return d == DType::kF16 || d == DType::kBF16; }

Tensor widen(const Tensor& t, const OpContext* ctx = nullptr);
Tensor narrow(const Tensor& f, DType dt, const OpContext* ctx);

template <class T> const T* cptr(const Tensor& t) { return static_cast<const T*>(t.raw()); }
template <class T> T* mptr(Tensor& t) { return static_cast<T*>(t.raw()); }

void same_type(const ir::Node& node, const Tensor& a, const Tensor& b, int ib) {
  if (a.dtype() != b.dtype())
    throw Error(Errc::kTypeMismatch, node.describe(),
                "input " + std::to_string(ib) + " is " + std::string(dtype_name(b.dtype())) +
                    " but input 0 is " + std::string(dtype_name(a.dtype())),
                "inputs of one type");
}

// Two's complement wrap-around for integer arithmetic (no signed overflow UB,
// no promotion of u16 * u16 to a signed int that overflows).
template <class T>
using WrapU = std::make_unsigned_t<std::common_type_t<T, unsigned>>;

// Float to integer: truncates toward zero (ONNX Cast); NaN gives 0 and values
// out of the integer's range saturate to its bounds. ONNX leaves those cases
// unspecified; converting them directly would be undefined behaviour.
template <class I, class V>
I float_to_int(V v) {
  static_assert(std::is_integral_v<I> && std::is_floating_point_v<V>);
  constexpr V lo = static_cast<V>(std::numeric_limits<I>::lowest());  // 0 or -2^k: exact
  constexpr V hi = static_cast<V>(static_cast<double>(uint64_t{1} << (std::numeric_limits<I>::digits - 1)) * 2.0);
  if (!(v == v)) return I{0};
  if (v <= lo) return std::numeric_limits<I>::lowest();
  if (v >= hi) return std::numeric_limits<I>::max();
  return static_cast<I>(v);
}

// ------------------------------------------------------- vector math f32 --
// The float routines that GCC won't auto-vectorise are written on GCC vector
// types: with the default -ftrapping-math, a float operation that ends up on
// one side of a select blocks if-conversion, and std::exp & co. are opaque
// library calls. The vector ternary m ? a : b computes both sides and
// selects per lane. The routines are templates over the vector width: 4 x f32
// (SSE2, NEON) for the baseline build, 8 x f32 in functions compiled for AVX2
// and chosen at run time (QFORGE_ISA=ref forces the baseline). Both widths do
// the same operations (ISO C++ mode: no FMA contraction), so they give the
// same bits. Scalars go through lane 0.

// These vectors never cross a public interface, and every function that takes
// or returns one is always_inline (so is compiled inside the AVX2 function
// that uses it, even at -O0): GCC's note that 32-byte vectors pass
// differently without AVX doesn't apply. (Hence __builtin_bit_cast rather
// than std::bit_cast, a library function that -O0 would call.)
#pragma GCC diagnostic ignored "-Wpsabi"

using v4f = float __attribute__((vector_size(16)));
using v4i = int32_t __attribute__((vector_size(16)));
using v4u = uint32_t __attribute__((vector_size(16)));
using v4h = uint16_t __attribute__((vector_size(8)));
using v8f = float __attribute__((vector_size(32)));
using v8i = int32_t __attribute__((vector_size(32)));
using v8u = uint32_t __attribute__((vector_size(32)));
using v8h = uint16_t __attribute__((vector_size(16)));

using v16f = float __attribute__((vector_size(64)));
using v16i = int32_t __attribute__((vector_size(64)));
using v16u = uint32_t __attribute__((vector_size(64)));
using v16h = uint16_t __attribute__((vector_size(32)));

template <class V> struct VecOf;
template <> struct VecOf<v4f> { using I = v4i; using U = v4u; using H = v4h; static constexpr int64_t N = 4; };
template <> struct VecOf<v8f> { using I = v8i; using U = v8u; using H = v8h; static constexpr int64_t N = 8; };
template <> struct VecOf<v16f> { using I = v16i; using U = v16u; using H = v16h; static constexpr int64_t N = 16; };

#define QFORGE_VINLINE [[gnu::always_inline]] inline
#if defined(__x86_64__) && defined(__GNUC__)
#define QFORGE_HAVE_AVX2_PATH 1
// FMA on both: fma_v uses it. The file is compiled without contraction
// (CMakeLists.txt), so plain a * b + c still rounds twice on every path.
#define QFORGE_AVX2 __attribute__((target("avx2,fma")))
#define QFORGE_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,prefer-vector-width=512")))
#else
#define QFORGE_HAVE_AVX2_PATH 0
#endif

// Whether to take the AVX2 paths: the ISA qforge's kernel table chose.
bool use_avx2() {
#if QFORGE_HAVE_AVX2_PATH
  static const bool yes = kernels::kernels().isa != kernels::Isa::kRef;
  return yes;
#else
  return false;
#endif
}

template <class V> QFORGE_VINLINE V splat(float s) { return V{} + s; }
template <class V> QFORGE_VINLINE typename VecOf<V>::U splat_u(uint32_t s) { return typename VecOf<V>::U{} + s; }
template <class V> QFORGE_VINLINE typename VecOf<V>::U as_u(const V& v) { return __builtin_bit_cast(typename VecOf<V>::U, v); }
template <class V, class U> QFORGE_VINLINE V as_f(const U& u) { return __builtin_bit_cast(V, u); }
// a * b + c rounded once, on every path: one FMA instruction where the
// target has it (AVX2 and AVX-512 here, NEON), else libm's fmaf. A
// polynomial written with it has the same bits on every ISA, in half the
// instructions of a multiply and an add.
template <class V> QFORGE_VINLINE V fma_v(const V& a, const V& b, const V& c) {
  V r;
  for (int64_t i = 0; i < VecOf<V>::N; ++i) r[i] = __builtin_fmaf(a[i], b[i], c[i]);
  return r;
}
template <class V> QFORGE_VINLINE V fma_v(const V& a, const V& b, float c) { return fma_v(a, b, splat<V>(c)); }
template <class V> QFORGE_VINLINE V loadv(const float* p) { V v; std::memcpy(&v, p, sizeof v); return v; }
template <class V> QFORGE_VINLINE void storev(float* p, const V& v) { std::memcpy(p, &v, sizeof v); }

// e^x: Cephes' range reduction and polynomial, about 1 ulp; 2^n is applied
// in two steps so that results down to the subnormals are right.
template <class V>
QFORGE_VINLINE V exp_v(const V& x) {
  using I = typename VecOf<V>::I;
  const V lo = splat<V>(-104.0f), hi = splat<V>(88.8f), zero = splat<V>(0.0f);
  V xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  xc = x != x ? zero : xc;  // NaN: keep the integer conversion defined
  const V t = xc * 1.44269504088896341f;
  const I n = __builtin_convertvector(t + (t >= zero ? splat<V>(0.5f) : splat<V>(-0.5f)), I);
  const V fn = __builtin_convertvector(n, V);
  V r = xc - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  const V z = r * r;
  V p = splat<V>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  const I n1 = n >> 1;
  const I n2 = n - n1;
  const V s1 = __builtin_bit_cast(V, (n1 + 127) << 23);
  const V s2 = __builtin_bit_cast(V, (n2 + 127) << 23);
  V y = p * s1 * s2;
  y = x < lo ? zero : y;
  return x != x ? x : y;
}

// tanh: Cephes' odd polynomial below 0.625, 1 - 2 / (e^2|x| + 1) above.
template <class V>
QFORGE_VINLINE V tanh_v(const V& x) {
  const V zero = splat<V>(0.0f);
  const V ax = x < zero ? -x : x;
  const V z = x * x;
  V p = splat<V>(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const V small = p * z * x + x;
  const V big = splat<V>(1.0f) - splat<V>(2.0f) / (exp_v(ax + ax) + 1.0f);
  const V sbig = x < zero ? -big : big;
  return ax < splat<V>(0.625f) ? small : sbig;  // NaN: big is NaN
}

// sigmoid: e^-|x| never overflows, and e / (1 + e) keeps the tiny results
// for x << 0 (1 / (1 + e^-x) would flush them to 0).
template <class V>
QFORGE_VINLINE V sigmoid_v(const V& x) {
  const V zero = splat<V>(0.0f);
  const V e = exp_v(x < zero ? x : -x);
  const V s = splat<V>(1.0f) / (e + 1.0f);
  return x < zero ? e * s : s;
}

// erf: a rational minimax approximation on [-4, 4] (erf is +-1 in f32
// beyond), odd numerator over even denominator; within 5e-7 of erf. The
// polynomials by fma_v (Erf, Gelu and ErfGelu alike: the fused GELU stays
// bit for bit the unfused one).
template <class V>
QFORGE_VINLINE V erf_v(const V& x) {
  const V lo = splat<V>(-4.0f), hi = splat<V>(4.0f);
  V c = x < lo ? lo : x;
  c = c > hi ? hi : c;  // NaN stays NaN
  const V x2 = c * c;
  V p = splat<V>(-2.72614225801306e-10f);
  p = fma_v(p, x2, 2.77068142495902e-08f);
  p = fma_v(p, x2, -2.10102402082508e-06f);
  p = fma_v(p, x2, -5.69250639462346e-05f);
  p = fma_v(p, x2, -7.34990630326855e-04f);
  p = fma_v(p, x2, -2.95459980854025e-03f);
  p = fma_v(p, x2, -1.60960333262415e-02f);
  V q = splat<V>(-1.45660718464996e-05f);
  q = fma_v(q, x2, -2.13374055278905e-04f);
  q = fma_v(q, x2, -1.68282697438203e-03f);
  q = fma_v(q, x2, -7.37332916720468e-03f);
  q = fma_v(q, x2, -1.42647390514189e-02f);
  return c * p / q;
}

// log: Cephes' logf, x = m 2^e with m in [sqrt(1/2), sqrt 2), a polynomial
// in m - 1; about 1 ulp. Subnormals are scaled by 2^23 first; log(0) = -inf,
// log(x < 0) = NaN, log(inf) = inf.
template <class V>
QFORGE_VINLINE V log_v(const V& x) {
  using I = typename VecOf<V>::I;
  using U = typename VecOf<V>::U;
  const V zero = splat<V>(0.0f);
  const V tiny = splat<V>(1.17549435e-38f);  // FLT_MIN
  const V xs = x < tiny ? x * 8388608.0f : x;
  const U bits = as_u(xs);
  I e = __builtin_bit_cast(I, bits >> 23) - 127;
  e = x < tiny ? e - 23 : e;
  V m = as_f<V>((bits & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  const auto big = m > splat<V>(1.41421356237f);
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const V fe = __builtin_convertvector(e, V);
  const V t = m - 1.0f;
  const V z = t * t;
  V p = splat<V>(7.0376836292e-2f);
  p = p * t - 1.1514610310e-1f;
  p = p * t + 1.1676998740e-1f;
  p = p * t - 1.2420140846e-1f;
  p = p * t + 1.4249322787e-1f;
  p = p * t - 1.6668057665e-1f;
  p = p * t + 2.0000714765e-1f;
  p = p * t - 2.4999993993e-1f;
  p = p * t + 3.3333331174e-1f;
  V y = p * t * z;
  y = y + fe * -2.12194440e-4f;
  y = y - z * 0.5f;
  y = t + y + fe * 0.693359375f;
  const V inf = splat<V>(std::numeric_limits<float>::infinity());
  y = x == inf ? inf : y;
  y = x == zero ? -inf : y;
  y = x < zero ? splat<V>(std::numeric_limits<float>::quiet_NaN()) : y;
  return x != x ? x : y;
}

// softplus = max(x, 0) + log1p(e^-|x|); log1p(e) = log(u) e / (u - 1) with
// u = 1 + e keeps it accurate where e is below the rounding of 1 + e.
template <class V>
QFORGE_VINLINE V softplus_v(const V& x) {
  const V zero = splat<V>(0.0f);
  const V e = exp_v(x < zero ? x : -x);
  const V u = e + 1.0f;
  const V den = u - 1.0f;
  const V l1p = den == zero ? e : log_v(u) * (e / (den == zero ? splat<V>(1.0f) : den));
  const V r = (x > zero ? x : zero) + l1p;
  return x != x ? x : r;
}

template <class V>
QFORGE_VINLINE V mish_v(const V& x) { return x * tanh_v(softplus_v(x)); }

// Gelu: 0.5 x (1 + erf(x / sqrt 2)), and the tanh form
// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
template <class V>
QFORGE_VINLINE V gelu_v(const V& x) {
  return 0.5f * x * (1.0f + erf_v(x * static_cast<float>(1.0 / std::numbers::sqrt2)));
}
template <class V>
QFORGE_VINLINE V gelu_tanh_v(const V& x) {
  const float k = static_cast<float>(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);
  return 0.5f * x * (1.0f + tanh_v(k * (x + 0.044715f * x * x * x)));
}

// Rounding to integers without SSE4.1's roundps: |x| < 2^23 goes through
// the integer conversion (floor, ceil) or the 2^23 trick (round half to
// even, in the default rounding mode); larger values, Inf and NaN are
// already integral. The result keeps x's sign (-0.5 -> -0).
template <class V>
QFORGE_VINLINE V keep_integral(const V& x, const V& r) {
  const V ax = as_f<V>(as_u(x) & 0x7fffffffu);
  const V out = ax < splat<V>(8388608.0f) ? r : x;
  return as_f<V>(as_u(out) | (as_u(x) & 0x80000000u));
}
template <class V>
QFORGE_VINLINE V trunc_v(const V& x) {
  using I = typename VecOf<V>::I;
  const V ax = as_f<V>(as_u(x) & 0x7fffffffu);
  const V safe = ax < splat<V>(8388608.0f) ? x : splat<V>(0.0f);
  return __builtin_convertvector(__builtin_convertvector(safe, I), V);
}
template <class V>
QFORGE_VINLINE V floor_v(const V& x) {
  const V t = trunc_v(x);
  return keep_integral(x, t > x ? t - 1.0f : t);
}
template <class V>
QFORGE_VINLINE V ceil_v(const V& x) {
  const V t = trunc_v(x);
  return keep_integral(x, t < x ? t + 1.0f : t);
}
template <class V>
QFORGE_VINLINE V round_v(const V& x) {
  const V ax = as_f<V>(as_u(x) & 0x7fffffffu);
  const V big = splat<V>(8388608.0f);
  return keep_integral(x, (ax + big) - big);
}

// f32 <-> f16, IEEE round to nearest even, bit-exact with qforge/quant.h's
// f32_to_f16 / f16_to_f32 (NaN stays a quiet NaN with its top payload bits).
template <class V>
QFORGE_VINLINE typename VecOf<V>::U f32_to_f16_v(const V& xf) {
  using U = typename VecOf<V>::U;
  U f = as_u(xf);
  const U sign = f & 0x80000000u;
  f ^= sign;
  const U naninf = f > splat_u<V>(0x7f800000u) ? ((f & 0x7fffffu) >> 13) | 0x7e00u : splat_u<V>(0x7c00u);
  const U den = as_u(as_f<V>(f) + 0.5f) - 0x3f000000u;  // below 2^-14: the adder rounds
  const U nrm = (f + 0xc8000fffu + ((f >> 13) & 1u)) >> 13;  // rebias, round, carry into exp
  const U o = f >= splat_u<V>(0x47800000u) ? naninf : (f < splat_u<V>(0x38800000u) ? den : nrm);
  return o | (sign >> 16);
}
template <class V>
QFORGE_VINLINE V f16_to_f32_v(const typename VecOf<V>::U& h) {
  using U = typename VecOf<V>::U;
  U o = (h & 0x7fffu) << 13;
  const U e = o & 0x0f800000u;
  o += 0x38000000u;
  o = e == splat_u<V>(0x0f800000u) ? o + 0x38000000u : o;  // Inf / NaN
  const U den = as_u(as_f<V>(o + 0x00800000u) - as_f<V>(splat_u<V>(0x38800000u)));  // subnormal: exact
  o = e == splat_u<V>(0u) ? den : o;
  return as_f<V>(o | ((h & 0x8000u) << 16));
}

// y[i] = EXPR(v) over x[0, n), a vector at a time; the tail runs on a
// padded vector. A macro, so that the expression is compiled in the
// function it expands in (with that function's target ISA).
#define QFORGE_VEC_LOOP(V, EXPR)                                  \
  {                                                               \
    constexpr int64_t kLanes = VecOf<V>::N;                       \
    int64_t i = 0;                                                \
    for (; i + kLanes <= n; i += kLanes) {                        \
      const V v = loadv<V>(x + i);                                \
      storev<V>(y + i, EXPR);                                     \
    }                                                             \
    if (i < n) {                                                  \
      const auto m = static_cast<size_t>(n - i);                  \
      V v = splat<V>(0.0f);                                       \
      std::memcpy(&v, x + i, m * sizeof(float));                  \
      const V r = EXPR;                                           \
      std::memcpy(y + i, &r, m * sizeof(float));                  \
    }                                                             \
  }

// name(x, y, n): the baseline 4-lane loop, and an 8-lane AVX2 one.
#if QFORGE_HAVE_AVX2_PATH
#define QFORGE_VEC_BLOCK(name, EXPR)                                                             \
  QFORGE_AVX2 void name##_avx2(const float* x, float* y, int64_t n) QFORGE_VEC_LOOP(v8f, EXPR) \
  void name##_base(const float* x, float* y, int64_t n) QFORGE_VEC_LOOP(v4f, EXPR)             \
  void name(const float* x, float* y, int64_t n) {                                               \
    if (use_avx2()) name##_avx2(x, y, n);                                                        \
    else name##_base(x, y, n);                                                                   \
  }
#else
#define QFORGE_VEC_BLOCK(name, EXPR) \
  void name(const float* x, float* y, int64_t n) QFORGE_VEC_LOOP(v4f, EXPR)
#endif

QFORGE_VEC_BLOCK(exp_block, exp_v(v))
QFORGE_VEC_BLOCK(tanh_block, tanh_v(v))
QFORGE_VEC_BLOCK(sigmoid_block, sigmoid_v(v))
QFORGE_VEC_BLOCK(erf_block, erf_v(v))
QFORGE_VEC_BLOCK(gelu_block, gelu_v(v))
QFORGE_VEC_BLOCK(gelu_tanh_block, gelu_tanh_v(v))
QFORGE_VEC_BLOCK(log_block, log_v(v))
QFORGE_VEC_BLOCK(softplus_block, softplus_v(v))
QFORGE_VEC_BLOCK(mish_block, mish_v(v))

// ai.qforge ErfGelu (passes::fuse_erf_gelu): PyTorch's exported GELU chain
// Div, Erf, Add, Mul, Mul in its own order, ((erf(x / d) + a) * x) * m.
template <class V>
QFORGE_VINLINE V erf_gelu_v(const V& x, float c_div, float c_add, float c_mul) {
  return ((erf_v(x / splat<V>(c_div)) + c_add) * x) * c_mul;
}
// 16 lanes where the kernel table is AVX-512's: the same operations per
// element as the 8- and 4-lane loops, so the same bits (the file is
// compiled without contraction; erf's FMAs are fma_v's, on every path).
#if QFORGE_HAVE_AVX2_PATH
QFORGE_AVX2 void erf_gelu_block_avx2(const float* x, float* y, int64_t n, float c_div, float c_add,
                                     float c_mul) QFORGE_VEC_LOOP(v8f, erf_gelu_v(v, c_div, c_add, c_mul))
QFORGE_AVX512 void erf_gelu_block_avx512(
    const float* x, float* y, int64_t n, float c_div, float c_add, float c_mul)
    QFORGE_VEC_LOOP(v16f, erf_gelu_v(v, c_div, c_add, c_mul))
#endif
void erf_gelu_block(const float* x, float* y, int64_t n, float c_div, float c_add, float c_mul) {
#if QFORGE_HAVE_AVX2_PATH
  static const bool avx512 = kernels::kernels().isa == kernels::Isa::kAvx512;
  if (avx512) return erf_gelu_block_avx512(x, y, n, c_div, c_add, c_mul);
  if (use_avx2()) return erf_gelu_block_avx2(x, y, n, c_div, c_add, c_mul);
#endif
  QFORGE_VEC_LOOP(v4f, erf_gelu_v(v, c_div, c_add, c_mul))
}

inline float exp_f32(float x) { return exp_v(splat<v4f>(x))[0]; }
inline float tanh_f32(float x) { return tanh_v(splat<v4f>(x))[0]; }
inline float erf_f32(float x) { return erf_v(splat<v4f>(x))[0]; }
inline float sigmoid_f32(float x) { return sigmoid_v(splat<v4f>(x))[0]; }

// A functor with `v4f vec(v4f) const` has an explicit f32 vector form
// (baseline width: these are the memory-bound ops).
template <class F>
concept HasVec1 = requires(const F& f, v4f v) { { f.vec(v) } -> std::same_as<v4f>; };
template <class F>
concept HasVec2 = requires(const F& f, v4f v) { { f.vec(v, v) } -> std::same_as<v4f>; };

template <class F>
QFORGE_VINLINE void vec_map4(const float* x, float* y, int64_t n, const F& f) QFORGE_VEC_LOOP(v4f, f.vec(v))

// f16 <-> f32 blocks.
template <class V>
QFORGE_VINLINE void f32_to_f16_loop(const float* x, uint16_t* y, int64_t n) {
  using H = typename VecOf<V>::H;
  constexpr int64_t kLanes = VecOf<V>::N;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const H h = __builtin_convertvector(f32_to_f16_v(loadv<V>(x + i)), H);
    std::memcpy(y + i, &h, sizeof h);
  }
  if (i < n) {
    const auto m = static_cast<size_t>(n - i);
    V a = splat<V>(0.0f);
    std::memcpy(&a, x + i, m * sizeof(float));
    const H h = __builtin_convertvector(f32_to_f16_v(a), H);
    std::memcpy(y + i, &h, m * sizeof(uint16_t));
  }
}
template <class V>
QFORGE_VINLINE void f16_to_f32_loop(const uint16_t* x, float* y, int64_t n) {
  using H = typename VecOf<V>::H;
  using U = typename VecOf<V>::U;
  constexpr int64_t kLanes = VecOf<V>::N;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    H h;
    std::memcpy(&h, x + i, sizeof h);
    storev<V>(y + i, f16_to_f32_v<V>(__builtin_convertvector(h, U)));
  }
  if (i < n) {
    const auto m = static_cast<size_t>(n - i);
    H h = H{};
    std::memcpy(&h, x + i, m * sizeof(uint16_t));
    const V a = f16_to_f32_v<V>(__builtin_convertvector(h, U));
    std::memcpy(y + i, &a, m * sizeof(float));
  }
}
#if QFORGE_HAVE_AVX2_PATH
QFORGE_AVX2 void f32_to_f16_avx2(const float* x, uint16_t* y, int64_t n) { f32_to_f16_loop<v8f>(x, y, n); }
QFORGE_AVX2 void f16_to_f32_avx2(const uint16_t* x, float* y, int64_t n) { f16_to_f32_loop<v8f>(x, y, n); }
#endif
void f32_to_f16_block(const float* x, uint16_t* y, int64_t n) {
#if QFORGE_HAVE_AVX2_PATH
  if (use_avx2()) return f32_to_f16_avx2(x, y, n);
#endif
  f32_to_f16_loop<v4f>(x, y, n);
}
void f16_to_f32_block(const uint16_t* x, float* y, int64_t n) {
#if QFORGE_HAVE_AVX2_PATH
  if (use_avx2()) return f16_to_f32_avx2(x, y, n);
#endif
  f16_to_f32_loop<v4f>(x, y, n);
}
// bf16: the top half of an f32; rounding to nearest even, NaN kept quiet
// (as qforge/quant.h's f32_to_bf16). Integer-only: the compiler vectorises it.
void f32_to_bf16_block(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = std::bit_cast<uint32_t>(x[i]);
    const uint32_t r = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
    y[i] = static_cast<uint16_t>((b & 0x7fffffffu) > 0x7f800000u ? (b >> 16) | 0x40u : r);
  }
}
void bf16_to_f32_block(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::bit_cast<float>(static_cast<uint32_t>(x[i]) << 16);
}

// f16 / bf16 to f32 (a new tensor); other tensors unchanged.
Tensor widen(const Tensor& t, const OpContext* ctx) {
  if (!is_half(t.dtype())) return t;
  Tensor f(DType::kF32, t.shape());
  const auto* src = static_cast<const uint16_t*>(t.raw());
  float* dst = f.data<float>();
  const bool bf = t.dtype() == DType::kBF16;
  auto run = [&](int64_t b, int64_t e) {
    if (bf) bf16_to_f32_block(src + b, dst + b, e - b);
    else f16_to_f32_block(src + b, dst + b, e - b);
  };
  if (ctx) parallel(*ctx, t.numel(), kCheapGrain, run);
  else run(0, t.numel());
  return f;
}

// An f32 tensor rounded to f16 / bf16.
Tensor narrow(const Tensor& f, DType dt, const OpContext* ctx) {
  Tensor h(dt, f.shape());
  const float* src = f.data<float>();
  auto* dst = static_cast<uint16_t*>(h.raw());
  auto run = [&](int64_t b, int64_t e) {
    if (dt == DType::kBF16) f32_to_bf16_block(src + b, dst + b, e - b);
    else f32_to_f16_block(src + b, dst + b, e - b);
  };
  if (ctx) parallel(*ctx, f.numel(), kCheapGrain, run);
  else run(0, f.numel());
  return h;
}

// --------------------------------------------------------- broadcasting --

// The output seen as `rows` rows of `inner` contiguous elements. Input k
// advances istr[k] (0 or 1) per inner element and ostr[k][d] per step of
// the collapsed outer dimension d.
template <int N>
struct Plan {
  int64_t total = 0, inner = 1, rows = 0;
  Shape outer;
  std::array<std::vector<int64_t>, N> ostr;
  std::array<int64_t, N> istr{};
};

template <int N>
Plan<N> make_plan(const Shape& out, const std::array<const Shape*, N>& ins) {
  Plan<N> p;
  p.total = shape_numel(out);
  std::array<std::vector<int64_t>, N> full;
  for (size_t k = 0; k < N; ++k) full[k] = broadcast_strides(*ins[k], out);
  Shape dims;
  std::array<std::vector<int64_t>, N> st;
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;
    bool merge = !dims.empty();
    for (size_t k = 0; k < N && merge; ++k) merge = st[k].back() == full[k][d] * out[d];
    if (merge) {
      dims.back() *= out[d];
      for (size_t k = 0; k < N; ++k) st[k].back() = full[k][d];
    } else {
      dims.push_back(out[d]);
      for (size_t k = 0; k < N; ++k) st[k].push_back(full[k][d]);
    }
  }
  if (!dims.empty()) {
    p.inner = dims.back();
    dims.pop_back();
    for (size_t k = 0; k < N; ++k) {
      p.istr[k] = st[k].back();
      st[k].pop_back();
    }
  }
  p.outer = std::move(dims);
  p.ostr = std::move(st);
  p.rows = p.inner > 0 ? p.total / p.inner : 0;
  return p;
}

// Calls row(offsets, out_offset, count) over the output, in parallel: over
// rows, or over chunks of the single row.
template <int N, class RowFn>
void run_plan(const OpContext& ctx, const Plan<N>& p, int64_t grain, const RowFn& row) {
  if (p.total == 0) return;
  if (p.rows == 1) {
    parallel(ctx, p.inner, grain, [&](int64_t b, int64_t e) {
      std::array<int64_t, N> off;
      for (size_t k = 0; k < N; ++k) off[k] = b * p.istr[k];
      row(off, b, e - b);
    });
    return;
  }
  const int64_t rgrain = std::max<int64_t>(1, grain / std::max<int64_t>(p.inner, 1));
  parallel(ctx, p.rows, rgrain, [&](int64_t r0, int64_t r1) {
    const size_t m = p.outer.size();
    std::array<int64_t, N> off{};
    std::vector<int64_t> idx(m, 0);
    int64_t rem = r0;
    for (size_t d = m; d-- > 0;) {
      idx[d] = rem % p.outer[d];
      rem /= p.outer[d];
      for (size_t k = 0; k < N; ++k) off[k] += idx[d] * p.ostr[k][d];
    }
    for (int64_t r = r0; r < r1; ++r) {
      row(off, r * p.inner, p.inner);
      for (size_t d = m; d-- > 0;) {
        for (size_t k = 0; k < N; ++k) off[k] += p.ostr[k][d];
        if (++idx[d] < p.outer[d]) break;
        for (size_t k = 0; k < N; ++k) off[k] -= p.ostr[k][d] * p.outer[d];
        idx[d] = 0;
      }
    }
  });
}

// One run of n outputs; each input advances (k == 1) or repeats (k == 0).
// f (taken by value) lives in registers: its members can't alias o.
template <class TA, class TB, class TO, class F>
inline void binary_row(const TA* a, int64_t ka, const TB* b, int64_t kb, TO* o, int64_t n, const F f) {
  if constexpr (std::is_same_v<TA, float> && std::is_same_v<TB, float> && std::is_same_v<TO, float> &&
                HasVec2<F>) {
    if (ka != 0 || kb != 0) {
      const v4f av = splat<v4f>(a[0]), bv = splat<v4f>(b[0]);
      int64_t i = 0;
      for (; i + 4 <= n; i += 4)
        storev<v4f>(o + i, f.vec(ka != 0 ? loadv<v4f>(a + i) : av, kb != 0 ? loadv<v4f>(b + i) : bv));
      for (; i < n; ++i) o[i] = f(a[i * ka], b[i * kb]);
      return;
    }
  }
  if (ka != 0 && kb != 0) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (ka != 0) {
    const TB bv = b[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (kb != 0) {
    const TA av = a[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    const TO v = f(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  }
}

// o[so] = f(a[sa], b[sb]) with numpy broadcasting; o may be a (same shape).
template <class TA, class TB, class TO, class F>
void binary_apply(const OpContext& ctx, const TA* a, const Shape& sa, const TB* b, const Shape& sb,
                  TO* o, const Shape& so, const F& f, int64_t grain = kCheapGrain) {
  if (shape_numel(so) == 0) return;
  const Plan<2> p = make_plan<2>(so, {&sa, &sb});
  run_plan<2>(ctx, p, grain, [&](const std::array<int64_t, 2>& off, int64_t oo, int64_t n) {
    binary_row(a + off[0], p.istr[0], b + off[1], p.istr[1], o + oo, n, f);
  });
}

// Opset < 7 Add/Sub/Mul/Div/Pow/And/Or/Xor/Equal/Less/Greater: with
// broadcast=1 and an axis, B's dimensions line up with A's from `axis`;
// without an axis they line up at the end, as numpy does. (broadcast=0 asks
// for equal shapes; numpy broadcasting accepts those too.)
template <class D>
std::vector<D> legacy_b_shape(const ir::Node& node, const std::vector<D>& a, const std::vector<D>& b) {
  if (node.attr_int("broadcast", 0) == 0 || !node.has_attr("axis")) return b;
  const auto ra = static_cast<int64_t>(a.size()), rb = static_cast<int64_t>(b.size());
  int64_t axis = node.attr_int("axis", 0);
  if (axis < 0) axis += ra;
  QFORGE_CHECK(axis >= 0 && axis + rb <= ra, Errc::kShapeMismatch, node.describe(),
        "has axis " + std::to_string(node.attr_int("axis", 0)) + " for a rank-" + std::to_string(rb) +
            " B and a rank-" + std::to_string(ra) + " A",
        "B's dimensions to fit inside A's from the axis (legacy broadcast)");
  std::vector<D> s(static_cast<size_t>(ra), D(1));
  for (int64_t i = 0; i < rb; ++i) s[static_cast<size_t>(axis + i)] = b[static_cast<size_t>(i)];
  return s;
}

Tensor legacy_b(const OpContext& ctx, const Tensor& a, const Tensor& b) {
  if (ctx.opset() >= 7) return b;
  const Shape s = legacy_b_shape(ctx.node(), a.shape(), b.shape());
  return s == b.shape() ? b : b.reshape(s);
}

// ----------------------------------------------------------- inference --

void infer_bool_same(InferContext& c) {
  const ir::ValueInfo& in = c.input(0);
  set_output(c, 0, DType::kBool, in.shape);
}

void check_infer_types(InferContext& c, int first, int last) {
  std::optional<DType> dt;
  for (int i = first; i <= last; ++i) {
    if (!c.has_input(i)) continue;
    const auto& d = c.input(i).dtype;
    if (!d) continue;
    if (dt && *dt != *d)
      throw Error(Errc::kTypeMismatch, c.node().describe(),
                  "input " + std::to_string(i) + " is " + std::string(dtype_name(*d)) + " but input " +
                      std::to_string(first) + " is " + std::string(dtype_name(*dt)),
                  "inputs of one type");
    dt = d;
  }
}

// Broadcast of inputs [first, last] (legacy-aware for two inputs below opset 7).
std::optional<ir::SymShape> infer_bcast_shape(InferContext& c, int first, int last) {
  std::optional<ir::SymShape> s = ir::SymShape{};
  for (int i = first; i <= last; ++i) {
    const ir::ValueInfo& in = c.input(i);
    if (!s || !in.shape) return std::nullopt;
    ir::SymShape add = *in.shape;
    if (i == 1 && first == 0 && last == 1 && c.opset() < 7) add = legacy_b_shape(c.node(), *s, add);
    s = broadcast_sym(*s, add, c.node());
  }
  return s;
}

// Binary op: inputs of one type; output `out` or the input type.
void infer_binary(InferContext& c, std::optional<DType> out, bool same_types = true) {
  if (same_types) check_infer_types(c, 0, 1);
  const std::optional<DType> dt = out ? out : c.input(0).dtype;
  set_output(c, 0, dt, infer_bcast_shape(c, 0, 1));
}

void infer_variadic(InferContext& c) {
  QFORGE_CHECK(c.num_inputs() >= 1, Errc::kNotFound, c.node().describe(), "has no inputs", "at least one input");
  check_infer_types(c, 0, c.num_inputs() - 1);
  set_output(c, 0, c.input(0).dtype, infer_bcast_shape(c, 0, c.num_inputs() - 1));
}

// --------------------------------------------------------------- unary --

template <class T, class F>
void map_unary(const OpContext& ctx, const T* x, T* y, int64_t n, const F& f, int64_t grain) {
  parallel(ctx, n, grain, [&](int64_t b, int64_t e) {
    const F fl = f;  // a local copy: its members can't alias y, so they stay in registers
    if constexpr (requires { fl.block(x, y, n); }) {
      fl.block(x + b, y + b, e - b);
    } else if constexpr (std::is_same_v<T, float> && HasVec1<F>) {
      vec_map4(x + b, y + b, e - b, fl);
    } else {
      for (int64_t i = b; i < e; ++i) y[i] = fl(x[i]);
    }
  });
}

// y = f(x), same type and shape; f16 / bf16 through f32.
template <unsigned Set, class F>
void run_unary(OpContext& ctx, const F& f, int64_t grain = kCheapGrain) {
  const Tensor& x = ctx.input(0);
  if (is_half(x.dtype())) {
    if constexpr ((Set & kFloat) != 0) {
      const Tensor xf = widen(x, &ctx);
      Tensor yf(DType::kF32, x.shape());
      map_unary(ctx, xf.data<float>(), yf.data<float>(), x.numel(), f, grain);
      ctx.set_output(0, narrow(yf, x.dtype(), &ctx));
      return;
    } else {
      bad_type(ctx.node(), "input 0", x.dtype(), types_str(Set).c_str());
    }
  }
  dispatch<Set>(x.dtype(), ctx.node(), "input 0", [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), x.shape());
    map_unary(ctx, x.data<T>(), y.data<T>(), x.numel(), f, grain);
  });
}

// bool y = f(x) for float x (IsNaN, IsInf).
template <class F>
void run_predicate(OpContext& ctx, const F& f) {
  const Tensor x = widen(ctx.input(0), &ctx);
  dispatch<kFloat>(x.dtype(), ctx.node(), "input 0", [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, DType::kBool, x.shape());
    const T* px = x.data<T>();
    bool* py = y.data<bool>();
    parallel(ctx, x.numel(), kCheapGrain, [&](int64_t b, int64_t e) {
      const F fl = f;
      for (int64_t i = b; i < e; ++i) py[i] = fl(px[i]);
    });
  });
}

struct AbsF {
  template <class T> T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) return std::fabs(x);
    else if constexpr (std::is_signed_v<T>) return x < 0 ? static_cast<T>(WrapU<T>(0) - static_cast<WrapU<T>>(x)) : x;
    else return x;
  }
};
struct NegF {
  template <class T> T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) return -x;
    else return static_cast<T>(WrapU<T>(0) - static_cast<WrapU<T>>(x));
  }
};
struct SqrtF {
  template <class T> T operator()(T x) const { return std::sqrt(x); }
  // std::sqrt doesn't vectorise without -fno-math-errno.
  void block(const float* x, float* y, int64_t n) const {
    int64_t i = 0;
#if defined(__SSE2__)
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(y + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; ++i) y[i] = std::sqrt(x[i]);
  }
};
struct ExpF {
  float operator()(float x) const { return exp_f32(x); }
  double operator()(double x) const { return std::exp(x); }
  void block(const float* x, float* y, int64_t n) const { exp_block(x, y, n); }
};
struct TanhF {
  float operator()(float x) const { return tanh_f32(x); }
  double operator()(double x) const { return std::tanh(x); }
  void block(const float* x, float* y, int64_t n) const { tanh_block(x, y, n); }
};
struct SigmoidF {
  float operator()(float x) const { return sigmoid_f32(x); }
  double operator()(double x) const { return 1.0 / (1.0 + std::exp(-x)); }
  void block(const float* x, float* y, int64_t n) const { sigmoid_block(x, y, n); }
};
struct ReciprocalF {
  template <class T> T operator()(T x) const { return T(1) / x; }
};
struct ReluF {
  template <class T> T operator()(T x) const { return x < T(0) ? T(0) : x; }  // NaN stays NaN
  v4f vec(const v4f& x) const { return x < splat<v4f>(0.0f) ? splat<v4f>(0.0f) : x; }
};
struct LeakyReluF {
  float alpha;
  template <class T> T operator()(T x) const { return x < T(0) ? static_cast<T>(alpha) * x : x; }
  v4f vec(const v4f& x) const { return x < splat<v4f>(0.0f) ? x * alpha : x; }
};
struct HardSigmoidF {
  float alpha, beta;
  template <class T> T operator()(T x) const {
    T v = static_cast<T>(alpha) * x + static_cast<T>(beta);
    v = v < T(0) ? T(0) : v;
    return v > T(1) ? T(1) : v;
  }
  v4f vec(const v4f& x) const {
    v4f v = x * alpha + beta;
    v = v < splat<v4f>(0.0f) ? splat<v4f>(0.0f) : v;
    return v > splat<v4f>(1.0f) ? splat<v4f>(1.0f) : v;
  }
};
struct HardSwishF {  // x * HardSigmoid(alpha = 1/6, beta = 0.5)
  template <class T> T operator()(T x) const {
    T v = x * static_cast<T>(1.0f / 6.0f) + T(0.5);
    v = v < T(0) ? T(0) : v;
    v = v > T(1) ? T(1) : v;
    return x * v;
  }
  v4f vec(const v4f& x) const { return x * HardSigmoidF{1.0f / 6.0f, 0.5f}.vec(x); }
};
struct EluF {
  float alpha;
  template <class T> T operator()(T x) const { return x < T(0) ? static_cast<T>(alpha) * std::expm1(x) : x; }
};
struct SeluF {
  float alpha, gamma;
  template <class T> T operator()(T x) const {
    return static_cast<T>(gamma) * (x <= T(0) ? static_cast<T>(alpha) * std::expm1(x) : x);
  }
};
struct CeluF {
  float alpha;
  template <class T> T operator()(T x) const {
    const T a = static_cast<T>(alpha);
    const T neg = a * std::expm1(x / a);
    return (x > T(0) ? x : T(0)) + (neg < T(0) ? neg : T(0));
  }
};
struct ThresholdedReluF {
  float alpha;
  template <class T> T operator()(T x) const { return x > static_cast<T>(alpha) ? x : T(0); }
};
struct SoftplusF {  // log(1 + e^x) without overflow
  template <class T> T operator()(T x) const {
    return x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  }
  void block(const float* x, float* y, int64_t n) const { softplus_block(x, y, n); }
};
struct SoftsignF {
  template <class T> T operator()(T x) const { return x / (T(1) + (x < T(0) ? -x : x)); }
};
struct MishF {  // x * tanh(softplus(x))
  template <class T> T operator()(T x) const { return x * std::tanh(SoftplusF{}(x)); }
  void block(const float* x, float* y, int64_t n) const { mish_block(x, y, n); }
};
struct ErfF {
  float operator()(float x) const { return erf_f32(x); }
  double operator()(double x) const { return std::erf(x); }
  void block(const float* x, float* y, int64_t n) const { erf_block(x, y, n); }
};
struct GeluF {  // 0.5 x (1 + erf(x / sqrt 2))
  template <class T> T operator()(T x) const {
    return T(0.5) * x * (T(1) + ErfF{}(x * static_cast<T>(1.0 / std::numbers::sqrt2)));
  }
  void block(const float* x, float* y, int64_t n) const { gelu_block(x, y, n); }
};
struct ErfGeluF {  // ((erf(x / d) + a) * x) * m: the unfused ops' order
  float d, a, m;
  float operator()(float x) const { return ((ErfF{}(x / d) + a) * x) * m; }
  double operator()(double x) const {
    return ((std::erf(x / d) + a) * x) * m;
  }
  void block(const float* x, float* y, int64_t n) const { erf_gelu_block(x, y, n, d, a, m); }
};
struct GeluTanhF {  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
  template <class T> T operator()(T x) const {
    const T k = static_cast<T>(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);
    const T u = k * (x + T(0.044715) * x * x * x);
    if constexpr (std::is_same_v<T, float>) return 0.5f * x * (1.0f + tanh_f32(u));
    else return T(0.5) * x * (T(1) + std::tanh(u));
  }
  void block(const float* x, float* y, int64_t n) const { gelu_tanh_block(x, y, n); }
};
struct SignF {
  template <class T> T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x);  // 0, NaN kept
    else if constexpr (std::is_signed_v<T>) return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
    else return x > 0 ? T(1) : T(0);
  }
};
struct ShrinkF {
  float lambd, bias;
  template <class T> T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      const T l = static_cast<T>(lambd), b = static_cast<T>(bias);
      return x < -l ? x + b : (x > l ? x - b : T(0));
    } else {
      const double v = static_cast<double>(x);
      const double l = lambd, b = bias;
      return float_to_int<T>(v < -l ? v + b : (v > l ? v - b : 0.0));
    }
  }
};
template <class T>
struct ClipF {
  T lo, hi;
  T operator()(T x) const {
    const T v = x < lo ? lo : x;  // NaN stays NaN
    return v > hi ? hi : v;
  }
  v4f vec(const v4f& x) const requires std::is_same_v<T, float> {
    const v4f v = x < splat<v4f>(lo) ? splat<v4f>(lo) : x;
    return v > splat<v4f>(hi) ? splat<v4f>(hi) : v;
  }
};

#define QFORGE_STD_UNARY(Name, fn) \
  struct Name {                    \
    template <class T> T operator()(T x) const { return std::fn(x); } \
  };
struct LogF {
  template <class T> T operator()(T x) const { return std::log(x); }
  void block(const float* x, float* y, int64_t n) const { log_block(x, y, n); }
};
struct FloorF {
  template <class T> T operator()(T x) const { return std::floor(x); }
  v4f vec(const v4f& x) const { return floor_v(x); }
};
struct CeilF {
  template <class T> T operator()(T x) const { return std::ceil(x); }
  v4f vec(const v4f& x) const { return ceil_v(x); }
};
struct RoundF {  // half to even: the default rounding mode
  template <class T> T operator()(T x) const { return std::nearbyint(x); }
  v4f vec(const v4f& x) const { return round_v(x); }
};
QFORGE_STD_UNARY(SinF, sin)
QFORGE_STD_UNARY(CosF, cos)
QFORGE_STD_UNARY(TanF, tan)
QFORGE_STD_UNARY(AsinF, asin)
QFORGE_STD_UNARY(AcosF, acos)
QFORGE_STD_UNARY(AtanF, atan)
QFORGE_STD_UNARY(SinhF, sinh)
QFORGE_STD_UNARY(CoshF, cosh)
QFORGE_STD_UNARY(AsinhF, asinh)
QFORGE_STD_UNARY(AcoshF, acosh)
QFORGE_STD_UNARY(AtanhF, atanh)
#undef QFORGE_STD_UNARY

// The scalar value of a Clip bound (input i), as T.
template <class T>
T clip_bound(const OpContext& ctx, int i, const char* what) {
  const Tensor& t = ctx.input(i);
  same_type(ctx.node(), ctx.input(0), t, i);
  QFORGE_CHECK(t.numel() == 1, Errc::kShapeMismatch, ctx.node().describe(),
        std::string(what) + " (input " + std::to_string(i) + ") has shape " + shape_str(t.shape()),
        "a scalar");
  const Tensor w = widen(t);
  return *static_cast<const T*>(w.raw());
}

void clip_run(OpContext& ctx) {
  const Tensor& x0 = ctx.input(0);
  const DType dt = x0.dtype();
  const Tensor x = widen(x0, &ctx);
  dispatch<kNumeric>(x.dtype(), ctx.node(), "input 0", [&](auto z) {
    using T = decltype(z);
    T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
    if (ctx.opset() < 11) {
      // Attributes: absent means no bound before opset 6, float's range from 6.
      const ir::Node& n = ctx.node();
      const float dlo = ctx.opset() < 6 ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::lowest();
      const float dhi = ctx.opset() < 6 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::max();
      const float flo = n.attr_float("min", dlo), fhi = n.attr_float("max", dhi);
      if constexpr (std::is_floating_point_v<T>) {
        lo = static_cast<T>(flo);
        hi = static_cast<T>(fhi);
      } else {
        lo = float_to_int<T>(std::ceil(flo));
        hi = float_to_int<T>(std::floor(fhi));
      }
    } else {
      if (ctx.has_input(1)) lo = clip_bound<T>(ctx, 1, "min");
      if (ctx.has_input(2)) hi = clip_bound<T>(ctx, 2, "max");
    }
    const ClipF<T> f{lo, hi};
    if (is_half(dt)) {
      Tensor yf(DType::kF32, x.shape());
      map_unary(ctx, x.data<T>(), mptr<T>(yf), x.numel(), f, kCheapGrain);
      ctx.set_output(0, narrow(yf, dt, &ctx));
    } else {
      Tensor& y = ctx.output(0, dt, x.shape());
      map_unary(ctx, x.data<T>(), y.data<T>(), x.numel(), f, kCheapGrain);
    }
  });
}

void gelu_run(OpContext& ctx) {
  const std::string approx = ctx.node().attr_string("approximate", "none");
  if (approx == "none") run_unary<kFloat>(ctx, GeluF{}, kVecMathGrain);
  else if (approx == "tanh") run_unary<kFloat>(ctx, GeluTanhF{}, kVecMathGrain);
  else
    throw Error(Errc::kInvalidArgument, ctx.node().describe(), "has approximate='" + approx + "'",
                "'none' or 'tanh'");
}

void isinf_run(OpContext& ctx) {
  const bool pos = ctx.node().attr_int("detect_positive", 1) != 0;
  const bool neg = ctx.node().attr_int("detect_negative", 1) != 0;
  run_predicate(ctx, [pos, neg](auto x) {
    using T = decltype(x);
    return (pos && x == std::numeric_limits<T>::infinity()) || (neg && x == -std::numeric_limits<T>::infinity());
  });
}

// --------------------------------------------------------------- binary --

struct AddF {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) return static_cast<T>(static_cast<WrapU<T>>(a) + static_cast<WrapU<T>>(b));
    else return a + b;
  }
};
struct SubF {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) return static_cast<T>(static_cast<WrapU<T>>(a) - static_cast<WrapU<T>>(b));
    else return a - b;
  }
};
struct MulF {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) return static_cast<T>(static_cast<WrapU<T>>(a) * static_cast<WrapU<T>>(b));
    else return a * b;
  }
};
// Integer division truncates toward zero (C, ONNX Runtime); the divisor has
// been checked for zeros; INT_MIN / -1 wraps.
struct DivF {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) return a / b;
    else if constexpr (std::is_signed_v<T>)
      return b == T(-1) ? static_cast<T>(WrapU<T>(0) - static_cast<WrapU<T>>(a)) : static_cast<T>(a / b);
    else return static_cast<T>(a / b);
  }
};
// Mod with fmod=0: the remainder takes the divisor's sign (numpy.mod).
struct ModF {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      T r = std::fmod(a, b);
      if (r != T(0) && ((r < T(0)) != (b < T(0)))) r += b;
      return r;
    } else if constexpr (std::is_signed_v<T>) {
      if (b == T(-1)) return T(0);
      const T r = static_cast<T>(a % b);
      return (r != 0 && ((r < 0) != (b < 0))) ? static_cast<T>(r + b) : r;
    } else {
      return static_cast<T>(a % b);
    }
  }
};
// Mod with fmod=1: the remainder takes the dividend's sign (C fmod).
struct FmodF {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) return std::fmod(a, b);
    else if constexpr (std::is_signed_v<T>) return b == T(-1) ? T(0) : static_cast<T>(a % b);
    else return static_cast<T>(a % b);
  }
};
struct ShlF {  // shifts past the width give 0
  template <class T> T operator()(T a, T b) const {
    return b >= T(8 * sizeof(T)) ? T(0) : static_cast<T>(static_cast<WrapU<T>>(a) << b);
  }
};
struct ShrF {
  template <class T> T operator()(T a, T b) const {
    return b >= T(8 * sizeof(T)) ? T(0) : static_cast<T>(static_cast<WrapU<T>>(a) >> b);
  }
};
// Min / Max propagate NaN (numpy.minimum / maximum).
struct MaxF {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) return (a < b || b != b) ? b : a;
    else return a < b ? b : a;
  }
};
struct MinF {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) return (b < a || b != b) ? b : a;
    else return b < a ? b : a;
  }
};
struct EqualF { template <class T> bool operator()(T a, T b) const { return a == b; } };
struct LessF { template <class T> bool operator()(T a, T b) const { return a < b; } };
struct GreaterF { template <class T> bool operator()(T a, T b) const { return a > b; } };
struct LessEqF { template <class T> bool operator()(T a, T b) const { return a <= b; } };
struct GreaterEqF { template <class T> bool operator()(T a, T b) const { return a >= b; } };
struct AndF { bool operator()(bool a, bool b) const { return a && b; } };
struct OrF { bool operator()(bool a, bool b) const { return a || b; } };
struct XorF { bool operator()(bool a, bool b) const { return a != b; } };
struct PReluF {
  template <class T> T operator()(T x, T s) const { return x < T(0) ? s * x : x; }
  v4f vec(const v4f& x, const v4f& s) const { return x < splat<v4f>(0.0f) ? s * x : x; }
};

// Integer division and modulus: a zero divisor is an Error (it would trap).
template <class T>
void check_no_zero(const ir::Node& node, const Tensor& b) {
  if constexpr (std::is_integral_v<T>) {
    const T* p = b.data<T>();
    const int64_t n = b.numel();
    for (int64_t i = 0; i < n; ++i)
      if (p[i] == T(0))
        throw Error(Errc::kInvalidArgument, node.describe(),
                    "divides by zero (input 1, element " + std::to_string(i) + ")",
                    "non-zero integer divisors");
  }
}

// out = f(A, B): same input types, broadcast; output the input type or bool.
template <unsigned Set, bool BoolOut, bool NonZeroB = false, class F>
void run_binary(OpContext& ctx, const F& f, int64_t grain = kCheapGrain) {
  const ir::Node& node = ctx.node();
  const Tensor a = ctx.input(0);
  const Tensor b = legacy_b(ctx, a, ctx.input(1));
  same_type(node, a, b, 1);
  const Shape out = broadcast_shapes(a.shape(), b.shape(), node);
  if (is_half(a.dtype())) {
    if constexpr ((Set & kFloat) != 0) {
      const Tensor af = widen(a, &ctx), bf = widen(b, &ctx);
      if constexpr (BoolOut) {
        Tensor& y = ctx.output(0, DType::kBool, out);
        binary_apply(ctx, af.data<float>(), a.shape(), bf.data<float>(), b.shape(), y.data<bool>(), out, f, grain);
      } else {
        Tensor yf(DType::kF32, out);
        binary_apply(ctx, af.data<float>(), a.shape(), bf.data<float>(), b.shape(), yf.data<float>(), out, f, grain);
        ctx.set_output(0, narrow(yf, a.dtype(), &ctx));
      }
      return;
    } else {
      bad_type(node, "input 0", a.dtype(), types_str(Set).c_str());
    }
  }
  dispatch<Set>(a.dtype(), node, "input 0", [&](auto z) {
    using T = decltype(z);
    using O = std::conditional_t<BoolOut, bool, T>;
    if constexpr (NonZeroB) check_no_zero<T>(node, b);
    Tensor& y = ctx.output(0, BoolOut ? DType::kBool : a.dtype(), out);
    binary_apply(ctx, a.data<T>(), a.shape(), b.data<T>(), b.shape(), y.data<O>(), out, f, grain);
  });
}

void mod_run(OpContext& ctx) {
  const int64_t fmod = ctx.node().attr_int("fmod", 0);
  QFORGE_CHECK(fmod == 0 || fmod == 1, Errc::kInvalidArgument, ctx.node().describe(),
        "has fmod=" + std::to_string(fmod), "0 or 1");
  if (fmod == 1) run_binary<kNumeric, false, true>(ctx, FmodF{}, kHeavyGrain);
  else run_binary<kNumeric, false, true>(ctx, ModF{}, kHeavyGrain);
}

void bitshift_run(OpContext& ctx) {
  const std::string dir = ctx.node().attr_string("direction", "");
  if (dir == "LEFT") run_binary<kUnsigned, false>(ctx, ShlF{});
  else if (dir == "RIGHT") run_binary<kUnsigned, false>(ctx, ShrF{});
  else
    throw Error(Errc::kInvalidArgument, ctx.node().describe(), "has direction='" + dir + "'",
                "direction 'LEFT' or 'RIGHT'");
}

void prelu_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  Tensor s = ctx.input(1);
  same_type(node, x, s, 1);
  // PRelu-1/6: a 1-D slope of C values is per channel (axis 1).
  if (ctx.opset() < 7 && s.rank() == 1 && s.numel() > 1 && x.rank() >= 2 && s.numel() == x.dim(1)) {
    Shape sh(static_cast<size_t>(x.rank() - 1), 1);
    sh[0] = s.numel();
    s = s.reshape(sh);
  }
  const Shape out = broadcast_shapes(x.shape(), s.shape(), node);
  QFORGE_CHECK(out == x.shape(), Errc::kShapeMismatch, node.describe(),
        "has slope of shape " + shape_str(s.shape()) + " for X of shape " + shape_str(x.shape()),
        "a slope that broadcasts to X's shape (unidirectional broadcasting)");
  if (is_half(x.dtype())) {
    const Tensor xf = widen(x, &ctx), sf = widen(s, &ctx);
    Tensor yf(DType::kF32, out);
    binary_apply(ctx, xf.data<float>(), x.shape(), sf.data<float>(), s.shape(), yf.data<float>(), out, PReluF{});
    ctx.set_output(0, narrow(yf, x.dtype(), &ctx));
    return;
  }
  dispatch<kSignedNum>(x.dtype(), node, "input 0", [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), out);
    binary_apply(ctx, x.data<T>(), x.shape(), s.data<T>(), s.shape(), y.data<T>(), out, PReluF{});
  });
}

// -------------------------------------------------------------- variadic --

template <class T, class F>
void variadic_compute(const OpContext& ctx, const std::vector<Tensor>& ins, Tensor& y, const F& f, bool mean) {
  const Shape& out = y.shape();
  T* py = mptr<T>(y);
  binary_apply(ctx, cptr<T>(ins[0]), ins[0].shape(), cptr<T>(ins[1]), ins[1].shape(), py, out, f);
  for (size_t k = 2; k < ins.size(); ++k)
    binary_apply(ctx, static_cast<const T*>(py), out, cptr<T>(ins[k]), ins[k].shape(), py, out, f);
  if (mean) {
    const T n = static_cast<T>(ins.size());
    parallel(ctx, y.numel(), kCheapGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) py[i] = static_cast<T>(py[i] / n);
    });
  }
}

template <unsigned Set, class F>
void run_variadic(OpContext& ctx, const F& f, bool mean) {
  const ir::Node& node = ctx.node();
  QFORGE_CHECK(ctx.num_inputs() >= 1, Errc::kNotFound, node.describe(), "has no inputs", "at least one input");
  std::vector<Tensor> ins;
  for (int i = 0; i < ctx.num_inputs(); ++i) {
    ins.push_back(ctx.input(i));
    same_type(node, ins[0], ins.back(), i);
  }
  Shape out = ins[0].shape();
  for (size_t k = 1; k < ins.size(); ++k) out = broadcast_shapes(out, ins[k].shape(), node);
  const DType dt = ins[0].dtype();
  if (ins.size() == 1) {
    if (is_half(dt)) {
      if constexpr ((Set & kFloat) == 0) bad_type(node, "input 0", dt, types_str(Set).c_str());
    } else {
      dispatch<Set>(dt, node, "input 0", [](auto) {});
    }
    ctx.set_output(0, ins[0]);
    return;
  }
  if (is_half(dt)) {
    if constexpr ((Set & kFloat) != 0) {
      for (Tensor& t : ins) t = widen(t, &ctx);
      Tensor yf(DType::kF32, out);
      variadic_compute<float>(ctx, ins, yf, f, mean);
      ctx.set_output(0, narrow(yf, dt, &ctx));
      return;
    } else {
      bad_type(node, "input 0", dt, types_str(Set).c_str());
    }
  }
  dispatch<Set>(dt, node, "input 0", [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, dt, out);
    variadic_compute<T>(ctx, ins, y, f, mean);
  });
}

// ------------------------------------------------------------------ Cast --

struct F16Tag {};
struct BF16Tag {};
template <class T> struct StoreOf { using type = T; };
template <> struct StoreOf<F16Tag> { using type = uint16_t; };
template <> struct StoreOf<BF16Tag> { using type = uint16_t; };
template <> struct StoreOf<bool> { using type = uint8_t; };

template <class F>
void dispatch_cast(DType dt, const ir::Node& node, const char* what, F&& f) {
  switch (dt) {
    case DType::kF32: f(float{}); break;
    case DType::kF64: f(double{}); break;
    case DType::kF16: f(F16Tag{}); break;
    case DType::kBF16: f(BF16Tag{}); break;
    case DType::kI64: f(int64_t{}); break;
    case DType::kI32: f(int32_t{}); break;
    case DType::kI16: f(int16_t{}); break;
    case DType::kU16: f(uint16_t{}); break;
    case DType::kI8: f(int8_t{}); break;
    case DType::kU8: f(uint8_t{}); break;
    case DType::kBool: f(bool{}); break;
    default:
      throw Error(Errc::kUnsupported, node.describe(),
                  std::string(what) + " is " + std::string(dtype_name(dt)),
                  "f32, f64, f16, bf16, i8, u8, i16, u16, i32, i64 or bool");
  }
}

// A stored element's value: halves as float, bool as bool.
template <class S>
auto load_value(typename StoreOf<S>::type v) {
  if constexpr (std::is_same_v<S, F16Tag>) return f16_to_f32(v);
  else if constexpr (std::is_same_v<S, BF16Tag>) return bf16_to_f32(v);
  else if constexpr (std::is_same_v<S, bool>) return v != 0;
  else return v;
}

// double to float rounding to odd: a later rounding to f16 / bf16 is then
// correctly rounded (no double rounding), since float keeps 13+ more bits.
inline float f32_round_odd(double d) {
  float f = static_cast<float>(d);
  if (std::isfinite(d) && static_cast<double>(f) != d) {
    uint32_t bits = std::bit_cast<uint32_t>(f);
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) bits -= 1;  // toward zero
    bits |= 1u;
    f = std::bit_cast<float>(bits);
  }
  return f;
}

template <class V>
float to_f32_for_half(V v) {
  if constexpr (std::is_same_v<V, bool>) return v ? 1.0f : 0.0f;
  else if constexpr (std::is_same_v<V, float>) return v;
  else if constexpr (std::is_same_v<V, double>) return f32_round_odd(v);
  else if constexpr (sizeof(V) >= 4) return f32_round_odd(static_cast<double>(v));
  else return static_cast<float>(v);
}

template <class D, class V>
typename StoreOf<D>::type convert_value(V v) {
  if constexpr (std::is_same_v<D, F16Tag>) {
    return f32_to_f16(to_f32_for_half(v));
  } else if constexpr (std::is_same_v<D, BF16Tag>) {
    return f32_to_bf16(to_f32_for_half(v));
  } else if constexpr (std::is_same_v<D, bool>) {
    if constexpr (std::is_same_v<V, bool>) return static_cast<uint8_t>(v);
    else return static_cast<uint8_t>(v != V(0));  // NaN is true, as in numpy
  } else if constexpr (std::is_integral_v<D>) {
    if constexpr (std::is_floating_point_v<V>) return float_to_int<D>(v);
    else return static_cast<D>(v);  // integers wrap (keep the low bits), bool is 0 / 1
  } else {
    return static_cast<D>(v);
  }
}

// y = x converted to y's dtype, elementwise (same numel).
void cast_into(const OpContext* ctx, const Tensor& x, Tensor& y, const ir::Node& node) {
  const void* src = x.raw();
  void* dst = y.raw();
  const int64_t n = x.numel();
  dispatch_cast(x.dtype(), node, "input 0", [&](auto s) {
    using S = decltype(s);
    dispatch_cast(y.dtype(), node, "the target type", [&](auto d) {
      using D = decltype(d);
      const auto* ps = static_cast<const typename StoreOf<S>::type*>(src);
      auto* pd = static_cast<typename StoreOf<D>::type*>(dst);
      auto loop = [&](int64_t b, int64_t e) {
        if constexpr (std::is_same_v<S, float> && std::is_same_v<D, F16Tag>) f32_to_f16_block(ps + b, pd + b, e - b);
        else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, BF16Tag>) f32_to_bf16_block(ps + b, pd + b, e - b);
        else if constexpr (std::is_same_v<S, F16Tag> && std::is_same_v<D, float>) f16_to_f32_block(ps + b, pd + b, e - b);
        else if constexpr (std::is_same_v<S, BF16Tag> && std::is_same_v<D, float>) bf16_to_f32_block(ps + b, pd + b, e - b);
        else for (int64_t i = b; i < e; ++i) pd[i] = convert_value<D>(load_value<S>(ps[i]));
      };
      if (ctx) parallel(*ctx, n, kCheapGrain, loop);
      else loop(0, n);
    });
  });
}

Tensor cast_to(const Tensor& x, DType dt, const ir::Node& node) {
  if (x.dtype() == dt) return x;
  Tensor y(dt, x.shape());
  cast_into(nullptr, x, y, node);
  return y;
}

DType cast_target(const ir::Node& node) {
  const ir::Attribute& a = node.attr("to");
  int64_t onnx = -1;
  if (a.kind == ir::Attribute::Kind::kInt) {
    onnx = a.i;
  } else if (a.kind == ir::Attribute::Kind::kString) {  // Cast-1: a type name
    static const std::pair<const char*, int> kNames[] = {
        {"FLOAT", 1}, {"UINT8", 2}, {"INT8", 3}, {"UINT16", 4}, {"INT16", 5}, {"INT32", 6},
        {"INT64", 7}, {"STRING", 8}, {"BOOL", 9}, {"FLOAT16", 10}, {"DOUBLE", 11},
        {"UINT32", 12}, {"UINT64", 13}, {"BFLOAT16", 16}};
    for (const auto& [name, v] : kNames)
      if (a.s == name) onnx = v;
    QFORGE_CHECK(onnx >= 0, Errc::kInvalidArgument, node.describe(), "has to='" + a.s + "'",
          "an ONNX TensorProto type name such as 'FLOAT'");
  } else {
    throw Error(Errc::kInvalidArgument, node.describe(),
                "has attribute 'to' of kind " + std::string(ir::attr_kind_name(a.kind)), "an int");
  }
  DType dt;
  try {
    dt = dtype_from_onnx(static_cast<int>(onnx));
  } catch (const Error&) {
    throw Error(Errc::kUnsupported, node.describe(),
                "casts to ONNX type " + std::to_string(onnx) + ", which qforge has no dtype for",
                "f32, f64, f16, bf16, i8, u8, i16, u16, i32, i64 or bool");
  }
  if (dtype_info(dt).is_packed)
    throw Error(Errc::kUnsupported, node.describe(),
                "casts to " + std::string(dtype_name(dt)), "f32, f64, f16, bf16, i8, u8, i16, u16, i32, i64 or bool");
  return dt;
}

void cast_run_to(OpContext& ctx, DType to) {
  const Tensor& x = ctx.input(0);
  if (x.dtype() == to) {
    ctx.set_output(0, x);
    return;
  }
  Tensor& y = ctx.output(0, to, x.shape());
  cast_into(&ctx, x, y, ctx.node());
}

// ------------------------------------------------------------------ Pow --

struct PowF {
  template <class T> T operator()(T a, T b) const { return std::pow(a, b); }
};
// pow for the exponents 2, 3, 1, -1 and 0.5 without a pow call: equal to
// IEEE pow (2, 1, -1, 0.5 correctly rounded; 3 within an ulp), including
// pow(-0, 0.5) = +0 and pow(-inf, 0.5) = +inf.
struct PowSmallF {
  template <class T> T operator()(T a, T e) const {
    if (e == T(2)) return a * a;
    if (e == T(3)) return a * a * a;
    if (e == T(1)) return a;
    if (e == T(-1)) return T(1) / a;
    return a == -std::numeric_limits<T>::infinity() ? std::numeric_limits<T>::infinity() : std::sqrt(a) + T(0);
  }
};
// Integer base and exponent: exact, wrapping like repeated multiplication.
struct IPowF {
  template <class T> T operator()(T a, int64_t e) const {
    if (e < 0) {  // the truncated real result
      if (a == T(1)) return T(1);
      if (a == T(-1)) return (e & 1) ? T(-1) : T(1);
      if (a == T(0)) throw Error(Errc::kInvalidArgument, "Pow", "raises integer 0 to a negative power",
                                 "a non-zero base for negative exponents");
      return T(0);
    }
    WrapU<T> r = 1, base = static_cast<WrapU<T>>(a);
    for (uint64_t k = static_cast<uint64_t>(e); k != 0; k >>= 1) {
      if (k & 1) r = static_cast<WrapU<T>>(r * base);
      base = static_cast<WrapU<T>>(base * base);
    }
    return static_cast<T>(r);
  }
};
// Integer base, float exponent: computed in double, then as Cast converts.
struct IPowFloatF {
  template <class T> T operator()(T a, double e) const {
    return float_to_int<T>(std::pow(static_cast<double>(a), e));
  }
};

void pow_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor a0 = ctx.input(0);
  const Tensor b0 = legacy_b(ctx, a0, ctx.input(1));
  const Shape out = broadcast_shapes(a0.shape(), b0.shape(), node);
  const DType bt = b0.dtype();
  QFORGE_CHECK(bt != DType::kBool && !dtype_info(bt).is_packed, Errc::kTypeMismatch, node.describe(),
        "has exponent (input 1) of type " + std::string(dtype_name(bt)), "a numeric exponent");
  const bool exp_float = dtype_info(bt).is_float;
  auto float_pow = [&](auto z, const Tensor& a, const Tensor& b, auto* y) {
    using T = decltype(z);
    const T e = b.numel() == 1 ? *b.data<T>() : T(0.25);
    if (b.numel() == 1 && (e == T(2) || e == T(1) || e == T(3) || e == T(-1) || e == T(0.5)))
      binary_apply(ctx, a.data<T>(), a.shape(), b.data<T>(), b.shape(), y, out, PowSmallF{});
    else
      binary_apply(ctx, a.data<T>(), a.shape(), b.data<T>(), b.shape(), y, out, PowF{}, kHeavyGrain);
  };
  switch (a0.dtype()) {
    case DType::kF16:
    case DType::kBF16: {
      const Tensor a = widen(a0, &ctx), b = cast_to(b0, DType::kF32, node);
      Tensor yf(DType::kF32, out);
      float_pow(float{}, a, b, yf.data<float>());
      ctx.set_output(0, narrow(yf, a0.dtype(), &ctx));
      return;
    }
    case DType::kF32: {
      const Tensor b = cast_to(b0, DType::kF32, node);
      float_pow(float{}, a0, b, ctx.output(0, DType::kF32, out).data<float>());
      return;
    }
    case DType::kF64: {
      const Tensor b = cast_to(b0, DType::kF64, node);
      float_pow(double{}, a0, b, ctx.output(0, DType::kF64, out).data<double>());
      return;
    }
    case DType::kI32:
    case DType::kI64: {
      auto int_pow = [&](auto z) {
        using T = decltype(z);
        T* y = ctx.output(0, a0.dtype(), out).template data<T>();
        if (exp_float) {
          const Tensor b = cast_to(b0, DType::kF64, node);
          binary_apply(ctx, a0.data<T>(), a0.shape(), b.data<double>(), b.shape(), y, out, IPowFloatF{}, kHeavyGrain);
        } else {
          const Tensor b = cast_to(b0, DType::kI64, node);
          try {
            binary_apply(ctx, a0.data<T>(), a0.shape(), b.data<int64_t>(), b.shape(), y, out, IPowF{}, kHeavyGrain);
          } catch (const Error& e) {
            throw Error(e.code(), node.describe(), e.problem(), e.expected());
          }
        }
      };
      if (a0.dtype() == DType::kI32) int_pow(int32_t{});
      else int_pow(int64_t{});
      return;
    }
    default:
      bad_type(node, "input 0", a0.dtype(), "one of f32, f64, f16, bf16, i32, i64");
  }
}

// ----------------------------------------------------------------- Where --

void where_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& c = ctx.input(0);
  const Tensor& x = ctx.input(1);
  const Tensor& y = ctx.input(2);
  if (c.dtype() != DType::kBool) bad_type(node, "input 0 (condition)", c.dtype(), "bool");
  same_type(node, x, y, 2);
  QFORGE_CHECK(!dtype_info(x.dtype()).is_packed, Errc::kTypeMismatch, node.describe(),
        "input 1 is " + std::string(dtype_name(x.dtype())), "a type of at least 8 bits");
  const Shape out = broadcast_shapes(broadcast_shapes(c.shape(), x.shape(), node), y.shape(), node);
  Tensor& o = ctx.output(0, x.dtype(), out);
  if (o.numel() == 0) return;
  const Plan<3> p = make_plan<3>(out, {&c.shape(), &x.shape(), &y.shape()});
  auto go = [&](auto z) {
    using T = decltype(z);  // moved as raw bits of the element's size
    const uint8_t* pc = cptr<uint8_t>(c);
    const T* px = cptr<T>(x);
    const T* py = cptr<T>(y);
    T* po = mptr<T>(o);
    run_plan<3>(ctx, p, kCheapGrain, [&](const std::array<int64_t, 3>& off, int64_t oo, int64_t n) {
      const uint8_t* cc = pc + off[0];
      const T* xx = px + off[1];
      const T* yy = py + off[2];
      T* dd = po + oo;
      const int64_t kc = p.istr[0], kx = p.istr[1], ky = p.istr[2];
      if (kc && kx && ky) {
        for (int64_t i = 0; i < n; ++i) dd[i] = cc[i] != 0 ? xx[i] : yy[i];
      } else if (!kc) {
        const T* src = cc[0] != 0 ? xx : yy;
        const int64_t k = cc[0] != 0 ? kx : ky;
        if (k) std::memcpy(dd, src, static_cast<size_t>(n) * sizeof(T));
        else for (int64_t i = 0; i < n; ++i) dd[i] = src[0];
      } else {
        for (int64_t i = 0; i < n; ++i) dd[i] = cc[i] != 0 ? xx[i * kx] : yy[i * ky];
      }
    });
  };
  switch (dtype_bits(x.dtype())) {
    case 8: go(uint8_t{}); break;
    case 16: go(uint16_t{}); break;
    case 32: go(uint32_t{}); break;
    case 64: go(uint64_t{}); break;
    default: bad_type(node, "input 1", x.dtype(), "a type of 8, 16, 32 or 64 bits");
  }
}

void infer_where(InferContext& c) {
  check_infer_types(c, 1, 2);
  if (c.input(0).dtype && *c.input(0).dtype != DType::kBool)
    throw Error(Errc::kTypeMismatch, c.node().describe(),
                "input 0 (condition) is " + std::string(dtype_name(*c.input(0).dtype)), "bool");
  const std::optional<DType> dt = c.input(1).dtype ? c.input(1).dtype : c.input(2).dtype;
  set_output(c, 0, dt, infer_bcast_shape(c, 0, 2));
}

// -------------------------------------------------- logic, Identity, Dropout --

void not_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.dtype() != DType::kBool) bad_type(ctx.node(), "input 0", x.dtype(), "bool");
  Tensor& y = ctx.output(0, DType::kBool, x.shape());
  const uint8_t* px = cptr<uint8_t>(x);
  bool* py = y.data<bool>();
  parallel(ctx, x.numel(), kCheapGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) py[i] = px[i] == 0;
  });
}

void dropout_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  if (ctx.opset() >= 12 && ctx.has_input(2)) {
    const Tensor& tm = ctx.input(2);
    if (tm.dtype() != DType::kBool) bad_type(node, "input 2 (training_mode)", tm.dtype(), "bool");
    QFORGE_CHECK(tm.numel() == 1, Errc::kShapeMismatch, node.describe(),
          "training_mode (input 2) has shape " + shape_str(tm.shape()), "a scalar");
    if (*cptr<uint8_t>(tm) != 0) {
      double ratio = 0.5;
      if (ctx.has_input(1)) {
        const Tensor r = widen(ctx.input(1));
        ratio = to_scalar(r, node, "ratio (input 1)");
      }
      // With ratio 0 training mode is deterministic: the output is the input.
      if (ratio != 0.0)
        throw Error(Errc::kUnsupported, node.describe(),
                    "runs in training mode (training_mode=true, ratio=" + std::to_string(ratio) + ")",
                    "training_mode false: qforge runs Dropout for inference only");
    }
  }
  // Inference (and opsets before 12, whatever is_test says): y = x.
  ctx.set_output(0, x);
  if (ctx.wants_output(1)) {
    if (ctx.opset() >= 10) {
      Tensor& m = ctx.output(1, DType::kBool, x.shape());
      if (m.numel() > 0) std::memset(m.raw(), 1, m.nbytes());
    } else {  // Dropout-7..9: the mask has the input's type
      Tensor ones(DType::kF32, x.shape());
      float* p = ones.data<float>();
      std::fill(p, p + ones.numel(), 1.0f);
      ctx.set_output(1, cast_to(ones, x.dtype(), node));
    }
  }
}

void infer_dropout(InferContext& c) {
  const ir::ValueInfo& in = c.input(0);
  set_output(c, 0, in.dtype, in.shape);
  if (c.num_outputs() > 1)
    set_output(c, 1, c.opset() >= 10 ? std::optional<DType>(DType::kBool) : in.dtype, in.shape);
}

// --------------------------------------------------------- registration --


void add_op(OpRegistry& r, const char* op, int64_t min_opset, std::function<void(InferContext&)> infer,
            std::function<void(OpContext&)> run) {
  r.add({.domain = "", .op_type = op, .min_opset = min_opset, .max_opset = 21,
         .infer = std::move(infer), .run = std::move(run)});
}

void infer_same(InferContext& c) { infer_same_as(c); }

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  // Unary math and activations.
  add_op(r, "Abs", 1, infer_same, [](OpContext& c) { run_unary<kNumeric>(c, AbsF{}); });
  add_op(r, "Neg", 1, infer_same, [](OpContext& c) { run_unary<kSignedNum>(c, NegF{}); });
  add_op(r, "Sqrt", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, SqrtF{}); });
  add_op(r, "Exp", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, ExpF{}, kVecMathGrain); });
  add_op(r, "Log", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, LogF{}, kVecMathGrain); });
  add_op(r, "Reciprocal", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, ReciprocalF{}); });
  add_op(r, "Erf", 9, infer_same, [](OpContext& c) { run_unary<kFloat>(c, ErfF{}, kVecMathGrain); });
  add_op(r, "Tanh", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, TanhF{}, kVecMathGrain); });
  add_op(r, "Sigmoid", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, SigmoidF{}, kVecMathGrain); });
  add_op(r, "HardSigmoid", 1, infer_same, [](OpContext& c) {
    run_unary<kFloat>(c, HardSigmoidF{c.node().attr_float("alpha", 0.2f), c.node().attr_float("beta", 0.5f)});
  });
  add_op(r, "HardSwish", 14, infer_same, [](OpContext& c) { run_unary<kFloat>(c, HardSwishF{}); });
  add_op(r, "Relu", 1, infer_same, [](OpContext& c) { run_unary<kSignedNum>(c, ReluF{}); });
  add_op(r, "LeakyRelu", 1, infer_same, [](OpContext& c) {
    run_unary<kFloat>(c, LeakyReluF{c.node().attr_float("alpha", 0.01f)});
  });
  add_op(r, "Elu", 1, infer_same, [](OpContext& c) {
    run_unary<kFloat>(c, EluF{c.node().attr_float("alpha", 1.0f)}, kHeavyGrain);
  });
  add_op(r, "Selu", 1, infer_same, [](OpContext& c) {
    run_unary<kFloat>(c, SeluF{c.node().attr_float("alpha", 1.67326319217681884765625f),
                               c.node().attr_float("gamma", 1.05070102214813232421875f)},
                      kHeavyGrain);
  });
  add_op(r, "Celu", 12, infer_same, [](OpContext& c) {
    const float alpha = c.node().attr_float("alpha", 1.0f);
    QFORGE_CHECK(alpha != 0.0f, Errc::kInvalidArgument, c.node().describe(), "has alpha=0", "a non-zero alpha");
    run_unary<kFloat>(c, CeluF{alpha}, kHeavyGrain);
  });
  add_op(r, "ThresholdedRelu", 10, infer_same, [](OpContext& c) {
    run_unary<kFloat>(c, ThresholdedReluF{c.node().attr_float("alpha", 1.0f)});
  });
  add_op(r, "Gelu", 20, infer_same, gelu_run);
  r.add({.domain = kQforgeDomain, .op_type = "ErfGelu", .min_opset = 1, .max_opset = 1,
         .infer = infer_same, .run = [](OpContext& c) {
           const ir::Node& n = c.node();
           const Tensor& x = c.input(0);
           if (x.dtype() != DType::kF32) bad_type(n, "input 0", x.dtype(), "f32");
           const ErfGeluF f{n.attr_float("div", 1.0f), n.attr_float("add", 0.0f),
                            n.attr_float("mul", 1.0f)};
           map_unary(c, x.data<float>(), c.output(0, DType::kF32, x.shape()).data<float>(),
                     x.numel(), f, kVecMathGrain);
         }});
  add_op(r, "Clip", 1, infer_same, clip_run);
  add_op(r, "Softplus", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, SoftplusF{}, kVecMathGrain); });
  add_op(r, "Softsign", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, SoftsignF{}); });
  add_op(r, "Sign", 9, infer_same, [](OpContext& c) { run_unary<kNumeric>(c, SignF{}); });
  add_op(r, "Floor", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, FloorF{}); });
  add_op(r, "Ceil", 1, infer_same, [](OpContext& c) { run_unary<kFloat>(c, CeilF{}); });
  add_op(r, "Round", 11, infer_same, [](OpContext& c) { run_unary<kFloat>(c, RoundF{}); });
  add_op(r, "Sin", 7, infer_same, [](OpContext& c) { run_unary<kFloat>(c, SinF{}, kHeavyGrain); });
  add_op(r, "Cos", 7, infer_same, [](OpContext& c) { run_unary<kFloat>(c, CosF{}, kHeavyGrain); });
  add_op(r, "Tan", 7, infer_same, [](OpContext& c) { run_unary<kFloat>(c, TanF{}, kHeavyGrain); });
  add_op(r, "Asin", 7, infer_same, [](OpContext& c) { run_unary<kFloat>(c, AsinF{}, kHeavyGrain); });
  add_op(r, "Acos", 7, infer_same, [](OpContext& c) { run_unary<kFloat>(c, AcosF{}, kHeavyGrain); });
  add_op(r, "Atan", 7, infer_same, [](OpContext& c) { run_unary<kFloat>(c, AtanF{}, kHeavyGrain); });
  add_op(r, "Sinh", 9, infer_same, [](OpContext& c) { run_unary<kFloat>(c, SinhF{}, kHeavyGrain); });
  add_op(r, "Cosh", 9, infer_same, [](OpContext& c) { run_unary<kFloat>(c, CoshF{}, kHeavyGrain); });
  add_op(r, "Asinh", 9, infer_same, [](OpContext& c) { run_unary<kFloat>(c, AsinhF{}, kHeavyGrain); });
  add_op(r, "Acosh", 9, infer_same, [](OpContext& c) { run_unary<kFloat>(c, AcoshF{}, kHeavyGrain); });
  add_op(r, "Atanh", 9, infer_same, [](OpContext& c) { run_unary<kFloat>(c, AtanhF{}, kHeavyGrain); });
  add_op(r, "Mish", 18, infer_same, [](OpContext& c) { run_unary<kFloat>(c, MishF{}, kVecMathGrain); });
  add_op(r, "Shrink", 9, infer_same, [](OpContext& c) {
    run_unary<kNumeric>(c, ShrinkF{c.node().attr_float("lambd", 0.5f), c.node().attr_float("bias", 0.0f)});
  });
  add_op(r, "IsNaN", 9, infer_bool_same, [](OpContext& c) {
    run_predicate(c, [](auto x) { return x != x; });
  });
  add_op(r, "IsInf", 10, infer_bool_same, isinf_run);

  // Binary arithmetic (opsets before 7: the legacy broadcast attribute).
  auto infer_arith = [](InferContext& c) { infer_binary(c, std::nullopt); };
  auto infer_cmp = [](InferContext& c) { infer_binary(c, DType::kBool); };
  add_op(r, "Add", 1, infer_arith, [](OpContext& c) { run_binary<kNumeric, false>(c, AddF{}); });
  add_op(r, "Sub", 1, infer_arith, [](OpContext& c) { run_binary<kNumeric, false>(c, SubF{}); });
  add_op(r, "Mul", 1, infer_arith, [](OpContext& c) { run_binary<kNumeric, false>(c, MulF{}); });
  add_op(r, "Div", 1, infer_arith, [](OpContext& c) { run_binary<kNumeric, false, true>(c, DivF{}); });
  add_op(r, "Pow", 1, [](InferContext& c) { infer_binary(c, std::nullopt, false); }, pow_run);
  add_op(r, "Mod", 10, infer_arith, mod_run);
  add_op(r, "BitShift", 11, infer_arith, bitshift_run);
  add_op(r, "PRelu", 1, infer_same, prelu_run);

  // Variadic, broadcasting.
  add_op(r, "Max", 1, infer_variadic, [](OpContext& c) { run_variadic<kNumeric>(c, MaxF{}, false); });
  add_op(r, "Min", 1, infer_variadic, [](OpContext& c) { run_variadic<kNumeric>(c, MinF{}, false); });
  add_op(r, "Sum", 1, infer_variadic, [](OpContext& c) { run_variadic<kNumeric>(c, AddF{}, false); });
  add_op(r, "Mean", 1, infer_variadic, [](OpContext& c) { run_variadic<kFloat>(c, AddF{}, true); });

  // Comparisons and logic: bool outputs.
  add_op(r, "Equal", 1, infer_cmp, [](OpContext& c) { run_binary<kNumeric | kBoolT, true>(c, EqualF{}); });
  add_op(r, "Less", 1, infer_cmp, [](OpContext& c) { run_binary<kNumeric, true>(c, LessF{}); });
  add_op(r, "Greater", 1, infer_cmp, [](OpContext& c) { run_binary<kNumeric, true>(c, GreaterF{}); });
  add_op(r, "LessOrEqual", 12, infer_cmp, [](OpContext& c) { run_binary<kNumeric, true>(c, LessEqF{}); });
  add_op(r, "GreaterOrEqual", 12, infer_cmp, [](OpContext& c) { run_binary<kNumeric, true>(c, GreaterEqF{}); });
  add_op(r, "And", 1, infer_cmp, [](OpContext& c) { run_binary<kBoolT, true>(c, AndF{}); });
  add_op(r, "Or", 1, infer_cmp, [](OpContext& c) { run_binary<kBoolT, true>(c, OrF{}); });
  add_op(r, "Xor", 1, infer_cmp, [](OpContext& c) { run_binary<kBoolT, true>(c, XorF{}); });
  add_op(r, "Not", 1, infer_bool_same, not_run);
  add_op(r, "Where", 9, infer_where, where_run);

  // Types and plumbing.
  add_op(r, "Cast", 1,
         [](InferContext& c) { set_output(c, 0, cast_target(c.node()), c.input(0).shape); },
         [](OpContext& c) { cast_run_to(c, cast_target(c.node())); });
  add_op(r, "CastLike", 15,
         [](InferContext& c) { set_output(c, 0, c.input(1).dtype, c.input(0).shape); },
         [](OpContext& c) { cast_run_to(c, c.input(1).dtype()); });
  add_op(r, "Identity", 1, infer_same, [](OpContext& c) { c.set_output(0, c.input(0)); });
  add_op(r, "Dropout", 1, infer_dropout, dropout_run);
}

}  // namespace qforge::ops
