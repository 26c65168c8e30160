// Reductions and friends: Reduce{Sum,Mean,Max,Min,Prod,L1,L2,LogSum,
// LogSumExp,SumSquare}, ArgMax/ArgMin, TopK, CumSum, Resize/Upsample and
// Einsum, following the ONNX operator specification of each opset.
//
// Reductions first compact the input shape: dimensions of size 1 are dropped
// and neighbouring dimensions that are both reduced (or both kept) are merged,
// so [B, S, D] over axis -1 becomes [B*S | D] and NCHW over axes 2, 3 becomes
// [N*C | H*W]. When the innermost group is reduced, each output is a
// contiguous row reduction (several independent accumulators, so the compiler
// vectorises it); when it is kept, whole input rows are accumulated into the
// output row (contiguous, vectorised). Work is split over outputs (or over
// parts of a row when there are few outputs) with the session's thread pool.
//
// Resize runs nearest as one gather with per-axis index tables, and linear /
// cubic as separable passes, one per resized axis, each with per-axis tap
// tables (index and weight per output coordinate).
//
// Einsum binds the equation to the input shapes, sums away labels that only
// one operand uses (and takes diagonals), then contracts operands pairwise as
// batched matrix products (the float GEMM for f32), and permutes the result.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/gemm.h"
#include "ops/families.h"
#include "ops/op_util.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {
namespace {

// ---------------------------------------------------------------------------
// Shared helpers

// Elementary operations per parallel chunk: below this a loop stays on one thread.
constexpr int64_t kGrainWork = int64_t{1} << 15;

// Runs fn(begin, end) over [0, n), in parallel when the work is big enough.
// work_per_item: rough cost of one item, to size the chunks.
template <class F>
void par_for(ThreadPool* pool, int64_t n, int64_t work_per_item, F&& fn) {
  if (n <= 0) return;
  const int64_t grain = std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work_per_item));
  if (pool == nullptr || n <= grain || pool->threads() <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  pool->parallel_for(n, grain, fn);
}

[[noreturn]] void fail(const ir::Node& n, Errc code, const std::string& problem,
                       const std::string& expected = {}) {
  throw Error(code, n.describe(), problem, expected);
}

// axis in [-rank, rank) -> [0, rank); unlike normalize_axis, a scalar has no axis.
int64_t axis_in(int64_t axis, int64_t rank, const ir::Node& n, const std::string& what) {
  if (axis < -rank || axis >= rank)
    fail(n, Errc::kInvalidArgument,
         "has " + what + " " + std::to_string(axis) + " for an input of rank " + std::to_string(rank),
         rank == 0 ? std::string("an input of rank >= 1")
                   : "an axis in [" + std::to_string(-rank) + ", " + std::to_string(rank - 1) + "]");
  return axis < 0 ? axis + rank : axis;
}

int64_t prod(const Shape& s, size_t b, size_t e) {
  int64_t p = 1;
  for (size_t i = b; i < e && i < s.size(); ++i) p *= s[i];
  return p;
}

Shape strides_of(const Shape& s) {
  Shape st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// A double to T: floats convert, integers truncate toward zero and saturate
// (NaN gives 0), so no conversion is undefined.
template <class T>
T from_double(double v) {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(v);
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else {
    if (std::isnan(v)) return T{0};
    constexpr double lo = static_cast<double>(std::numeric_limits<T>::lowest());
    constexpr double hi = static_cast<double>(std::numeric_limits<T>::max());
    if (v <= lo) return std::numeric_limits<T>::lowest();
    if (v >= hi) return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  }
}

// Integer arithmetic that wraps (two's complement) instead of overflowing.
template <class T>
inline T wadd(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    return a + b;
  } else {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  }
}
template <class T>
inline T wmul(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    return a * b;
  } else {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
  }
}

// Iterates the offsets of a multi-index over dims with the given strides.
struct Odometer {
  std::vector<int64_t> dims, strides, idx;
  int64_t offset = 0;
  Odometer(std::vector<int64_t> d, std::vector<int64_t> s)
      : dims(std::move(d)), strides(std::move(s)), idx(dims.size(), 0) {}
  void seek(int64_t linear) {
    offset = 0;
    for (size_t k = dims.size(); k-- > 0;) {
      idx[k] = dims[k] > 0 ? linear % dims[k] : 0;
      linear = dims[k] > 0 ? linear / dims[k] : 0;
      offset += idx[k] * strides[k];
    }
  }
  void next() {
    for (size_t k = dims.size(); k-- > 0;) {
      offset += strides[k];
      if (++idx[k] < dims[k]) return;
      offset -= strides[k] * dims[k];
      idx[k] = 0;
    }
  }
};

// The types most kernels here are instantiated for (others are an Error).
template <class F>
void dispatch_main(DType dt, const ir::Node& node, F&& f) {
  switch (dt) {
    case DType::kF32: f(float{}); break;
    case DType::kF64: f(double{}); break;
    case DType::kI64: f(int64_t{}); break;
    case DType::kI32: f(int32_t{}); break;
    default: bad_type(node, "input 0", dt, "f32, f64, i64 or i32");
  }
}

// Values of a float (f32/f64) 0-D or 1-D tensor: scales, roi.
std::vector<double> float_values(const Tensor& t, const ir::Node& node, const char* what) {
  QFORGE_CHECK(t.rank() <= 1, Errc::kShapeMismatch, node.describe(),
        std::string(what) + " has shape " + shape_str(t.shape()), "a 1-D tensor");
  std::vector<double> r(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::kF32) {
    const float* p = t.data<float>();
    for (size_t i = 0; i < r.size(); ++i) r[i] = static_cast<double>(p[i]);
  } else if (t.dtype() == DType::kF64) {
    const double* p = t.data<double>();
    for (size_t i = 0; i < r.size(); ++i) r[i] = p[i];
  } else {
    bad_type(node, what, t.dtype(), "f32 or f64");
  }
  return r;
}

// Prefers a known size other than 1 (broadcasting), then a symbol.
ir::Dim merge_dim(const std::optional<ir::Dim>& cur, const ir::Dim& d) {
  if (!cur) return d;
  if (cur->known() && cur->size == 1) return d;
  if (d.known() && d.size == 1) return *cur;
  if (cur->known()) return *cur;
  if (d.known()) return d;
  if (!cur->symbol.empty()) return *cur;
  return d;
}

// ---------------------------------------------------------------------------
// Reduce*

enum class RKind { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

// Element maps applied before combining (shift: per-output, for LogSumExp).
struct PreId {
  static constexpr bool kShift = false;
  template <class T, class A> A operator()(T x, A) const { return static_cast<A>(x); }
};
struct PreAbs {
  static constexpr bool kShift = false;
  template <class T, class A> A operator()(T x, A) const {
    if constexpr (std::is_floating_point_v<T>) return static_cast<A>(std::fabs(x));
    else if constexpr (std::is_unsigned_v<T>) return static_cast<A>(x);
    else return x < 0 ? static_cast<A>(A{0} - static_cast<A>(x)) : static_cast<A>(x);
  }
};
struct PreSquare {
  static constexpr bool kShift = false;
  template <class T, class A> A operator()(T x, A) const {
    const A a = static_cast<A>(x);
    return static_cast<A>(a * a);
  }
};
// exp(x) for float in plain arithmetic, so loops calling it vectorise:
// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (|r| <= ln2 / 2,
// ln 2 split in two parts for exactness), exp(r) by its degree-6 Taylor-like
// minimax polynomial. Relative error about 2e-7. x is clamped to the range
// where the result is a normal float (so -inf gives about 1e-38, not 0, and
// NaN is clamped too; no float -> int conversion is ever out of range).
inline float exp_f32(float x) {
  x = x > -87.0f ? x : -87.0f;
  x = x < 88.0f ? x : 88.0f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * kLog2e + kRound) - kRound;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// The same, four floats at a time with GCC vector extensions (the scalar
// version does not vectorise: GCC does not if-convert its clamps there).
typedef float F4 __attribute__((vector_size(16)));
typedef int32_t I4 __attribute__((vector_size(16)));
inline F4 splat4(float v) { return F4{v, v, v, v}; }
inline F4 exp_f4(F4 x) {
  x = x > splat4(-87.0f) ? x : splat4(-87.0f);
  x = x < splat4(88.0f) ? x : splat4(88.0f);
  const F4 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const F4 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  F4 p = splat4(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const I4 bits = (__builtin_convertvector(n, I4) + 127) << 23;
  F4 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

struct PreExpShift {
  static constexpr bool kShift = true;
  template <class T, class A> A operator()(T x, A s) const {
    if constexpr (std::is_same_v<A, float>) return exp_f32(static_cast<A>(x) - s);
    else return std::exp(static_cast<A>(x) - s);
  }
};

struct CombAdd {
  template <class A> A operator()(A a, A b) const { return static_cast<A>(a + b); }
};
struct CombMul {
  template <class A> A operator()(A a, A b) const { return static_cast<A>(a * b); }
};
struct CombMax {
  template <class A> A operator()(A a, A b) const { return b > a ? b : a; }
};
struct CombMin {
  template <class A> A operator()(A a, A b) const { return b < a ? b : a; }
};

// Max / min of n contiguous values with explicit 16-byte vectors (GCC vector
// extensions): without -ffast-math GCC does not vectorise a max reduction
// written as a ?: on scalars, and this is 4-8x faster.
template <class A, class Comb>
A minmax_contig(const A* x, int64_t n, A init) {
  typedef A V __attribute__((vector_size(16)));
  constexpr int64_t kW = static_cast<int64_t>(16 / sizeof(A));
  auto pick = [](V a, V b) -> V {
    if constexpr (std::is_same_v<Comb, CombMax>) return b > a ? b : a;
    else return b < a ? b : a;
  };
  V acc[4] = {};
  for (V& v : acc)
    for (int64_t j = 0; j < kW; ++j) v[j] = init;
  int64_t i = 0;
  for (; i + 4 * kW <= n; i += 4 * kW) {
    for (int k = 0; k < 4; ++k) {
      V v;
      std::memcpy(&v, x + i + k * kW, sizeof(V));
      acc[k] = pick(acc[k], v);
    }
  }
  acc[0] = pick(pick(acc[0], acc[1]), pick(acc[2], acc[3]));
  A r = init;
  for (int64_t j = 0; j < kW; ++j) r = Comb{}(r, static_cast<A>(acc[0][j]));
  for (; i < n; ++i) r = Comb{}(r, x[i]);
  return r;
}

template <class T, class A, class Pre, class Comb>
constexpr bool kVectorMinMax = std::is_same_v<T, A> && std::is_same_v<Pre, PreId> && std::is_arithmetic_v<A> &&
                               !std::is_same_v<A, bool> &&
                               (std::is_same_v<Comb, CombMax> || std::is_same_v<Comb, CombMin>);

// Reduces n contiguous values with independent accumulators (vectorisable).
template <class T, class A, class Pre, class Comb>
A reduce_contig(const T* x, int64_t n, A init, A shift) {
  if constexpr (kVectorMinMax<T, A, Pre, Comb>) {
    (void)shift;
    return minmax_contig<A, Comb>(x, n, init);
  } else if constexpr (std::is_same_v<Pre, PreExpShift> && std::is_same_v<T, float> && std::is_same_v<A, float>) {
    F4 acc[4] = {};
    const F4 sv = splat4(shift);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      for (int k = 0; k < 4; ++k) {
        F4 v;
        std::memcpy(&v, x + i + 4 * k, sizeof v);
        acc[k] += exp_f4(v - sv);
      }
    acc[0] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    A r = init + ((acc[0][0] + acc[0][1]) + (acc[0][2] + acc[0][3]));
    for (; i < n; ++i) r += exp_f32(x[i] - shift);
    return r;
  } else {
    constexpr int kLanes = sizeof(A) >= 8 ? 8 : 16;
    A acc[kLanes];
    for (int j = 0; j < kLanes; ++j) acc[j] = init;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] = Comb{}(acc[j], Pre{}(x[i + j], shift));
    A r = init;
    for (; i < n; ++i) r = Comb{}(r, Pre{}(x[i], shift));
    for (int j = 0; j < kLanes; ++j) r = Comb{}(r, acc[j]);
    return r;
  }
}

// acc[j] = comb(acc[j], pre(x[j])) for a contiguous row.
template <class T, class A, class Pre, class Comb>
void accumulate_row(A* acc, const T* x, int64_t n, const A* shift) {
  if constexpr (std::is_same_v<Pre, PreExpShift> && std::is_same_v<T, float> && std::is_same_v<A, float>) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      F4 v, sv, a;
      std::memcpy(&v, x + j, sizeof v);
      std::memcpy(&sv, shift + j, sizeof sv);
      std::memcpy(&a, acc + j, sizeof a);
      a += exp_f4(v - sv);
      std::memcpy(acc + j, &a, sizeof a);
    }
    for (; j < n; ++j) acc[j] += exp_f32(x[j] - shift[j]);
  } else if constexpr (Pre::kShift) {
    for (int64_t j = 0; j < n; ++j) acc[j] = Comb{}(acc[j], Pre{}(x[j], shift[j]));
  } else {
    for (int64_t j = 0; j < n; ++j) acc[j] = Comb{}(acc[j], Pre{}(x[j], A{}));
  }
}

