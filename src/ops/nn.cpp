// The neural-network family. This file registers all of it and holds Gemm,
// MatMul, Softmax / LogSoftmax / Hardmax (and com.microsoft QLinearSoftmax)
// and the sliding-window geometry
// shared with nn_conv.cpp (Conv, ConvTranspose) and nn_pool.cpp (MaxPool,
// AveragePool, global pools); nn_norm.cpp has the normalizations.
//
// Float Gemm and MatMul run on kernels::sgemm; a constant B is packed once
// in prepare. Softmax's exp is a polynomial the compiler vectorises; the
// vector loops are compiled for AVX2 and AVX-512 as well as the baseline and
// chosen at run time from kernels().isa (so QFORGE_ISA=ref tests the
// baseline code).
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "ops/families.h"
#include "ops/nn_common.h"
#include "ops/op_util.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {

void register_nn_conv_ops(OpRegistry& r);  // nn_conv.cpp
void register_nn_pool_ops(OpRegistry& r);  // nn_pool.cpp
void register_nn_norm_ops(OpRegistry& r);  // nn_norm.cpp

// ---- helpers shared by the nn_*.cpp files (declared again in each) ----
namespace nn_detail {

int vector_isa() {
  switch (kernels::base_isa(kernels::kernels().isa)) {
    case kernels::Isa::kAvx512: return 2;
    case kernels::Isa::kAvx2: return 1;
    default: return 0;
  }
}

std::vector<int64_t> window_ints(const ir::Node& node, const char* name, size_t n, int64_t dflt,
                                 int64_t min_value) {
  std::vector<int64_t> v = node.attr_ints(name, std::vector<int64_t>(n, dflt));
  QFORGE_CHECK(v.size() == n, Errc::kInvalidArgument, node.describe(),
        "has " + std::to_string(v.size()) + " values in attribute '" + name + "'",
        std::to_string(n) + " (one per spatial dimension" +
            (std::string(name) == "pads" ? ", begins then ends)" : ")"));
  for (int64_t x : v)
    QFORGE_CHECK(x >= min_value, Errc::kInvalidArgument, node.describe(),
          "has " + std::to_string(x) + " in attribute '" + name + "'",
          "values >= " + std::to_string(min_value));
  return v;
}

std::string auto_pad_attr(const ir::Node& node) {
  const std::string a = node.attr_string("auto_pad", "NOTSET");
  QFORGE_CHECK(a == "NOTSET" || a == "SAME_UPPER" || a == "SAME_LOWER" || a == "VALID",
        Errc::kInvalidArgument, node.describe(), "has auto_pad '" + a + "'",
        "NOTSET, SAME_UPPER, SAME_LOWER or VALID");
  return a;
}

int64_t window_out_dim(const ir::Node& node, int64_t in, int64_t k, int64_t s, int64_t d,
                       const std::string& auto_pad, bool ceil_mode, int64_t& pad_begin,
                       int64_t& pad_end) {
  const int64_t extent = (k - 1) * d + 1;
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    const int64_t out = (in + s - 1) / s;
    const int64_t total = std::max<int64_t>(0, (out - 1) * s + extent - in);
    pad_begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    pad_end = total - pad_begin;
    return out;
  }
  if (auto_pad == "VALID") pad_begin = pad_end = 0;
  const int64_t span = in + pad_begin + pad_end - extent;
  QFORGE_CHECK(span >= 0, Errc::kShapeMismatch, node.describe(),
        "has a window of extent " + std::to_string(extent) + " over a spatial size of " +
            std::to_string(in) + " padded by " + std::to_string(pad_begin) + "+" +
            std::to_string(pad_end),
        "an input at least as large as the (dilated) kernel");
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  // A window that would start inside the end padding is dropped (as
  // PyTorch and later ONNX specs do).
  if (ceil_mode && out > 1 && (out - 1) * s >= in + pad_begin) --out;
  return out;
}

}  // namespace nn_detail

namespace {

using namespace nn_detail;

std::string dims_str(int64_t a, int64_t b) { return std::to_string(a) + " x " + std::to_string(b); }

// ---- exp that vectorises ----

// e^x for float, |relative error| < 2e-7 over the normal range; x below
// about -87.3 gives 0, NaN gives NaN. Written so the compiler vectorises it.
NN_INLINE float fast_exp(float x) {
  constexpr float kLo = -87.33654f, kHi = 88.37626f;
  // Quiet comparisons (no FP exception on NaN), so that the compiler may
  // turn the selects into vector blends without -fno-trapping-math.
  float xc = __builtin_isless(x, kLo) ? kLo : x;
  xc = __builtin_isgreater(xc, kHi) ? kHi : xc;  // NaN stays NaN
  const float t = xc * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float nc = __builtin_isgreater(n, -127.0f) ? n : -127.0f;  // NaN -> -127: a safe conversion
  const int32_t e = static_cast<int32_t>(nc) + 127;
  const float scale = std::bit_cast<float>(static_cast<uint32_t>(e) << 23);
  const float y = p * scale;
  return __builtin_isless(x, kLo) ? 0.0f : y;
}

template <typename T>
NN_INLINE T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>) return fast_exp(x);
  else return std::exp(x);
}

// ---- Softmax, LogSoftmax, Hardmax ----

enum class SoftKind { kSoftmax, kLogSoftmax };

// The lanes j of the greatest of -inf and x[j], x[16 + j], ... below `body`
// (a multiple of 16); a NaN never wins. Written as `v > m ? v : m`, which is
// what vmaxps computes: the element loop it replaces did the same with
// scalar compares.
template <typename T>
NN_INLINE void lane_max(const T* x, int64_t body, Vec16<T>& m) {
  for (int j = 0; j < 16; ++j) m[j] = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < body; i += 16) {
    Vec16<T> v;
    std::memcpy(&v, x + i, sizeof v);
    m = v > m ? v : m;
  }
}

template <typename T>
NN_INLINE T row_max(const T* x, int64_t n) {
  constexpr int64_t L = 16;
  T acc[L];
  int64_t i = n / L * L;
  Vec16<T> lanes;
  lane_max<T>(x, i, lanes);
  std::memcpy(acc, &lanes, sizeof acc);
  // The 16 lanes folded in halves (a few vector steps instead of a chain of
  // 16 scalar ones). The maximum doesn't depend on the order: only which of
  // +0 and -0 survives could, and x - m, hence e^(x - m), is the same for both.
  for (int64_t w = L / 2; w >= 1; w /= 2)
    for (int64_t j = 0; j < w; ++j) acc[j] = __builtin_isgreater(acc[j + w], acc[j]) ? acc[j + w] : acc[j];
  T m = acc[0];
  for (; i < n; ++i) m = __builtin_isgreater(x[i], m) ? x[i] : m;
  return m;
}

// y[i] = e^(x[i] - m): a plain loop, so that it vectorises.
template <typename T>
NN_INLINE void exp_shifted(const T* x, T* y, int64_t n, T m) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_of<T>(x[i] - m);
}

// y = softmax / log-softmax of each contiguous row of n values.
template <typename T, SoftKind K>
NN_INLINE void soft_rows(const T* x, T* y, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = row_max(xr, n);
    if (std::isinf(m)) m = m > 0 ? m : T(0);  // all -inf: keep exp finite (gives NaN/0 as numpy)
    // The exponentials go to y (softmax) or, block by block, to a buffer.
    T s = 0;
    if constexpr (K == SoftKind::kSoftmax) {
      exp_shifted(xr, yr, n, m);
      s = sum_of(yr, n);
      const T inv = T(1) / s;
      for (int64_t k = 0; k < n; ++k) yr[k] *= inv;
    } else {
      constexpr int64_t B = 512;
      T buf[B];
      for (int64_t i = 0; i < n; i += B) {
        const int64_t w = std::min(B, n - i);
        exp_shifted(xr + i, buf, w, m);
        s += sum_of(buf, w);
      }
      const T lse = m + std::log(s);
      for (int64_t k = 0; k < n; ++k) yr[k] = xr[k] - lse;
    }
  }
}

