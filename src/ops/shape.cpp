// The shape and data-movement family: Reshape, Flatten, Squeeze, Unsqueeze,
// Transpose, Concat, Split, Slice, Gather(Elements/ND), Scatter(Elements/ND),
// Expand, Tile, Pad, Shape, Size, ConstantOfShape, Range, NonZero,
// DepthToSpace, SpaceToDepth, Trilu, OneHot, EyeLike (Identity is in
// elementwise.cpp).
//
// These ops move bytes, so most kernels dispatch on the element width only
// (1, 2, 4 or 8 bytes) and work for every non-packed dtype. Ops that only
// change the shape (Reshape, Flatten, Squeeze, Unsqueeze, and the
// contiguous cases of Slice, Split, Gather, Transpose, Expand, Tile, Pad)
// return views sharing the input's storage instead of copying.
//
// Most copies go through one routine, strided_copy: the output is written in
// row-major order while the input is read at arbitrary (possibly zero or
// negative) strides. It drops size-1 dimensions, merges dimensions that stay
// contiguous, then either copies rows (memcpy when the innermost stride is 1)
// or, when the innermost output axis is strided and another axis is
// contiguous in the input (a transpose), copies 32x32 tiles.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "kernels/qgemm.h"  // transpose_u8
#include "ops/families.h"
#include "ops/op_util.h"
#include "qforge/quant.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {
namespace {

using ir::Dim;
using ir::SymShape;
using Ints = std::vector<int64_t>;

// ---------------------------------------------------------------------------
// Small helpers

[[noreturn]] void fail(const ir::Node& node, Errc code, const std::string& problem,
                       const std::string& expected = {}) {
  throw Error(code, node.describe(), problem, expected);
}

std::string ints_str(const Ints& v) { return shape_str(v); }

// Product of s[b, e); callers pass shapes of existing tensors (no overflow).
int64_t prod(const Shape& s, size_t b, size_t e) {
  int64_t n = 1;
  for (size_t i = b; i < e && i < s.size(); ++i) n *= s[i];
  return n;
}

// a * b for a computed dimension; Error on overflow.
int64_t mul_dim(int64_t a, int64_t b, const ir::Node& node) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r) || r > (int64_t{1} << 62))
    fail(node, Errc::kShapeMismatch,
         "computes a dimension " + std::to_string(a) + " * " + std::to_string(b) + " that overflows",
         "dimensions below 2^62");
  return r;
}

// Bytes per element; packed types (several elements per byte) are refused.
size_t elem_size(DType dt, const ir::Node& node, const char* what = "input 0") {
  const DTypeInfo& info = dtype_info(dt);
  if (info.is_packed || info.bits < 8)
    bad_type(node, what, dt, "a type of at least 8 bits per element (not a packed type)");
  return static_cast<size_t>(info.bits / 8);
}

// Calls f(T{}) with T an unsigned integer of the element width.
template <typename F>
void by_width(size_t w, F&& f) {
  switch (w) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(uint64_t{}); break;
    default:
      throw Error(Errc::kInternal, "shape ops", "element width " + std::to_string(w),
                  "1, 2, 4 or 8 bytes");
  }
}

const char* bytes_of(const Tensor& t) { return static_cast<const char*>(t.raw()); }
char* bytes_of(Tensor& t) { return static_cast<char*>(t.raw()); }

void copy_bytes(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
}

// Work split: items of `bytes` each, chunks of about 256 KiB. Below that
// a copy stays on one thread: waking the pool's other thread costs about
// what it saves (the LSTM's 100 KB time-major Transpose at batch 32 took
// 6 us on one thread and 11 on two with 64 KiB chunks).
int64_t grain_for(int64_t bytes_per_item) {
  constexpr int64_t kChunk = 256 * 1024;
  return std::max<int64_t>(1, kChunk / std::max<int64_t>(1, bytes_per_item));
}

void par_for(ThreadPool* pool, int64_t n, int64_t grain,
             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (pool == nullptr || n <= grain) fn(0, n);
  else pool->parallel_for(n, grain, fn);
}

// Row-major strides (in elements) of a shape.
Ints strides_of(const Shape& s) {
  Ints st(s.size(), 1);
  for (size_t k = s.size(); k-- > 1;) st[k - 1] = st[k] * s[k];
  return st;
}

// A view of x's storage: `shape` starting `elem_off` elements into x.
Tensor sub_view(const Tensor& x, int64_t elem_off, Shape shape, size_t esz) {
  const size_t base = static_cast<size_t>(static_cast<const char*>(x.raw()) -
                                          static_cast<const char*>(x.storage()->data()));
  return Tensor::view(x.dtype(), std::move(shape), x.storage(),
                      base + static_cast<size_t>(elem_off) * esz);
}
bool can_view(const Tensor& x) { return x.storage() != nullptr && x.raw() != nullptr; }

// Parallel memcpy of one large block.
void par_memcpy(ThreadPool* pool, char* dst, const char* src, size_t n) {
  constexpr int64_t kChunk = 256 * 1024;
  const int64_t chunks = (static_cast<int64_t>(n) + kChunk - 1) / kChunk;
  par_for(pool, chunks, 1, [&](int64_t b, int64_t e) {
    const size_t lo = static_cast<size_t>(b * kChunk);
    const size_t hi = std::min(n, static_cast<size_t>(e * kChunk));
    copy_bytes(dst + lo, src + lo, hi - lo);
  });
}

// ---------------------------------------------------------------------------
// strided_copy: dst (contiguous, `shape`) [i...] = src[sum i_k * st_k].

void simplify_strides(Shape& shape, Ints& st) {
  Shape s2;
  Ints t2;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 1) continue;
    if (!s2.empty() && t2.back() == st[k] * shape[k]) {
      s2.back() *= shape[k];
      t2.back() = st[k];
    } else {
      s2.push_back(shape[k]);
      t2.push_back(st[k]);
    }
  }
  shape = std::move(s2);
  st = std::move(t2);
}

template <typename T>
void strided_copy_t(Shape shape, Ints st, const T* src, T* dst, ThreadPool* pool) {
  for (int64_t d : shape)
    if (d == 0) return;
  simplify_strides(shape, st);
  const size_t r = shape.size();
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  const int64_t n = shape[r - 1], s = st[r - 1];

  // A transpose: the innermost output axis is strided in the input while
  // another axis p is contiguous there. Copy tiles of (p, innermost) so that
  // both the reads and the writes stay within a few cache lines: 32 x 32,
  // or taller and narrower when the innermost axis is short (DepthToSpace).
  if (r >= 2 && s != 1 && s != -1 && s != 0 && n >= 2) {
    size_t p = r;
    for (size_t k = 0; k + 1 < r; ++k)
      if (st[k] == 1 || st[k] == -1) p = k;
    if constexpr (sizeof(T) == 1) {
      // Bytes, with the two innermost output axes swapped (attention's K^T,
      // channels-first <-> channels-last): each outer index is a whole
      // matrix transpose, done 16 x 16 bytes at a time by vector unpacks.
      if (p == r - 2 && st[p] == 1 && s > 0 && shape[p] >= 16 && n >= 16) {
        const Ints ost = strides_of(shape);
        const int64_t outer = prod(shape, 0, r - 2), np = shape[p];
        par_for(pool, outer, std::max<int64_t>(1, 4096 / (np * n)), [&](int64_t b, int64_t e) {
          for (int64_t o = b; o < e; ++o) {
            int64_t rem = o, so = 0, dof = 0;
            for (size_t k = r - 2; k-- > 0;) {
              const int64_t c = rem % shape[k];
              rem /= shape[k];
              so += c * st[k];
              dof += c * ost[k];
            }
            kernels::transpose_u8(reinterpret_cast<const uint8_t*>(src + so), n, np, s,
                                  reinterpret_cast<uint8_t*>(dst + dof), n);
          }
        });
        return;
      }
    }
    if (p < r && shape[p] >= 8) {
      const int64_t BJ = std::min<int64_t>(n, 32);
      const int64_t BI = std::max<int64_t>(32, 1024 / BJ);
      const Ints ost = strides_of(shape);
      std::vector<size_t> others;
      for (size_t k = 0; k + 1 < r; ++k)
        if (k != p) others.push_back(k);
      int64_t outer = 1;
      for (size_t k : others) outer *= shape[k];
      const int64_t tp = (shape[p] + BI - 1) / BI, tl = (n + BJ - 1) / BJ;
      const int64_t np = shape[p], sp_in = st[p], sp_out = ost[p];
      par_for(pool, outer * tp * tl, 8, [&](int64_t b, int64_t e) {
        for (int64_t it = b; it < e; ++it) {
          int64_t rem = it;
          const int64_t jt = rem % tl;
          rem /= tl;
          const int64_t itile = rem % tp;
          rem /= tp;
          int64_t so = 0, dof = 0;
          for (size_t q = others.size(); q-- > 0;) {
            const size_t k = others[q];
            const int64_t c = rem % shape[k];
            rem /= shape[k];
            so += c * st[k];
            dof += c * ost[k];
          }
          const int64_t i0 = itile * BI, i1 = std::min(i0 + BI, np);
          const int64_t j0 = jt * BJ, j1 = std::min(j0 + BJ, n);
          // Strides as locals: for bytes, a store may alias the captured
          // variables, which the loops would otherwise reload every element.
          const int64_t step = s, in_step = sp_in, out_step = sp_out;
          if (BJ >= 8) {
            for (int64_t i = i0; i < i1; ++i) {
              T* d = dst + dof + i * out_step;
              const T* sp = src + so + i * in_step;
              for (int64_t j = j0; j < j1; ++j) d[j] = sp[j * step];
            }
          } else {
            // Short rows: walk the contiguous input axis innermost.
            for (int64_t j = j0; j < j1; ++j) {
              T* d = dst + dof + j;
              const T* sp = src + so + j * step;
              for (int64_t i = i0; i < i1; ++i) d[i * out_step] = sp[i * in_step];
            }
          }
        }
      });
      return;
    }
  }

  // Rows of the innermost axis.
  const int64_t rows = prod(shape, 0, r - 1);
  const size_t row_bytes = static_cast<size_t>(n) * sizeof(T);
  const size_t outer_rank = r - 1;
  par_for(pool, rows, grain_for(n * static_cast<int64_t>(sizeof(T))), [&](int64_t b, int64_t e) {
    Ints c(outer_rank, 0);
    int64_t so = 0;
    int64_t rem = b;
    for (size_t k = outer_rank; k-- > 0;) {
      c[k] = rem % shape[k];
      rem /= shape[k];
      so += c[k] * st[k];
    }
    T* d = dst + b * n;
    for (int64_t row = b; row < e; ++row) {
      const T* sp = src + so;
      if (s == 1) {
        // Short rows (attention heads of 16 bytes) as fixed-size copies,
        // which compile to a load and a store instead of a call.
        switch (row_bytes) {
          case 16: std::memcpy(d, sp, 16); break;
          case 32: std::memcpy(d, sp, 32); break;
          case 64: std::memcpy(d, sp, 64); break;
          default: std::memcpy(d, sp, row_bytes); break;
        }
      } else if (s == 0) {
        std::fill_n(d, n, *sp);
      } else {
        for (int64_t j = 0; j < n; ++j) d[j] = sp[j * s];
      }
      d += n;
      for (size_t k = outer_rank; k-- > 0;) {
        so += st[k];
        if (++c[k] < shape[k]) break;
        so -= st[k] * shape[k];
        c[k] = 0;
      }
    }
  });
}

}  // namespace

void strided_copy(size_t esz, const Shape& shape, const Ints& st, const void* src, void* dst,
                  ThreadPool* pool) {
  by_width(esz, [&](auto z) {
    using T = decltype(z);
    strided_copy_t<T>(shape, st, static_cast<const T*>(src), static_cast<T*>(dst), pool);
  });
}