// The compacted iteration space of a reduction (see the file comment).
struct ReducePlan {
  std::vector<int64_t> kept_dims, kept_strides;  // kept groups, innermost group excluded
  std::vector<int64_t> red_dims, red_strides;    // reduced groups, innermost group excluded
  bool last_reduced = false;
  int64_t last_len = 1;  // innermost group's length
  int64_t outputs = 1;   // output elements
  int64_t count = 1;     // input elements per output
};

ReducePlan make_reduce_plan(const Shape& shape, const std::vector<char>& red) {
  ReducePlan p;
  std::vector<int64_t> dims;
  std::vector<char> flags;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (red[d]) p.count *= shape[d];
    else p.outputs *= shape[d];
    if (shape[d] == 1) continue;
    if (!dims.empty() && flags.back() == red[d]) {
      dims.back() *= shape[d];
    } else {
      dims.push_back(shape[d]);
      flags.push_back(red[d]);
    }
  }
  if (dims.empty()) return p;  // one element
  const Shape st = strides_of(dims);
  p.last_reduced = flags.back() != 0;
  p.last_len = dims.back();
  for (size_t g = 0; g + 1 < dims.size(); ++g) {
    if (flags[g]) {
      p.red_dims.push_back(dims[g]);
      p.red_strides.push_back(st[g]);
    } else {
      p.kept_dims.push_back(dims[g]);
      p.kept_strides.push_back(st[g]);
    }
  }
  return p;
}

// out[o] = combination over output o's inputs (no post-processing). Needs
// p.count > 0 and p.outputs > 0.
template <class T, class A, class Pre, class Comb>
void reduce_exec(const ReducePlan& p, const T* x, A init, const A* shift, A* out, ThreadPool* pool) {
  int64_t q_count = 1;
  for (int64_t d : p.red_dims) q_count *= d;
  const int64_t L = p.last_len;
  if (p.last_reduced) {
    const int64_t work = q_count * L;
    const int64_t O = p.outputs;
    const int threads = pool ? pool->threads() : 1;
    if (threads > 1 && O < 2 * threads && work >= (int64_t{1} << 16)) {
      // Few outputs, long rows: split every output's rows into parts.
      const int64_t parts = std::clamp<int64_t>(work / kGrainWork, 1, std::min<int64_t>(8 * threads, L));
      // Not std::vector: for A = bool its packed bits would race.
      std::unique_ptr<A[]> partial(new A[static_cast<size_t>(O * parts)]);
      par_for(pool, O * parts, work / parts, [&](int64_t b, int64_t e) {
        Odometer ko(p.kept_dims, p.kept_strides);
        Odometer ro(p.red_dims, p.red_strides);
        for (int64_t t = b; t < e; ++t) {
          const int64_t o = t / parts, part = t % parts;
          const int64_t j0 = L * part / parts, j1 = L * (part + 1) / parts;
          ko.seek(o);
          ro.seek(0);
          const A s = shift ? shift[o] : A{};
          A r = init;
          for (int64_t q = 0; q < q_count; ++q, ro.next())
            r = Comb{}(r, reduce_contig<T, A, Pre, Comb>(x + ko.offset + ro.offset + j0, j1 - j0, init, s));
          partial[static_cast<size_t>(t)] = r;
        }
      });
      for (int64_t o = 0; o < O; ++o) {
        A r = init;
        for (int64_t part = 0; part < parts; ++part) r = Comb{}(r, partial[static_cast<size_t>(o * parts + part)]);
        out[o] = r;
      }
      return;
    }
    par_for(pool, O, work, [&](int64_t b, int64_t e) {
      Odometer ko(p.kept_dims, p.kept_strides);
      Odometer ro(p.red_dims, p.red_strides);
      ko.seek(b);
      for (int64_t o = b; o < e; ++o, ko.next()) {
        const A s = shift ? shift[o] : A{};
        if (q_count == 1) {
          out[o] = reduce_contig<T, A, Pre, Comb>(x + ko.offset, L, init, s);
          continue;
        }
        ro.seek(0);
        A r = init;
        for (int64_t q = 0; q < q_count; ++q, ro.next())
          r = Comb{}(r, reduce_contig<T, A, Pre, Comb>(x + ko.offset + ro.offset, L, init, s));
        out[o] = r;
      }
    });
  } else {
    int64_t rows = 1;
    for (int64_t d : p.kept_dims) rows *= d;
    const int64_t chunk = L <= 4096 ? L : 2048;
    const int64_t chunks = (L + chunk - 1) / chunk;
    par_for(pool, rows * chunks, q_count * chunk, [&](int64_t b, int64_t e) {
      Odometer ko(p.kept_dims, p.kept_strides);
      Odometer ro(p.red_dims, p.red_strides);
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / chunks, c = t % chunks;
        const int64_t j0 = c * chunk, j1 = std::min(L, j0 + chunk);
        ko.seek(o);
        ro.seek(0);
        A* acc = out + o * L + j0;
        std::fill(acc, acc + (j1 - j0), init);
        const A* sh = shift ? shift + o * L + j0 : nullptr;
        for (int64_t q = 0; q < q_count; ++q, ro.next())
          accumulate_row<T, A, Pre, Comb>(acc, x + ko.offset + ro.offset + j0, j1 - j0, sh);
      }
    });
  }
}

// Reduces into y (outputs elements of T): accumulates in A, then y[o] = post(acc[o], o).
template <class T, class A, class Pre, class Comb, class Post>
void reduce_to(const ReducePlan& p, const T* x, T* y, A init, const A* shift, Post post, ThreadPool* pool) {
  std::vector<A> tmp;
  A* acc;
  if constexpr (std::is_same_v<A, T>) {
    acc = y;
  } else {
    tmp.resize(static_cast<size_t>(p.outputs));
    acc = tmp.data();
  }
  if (p.count == 0) std::fill(acc, acc + p.outputs, init);
  else reduce_exec<T, A, Pre, Comb>(p, x, init, shift, acc, pool);
  for (int64_t o = 0; o < p.outputs; ++o) y[o] = post(acc[o], o);
}

template <class T> using SumAcc = std::conditional_t<std::is_floating_point_v<T>, T, uint64_t>;
template <class T> using RealAcc = std::conditional_t<std::is_floating_point_v<T>, T, double>;

template <class T>
constexpr T lowest_of() {
  if constexpr (std::is_floating_point_v<T>) return -std::numeric_limits<T>::infinity();
  else return std::numeric_limits<T>::lowest();
}
template <class T>
constexpr T highest_of() {
  if constexpr (std::is_floating_point_v<T>) return std::numeric_limits<T>::infinity();
  else return std::numeric_limits<T>::max();
}

// Types only ReduceMax / ReduceMin take (opset 12: i8, u8; opset 20: bool).
template <class T>
constexpr bool kMinMaxOnly = std::is_same_v<T, bool> || std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t>;

template <class T>
void reduce_typed(RKind kind, const ReducePlan& p, const T* x, T* y, ThreadPool* pool) {
  auto same = [](T v, int64_t) { return v; };
  if (kind == RKind::kMax) {
    reduce_to<T, T, PreId, CombMax>(p, x, y, lowest_of<T>(), nullptr, same, pool);
    return;
  }
  if (kind == RKind::kMin) {
    reduce_to<T, T, PreId, CombMin>(p, x, y, highest_of<T>(), nullptr, same, pool);
    return;
  }
  if constexpr (!kMinMaxOnly<T>) {
    using S = SumAcc<T>;
    using R = RealAcc<T>;
    auto as_t = [](S v, int64_t) { return static_cast<T>(v); };
    const double n = static_cast<double>(p.count);
    switch (kind) {
      case RKind::kMax:
      case RKind::kMin: break;  // above
      case RKind::kSum: reduce_to<T, S, PreId, CombAdd>(p, x, y, S{0}, nullptr, as_t, pool); break;
      case RKind::kL1: reduce_to<T, S, PreAbs, CombAdd>(p, x, y, S{0}, nullptr, as_t, pool); break;
      case RKind::kSumSquare: reduce_to<T, S, PreSquare, CombAdd>(p, x, y, S{0}, nullptr, as_t, pool); break;
      case RKind::kProd: reduce_to<T, S, PreId, CombMul>(p, x, y, S{1}, nullptr, as_t, pool); break;
      case RKind::kMean:
        reduce_to<T, R, PreId, CombAdd>(p, x, y, R{0}, nullptr, [n](R v, int64_t) {
          if constexpr (std::is_floating_point_v<T>) return static_cast<T>(v / static_cast<R>(n));
          else return from_double<T>(n == 0 ? 0.0 : v / n);
        }, pool);
        break;
      case RKind::kL2:
        reduce_to<T, R, PreSquare, CombAdd>(p, x, y, R{0}, nullptr,
                                            [](R v, int64_t) { return from_double<T>(std::sqrt(static_cast<double>(v))); }, pool);
        break;
      case RKind::kLogSum:
        reduce_to<T, R, PreId, CombAdd>(p, x, y, R{0}, nullptr,
                                        [](R v, int64_t) { return from_double<T>(std::log(static_cast<double>(v))); }, pool);
        break;
      case RKind::kLogSumExp: {
        // log(sum(exp(x - m))) + m with m the maximum (or 0 where it is not finite).
        // A maximum of +-inf (or NaN) is the answer itself.
        std::vector<R> m(static_cast<size_t>(p.outputs)), top;
        if (p.count == 0) std::fill(m.begin(), m.end(), R{0});
        else reduce_exec<T, R, PreId, CombMax>(p, x, lowest_of<R>(), nullptr, m.data(), pool);
        top = m;
        for (R& v : m)
          if (!std::isfinite(v)) v = R{0};
        const R* mp = m.data();
        const R* tp = top.data();
        reduce_to<T, R, PreExpShift, CombAdd>(p, x, y, R{0}, mp, [mp, tp](R v, int64_t o) {
          if (!std::isfinite(tp[o])) return from_double<T>(static_cast<double>(tp[o]));
          return from_double<T>(static_cast<double>(std::log(v) + mp[o]));
        }, pool);
        break;
      }
    }
  }
}

struct ReduceDef {
  const char* op;
  RKind kind;
};

constexpr ReduceDef kReduceDefs[] = {
    {"ReduceSum", RKind::kSum},       {"ReduceMean", RKind::kMean},
    {"ReduceMax", RKind::kMax},       {"ReduceMin", RKind::kMin},
    {"ReduceProd", RKind::kProd},     {"ReduceL1", RKind::kL1},
    {"ReduceL2", RKind::kL2},         {"ReduceLogSum", RKind::kLogSum},
    {"ReduceLogSumExp", RKind::kLogSumExp}, {"ReduceSumSquare", RKind::kSumSquare},
};

// The opset from which axes are an input (ReduceSum: 13, the others: 18).
int64_t axes_input_opset(RKind k) { return k == RKind::kSum ? 13 : 18; }

std::vector<char> reduced_axes(const ir::Node& n, int64_t rank, const std::vector<int64_t>& axes, bool noop) {
  std::vector<char> red(static_cast<size_t>(rank), 0);
  if (axes.empty()) {
    if (!noop) std::fill(red.begin(), red.end(), 1);
    return red;
  }
  for (int64_t a : axes) {
    const int64_t k = axis_in(a, rank, n, "axis");
    if (red[static_cast<size_t>(k)])
      fail(n, Errc::kInvalidArgument, "lists axis " + std::to_string(a) + " more than once", "distinct axes");
    red[static_cast<size_t>(k)] = 1;
  }
  return red;
}