// v[0..15], a 16 x 16 matrix of rows, transposed in place: the blocks of
// B x B off the diagonal swapped, for B = 8, 4, 2, 1 (each a two-source
// shuffle per row: vpermt2ps).
template <int B, typename T>
NN_INLINE void swap_blocks(Vec16<T>* v) {
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  using Mask [[gnu::vector_size(16 * sizeof(T))]] = I;
  Mask lo, hi;
  for (int l = 0; l < 16; ++l) {
    lo[l] = (l & B) != 0 ? 16 + l - B : l;
    hi[l] = (l & B) != 0 ? 16 + l : l + B;
  }
  for (int i = 0; i < 16; ++i)
    if ((i & B) == 0) {
      const Vec16<T> a = v[i], b = v[i + B];
      v[i] = __builtin_shuffle(a, b, lo);
      v[i + B] = __builtin_shuffle(a, b, hi);
    }
}

template <typename T>
NN_INLINE void transpose16(Vec16<T>* v) {
  swap_blocks<8, T>(v);
  swap_blocks<4, T>(v);
  swap_blocks<2, T>(v);
  swap_blocks<1, T>(v);
}

// Softmax of `rows` contiguous rows of n values, bit for bit soft_rows, 16
// rows at a time. With short rows (a Transformer's 64 scores) soft_rows
// spends most of its time in the scalar tails of each row: the fold of
// row_max's 16 lanes and sum_of's chain of 16 dependent adds. Here the
// 16-lane vectors of 16 rows are transposed in registers (lane j of every
// row in one vector), and each fold runs across the rows, one vector step
// per lane: every row still adds its lanes in sum_of's order (0 + lane 0 +
// ... + lane 15, then the tail), and its maximum is the same value (max
// doesn't depend on the order; only which of +0 and -0 survives could, and
// e^(x - m) is the same for both).
template <typename T>
NN_INLINE void softmax_rows_interleaved(const T* x, T* y, int64_t rows, int64_t n) {
  constexpr int64_t L = 16;
  using V = Vec16<T>;
  const int64_t body = n / L * L;
  for (int64_t r0 = 0; r0 < rows; r0 += L) {
    const int64_t R = std::min(L, rows - r0);
    V acc[L];
    // Row maxima: row_max's 16 lanes per row, folded across the rows.
    for (int64_t r = 0; r < L; ++r) {
      if (r < R) lane_max<T>(x + (r0 + r) * n, body, acc[r]);
      else acc[r] = V{} - std::numeric_limits<T>::infinity();
    }
    transpose16<T>(acc);
    V m = acc[0];
    for (int64_t j = 1; j < L; ++j) m = acc[j] > m ? acc[j] : m;
    // x - m in y, row by row, then the exponentials of the R rows in one
    // loop (the rows are contiguous): its constants are set up once, and
    // its iterations overlap, where a loop per row would run 4 of them.
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = x + (r0 + r) * n;
      T* yr = y + (r0 + r) * n;
      T mr = m[r];
      for (int64_t i = body; i < n; ++i) mr = __builtin_isgreater(xr[i], mr) ? xr[i] : mr;
      if (std::isinf(mr)) mr = mr > 0 ? mr : T(0);  // as soft_rows
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] - mr;
    }
    T* yb = y + r0 * n;
    for (int64_t i = 0; i < R * n; ++i) yb[i] = exp_of<T>(yb[i]);
    // sum_of's 16 partial sums per row.
    for (int64_t r = 0; r < L; ++r) {
      acc[r] = V{};
      for (int64_t i = 0; r < R && i < body; i += L) {
        V e;
        std::memcpy(&e, yb + r * n + i, sizeof e);
        acc[r] += e;
      }
    }
    transpose16<T>(acc);
    V s = V{};
    for (int64_t j = 0; j < L; ++j) s += acc[j];
    for (int64_t r = 0; r < R; ++r) {
      T* yr = y + (r0 + r) * n;
      T sr = s[r];
      for (int64_t i = body; i < n; ++i) sr += yr[i];
      const T inv = T(1) / sr;
      for (int64_t k = 0; k < n; ++k) yr[k] *= inv;
    }
  }
}

// The same along a strided axis: x is [n, inner] per outer index; columns
// [j0, j1) of one outer block, vectorised across the columns.
template <typename T, SoftKind K>
NN_INLINE void soft_cols(const T* x, T* y, int64_t n, int64_t inner, int64_t j0, int64_t j1) {
  constexpr int64_t B = 64;
  T m[B], s[B];
  for (int64_t c0 = j0; c0 < j1; c0 += B) {
    const int64_t w = std::min(B, j1 - c0);
    for (int64_t j = 0; j < w; ++j) m[j] = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < n; ++k) {
      const T* xk = x + k * inner + c0;
      for (int64_t j = 0; j < w; ++j) m[j] = __builtin_isgreater(xk[j], m[j]) ? xk[j] : m[j];
    }
    for (int64_t j = 0; j < w; ++j) {
      if (std::isinf(m[j])) m[j] = m[j] > 0 ? m[j] : T(0);
      s[j] = 0;
    }
    for (int64_t k = 0; k < n; ++k) {
      const T* xk = x + k * inner + c0;
      T* yk = y + k * inner + c0;
      if constexpr (K == SoftKind::kSoftmax) {
        for (int64_t j = 0; j < w; ++j) {
          const T e = exp_of<T>(xk[j] - m[j]);
          yk[j] = e;
          s[j] += e;
        }
      } else {
        for (int64_t j = 0; j < w; ++j) s[j] += exp_of<T>(xk[j] - m[j]);
      }
    }
    if constexpr (K == SoftKind::kSoftmax) {
      for (int64_t j = 0; j < w; ++j) s[j] = T(1) / s[j];
      for (int64_t k = 0; k < n; ++k) {
        T* yk = y + k * inner + c0;
        for (int64_t j = 0; j < w; ++j) yk[j] *= s[j];
      }
    } else {
      for (int64_t j = 0; j < w; ++j) s[j] = m[j] + std::log(s[j]);
      for (int64_t k = 0; k < n; ++k) {
        const T* xk = x + k * inner + c0;
        T* yk = y + k * inner + c0;
        for (int64_t j = 0; j < w; ++j) yk[j] = xk[j] - s[j];
      }
    }
  }
}

// The (outer, n, inner) view of a softmax-like op: for opset < 13 the input
// is coerced to 2-D at axis (default 1), otherwise it runs along one axis
// (default -1).
struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
};

AxisView axis_view(const Shape& s, const ir::Node& node, int64_t opset) {
  const int64_t rank = static_cast<int64_t>(s.size());
  const bool coerce = opset < 13;
  const int64_t a = node.attr_int("axis", coerce ? 1 : -1);
  // Coerced to 2-D, axis == rank is allowed (rows of one value).
  const int64_t axis = coerce && a == rank ? rank : normalize_axis(a, rank, node);
  AxisView v;
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t x = s[static_cast<size_t>(d)];
    if (d < axis) v.outer *= x;
    else if (d == axis || coerce) v.n *= x;
    else v.inner *= x;
  }
  return v;
}

