// Pooling: MaxPool (optional Indices output, storage_order), AveragePool
// (count_include_pad), both with pads, strides, dilations, ceil_mode and
// auto_pad over any number of spatial dimensions; GlobalAveragePool and
// GlobalMaxPool. Registered from register_nn_ops (nn.cpp).
//
// Each (n, c) plane is one parallel work item. Within a plane, an output row
// (all of the last spatial dimension) is accumulated one kernel offset at a
// time, so the inner loop runs along contiguous (or stride-2) memory and
// vectorises; it is compiled for AVX2 / AVX-512 as well.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "ops/families.h"
#include "ops/nn_common.h"
#include "ops/op_util.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {


namespace {

using namespace nn_detail;


// ---- geometry ----

struct PoolGeom {
  size_t r = 0;
  int64_t N = 0, C = 0;
  Shape in, k, s, d, pb, pe, out;
  int64_t in_size = 1, out_size = 1;
};

PoolGeom pool_geom(const ir::Node& node, const Shape& x) {
  QFORGE_CHECK(x.size() >= 3, Errc::kShapeMismatch, node.describe(),
        "has X of shape " + shape_str(x), "X of rank >= 3 (N, C, spatial...)");
  PoolGeom g;
  g.r = x.size() - 2;
  g.N = x[0];
  g.C = x[1];
  g.in.assign(x.begin() + 2, x.end());
  QFORGE_CHECK(node.has_attr("kernel_shape"), Errc::kNotFound, node.describe(),
        "has no attribute 'kernel_shape'", "kernel_shape, which this op requires");
  g.k = nn_detail::window_ints(node, "kernel_shape", g.r, 1, 1);
  g.s = nn_detail::window_ints(node, "strides", g.r, 1, 1);
  g.d = nn_detail::window_ints(node, "dilations", g.r, 1, 1);
  const std::vector<int64_t> pads = nn_detail::window_ints(node, "pads", 2 * g.r, 0, 0);
  g.pb.assign(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(g.r));
  g.pe.assign(pads.begin() + static_cast<std::ptrdiff_t>(g.r), pads.end());
  for (size_t i = 0; i < g.r; ++i)
    QFORGE_CHECK(g.pb[i] < (g.k[i] - 1) * g.d[i] + 1 && g.pe[i] < (g.k[i] - 1) * g.d[i] + 1,
          Errc::kInvalidArgument, node.describe(),
          "has pads " + shape_str(pads) + " for kernel_shape " + shape_str(g.k),
          "pads smaller than the (dilated) kernel");
  const std::string auto_pad = nn_detail::auto_pad_attr(node);
  const bool ceil_mode = node.attr_int("ceil_mode", 0) != 0;
  g.out.resize(g.r);
  for (size_t i = 0; i < g.r; ++i) {
    g.out[i] = nn_detail::window_out_dim(node, g.in[i], g.k[i], g.s[i], g.d[i], auto_pad,
                                         ceil_mode, g.pb[i], g.pe[i]);
    g.in_size *= g.in[i];
    g.out_size *= g.out[i];
  }
  return g;
}

// Per window position along one dimension: how many of its kernel taps fall
// inside the input, and inside input + padding.
struct Counts {
  std::vector<int64_t> valid, padded;
};

Counts dim_counts(const PoolGeom& g, size_t i) {
  Counts c;
  c.valid.resize(static_cast<size_t>(g.out[i]));
  c.padded.resize(static_cast<size_t>(g.out[i]));
  for (int64_t o = 0; o < g.out[i]; ++o) {
    int64_t v = 0, p = 0;
    for (int64_t k = 0; k < g.k[i]; ++k) {
      const int64_t ii = o * g.s[i] + k * g.d[i] - g.pb[i];
      v += ii >= 0 && ii < g.in[i];
      p += ii >= -g.pb[i] && ii < g.in[i] + g.pe[i];
    }
    c.valid[static_cast<size_t>(o)] = v;
    c.padded[static_cast<size_t>(o)] = p;
  }
  return c;
}

// ---- the row-accumulating pool ----

enum class PoolKind { kMax, kAvg };

// a > b with a quiet comparison for floats (no FP exception on NaN), so the
// compiler may vectorise the select without -fno-trapping-math.
template <typename T>
NN_INLINE bool greater(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) return __builtin_isgreater(a, b);
  else return a > b;
}