void reduce_run(OpContext& ctx, RKind kind) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  std::vector<int64_t> axes;
  bool noop = false;
  if (ctx.opset() >= axes_input_opset(kind)) {
    if (ctx.has_input(1)) axes = to_int64s(ctx.input(1), node, "input 1 (axes)");
    else axes = node.attr_ints("axes");
    noop = node.attr_int("noop_with_empty_axes", 0) != 0;
  } else {
    axes = node.attr_ints("axes");
  }
  const bool keepdims = node.attr_int("keepdims", 1) != 0;
  const int64_t rank = x.rank();
  const std::vector<char> red = reduced_axes(node, rank, axes, noop);
  Shape out_shape;
  for (int64_t d = 0; d < rank; ++d) {
    if (!red[static_cast<size_t>(d)]) out_shape.push_back(x.shape()[static_cast<size_t>(d)]);
    else if (keepdims) out_shape.push_back(1);
  }
  const ReducePlan plan = make_reduce_plan(x.shape(), red);
  Tensor& y = ctx.output(0, x.dtype(), out_shape);
  if (plan.outputs == 0) return;
  auto go = [&](auto z) {
    using T = decltype(z);
    reduce_typed<T>(kind, plan, x.data<T>(), y.data<T>(), ctx.pool());
  };
  const bool minmax = kind == RKind::kMax || kind == RKind::kMin;
  switch (x.dtype()) {
    case DType::kF32: go(float{}); break;
    case DType::kF64: go(double{}); break;
    case DType::kI64: go(int64_t{}); break;
    case DType::kI32: go(int32_t{}); break;
    case DType::kI8:
      if (!minmax) bad_type(node, "input 0", x.dtype(), "f32, f64, i64 or i32");
      reduce_typed<int8_t>(kind, plan, x.data<int8_t>(), y.data<int8_t>(), ctx.pool());
      break;
    case DType::kU8:
      if (!minmax) bad_type(node, "input 0", x.dtype(), "f32, f64, i64 or i32");
      reduce_typed<uint8_t>(kind, plan, x.data<uint8_t>(), y.data<uint8_t>(), ctx.pool());
      break;
    case DType::kBool:
      if (!minmax) bad_type(node, "input 0", x.dtype(), "f32, f64, i64 or i32");
      reduce_typed<bool>(kind, plan, x.data<bool>(), y.data<bool>(), ctx.pool());
      break;
    default:
      bad_type(node, "input 0", x.dtype(), minmax ? "f32, f64, i64, i32, i8, u8 or bool" : "f32, f64, i64 or i32");
  }
}

// Output shape of a reduction over `axes` (nullopt: not known here).
void reduce_infer_shape(InferContext& c, const std::optional<std::vector<int64_t>>& axes, bool noop,
                        bool keepdims, std::optional<DType> dt) {
  const ir::ValueInfo& in = c.input(0);
  if (!in.shape) {
    set_output(c, 0, dt, std::nullopt);
    return;
  }
  const ir::SymShape& s = *in.shape;
  const int64_t rank = static_cast<int64_t>(s.size());
  if (!axes) {
    // Which axes is unknown: with keepdims the rank is kept, and a dim is
    // known only where it is 1 either way.
    if (!keepdims) {
      set_output(c, 0, dt, std::nullopt);
      return;
    }
    ir::SymShape o(s.size());
    for (size_t d = 0; d < s.size(); ++d)
      if (s[d].known() && s[d].size == 1) o[d] = ir::Dim(1);
    set_output(c, 0, dt, o);
    return;
  }
  const std::vector<char> red = reduced_axes(c.node(), rank, *axes, noop);
  ir::SymShape o;
  for (size_t d = 0; d < s.size(); ++d) {
    if (!red[d]) o.push_back(s[d]);
    else if (keepdims) o.push_back(ir::Dim(1));
  }
  set_output(c, 0, dt, o);
}

void reduce_infer(InferContext& c, RKind kind) {
  const ir::Node& node = c.node();
  std::optional<std::vector<int64_t>> axes;
  bool noop = false;
  if (c.opset() >= axes_input_opset(kind)) {
    noop = node.attr_int("noop_with_empty_axes", 0) != 0;
    if (c.has_input(1)) axes = constant_ints(c, 1);
    else axes = node.attr_ints("axes");
  } else {
    axes = node.attr_ints("axes");
  }
  reduce_infer_shape(c, axes, noop, node.attr_int("keepdims", 1) != 0, c.input(0).dtype);
}

// ---------------------------------------------------------------------------
// ArgMax / ArgMin

template <class T, bool kMax, bool kLast>
inline bool arg_better(T v, T best) {
  if constexpr (kMax) return kLast ? v >= best : v > best;
  else return kLast ? v <= best : v < best;
}

template <class T, bool kMax, bool kLast>
void arg_rows(const T* x, int64_t outer, int64_t len, int64_t inner, int64_t* y, ThreadPool* pool) {
  if (inner == 1) {
    par_for(pool, outer, len, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* r = x + o * len;
        // The extreme value with a vectorised reduction, then where it is.
        const T m = kMax ? reduce_contig<T, T, PreId, CombMax>(r, len, lowest_of<T>(), T{})
                         : reduce_contig<T, T, PreId, CombMin>(r, len, highest_of<T>(), T{});
        int64_t bi = -1;
        if (kLast) {
          for (int64_t i = len; i-- > 0;)
            if (r[i] == m) {
              bi = i;
              break;
            }
        } else {
          for (int64_t i = 0; i < len; ++i)
            if (r[i] == m) {
              bi = i;
              break;
            }
        }
        if (bi < 0) {  // no value equals the extreme (NaN): a plain scan
          T best = r[0];
          bi = 0;
          for (int64_t i = 1; i < len; ++i)
            if (arg_better<T, kMax, kLast>(r[i], best)) {
              best = r[i];
              bi = i;
            }
        }
        y[o] = bi;
      }
    });
    return;
  }
  const int64_t chunk = std::min<int64_t>(inner, 1024);
  const int64_t chunks = (inner + chunk - 1) / chunk;
  par_for(pool, outer * chunks, len * chunk, [&](int64_t b, int64_t e) {
    std::vector<T> best(static_cast<size_t>(chunk));
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / chunks, j0 = (t % chunks) * chunk, n = std::min(inner, j0 + chunk) - j0;
      int64_t* yi = y + o * inner + j0;
      const T* r0 = x + o * len * inner + j0;
      for (int64_t j = 0; j < n; ++j) {
        best[static_cast<size_t>(j)] = r0[j];
        yi[j] = 0;
      }
      T* bp = best.data();
      for (int64_t i = 1; i < len; ++i) {
        const T* r = r0 + i * inner;
        for (int64_t j = 0; j < n; ++j) {  // selects, no branches: vectorises
          const bool better = arg_better<T, kMax, kLast>(r[j], bp[j]);
          bp[j] = better ? r[j] : bp[j];
          yi[j] = better ? i : yi[j];
        }
      }
    }
  });
}

void arg_run(OpContext& ctx, bool is_max) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  const int64_t axis = axis_in(node.attr_int("axis", 0), rank, node, "axis");
  const bool keepdims = node.attr_int("keepdims", 1) != 0;
  const bool last = ctx.opset() >= 12 && node.attr_int("select_last_index", 0) != 0;
  const Shape& s = x.shape();
  const size_t a = static_cast<size_t>(axis);
  const int64_t outer = prod(s, 0, a), len = s[a], inner = prod(s, a + 1, s.size());
  Shape os;
  for (size_t d = 0; d < s.size(); ++d) {
    if (d != a) os.push_back(s[d]);
    else if (keepdims) os.push_back(1);
  }
  if (len == 0 && outer * inner > 0)
    fail(node, Errc::kShapeMismatch, "reduces axis " + std::to_string(axis) + " of size 0 (input shape " +
                                         shape_str(s) + ")", "a non-empty axis");
  Tensor& y = ctx.output(0, DType::kI64, os);
  if (outer * inner == 0) return;
  int64_t* py = y.data<int64_t>();
  dispatch_numeric(x.dtype(), node, [&](auto z) {
    using T = decltype(z);
    const T* px = x.data<T>();
    if (is_max) {
      if (last) arg_rows<T, true, true>(px, outer, len, inner, py, ctx.pool());
      else arg_rows<T, true, false>(px, outer, len, inner, py, ctx.pool());
    } else {
      if (last) arg_rows<T, false, true>(px, outer, len, inner, py, ctx.pool());
      else arg_rows<T, false, false>(px, outer, len, inner, py, ctx.pool());
    }
  });
}

void arg_infer(InferContext& c) {
  const ir::Node& node = c.node();
  const ir::ValueInfo& in = c.input(0);
  if (!in.shape) {
    set_output(c, 0, DType::kI64, std::nullopt);
    return;
  }
  const int64_t rank = static_cast<int64_t>(in.shape->size());
  const int64_t axis = axis_in(node.attr_int("axis", 0), rank, node, "axis");
  reduce_infer_shape(c, std::vector<int64_t>{axis}, false, node.attr_int("keepdims", 1) != 0, DType::kI64);
}

// ---------------------------------------------------------------------------
// TopK

// a before b in descending order, NaN above everything (a strict weak order).
template <class T>
inline bool greater_nan(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a)) return !std::isnan(b);
    if (std::isnan(b)) return false;
  }
  return a > b;
}

template <class T>
void topk_typed(const T* x, int64_t outer, int64_t len, int64_t inner, int64_t k, bool largest, T* vals,
                int64_t* idxs, ThreadPool* pool) {
  const int64_t rows = outer * inner;
  const int64_t work = len * (1 + static_cast<int64_t>(std::log2(static_cast<double>(len) + 1)));
  par_for(pool, rows, work, [&](int64_t b, int64_t e) {
    std::vector<T> v(static_cast<size_t>(len));
    std::vector<int64_t> id(static_cast<size_t>(len));
    for (int64_t r = b; r < e; ++r) {
      const int64_t o = r / inner, i = r % inner;
      const T* src = x + o * len * inner + i;
      for (int64_t j = 0; j < len; ++j) v[static_cast<size_t>(j)] = src[j * inner];
      const T* vp = v.data();
      // Total order: by value (largest or smallest first), then lower index first.
      auto before = [vp, largest](int64_t p, int64_t q) {
        const T a = vp[p], c = vp[q];
        if (largest ? greater_nan(a, c) : greater_nan(c, a)) return true;
        if (largest ? greater_nan(c, a) : greater_nan(a, c)) return false;
        return p < q;
      };
      if (k > 1 && k <= 64 && k * 8 <= len) {
        // Small k: one pass keeping the best k so far, sorted; most values
        // lose against the current k-th and cost one comparison.
        int64_t cnt = 0;
        T worst{};
        for (int64_t j = 0; j < len; ++j) {
          if (cnt == k) {
            // Quick reject (false for NaN, which then takes the full test).
            if (largest ? vp[j] < worst : vp[j] > worst) continue;
            if (!before(j, id[static_cast<size_t>(k - 1)])) continue;
          }
          int64_t pos = cnt == k ? k - 1 : cnt++;
          while (pos > 0 && before(j, id[static_cast<size_t>(pos - 1)])) {
            id[static_cast<size_t>(pos)] = id[static_cast<size_t>(pos - 1)];
            --pos;
          }
          id[static_cast<size_t>(pos)] = j;
          if (cnt == k) worst = vp[id[static_cast<size_t>(k - 1)]];
        }
      } else {
        std::iota(id.begin(), id.end(), int64_t{0});
        if (k == 1) {
          int64_t best = 0;
          for (int64_t j = 1; j < len; ++j)
            if (before(j, best)) best = j;
          id[0] = best;
        } else if (k > 1) {
          if (k < len) std::nth_element(id.begin(), id.begin() + (k - 1), id.end(), before);
          std::sort(id.begin(), id.begin() + k, before);
        }
      }
      T* dv = vals + o * k * inner + i;
      int64_t* di = idxs + o * k * inner + i;
      for (int64_t j = 0; j < k; ++j) {
        dv[j * inner] = v[static_cast<size_t>(id[static_cast<size_t>(j)])];
        di[j * inner] = id[static_cast<size_t>(j)];
      }
    }
  });
}