template <SoftKind K>
void soft_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const AxisView v = axis_view(x.shape(), ctx.node(), ctx.opset());
  dispatch_float(x.dtype(), ctx.node(), "input 0", [&](auto z) {
    using T = decltype(z);
    Tensor& yt = ctx.output(0, x.dtype(), x.shape());
    const T* px = x.data<T>();
    T* py = yt.data<T>();
    if (x.numel() == 0) return;
    if (v.inner == 1) {
      // An exponential per element: worth a thread from 2^12 values on (a
      // Transformer's 4 heads x 64 x 64 scores split in 4 parts).
      parallel(ctx.pool(), v.outer, grain_for(v.n, 1 << 12), [&](int64_t b, int64_t e) {
        // Several rows of a Softmax: interleaved (a single row takes
        // soft_rows, which the tests compare the interleaved rows with).
        if constexpr (K == SoftKind::kSoftmax) {
          if (e - b > 1) {
            run_vectorized([&]() NN_LAMBDA {
              softmax_rows_interleaved<T>(px + b * v.n, py + b * v.n, e - b, v.n);
            });
            return;
          }
        }
        run_vectorized([&]() NN_LAMBDA { soft_rows<T, K>(px + b * v.n, py + b * v.n, e - b, v.n); });
      });
    } else {
      constexpr int64_t kCols = 256;
      const int64_t blocks = (v.inner + kCols - 1) / kCols;
      parallel(ctx.pool(), v.outer * blocks, grain_for(v.n * std::min(kCols, v.inner)),
               [&](int64_t b, int64_t e) {
                 for (int64_t t = b; t < e; ++t) {
                   const int64_t o = t / blocks, j0 = (t % blocks) * kCols;
                   const int64_t j1 = std::min(v.inner, j0 + kCols);
                   const int64_t off = o * v.n * v.inner;
                   run_vectorized([&]() NN_LAMBDA {
                     soft_cols<T, K>(px + off, py + off, v.n, v.inner, j0, j1);
                   });
                 }
               });
    }
  });
}

// QLinearSoftmax along the last axis with a positive X scale: the row
// maximum is the value of the row's largest code (the dequantized values
// rise with the code), so each exponential exp(x - max) is a function of
// two codes, the element's and the row maximum's. The 256 exponentials for
// one maximum are computed the first time a row has it (by the same
// exp_shifted the float kernel runs, on the 256 dequantized values) and
// looked up after that; each row is then summed, scaled and quantized as
// soft_rows does. Bit for bit the float kernel's result, with a few
// hundred exponentials per call instead of one per element. A call of at
// most kDirectValues values in short rows (a ViT's attention at batch 1: 64
// rows of 16) takes its exponentials directly instead, the same exp_of on
// the same values: there few rows share a maximum, and a table of 256 costs
// more than a row's own n. (With many rows, as at batch 32, the tables win.)
constexpr int64_t kShortRow = 64, kDirectValues = 4096;

void softmax_rows_by_code(const std::array<float, 256>& table, bool is_signed, int64_t rows, int64_t n,
                          const Q8& yq, const uint8_t* px, uint8_t* py, ThreadPool* pool) {
  const uint8_t flip = is_signed ? 0x80 : 0;  // code order as unsigned bytes
  const int64_t run = std::max<int64_t>(1, 4096 / n);
  parallel(pool, rows, std::max(run, grain_for(n)), [&](int64_t b, int64_t e) {
    // The tables made so far, 256 exponentials each: the one for maximum
    // byte m is exps[slot[m]], exp(table[i] - table[m]) for byte i. A call
    // sees a few distinct maxima, so the tables are made on demand into a
    // buffer each thread keeps (a zeroed 256 x 256 block per call cost more
    // than the whole Softmax).
    thread_local std::vector<float> exps, buf, maxima;
    std::array<int16_t, 256> slot;
    slot.fill(-1);
    int16_t used = 0;
    const bool direct = n <= kShortRow && rows * n <= kDirectValues;
    buf.resize(static_cast<size_t>(std::min(run, e - b) * n));
    maxima.resize(static_cast<size_t>(std::min(run, e - b)));
    float* f = buf.data();
    const float* tab = table.data();
    for (int64_t r0 = b; r0 < e; r0 += run) {
      const int64_t k = std::min(run, e - r0);
      for (int64_t r = 0; r < k; ++r) {
        const uint8_t* xr = px + (r0 + r) * n;
        uint8_t top = 0;
        for (int64_t i = 0; i < n; ++i) top = std::max<uint8_t>(top, static_cast<uint8_t>(xr[i] ^ flip));
        const uint8_t mx = top ^ flip;  // the largest code's byte
        if (direct) {  // the dequantized row; its exponentials below
          float* fr = f + r * n;
          for (int64_t i = 0; i < n; ++i) fr[i] = tab[xr[i]];
          maxima[static_cast<size_t>(r)] = tab[mx];
          continue;
        }
        if (slot[mx] < 0) {
          if (exps.size() < static_cast<size_t>(used + 1) * 256)
            exps.resize(static_cast<size_t>(used + 1) * 256);
          const float m = tab[mx];
          float* fresh = exps.data() + used * 256;
          run_vectorized([&]() NN_LAMBDA { exp_shifted(tab, fresh, 256, m); });
          slot[mx] = used++;
        }
        const float* er = exps.data() + slot[mx] * 256;
        float* fr = f + r * n;
        for (int64_t i = 0; i < n; ++i) fr[i] = er[xr[i]];
      }
      run_vectorized([&]() NN_LAMBDA {
        for (int64_t r = 0; r < k; ++r) {
          float* fr = f + r * n;
          if (direct) exp_shifted(fr, fr, n, maxima[static_cast<size_t>(r)]);
          const float inv = 1.0f / sum_of(fr, n);
          for (int64_t i = 0; i < n; ++i) fr[i] *= inv;
        }
      });
      quantize_q8(f, k * n, yq, py + r0 * n);
    }
  });
}

// com.microsoft QLinearSoftmax(X, X_scale, X_zero_point, Y_scale,
// Y_zero_point), attributes axis and opset (the Softmax's opset, which sets
// the axis semantics): Y = quantize(Softmax(dequantize(X))). One outer block
// at a time (or, along the last axis, a run of rows of about 4K values,
// as attention's short rows would otherwise pay the calls per row): its
// codes dequantized on the SIMD kernel into a float buffer, the float Softmax
// kernel in place, then quantized on the SIMD kernel; so it equals the
// DequantizeLinear -> Softmax -> QuantizeLinear group bit for bit (each
// row sees the same float operations however many rows share a call), with
// no float tensor in memory.
void qlinear_softmax_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Q8 xq = read_q8(ctx, 1, 2, x.dtype(), "X");
  const Q8 yq = read_q8(ctx, 3, 4, ctx.has_input(4) ? ctx.input(4).dtype() : x.dtype(), "Y");
  const AxisView v = axis_view(x.shape(), node, node.attr_int("opset", 13));
  Tensor& y = ctx.output(0, yq.type, x.shape());
  const int64_t block = v.n * v.inner;
  if (block == 0 || v.outer == 0) return;
  const std::array<float, 256> table = dequant_table(xq);
  const auto* px = static_cast<const uint8_t*>(x.raw());
  auto* py = static_cast<uint8_t*>(y.raw());
  if (v.inner == 1 && xq.scale > 0) {
    softmax_rows_by_code(table, xq.type == DType::kI8, v.outer, v.n, yq, px, py, ctx.pool());
    return;
  }
  // Outer blocks per call: rows of the last axis in runs of about 4K values.
  const int64_t run = v.inner == 1 ? std::max<int64_t>(1, 4096 / block) : 1;
  parallel(ctx.pool(), v.outer, std::max(run, grain_for(block)), [&](int64_t b, int64_t e) {
    std::vector<float> buf(static_cast<size_t>(std::min(run, e - b) * block));
    float* f = buf.data();
    for (int64_t o = b; o < e; o += run) {
      const int64_t k = std::min(run, e - o), len = k * block;
      const uint8_t* xo = px + o * block;
      dequantize_q8(xo, len, xq, f);
      run_vectorized([&]() NN_LAMBDA {
        if (v.inner == 1) soft_rows<float, SoftKind::kSoftmax>(f, f, k, v.n);
        else soft_cols<float, SoftKind::kSoftmax>(f, f, v.n, v.inner, 0, v.inner);
      });
      quantize_q8(f, len, yq, py + o * block);
    }
  });
}