namespace {

// ---------------------------------------------------------------------------
// Shape-inference helpers

std::optional<SymShape> shape_in(const InferContext& c, int i) {
  return c.has_input(i) ? c.input(i).shape : std::nullopt;
}

SymShape fresh_dims(InferContext& c, size_t n) {
  SymShape s;
  for (size_t i = 0; i < n; ++i) s.push_back(c.fresh_dim());
  return s;
}

// The product of s[b, e): known if every factor is, the symbol if exactly one
// factor is symbolic and the rest multiply to 1, else a fresh dimension.
Dim sym_product(InferContext& c, const SymShape& s, size_t b, size_t e) {
  int64_t known = 1;
  int unknown = 0;
  const Dim* sym = nullptr;
  for (size_t i = b; i < e && i < s.size(); ++i) {
    if (s[i].known()) {
      if (s[i].size == 0) return Dim(0);
      if (__builtin_mul_overflow(known, s[i].size, &known)) return c.fresh_dim();
    } else {
      ++unknown;
      sym = &s[i];
    }
  }
  if (unknown == 0) return Dim(known);
  if (unknown == 1 && known == 1 && !sym->symbol.empty()) return *sym;
  return c.fresh_dim();
}

Dim dim_mul(InferContext& c, const Dim& a, int64_t k) {
  if (k == 1) return a;
  if (k == 0) return Dim(0);
  if (a.known()) {
    int64_t r = 0;
    if (!__builtin_mul_overflow(a.size, k, &r)) return Dim(r);
  }
  return c.fresh_dim();
}

Dim dim_add(InferContext& c, const Dim& a, int64_t k) {
  if (k == 0) return a;
  int64_t r = 0;
  if (a.known() && !__builtin_add_overflow(a.size, k, &r) && r >= 0) return Dim(r);
  return c.fresh_dim();
}

// Values of a list given as attribute `attr` before opset `from`, as input
// `input` from then on. present = false when absent; values = nullopt when
// the input is not a known constant.
struct IntsArg {
  bool present = false;
  std::optional<Ints> values;
};
IntsArg infer_ints_arg(const InferContext& c, int input, const char* attr, int64_t from) {
  if (c.opset() < from) {
    if (!c.node().has_attr(attr)) return {};
    return {true, c.node().attr_ints(attr)};
  }
  if (!c.has_input(input)) return {};
  return {true, constant_ints(c, input)};
}
std::optional<Ints> run_ints_arg(const OpContext& c, int input, const char* attr, int64_t from,
                                 const char* what) {
  if (c.opset() < from) {
    if (!c.node().has_attr(attr)) return std::nullopt;
    return c.node().attr_ints(attr);
  }
  if (!c.has_input(input)) return std::nullopt;
  return to_int64s(c.input(input), c.node(), what);
}

// Axes normalized to [0, rank); duplicates are an Error.
Ints normalize_axes(const Ints& axes, int64_t rank, const ir::Node& node) {
  Ints r;
  std::vector<bool> seen(static_cast<size_t>(std::max<int64_t>(rank, 0)), false);
  for (int64_t a : axes) {
    QFORGE_CHECK(a >= -rank && a < rank, Errc::kInvalidArgument, node.describe(),
          "has axis " + std::to_string(a) + " for rank " + std::to_string(rank),
          "axes in [" + std::to_string(-rank) + ", " + std::to_string(rank) + ")");
    const int64_t n = a < 0 ? a + rank : a;
    QFORGE_CHECK(!seen[static_cast<size_t>(n)], Errc::kInvalidArgument, node.describe(),
          "has axis " + std::to_string(a) + " more than once in " + ints_str(axes), "distinct axes");
    seen[static_cast<size_t>(n)] = true;
    r.push_back(n);
  }
  return r;
}

// An axis in [-rank, rank] (both ends included: Flatten, OneHot, Split points).
int64_t normalize_axis_incl(int64_t axis, int64_t rank, const ir::Node& node) {
  QFORGE_CHECK(axis >= -rank && axis <= rank, Errc::kInvalidArgument, node.describe(),
        "has axis " + std::to_string(axis) + " for rank " + std::to_string(rank),
        "an axis in [" + std::to_string(-rank) + ", " + std::to_string(rank) + "]");
  return axis < 0 ? axis + rank : axis;
}

void require_rank_at_least(const ir::Node& node, const char* what, int64_t rank, int64_t min) {
  QFORGE_CHECK(rank >= min, Errc::kShapeMismatch, node.describe(),
        std::string(what) + " has rank " + std::to_string(rank),
        "rank >= " + std::to_string(min));
}

// Index i (any sign) along a dimension of size n, normalized to [0, n).
inline bool index_ok(int64_t i, int64_t n) { return i >= -n && i < n; }
[[noreturn]] void bad_index(const ir::Node& node, const char* what, int64_t v, int64_t n) {
  fail(node, Errc::kInvalidArgument,
       std::string(what) + " holds index " + std::to_string(v) + " for a dimension of size " +
           std::to_string(n),
       "indices in [" + std::to_string(-n) + ", " + std::to_string(n - 1) + "]");
}

// The values of an i32/i64 index tensor as int64.
Ints read_index_tensor(const Tensor& t, const ir::Node& node, const char* what) {
  Ints r(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::kI64) {
    const int64_t* p = t.data<int64_t>();
    std::copy(p, p + t.numel(), r.begin());
  } else if (t.dtype() == DType::kI32) {
    const int32_t* p = t.data<int32_t>();
    std::copy(p, p + t.numel(), r.begin());
  } else {
    bad_type(node, what, t.dtype(), "i64 or i32");
  }
  return r;
}

// Index values normalized to [0, n); out of range is an Error.
Ints read_indices(const Tensor& t, int64_t n, const ir::Node& node, const char* what) {
  Ints r = read_index_tensor(t, node, what);
  for (int64_t& v : r) {
    if (!index_ok(v, n)) bad_index(node, what, v, n);
    if (v < 0) v += n;
  }
  return r;
}

// A value of type dt (T is its storage type) from a double, for attribute
// values (Pad's `value` before opset 11). Error if it does not fit.
template <typename T>
T value_as(double v, DType dt, const ir::Node& node, const char* what) {
  if (dt == DType::kF16) return static_cast<T>(f32_to_f16(static_cast<float>(v)));
  if (dt == DType::kBF16) return static_cast<T>(f32_to_bf16(static_cast<float>(v)));
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(v);
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else {
    if (!(std::isfinite(v) && v >= static_cast<double>(std::numeric_limits<T>::min()) &&
          v <= static_cast<double>(std::numeric_limits<T>::max())))
      fail(node, Errc::kInvalidArgument,
           std::string(what) + " " + std::to_string(v) + " does not fit " +
               std::string(dtype_name(dt)),
           "a value representable in the data type");
    return static_cast<T>(v);
  }
}

void require_same_dtype(const ir::Node& node, const char* what, DType got, DType want) {
  if (got != want)
    fail(node, Errc::kTypeMismatch,
         std::string(what) + " is " + std::string(dtype_name(got)),
         std::string(dtype_name(want)) + " like the data input");
}

// ---------------------------------------------------------------------------
// Reshape

Ints reshape_target(const OpContext& ctx) {
  if (ctx.opset() < 5) {
    QFORGE_CHECK(ctx.node().has_attr("shape"), Errc::kNotFound, ctx.node().describe(),
          "has no 'shape' attribute", "the target shape (Reshape before opset 5)");
    return ctx.node().attr_ints("shape");
  }
  return to_int64s(ctx.input(1), ctx.node(), "input 1 (shape)");
}

void reshape_check_target(const Ints& t, bool allowzero, const ir::Node& node) {
  int neg = 0;
  bool zero = false;
  for (int64_t v : t) {
    QFORGE_CHECK(v >= -1, Errc::kInvalidArgument, node.describe(),
          "has target shape " + ints_str(t) + " with value " + std::to_string(v),
          "dimensions >= 0, or -1 once");
    neg += v == -1;
    zero |= v == 0;
  }
  QFORGE_CHECK(neg <= 1, Errc::kInvalidArgument, node.describe(),
        "has target shape " + ints_str(t) + " with more than one -1", "at most one -1");
  QFORGE_CHECK(!(allowzero && zero && neg), Errc::kInvalidArgument, node.describe(),
        "has target shape " + ints_str(t) + " with both 0 and -1 while allowzero = 1",
        "no -1 when a 0 means a zero-sized dimension");
}

}  // namespace

Shape reshape_shape(const Shape& in, const Ints& target, bool allowzero, const ir::Node& node) {
  reshape_check_target(target, allowzero, node);
  Shape out(target.size());
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t v = target[i];
    if (v == 0 && !allowzero) {
      QFORGE_CHECK(i < in.size(), Errc::kShapeMismatch, node.describe(),
            "has target shape " + ints_str(target) + " copying dimension " + std::to_string(i) +
                " of an input of shape " + shape_str(in),
            "a 0 only where the input has that dimension");
      v = in[i];
    }
    if (v == -1) {
      infer = static_cast<int64_t>(i);
      continue;
    }
    out[i] = v;
    known = v == 0 ? 0 : mul_dim(known, v, node);
  }
  const int64_t numel = shape_numel(in);
  if (infer >= 0) {
    QFORGE_CHECK(known != 0 && numel % known == 0, Errc::kShapeMismatch, node.describe(),
          "can't reshape " + shape_str(in) + " to " + ints_str(target),
          "a -1 that makes the element count equal");
    out[static_cast<size_t>(infer)] = numel / known;
  }
  QFORGE_CHECK(known * (infer >= 0 ? out[static_cast<size_t>(infer)] : 1) == numel, Errc::kShapeMismatch,
        node.describe(), "can't reshape " + shape_str(in) + " to " + ints_str(target),
        "a shape with " + std::to_string(numel) + " elements");
  return out;
}

namespace {

void reshape_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const bool allowzero = ctx.opset() >= 14 && ctx.node().attr_int("allowzero", 0) != 0;
  const Shape out = reshape_shape(x.shape(), reshape_target(ctx), allowzero, ctx.node());
  ctx.set_output(0, x.reshape(out));
}

// The symbolic output of Reshape to a constant target.
std::optional<SymShape> reshape_sym(InferContext& c, const std::optional<SymShape>& in,
                                    const Ints& target, bool allowzero) {
  const ir::Node& node = c.node();
  reshape_check_target(target, allowzero, node);
  SymShape out(target.size());
  std::vector<bool> copied(in ? in->size() : 0, false);
  int64_t infer = -1, known_out = 1;
  bool out_all_known = true;
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t v = target[i];
    if (v == -1) {
      infer = static_cast<int64_t>(i);
    } else if (v == 0 && !allowzero) {
      if (!in) {
        out[i] = c.fresh_dim();
        out_all_known = false;
        continue;
      }
      QFORGE_CHECK(i < in->size(), Errc::kShapeMismatch, node.describe(),
            "has target shape " + ints_str(target) + " copying dimension " + std::to_string(i) +
                " of an input of shape " + ir::sym_shape_str(*in),
            "a 0 only where the input has that dimension");
      out[i] = (*in)[i];
      copied[i] = true;
    } else {
      out[i] = Dim(v);
      if (__builtin_mul_overflow(known_out, v, &known_out)) return std::nullopt;
    }
  }
  if (!in) {
    if (infer >= 0) out[static_cast<size_t>(infer)] = c.fresh_dim();
    return out;
  }
  // What the input has beyond the copied dimensions must equal what the
  // output has beyond them.
  int64_t known_in = 1;
  int unknown = 0;
  const Dim* sym = nullptr;
  bool overflow = false;
  for (size_t i = 0; i < in->size(); ++i) {
    if (copied[i]) continue;
    const Dim& d = (*in)[i];
    if (d.known()) overflow |= __builtin_mul_overflow(known_in, d.size, &known_in);
    else {
      ++unknown;
      sym = &d;
    }
  }
  if (overflow) {
    if (infer >= 0) out[static_cast<size_t>(infer)] = c.fresh_dim();
    return out;
  }
  if (infer >= 0) {
    Dim& d = out[static_cast<size_t>(infer)];
    if (unknown == 0) {
      QFORGE_CHECK(known_out != 0 && known_in % known_out == 0, Errc::kShapeMismatch, node.describe(),
            "can't reshape " + ir::sym_shape_str(*in) + " to " + ints_str(target),
            "a -1 that makes the element count equal");
      d = Dim(known_in / known_out);
    } else if (unknown == 1 && known_in == known_out && !sym->symbol.empty()) {
      d = *sym;
    } else if (known_in == 0) {
      d = Dim(0);
    } else {
      d = c.fresh_dim();
    }
  } else if (unknown == 0 && out_all_known) {
    QFORGE_CHECK(known_in == known_out, Errc::kShapeMismatch, node.describe(),
          "can't reshape " + ir::sym_shape_str(*in) + " to " + ints_str(target),
          "a shape with the same element count");
  }
  return out;
}

void reshape_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const bool allowzero = c.opset() >= 14 && c.node().attr_int("allowzero", 0) != 0;
  std::optional<Ints> target;
  if (c.opset() < 5) {
    QFORGE_CHECK(c.node().has_attr("shape"), Errc::kNotFound, c.node().describe(),
          "has no 'shape' attribute", "the target shape (Reshape before opset 5)");
    target = c.node().attr_ints("shape");
  } else {
    c.input(1);  // required
    target = constant_ints(c, 1);
  }
  if (!target) {
    std::optional<SymShape> out;
    const auto s = shape_in(c, 1);
    if (s && s->size() == 1 && (*s)[0].known()) out = fresh_dims(c, static_cast<size_t>((*s)[0].size));
    set_output(c, 0, x.dtype, out);
    return;
  }
  set_output(c, 0, x.dtype, reshape_sym(c, x.shape, *target, allowzero));
}

// ---------------------------------------------------------------------------
// Flatten

int64_t flatten_axis(int64_t opset, const ir::Node& node, int64_t rank) {
  const int64_t axis = node.attr_int("axis", 1);
  if (opset < 11)
    QFORGE_CHECK(axis >= 0 && axis <= rank, Errc::kInvalidArgument, node.describe(),
          "has axis " + std::to_string(axis) + " for rank " + std::to_string(rank),
          "an axis in [0, " + std::to_string(rank) + "] (Flatten before opset 11)");
  return normalize_axis_incl(axis, rank, node);
}

void flatten_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t axis = flatten_axis(ctx.opset(), ctx.node(), x.rank());
  const size_t a = static_cast<size_t>(axis);
  ctx.set_output(0, x.reshape({prod(x.shape(), 0, a), prod(x.shape(), a, x.shape().size())}));
}

void flatten_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  if (!x.shape) {
    set_output(c, 0, x.dtype, fresh_dims(c, 2));
    return;
  }
  const int64_t rank = static_cast<int64_t>(x.shape->size());
  const size_t a = static_cast<size_t>(flatten_axis(c.opset(), c.node(), rank));
  set_output(c, 0, x.dtype,
             SymShape{sym_product(c, *x.shape, 0, a), sym_product(c, *x.shape, a, x.shape->size())});
}

// ---------------------------------------------------------------------------
// Squeeze / Unsqueeze

void squeeze_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  const auto axes = run_ints_arg(ctx, 1, "axes", 13, "input 1 (axes)");
  const Shape& s = x.shape();
  std::vector<bool> drop(s.size(), false);
  if (axes) {
    for (int64_t a : normalize_axes(*axes, x.rank(), node)) {
      QFORGE_CHECK(s[static_cast<size_t>(a)] == 1, Errc::kShapeMismatch, node.describe(),
            "squeezes axis " + std::to_string(a) + " of shape " + shape_str(s),
            "axes whose dimension is 1");
      drop[static_cast<size_t>(a)] = true;
    }
  } else {
    for (size_t i = 0; i < s.size(); ++i) drop[i] = s[i] == 1;
  }
  Shape out;
  for (size_t i = 0; i < s.size(); ++i)
    if (!drop[i]) out.push_back(s[i]);
  ctx.set_output(0, x.reshape(out));
}