int64_t topk_k(const OpContext& ctx) {
  const ir::Node& node = ctx.node();
  if (ctx.opset() < 10) {
    if (!node.has_attr("k")) fail(node, Errc::kNotFound, "has no attribute 'k'", "the number of elements to keep");
    return node.attr_int("k", 0);
  }
  const std::vector<int64_t> k = to_int64s(ctx.input(1), node, "input 1 (K)");
  QFORGE_CHECK(k.size() == 1, Errc::kShapeMismatch, node.describe(),
        "input 1 (K) has " + std::to_string(k.size()) + " values", "a single value");
  return k[0];
}

void topk_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  const int64_t axis = axis_in(node.attr_int("axis", -1), rank, node, "axis");
  const bool largest = ctx.opset() < 11 || node.attr_int("largest", 1) != 0;
  const int64_t k = topk_k(ctx);
  const Shape& s = x.shape();
  const size_t a = static_cast<size_t>(axis);
  const int64_t outer = prod(s, 0, a), len = s[a], inner = prod(s, a + 1, s.size());
  QFORGE_CHECK(k >= 0 && k <= len, Errc::kInvalidArgument, node.describe(),
        "asks for k = " + std::to_string(k) + " along axis " + std::to_string(axis) + " of size " + std::to_string(len),
        "0 <= k <= " + std::to_string(len));
  Shape os = s;
  os[a] = k;
  Tensor& vals = ctx.output(0, x.dtype(), os);
  Tensor& idxs = ctx.output(1, DType::kI64, os);
  if (outer * inner * k == 0) return;
  dispatch_numeric(x.dtype(), node, [&](auto z) {
    using T = decltype(z);
    topk_typed<T>(x.data<T>(), outer, len, inner, k, largest, vals.data<T>(), idxs.data<int64_t>(), ctx.pool());
  });
}

void topk_infer(InferContext& c) {
  const ir::Node& node = c.node();
  const ir::ValueInfo& in = c.input(0);
  if (!in.shape) {
    set_output(c, 0, in.dtype, std::nullopt);
    set_output(c, 1, DType::kI64, std::nullopt);
    return;
  }
  ir::SymShape s = *in.shape;
  const int64_t rank = static_cast<int64_t>(s.size());
  const size_t a = static_cast<size_t>(axis_in(node.attr_int("axis", -1), rank, node, "axis"));
  std::optional<int64_t> k;
  if (c.opset() < 10) {
    if (node.has_attr("k")) k = node.attr_int("k", 0);
  } else if (auto kv = constant_ints(c, 1); kv && kv->size() == 1) {
    k = (*kv)[0];
  }
  if (k && s[a].known())
    QFORGE_CHECK(*k >= 0 && *k <= s[a].size, Errc::kInvalidArgument, node.describe(),
          "asks for k = " + std::to_string(*k) + " along an axis of size " + std::to_string(s[a].size),
          "0 <= k <= " + std::to_string(s[a].size));
  s[a] = k ? ir::Dim(*k) : ir::Dim();
  set_output(c, 0, in.dtype, s);
  set_output(c, 1, DType::kI64, s);
}

// ---------------------------------------------------------------------------
// CumSum

template <class T>
void cumsum_typed(const T* x, T* y, int64_t outer, int64_t len, int64_t inner, bool exclusive, bool reverse,
                  ThreadPool* pool) {
  if (inner == 1) {
    par_for(pool, outer, len, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* xr = x + o * len;
        T* yr = y + o * len;
        T acc{0};
        for (int64_t s = 0; s < len; ++s) {
          const int64_t i = reverse ? len - 1 - s : s;
          if (exclusive) {
            yr[i] = acc;
            acc = wadd(acc, xr[i]);
          } else {
            acc = wadd(acc, xr[i]);
            yr[i] = acc;
          }
        }
      }
    });
    return;
  }
  const int64_t chunk = std::min<int64_t>(inner, 2048);
  const int64_t chunks = (inner + chunk - 1) / chunk;
  par_for(pool, outer * chunks, len * chunk, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / chunks, j0 = (t % chunks) * chunk, n = std::min(inner, j0 + chunk) - j0;
      for (int64_t s = 0; s < len; ++s) {
        const int64_t i = reverse ? len - 1 - s : s;
        const int64_t prev = reverse ? i + 1 : i - 1;
        T* yr = y + (o * len + i) * inner + j0;
        if (s == 0) {
          const T* xr = x + (o * len + i) * inner + j0;
          for (int64_t j = 0; j < n; ++j) yr[j] = exclusive ? T{0} : xr[j];
          continue;
        }
        const T* yp = y + (o * len + prev) * inner + j0;
        const T* xr = x + (o * len + (exclusive ? prev : i)) * inner + j0;
        for (int64_t j = 0; j < n; ++j) yr[j] = wadd(yp[j], xr[j]);
      }
    }
  });
}

void cumsum_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const std::vector<int64_t> av = to_int64s(ctx.input(1), node, "input 1 (axis)");
  QFORGE_CHECK(av.size() == 1, Errc::kShapeMismatch, node.describe(),
        "input 1 (axis) has " + std::to_string(av.size()) + " values", "a single axis");
  const int64_t axis = axis_in(av[0], x.rank(), node, "axis");
  const bool exclusive = node.attr_int("exclusive", 0) != 0;
  const bool reverse = node.attr_int("reverse", 0) != 0;
  const Shape& s = x.shape();
  const size_t a = static_cast<size_t>(axis);
  const int64_t outer = prod(s, 0, a), len = s[a], inner = prod(s, a + 1, s.size());
  Tensor& y = ctx.output(0, x.dtype(), s);
  if (x.numel() == 0) return;
  dispatch_numeric(x.dtype(), node, [&](auto z) {
    using T = decltype(z);
    cumsum_typed<T>(x.data<T>(), y.data<T>(), outer, len, inner, exclusive, reverse, ctx.pool());
  });
}

// ---------------------------------------------------------------------------
// Resize / Upsample

enum class RMode { kNearest, kLinear, kCubic };
enum class Coord { kHalfPixel, kPytorchHalfPixel, kAlignCorners, kAsymmetric, kTfHalfPixelForNn, kTfCropAndResize,
                   kHalfPixelSymmetric };
enum class NearestMode { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kSimple };
enum class AspectPolicy { kStretch, kNotLarger, kNotSmaller };

struct ResizeAttrs {
  RMode mode = RMode::kNearest;
  Coord coord = Coord::kHalfPixel;
  NearestMode nearest = NearestMode::kRoundPreferFloor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0;
  std::vector<int64_t> axes;  // opset 18; empty: all
  AspectPolicy policy = AspectPolicy::kStretch;
};

// Reads the attributes. Returns "" if qforge can run them, else why not,
// with *code the Errc to raise (unsupported or invalid).
std::string read_resize_attrs(const ir::Node& n, int64_t opset, bool upsample, ResizeAttrs& a, Errc* code) {
  *code = Errc::kInvalidArgument;
  const std::string mode = n.attr_string("mode", "nearest");
  const bool old = upsample || opset < 11;
  if (mode == "nearest") a.mode = RMode::kNearest;
  else if (mode == "linear" || (old && mode == "bilinear")) a.mode = RMode::kLinear;
  else if (mode == "cubic" && !old) a.mode = RMode::kCubic;
  else return "has mode '" + mode + "'; expected " + (old ? "nearest or linear" : "nearest, linear or cubic");
  if (old) {
    // Upsample and Resize-10: x_original = x_resized / scale; nearest takes
    // the floor when upsampling and the ceiling when downsampling.
    a.coord = Coord::kAsymmetric;
    a.nearest = NearestMode::kSimple;
    return {};
  }
  const std::string ct = n.attr_string("coordinate_transformation_mode", "half_pixel");
  static const std::map<std::string, Coord> coords = {
      {"half_pixel", Coord::kHalfPixel},       {"pytorch_half_pixel", Coord::kPytorchHalfPixel},
      {"align_corners", Coord::kAlignCorners}, {"asymmetric", Coord::kAsymmetric},
      {"tf_half_pixel_for_nn", Coord::kTfHalfPixelForNn}, {"tf_crop_and_resize", Coord::kTfCropAndResize},
      {"half_pixel_symmetric", Coord::kHalfPixelSymmetric}};
  auto ci = coords.find(ct);
  if (ci == coords.end())
    return "has coordinate_transformation_mode '" + ct +
           "'; expected half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, "
           "tf_half_pixel_for_nn or tf_crop_and_resize";
  a.coord = ci->second;
  const std::string nm = n.attr_string("nearest_mode", "round_prefer_floor");
  if (nm == "round_prefer_floor") a.nearest = NearestMode::kRoundPreferFloor;
  else if (nm == "round_prefer_ceil") a.nearest = NearestMode::kRoundPreferCeil;
  else if (nm == "floor") a.nearest = NearestMode::kFloor;
  else if (nm == "ceil") a.nearest = NearestMode::kCeil;
  else return "has nearest_mode '" + nm + "'; expected round_prefer_floor, round_prefer_ceil, floor or ceil";
  a.cubic_a = static_cast<double>(n.attr_float("cubic_coeff_a", -0.75f));
  a.exclude_outside = n.attr_int("exclude_outside", 0) != 0;
  a.extrapolation = static_cast<double>(n.attr_float("extrapolation_value", 0.0f));
  if (opset >= 18) {
    a.axes = n.attr_ints("axes");
    const std::string pol = n.attr_string("keep_aspect_ratio_policy", "stretch");
    if (pol == "stretch") a.policy = AspectPolicy::kStretch;
    else if (pol == "not_larger") a.policy = AspectPolicy::kNotLarger;
    else if (pol == "not_smaller") a.policy = AspectPolicy::kNotSmaller;
    else return "has keep_aspect_ratio_policy '" + pol + "'; expected stretch, not_larger or not_smaller";
    if (n.attr_int("antialias", 0) != 0) {
      *code = Errc::kUnsupported;
      return "has antialias = 1, which qforge does not implement; expected antialias = 0";
    }
  }
  return {};
}

ResizeAttrs resize_attrs_or_throw(const ir::Node& n, int64_t opset, bool upsample) {
  ResizeAttrs a;
  Errc code;
  const std::string why = read_resize_attrs(n, opset, upsample, a, &code);
  if (!why.empty()) throw Error(code, n.describe(), why);
  return a;
}

// Per-axis geometry.
struct ResizeAxis {
  int64_t in = 0, out = 0;
  double scale = 1;          // length_resized / length_original as used by the coordinate transform
  double out_f = 0;          // scale * in: the resized length before rounding
  double roi_start = 0, roi_end = 1;
  bool resized = false;      // listed in axes
};

// Which inputs hold what: -1 if none.
struct ResizeInputs {
  int roi = -1, scales = -1, sizes = -1;
};
ResizeInputs resize_inputs(int64_t opset, bool upsample) {
  if (upsample) return {-1, opset >= 9 ? 1 : -1, -1};
  if (opset < 11) return {-1, 1, -1};
  return {1, 2, 3};
}

std::vector<int64_t> resize_axes(const ir::Node& n, const ResizeAttrs& a, int64_t rank) {
  std::vector<int64_t> axes;
  if (a.axes.empty()) {
    axes.resize(static_cast<size_t>(rank));
    std::iota(axes.begin(), axes.end(), int64_t{0});
    return axes;
  }
  std::vector<char> seen(static_cast<size_t>(rank), 0);
  for (int64_t ax : a.axes) {
    const int64_t k = axis_in(ax, rank, n, "axes value");
    if (seen[static_cast<size_t>(k)]) fail(n, Errc::kInvalidArgument, "lists axis " + std::to_string(ax) + " twice", "distinct axes");
    seen[static_cast<size_t>(k)] = 1;
    axes.push_back(k);
  }
  return axes;
}