void qlinear_softmax_infer(InferContext& c) {
  set_output(c, 0, c.has_input(4) ? c.input(4).dtype : c.input(0).dtype, c.input(0).shape);
}

void hardmax_run(OpContext& ctx) {
  const Tensor& x = ctx.input(0);
  const AxisView v = axis_view(x.shape(), ctx.node(), ctx.opset());
  dispatch_float(x.dtype(), ctx.node(), "input 0", [&](auto z) {
    using T = decltype(z);
    Tensor& yt = ctx.output(0, x.dtype(), x.shape());
    const T* px = x.data<T>();
    T* py = yt.data<T>();
    std::fill(py, py + x.numel(), T(0));
    if (v.n == 0) return;
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t j = 0; j < v.inner; ++j) {
        const T* c = px + o * v.n * v.inner + j;
        int64_t best = 0;
        for (int64_t k = 1; k < v.n; ++k)
          if (c[k * v.inner] > c[best * v.inner]) best = k;
        py[o * v.n * v.inner + best * v.inner + j] = T(1);
      }
  });
}

void infer_float_same(InferContext& ctx) {
  const ir::ValueInfo& in = ctx.input(0);
  if (in.dtype && *in.dtype != DType::kF32 && *in.dtype != DType::kF64)
    bad_type(ctx.node(), "input 0", *in.dtype, "f32 or f64");
  if (in.shape) {
    const int64_t rank = static_cast<int64_t>(in.shape->size());
    const int64_t a = ctx.node().attr_int("axis", ctx.opset() < 13 ? 1 : -1);
    if (!(ctx.opset() < 13 && a == rank)) normalize_axis(a, rank, ctx.node());
  }
  infer_same_as(ctx);
}

// ---- Gemm ----

struct GemmState {
  kernels::PackedMatrix b;  // alpha * op(B), K x N
};

struct GemmDims {
  int64_t M, N, K;
  bool ta, tb;
};

GemmDims gemm_dims(const ir::Node& node, const Shape& a, const Shape& b) {
  QFORGE_CHECK(a.size() == 2 && b.size() == 2, Errc::kShapeMismatch, node.describe(),
        "has inputs of shapes " + shape_str(a) + " and " + shape_str(b), "A and B of rank 2");
  GemmDims g;
  g.ta = node.attr_int("transA", 0) != 0;
  g.tb = node.attr_int("transB", 0) != 0;
  g.M = g.ta ? a[1] : a[0];
  g.K = g.ta ? a[0] : a[1];
  const int64_t kb = g.tb ? b[1] : b[0];
  g.N = g.tb ? b[0] : b[1];
  QFORGE_CHECK(g.K == kb, Errc::kShapeMismatch, node.describe(),
        "multiplies op(A) of " + dims_str(g.M, g.K) + " by op(B) of " + dims_str(kb, g.N),
        "op(A) columns equal to op(B) rows");
  return g;
}

// How C broadcasts to [M, N]: 0 none, 1 along columns (N values), 2 along
// rows (M values), 3 full.
int gemm_c_kind(const ir::Node& node, const Shape& c, int64_t M, int64_t N) {
  const int64_t cr = c.size() == 2 ? c[0] : 1;
  const int64_t cc = c.empty() ? 1 : c.back();
  const bool ok = c.size() <= 2 && (cr == 1 || cr == M) && (cc == 1 || cc == N);
  QFORGE_CHECK(ok, Errc::kShapeMismatch, node.describe(),
        "has C of shape " + shape_str(c) + " for a result of " + dims_str(M, N),
        "C unidirectionally broadcastable to [M, N]");
  if (cr == M && cc == N && !(M == 1 || N == 1)) return 3;
  if (cr == M && M != 1 && cc == 1) return 2;
  if (cr == M && cc == N && N == 1) return 2;
  return 1;  // [N], [1, N], scalar, [1, 1]
}

std::shared_ptr<const void> gemm_prepare(const PrepareContext& p) {
  const Tensor* b = p.constants.size() > 1 ? p.constants[1] : nullptr;
  if (b == nullptr || b->dtype() != DType::kF32 || b->rank() != 2) return nullptr;
  const bool tb = p.node.attr_int("transB", 0) != 0;
  const float alpha = p.node.attr_float("alpha", 1.0f);
  const int64_t K = tb ? b->dim(1) : b->dim(0), N = tb ? b->dim(0) : b->dim(1);
  if (K == 0 || N == 0) return nullptr;
  auto st = std::make_shared<GemmState>();
  const float* src = b->data<float>();
  std::vector<float> scaled;
  if (alpha != 1.0f) {
    scaled.assign(src, src + b->numel());
    for (float& v : scaled) v *= alpha;
    src = scaled.data();
  }
  st->b = kernels::pack_b(tb, K, N, src, b->dim(1));
  return st;
}

template <typename T>
void gemm_naive(const GemmDims& g, const T* A, const T* B, const Tensor* C, double alpha,
                double beta, T* Y) {
  std::vector<double> row(static_cast<size_t>(g.N));
  std::vector<int64_t> cs = {0, 0};
  if (C != nullptr) {
    const Shape& c = C->shape();
    const int64_t cr = c.size() == 2 ? c[0] : 1, cc = c.empty() ? 1 : c.back();
    cs = {cr == 1 ? 0 : (c.empty() ? 1 : c.back()), cc == 1 ? 0 : 1};
  }
  const T* pc = C != nullptr ? C->data<T>() : nullptr;
  for (int64_t i = 0; i < g.M; ++i) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int64_t k = 0; k < g.K; ++k) {
      const double a = static_cast<double>(g.ta ? A[k * g.M + i] : A[i * g.K + k]);
      for (int64_t j = 0; j < g.N; ++j)
        row[static_cast<size_t>(j)] += a * static_cast<double>(g.tb ? B[j * g.K + k] : B[k * g.N + j]);
    }
    for (int64_t j = 0; j < g.N; ++j) {
      double v = alpha * row[static_cast<size_t>(j)];
      if (pc != nullptr) v += beta * static_cast<double>(pc[i * cs[0] + j * cs[1]]);
      Y[i * g.N + j] = static_cast<T>(v);
    }
  }
}