void squeeze_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const ir::Node& node = c.node();
  const IntsArg axes = infer_ints_arg(c, 1, "axes", 13);
  if (!x.shape) {
    set_output(c, 0, x.dtype, std::nullopt);
    return;
  }
  const SymShape& s = *x.shape;
  if (axes.present && !axes.values) {
    // Axes known only at run time: the rank is known if their count is.
    std::optional<SymShape> out;
    const auto as = shape_in(c, 1);
    if (as && as->size() == 1 && (*as)[0].known() && (*as)[0].size <= static_cast<int64_t>(s.size()))
      out = fresh_dims(c, s.size() - static_cast<size_t>((*as)[0].size));
    set_output(c, 0, x.dtype, out);
    return;
  }
  std::vector<bool> drop(s.size(), false);
  if (axes.present) {
    for (int64_t a : normalize_axes(*axes.values, static_cast<int64_t>(s.size()), node)) {
      const Dim& d = s[static_cast<size_t>(a)];
      QFORGE_CHECK(!d.known() || d.size == 1, Errc::kShapeMismatch, node.describe(),
            "squeezes axis " + std::to_string(a) + " of shape " + ir::sym_shape_str(s),
            "axes whose dimension is 1");
      drop[static_cast<size_t>(a)] = true;
    }
  } else {
    for (size_t i = 0; i < s.size(); ++i) {
      if (!s[i].known()) {  // might be 1: the result's rank is unknown
        set_output(c, 0, x.dtype, std::nullopt);
        return;
      }
      drop[i] = s[i].size == 1;
    }
  }
  SymShape out;
  for (size_t i = 0; i < s.size(); ++i)
    if (!drop[i]) out.push_back(s[i]);
  set_output(c, 0, x.dtype, out);
}

// Which output positions are the new axes (normalized against the output rank).
std::vector<bool> unsqueeze_positions(const Ints& axes, int64_t out_rank, const ir::Node& node) {
  std::vector<bool> is_new(static_cast<size_t>(out_rank), false);
  for (int64_t a : normalize_axes(axes, out_rank, node)) is_new[static_cast<size_t>(a)] = true;
  return is_new;
}

void unsqueeze_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  const auto axes = run_ints_arg(ctx, 1, "axes", 13, "input 1 (axes)");
  QFORGE_CHECK(axes.has_value(), Errc::kNotFound, node.describe(), "has no axes",
        ctx.opset() < 13 ? "the 'axes' attribute" : "input 1 (axes)");
  const int64_t out_rank = x.rank() + static_cast<int64_t>(axes->size());
  const std::vector<bool> is_new = unsqueeze_positions(*axes, out_rank, node);
  Shape out;
  size_t j = 0;
  for (size_t i = 0; i < is_new.size(); ++i) out.push_back(is_new[i] ? 1 : x.shape()[j++]);
  ctx.set_output(0, x.reshape(out));
}

void unsqueeze_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const ir::Node& node = c.node();
  const IntsArg axes = infer_ints_arg(c, 1, "axes", 13);
  if (c.opset() < 13)
    QFORGE_CHECK(axes.present, Errc::kNotFound, node.describe(), "has no axes", "the 'axes' attribute");
  else
    c.input(1);
  if (!x.shape) {
    set_output(c, 0, x.dtype, std::nullopt);
    return;
  }
  if (!axes.values) {
    std::optional<SymShape> out;
    const auto as = shape_in(c, 1);
    if (as && as->size() == 1 && (*as)[0].known())
      out = fresh_dims(c, x.shape->size() + static_cast<size_t>((*as)[0].size));
    set_output(c, 0, x.dtype, out);
    return;
  }
  const int64_t out_rank = static_cast<int64_t>(x.shape->size() + axes.values->size());
  const std::vector<bool> is_new = unsqueeze_positions(*axes.values, out_rank, node);
  SymShape out;
  size_t j = 0;
  for (size_t i = 0; i < is_new.size(); ++i) out.push_back(is_new[i] ? Dim(1) : (*x.shape)[j++]);
  set_output(c, 0, x.dtype, out);
}

// ---------------------------------------------------------------------------
// Transpose

Ints transpose_perm(const ir::Node& node, int64_t rank) {
  Ints perm;
  if (node.has_attr("perm")) {
    perm = node.attr_ints("perm");
  } else {
    for (int64_t i = rank; i-- > 0;) perm.push_back(i);
  }
  QFORGE_CHECK(static_cast<int64_t>(perm.size()) == rank, Errc::kInvalidArgument, node.describe(),
        "has perm " + ints_str(perm) + " for an input of rank " + std::to_string(rank),
        "a permutation of " + std::to_string(rank) + " axes");
  std::vector<bool> seen(perm.size(), false);
  for (int64_t p : perm) {
    QFORGE_CHECK(p >= 0 && p < rank && !seen[static_cast<size_t>(p)], Errc::kInvalidArgument,
          node.describe(), "has perm " + ints_str(perm),
          "a permutation of 0.." + std::to_string(rank - 1));
    seen[static_cast<size_t>(p)] = true;
  }
  return perm;
}

void transpose_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Ints perm = transpose_perm(ctx.node(), x.rank());
  const Shape& s = x.shape();
  Shape out(s.size());
  for (size_t j = 0; j < perm.size(); ++j) out[j] = s[static_cast<size_t>(perm[j])];
  // The order of the non-trivial axes kept: the bytes don't move.
  int64_t last = -1;
  bool in_order = true;
  for (int64_t p : perm) {
    if (s[static_cast<size_t>(p)] == 1) continue;
    in_order &= p > last;
    last = p;
  }
  if (in_order) {
    ctx.set_output(0, x.reshape(out));
    return;
  }
  const size_t esz = elem_size(x.dtype(), ctx.node());
  const Ints in_st = strides_of(s);
  Ints st(perm.size());
  for (size_t j = 0; j < perm.size(); ++j) st[j] = in_st[static_cast<size_t>(perm[j])];
  Tensor& y = ctx.output(0, x.dtype(), out);
  strided_copy(esz, out, st, x.raw(), y.raw(), ctx.pool());
}

void transpose_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  if (!x.shape) {
    std::optional<SymShape> out;
    if (c.node().has_attr("perm")) out = fresh_dims(c, c.node().attr_ints("perm").size());
    set_output(c, 0, x.dtype, out);
    return;
  }
  const Ints perm = transpose_perm(c.node(), static_cast<int64_t>(x.shape->size()));
  SymShape out;
  for (int64_t p : perm) out.push_back((*x.shape)[static_cast<size_t>(p)]);
  set_output(c, 0, x.dtype, out);
}

// ---------------------------------------------------------------------------
// Concat

int64_t concat_axis_attr(int64_t opset, const ir::Node& node) {
  if (opset < 4) return node.attr_int("axis", 1);
  QFORGE_CHECK(node.has_attr("axis"), Errc::kNotFound, node.describe(), "has no 'axis' attribute",
        "the axis to concatenate on");
  return node.attr_int("axis", 0);
}

void concat_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  QFORGE_CHECK(ctx.num_inputs() >= 1, Errc::kNotFound, node.describe(), "has no inputs", "at least one");
  std::vector<const Tensor*> in;
  for (int i = 0; i < ctx.num_inputs(); ++i) in.push_back(&ctx.input(i));
  const Tensor& x0 = *in[0];
  const int64_t rank = x0.rank();
  require_rank_at_least(node, "input 0", rank, 1);
  const int64_t axis = normalize_axis(concat_axis_attr(ctx.opset(), node), rank, node);
  const size_t a = static_cast<size_t>(axis);
  Shape out = x0.shape();
  out[a] = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = *in[i];
    const std::string what = "input " + std::to_string(i);
    require_same_dtype(node, what.c_str(), t.dtype(), x0.dtype());
    bool ok = t.rank() == rank;
    for (size_t d = 0; ok && d < out.size(); ++d) ok = d == a || t.shape()[d] == x0.shape()[d];
    QFORGE_CHECK(ok, Errc::kShapeMismatch, node.describe(),
          what + " has shape " + shape_str(t.shape()) + " and input 0 " + shape_str(x0.shape()),
          "equal shapes except on axis " + std::to_string(axis));
    out[a] += t.shape()[a];
  }
  if (in.size() == 1) {
    ctx.set_output(0, x0);
    return;
  }
  const size_t esz = elem_size(x0.dtype(), node);
  Tensor& y = ctx.output(0, x0.dtype(), out);
  const int64_t outer = prod(out, 0, a);
  const int64_t inner = prod(out, a + 1, out.size());
  std::vector<size_t> part(in.size());
  size_t row = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    part[i] = static_cast<size_t>(in[i]->shape()[a] * inner) * esz;
    row += part[i];
  }
  char* dst = bytes_of(y);
  if (row == 0 || outer == 0) return;
  if (outer < 64) {
    // Few rows: parallelize within each block.
    for (int64_t o = 0; o < outer; ++o) {
      size_t off = static_cast<size_t>(o) * row;
      for (size_t i = 0; i < in.size(); ++i) {
        par_memcpy(ctx.pool(), dst + off, bytes_of(*in[i]) + static_cast<size_t>(o) * part[i], part[i]);
        off += part[i];
      }
    }
    return;
  }
  par_for(ctx.pool(), outer, grain_for(static_cast<int64_t>(row)), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      char* d = dst + static_cast<size_t>(o) * row;
      for (size_t i = 0; i < in.size(); ++i) {
        copy_bytes(d, bytes_of(*in[i]) + static_cast<size_t>(o) * part[i], part[i]);
        d += part[i];
      }
    }
  });
}

void concat_infer(InferContext& c) {
  const ir::Node& node = c.node();
  QFORGE_CHECK(c.num_inputs() >= 1, Errc::kNotFound, node.describe(), "has no inputs", "at least one");
  std::optional<DType> dt;
  std::optional<size_t> rank;
  for (int i = 0; i < c.num_inputs(); ++i) {
    const ir::ValueInfo& v = c.input(i);
    if (!dt) dt = v.dtype;
    else if (v.dtype && *v.dtype != *dt)
      require_same_dtype(node, ("input " + std::to_string(i)).c_str(), *v.dtype, *dt);
    if (v.shape) {
      QFORGE_CHECK(!rank || *rank == v.shape->size(), Errc::kShapeMismatch, node.describe(),
            "has inputs of ranks " + std::to_string(rank ? *rank : 0) + " and " +
                std::to_string(v.shape->size()),
            "inputs of equal rank");
      rank = v.shape->size();
    }
  }
  if (!rank) {
    set_output(c, 0, dt, std::nullopt);
    return;
  }
  require_rank_at_least(node, "input 0", static_cast<int64_t>(*rank), 1);
  const size_t a = static_cast<size_t>(
      normalize_axis(concat_axis_attr(c.opset(), node), static_cast<int64_t>(*rank), node));
  SymShape out(*rank);
  bool all_known = true, one_input = c.num_inputs() == 1;
  int64_t sum = 0;
  for (int i = 0; i < c.num_inputs(); ++i) {
    const auto& s = c.input(i).shape;
    if (!s) {
      all_known = false;
      continue;
    }
    for (size_t d = 0; d < *rank; ++d) {
      if (d == a) continue;
      const Dim& v = (*s)[d];
      if (v.known()) {
        QFORGE_CHECK(!out[d].known() || out[d].size == v.size, Errc::kShapeMismatch, node.describe(),
              "input " + std::to_string(i) + " has dimension " + std::to_string(d) + " = " +
                  std::to_string(v.size) + " where another input has " + out[d].str(),
              "equal shapes except on axis " + std::to_string(a));
        out[d] = v;
      } else if (!out[d].known() && out[d].symbol.empty()) {
        out[d] = v;
      }
    }
    if ((*s)[a].known()) sum += (*s)[a].size;
    else all_known = false;
  }
  if (one_input && c.input(0).shape) out[a] = (*c.input(0).shape)[a];
  else out[a] = all_known ? Dim(sum) : c.fresh_dim();
  for (size_t d = 0; d < *rank; ++d)
    if (d != a && !out[d].known() && out[d].symbol.empty()) out[d] = c.fresh_dim();
  set_output(c, 0, dt, out);
}

// ---------------------------------------------------------------------------
// Split

// The sizes of the parts; `dim` may be unknown (-1) in inference, where an
// unknown part is -1.
Ints split_sizes(int64_t opset, const ir::Node& node, const std::optional<Ints>& split, bool split_given,
                 int64_t dim, int64_t n_out) {
  if (split_given) {
    if (!split) return Ints(static_cast<size_t>(n_out), -1);
    QFORGE_CHECK(static_cast<int64_t>(split->size()) == n_out, Errc::kInvalidArgument, node.describe(),
          "has split " + ints_str(*split) + " for " + std::to_string(n_out) + " outputs",
          "one size per output");
    int64_t sum = 0;
    for (int64_t v : *split) {
      QFORGE_CHECK(v >= 0, Errc::kInvalidArgument, node.describe(), "has split " + ints_str(*split),
            "sizes >= 0");
      sum += v;
    }
    QFORGE_CHECK(dim < 0 || sum == dim, Errc::kShapeMismatch, node.describe(),
          "has split " + ints_str(*split) + " summing to " + std::to_string(sum) +
              " for a dimension of " + std::to_string(dim),
          "sizes that add up to the dimension");
    return *split;
  }
  QFORGE_CHECK(n_out >= 1, Errc::kInvalidArgument, node.describe(), "has no outputs", "at least one");
  if (opset >= 18 && node.has_attr("num_outputs"))
    QFORGE_CHECK(node.attr_int("num_outputs", 0) == n_out, Errc::kInvalidArgument, node.describe(),
          "has num_outputs = " + std::to_string(node.attr_int("num_outputs", 0)) + " and " +
              std::to_string(n_out) + " outputs",
          "num_outputs equal to the number of outputs");
  if (dim < 0) return Ints(static_cast<size_t>(n_out), -1);
  if (opset >= 18) {
    // Equal chunks of ceil(dim / n); the last one is smaller if needed.
    const int64_t chunk = (dim + n_out - 1) / n_out;
    const int64_t last = dim - chunk * (n_out - 1);
    QFORGE_CHECK(last >= 0, Errc::kInvalidArgument, node.describe(),
          "splits a dimension of " + std::to_string(dim) + " into " + std::to_string(n_out) +
              " chunks of " + std::to_string(chunk),
          "num_outputs whose chunks fit the dimension");
    Ints r(static_cast<size_t>(n_out), chunk);
    r.back() = last;
    return r;
  }
  QFORGE_CHECK(dim % n_out == 0, Errc::kShapeMismatch, node.describe(),
        "splits a dimension of " + std::to_string(dim) + " into " + std::to_string(n_out) +
            " equal parts",
        "a dimension divisible by the number of outputs (or a 'split')");
  return Ints(static_cast<size_t>(n_out), dim / n_out);
}