std::vector<ResizeAxis> resize_geometry(const OpContext& ctx, const ResizeAttrs& a, bool upsample) {
  const ir::Node& n = ctx.node();
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  const ResizeInputs ri = resize_inputs(ctx.opset(), upsample);
  const std::vector<int64_t> axes = resize_axes(n, a, rank);
  std::vector<ResizeAxis> g(static_cast<size_t>(rank));
  for (int64_t d = 0; d < rank; ++d) {
    ResizeAxis& ax = g[static_cast<size_t>(d)];
    ax.in = ax.out = x.shape()[static_cast<size_t>(d)];
    ax.out_f = static_cast<double>(ax.in);
  }
  std::vector<double> scales;
  std::vector<int64_t> sizes;
  if (ri.scales < 0) {
    if (!n.has_attr("scales")) fail(n, Errc::kNotFound, "has no attribute 'scales'", "the scale of each axis");
    for (float f : n.attr_floats("scales")) scales.push_back(static_cast<double>(f));
  } else if (ctx.has_input(ri.scales)) {
    scales = float_values(ctx.input(ri.scales), n, "input 'scales'");
  }
  if (ri.sizes >= 0 && ctx.has_input(ri.sizes)) sizes = to_int64s(ctx.input(ri.sizes), n, "input 'sizes'");
  if (!scales.empty() && !sizes.empty())
    fail(n, Errc::kInvalidArgument, "has both scales and sizes", "only one of them");
  if (scales.empty() && sizes.empty())
    fail(n, Errc::kNotFound, "has neither scales nor sizes", "one of them, non-empty");
  const size_t na = axes.size();
  const std::string want = std::to_string(na) + " values (one per " + (a.axes.empty() ? "input axis" : "listed axis") + ")";
  if (!scales.empty()) {
    QFORGE_CHECK(scales.size() == na, Errc::kShapeMismatch, n.describe(),
          "has " + std::to_string(scales.size()) + " scales for an input of shape " + shape_str(x.shape()), want);
    for (size_t i = 0; i < na; ++i) {
      ResizeAxis& ax = g[static_cast<size_t>(axes[i])];
      const double s = scales[i];
      QFORGE_CHECK(std::isfinite(s) && s > 0, Errc::kInvalidArgument, n.describe(),
            "has scale " + std::to_string(s) + " for axis " + std::to_string(axes[i]), "scales > 0");
      const double of = static_cast<double>(ax.in) * s;
      QFORGE_CHECK(of < 9.0e15, Errc::kInvalidArgument, n.describe(),
            "has scale " + std::to_string(s) + " for axis " + std::to_string(axes[i]) + ", an output too large to hold",
            "a reasonable scale");
      ax.scale = s;
      ax.out_f = of;
      ax.out = static_cast<int64_t>(std::floor(of));
      ax.resized = true;
    }
  } else {
    QFORGE_CHECK(sizes.size() == na, Errc::kShapeMismatch, n.describe(),
          "has " + std::to_string(sizes.size()) + " sizes for an input of shape " + shape_str(x.shape()), want);
    for (size_t i = 0; i < na; ++i) {
      QFORGE_CHECK(sizes[i] >= 0, Errc::kInvalidArgument, n.describe(),
            "has size " + std::to_string(sizes[i]) + " for axis " + std::to_string(axes[i]), "sizes >= 0");
      const ResizeAxis& ax = g[static_cast<size_t>(axes[i])];
      QFORGE_CHECK(ax.in > 0 || sizes[i] == 0, Errc::kShapeMismatch, n.describe(),
            "resizes axis " + std::to_string(axes[i]) + " of size 0 to " + std::to_string(sizes[i]),
            "size 0 for an empty axis");
    }
    if (a.policy != AspectPolicy::kStretch) {
      // One scale for all listed axes: the smallest (not_larger) or largest
      // (not_smaller) of sizes / input sizes; sizes = round(scale * input).
      std::optional<double> common;
      for (size_t i = 0; i < na; ++i) {
        const ResizeAxis& ax = g[static_cast<size_t>(axes[i])];
        if (ax.in == 0) continue;
        const double r = static_cast<double>(sizes[i]) / static_cast<double>(ax.in);
        if (!common) common = r;
        else common = a.policy == AspectPolicy::kNotLarger ? std::min(*common, r) : std::max(*common, r);
      }
      for (size_t i = 0; i < na; ++i) {
        ResizeAxis& ax = g[static_cast<size_t>(axes[i])];
        ax.resized = true;
        if (ax.in == 0 || !common) {
          ax.out = 0;
          continue;
        }
        ax.scale = *common;
        ax.out_f = *common * static_cast<double>(ax.in);
        ax.out = static_cast<int64_t>(std::nearbyint(ax.out_f));
      }
    } else {
      for (size_t i = 0; i < na; ++i) {
        ResizeAxis& ax = g[static_cast<size_t>(axes[i])];
        ax.resized = true;
        ax.out = sizes[i];
        ax.out_f = static_cast<double>(sizes[i]);
        ax.scale = ax.in > 0 ? static_cast<double>(sizes[i]) / static_cast<double>(ax.in) : 1.0;
      }
    }
  }
  if (a.coord == Coord::kTfCropAndResize && ri.roi >= 0 && ctx.has_input(ri.roi)) {
    const std::vector<double> roi = float_values(ctx.input(ri.roi), n, "input 'roi'");
    if (!roi.empty()) {
      QFORGE_CHECK(roi.size() == 2 * na, Errc::kShapeMismatch, n.describe(),
            "has " + std::to_string(roi.size()) + " roi values for " + std::to_string(na) + " axes",
            std::to_string(2 * na) + " values (starts, then ends)");
      for (size_t i = 0; i < na; ++i) {
        g[static_cast<size_t>(axes[i])].roi_start = roi[i];
        g[static_cast<size_t>(axes[i])].roi_end = roi[na + i];
      }
    }
  }
  return g;
}

// x_original for output coordinate x (ONNX Resize's coordinate_transformation_mode).
double original_coord(const ResizeAxis& ax, Coord c, int64_t xi) {
  const double x = static_cast<double>(xi);
  const double in = static_cast<double>(ax.in);
  const double s = ax.scale;
  switch (c) {
    case Coord::kHalfPixel: return (x + 0.5) / s - 0.5;
    case Coord::kPytorchHalfPixel: return ax.out > 1 ? (x + 0.5) / s - 0.5 : 0.0;
    case Coord::kAlignCorners: return ax.out_f == 1.0 || ax.out <= 1 ? 0.0 : x * (in - 1) / (ax.out_f - 1);
    case Coord::kAsymmetric: return x / s;
    case Coord::kTfHalfPixelForNn: return (x + 0.5) / s;
    case Coord::kTfCropAndResize:
      if (ax.out > 1)
        return ax.roi_start * (in - 1) + x * (ax.roi_end - ax.roi_start) * (in - 1) / (ax.out_f - 1);
      return 0.5 * (ax.roi_start + ax.roi_end) * (in - 1);
    case Coord::kHalfPixelSymmetric: {
      const double adjustment = static_cast<double>(ax.out) / ax.out_f;
      const double center = in / 2;
      const double offset = center * (1 - adjustment);
      return offset + (x + 0.5) / s - 0.5;
    }
  }
  return 0;
}

// For each output coordinate of one axis: n taps (input index, weight), or
// "outside" (tf_crop_and_resize extrapolation).
struct AxisTaps {
  int n = 1;
  std::vector<int64_t> idx;
  std::vector<double> w;
  std::vector<char> outside;
  bool any_outside = false;
  bool identity = false;
};

double cubic_weight(double d, double A) {
  d = std::fabs(d);
  if (d <= 1) return ((A + 2) * d - (A + 3)) * d * d + 1;
  if (d < 2) return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A;
  return 0;
}

AxisTaps make_taps(const ResizeAttrs& a, const ResizeAxis& ax, const ir::Node& node) {
  AxisTaps t;
  t.n = a.mode == RMode::kNearest ? 1 : a.mode == RMode::kLinear ? 2 : 4;
  const size_t n = static_cast<size_t>(t.n);
  t.idx.assign(static_cast<size_t>(ax.out) * n, 0);
  t.w.assign(static_cast<size_t>(ax.out) * n, 0.0);
  t.outside.assign(static_cast<size_t>(ax.out), 0);
  const int64_t last = ax.in - 1;
  auto clampi = [last](int64_t i) { return std::clamp<int64_t>(i, 0, last); };
  bool identity = ax.in == ax.out;
  for (int64_t o = 0; o < ax.out; ++o) {
    double x = original_coord(ax, a.coord, o);
    const size_t base = static_cast<size_t>(o) * n;
    if (a.coord == Coord::kTfCropAndResize && (!std::isfinite(x) || x < 0 || x > static_cast<double>(last))) {
      t.outside[static_cast<size_t>(o)] = 1;
      t.any_outside = true;
      identity = false;
      continue;
    }
    if (!std::isfinite(x))
      fail(node, Errc::kInvalidArgument, "maps output coordinate " + std::to_string(o) + " to a non-finite input coordinate",
           "finite scales and roi");
    x = std::clamp(x, -4.0, static_cast<double>(ax.in) + 4.0);
    const double f = std::floor(x);
    const double r = x - f;
    const int64_t i0 = static_cast<int64_t>(f);
    if (a.mode == RMode::kNearest) {
      int64_t i = i0;
      switch (a.nearest) {
        case NearestMode::kRoundPreferFloor: if (r > 0.5) ++i; break;
        case NearestMode::kRoundPreferCeil: if (r >= 0.5) ++i; break;
        case NearestMode::kFloor: break;
        case NearestMode::kCeil: if (r > 0) ++i; break;
        case NearestMode::kSimple: if (ax.scale < 1 && r > 0) ++i; break;
      }
      t.idx[base] = clampi(i);
      t.w[base] = 1;
      if (t.idx[base] != o) identity = false;
    } else if (a.mode == RMode::kLinear) {
      t.idx[base] = clampi(i0);
      t.idx[base + 1] = clampi(i0 + 1);
      t.w[base] = 1 - r;
      t.w[base + 1] = r;
      if (!(r == 0 && i0 == o)) identity = false;
    } else {
      double sum = 0;
      for (size_t k = 0; k < 4; ++k) {
        const int64_t i = i0 - 1 + static_cast<int64_t>(k);
        double wk = cubic_weight(r - static_cast<double>(k) + 1, a.cubic_a);
        if (a.exclude_outside && (i < 0 || i > last)) wk = 0;
        t.idx[base + k] = clampi(i);
        t.w[base + k] = wk;
        sum += wk;
      }
      if (a.exclude_outside && sum != 0)
        for (size_t k = 0; k < 4; ++k) t.w[base + k] /= sum;
      if (!(r == 0 && i0 == o)) identity = false;
    }
  }
  t.identity = identity;
  return t;
}

// Nearest: one gather; U is an unsigned type of the element's width.
template <class U>
void resize_nearest(const U* x, U* y, const Shape& in, const Shape& out, const std::vector<AxisTaps>& taps, U fill,
                    ThreadPool* pool) {
  const size_t r = in.size();
  if (r == 0) {
    y[0] = x[0];
    return;
  }
  const Shape ist = strides_of(in);
  const int64_t L = out[r - 1];
  const int64_t rows = prod(out, 0, r - 1);
  const AxisTaps& lt = taps[r - 1];
  par_for(pool, rows, L, [&](int64_t b, int64_t e) {
    std::vector<int64_t> oi(r - 1, 0);
    int64_t rem = b;
    for (size_t k = r - 1; k-- > 0;) {
      oi[k] = rem % out[k];
      rem /= out[k];
    }
    int64_t prev_src = -1;
    const U* prev_row = nullptr;
    for (int64_t row = b; row < e; ++row) {
      int64_t src = 0;
      bool outside = false;
      for (size_t k = 0; k + 1 < r; ++k) {
        const size_t o = static_cast<size_t>(oi[k]);
        if (taps[k].outside[o]) outside = true;
        src += taps[k].idx[o] * ist[k];
      }
      U* yr = y + row * L;
      if (outside) {
        std::fill(yr, yr + L, fill);
        prev_row = nullptr;
      } else if (prev_row && src == prev_src) {
        std::memcpy(yr, prev_row, static_cast<size_t>(L) * sizeof(U));
      } else {
        const U* xr = x + src;
        if (lt.identity) {
          std::memcpy(yr, xr, static_cast<size_t>(L) * sizeof(U));
        } else if (!lt.any_outside) {
          const int64_t* id = lt.idx.data();
          for (int64_t j = 0; j < L; ++j) yr[j] = xr[id[j]];
        } else {
          for (int64_t j = 0; j < L; ++j)
            yr[j] = lt.outside[static_cast<size_t>(j)] ? fill : xr[lt.idx[static_cast<size_t>(j)]];
        }
        prev_src = src;
        prev_row = yr;
      }
      for (size_t k = r - 1; k-- > 0;) {
        if (++oi[k] < out[k]) break;
        oi[k] = 0;
      }
    }
  });
}