// A grow-only per-thread buffer of n values.
template <typename T>
T* pool_rows(int64_t n) {
  thread_local std::vector<T> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

template <typename T, PoolKind K, int SL>
NN_INLINE void accumulate_row(T* acc, const T* src, int64_t a, int64_t b, int64_t sl_rt) {
  const int64_t sl = SL > 0 ? SL : sl_rt;
  for (int64_t ow = a; ow < b; ++ow) {
    const T v = src[ow * sl];
    if constexpr (K == PoolKind::kMax) acc[ow] = greater(v, acc[ow]) ? v : acc[ow];
    else acc[ow] += v;
  }
}

// One plane: y (out_size values) from x (in_size values). For kAvg, `div`
// holds per output the divisor's last-dimension factor; the outer factor
// comes from the outer kernel taps.
template <typename T, PoolKind K, int SL>
NN_INLINE void pool_plane(const PoolGeom& g, const T* x, T* y, bool include_pad,
                          const std::vector<int64_t>& lo, const std::vector<int64_t>& hi,
                          const Counts& last, int64_t* o, int64_t* kk) {
  const size_t L = g.r - 1;
  const int64_t Wo = g.out[L], Wi = g.in[L], sl = g.s[L], dl = g.d[L], pl = g.pb[L];
  const int64_t outer_out = g.out_size / Wo;
  int64_t outer_taps = 1;
  for (size_t i = 0; i < L; ++i) outer_taps *= g.k[i];
  const T init = K == PoolKind::kMax ? (std::numeric_limits<T>::has_infinity
                                            ? -std::numeric_limits<T>::infinity()
                                            : std::numeric_limits<T>::lowest())
                                     : T(0);
  for (size_t i = 0; i < L; ++i) o[i] = 0;
  for (int64_t oo = 0; oo < outer_out; ++oo) {
    T* yr = y + oo * Wo;
    for (int64_t ow = 0; ow < Wo; ++ow) yr[ow] = init;
    // Every combination of the outer kernel taps (odometer over kk).
    for (size_t i = 0; i < L; ++i) kk[i] = 0;
    int64_t outer_valid = 0, outer_padded = 0;
    for (int64_t q = 0; q < outer_taps; ++q) {
      bool valid = true, padded = true;
      int64_t off = 0;
      for (size_t i = 0; i < L; ++i) {
        const int64_t ii = o[i] * g.s[i] + kk[i] * g.d[i] - g.pb[i];
        valid = valid && ii >= 0 && ii < g.in[i];
        padded = padded && ii >= -g.pb[i] && ii < g.in[i] + g.pe[i];
        off = off * g.in[i] + ii;
      }
      outer_valid += valid;
      outer_padded += padded;
      if (valid) {
        const T* row = x + off * Wi;
        for (int64_t kw = 0; kw < g.k[L]; ++kw)
          accumulate_row<T, K, SL>(yr, row + kw * dl - pl, lo[static_cast<size_t>(kw)],
                                   hi[static_cast<size_t>(kw)], sl);
      }
      for (size_t i = L; i-- > 0;) {
        if (++kk[i] < g.k[i]) break;
        kk[i] = 0;
      }
    }
    if constexpr (K == PoolKind::kAvg) {
      const int64_t f = include_pad ? outer_padded : outer_valid;
      const int64_t* lc = include_pad ? last.padded.data() : last.valid.data();
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t cnt = f * lc[ow];
        yr[ow] = cnt > 0 ? yr[ow] / static_cast<T>(cnt) : T(0);
      }
    }
    for (size_t i = L; i-- > 0;) {
      if (++o[i] < g.out[i]) break;
      o[i] = 0;
    }
  }
}