void split_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  require_rank_at_least(node, "input 0", x.rank(), 1);
  const int64_t axis = normalize_axis(node.attr_int("axis", 0), x.rank(), node);
  const size_t a = static_cast<size_t>(axis);
  std::optional<Ints> split;
  if (ctx.opset() >= 13 || (ctx.opset() < 2 && ctx.has_input(1)))
    split = ctx.has_input(1) ? std::optional<Ints>(to_int64s(ctx.input(1), node, "input 1 (split)"))
                             : std::nullopt;
  else if (node.has_attr("split"))
    split = node.attr_ints("split");
  const int64_t n_out = ctx.num_outputs();
  const Ints sizes = split_sizes(ctx.opset(), node, split, split.has_value(), x.shape()[a], n_out);
  const size_t esz = elem_size(x.dtype(), node);
  const int64_t outer = prod(x.shape(), 0, a);
  const int64_t inner = prod(x.shape(), a + 1, x.shape().size());
  const size_t in_row = static_cast<size_t>(x.shape()[a] * inner) * esz;
  int64_t start = 0;
  for (int64_t j = 0; j < n_out; ++j) {
    const int64_t len = sizes[static_cast<size_t>(j)];
    Shape os = x.shape();
    os[a] = len;
    const int64_t off = start;
    start += len;
    if (!ctx.wants_output(static_cast<int>(j))) continue;
    if (outer == 1 && can_view(x) && len * inner > 0) {
      ctx.set_output(static_cast<int>(j), sub_view(x, off * inner, os, esz));
      continue;
    }
    Tensor& y = ctx.output(static_cast<int>(j), x.dtype(), os);
    const size_t row = static_cast<size_t>(len * inner) * esz;
    if (row == 0) continue;
    const char* src = bytes_of(x) + static_cast<size_t>(off * inner) * esz;
    char* dst = bytes_of(y);
    par_for(ctx.pool(), outer, grain_for(static_cast<int64_t>(row)), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o)
        copy_bytes(dst + static_cast<size_t>(o) * row, src + static_cast<size_t>(o) * in_row, row);
    });
  }
}

void split_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const ir::Node& node = c.node();
  const int64_t n_out = c.num_outputs();
  if (!x.shape) {
    for (int j = 0; j < n_out; ++j) set_output(c, j, x.dtype, std::nullopt);
    return;
  }
  const int64_t rank = static_cast<int64_t>(x.shape->size());
  require_rank_at_least(node, "input 0", rank, 1);
  const size_t a = static_cast<size_t>(normalize_axis(node.attr_int("axis", 0), rank, node));
  std::optional<Ints> split;
  bool given = false;
  if (c.opset() >= 13 || (c.opset() < 2 && c.has_input(1))) {
    given = c.has_input(1);
    if (given) split = constant_ints(c, 1);
  } else if (node.has_attr("split")) {
    given = true;
    split = node.attr_ints("split");
  }
  const Dim& d = (*x.shape)[a];
  const Ints sizes = split_sizes(c.opset(), node, split, given, d.known() ? d.size : -1, n_out);
  for (int j = 0; j < n_out; ++j) {
    SymShape s = *x.shape;
    const int64_t v = sizes[static_cast<size_t>(j)];
    s[a] = v >= 0 ? Dim(v) : (n_out == 1 ? d : c.fresh_dim());
    set_output(c, j, x.dtype, s);
  }
}

// ---------------------------------------------------------------------------
// Slice

struct SliceAxis {
  int64_t start = 0, step = 1, count = 0;
};

// Clamps start/end per the ONNX spec and counts the elements taken.
SliceAxis slice_axis(int64_t start, int64_t end, int64_t step, int64_t dim, const ir::Node& node) {
  QFORGE_CHECK(step != 0, Errc::kInvalidArgument, node.describe(), "has a step of 0", "non-zero steps");
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  SliceAxis r;
  r.step = step;
  if (dim == 0) return r;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    r.count = end > start ? 1 + (end - start - 1) / step : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    const int64_t neg = step == std::numeric_limits<int64_t>::min() ? std::numeric_limits<int64_t>::max() : -step;
    r.count = start > end ? 1 + (start - end - 1) / neg : 0;
  }
  r.start = r.count > 0 ? start : 0;
  return r;
}

struct SliceArgs {
  bool known = false;
  Ints starts, ends, axes, steps;
  bool axes_known = false;  // axes known even when starts/ends are not
};

SliceArgs slice_args_infer(const InferContext& c) {
  SliceArgs a;
  const ir::Node& node = c.node();
  if (c.opset() < 10) {
    a.starts = node.attr_ints("starts");
    a.ends = node.attr_ints("ends");
    a.axes = node.attr_ints("axes");
    a.known = a.axes_known = true;
    return a;
  }
  c.input(1);
  c.input(2);
  const auto st = constant_ints(c, 1), en = constant_ints(c, 2);
  std::optional<Ints> ax = Ints{}, sp = Ints{};
  if (c.has_input(3)) ax = constant_ints(c, 3);
  if (c.has_input(4)) sp = constant_ints(c, 4);
  a.axes_known = ax.has_value();
  if (ax) a.axes = *ax;
  a.known = st && en && ax && sp;
  if (a.known) {
    a.starts = *st;
    a.ends = *en;
    a.steps = *sp;
  }
  return a;
}

// Fills per-axis (start, step, count) for a concrete shape.
std::vector<SliceAxis> slice_plan(const Shape& shape, const SliceArgs& a, const ir::Node& node) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  QFORGE_CHECK(a.starts.size() == a.ends.size(), Errc::kInvalidArgument, node.describe(),
        "has " + std::to_string(a.starts.size()) + " starts and " + std::to_string(a.ends.size()) +
            " ends",
        "as many starts as ends");
  Ints axes = a.axes;
  if (axes.empty())
    for (size_t i = 0; i < a.starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  QFORGE_CHECK(axes.size() == a.starts.size(), Errc::kInvalidArgument, node.describe(),
        "has " + std::to_string(axes.size()) + " axes for " + std::to_string(a.starts.size()) +
            " starts",
        "one axis per start");
  QFORGE_CHECK(a.steps.empty() || a.steps.size() == a.starts.size(), Errc::kInvalidArgument,
        node.describe(),
        "has " + std::to_string(a.steps.size()) + " steps for " + std::to_string(a.starts.size()) +
            " starts",
        "one step per start");
  axes = normalize_axes(axes, rank, node);
  std::vector<SliceAxis> plan(shape.size());
  for (size_t k = 0; k < shape.size(); ++k) plan[k] = {0, 1, shape[k]};
  for (size_t i = 0; i < axes.size(); ++i) {
    const size_t k = static_cast<size_t>(axes[i]);
    plan[k] = slice_axis(a.starts[i], a.ends[i], a.steps.empty() ? 1 : a.steps[i], shape[k], node);
  }
  return plan;
}

void slice_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  SliceArgs a;
  if (ctx.opset() < 10) {
    QFORGE_CHECK(node.has_attr("starts") && node.has_attr("ends"), Errc::kNotFound, node.describe(),
          "lacks 'starts' or 'ends'", "both attributes (Slice before opset 10)");
    a.starts = node.attr_ints("starts");
    a.ends = node.attr_ints("ends");
    a.axes = node.attr_ints("axes");
  } else {
    a.starts = to_int64s(ctx.input(1), node, "input 1 (starts)");
    a.ends = to_int64s(ctx.input(2), node, "input 2 (ends)");
    if (ctx.has_input(3)) a.axes = to_int64s(ctx.input(3), node, "input 3 (axes)");
    if (ctx.has_input(4)) a.steps = to_int64s(ctx.input(4), node, "input 4 (steps)");
    if (ctx.has_input(3))
      QFORGE_CHECK(!a.axes.empty() || a.starts.empty(), Errc::kInvalidArgument, node.describe(),
            "has empty axes for " + std::to_string(a.starts.size()) + " starts", "one axis per start");
  }
  const Shape& s = x.shape();
  const std::vector<SliceAxis> plan = slice_plan(s, a, node);
  Shape out(s.size());
  for (size_t k = 0; k < s.size(); ++k) out[k] = plan[k].count;
  const size_t esz = elem_size(x.dtype(), node);
  const Ints in_st = strides_of(s);
  int64_t base = 0;
  for (size_t k = 0; k < s.size(); ++k) base += plan[k].start * in_st[k];
  if (shape_numel(out) > 0 && can_view(x)) {
    // Contiguous result: leading axes of count 1, one partial axis of step
    // 1, full axes after it.
    bool contiguous = true;
    size_t k = s.size();
    while (k > 0 && plan[k - 1].count == s[k - 1] && (plan[k - 1].step == 1 || s[k - 1] <= 1)) --k;
    if (k > 0) {
      const SliceAxis& p = plan[k - 1];
      contiguous = p.step == 1 || p.count <= 1;
      for (size_t j = 0; j + 1 < k; ++j) contiguous &= plan[j].count == 1;
    }
    if (contiguous) {
      ctx.set_output(0, sub_view(x, base, out, esz));
      return;
    }
  }
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  Ints st(s.size());
  for (size_t k = 0; k < s.size(); ++k) st[k] = in_st[k] * plan[k].step;
  strided_copy(esz, out, st, bytes_of(x) + static_cast<size_t>(base) * esz, y.raw(), ctx.pool());
}

void slice_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const ir::Node& node = c.node();
  const SliceArgs a = slice_args_infer(c);
  if (!x.shape) {
    set_output(c, 0, x.dtype, std::nullopt);
    return;
  }
  const SymShape& s = *x.shape;
  const int64_t rank = static_cast<int64_t>(s.size());
  if (!a.known) {
    SymShape out = s;
    if (a.axes_known && !a.axes.empty()) {
      for (int64_t k : normalize_axes(a.axes, rank, node)) out[static_cast<size_t>(k)] = c.fresh_dim();
    } else {
      out = fresh_dims(c, s.size());
    }
    set_output(c, 0, x.dtype, out);
    return;
  }
  // Run the plan on a stand-in shape where unknown dims are huge, then keep
  // only what does not depend on them.
  QFORGE_CHECK(a.starts.size() == a.ends.size(), Errc::kInvalidArgument, node.describe(),
        "has " + std::to_string(a.starts.size()) + " starts and " + std::to_string(a.ends.size()) +
            " ends",
        "as many starts as ends");
  Ints axes = a.axes;
  if (axes.empty())
    for (size_t i = 0; i < a.starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  QFORGE_CHECK(axes.size() == a.starts.size() && (a.steps.empty() || a.steps.size() == a.starts.size()),
        Errc::kInvalidArgument, node.describe(), "has starts, ends, axes and steps of different lengths",
        "one axis and one step per start");
  axes = normalize_axes(axes, rank, node);
  SymShape out = s;
  for (size_t i = 0; i < axes.size(); ++i) {
    const size_t k = static_cast<size_t>(axes[i]);
    const int64_t step = a.steps.empty() ? 1 : a.steps[i];
    QFORGE_CHECK(step != 0, Errc::kInvalidArgument, node.describe(), "has a step of 0", "non-zero steps");
    const Dim& d = s[k];
    if (d.known()) {
      out[k] = Dim(slice_axis(a.starts[i], a.ends[i], step, d.size, node).count);
      continue;
    }
    // The whole axis, whatever its size, keeps the dimension.
    constexpr int64_t kBig = std::numeric_limits<int32_t>::max();
    const int64_t st = a.starts[i], en = a.ends[i];
    const bool whole_fwd = step == 1 && (st == 0 || st <= -kBig) && en >= kBig;
    const bool whole_bwd = step == -1 && (st == -1 || st >= kBig) && en <= -kBig;
    out[k] = (whole_fwd || whole_bwd) ? d : c.fresh_dim();
  }
  set_output(c, 0, x.dtype, out);
}

// ---------------------------------------------------------------------------
// Gather

void gather_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& ind = ctx.input(1);
  const ir::Node& node = ctx.node();
  require_rank_at_least(node, "input 0 (data)", x.rank(), 1);
  const size_t a = static_cast<size_t>(normalize_axis(node.attr_int("axis", 0), x.rank(), node));
  const Shape& s = x.shape();
  const int64_t dim = s[a];
  const Ints idx = read_indices(ind, dim, node, "input 1 (indices)");
  Shape out(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(a));
  out.insert(out.end(), ind.shape().begin(), ind.shape().end());
  out.insert(out.end(), s.begin() + static_cast<std::ptrdiff_t>(a) + 1, s.end());
  const size_t esz = elem_size(x.dtype(), node);
  const int64_t outer = prod(s, 0, a), inner = prod(s, a + 1, s.size());
  const int64_t n = static_cast<int64_t>(idx.size());
  if (outer == 1 && n == 1 && inner > 0 && can_view(x)) {
    ctx.set_output(0, sub_view(x, idx[0] * inner, out, esz));
    return;
  }
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  by_width(esz, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(x.raw());
    T* dst = static_cast<T*>(y.raw());
    const int64_t total = outer * n;
    par_for(ctx.pool(), total, grain_for(inner * static_cast<int64_t>(esz)), [&](int64_t b, int64_t e) {
      int64_t o = b / n, j = b % n;
      const T* so = src + o * dim * inner;  // the data block of outer index o
      if (inner == 1) {
        for (int64_t t = b; t < e; ++t) {
          dst[t] = so[idx[static_cast<size_t>(j)]];
          if (++j == n) {
            j = 0;
            so += dim;
          }
        }
        return;
      }
      for (int64_t t = b; t < e; ++t) {
        std::memcpy(dst + t * inner, so + idx[static_cast<size_t>(j)] * inner,
                    static_cast<size_t>(inner) * sizeof(T));
        if (++j == n) {
          j = 0;
          so += dim * inner;
        }
      }
    });
  });
}