// One separable pass along an axis: [outer, in_len, inner] -> [outer, out_len, inner].
template <class T>
void resize_pass(const T* x, T* y, int64_t outer, int64_t in_len, int64_t out_len, int64_t inner, const AxisTaps& t,
                 T fill, ThreadPool* pool) {
  const int n = t.n;
  std::vector<T> w(t.w.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<T>(t.w[i]);
  const int64_t* idx = t.idx.data();
  const T* wp = w.data();
  const char* outside = t.outside.data();
  if (inner == 1) {
    par_for(pool, outer, out_len * n, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* xr = x + o * in_len;
        T* yr = y + o * out_len;
        if (n == 2 && !t.any_outside) {
          for (int64_t j = 0; j < out_len; ++j)
            yr[j] = wp[2 * j] * xr[idx[2 * j]] + wp[2 * j + 1] * xr[idx[2 * j + 1]];
          continue;
        }
        for (int64_t j = 0; j < out_len; ++j) {
          if (outside[j]) {
            yr[j] = fill;
            continue;
          }
          T v{0};
          for (int k = 0; k < n; ++k) v += wp[j * n + k] * xr[idx[j * n + k]];
          yr[j] = v;
        }
      }
    });
    return;
  }
  par_for(pool, outer * out_len, inner * n, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      const int64_t o = task / out_len, j = task % out_len;
      T* yr = y + task * inner;
      if (outside[j]) {
        std::fill(yr, yr + inner, fill);
        continue;
      }
      const T* x0 = x + (o * in_len + idx[j * n]) * inner;
      const T w0 = wp[j * n];
      if (n == 2) {
        const T* x1 = x + (o * in_len + idx[j * n + 1]) * inner;
        const T w1 = wp[j * n + 1];
        if (w1 == T{0}) {
          for (int64_t k = 0; k < inner; ++k) yr[k] = w0 * x0[k];
        } else {
          for (int64_t k = 0; k < inner; ++k) yr[k] = w0 * x0[k] + w1 * x1[k];
        }
        continue;
      }
      for (int64_t k = 0; k < inner; ++k) yr[k] = w0 * x0[k];
      for (int tp = 1; tp < n; ++tp) {
        const T* xt = x + (o * in_len + idx[j * n + tp]) * inner;
        const T wt = wp[j * n + tp];
        for (int64_t k = 0; k < inner; ++k) yr[k] += wt * xt[k];
      }
    }
  });
}

template <class T>
void resize_separable(const T* x, T* y, const Shape& in, const std::vector<AxisTaps>& taps,
                      const std::vector<ResizeAxis>& g, T fill, ThreadPool* pool) {
  std::vector<size_t> order;
  for (size_t d = 0; d < in.size(); ++d)
    if (!taps[d].identity) order.push_back(d);
  if (order.empty()) {
    std::memcpy(y, x, static_cast<size_t>(shape_numel(in)) * sizeof(T));
    return;
  }
  // The cheapest order of passes: each costs its output size times its taps,
  // more on the innermost axis (a gather rather than whole rows at a time).
  auto cost = [&](const std::vector<size_t>& ord) {
    Shape cur = in;
    double c = 0;
    for (size_t d : ord) {
      cur[d] = g[d].out;
      c += static_cast<double>(shape_numel(cur)) * taps[d].n * (d + 1 == in.size() ? 3.0 : 1.0);
    }
    return c;
  };
  std::sort(order.begin(), order.end());
  if (order.size() <= 5) {
    std::vector<size_t> best = order;
    double best_cost = cost(order);
    while (std::next_permutation(order.begin(), order.end())) {
      const double c = cost(order);
      if (c < best_cost) {
        best_cost = c;
        best = order;
      }
    }
    order = best;
  }
  Shape cur = in;
  std::vector<T> bufs[2];
  const T* src = x;
  for (size_t step = 0; step < order.size(); ++step) {
    const size_t d = order[step];
    Shape next = cur;
    next[d] = g[d].out;
    T* dst;
    if (step + 1 == order.size()) {
      dst = y;
    } else {
      std::vector<T>& b = bufs[step % 2];
      b.resize(static_cast<size_t>(shape_numel(next)));
      dst = b.data();
    }
    resize_pass<T>(src, dst, prod(cur, 0, d), cur[d], next[d], prod(cur, d + 1, cur.size()), taps[d], fill, pool);
    src = dst;
    cur = next;
  }
}

// The bits of the extrapolation value in dtype dt, in an unsigned type of its width.
template <class U>
U fill_bits(DType dt, double v, const ir::Node& node) {
  U u{0};
  auto put = [&](auto t) {
    static_assert(sizeof(t) == sizeof(U));
    std::memcpy(&u, &t, sizeof(U));
  };
  if constexpr (sizeof(U) == 1) {
    if (dt == DType::kI8) put(from_double<int8_t>(v));
    else if (dt == DType::kU8) put(from_double<uint8_t>(v));
    else put(static_cast<uint8_t>(v != 0));
  } else if constexpr (sizeof(U) == 2) {
    if (dt == DType::kI16) put(from_double<int16_t>(v));
    else if (dt == DType::kU16) put(from_double<uint16_t>(v));
    else if (v != 0)
      throw Error(Errc::kUnsupported, node.describe(),
                  "has extrapolation_value " + std::to_string(v) + " for a " + std::string(dtype_name(dt)) + " input",
                  "extrapolation_value 0 for 16-bit floats");
  } else if constexpr (sizeof(U) == 4) {
    if (dt == DType::kF32) put(static_cast<float>(v));
    else put(from_double<int32_t>(v));
  } else {
    if (dt == DType::kF64) put(v);
    else put(from_double<int64_t>(v));
  }
  return u;
}

void resize_common(OpContext& ctx, bool upsample) {
  const ir::Node& node = ctx.node();
  const ResizeAttrs a = resize_attrs_or_throw(node, ctx.opset(), upsample);
  const Tensor& x = ctx.input(0);
  if (dtype_info(x.dtype()).is_packed)
    bad_type(node, "input 0", x.dtype(), "a type of at least 8 bits");
  const std::vector<ResizeAxis> g = resize_geometry(ctx, a, upsample);
  Shape out(g.size());
  for (size_t d = 0; d < g.size(); ++d) out[d] = g[d].out;
  if (a.mode != RMode::kNearest && x.dtype() != DType::kF32 && x.dtype() != DType::kF64)
    throw Error(Errc::kUnsupported, node.describe(),
                "resizes a " + std::string(dtype_name(x.dtype())) + " input with mode " +
                    (a.mode == RMode::kLinear ? "linear" : "cubic"),
                "f32 or f64 input (or mode nearest)");
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (shape_numel(out) == 0) return;
  std::vector<AxisTaps> taps;
  taps.reserve(g.size());
  for (const ResizeAxis& ax : g) taps.push_back(make_taps(a, ax, node));
  if (a.mode == RMode::kNearest) {
    auto go = [&](auto z) {
      using U = decltype(z);
      resize_nearest<U>(static_cast<const U*>(x.raw()), static_cast<U*>(y.raw()), x.shape(), out, taps,
                        fill_bits<U>(x.dtype(), a.extrapolation, node), ctx.pool());
    };
    switch (dtype_bits(x.dtype())) {
      case 8: go(uint8_t{}); break;
      case 16: go(uint16_t{}); break;
      case 32: go(uint32_t{}); break;
      case 64: go(uint64_t{}); break;
      default: bad_type(node, "input 0", x.dtype(), "a type of 8, 16, 32 or 64 bits");
    }
    return;
  }
  if (x.dtype() == DType::kF32)
    resize_separable<float>(x.data<float>(), y.data<float>(), x.shape(), taps, g, static_cast<float>(a.extrapolation),
                            ctx.pool());
  else
    resize_separable<double>(x.data<double>(), y.data<double>(), x.shape(), taps, g, a.extrapolation, ctx.pool());
}

std::string resize_check(const InferContext& c, bool upsample) {
  ResizeAttrs a;
  Errc code;
  std::string why = read_resize_attrs(c.node(), c.opset(), upsample, a, &code);
  if (!why.empty()) return why;
  if (a.mode != RMode::kNearest && c.has_input(0)) {
    const auto& dt = c.input(0).dtype;
    if (dt && *dt != DType::kF32 && *dt != DType::kF64)
      return "resizes a " + std::string(dtype_name(*dt)) + " input with mode linear/cubic; qforge needs f32 or f64";
  }
  return {};
}

void resize_infer(InferContext& c, bool upsample) {
  const ir::Node& node = c.node();
  const ir::ValueInfo& in = c.input(0);
  if (!in.shape) {
    set_output(c, 0, in.dtype, std::nullopt);
    return;
  }
  ResizeAttrs a;
  Errc code;
  if (!read_resize_attrs(node, c.opset(), upsample, a, &code).empty()) {
    set_output(c, 0, in.dtype, std::nullopt);
    return;
  }
  const ir::SymShape& s = *in.shape;
  const int64_t rank = static_cast<int64_t>(s.size());
  const ResizeInputs ri = resize_inputs(c.opset(), upsample);
  const std::vector<int64_t> axes = resize_axes(node, a, rank);
  std::optional<std::vector<double>> scales;
  std::optional<std::vector<int64_t>> sizes;
  if (ri.scales < 0) {
    if (node.has_attr("scales")) {
      scales.emplace();
      for (float f : node.attr_floats("scales")) scales->push_back(static_cast<double>(f));
    }
  } else if (const Tensor* t = c.constant(ri.scales); t && t->numel() > 0 &&
                                                      (t->dtype() == DType::kF32 || t->dtype() == DType::kF64)) {
    scales = float_values(*t, node, "input 'scales'");
  }
  if (ri.sizes >= 0 && c.has_input(ri.sizes)) {
    if (auto v = constant_ints(c, ri.sizes); v && !v->empty()) sizes = v;
  }
  ir::SymShape o = s;
  for (int64_t ax : axes) o[static_cast<size_t>(ax)] = ir::Dim();  // unknown unless worked out below
  if (scales && scales->size() == axes.size()) {
    for (size_t i = 0; i < axes.size(); ++i) {
      const size_t d = static_cast<size_t>(axes[i]);
      const double sc = (*scales)[i];
      if (sc == 1.0) o[d] = s[d];
      else if (s[d].known() && std::isfinite(sc) && sc > 0)
        o[d] = ir::Dim(static_cast<int64_t>(std::floor(static_cast<double>(s[d].size) * sc)));
    }
  } else if (sizes && sizes->size() == axes.size()) {
    if (a.policy == AspectPolicy::kStretch) {
      for (size_t i = 0; i < axes.size(); ++i) o[static_cast<size_t>(axes[i])] = ir::Dim((*sizes)[i]);
    } else {
      bool known = true;
      std::optional<double> common;
      for (size_t i = 0; i < axes.size(); ++i) {
        const ir::Dim& d = s[static_cast<size_t>(axes[i])];
        if (!d.known() || d.size == 0) {
          known = false;
          break;
        }
        const double r = static_cast<double>((*sizes)[i]) / static_cast<double>(d.size);
        common = !common ? r : a.policy == AspectPolicy::kNotLarger ? std::min(*common, r) : std::max(*common, r);
      }
      if (known && common)
        for (int64_t ax : axes)
          o[static_cast<size_t>(ax)] =
              ir::Dim(static_cast<int64_t>(std::nearbyint(*common * static_cast<double>(s[static_cast<size_t>(ax)].size))));
    }
  }
  set_output(c, 0, in.dtype, o);
}

// ---------------------------------------------------------------------------
// Einsum

constexpr int kEllipsisLabel = 1000;  // ellipsis dim j is label 1000 + j

struct EinTerm {
  std::vector<int> letters;
  int ell = -1;  // position among the letters where '...' stands; -1 if none
};
struct EinEquation {
  std::vector<EinTerm> inputs;
  EinTerm output;
  bool explicit_output = false;
};