template <typename T, PoolKind K>
void pool_planes(const PoolGeom& g, const T* x, T* y, bool include_pad, ThreadPool* pool) {
  const size_t L = g.r - 1;
  std::vector<int64_t> lo(static_cast<size_t>(g.k[L])), hi(static_cast<size_t>(g.k[L]));
  for (int64_t kw = 0; kw < g.k[L]; ++kw) {
    const int64_t base = kw * g.d[L] - g.pb[L], sl = g.s[L];
    const int64_t a = base >= 0 ? 0 : std::min(g.out[L], (-base + sl - 1) / sl);
    const int64_t b = std::clamp<int64_t>(g.in[L] - base <= 0 ? 0 : (g.in[L] - base + sl - 1) / sl,
                                          a, g.out[L]);
    lo[static_cast<size_t>(kw)] = a;
    hi[static_cast<size_t>(kw)] = b;
  }
  const Counts last = dim_counts(g, L);
  int64_t ksize = 1;
  for (int64_t v : g.k) ksize *= v;
  parallel(pool, g.N * g.C, grain_for(g.out_size * ksize), [&](int64_t b, int64_t e) {
    std::vector<int64_t> o(g.r), kk(g.r);
    for (int64_t t = b; t < e; ++t) {
      const T* xp = x + t * g.in_size;
      T* yp = y + t * g.out_size;
      if constexpr (std::is_same_v<T, float>) {
        if (g.s[L] == 1)
          run_vectorized([&]() NN_LAMBDA {
            pool_plane<T, K, 1>(g, xp, yp, include_pad, lo, hi, last, o.data(), kk.data());
          });
        else if (g.s[L] == 2)
          run_vectorized([&]() NN_LAMBDA {
            pool_plane<T, K, 2>(g, xp, yp, include_pad, lo, hi, last, o.data(), kk.data());
          });
        else
          run_vectorized([&]() NN_LAMBDA {
            pool_plane<T, K, 0>(g, xp, yp, include_pad, lo, hi, last, o.data(), kk.data());
          });
      } else {
        pool_plane<T, K, 0>(g, xp, yp, include_pad, lo, hi, last, o.data(), kk.data());
      }
    }
  });
}

// 2-D max pooling of f32 planes (or the u8/i8 codes of a quantized
// tensor: max commutes with a monotonic dequantization) without dilation, a
// row of outputs at a time: the common CNN case, without the N-D bookkeeping
// of pool_plane. A 2x2 stride-2 window without padding has its own loop.
// Same NaN rule as pool_plane (quiet compares: a NaN is skipped unless it
// comes first).
template <int SW, typename T>
NN_INLINE void maxpool2d_plane(const PoolGeom& g, const T* x, T* y, const int64_t* lo,
                               const int64_t* hi) {
  const int64_t Hi = g.in[0], Wi = g.in[1], Ho = g.out[0], Wo = g.out[1];
  const int64_t KH = g.k[0], KW = g.k[1], sh = g.s[0], sw = SW > 0 ? SW : g.s[1];
  const int64_t ph = g.pb[0], pw = g.pb[1];
  const T ninf = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                       : std::numeric_limits<T>::lowest();
  if (SW == 2 && KH == 2 && KW == 2 && sh == 2 && ph == 0 && pw == 0 && Hi >= 2 * Ho &&
      Wi == 2 * Wo) {
    // The larger of each pair of rows into tmp (Ho x Wi), then of each pair
    // of neighbours in tmp: output q is tmp[2q], tmp[2q + 1], so the second
    // pass runs over the plane as one vectorised loop. Like the loops
    // below, NaN is never taken as the larger.
    T* __restrict tmp = pool_rows<T>(Ho * Wi);
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const T* __restrict r0 = x + 2 * oh * Wi;
      const T* __restrict r1 = r0 + Wi;
      T* __restrict t = tmp + oh * Wi;
      if constexpr (std::is_floating_point_v<T>) {
        for (int64_t c = 0; c < Wi; ++c) {
          const T m = greater(r0[c], ninf) ? r0[c] : ninf;
          t[c] = greater(r1[c], m) ? r1[c] : m;
        }
      } else {
        for (int64_t c = 0; c < Wi; ++c) t[c] = std::max(r0[c], r1[c]);
      }
    }
    const int64_t n = Ho * Wo;
    T* __restrict yo = y;
    for (int64_t q = 0; q < n; ++q) {
      const T a = tmp[2 * q], b = tmp[2 * q + 1];
      if constexpr (std::is_floating_point_v<T>) yo[q] = greater(b, a) ? b : a;
      else yo[q] = std::max(a, b);
    }
    return;
  }
  if (SW == 2 && KH == 2 && KW == 2 && sh == 2 && ph == 0 && pw == 0 && Hi >= 2 * Ho && Wi >= 2 * Wo) {
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const T* r0 = x + 2 * oh * Wi;
      const T* r1 = r0 + Wi;
      T* yr = y + oh * Wo;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        T m = r0[2 * ow];
        m = greater(r0[2 * ow + 1], m) ? r0[2 * ow + 1] : m;
        m = greater(r1[2 * ow], m) ? r1[2 * ow] : m;
        yr[ow] = greater(r1[2 * ow + 1], m) ? r1[2 * ow + 1] : m;
      }
    }
    return;
  }
  for (int64_t oh = 0; oh < Ho; ++oh) {
    T* yr = y + oh * Wo;
    for (int64_t ow = 0; ow < Wo; ++ow) yr[ow] = ninf;
    const int64_t h0 = oh * sh - ph;
    const int64_t k0 = std::max<int64_t>(0, -h0), k1 = std::min<int64_t>(KH, Hi - h0);
    for (int64_t kh = k0; kh < k1; ++kh) {
      const T* xr = x + (h0 + kh) * Wi;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const T* src = xr + kw - pw;  // indexed by ow * sw
        for (int64_t ow = lo[kw]; ow < hi[kw]; ++ow) {
          const T v = src[ow * sw];
          yr[ow] = greater(v, yr[ow]) ? v : yr[ow];
        }
      }
    }
  }
}