void gather_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const ir::ValueInfo& ind = c.input(1);
  if (ind.dtype && *ind.dtype != DType::kI64 && *ind.dtype != DType::kI32)
    bad_type(c.node(), "input 1 (indices)", *ind.dtype, "i64 or i32");
  if (!x.shape || !ind.shape) {
    set_output(c, 0, x.dtype, std::nullopt);
    return;
  }
  const SymShape& s = *x.shape;
  require_rank_at_least(c.node(), "input 0 (data)", static_cast<int64_t>(s.size()), 1);
  const size_t a = static_cast<size_t>(
      normalize_axis(c.node().attr_int("axis", 0), static_cast<int64_t>(s.size()), c.node()));
  SymShape out(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(a));
  out.insert(out.end(), ind.shape->begin(), ind.shape->end());
  out.insert(out.end(), s.begin() + static_cast<std::ptrdiff_t>(a) + 1, s.end());
  set_output(c, 0, x.dtype, out);
}

// ---------------------------------------------------------------------------
// GatherElements, ScatterElements (and the old Scatter)

// Checks data/indices shapes of the *Elements ops; returns the axis.
size_t elements_axis(const ir::Node& node, const Tensor& data, const Tensor& ind) {
  require_rank_at_least(node, "input 0 (data)", data.rank(), 1);
  const size_t a = static_cast<size_t>(normalize_axis(node.attr_int("axis", 0), data.rank(), node));
  bool ok = ind.rank() == data.rank();
  for (size_t d = 0; ok && d < ind.shape().size(); ++d)
    ok = d == a || ind.shape()[d] <= data.shape()[d];
  QFORGE_CHECK(ok, Errc::kShapeMismatch, node.describe(),
        "has indices of shape " + shape_str(ind.shape()) + " for data of shape " +
            shape_str(data.shape()),
        "indices of the data's rank, no larger than the data except on axis " + std::to_string(a));
  return a;
}

// Calls f(row_index, data_base, jstride) per row of the indices' last axis,
// where element j of the row maps to data offset data_base + j * jstride +
// index * data_stride[axis].
struct ElementsWalk {
  Shape ishape;
  Ints dstride;
  size_t axis;
  int64_t rows, n;
  int64_t jstride;
};
ElementsWalk elements_walk(const Tensor& data, const Tensor& ind, size_t axis) {
  ElementsWalk w;
  w.ishape = ind.shape();
  w.dstride = strides_of(data.shape());
  w.axis = axis;
  const size_t r = w.ishape.size();
  w.n = w.ishape[r - 1];
  w.rows = prod(w.ishape, 0, r - 1);
  w.jstride = axis == r - 1 ? 0 : 1;
  return w;
}
// data offset (excluding the axis coordinate) of the first element of `row`.
int64_t elements_row_base(const ElementsWalk& w, int64_t row) {
  int64_t base = 0;
  for (size_t k = w.ishape.size() - 1; k-- > 0;) {
    const int64_t c = row % w.ishape[k];
    row /= w.ishape[k];
    if (k != w.axis) base += c * w.dstride[k];
  }
  return base;
}

void gather_elements_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& ind = ctx.input(1);
  const ir::Node& node = ctx.node();
  const size_t a = elements_axis(node, x, ind);
  const Ints idx = read_indices(ind, x.shape()[a], node, "input 1 (indices)");
  const size_t esz = elem_size(x.dtype(), node);
  Tensor& y = ctx.output(0, x.dtype(), ind.shape());
  if (y.numel() == 0) return;
  const ElementsWalk w = elements_walk(x, ind, a);
  const int64_t astride = w.dstride[a];
  by_width(esz, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(x.raw());
    T* dst = static_cast<T*>(y.raw());
    par_for(ctx.pool(), w.rows, grain_for(w.n * 8), [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        const int64_t base = elements_row_base(w, row);
        const int64_t* ip = idx.data() + row * w.n;
        T* dp = dst + row * w.n;
        for (int64_t j = 0; j < w.n; ++j) dp[j] = src[base + j * w.jstride + ip[j] * astride];
      }
    });
  });
}

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

Reduction read_reduction(const OpContext& ctx, bool allowed) {
  if (!allowed) return Reduction::kNone;
  const std::string r = ctx.node().attr_string("reduction", "none");
  if (r == "none") return Reduction::kNone;
  if (r == "add") return Reduction::kAdd;
  if (r == "mul") return Reduction::kMul;
  if (ctx.opset() >= 18 && r == "max") return Reduction::kMax;
  if (ctx.opset() >= 18 && r == "min") return Reduction::kMin;
  fail(ctx.node(), Errc::kInvalidArgument, "has reduction '" + r + "'",
       ctx.opset() >= 18 ? "none, add, mul, max or min" : "none, add or mul");
}

template <typename T>
inline T reduce_one(Reduction r, T a, T b) {
  switch (r) {
    case Reduction::kAdd:
      if constexpr (std::is_same_v<T, bool>) return a || b;
      else return static_cast<T>(a + b);
    case Reduction::kMul:
      if constexpr (std::is_same_v<T, bool>) return a && b;
      else return static_cast<T>(a * b);
    case Reduction::kMax: return std::max(a, b);
    case Reduction::kMin: return std::min(a, b);
    default: return b;
  }
}

// Dispatches on the real element type when a reduction needs arithmetic,
// on the width otherwise.
template <typename F>
void scatter_dispatch(DType dt, Reduction red, const ir::Node& node, F&& f) {
  if (red == Reduction::kNone) {
    by_width(elem_size(dt, node), f);
    return;
  }
  if (dt == DType::kF16 || dt == DType::kBF16)
    fail(node, Errc::kUnsupported,
         "has a reduction on " + std::string(dtype_name(dt)) + " data",
         "reduction 'none' for f16/bf16, or f32, f64, integer or bool data");
  dispatch_any(dt, node, f);
}

void scatter_elements_impl(OpContext& ctx, bool reduction_allowed) {
  const Tensor& x = ctx.input(0);
  const Tensor& ind = ctx.input(1);
  const Tensor& upd = ctx.input(2);
  const ir::Node& node = ctx.node();
  const size_t a = elements_axis(node, x, ind);
  QFORGE_CHECK(upd.shape() == ind.shape(), Errc::kShapeMismatch, node.describe(),
        "has updates of shape " + shape_str(upd.shape()) + " for indices of shape " +
            shape_str(ind.shape()),
        "updates of the same shape as the indices");
  require_same_dtype(node, "input 2 (updates)", upd.dtype(), x.dtype());
  const Reduction red = read_reduction(ctx, reduction_allowed);
  const Ints idx = read_indices(ind, x.shape()[a], node, "input 1 (indices)");
  Tensor& y = ctx.output(0, x.dtype(), x.shape());
  par_memcpy(ctx.pool(), bytes_of(y), bytes_of(x), x.nbytes());
  if (ind.numel() == 0) return;
  const ElementsWalk w = elements_walk(x, ind, a);
  const int64_t astride = w.dstride[a];
  scatter_dispatch(x.dtype(), red, node, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(upd.raw());
    T* dst = static_cast<T*>(y.raw());
    // Serial: with duplicate indices the order matters.
    for (int64_t row = 0; row < w.rows; ++row) {
      const int64_t base = elements_row_base(w, row);
      const int64_t* ip = idx.data() + row * w.n;
      const T* upr = up + row * w.n;
      if (red == Reduction::kNone) {
        for (int64_t j = 0; j < w.n; ++j) dst[base + j * w.jstride + ip[j] * astride] = upr[j];
      } else {
        for (int64_t j = 0; j < w.n; ++j) {
          T& o = dst[base + j * w.jstride + ip[j] * astride];
          o = reduce_one<T>(red, o, upr[j]);
        }
      }
    }
  });
}

void gather_elements_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const ir::ValueInfo& ind = c.input(1);
  if (x.shape && ind.shape)
    QFORGE_CHECK(x.shape->size() == ind.shape->size(), Errc::kShapeMismatch, c.node().describe(),
          "has indices of rank " + std::to_string(ind.shape->size()) + " for data of rank " +
              std::to_string(x.shape->size()),
          "indices of the data's rank");
  set_output(c, 0, x.dtype, ind.shape);
}

void scatter_infer(InferContext& c) {
  c.input(1);
  c.input(2);
  infer_same_as(c);
}

// ---------------------------------------------------------------------------
// GatherND, ScatterND

// Data offsets (in elements) of each index tuple of `ind` (last axis k)
// over data dims [b, b + k), after batch_dims b. Returns offsets per tuple
// including the batch offset.
Ints nd_offsets(const Tensor& data, const Tensor& ind, int64_t b, const ir::Node& node) {
  const Shape& ds = data.shape();
  const Shape& is = ind.shape();
  const int64_t q = ind.rank(), r = data.rank();
  require_rank_at_least(node, "input 1 (indices)", q, 1);
  QFORGE_CHECK(b >= 0 && b < std::min(q, r), Errc::kInvalidArgument, node.describe(),
        "has batch_dims = " + std::to_string(b) + " for data of rank " + std::to_string(r) +
            " and indices of rank " + std::to_string(q),
        "batch_dims below both ranks");
  for (size_t i = 0; i < static_cast<size_t>(b); ++i)
    QFORGE_CHECK(ds[i] == is[i], Errc::kShapeMismatch, node.describe(),
          "has data of shape " + shape_str(ds) + " and indices of shape " + shape_str(is),
          "equal leading batch dimensions");
  const int64_t k = is.back();
  QFORGE_CHECK(k >= 1 && k <= r - b, Errc::kShapeMismatch, node.describe(),
        "has indices whose last dimension is " + std::to_string(k) + " for data of rank " +
            std::to_string(r),
        "a last dimension in [1, " + std::to_string(r - b) + "]");
  const Ints raw = read_index_tensor(ind, node, "input 1 (indices)");
  const Ints dst = strides_of(ds);
  const int64_t tuples = static_cast<int64_t>(raw.size()) / k;
  const int64_t per_batch = prod(is, static_cast<size_t>(b), is.size() - 1);
  const int64_t batch_stride = b > 0 ? dst[static_cast<size_t>(b - 1)] : 0;
  Ints off(static_cast<size_t>(tuples));
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t o = per_batch > 0 ? (t / per_batch) * batch_stride : 0;
    for (int64_t m = 0; m < k; ++m) {
      const size_t dim_i = static_cast<size_t>(b + m);
      int64_t v = raw[static_cast<size_t>(t * k + m)];
      if (!index_ok(v, ds[dim_i])) bad_index(node, "input 1 (indices)", v, ds[dim_i]);
      if (v < 0) v += ds[dim_i];
      o += v * dst[dim_i];
    }
    off[static_cast<size_t>(t)] = o;
  }
  return off;
}

int64_t gathernd_batch_dims(const OpContext& ctx) {
  return ctx.opset() >= 12 ? ctx.node().attr_int("batch_dims", 0) : 0;
}

void gathernd_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& ind = ctx.input(1);
  const ir::Node& node = ctx.node();
  const int64_t b = gathernd_batch_dims(ctx);
  const Ints off = nd_offsets(x, ind, b, node);
  const Shape& is = ind.shape();
  const size_t k0 = static_cast<size_t>(b + is.back());
  Shape out(is.begin(), is.end() - 1);
  out.insert(out.end(), x.shape().begin() + static_cast<std::ptrdiff_t>(k0), x.shape().end());
  const int64_t slice = prod(x.shape(), k0, x.shape().size());
  const size_t esz = elem_size(x.dtype(), node);
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  by_width(esz, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(x.raw());
    T* dst = static_cast<T*>(y.raw());
    par_for(ctx.pool(), static_cast<int64_t>(off.size()), grain_for(slice * static_cast<int64_t>(esz)),
            [&](int64_t lo, int64_t hi) {
              for (int64_t t = lo; t < hi; ++t) {
                const T* sp = src + off[static_cast<size_t>(t)];
                T* dp = dst + t * slice;
                if (slice == 1) *dp = *sp;
                else std::memcpy(dp, sp, static_cast<size_t>(slice) * sizeof(T));
              }
            });
  });
}

void gathernd_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const ir::ValueInfo& ind = c.input(1);
  const int64_t b = c.opset() >= 12 ? c.node().attr_int("batch_dims", 0) : 0;
  if (!x.shape || !ind.shape || ind.shape->empty() || !ind.shape->back().known()) {
    set_output(c, 0, x.dtype, std::nullopt);
    return;
  }
  const int64_t k = ind.shape->back().size;
  const int64_t r = static_cast<int64_t>(x.shape->size());
  QFORGE_CHECK(k >= 1 && b >= 0 && b + k <= r, Errc::kShapeMismatch, c.node().describe(),
        "has indices whose last dimension is " + std::to_string(k) + " for data of rank " +
            std::to_string(r) + " and batch_dims " + std::to_string(b),
        "a last dimension in [1, rank - batch_dims]");
  SymShape out(ind.shape->begin(), ind.shape->end() - 1);
  out.insert(out.end(), x.shape->begin() + static_cast<std::ptrdiff_t>(b + k), x.shape->end());
  set_output(c, 0, x.dtype, out);
}