EinTerm parse_term(const ir::Node& n, const std::string& s, const std::string& what) {
  EinTerm t;
  for (size_t i = 0; i < s.size();) {
    const char ch = s[i];
    if (ch == '.') {
      if (s.compare(i, 3, "...") != 0 || t.ell >= 0)
        fail(n, Errc::kInvalidArgument, "has equation term '" + s + "' (" + what + ") with a stray '.'",
             "letters and at most one '...'");
      t.ell = static_cast<int>(t.letters.size());
      i += 3;
    } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
      t.letters.push_back(static_cast<int>(ch));
      ++i;
    } else {
      fail(n, Errc::kInvalidArgument,
           "has equation term '" + s + "' (" + what + ") with character '" + std::string(1, ch) + "'",
           "letters a-z, A-Z and at most one '...'");
    }
  }
  return t;
}

EinEquation parse_einsum(const ir::Node& n, int num_inputs) {
  if (!n.has_attr("equation")) fail(n, Errc::kNotFound, "has no attribute 'equation'", "an einsum equation");
  std::string eq;
  for (char ch : n.attr_string("equation", "")) {
    if (ch != ' ' && ch != '\t' && ch != '\n') eq += ch;
  }
  EinEquation e;
  const size_t arrow = eq.find("->");
  std::string lhs = eq;
  if (arrow != std::string::npos) {
    lhs = eq.substr(0, arrow);
    const std::string rhs = eq.substr(arrow + 2);
    if (rhs.find("->") != std::string::npos)
      fail(n, Errc::kInvalidArgument, "has equation '" + eq + "' with more than one '->'", "at most one '->'");
    e.explicit_output = true;
    e.output = parse_term(n, rhs, "output");
  }
  size_t start = 0;
  for (;;) {
    const size_t comma = lhs.find(',', start);
    const std::string part = lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    e.inputs.push_back(parse_term(n, part, "input " + std::to_string(e.inputs.size())));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (static_cast<int>(e.inputs.size()) != num_inputs)
    fail(n, Errc::kInvalidArgument,
         "has equation '" + eq + "' with " + std::to_string(e.inputs.size()) + " input terms for " +
             std::to_string(num_inputs) + " inputs",
         "one term per input");
  if (e.explicit_output) {
    std::set<int> in_letters, seen;
    for (const EinTerm& t : e.inputs) in_letters.insert(t.letters.begin(), t.letters.end());
    for (int l : e.output.letters) {
      if (!seen.insert(l).second)
        fail(n, Errc::kInvalidArgument, "has equation '" + eq + "' whose output repeats '" + std::string(1, static_cast<char>(l)) + "'",
             "each output letter once");
      if (!in_letters.count(l))
        fail(n, Errc::kInvalidArgument, "has equation '" + eq + "' whose output letter '" + std::string(1, static_cast<char>(l)) +
                                            "' is in no input",
             "output letters taken from the inputs");
    }
  }
  return e;
}

// Labels per input dimension (ellipsis dims numbered right-aligned), and the
// output's labels, for inputs of the given ranks.
struct EinBinding {
  std::vector<std::vector<int>> inputs;
  std::vector<int> output;
};

EinBinding bind_einsum(const ir::Node& n, const EinEquation& e, const std::vector<int64_t>& ranks) {
  EinBinding b;
  int64_t E = 0;
  for (size_t i = 0; i < e.inputs.size(); ++i) {
    const EinTerm& t = e.inputs[i];
    const int64_t nl = static_cast<int64_t>(t.letters.size());
    if (t.ell < 0 ? ranks[i] != nl : ranks[i] < nl)
      fail(n, Errc::kShapeMismatch,
           "has input " + std::to_string(i) + " of rank " + std::to_string(ranks[i]) + " for an equation term with " +
               std::to_string(nl) + " letters" + (t.ell >= 0 ? " and '...'" : ""),
           t.ell < 0 ? "rank " + std::to_string(nl) : "rank >= " + std::to_string(nl));
    if (t.ell >= 0) E = std::max(E, ranks[i] - nl);
  }
  auto expand = [&](const EinTerm& t, int64_t e_rank) {
    std::vector<int> l;
    for (int k = 0; k < static_cast<int>(t.letters.size()); ++k) {
      if (k == t.ell)
        for (int64_t j = 0; j < e_rank; ++j) l.push_back(kEllipsisLabel + static_cast<int>(E - e_rank + j));
      l.push_back(t.letters[static_cast<size_t>(k)]);
    }
    if (t.ell == static_cast<int>(t.letters.size()))
      for (int64_t j = 0; j < e_rank; ++j) l.push_back(kEllipsisLabel + static_cast<int>(E - e_rank + j));
    return l;
  };
  for (size_t i = 0; i < e.inputs.size(); ++i) {
    const EinTerm& t = e.inputs[i];
    b.inputs.push_back(expand(t, t.ell >= 0 ? ranks[i] - static_cast<int64_t>(t.letters.size()) : 0));
  }
  if (e.explicit_output) {
    b.output = expand(e.output, e.output.ell >= 0 ? E : 0);
  } else {
    for (int64_t j = 0; j < E; ++j) b.output.push_back(kEllipsisLabel + static_cast<int>(j));
    std::map<int, int> count;
    for (const EinTerm& t : e.inputs)
      for (int l : t.letters) ++count[l];
    for (const auto& [l, c] : count)
      if (c == 1) b.output.push_back(l);
  }
  return b;
}

// The size of every label, checked: equal everywhere, or 1 (broadcast).
std::map<int, int64_t> einsum_sizes(const ir::Node& n, const EinBinding& b, const std::vector<Shape>& shapes) {
  std::map<int, int64_t> size;
  for (size_t i = 0; i < b.inputs.size(); ++i) {
    std::map<int, int64_t> mine;
    for (size_t d = 0; d < b.inputs[i].size(); ++d) {
      const int l = b.inputs[i][d];
      const int64_t s = shapes[i][d];
      auto [it, fresh] = mine.emplace(l, s);
      if (!fresh && it->second != s)
        fail(n, Errc::kShapeMismatch,
             "takes a diagonal of input " + std::to_string(i) + " (shape " + shape_str(shapes[i]) +
                 ") over dimensions of different sizes",
             "equal sizes for a repeated letter");
      auto [g, gfresh] = size.emplace(l, s);
      if (!gfresh && g->second != s) {
        if (g->second == 1) g->second = s;
        else if (s != 1)
          fail(n, Errc::kShapeMismatch,
               "has input " + std::to_string(i) + " of shape " + shape_str(shapes[i]) +
                   " whose size for a label disagrees with another input's (" + std::to_string(s) + " vs " +
                   std::to_string(g->second) + ")",
               "equal sizes (or 1, broadcast) for a label");
      }
    }
  }
  return size;
}

// An operand during the contraction: unique labels, their sizes, contiguous data.
struct EinOperand {
  Tensor t;
  std::vector<int> labels;
  Shape dims;
};

// Copies src (dims with strides, 0 for broadcast) into contiguous dst. When
// the innermost destination dim is strided in the source but another dim is
// contiguous there (a transpose), copies in square tiles so both sides stay
// in cache.
template <class T>
void gather_strided(const T* src, const Shape& dims, const Shape& strides, T* dst, ThreadPool* pool) {
  const size_t r = dims.size();
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  const int64_t L = dims[r - 1], s = strides[r - 1];
  const int64_t rows = prod(dims, 0, r - 1);
  if (rows * L == 0) return;
  size_t p = r;
  if (s != 1 && L >= 8)
    for (size_t d = 0; d + 1 < r; ++d)
      if (strides[d] == 1 && dims[d] >= 8) p = d;
  if (p < r) {
    constexpr int64_t kTile = 32;
    const Shape dst_strides = strides_of(dims);
    const int64_t P = dims[p], dsp = dst_strides[p];
    std::vector<int64_t> od, os, odst;  // the other dims: sizes, source and destination strides
    for (size_t d = 0; d + 1 < r; ++d)
      if (d != p) {
        od.push_back(dims[d]);
        os.push_back(strides[d]);
        odst.push_back(dst_strides[d]);
      }
    const int64_t planes = shape_numel(od);
    const int64_t ptiles = (P + kTile - 1) / kTile;
    par_for(pool, planes * ptiles, kTile * L, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        int64_t plane = t / ptiles, so = 0, dof = 0;
        for (size_t k = od.size(); k-- > 0;) {
          const int64_t i = plane % od[k];
          plane /= od[k];
          so += i * os[k];
          dof += i * odst[k];
        }
        const int64_t p0 = (t % ptiles) * kTile, p1 = std::min(P, p0 + kTile);
        for (int64_t l0 = 0; l0 < L; l0 += kTile) {
          const int64_t l1 = std::min(L, l0 + kTile);
          for (int64_t i = p0; i < p1; ++i) {
            T* d = dst + dof + i * dsp;
            const T* sp = src + so + i;
            for (int64_t l = l0; l < l1; ++l) d[l] = sp[l * s];
          }
        }
      }
    });
    return;
  }
  std::vector<int64_t> od(dims.begin(), dims.end() - 1), os(strides.begin(), strides.end() - 1);
  par_for(pool, rows, L, [&](int64_t b, int64_t e) {
    Odometer odo(od, os);
    odo.seek(b);
    for (int64_t row = b; row < e; ++row, odo.next()) {
      T* d = dst + row * L;
      const T* sp = src + odo.offset;
      if (s == 1) std::memcpy(d, sp, static_cast<size_t>(L) * sizeof(T));
      else for (int64_t j = 0; j < L; ++j) d[j] = sp[j * s];
    }
  });
}

// Keeps the labels in `keep` (in order of first appearance), sums the others
// and takes diagonals of repeated labels.
template <class T>
EinOperand einsum_reduce(const Tensor& x, const std::vector<int>& labels, const std::set<int>& keep, ThreadPool* pool) {
  const Shape st = strides_of(x.shape());
  std::vector<int> order;
  std::map<int, int64_t> stride, size;
  for (size_t d = 0; d < labels.size(); ++d) {
    const int l = labels[d];
    if (!stride.count(l)) {
      order.push_back(l);
      stride[l] = 0;
      size[l] = x.shape()[d];
    }
    stride[l] += st[d];
  }
  EinOperand r;
  Shape kept_strides, sum_dims, sum_strides;
  for (int l : order) {
    if (keep.count(l)) {
      r.labels.push_back(l);
      r.dims.push_back(size[l]);
      kept_strides.push_back(stride[l]);
    } else {
      sum_dims.push_back(size[l]);
      sum_strides.push_back(stride[l]);
    }
  }
  if (order.size() == labels.size() && sum_dims.empty()) {
    r.t = x;
    return r;
  }
  r.t = Tensor(x.dtype(), r.dims);
  const T* px = x.data<T>();
  T* py = r.t.data<T>();
  const int64_t n_out = shape_numel(r.dims);
  const int64_t n_sum = shape_numel(sum_dims);
  if (sum_dims.empty()) {
    gather_strided<T>(px, r.dims, kept_strides, py, pool);
    return r;
  }
  par_for(pool, n_out, n_sum, [&](int64_t b, int64_t e) {
    Odometer ko(r.dims, kept_strides);
    ko.seek(b);
    const int64_t last_n = sum_dims.back(), last_s = sum_strides.back();
    Shape outer_d(sum_dims.begin(), sum_dims.end() - 1), outer_s(sum_strides.begin(), sum_strides.end() - 1);
    const int64_t n_outer = shape_numel(outer_d);
    for (int64_t o = b; o < e; ++o, ko.next()) {
      Odometer qo(outer_d, outer_s);
      T acc{0};
      for (int64_t q = 0; q < n_outer; ++q, qo.next()) {
        const T* p = px + ko.offset + qo.offset;
        for (int64_t j = 0; j < last_n; ++j) acc = wadd(acc, p[j * last_s]);
      }
      py[o] = acc;
    }
  });
  return r;
}