void gemm_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  QFORGE_CHECK(ctx.has_input(2) || ctx.opset() >= 11, Errc::kNotFound, node.describe(),
        "has no input C", "C (optional only from opset 11)");
  const Tensor* c = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  QFORGE_CHECK(a.dtype() == b.dtype() && (c == nullptr || c->dtype() == a.dtype()), Errc::kTypeMismatch,
        node.describe(), "has inputs of different types", "A, B and C of one type");
  const GemmDims g = gemm_dims(node, a.shape(), b.shape());
  const float alpha = node.attr_float("alpha", 1.0f);
  const float beta = node.attr_float("beta", 1.0f);
  const int kind = c != nullptr ? gemm_c_kind(node, c->shape(), g.M, g.N) : 0;
  Tensor& y = ctx.output(0, a.dtype(), {g.M, g.N});
  if (a.dtype() != DType::kF32) {
    switch (a.dtype()) {
      case DType::kF64: gemm_naive(g, a.data<double>(), b.data<double>(), c, alpha, beta, y.data<double>()); break;
      case DType::kI64: gemm_naive(g, a.data<int64_t>(), b.data<int64_t>(), c, alpha, beta, y.data<int64_t>()); break;
      case DType::kI32: gemm_naive(g, a.data<int32_t>(), b.data<int32_t>(), c, alpha, beta, y.data<int32_t>()); break;
      default: bad_type(node, "input A", a.dtype(), "f32, f64, i32 or i64");
    }
    return;
  }
  if (g.M == 0 || g.N == 0) return;
  float* py = y.data<float>();
  kernels::GemmEpilogue ep = fused_activation(node);
  std::vector<float> bias;
  float gemm_beta = 0.0f;
  if (c != nullptr && beta != 0.0f) {
    const float* pc = c->data<float>();
    if (kind == 3) {
      std::memcpy(py, pc, static_cast<size_t>(g.M * g.N) * sizeof(float));
      gemm_beta = beta;
    } else if (kind == 2) {
      bias.assign(pc, pc + g.M);
      for (float& v : bias) v *= beta;
      ep.bias_m = bias.data();
    } else {
      bias.resize(static_cast<size_t>(g.N));
      for (int64_t j = 0; j < g.N; ++j) bias[static_cast<size_t>(j)] = beta * pc[c->numel() == 1 ? 0 : j];
      ep.bias_n = bias.data();
    }
  }
  const float* pa = a.data<float>();
  const int64_t lda = a.dim(1);
  if (ctx.state() != nullptr) {
    const auto& st = ctx.state_as<GemmState>();
    QFORGE_CHECK(st.b.rows() == g.K && st.b.cols() == g.N, Errc::kInternal, node.describe(),
          "has a packed B that does not match B's shape");
    kernels::sgemm_packed_b(g.M, pa, lda, g.ta, st.b, gemm_beta, py, g.N, ep, ctx.pool());
  } else {
    kernels::sgemm(g.ta, g.tb, g.M, g.N, g.K, alpha, pa, lda, b.data<float>(), b.dim(1),
                   gemm_beta, py, g.N, ep, ctx.pool());
  }
}

std::string fused_gemm_check(const InferContext& ctx) {
  if (ctx.input(0).dtype && *ctx.input(0).dtype != DType::kF32)
    return "input A is " + std::string(dtype_name(*ctx.input(0).dtype)) + "; qforge runs FusedGemm on f32 only";
  return fused_activation_check(ctx.node());
}

void gemm_infer(InferContext& ctx) {
  const ir::ValueInfo& a = ctx.input(0);
  const ir::ValueInfo& b = ctx.input(1);
  std::optional<ir::SymShape> out;
  const bool ta = ctx.node().attr_int("transA", 0) != 0, tb = ctx.node().attr_int("transB", 0) != 0;
  ir::Dim M, N;
  if (a.shape) {
    QFORGE_CHECK(a.shape->size() == 2, Errc::kShapeMismatch, ctx.node().describe(),
          "has A of shape " + ir::sym_shape_str(*a.shape), "a 2-D A");
    M = (*a.shape)[ta ? 1 : 0];
  }
  if (b.shape) {
    QFORGE_CHECK(b.shape->size() == 2, Errc::kShapeMismatch, ctx.node().describe(),
          "has B of shape " + ir::sym_shape_str(*b.shape), "a 2-D B");
    N = (*b.shape)[tb ? 0 : 1];
  }
  if (a.shape && b.shape) {
    const ir::Dim ka = (*a.shape)[ta ? 0 : 1], kb = (*b.shape)[tb ? 1 : 0];
    QFORGE_CHECK(!(ka.known() && kb.known()) || ka.size == kb.size, Errc::kShapeMismatch,
          ctx.node().describe(), "multiplies op(A) with " + ka.str() + " columns by op(B) with " +
          kb.str() + " rows", "equal inner dimensions");
  }
  set_output(ctx, 0, a.dtype ? a.dtype : b.dtype, ir::SymShape{M, N});
}

// ---- MatMul ----

struct MatMulState {
  kernels::PackedMatrix b;  // K x N
};

std::shared_ptr<const void> matmul_prepare(const PrepareContext& p) {
  const Tensor* b = p.constants.size() > 1 ? p.constants[1] : nullptr;
  if (b == nullptr || b->dtype() != DType::kF32 || b->rank() < 2) return nullptr;
  const int64_t K = b->dim(-2), N = b->dim(-1);
  if (K == 0 || N < 2 || b->numel() != K * N) return nullptr;  // batched B: not packed
  auto st = std::make_shared<MatMulState>();
  st->b = kernels::pack_b(false, K, N, b->data<float>(), N);
  return st;
}

struct MatMulDims {
  int64_t M = 1, N = 1, K = 1;
  Shape a_batch, b_batch, out_batch, out;
};

MatMulDims matmul_dims(const ir::Node& node, const Shape& a, const Shape& b) {
  QFORGE_CHECK(!a.empty() && !b.empty(), Errc::kShapeMismatch, node.describe(),
        "has inputs of shapes " + shape_str(a) + " and " + shape_str(b), "inputs of rank >= 1");
  MatMulDims d;
  d.K = a.back();
  d.M = a.size() >= 2 ? a[a.size() - 2] : 1;
  const int64_t kb = b.size() >= 2 ? b[b.size() - 2] : b[0];
  d.N = b.size() >= 2 ? b.back() : 1;
  QFORGE_CHECK(d.K == kb, Errc::kShapeMismatch, node.describe(),
        "multiplies " + shape_str(a) + " by " + shape_str(b),
        "A's last dimension equal to B's second-to-last (numpy matmul)");
  if (a.size() > 2) d.a_batch.assign(a.begin(), a.end() - 2);
  if (b.size() > 2) d.b_batch.assign(b.begin(), b.end() - 2);
  d.out_batch = broadcast_shapes(d.a_batch, d.b_batch, node);
  d.out.reserve(d.out_batch.size() + 2);
  d.out = d.out_batch;
  if (a.size() >= 2) d.out.push_back(d.M);
  if (b.size() >= 2) d.out.push_back(d.N);
  return d;
}

// Matrix offsets (in matrices) of A and B for each output batch index.
void batch_offsets(const MatMulDims& d, std::vector<int64_t>& ao, std::vector<int64_t>& bo) {
  const int64_t nb = shape_numel(d.out_batch);
  const std::vector<int64_t> as = broadcast_strides(d.a_batch, d.out_batch);
  const std::vector<int64_t> bs = broadcast_strides(d.b_batch, d.out_batch);
  ao.assign(static_cast<size_t>(nb), 0);
  bo.assign(static_cast<size_t>(nb), 0);
  const size_t r = d.out_batch.size();
  std::vector<int64_t> idx(r, 0);
  int64_t oa = 0, ob = 0;
  for (int64_t t = 0; t < nb; ++t) {
    ao[static_cast<size_t>(t)] = oa;
    bo[static_cast<size_t>(t)] = ob;
    for (size_t k = r; k-- > 0;) {
      ++idx[k];
      oa += as[k];
      ob += bs[k];
      if (idx[k] < d.out_batch[k]) break;
      oa -= as[k] * idx[k];
      ob -= bs[k] * idx[k];
      idx[k] = 0;
    }
  }
}