void scatternd_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& ind = ctx.input(1);
  const Tensor& upd = ctx.input(2);
  const ir::Node& node = ctx.node();
  const Ints off = nd_offsets(x, ind, 0, node);
  const Shape& is = ind.shape();
  const size_t k = static_cast<size_t>(is.back());
  Shape want(is.begin(), is.end() - 1);
  want.insert(want.end(), x.shape().begin() + static_cast<std::ptrdiff_t>(k), x.shape().end());
  QFORGE_CHECK(upd.shape() == want, Errc::kShapeMismatch, node.describe(),
        "has updates of shape " + shape_str(upd.shape()), "updates of shape " + shape_str(want));
  require_same_dtype(node, "input 2 (updates)", upd.dtype(), x.dtype());
  const Reduction red = read_reduction(ctx, ctx.opset() >= 16);
  const int64_t slice = prod(x.shape(), k, x.shape().size());
  Tensor& y = ctx.output(0, x.dtype(), x.shape());
  par_memcpy(ctx.pool(), bytes_of(y), bytes_of(x), x.nbytes());
  if (slice == 0) return;
  scatter_dispatch(x.dtype(), red, node, [&](auto z) {
    using T = decltype(z);
    const T* up = static_cast<const T*>(upd.raw());
    T* dst = static_cast<T*>(y.raw());
    for (size_t t = 0; t < off.size(); ++t) {
      T* dp = dst + off[t];
      const T* sp = up + static_cast<int64_t>(t) * slice;
      if (red == Reduction::kNone) {
        std::memcpy(dp, sp, static_cast<size_t>(slice) * sizeof(T));
      } else {
        for (int64_t j = 0; j < slice; ++j) dp[j] = reduce_one<T>(red, dp[j], sp[j]);
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Expand, Tile

void expand_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  const Ints target = to_int64s(ctx.input(1), node, "input 1 (shape)");
  for (int64_t v : target)
    QFORGE_CHECK(v >= 0, Errc::kInvalidArgument, node.describe(), "has shape " + ints_str(target),
          "dimensions >= 0");
  const Shape out = broadcast_shapes(x.shape(), target, node);
  if (out == x.shape()) {
    ctx.set_output(0, x);
    return;
  }
  const size_t esz = elem_size(x.dtype(), node);
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  strided_copy(esz, out, broadcast_strides(x.shape(), out), x.raw(), y.raw(), ctx.pool());
}

void expand_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  c.input(1);
  const auto target = constant_ints(c, 1);
  if (target && x.shape) {
    set_output(c, 0, x.dtype, broadcast_sym(*x.shape, ir::to_sym(*target), c.node()));
    return;
  }
  const auto ts = shape_in(c, 1);
  if (!x.shape || !ts || ts->size() != 1 || !(*ts)[0].known()) {
    set_output(c, 0, x.dtype, std::nullopt);
    return;
  }
  const size_t r = x.shape->size(), k = static_cast<size_t>((*ts)[0].size);
  const size_t n = std::max(r, k);
  SymShape out(n);
  for (size_t i = 0; i < n; ++i) {
    const bool has = i >= n - r;
    const Dim d = has ? (*x.shape)[i - (n - r)] : Dim(1);
    out[i] = (d.known() && d.size != 1) ? d : c.fresh_dim();
  }
  set_output(c, 0, x.dtype, out);
}

void tile_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  const Ints rep = to_int64s(ctx.input(1), node, "input 1 (repeats)");
  QFORGE_CHECK(static_cast<int64_t>(rep.size()) == x.rank(), Errc::kShapeMismatch, node.describe(),
        "has repeats " + ints_str(rep) + " for an input of rank " + std::to_string(x.rank()),
        "one repeat per input dimension");
  const Shape& s = x.shape();
  Shape out(s.size()), wide;
  Ints st;
  const Ints in_st = strides_of(s);
  bool identity = true;
  for (size_t k = 0; k < s.size(); ++k) {
    QFORGE_CHECK(rep[k] >= 0, Errc::kInvalidArgument, node.describe(), "has repeats " + ints_str(rep),
          "repeats >= 0");
    out[k] = mul_dim(s[k], rep[k], node);
    identity &= rep[k] == 1;
    wide.push_back(rep[k]);
    st.push_back(0);
    wide.push_back(s[k]);
    st.push_back(in_st[k]);
  }
  if (identity) {
    ctx.set_output(0, x);
    return;
  }
  const size_t esz = elem_size(x.dtype(), node);
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  strided_copy(esz, wide, st, x.raw(), y.raw(), ctx.pool());
}

void tile_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  c.input(1);
  const auto rep = constant_ints(c, 1);
  if (!x.shape) {
    set_output(c, 0, x.dtype, rep ? std::optional<SymShape>(fresh_dims(c, rep->size())) : std::nullopt);
    return;
  }
  if (!rep) {
    set_output(c, 0, x.dtype, fresh_dims(c, x.shape->size()));
    return;
  }
  QFORGE_CHECK(rep->size() == x.shape->size(), Errc::kShapeMismatch, c.node().describe(),
        "has repeats " + ints_str(*rep) + " for an input of rank " + std::to_string(x.shape->size()),
        "one repeat per input dimension");
  SymShape out;
  for (size_t k = 0; k < rep->size(); ++k) {
    QFORGE_CHECK((*rep)[k] >= 0, Errc::kInvalidArgument, c.node().describe(),
          "has repeats " + ints_str(*rep), "repeats >= 0");
    out.push_back(dim_mul(c, (*x.shape)[k], (*rep)[k]));
  }
  set_output(c, 0, x.dtype, out);
}

// ---------------------------------------------------------------------------
// Pad

enum class PadMode { kConstant, kReflect, kEdge, kWrap };

PadMode pad_mode(const OpContext& ctx) {
  const std::string m = ctx.node().attr_string("mode", "constant");
  if (m == "constant") return PadMode::kConstant;
  if (m == "reflect") return PadMode::kReflect;
  if (m == "edge") return PadMode::kEdge;
  if (m == "wrap" && ctx.opset() >= 19) return PadMode::kWrap;
  fail(ctx.node(), Errc::kInvalidArgument, "has mode '" + m + "'",
       ctx.opset() >= 19 ? "constant, reflect, edge or wrap" : "constant, reflect or edge");
}

// Per-axis (begin, end) pads for rank `rank` from the pads list and axes.
Ints pad_full(const Ints& pads, const std::optional<Ints>& axes, int64_t rank, const ir::Node& node) {
  Ints ax;
  if (axes) ax = normalize_axes(*axes, rank, node);
  else
    for (int64_t i = 0; i < rank; ++i) ax.push_back(i);
  QFORGE_CHECK(pads.size() == 2 * ax.size(), Errc::kShapeMismatch, node.describe(),
        "has " + std::to_string(pads.size()) + " pads for " + std::to_string(ax.size()) + " axes",
        "2 pads per axis (all begins, then all ends)");
  Ints full(static_cast<size_t>(2 * rank), 0);
  for (size_t i = 0; i < ax.size(); ++i) {
    full[static_cast<size_t>(ax[i])] = pads[i];
    full[static_cast<size_t>(ax[i] + rank)] = pads[i + ax.size()];
  }
  return full;
}

Ints pad_pads_run(const OpContext& ctx, int64_t rank) {
  const ir::Node& node = ctx.node();
  if (ctx.opset() < 11) {
    const char* name = ctx.opset() < 2 && node.has_attr("paddings") ? "paddings" : "pads";
    QFORGE_CHECK(node.has_attr(name), Errc::kNotFound, node.describe(), "has no 'pads' attribute",
          "the pads (Pad before opset 11)");
    return pad_full(node.attr_ints(name), std::nullopt, rank, node);
  }
  std::optional<Ints> axes;
  if (ctx.opset() >= 18 && ctx.has_input(3)) axes = to_int64s(ctx.input(3), node, "input 3 (axes)");
  return pad_full(to_int64s(ctx.input(1), node, "input 1 (pads)"), axes, rank, node);
}

// Maps an output coordinate to an input one (-1: the constant).
int64_t pad_map(int64_t o, int64_t begin, int64_t dim, PadMode mode) {
  const int64_t i = o - begin;
  if (i >= 0 && i < dim) return i;
  switch (mode) {
    case PadMode::kConstant: return -1;
    case PadMode::kEdge: return i < 0 ? 0 : dim - 1;
    case PadMode::kWrap: return ((i % dim) + dim) % dim;
    case PadMode::kReflect: {
      if (dim == 1) return 0;
      const int64_t period = 2 * (dim - 1);
      int64_t m = ((i % period) + period) % period;
      return m < dim ? m : period - m;
    }
  }
  return -1;
}

template <typename T>
void pad_kernel(OpContext& ctx, const Tensor& x, Tensor& y, const Ints& full, PadMode mode, T value) {
  const Shape& s = x.shape();
  const Shape& os = y.shape();
  const size_t r = s.size();
  // Coordinate maps per axis.
  std::vector<Ints> maps(r);
  for (size_t k = 0; k < r; ++k) {
    maps[k].resize(static_cast<size_t>(os[k]));
    for (int64_t o = 0; o < os[k]; ++o)
      maps[k][static_cast<size_t>(o)] = pad_map(o, full[k], s[k], mode);
  }
  const Ints in_st = strides_of(s);
  const T* src = static_cast<const T*>(x.raw());
  T* dst = static_cast<T*>(y.raw());
  const int64_t n = os[r - 1], b_last = full[r - 1], d_last = s[r - 1];
  const int64_t mid_lo = std::clamp<int64_t>(b_last, 0, n);
  const int64_t mid_hi = std::clamp<int64_t>(b_last + d_last, mid_lo, n);
  const Ints& last_map = maps[r - 1];
  const int64_t rows = prod(os, 0, r - 1);
  par_for(ctx.pool(), rows, grain_for(n * static_cast<int64_t>(sizeof(T))), [&](int64_t b, int64_t e) {
    Ints c(r - 1, 0);
    int64_t rem = b;
    for (size_t k = r - 1; k-- > 0;) {
      c[k] = rem % os[k];
      rem /= os[k];
    }
    for (int64_t row = b; row < e; ++row) {
      T* dp = dst + row * n;
      int64_t so = 0;
      bool constant_row = false;
      for (size_t k = 0; k + 1 < r; ++k) {
        const int64_t m = maps[k][static_cast<size_t>(c[k])];
        if (m < 0) {
          constant_row = true;
          break;
        }
        so += m * in_st[k];
      }
      if (constant_row) {
        std::fill_n(dp, n, value);
      } else {
        const T* sp = src + so;
        for (int64_t j = 0; j < mid_lo; ++j) {
          const int64_t m = last_map[static_cast<size_t>(j)];
          dp[j] = m < 0 ? value : sp[m];
        }
        if (mid_hi > mid_lo)
          std::memcpy(dp + mid_lo, sp + (mid_lo - b_last),
                      static_cast<size_t>(mid_hi - mid_lo) * sizeof(T));
        for (int64_t j = mid_hi; j < n; ++j) {
          const int64_t m = last_map[static_cast<size_t>(j)];
          dp[j] = m < 0 ? value : sp[m];
        }
      }
      for (size_t k = r - 1; k-- > 0;) {
        if (++c[k] < os[k]) break;
        c[k] = 0;
      }
    }
  });
}

void pad_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  const int64_t rank = x.rank();
  const Ints full = pad_pads_run(ctx, rank);
  for (int64_t v : full)
    QFORGE_CHECK(v >= -(int64_t{1} << 62) && v <= (int64_t{1} << 62), Errc::kInvalidArgument,
          node.describe(), "has pads " + ints_str(full), "pads within +-2^62");
  const PadMode mode = pad_mode(ctx);
  const Shape& s = x.shape();
  Shape out(s.size());
  bool zero = true;
  for (size_t k = 0; k < s.size(); ++k) {
    const int64_t b = full[k], e = full[k + s.size()];
    zero &= b == 0 && e == 0;
    const bool overflow = __builtin_add_overflow(s[k], b, &out[k]) ||
                          __builtin_add_overflow(out[k], e, &out[k]);
    QFORGE_CHECK(!overflow && out[k] >= 0, Errc::kShapeMismatch, node.describe(),
          "pads axis " + std::to_string(k) + " of size " + std::to_string(s[k]) + " by " +
              std::to_string(b) + " and " + std::to_string(e),
          "pads that leave a dimension >= 0");
    if (mode != PadMode::kConstant && out[k] > 0)
      QFORGE_CHECK(s[k] > 0, Errc::kInvalidArgument, node.describe(),
            "pads an empty axis " + std::to_string(k) + " in a non-constant mode",
            "mode 'constant' for empty axes");
  }
  if (zero) {
    ctx.set_output(0, x);
    return;
  }
  const size_t esz = elem_size(x.dtype(), node);
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  const Tensor* cv = nullptr;
  if (ctx.opset() >= 11 && ctx.has_input(2)) {
    cv = &ctx.input(2);
    require_same_dtype(node, "input 2 (constant_value)", cv->dtype(), x.dtype());
  }
  const double attr_value = ctx.opset() < 11 ? static_cast<double>(node.attr_float("value", 0.0f)) : 0.0;
  const DType dt = x.dtype();
  auto typed = [&](auto z) {
    using T = decltype(z);
    T value{};
    if (cv && cv->numel() > 0) std::memcpy(&value, cv->raw(), sizeof(T));
    else if (attr_value != 0) value = value_as<T>(attr_value, dt, node, "pad value");
    pad_kernel<T>(ctx, x, y, full, mode, value);
  };
  // The real type when the attribute value needs converting, the width otherwise.
  if (attr_value != 0) dispatch_any(dt, node, typed);
  else by_width(esz, typed);
}