// Whether maxpool2d_plane applies, and if so runs it over every plane.
template <typename T>
bool maxpool2d(const PoolGeom& g, const T* x, T* y, ThreadPool* pool) {
  if (g.r != 2 || g.d[0] != 1 || g.d[1] != 1 || g.k[1] > 16) return false;
  int64_t lo[16], hi[16];
  for (int64_t kw = 0; kw < g.k[1]; ++kw) {
    const int64_t base = kw - g.pb[1], sl = g.s[1];
    lo[kw] = base >= 0 ? 0 : std::min(g.out[1], (-base + sl - 1) / sl);
    hi[kw] = std::clamp<int64_t>(g.in[1] - base <= 0 ? 0 : (g.in[1] - base + sl - 1) / sl, lo[kw],
                                 g.out[1]);
  }
  parallel(pool, g.N * g.C, grain_for(g.out_size * g.k[0] * g.k[1]), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const T* xp = x + t * g.in_size;
      T* yp = y + t * g.out_size;
      if (g.s[1] == 1) run_vectorized([&]() NN_LAMBDA { maxpool2d_plane<1>(g, xp, yp, lo, hi); });
      else if (g.s[1] == 2) run_vectorized([&]() NN_LAMBDA { maxpool2d_plane<2>(g, xp, yp, lo, hi); });
      else run_vectorized([&]() NN_LAMBDA { maxpool2d_plane<0>(g, xp, yp, lo, hi); });
    }
  });
  return true;
}

// MaxPool with the Indices output: per output, the flat index of the max
// (first one on ties) in the whole input, the plane's part row-major
// (storage_order 0) or column-major (1).
template <typename T>
void maxpool_indices(const PoolGeom& g, const T* x, T* y, int64_t* idx, bool col_major,
                     ThreadPool* pool) {
  std::vector<int64_t> cstride(g.r, 1);  // per dim, in the index's storage order
  if (col_major)
    for (size_t i = 1; i < g.r; ++i) cstride[i] = cstride[i - 1] * g.in[i - 1];
  else
    for (size_t i = g.r - 1; i-- > 0;) cstride[i] = cstride[i + 1] * g.in[i + 1];
  int64_t ksize = 1;
  for (int64_t v : g.k) ksize *= v;
  parallel(pool, g.N * g.C, grain_for(g.out_size * ksize), [&](int64_t b, int64_t e) {
    std::vector<int64_t> o(g.r), kk(g.r);
    for (int64_t t = b; t < e; ++t) {
      const T* xp = x + t * g.in_size;
      std::fill(o.begin(), o.end(), 0);
      for (int64_t p = 0; p < g.out_size; ++p) {
        T best = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                      : std::numeric_limits<T>::lowest();
        int64_t best_i = -1;
        std::fill(kk.begin(), kk.end(), 0);
        for (int64_t q = 0; q < ksize; ++q) {
          bool valid = true;
          int64_t off = 0, ci = 0;
          for (size_t i = 0; i < g.r; ++i) {
            const int64_t ii = o[i] * g.s[i] + kk[i] * g.d[i] - g.pb[i];
            valid = valid && ii >= 0 && ii < g.in[i];
            off = off * g.in[i] + ii;
            ci += ii * cstride[i];
          }
          if (valid && (best_i < 0 || xp[off] > best)) {
            best = xp[off];
            best_i = ci;
          }
          for (size_t i = g.r; i-- > 0;) {
            if (++kk[i] < g.k[i]) break;
            kk[i] = 0;
          }
        }
        y[t * g.out_size + p] = best;
        idx[t * g.out_size + p] = best_i < 0 ? -1 : t * g.in_size + best_i;
        for (size_t i = g.r; i-- > 0;) {
          if (++o[i] < g.out[i]) break;
          o[i] = 0;
        }
      }
    }
  });
}