template <typename T>
void matmul_naive(const MatMulDims& d, const T* A, const T* B, T* Y) {
  std::vector<int64_t> ao, bo;
  batch_offsets(d, ao, bo);
  for (size_t t = 0; t < ao.size(); ++t) {
    const T* a = A + ao[t] * d.M * d.K;
    const T* b = B + bo[t] * d.K * d.N;
    T* y = Y + static_cast<int64_t>(t) * d.M * d.N;
    for (int64_t i = 0; i < d.M; ++i) {
      T* yr = y + i * d.N;
      for (int64_t j = 0; j < d.N; ++j) yr[j] = T(0);
      for (int64_t k = 0; k < d.K; ++k) {
        const T av = a[i * d.K + k];
        const T* br = b + k * d.N;
        for (int64_t j = 0; j < d.N; ++j) yr[j] += av * br[j];
      }
    }
  }
}

// One sgemm per output matrix t of d: op(A) at A + ao[t] (ld lda), op(B)
// at B + bo[t], Y at Y + yo[t] (ld ldy; yo nullptr: t * M * N). Many
// matrices, or small ones, go one per thread; otherwise each GEMM is split
// over the pool. Every element sees the same operations either way.
// post (if given) then runs on each matrix of Y, on the thread that computed
// it, while it is still in cache.
void batched_sgemm(const MatMulDims& d, bool ta, const float* A, int64_t lda, const std::vector<int64_t>& ao,
                   bool tb, const float* B, int64_t ldb, const std::vector<int64_t>& bo, float* Y, int64_t ldy,
                   const std::vector<int64_t>* yo, ThreadPool* pool,
                   const std::function<void(float*)>* post = nullptr) {
  const int64_t nb = static_cast<int64_t>(ao.size());
  const int threads = pool != nullptr ? pool->threads() : 1;
  const int64_t macs = d.M * d.N * d.K;
  // Operands that fit in L1 (attention's 64 x 64 heads): the next
  // matrix's rows (rows x cols floats stored ld apart) are fetched while
  // this one runs. The heads are strided views of the projection's
  // output, rows a few lines long spread over megabytes at batch 32, which
  // the hardware doesn't fetch ahead of the packing loops.
  const bool small = (d.M * d.K + d.K * d.N) * static_cast<int64_t>(sizeof(float)) <= (int64_t{32} << 10);
  auto one = [&](int64_t t, ThreadPool* p, bool fetch_next) {
    const size_t i = static_cast<size_t>(t);
    if (fetch_next && small) {
      prefetch_rows(A + ao[i + 1], ta ? d.K : d.M, ta ? d.M : d.K, lda);
      prefetch_rows(B + bo[i + 1], tb ? d.N : d.K, tb ? d.K : d.N, ldb);
    }
    float* y = Y + (yo != nullptr ? (*yo)[i] : t * d.M * d.N);
    kernels::sgemm(ta, tb, d.M, d.N, d.K, 1.0f, A + ao[i], lda, B + bo[i], ldb, 0.0f, y, ldy, {}, p);
    if (post != nullptr) (*post)(y);
  };
  if (threads > 1 && (nb >= 2 * threads || macs < (int64_t{1} << 18))) {
    parallel(pool, nb, grain_for(macs, 1 << 16), [&](int64_t b0, int64_t b1) {
      for (int64_t t = b0; t < b1; ++t) one(t, nullptr, t + 1 < b1);
    });
  } else {
    for (int64_t t = 0; t < nb; ++t) one(t, pool, t + 1 < nb);
  }
}

// Y = A x B in float32, A, B and Y contiguous with d's shapes; `st` holds B
// packed (or is nullptr).
void matmul_f32(const ir::Node& node, const MatMulDims& d, const float* pa, const float* pb, float* py,
                const MatMulState* st, ThreadPool* pool) {
  if (shape_numel(d.b_batch) == 1) {
    // B is one matrix: fold A's batch into its rows, one GEMM.
    const int64_t rows = shape_numel(d.a_batch) * d.M;
    if (st != nullptr) {
      QFORGE_CHECK(st->b.rows() == d.K && st->b.cols() == d.N, Errc::kInternal, node.describe(),
            "has a packed B that does not match B's shape");
      kernels::sgemm_packed_b(rows, pa, d.K, false, st->b, 0.0f, py, d.N, {}, pool);
    } else {
      kernels::sgemm(false, false, rows, d.N, d.K, 1.0f, pa, d.K, pb, d.N, 0.0f, py, d.N, {}, pool);
    }
    return;
  }
  std::vector<int64_t> ao, bo;
  batch_offsets(d, ao, bo);
  for (size_t t = 0; t < ao.size(); ++t) {
    ao[t] *= d.M * d.K;
    bo[t] *= d.K * d.N;
  }
  batched_sgemm(d, false, pa, d.K, ao, false, pb, d.N, bo, py, d.N, nullptr, pool);
}

void matmul_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  QFORGE_CHECK(a.dtype() == b.dtype(), Errc::kTypeMismatch, node.describe(),
        "multiplies " + std::string(dtype_name(a.dtype())) + " by " + std::string(dtype_name(b.dtype())),
        "A and B of one type");
  const MatMulDims d = matmul_dims(node, a.shape(), b.shape());
  Tensor& y = ctx.output(0, a.dtype(), d.out);
  if (y.numel() == 0) return;
  switch (a.dtype()) {
    case DType::kF32: break;
    case DType::kF64: matmul_naive(d, a.data<double>(), b.data<double>(), y.data<double>()); return;
    case DType::kI64: matmul_naive(d, a.data<int64_t>(), b.data<int64_t>(), y.data<int64_t>()); return;
    case DType::kI32: matmul_naive(d, a.data<int32_t>(), b.data<int32_t>(), y.data<int32_t>()); return;
    default: bad_type(node, "input A", a.dtype(), "f32, f64, i32 or i64");
  }
  matmul_f32(node, d, a.data<float>(), b.data<float>(), y.data<float>(),
             ctx.state() != nullptr ? &ctx.state_as<MatMulState>() : nullptr, ctx.pool());
}

// ---- ai.qforge TransposeMatMul ----
//
// Y = Transpose(post(MatMul(Transpose(A, perm_a), Transpose(B, perm_b))), perm_y)
// in float32 (a missing perm: no Transpose), post dividing by the attribute
// `div` if there is one, then taking the Softmax over the last axis if
// `softmax` is 1: Div's and Softmax's own operations, on each matrix while
// it is in cache. Written by passes::fuse_transpose_matmul for attention's
// heads (scores = softmax(q k^T / sqrt(d)), then scores v). Where each permuted
// operand keeps its source's last axis among its last two (a matrix or a
// transposed one, with a row stride) and perm_y keeps the last axis, the
// GEMMs read and write the strided matrices in place: sgemm packs its
// operands anyway, and every sum is the one MatMul's GEMM computes, bit for
// bit. Elsewhere (and where MatMul takes another path: a matrix-vector
// product, one B for all of A's batch) the operands are transposed first
// and MatMul's code runs on them. An operand may also be a Split's part
// reshaped (a_cols / b_cols and inputs 2 / 3, see operand_view): q, k and v
// read from the projection's output where they lie.

// A permuted view of a tensor: its shape, the strides (in elements) of each
// of its axes and where its first element is.
struct PermutedView {
  Shape shape;
  std::vector<int64_t> st;
  const float* data = nullptr;
};

std::vector<int64_t> row_major_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t k = s.size(); k-- > 1;) st[k - 1] = st[k] * s[k];
  return st;
}