// C[b] = op(A[b]) * op(B[b]) for each batch b; A is M x K (K x M if ta), B is K x N (N x K if tb).
template <class T>
void batched_gemm(int64_t batch, int64_t M, int64_t N, int64_t K, const T* A, bool ta, const T* B, bool tb, T* C,
                  ThreadPool* pool) {
  if (batch * M * N == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    const int threads = pool ? pool->threads() : 1;
    if (batch >= 2 * threads || M * N * std::max<int64_t>(K, 1) < (int64_t{1} << 16)) {
      par_for(pool, batch, M * N * std::max<int64_t>(K, 1), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          kernels::sgemm(ta, tb, M, N, K, 1.0f, A + i * M * K, lda, B + i * K * N, ldb, 0.0f, C + i * M * N, N, {},
                         nullptr);
      });
    } else {
      for (int64_t i = 0; i < batch; ++i)
        kernels::sgemm(ta, tb, M, N, K, 1.0f, A + i * M * K, lda, B + i * K * N, ldb, 0.0f, C + i * M * N, N, {}, pool);
    }
  } else {
    par_for(pool, batch * M, N * std::max<int64_t>(K, 1), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t i = t / M, m = t % M;
        const T* a = A + i * M * K;
        const T* bm = B + i * K * N;
        T* c = C + i * M * N + m * N;
        std::fill(c, c + N, T{0});
        for (int64_t k = 0; k < K; ++k) {
          const T av = ta ? a[k * M + m] : a[m * K + k];
          if (tb) {
            for (int64_t j = 0; j < N; ++j) c[j] = wadd(c[j], wmul(av, bm[j * K + k]));
          } else {
            const T* br = bm + k * N;
            for (int64_t j = 0; j < N; ++j) c[j] = wadd(c[j], wmul(av, br[j]));
          }
        }
      }
    });
  }
}

// Lays out op's data as `want` labels (sizes from `size`, broadcasting dims of 1).
template <class T>
Tensor einsum_layout(const EinOperand& op, const std::vector<int>& want, const std::map<int, int64_t>& size,
                     ThreadPool* pool) {
  const Shape st = strides_of(op.dims);
  Shape dims, strides;
  for (int l : want) {
    const size_t p = static_cast<size_t>(std::find(op.labels.begin(), op.labels.end(), l) - op.labels.begin());
    const int64_t full = size.at(l);
    dims.push_back(full);
    strides.push_back(op.dims[p] == full ? st[p] : 0);
  }
  Tensor r(op.t.dtype(), dims);
  gather_strided<T>(op.t.data<T>(), dims, strides, r.data<T>(), pool);
  return r;
}

// True if op's data is already `want` with full sizes.
bool einsum_is_layout(const EinOperand& op, const std::vector<int>& want, const std::map<int, int64_t>& size) {
  if (op.labels != want) return false;
  for (size_t i = 0; i < want.size(); ++i)
    if (op.dims[i] != size.at(want[i])) return false;
  return true;
}

template <class T>
EinOperand einsum_contract(const EinOperand& a0, const EinOperand& b0, const std::set<int>& needed,
                           const std::map<int, int64_t>& size, ThreadPool* pool) {
  const std::set<int> la(a0.labels.begin(), a0.labels.end()), lb(b0.labels.begin(), b0.labels.end());
  // Labels one side has that are neither needed later nor on the other side: sum them first.
  std::set<int> keep_a = needed, keep_b = needed;
  keep_a.insert(lb.begin(), lb.end());
  keep_b.insert(la.begin(), la.end());
  const EinOperand a = einsum_reduce<T>(a0.t, a0.labels, keep_a, pool);
  const EinOperand b = einsum_reduce<T>(b0.t, b0.labels, keep_b, pool);
  std::vector<int> batch, m, k, n;
  for (int l : a.labels) {
    const bool in_b = std::find(b.labels.begin(), b.labels.end(), l) != b.labels.end();
    if (in_b) (needed.count(l) ? batch : k).push_back(l);
    else m.push_back(l);
  }
  for (int l : b.labels)
    if (std::find(a.labels.begin(), a.labels.end(), l) == a.labels.end()) n.push_back(l);
  auto cat = [](std::initializer_list<const std::vector<int>*> parts) {
    std::vector<int> r;
    for (const auto* p : parts) r.insert(r.end(), p->begin(), p->end());
    return r;
  };
  auto count = [&](const std::vector<int>& ls) {
    int64_t p = 1;
    for (int l : ls) p *= size.at(l);
    return p;
  };
  const int64_t nb = count(batch), nm = count(m), nn = count(n), nk = count(k);
  Tensor ta_t, tb_t;
  bool ta = false, tb = false;
  const std::vector<int> a_mk = cat({&batch, &m, &k}), a_km = cat({&batch, &k, &m});
  if (einsum_is_layout(a, a_mk, size)) ta_t = a.t;
  else if (einsum_is_layout(a, a_km, size)) { ta_t = a.t; ta = true; }
  else ta_t = einsum_layout<T>(a, a_mk, size, pool);
  const std::vector<int> b_kn = cat({&batch, &k, &n}), b_nk = cat({&batch, &n, &k});
  if (einsum_is_layout(b, b_kn, size)) tb_t = b.t;
  else if (einsum_is_layout(b, b_nk, size)) { tb_t = b.t; tb = true; }
  else tb_t = einsum_layout<T>(b, b_kn, size, pool);
  EinOperand r;
  r.labels = cat({&batch, &m, &n});
  for (int l : r.labels) r.dims.push_back(size.at(l));
  r.t = Tensor(a.t.dtype(), r.dims);
  batched_gemm<T>(nb, nm, nn, nk, ta_t.data<T>(), ta, tb_t.data<T>(), tb, r.t.data<T>(), pool);
  return r;
}

template <class T>
void einsum_typed(OpContext& ctx, const EinBinding& b, const std::map<int, int64_t>& size) {
  const int ni = ctx.num_inputs();
  ThreadPool* pool = ctx.pool();
  const std::set<int> out_set(b.output.begin(), b.output.end());
  // Labels needed after operand i: the output's and those of inputs > i.
  std::vector<std::set<int>> needed_after(static_cast<size_t>(ni));
  std::set<int> acc = out_set;
  for (int i = ni - 1; i >= 0; --i) {
    needed_after[static_cast<size_t>(i)] = acc;
    acc.insert(b.inputs[static_cast<size_t>(i)].begin(), b.inputs[static_cast<size_t>(i)].end());
  }
  std::vector<EinOperand> ops;
  for (int i = 0; i < ni; ++i) {
    std::set<int> keep = out_set;
    for (int j = 0; j < ni; ++j)
      if (j != i) keep.insert(b.inputs[static_cast<size_t>(j)].begin(), b.inputs[static_cast<size_t>(j)].end());
    ops.push_back(einsum_reduce<T>(ctx.input(i), b.inputs[static_cast<size_t>(i)], keep, pool));
  }
  EinOperand cur = std::move(ops[0]);
  for (int i = 1; i < ni; ++i)
    cur = einsum_contract<T>(cur, ops[static_cast<size_t>(i)], needed_after[static_cast<size_t>(i)], size, pool);
  // Sum what the output does not have (only when there was a single input
  // whose reduce already did this, this is a no-op), then permute.
  cur = einsum_reduce<T>(cur.t, cur.labels, out_set, pool);
  Shape out_dims;
  for (int l : b.output) out_dims.push_back(size.at(l));
  if (einsum_is_layout(cur, b.output, size)) {
    ctx.set_output(0, cur.t.reshape(out_dims));
    return;
  }
  Tensor& y = ctx.output(0, cur.t.dtype(), out_dims);
  if (shape_numel(out_dims) == 0) return;
  const Shape st = strides_of(cur.dims);
  Shape strides;
  for (int l : b.output) {
    const auto it = std::find(cur.labels.begin(), cur.labels.end(), l);
    if (it == cur.labels.end()) {
      strides.push_back(0);  // cannot happen: every output label is in some input
      continue;
    }
    const size_t p = static_cast<size_t>(it - cur.labels.begin());
    strides.push_back(cur.dims[p] == size.at(l) ? st[p] : 0);
  }
  gather_strided<T>(cur.t.data<T>(), out_dims, strides, y.data<T>(), pool);
}

void einsum_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const int ni = ctx.num_inputs();
  if (ni < 1) fail(node, Errc::kNotFound, "has no inputs", "at least one input");
  const EinEquation e = parse_einsum(node, ni);
  std::vector<int64_t> ranks;
  std::vector<Shape> shapes;
  const DType dt = ctx.input(0).dtype();
  for (int i = 0; i < ni; ++i) {
    const Tensor& t = ctx.input(i);
    if (t.dtype() != dt)
      bad_type(node, ("input " + std::to_string(i)).c_str(), t.dtype(), dtype_name(dt).data());
    ranks.push_back(t.rank());
    shapes.push_back(t.shape());
  }
  const EinBinding b = bind_einsum(node, e, ranks);
  const std::map<int, int64_t> size = einsum_sizes(node, b, shapes);
  dispatch_main(dt, node, [&](auto z) {
    using T = decltype(z);
    einsum_typed<T>(ctx, b, size);
  });
}

void einsum_infer(InferContext& c) {
  const ir::Node& node = c.node();
  const int ni = c.num_inputs();
  const EinEquation e = parse_einsum(node, ni);
  const std::optional<DType> dt = ni > 0 ? c.input(0).dtype : std::nullopt;
  std::vector<int64_t> ranks;
  bool ranks_known = true;
  for (int i = 0; i < ni; ++i) {
    const ir::ValueInfo& in = c.input(i);
    if (in.shape) ranks.push_back(static_cast<int64_t>(in.shape->size()));
    else if (e.inputs[static_cast<size_t>(i)].ell < 0) ranks.push_back(static_cast<int64_t>(e.inputs[static_cast<size_t>(i)].letters.size()));
    else ranks_known = false;
  }
  if (!ranks_known) {
    set_output(c, 0, dt, std::nullopt);
    return;
  }
  const EinBinding b = bind_einsum(node, e, ranks);
  std::map<int, std::optional<ir::Dim>> dims;
  for (int i = 0; i < ni; ++i) {
    const ir::ValueInfo& in = c.input(i);
    if (!in.shape) continue;
    const std::vector<int>& ls = b.inputs[static_cast<size_t>(i)];
    for (size_t d = 0; d < ls.size(); ++d) {
      const ir::Dim& dd = (*in.shape)[d];
      auto& cur = dims[ls[d]];
      if (cur && cur->known() && dd.known() && cur->size != dd.size && cur->size != 1 && dd.size != 1)
        fail(node, Errc::kShapeMismatch,
             "has input " + std::to_string(i) + " of shape " + ir::sym_shape_str(*in.shape) +
                 " whose size for a label disagrees with another input's",
             "equal sizes (or 1, broadcast) for a label");
      cur = merge_dim(cur, dd);
    }
  }
  ir::SymShape o;
  for (int l : b.output) {
    auto it = dims.find(l);
    o.push_back(it != dims.end() && it->second ? *it->second : ir::Dim());
  }
  set_output(c, 0, dt, o);
}

}  // namespace

void register_reduce_ops(OpRegistry& r) {
  for (const ReduceDef& d : kReduceDefs) {
    const RKind kind = d.kind;
    r.add({.domain = "", .op_type = d.op, .min_opset = 1, .max_opset = 21,
           .infer = [kind](InferContext& c) { reduce_infer(c, kind); },
           .run = [kind](OpContext& c) { reduce_run(c, kind); }});
  }
  r.add({.domain = "", .op_type = "ArgMax", .min_opset = 1, .max_opset = 21, .infer = arg_infer,
         .run = [](OpContext& c) { arg_run(c, true); }});
  r.add({.domain = "", .op_type = "ArgMin", .min_opset = 1, .max_opset = 21, .infer = arg_infer,
         .run = [](OpContext& c) { arg_run(c, false); }});
  r.add({.domain = "", .op_type = "TopK", .min_opset = 1, .max_opset = 21, .infer = topk_infer, .run = topk_run});
  r.add({.domain = "", .op_type = "CumSum", .min_opset = 11, .max_opset = 21,
         .infer = [](InferContext& c) { infer_same_as(c); }, .run = cumsum_run});
  r.add({.domain = "", .op_type = "Resize", .min_opset = 10, .max_opset = 21,
         .infer = [](InferContext& c) { resize_infer(c, false); },
         .check = [](const InferContext& c) { return resize_check(c, false); },
         .run = [](OpContext& c) { resize_common(c, false); }});
  r.add({.domain = "", .op_type = "Upsample", .min_opset = 7, .max_opset = 9,
         .infer = [](InferContext& c) { resize_infer(c, true); },
         .check = [](const InferContext& c) { return resize_check(c, true); },
         .run = [](OpContext& c) { resize_common(c, true); }});
  r.add({.domain = "", .op_type = "Einsum", .min_opset = 12, .max_opset = 21, .infer = einsum_infer,
         .run = einsum_run});
}

}  // namespace qforge::ops