void pad_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  const ir::Node& node = c.node();
  if (!x.shape) {
    set_output(c, 0, x.dtype, std::nullopt);
    return;
  }
  const int64_t rank = static_cast<int64_t>(x.shape->size());
  std::optional<Ints> full;
  if (c.opset() < 11) {
    const char* name = c.opset() < 2 && node.has_attr("paddings") ? "paddings" : "pads";
    QFORGE_CHECK(node.has_attr(name), Errc::kNotFound, node.describe(), "has no 'pads' attribute",
          "the pads (Pad before opset 11)");
    full = pad_full(node.attr_ints(name), std::nullopt, rank, node);
  } else {
    c.input(1);
    const auto pads = constant_ints(c, 1);
    std::optional<Ints> axes;
    bool axes_ok = true;
    if (c.opset() >= 18 && c.has_input(3)) {
      axes = constant_ints(c, 3);
      axes_ok = axes.has_value();
    }
    if (pads && axes_ok) full = pad_full(*pads, axes, rank, node);
  }
  if (!full) {
    set_output(c, 0, x.dtype, fresh_dims(c, x.shape->size()));
    return;
  }
  SymShape out;
  for (size_t k = 0; k < x.shape->size(); ++k) {
    int64_t add = 0;
    if (__builtin_add_overflow((*full)[k], (*full)[k + x.shape->size()], &add))
      out.push_back(c.fresh_dim());
    else
      out.push_back(dim_add(c, (*x.shape)[k], add));
  }
  set_output(c, 0, x.dtype, out);
}

// ---------------------------------------------------------------------------
// Shape, Size

std::pair<int64_t, int64_t> shape_range(int64_t opset, const ir::Node& node, int64_t rank) {
  int64_t start = 0, end = rank;
  if (opset >= 15) {
    start = node.attr_int("start", 0);
    end = node.attr_int("end", rank);
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, 0, rank);
  }
  return {start, std::max(start, end)};
}

void shape_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const auto [start, end] = shape_range(ctx.opset(), ctx.node(), x.rank());
  Tensor& y = ctx.output(0, DType::kI64, {end - start});
  int64_t* p = y.data<int64_t>();
  for (int64_t i = start; i < end; ++i) p[i - start] = x.shape()[static_cast<size_t>(i)];
}

void shape_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  if (!x.shape) {
    set_output(c, 0, DType::kI64, SymShape{c.fresh_dim()});
    return;
  }
  const auto [start, end] =
      shape_range(c.opset(), c.node(), static_cast<int64_t>(x.shape->size()));
  set_output(c, 0, DType::kI64, SymShape{Dim(end - start)});
}

void size_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0, DType::kI64, {});
  *y.data<int64_t>() = shape_numel(x.shape());
}

void size_infer(InferContext& c) {
  c.input(0);
  set_output(c, 0, DType::kI64, SymShape{});
}

// ---------------------------------------------------------------------------
// ConstantOfShape

Shape shape_from_input(const Tensor& t, const ir::Node& node, const char* what) {
  const Ints v = to_int64s(t, node, what);
  for (int64_t d : v)
    QFORGE_CHECK(d >= 0, Errc::kInvalidArgument, node.describe(),
          std::string(what) + " is " + ints_str(v), "dimensions >= 0");
  return v;
}

void constant_of_shape_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& in = ctx.input(0);
  QFORGE_CHECK(in.rank() == 1, Errc::kShapeMismatch, node.describe(),
        "input 0 (shape) has shape " + shape_str(in.shape()), "a 1-D tensor");
  const Shape shape = shape_from_input(in, node, "input 0 (shape)");
  const Tensor* value = node.attr_tensor("value");
  if (value)
    QFORGE_CHECK(value->numel() == 1, Errc::kInvalidArgument, node.describe(),
          "has a 'value' of shape " + shape_str(value->shape()), "a one-element tensor");
  const DType dt = value ? value->dtype() : DType::kF32;
  const size_t esz = elem_size(dt, node, "attribute 'value'");
  Tensor& y = ctx.output(0, dt, shape);
  if (y.numel() == 0) return;
  by_width(esz, [&](auto z) {
    using T = decltype(z);
    T v{};
    if (value) std::memcpy(&v, value->raw(), sizeof(T));
    T* p = static_cast<T*>(y.raw());
    par_for(ctx.pool(), y.numel(), 1 << 16, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
  });
}

void constant_of_shape_infer(InferContext& c) {
  const ir::Node& node = c.node();
  c.input(0);
  const Tensor* value = node.attr_tensor("value");
  const DType dt = value ? value->dtype() : DType::kF32;
  const auto shape = constant_ints(c, 0);
  if (shape) {
    for (int64_t d : *shape)
      QFORGE_CHECK(d >= 0, Errc::kInvalidArgument, node.describe(),
            "input 0 (shape) is " + ints_str(*shape), "dimensions >= 0");
    set_output(c, 0, dt, ir::to_sym(*shape));
    return;
  }
  const auto s = shape_in(c, 0);
  std::optional<SymShape> out;
  if (s && s->size() == 1 && (*s)[0].known()) out = fresh_dims(c, static_cast<size_t>((*s)[0].size));
  set_output(c, 0, dt, out);
}

// ---------------------------------------------------------------------------
// Range

template <typename T>
int64_t range_count(T start, T limit, T delta, const ir::Node& node) {
  if constexpr (std::is_floating_point_v<T>) {
    const double n = std::ceil((static_cast<double>(limit) - static_cast<double>(start)) /
                               static_cast<double>(delta));
    QFORGE_CHECK(delta != 0 && std::isfinite(n) && n < 9.0e15, Errc::kInvalidArgument, node.describe(),
          "has start " + std::to_string(start) + ", limit " + std::to_string(limit) + ", delta " +
              std::to_string(delta),
          "a non-zero delta and a finite number of elements");
    return n > 0 ? static_cast<int64_t>(n) : 0;
  } else {
    QFORGE_CHECK(delta != 0, Errc::kInvalidArgument, node.describe(), "has delta 0", "a non-zero delta");
    const int64_t s = start, l = limit, d = delta;
    int64_t diff = 0;
    QFORGE_CHECK(!__builtin_sub_overflow(l, s, &diff), Errc::kInvalidArgument, node.describe(),
          "has a range that overflows", "limit - start within 64 bits");
    if ((diff > 0) != (d > 0) || diff == 0) return 0;
    QFORGE_CHECK(!(d == -1 && diff == std::numeric_limits<int64_t>::min()), Errc::kInvalidArgument,
          node.describe(), "has a range of 2^63 elements", "a smaller range");
    // ceil(diff / d) for same-signed diff and d.
    return diff / d + (diff % d != 0 ? 1 : 0);
  }
}

void range_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& s = ctx.input(0);
  const Tensor& l = ctx.input(1);
  const Tensor& d = ctx.input(2);
  require_same_dtype(node, "input 1 (limit)", l.dtype(), s.dtype());
  require_same_dtype(node, "input 2 (delta)", d.dtype(), s.dtype());
  const char* names[3] = {"input 0 (start)", "input 1 (limit)", "input 2 (delta)"};
  const Tensor* in[3] = {&s, &l, &d};
  for (int i = 0; i < 3; ++i)
    QFORGE_CHECK(in[i]->numel() == 1, Errc::kShapeMismatch, node.describe(),
          std::string(names[i]) + " has shape " + shape_str(in[i]->shape()), "a scalar");
  auto typed = [&](auto z) {
    using T = decltype(z);
    const T start = *s.data<T>(), limit = *l.data<T>(), delta = *d.data<T>();
    const int64_t n = range_count<T>(start, limit, delta, node);
    Tensor& y = ctx.output(0, s.dtype(), {n});
    T* p = y.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_floating_point_v<T>) p[i] = static_cast<T>(start + static_cast<T>(i) * delta);
      else p[i] = static_cast<T>(static_cast<int64_t>(start) + i * static_cast<int64_t>(delta));
    }
  };
  switch (s.dtype()) {
    case DType::kF32: typed(float{}); break;
    case DType::kF64: typed(double{}); break;
    case DType::kI64: typed(int64_t{}); break;
    case DType::kI32: typed(int32_t{}); break;
    case DType::kI16: typed(int16_t{}); break;
    default: bad_type(node, "input 0 (start)", s.dtype(), "f32, f64, i16, i32 or i64");
  }
}

void range_infer(InferContext& c) {
  const std::optional<DType> dt = c.input(0).dtype;
  c.input(1);
  c.input(2);
  const Tensor* in[3] = {c.constant(0), c.constant(1), c.constant(2)};
  if (dt && in[0] && in[1] && in[2] && in[0]->numel() == 1 && in[1]->numel() == 1 &&
      in[2]->numel() == 1 && in[1]->dtype() == *dt && in[2]->dtype() == *dt) {
    std::optional<int64_t> n;
    auto typed = [&](auto z) {
      using T = decltype(z);
      n = range_count<T>(*in[0]->data<T>(), *in[1]->data<T>(), *in[2]->data<T>(), c.node());
    };
    switch (*dt) {
      case DType::kF32: typed(float{}); break;
      case DType::kF64: typed(double{}); break;
      case DType::kI64: typed(int64_t{}); break;
      case DType::kI32: typed(int32_t{}); break;
      case DType::kI16: typed(int16_t{}); break;
      default: break;
    }
    if (n) {
      set_output(c, 0, dt, SymShape{Dim(*n)});
      return;
    }
  }
  set_output(c, 0, dt, SymShape{c.fresh_dim()});
}

// ---------------------------------------------------------------------------
// NonZero

void nonzero_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  const int64_t n = x.numel();
  // A scalar counts as a 1-D tensor of one element (numpy's nonzero).
  const Shape s = x.rank() == 0 ? Shape{1} : x.shape();
  const size_t r = s.size();
  std::vector<uint8_t> nz(static_cast<size_t>(n));
  const bool half = x.dtype() == DType::kF16 || x.dtype() == DType::kBF16;
  dispatch_any(x.dtype(), node, [&](auto z) {
    using T = decltype(z);
    const T* p = static_cast<const T*>(x.raw());
    if constexpr (std::is_same_v<T, uint16_t>) {
      const uint16_t mask = half ? 0x7fff : 0xffff;  // -0.0 is zero
      for (int64_t i = 0; i < n; ++i) nz[static_cast<size_t>(i)] = (p[i] & mask) != 0;
    } else {
      for (int64_t i = 0; i < n; ++i) nz[static_cast<size_t>(i)] = p[i] != T{};
    }
  });
  int64_t count = 0;
  for (uint8_t v : nz) count += v;
  Tensor& y = ctx.output(0, DType::kI64, {static_cast<int64_t>(r), count});
  int64_t* out = y.data<int64_t>();
  Ints c(r, 0);
  int64_t j = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (nz[static_cast<size_t>(i)]) {
      for (size_t k = 0; k < r; ++k) out[static_cast<int64_t>(k) * count + j] = c[k];
      ++j;
    }
    for (size_t k = r; k-- > 0;) {
      if (++c[k] < s[k]) break;
      c[k] = 0;
    }
  }
}

void nonzero_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  Dim rank = x.shape ? Dim(std::max<int64_t>(1, static_cast<int64_t>(x.shape->size()))) : c.fresh_dim();
  set_output(c, 0, DType::kI64, SymShape{rank, c.fresh_dim()});
}

// ---------------------------------------------------------------------------
// DepthToSpace, SpaceToDepth

int64_t blocksize(const ir::Node& node) {
  QFORGE_CHECK(node.has_attr("blocksize"), Errc::kNotFound, node.describe(),
        "has no 'blocksize' attribute", "a blocksize >= 1");
  const int64_t b = node.attr_int("blocksize", 0);
  QFORGE_CHECK(b >= 1 && b <= (int64_t{1} << 20), Errc::kInvalidArgument, node.describe(),
        "has blocksize " + std::to_string(b), "a blocksize >= 1");
  return b;
}

bool depth_to_space_crd(const OpContext& ctx) {
  if (ctx.opset() < 11) return false;
  const std::string m = ctx.node().attr_string("mode", "DCR");
  if (m == "DCR") return false;
  if (m == "CRD") return true;
  fail(ctx.node(), Errc::kInvalidArgument, "has mode '" + m + "'", "DCR or CRD");
}

void depth_to_space_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  const int64_t b = blocksize(node);
  const bool crd = depth_to_space_crd(ctx);
  QFORGE_CHECK(x.rank() == 4, Errc::kShapeMismatch, node.describe(),
        "input 0 has shape " + shape_str(x.shape()), "a 4-D tensor [N, C, H, W]");
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  QFORGE_CHECK(C % (b * b) == 0, Errc::kShapeMismatch, node.describe(),
        "has " + std::to_string(C) + " channels for blocksize " + std::to_string(b),
        "channels divisible by blocksize^2");
  const int64_t Co = C / (b * b), HW = H * W;
  const Shape out{N, Co, mul_dim(H, b, node), mul_dim(W, b, node)};
  const size_t esz = elem_size(x.dtype(), node);
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  // The output as [N, Co, H, b, W, b].
  const Shape wide{N, Co, H, b, W, b};
  const Ints st = crd ? Ints{C * HW, b * b * HW, W, b * HW, 1, HW}
                      : Ints{C * HW, HW, W, b * Co * HW, 1, Co * HW};
  strided_copy(esz, wide, st, x.raw(), y.raw(), ctx.pool());
}

void space_to_depth_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  const int64_t b = blocksize(node);
  QFORGE_CHECK(x.rank() == 4, Errc::kShapeMismatch, node.describe(),
        "input 0 has shape " + shape_str(x.shape()), "a 4-D tensor [N, C, H, W]");
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  QFORGE_CHECK(H % b == 0 && W % b == 0, Errc::kShapeMismatch, node.describe(),
        "has height " + std::to_string(H) + " and width " + std::to_string(W) + " for blocksize " +
            std::to_string(b),
        "height and width divisible by the blocksize");
  const Shape out{N, mul_dim(C, b * b, node), H / b, W / b};
  const size_t esz = elem_size(x.dtype(), node);
  Tensor& y = ctx.output(0, x.dtype(), out);
  if (y.numel() == 0) return;
  // The output as [N, b, b, C, H/b, W/b].
  const Shape wide{N, b, b, C, H / b, W / b};
  const Ints st{C * H * W, W, 1, H * W, b * W, b};
  strided_copy(esz, wide, st, x.raw(), y.raw(), ctx.pool());
}