// The perm attribute `name` for a tensor of `rank` axes; the identity when absent.
std::vector<int64_t> perm_attr(const ir::Node& node, const char* name, size_t rank) {
  std::vector<int64_t> p = node.attr_ints(name, {});
  if (p.empty()) {
    p.reserve(rank);
    for (size_t k = 0; k < rank; ++k) p.push_back(static_cast<int64_t>(k));
    return p;
  }
  std::vector<bool> seen(rank, false);
  bool ok = p.size() == rank;
  for (int64_t v : p) {
    ok = ok && v >= 0 && v < static_cast<int64_t>(rank) && !seen[static_cast<size_t>(v)];
    if (ok) seen[static_cast<size_t>(v)] = true;
  }
  QFORGE_CHECK(ok, Errc::kInvalidArgument, node.describe(),
        "has " + std::string(name) + " " + shape_str(p) + " for an operand of " + std::to_string(rank) + " axes",
        std::string("a permutation of 0..") + std::to_string(static_cast<int64_t>(rank) - 1));
  return p;
}

PermutedView permuted(const Shape& s, const std::vector<int64_t>& st, const std::vector<int64_t>& perm,
                      const float* data = nullptr) {
  PermutedView v;
  v.data = data;
  v.shape.reserve(perm.size());
  v.st.reserve(perm.size());
  for (int64_t p : perm) {
    v.shape.push_back(s[static_cast<size_t>(p)]);
    v.st.push_back(st[static_cast<size_t>(p)]);
  }
  return v;
}

// Operand k (0: A, 1: B) as a view of input k. With the attribute a_cols
// (b_cols) = [c0, c1), the operand is first the columns c0..c1 of input k's
// last axis (a Split's part) reshaped to the shape in input k + 2 (a
// Reshape's target): a strided view too where that Reshape only splits the
// last axis (attention's heads), else a copy of the part kept in `hold`.
// Then the perm.
PermutedView operand_view(const OpContext& ctx, int k, Tensor& hold) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(k);
  const std::string cols_name = k == 0 ? "a_cols" : "b_cols";
  Shape shape = x.shape();
  std::vector<int64_t> st = row_major_strides(shape);
  const float* data = x.data<float>();
  if (node.has_attr(cols_name)) {
    const std::vector<int64_t> c = node.attr_ints(cols_name);
    QFORGE_CHECK(c.size() == 2 && !shape.empty() && c[0] >= 0 && c[0] <= c[1] && c[1] <= shape.back(),
          Errc::kInvalidArgument, node.describe(),
          "has " + cols_name + " " + shape_str(c) + " for input " + std::to_string(k) + " of shape " +
              shape_str(shape),
          "[begin, end) within the input's last axis");
    QFORGE_CHECK(ctx.has_input(k + 2), Errc::kInvalidArgument, node.describe(),
          "has " + cols_name + " but no input " + std::to_string(k + 2), "the shape the columns take");
    Shape part = shape;
    part.back() = c[1] - c[0];
    const Shape target = reshape_shape(part, to_int64s(ctx.input(k + 2), node, "the columns' shape"), false, node);
    data += c[0];
    const size_t lead = part.size() - 1;
    if (target.size() >= lead && std::equal(part.begin(), part.begin() + static_cast<std::ptrdiff_t>(lead), target.begin())) {
      // The leading axes keep their strides; the part's columns are the
      // trailing axes, row-major.
      st.resize(target.size());
      int64_t inner = 1;
      for (size_t a = target.size(); a-- > lead;) {
        st[a] = inner;
        inner *= target[a];
      }
    } else {
      hold = Tensor(DType::kF32, part);
      strided_copy(sizeof(float), part, st, data, hold.raw(), ctx.pool());
      data = hold.data<float>();
      st = row_major_strides(target);
    }
    shape = target;
  }
  return permuted(shape, st, perm_attr(node, k == 0 ? "perm_a" : "perm_b", shape.size()), data);
}

bool is_identity(const std::vector<int64_t>& perm) {
  for (size_t k = 0; k < perm.size(); ++k)
    if (perm[k] != static_cast<int64_t>(k)) return false;
  return true;
}

// The rows x cols matrix of a view's last two axes as sgemm reads it: trans
// and ld; false where neither axis is contiguous.
bool as_matrix(const PermutedView& v, bool& trans, int64_t& ld) {
  const size_t r = v.shape.size();
  if (r < 2) return false;
  const int64_t rows = v.shape[r - 2], cols = v.shape[r - 1];
  if (v.st[r - 1] == 1 && v.st[r - 2] >= cols) {
    trans = false;
    ld = v.st[r - 2];
    return true;
  }
  if (v.st[r - 2] == 1 && v.st[r - 1] >= rows) {
    trans = true;
    ld = v.st[r - 1];
    return true;
  }
  return false;
}

// Element offsets of the matrices of a view (batch axes `batch`, strides
// `st`, right-aligned with out_batch; an axis of 1 broadcasts) for each
// index of out_batch, in order.
std::vector<int64_t> matrix_offsets(const Shape& out_batch, const Shape& batch, const std::vector<int64_t>& st) {
  const size_t r = out_batch.size(), lead = r - batch.size();
  std::vector<int64_t> step(r, 0);
  for (size_t k = 0; k < batch.size(); ++k) step[lead + k] = batch[k] == 1 ? 0 : st[k];
  std::vector<int64_t> offs(static_cast<size_t>(shape_numel(out_batch)));
  std::vector<int64_t> idx(r, 0);
  int64_t o = 0;
  for (int64_t& v : offs) {
    v = o;
    for (size_t k = r; k-- > 0;) {
      o += step[k];
      if (++idx[k] < out_batch[k]) break;
      o -= step[k] * idx[k];
      idx[k] = 0;
    }
  }
  return offs;
}