Shape pool_out_shape(const PoolGeom& g) {
  Shape s = {g.N, g.C};
  s.insert(s.end(), g.out.begin(), g.out.end());
  return s;
}

void maxpool_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const PoolGeom g = pool_geom(node, x.shape());
  const int64_t order = node.attr_int("storage_order", 0);
  QFORGE_CHECK(order == 0 || order == 1, Errc::kInvalidArgument, node.describe(),
        "has storage_order " + std::to_string(order), "0 (row major) or 1 (column major)");
  const Shape ys = pool_out_shape(g);
  auto go = [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), ys);
    if (ctx.wants_output(1)) {
      Tensor& ind = ctx.output(1, DType::kI64, ys);
      if (y.numel() == 0) return;
      maxpool_indices<T>(g, x.data<T>(), y.data<T>(), ind.data<int64_t>(), order == 1, ctx.pool());
    } else {
      if (y.numel() == 0) return;
      if constexpr (!std::is_same_v<T, double>)
        if (maxpool2d<T>(g, x.data<T>(), y.data<T>(), ctx.pool())) return;
      pool_planes<T, PoolKind::kMax>(g, x.data<T>(), y.data<T>(), false, ctx.pool());
    }
  };
  switch (x.dtype()) {
    case DType::kF32: go(float{}); break;
    case DType::kF64: go(double{}); break;
    case DType::kI8: go(int8_t{}); break;
    case DType::kU8: go(uint8_t{}); break;
    default: bad_type(node, "input X", x.dtype(), "f32, f64, i8 or u8");
  }
}

void avgpool_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const PoolGeom g = pool_geom(node, x.shape());
  const bool include_pad = node.attr_int("count_include_pad", 0) != 0;
  const Shape ys = pool_out_shape(g);
  auto go = [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), ys);
    if (y.numel() == 0) return;
    pool_planes<T, PoolKind::kAvg>(g, x.data<T>(), y.data<T>(), include_pad, ctx.pool());
  };
  switch (x.dtype()) {
    case DType::kF32: go(float{}); break;
    case DType::kF64: go(double{}); break;
    default: bad_type(node, "input X", x.dtype(), "f32 or f64");
  }
}

// ---- global pools ----

template <typename T, PoolKind K>
NN_INLINE T reduce_plane(const T* x, int64_t n) {
  constexpr int64_t L = 16;
  T acc[L];
  const T init = K == PoolKind::kMax ? -std::numeric_limits<T>::infinity() : T(0);
  for (int64_t j = 0; j < L; ++j) acc[j] = init;
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int64_t j = 0; j < L; ++j) {
      if constexpr (K == PoolKind::kMax) acc[j] = greater(x[i + j], acc[j]) ? x[i + j] : acc[j];
      else acc[j] += x[i + j];
    }
  T r = init;
  for (int64_t j = 0; j < L; ++j) {
    if constexpr (K == PoolKind::kMax) r = greater(acc[j], r) ? acc[j] : r;
    else r += acc[j];
  }
  for (; i < n; ++i) {
    if constexpr (K == PoolKind::kMax) r = greater(x[i], r) ? x[i] : r;
    else r += x[i];
  }
  return K == PoolKind::kAvg ? r / static_cast<T>(n) : r;
}

template <PoolKind K>
void global_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  QFORGE_CHECK(x.rank() >= 2, Errc::kShapeMismatch, node.describe(),
        "has X of shape " + shape_str(x.shape()), "X of rank >= 2 (N, C, spatial...)");
  Shape ys = x.shape();
  int64_t plane = 1;
  for (size_t i = 2; i < ys.size(); ++i) {
    plane *= ys[i];
    ys[i] = 1;
  }
  const int64_t planes = x.dim(0) * x.dim(1);
  QFORGE_CHECK(plane > 0 || planes == 0, Errc::kShapeMismatch, node.describe(),
        "has X of shape " + shape_str(x.shape()), "non-empty spatial dimensions");
  auto go = [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), ys);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    parallel(ctx.pool(), planes, grain_for(plane), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const T* xp = px + t * plane;
        T r;
        run_vectorized([&]() NN_LAMBDA { r = reduce_plane<T, K>(xp, plane); });
        py[t] = r;
      }
    });
  };
  switch (x.dtype()) {
    case DType::kF32: go(float{}); break;
    case DType::kF64: go(double{}); break;
    default: bad_type(node, "input X", x.dtype(), "f32 or f64");
  }
}