void depth_space_infer(InferContext& c, bool to_space) {
  const ir::ValueInfo& x = c.input(0);
  const ir::Node& node = c.node();
  const int64_t b = blocksize(node);
  if (!x.shape) {
    set_output(c, 0, x.dtype, fresh_dims(c, 4));
    return;
  }
  const SymShape& s = *x.shape;
  QFORGE_CHECK(s.size() == 4, Errc::kShapeMismatch, node.describe(),
        "input 0 has shape " + ir::sym_shape_str(s), "a 4-D tensor [N, C, H, W]");
  auto div = [&](const Dim& d, int64_t k) -> Dim {
    if (k == 1) return d;
    if (!d.known()) return c.fresh_dim();
    QFORGE_CHECK(d.size % k == 0, Errc::kShapeMismatch, node.describe(),
          "input 0 has shape " + ir::sym_shape_str(s) + " for blocksize " + std::to_string(b),
          to_space ? "channels divisible by blocksize^2" : "height and width divisible by the blocksize");
    return Dim(d.size / k);
  };
  if (to_space)
    set_output(c, 0, x.dtype, SymShape{s[0], div(s[1], b * b), dim_mul(c, s[2], b), dim_mul(c, s[3], b)});
  else
    set_output(c, 0, x.dtype, SymShape{s[0], dim_mul(c, s[1], b * b), div(s[2], b), div(s[3], b)});
}

// ---------------------------------------------------------------------------
// Trilu

void trilu_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  require_rank_at_least(node, "input 0", x.rank(), 2);
  int64_t k = 0;
  if (ctx.has_input(1)) {
    const Ints kv = to_int64s(ctx.input(1), node, "input 1 (k)");
    QFORGE_CHECK(kv.size() == 1, Errc::kShapeMismatch, node.describe(),
          "input 1 (k) has " + std::to_string(kv.size()) + " values", "a scalar");
    k = kv[0];
  }
  const bool upper = node.attr_int("upper", 1) != 0;
  const Shape& s = x.shape();
  const int64_t R = s[s.size() - 2], C = s[s.size() - 1];
  k = std::clamp<int64_t>(k, -(R + 1), C + 1);
  const size_t esz = elem_size(x.dtype(), node);
  Tensor& y = ctx.output(0, x.dtype(), s);
  if (y.numel() == 0) return;
  const int64_t rows = y.numel() / C;
  by_width(esz, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(x.raw());
    T* dst = static_cast<T*>(y.raw());
    par_for(ctx.pool(), rows, grain_for(C * static_cast<int64_t>(esz)), [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        const int64_t i = row % R;
        const T* sp = src + row * C;
        T* dp = dst + row * C;
        // upper keeps j >= i + k; lower keeps j <= i + k.
        const int64_t cut = std::clamp<int64_t>(upper ? i + k : i + k + 1, 0, C);
        if (upper) {
          std::fill(dp, dp + cut, T{});
          std::copy(sp + cut, sp + C, dp + cut);
        } else {
          std::copy(sp, sp + cut, dp);
          std::fill(dp + cut, dp + C, T{});
        }
      }
    });
  });
}

void trilu_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  if (x.shape) require_rank_at_least(c.node(), "input 0", static_cast<int64_t>(x.shape->size()), 2);
  infer_same_as(c);
}

// ---------------------------------------------------------------------------
// OneHot

void onehot_run(OpContext& ctx) {
  const Tensor& ind = ctx.input(0);
  const Tensor& dep = ctx.input(1);
  const Tensor& val = ctx.input(2);
  const ir::Node& node = ctx.node();
  const double dd = to_scalar(dep, node, "input 1 (depth)");
  QFORGE_CHECK(std::isfinite(dd) && dd >= 1 && dd < 9.0e15, Errc::kInvalidArgument, node.describe(),
        "has depth " + std::to_string(dd), "a depth >= 1");
  const int64_t depth = static_cast<int64_t>(dd);
  QFORGE_CHECK(val.numel() == 2 && val.rank() == 1, Errc::kShapeMismatch, node.describe(),
        "input 2 (values) has shape " + shape_str(val.shape()), "[2]: the off and on values");
  const int64_t r = ind.rank();
  // axis = -1 means the new last axis: normalize against the output rank r + 1.
  const size_t a = static_cast<size_t>(normalize_axis(node.attr_int("axis", -1), r + 1, node));
  Shape out(ind.shape().begin(), ind.shape().begin() + static_cast<std::ptrdiff_t>(a));
  out.push_back(depth);
  out.insert(out.end(), ind.shape().begin() + static_cast<std::ptrdiff_t>(a), ind.shape().end());
  const size_t esz = elem_size(val.dtype(), node, "input 2 (values)");
  Tensor& y = ctx.output(0, val.dtype(), out);
  if (y.numel() == 0) return;
  const int64_t outer = prod(ind.shape(), 0, a), inner = prod(ind.shape(), a, ind.shape().size());
  // Indices as int64, -1 where out of range (all off).
  Ints idx(static_cast<size_t>(ind.numel()));
  dispatch_numeric(ind.dtype(), node, [&](auto z) {
    using T = decltype(z);
    const T* p = static_cast<const T*>(ind.raw());
    for (size_t i = 0; i < idx.size(); ++i) {
      int64_t v = -1;
      if constexpr (std::is_floating_point_v<T>) {
        const double f = static_cast<double>(p[i]);
        if (std::isfinite(f) && f > -static_cast<double>(depth) - 1 && f < static_cast<double>(depth))
          v = static_cast<int64_t>(f);
        else v = depth;  // out of range
      } else {
        v = static_cast<int64_t>(p[i]);
      }
      if (v < 0) v += depth;
      idx[i] = v >= 0 && v < depth ? v : -1;
    }
  });
  by_width(esz, [&](auto z) {
    using T = decltype(z);
    const T* vp = static_cast<const T*>(val.raw());
    const T off = vp[0], on = vp[1];
    T* dst = static_cast<T*>(y.raw());
    std::fill_n(dst, y.numel(), off);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t v = idx[static_cast<size_t>(o * inner + i)];
        if (v >= 0) dst[(o * depth + v) * inner + i] = on;
      }
  });
}

void onehot_infer(InferContext& c) {
  const ir::ValueInfo& ind = c.input(0);
  c.input(1);
  const std::optional<DType> dt = c.input(2).dtype;
  if (!ind.shape) {
    set_output(c, 0, dt, std::nullopt);
    return;
  }
  const int64_t r = static_cast<int64_t>(ind.shape->size());
  const size_t a = static_cast<size_t>(normalize_axis(c.node().attr_int("axis", -1), r + 1, c.node()));
  Dim depth = c.fresh_dim();
  if (const Tensor* t = c.constant(1); t && t->numel() == 1) {
    const double d = to_scalar(*t, c.node(), "input 1 (depth)");
    if (std::isfinite(d) && d >= 1 && d < 9.0e15) depth = Dim(static_cast<int64_t>(d));
  }
  SymShape out(ind.shape->begin(), ind.shape->begin() + static_cast<std::ptrdiff_t>(a));
  out.push_back(depth);
  out.insert(out.end(), ind.shape->begin() + static_cast<std::ptrdiff_t>(a), ind.shape->end());
  set_output(c, 0, dt, out);
}

// ---------------------------------------------------------------------------
// EyeLike

DType eyelike_dtype(const ir::Node& node, DType input) {
  if (!node.has_attr("dtype")) return input;
  return dtype_from_onnx(static_cast<int>(node.attr_int("dtype", 1)));
}

void eyelike_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const ir::Node& node = ctx.node();
  QFORGE_CHECK(x.rank() == 2, Errc::kShapeMismatch, node.describe(),
        "input 0 has shape " + shape_str(x.shape()), "a 2-D tensor");
  const DType dt = eyelike_dtype(node, x.dtype());
  const int64_t R = x.shape()[0], C = x.shape()[1];
  const int64_t k = std::clamp<int64_t>(node.attr_int("k", 0), -R, C);
  const size_t esz = elem_size(dt, node, "the output");
  Tensor& y = ctx.output(0, dt, x.shape());
  std::memset(y.raw(), 0, static_cast<size_t>(y.numel()) * esz);
  auto fill = [&](auto one) {
    using T = decltype(one);
    T* p = static_cast<T*>(y.raw());
    for (int64_t i = std::max<int64_t>(0, -k); i < R && i + k < C; ++i) p[i * C + i + k] = one;
  };
  switch (dt) {
    case DType::kF16: fill(f32_to_f16(1.0f)); break;
    case DType::kBF16: fill(f32_to_bf16(1.0f)); break;
    default:
      dispatch_any(dt, node, [&](auto z) {
        using T = decltype(z);
        fill(static_cast<T>(1));
      });
  }
}

void eyelike_infer(InferContext& c) {
  const ir::ValueInfo& x = c.input(0);
  if (x.shape)
    QFORGE_CHECK(x.shape->size() == 2, Errc::kShapeMismatch, c.node().describe(),
          "input 0 has shape " + ir::sym_shape_str(*x.shape), "a 2-D tensor");
  std::optional<DType> dt = x.dtype;
  if (c.node().has_attr("dtype")) dt = eyelike_dtype(c.node(), DType::kF32);
  set_output(c, 0, dt, x.shape);
}

}  // namespace

void register_shape_ops(OpRegistry& r) {
  r.add({.domain = "", .op_type = "Reshape", .min_opset = 1, .max_opset = 21,
         .infer = reshape_infer, .run = reshape_run});
  r.add({.domain = "", .op_type = "Flatten", .min_opset = 1, .max_opset = 21,
         .infer = flatten_infer, .run = flatten_run});
  r.add({.domain = "", .op_type = "Squeeze", .min_opset = 1, .max_opset = 21,
         .infer = squeeze_infer, .run = squeeze_run});
  r.add({.domain = "", .op_type = "Unsqueeze", .min_opset = 1, .max_opset = 21,
         .infer = unsqueeze_infer, .run = unsqueeze_run});
  r.add({.domain = "", .op_type = "Transpose", .min_opset = 1, .max_opset = 21,
         .infer = transpose_infer, .run = transpose_run});
  r.add({.domain = "", .op_type = "Concat", .min_opset = 1, .max_opset = 21,
         .infer = concat_infer, .run = concat_run});
  r.add({.domain = "", .op_type = "Split", .min_opset = 1, .max_opset = 21,
         .infer = split_infer, .run = split_run});
  r.add({.domain = "", .op_type = "Slice", .min_opset = 1, .max_opset = 21,
         .infer = slice_infer, .run = slice_run});
  r.add({.domain = "", .op_type = "Gather", .min_opset = 1, .max_opset = 21,
         .infer = gather_infer, .run = gather_run});
  r.add({.domain = "", .op_type = "GatherElements", .min_opset = 11, .max_opset = 21,
         .infer = gather_elements_infer, .run = gather_elements_run});
  r.add({.domain = "", .op_type = "GatherND", .min_opset = 11, .max_opset = 21,
         .infer = gathernd_infer, .run = gathernd_run});
  r.add({.domain = "", .op_type = "Scatter", .min_opset = 9, .max_opset = 10,
         .infer = scatter_infer, .run = [](OpContext& c) { scatter_elements_impl(c, false); }});
  r.add({.domain = "", .op_type = "ScatterElements", .min_opset = 11, .max_opset = 21,
         .infer = scatter_infer,
         .run = [](OpContext& c) { scatter_elements_impl(c, c.opset() >= 16); }});
  r.add({.domain = "", .op_type = "ScatterND", .min_opset = 11, .max_opset = 21,
         .infer = scatter_infer, .run = scatternd_run});
  r.add({.domain = "", .op_type = "Expand", .min_opset = 8, .max_opset = 21,
         .infer = expand_infer, .run = expand_run});
  r.add({.domain = "", .op_type = "Tile", .min_opset = 6, .max_opset = 21, .infer = tile_infer,
         .run = tile_run});
  r.add({.domain = "", .op_type = "Pad", .min_opset = 1, .max_opset = 21, .infer = pad_infer,
         .run = pad_run});
  r.add({.domain = "", .op_type = "Shape", .min_opset = 1, .max_opset = 21, .infer = shape_infer,
         .run = shape_run});
  r.add({.domain = "", .op_type = "Size", .min_opset = 1, .max_opset = 21, .infer = size_infer,
         .run = size_run});
  r.add({.domain = "", .op_type = "ConstantOfShape", .min_opset = 9, .max_opset = 21,
         .infer = constant_of_shape_infer, .run = constant_of_shape_run});
  r.add({.domain = "", .op_type = "Range", .min_opset = 11, .max_opset = 21, .infer = range_infer,
         .run = range_run});
  r.add({.domain = "", .op_type = "NonZero", .min_opset = 9, .max_opset = 21,
         .infer = nonzero_infer, .run = nonzero_run});
  r.add({.domain = "", .op_type = "DepthToSpace", .min_opset = 1, .max_opset = 21,
         .infer = [](InferContext& c) { depth_space_infer(c, true); }, .run = depth_to_space_run});
  r.add({.domain = "", .op_type = "SpaceToDepth", .min_opset = 1, .max_opset = 21,
         .infer = [](InferContext& c) { depth_space_infer(c, false); }, .run = space_to_depth_run});
  r.add({.domain = "", .op_type = "Trilu", .min_opset = 14, .max_opset = 21, .infer = trilu_infer,
         .run = trilu_run});
  r.add({.domain = "", .op_type = "OneHot", .min_opset = 9, .max_opset = 21,
         .infer = onehot_infer, .run = onehot_run});
  r.add({.domain = "", .op_type = "EyeLike", .min_opset = 9, .max_opset = 21,
         .infer = eyelike_infer, .run = eyelike_run});
}

}  // namespace qforge::ops