void transpose_matmul_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.dtype() != DType::kF32) bad_type(node, "input A", a.dtype(), "f32");
  if (b.dtype() != DType::kF32) bad_type(node, "input B", b.dtype(), "f32");
  Tensor hold_a, hold_b;
  const PermutedView va = operand_view(ctx, 0, hold_a), vb = operand_view(ctx, 1, hold_b);
  const MatMulDims d = matmul_dims(node, va.shape, vb.shape);
  const std::vector<int64_t> py = perm_attr(node, "perm_y", d.out.size());
  const PermutedView vy = permuted(d.out, row_major_strides(d.out), py);  // Y's shape
  Tensor& y = ctx.output(0, DType::kF32, vy.shape);
  if (y.numel() == 0) return;
  ThreadPool* pool = ctx.pool();
  // Strides in Y of each axis of MatMul's result.
  std::vector<int64_t> yst(py.size());
  const std::vector<int64_t> out_st = row_major_strides(vy.shape);
  for (size_t q = 0; q < py.size(); ++q) yst[static_cast<size_t>(py[q])] = out_st[q];
  const size_t ry = d.out.size();
  // The post-op on `rows` contiguous rows of MatMul's result's last axis,
  // N values (M when B is a vector).
  const bool divide = node.has_attr("div"), softmax = node.attr_int("softmax", 0) != 0;
  const float div = node.attr_float("div", 1.0f);
  // Dividing by 2^k is multiplying by 2^-k, bit for bit (both round the same
  // exact value once), where 2^-k is a normal float: attention's sqrt(64).
  int div_exp = 0;
  const bool div_pow2 = std::frexp(div, &div_exp) == 0.5f && div_exp >= -124 && div_exp <= 127;
  const float inv_div = div_pow2 ? std::ldexp(1.0f, 1 - div_exp) : 0.0f;
  const int64_t N = d.out.empty() ? 1 : d.out.back();
  auto post_rows = [&](float* m, int64_t rows) {
    // Compiled for the widest ISA (run_vectorized), the Div included.
    run_vectorized([&]() NN_LAMBDA {
      if (divide && div_pow2)
        for (int64_t i = 0; i < rows * N; ++i) m[i] = m[i] * inv_div;
      else if (divide)
        for (int64_t i = 0; i < rows * N; ++i) m[i] = m[i] / div;
      // As Softmax runs its rows: interleaved, a single row by soft_rows.
      if (softmax) {
        if (rows > 1) softmax_rows_interleaved<float>(m, m, rows, N);
        else soft_rows<float, SoftKind::kSoftmax>(m, m, rows, N);
      }
    });
  };
  const std::function<void(float*)> post = [&](float* m) { post_rows(m, d.M); };
  const bool has_post = divide || softmax;
  bool ta = false, tb = false;
  int64_t lda = 0, ldb = 0;
  const bool in_place = d.M > 1 && d.N > 1 && shape_numel(d.b_batch) != 1 && as_matrix(va, ta, lda) &&
                        as_matrix(vb, tb, ldb) && yst[ry - 1] == 1 && yst[ry - 2] >= d.N &&
                        (!has_post || yst[ry - 2] == d.N);
  if (in_place) {
    const size_t ra = va.shape.size(), rb = vb.shape.size();
    const std::vector<int64_t> ao = matrix_offsets(d.out_batch, d.a_batch, {va.st.begin(), va.st.begin() + (ra - 2)});
    const std::vector<int64_t> bo = matrix_offsets(d.out_batch, d.b_batch, {vb.st.begin(), vb.st.begin() + (rb - 2)});
    const std::vector<int64_t> yo = matrix_offsets(d.out_batch, d.out_batch, {yst.begin(), yst.begin() + (ry - 2)});
    batched_sgemm(d, ta, va.data, lda, ao, tb, vb.data, ldb, bo, y.data<float>(), yst[ry - 2], &yo, pool,
                  has_post ? &post : nullptr);
    return;
  }
  // Transpose the operands, then MatMul.
  auto contiguous = [&](const PermutedView& v) {
    Tensor c(DType::kF32, v.shape);
    strided_copy(sizeof(float), v.shape, v.st, v.data, c.raw(), pool);
    return c;
  };
  const Tensor ca = contiguous(va), cb = contiguous(vb);
  if (is_identity(py)) {
    matmul_f32(node, d, ca.data<float>(), cb.data<float>(), y.data<float>(), nullptr, pool);
    if (has_post) post_rows(y.data<float>(), y.numel() / N);
    return;
  }
  Tensor r(DType::kF32, d.out);
  matmul_f32(node, d, ca.data<float>(), cb.data<float>(), r.data<float>(), nullptr, pool);
  if (has_post) post_rows(r.data<float>(), r.numel() / N);
  std::vector<int64_t> rst(py.size());
  const std::vector<int64_t> r_st = row_major_strides(d.out);
  for (size_t q = 0; q < py.size(); ++q) rst[q] = r_st[static_cast<size_t>(py[q])];
  strided_copy(sizeof(float), vy.shape, rst, r.raw(), y.raw(), pool);
}

// MatMul's result's shape (numpy matmul of sa by sb).
ir::SymShape matmul_sym_shape(const ir::Node& node, const ir::SymShape& sa, const ir::SymShape& sb) {
  QFORGE_CHECK(!sa.empty() && !sb.empty(), Errc::kShapeMismatch, node.describe(),
        "has inputs of shapes " + ir::sym_shape_str(sa) + " and " + ir::sym_shape_str(sb),
        "inputs of rank >= 1");
  const ir::Dim ka = sa.back(), kb = sb.size() >= 2 ? sb[sb.size() - 2] : sb[0];
  QFORGE_CHECK(!(ka.known() && kb.known()) || ka.size == kb.size, Errc::kShapeMismatch,
        node.describe(), "multiplies " + ir::sym_shape_str(sa) + " by " + ir::sym_shape_str(sb),
        "A's last dimension equal to B's second-to-last (numpy matmul)");
  ir::SymShape ba, bb;
  if (sa.size() > 2) ba.assign(sa.begin(), sa.end() - 2);
  if (sb.size() > 2) bb.assign(sb.begin(), sb.end() - 2);
  ir::SymShape out = broadcast_sym(ba, bb, node);
  if (sa.size() >= 2) out.push_back(sa[sa.size() - 2]);
  if (sb.size() >= 2) out.push_back(sb.back());
  return out;
}

void matmul_infer(InferContext& ctx) {
  const ir::ValueInfo& a = ctx.input(0);
  const ir::ValueInfo& b = ctx.input(1);
  const std::optional<DType> dt = a.dtype ? a.dtype : b.dtype;
  if (!a.shape || !b.shape) {
    set_output(ctx, 0, dt, std::nullopt);
    return;
  }
  set_output(ctx, 0, dt, matmul_sym_shape(ctx.node(), *a.shape, *b.shape));
}

ir::SymShape permuted_sym(const ir::SymShape& s, const std::vector<int64_t>& perm) {
  ir::SymShape out;
  for (int64_t p : perm) out.push_back(s[static_cast<size_t>(p)]);
  return out;
}

void transpose_matmul_infer(InferContext& ctx) {
  const ir::Node& node = ctx.node();
  const ir::ValueInfo& a = ctx.input(0);
  const ir::ValueInfo& b = ctx.input(1);
  if (!a.shape || !b.shape || node.has_attr("a_cols") || node.has_attr("b_cols")) {
    set_output(ctx, 0, DType::kF32, std::nullopt);  // the columns' shape is known when it runs
    return;
  }
  const ir::SymShape out = matmul_sym_shape(node, permuted_sym(*a.shape, perm_attr(node, "perm_a", a.shape->size())),
                                            permuted_sym(*b.shape, perm_attr(node, "perm_b", b.shape->size())));
  set_output(ctx, 0, DType::kF32, permuted_sym(out, perm_attr(node, "perm_y", out.size())));
}

}  // namespace

void register_nn_ops(OpRegistry& r) {
  r.add({.domain = "", .op_type = "Gemm", .min_opset = 1, .max_opset = 21, .infer = gemm_infer,
         .prepare = gemm_prepare, .run = gemm_run});
  // ONNX Runtime's contrib op: Gemm then an activation (qforge: Relu), written
  // by passes::fuse_activations.
  r.add({.domain = "com.microsoft", .op_type = "FusedGemm", .min_opset = 1, .max_opset = 1,
         .infer = gemm_infer, .check = fused_gemm_check, .prepare = gemm_prepare, .run = gemm_run});
  r.add({.domain = "", .op_type = "MatMul", .min_opset = 1, .max_opset = 21,
         .infer = matmul_infer, .prepare = matmul_prepare, .run = matmul_run});
  r.add({.domain = kQforgeDomain, .op_type = "TransposeMatMul", .min_opset = 1, .max_opset = 1,
         .infer = transpose_matmul_infer, .run = transpose_matmul_run});
  r.add({.domain = "", .op_type = "Softmax", .min_opset = 1, .max_opset = 21,
         .infer = infer_float_same, .run = soft_run<SoftKind::kSoftmax>});
  r.add({.domain = "", .op_type = "LogSoftmax", .min_opset = 1, .max_opset = 21,
         .infer = infer_float_same, .run = soft_run<SoftKind::kLogSoftmax>});
  r.add({.domain = "com.microsoft", .op_type = "QLinearSoftmax", .min_opset = 1, .max_opset = 1,
         .infer = qlinear_softmax_infer, .run = qlinear_softmax_run});
  r.add({.domain = "", .op_type = "Hardmax", .min_opset = 1, .max_opset = 21,
         .infer = infer_float_same, .run = hardmax_run});
  register_nn_conv_ops(r);
  register_nn_pool_ops(r);
  register_nn_norm_ops(r);
}

}  // namespace qforge::ops