// ---- shape inference ----

ir::Dim sym_window_dim(const ir::Node& node, const ir::Dim& in, int64_t k, int64_t s, int64_t d,
                       const std::string& auto_pad, bool ceil_mode, int64_t pb, int64_t pe) {
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  if (in.known())
    return nn_detail::window_out_dim(node, in.size, k, s, d, auto_pad, ceil_mode, pb, pe);
  if (s == 1 && (same || (k - 1) * d == (auto_pad == "VALID" ? 0 : pb + pe))) return in;
  return ir::Dim();
}

void pool_infer(InferContext& ctx) {
  const ir::Node& node = ctx.node();
  const ir::ValueInfo& x = ctx.input(0);
  if (!x.shape) {
    set_output(ctx, 0, x.dtype, std::nullopt);
    if (ctx.num_outputs() > 1) set_output(ctx, 1, DType::kI64, std::nullopt);
    return;
  }
  const ir::SymShape& xs = *x.shape;
  QFORGE_CHECK(xs.size() >= 3, Errc::kShapeMismatch, node.describe(),
        "has X of shape " + ir::sym_shape_str(xs), "X of rank >= 3 (N, C, spatial...)");
  const size_t r = xs.size() - 2;
  QFORGE_CHECK(node.has_attr("kernel_shape"), Errc::kNotFound, node.describe(),
        "has no attribute 'kernel_shape'", "kernel_shape, which this op requires");
  const std::vector<int64_t> k = nn_detail::window_ints(node, "kernel_shape", r, 1, 1);
  const std::vector<int64_t> s = nn_detail::window_ints(node, "strides", r, 1, 1);
  const std::vector<int64_t> d = nn_detail::window_ints(node, "dilations", r, 1, 1);
  const std::vector<int64_t> pads = nn_detail::window_ints(node, "pads", 2 * r, 0, 0);
  const std::string auto_pad = nn_detail::auto_pad_attr(node);
  const bool ceil_mode = node.attr_int("ceil_mode", 0) != 0;
  ir::SymShape out = {xs[0], xs[1]};
  for (size_t i = 0; i < r; ++i)
    out.push_back(sym_window_dim(node, xs[2 + i], k[i], s[i], d[i], auto_pad, ceil_mode, pads[i],
                                 pads[r + i]));
  set_output(ctx, 0, x.dtype, out);
  if (ctx.num_outputs() > 1) set_output(ctx, 1, DType::kI64, out);
}

void global_infer(InferContext& ctx) {
  const ir::ValueInfo& x = ctx.input(0);
  if (!x.shape) {
    set_output(ctx, 0, x.dtype, std::nullopt);
    return;
  }
  QFORGE_CHECK(x.shape->size() >= 2, Errc::kShapeMismatch, ctx.node().describe(),
        "has X of shape " + ir::sym_shape_str(*x.shape), "X of rank >= 2 (N, C, spatial...)");
  ir::SymShape out = *x.shape;
  for (size_t i = 2; i < out.size(); ++i) out[i] = ir::Dim(1);
  set_output(ctx, 0, x.dtype, out);
}

}  // namespace

void register_nn_pool_ops(OpRegistry& r) {
  r.add({.domain = "", .op_type = "MaxPool", .min_opset = 1, .max_opset = 21,
         .infer = pool_infer, .run = maxpool_run});
  r.add({.domain = "", .op_type = "AveragePool", .min_opset = 1, .max_opset = 21,
         .infer = pool_infer, .run = avgpool_run});
  r.add({.domain = "", .op_type = "GlobalAveragePool", .min_opset = 1, .max_opset = 21,
         .infer = global_infer, .run = global_run<PoolKind::kAvg>});
  r.add({.domain = "", .op_type = "GlobalMaxPool", .min_opset = 1, .max_opset = 21,
         .infer = global_infer, .run = global_run<PoolKind::kMax>});
}

}  // namespace qforge::ops
