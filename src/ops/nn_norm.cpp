// Normalizations: BatchNormalization (inference), LayerNormalization,
// InstanceNormalization, LpNormalization, LRN, MeanVarianceNormalization,
// and ai.qforge QLinearLayerNormalization (8-bit in and out) and
// AddLayerNormalization (a residual Add folded in).
// Registered from register_nn_ops (nn.cpp).
//
// Statistics are taken in two passes (mean, then centred squares) with
// several partial sums so the loops vectorise; planes or rows are the
// parallel work items. The vector loops are compiled for AVX2 / AVX-512 too.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

#include "ops/families.h"
#include "ops/nn_common.h"
#include "ops/op_util.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {


namespace {

using namespace nn_detail;



// The values of a float tensor as doubles (parameters: scale, bias, mean).
std::vector<double> as_doubles(const Tensor& t, const ir::Node& node, const char* what) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  dispatch_float(t.dtype(), node, what, [&](auto z) {
    using T = decltype(z);
    const T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(p[i]);
  });
  return v;
}

// ---- vector helpers ----

template <typename T>
NN_INLINE T centred_sq_sum(const T* x, int64_t n, T mean) {
  constexpr int64_t L = 16;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int64_t j = 0; j < L; ++j) {
      const T d = x[i + j] - mean;
      acc[j] += d * d;
    }
  T s = 0;
  for (int64_t j = 0; j < L; ++j) s += acc[j];
  for (; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

template <typename T>
NN_INLINE void affine(const T* x, T* y, int64_t n, T a, T b) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + b;
}

// Mean and variance of n values (population variance).
template <typename T>
NN_INLINE void moments(const T* x, int64_t n, T& mean, T& var) {
  mean = n > 0 ? sum_of(x, n) / static_cast<T>(n) : T(0);
  var = n > 0 ? centred_sq_sum(x, n, mean) / static_cast<T>(n) : T(0);
}

// ---- BatchNormalization ----

void batchnorm_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const int64_t opset = ctx.opset();
  if (opset >= 14)
    QFORGE_CHECK(node.attr_int("training_mode", 0) == 0, Errc::kUnsupported, node.describe(),
          "has training_mode=1 (computes batch statistics and updates running ones)",
          "training_mode=0: qforge runs BatchNormalization in inference mode only");
  if (opset < 7)
    QFORGE_CHECK(node.attr_int("is_test", 0) != 0 || !ctx.wants_output(1), Errc::kUnsupported,
          node.describe(), "is in training mode (is_test=0 with statistics outputs)",
          "inference mode: qforge runs BatchNormalization in inference mode only");
  if (opset < 14)
    for (int i = 1; i < ctx.num_outputs(); ++i)
      QFORGE_CHECK(!ctx.wants_output(i), Errc::kUnsupported, node.describe(),
            "uses output " + std::to_string(i) + ", which only training computes",
            "only output Y: qforge runs BatchNormalization in inference mode only");
  const Tensor& x = ctx.input(0);
  QFORGE_CHECK(x.rank() >= 2, Errc::kShapeMismatch, node.describe(),
        "has X of shape " + shape_str(x.shape()), "X of rank >= 2 (N, C, ...)");
  const bool spatial = opset >= 9 || node.attr_int("spatial", 1) != 0;
  const int64_t N = x.dim(0), C = x.dim(1);
  const int64_t inner = x.numel() / std::max<int64_t>(1, N * C);
  // Per-activation statistics (spatial=0, opset < 9): parameters of shape
  // [C, D1, ...]; each value is then a "channel" of one element.
  const int64_t nparams = spatial ? C : C * inner;
  const int64_t plane = spatial ? inner : 1;
  const char* names[4] = {"scale", "B", "mean", "var"};
  std::vector<double> p[4];
  for (int i = 0; i < 4; ++i) {
    const Tensor& t = ctx.input(i + 1);
    QFORGE_CHECK(t.numel() == nparams, Errc::kShapeMismatch, node.describe(),
          std::string("input ") + names[i] + " has shape " + shape_str(t.shape()),
          std::to_string(nparams) + (spatial ? " values (one per channel)" : " values (C x D1 x ...)"));
    p[i] = as_doubles(t, node, names[i]);
  }
  const double eps = node.attr_float("epsilon", 1e-5f);
  for (int i = 1; i < ctx.num_outputs(); ++i)  // running statistics are unchanged in inference
    if (ctx.wants_output(i) && i <= 2) ctx.set_output(i, ctx.input(i + 2).clone());
  dispatch_float(x.dtype(), node, "input X", [&](auto z) {
    using T = decltype(z);
    std::vector<T> a(static_cast<size_t>(nparams)), b(static_cast<size_t>(nparams));
    for (size_t c = 0; c < a.size(); ++c) {
      const double s = p[0][c] / std::sqrt(p[3][c] + eps);
      a[c] = static_cast<T>(s);
      b[c] = static_cast<T>(p[1][c] - p[2][c] * s);
    }
    Tensor& y = ctx.output(0, x.dtype(), x.shape());
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const int64_t planes = x.numel() / std::max<int64_t>(1, plane);
    parallel(ctx.pool(), planes, grain_for(plane), [&](int64_t b0, int64_t e0) {
      if (plane == 1) {
        // One value per parameter: rows of nparams.
        for (int64_t t = b0; t < e0; ++t) {
          const size_t c = static_cast<size_t>(t % nparams);
          py[t] = px[t] * a[c] + b[c];
        }
        return;
      }
      for (int64_t t = b0; t < e0; ++t) {
        const size_t c = static_cast<size_t>(t % nparams);
        const T* xp = px + t * plane;
        T* yp = py + t * plane;
        const T av = a[c], bv = b[c];
        run_vectorized([&]() NN_LAMBDA { affine(xp, yp, plane, av, bv); });
      }
    });
  });
}

void batchnorm_infer(InferContext& ctx) {
  infer_same_as(ctx);
  for (int i = 1; i < ctx.num_outputs() && i <= 2; ++i)
    if (ctx.has_input(i + 2)) set_output(ctx, i, ctx.input(i + 2).dtype, ctx.input(i + 2).shape);
}

std::string batchnorm_check(const InferContext& ctx) {
  if (ctx.opset() >= 14 && ctx.node().attr_int("training_mode", 0) != 0)
    return "training_mode=1: qforge runs BatchNormalization in inference mode only";
  return {};
}

// ---- LayerNormalization ----

// scale or bias expanded to the n values of a normalized row (unidirectional
// broadcast onto X's shape from axis on).
template <typename T>
std::vector<T> row_param(const Tensor& t, const Shape& norm_shape, const ir::Node& node,
                         const char* what) {
  const std::vector<double> v = as_doubles(t, node, what);
  const Shape& s = t.shape();
  bool ok = s.size() <= norm_shape.size();
  for (size_t i = 0; ok && i < s.size(); ++i) {
    const int64_t want = norm_shape[norm_shape.size() - s.size() + i];
    ok = s[i] == want || s[i] == 1;
  }
  QFORGE_CHECK(ok, Errc::kShapeMismatch, node.describe(),
        std::string(what) + " has shape " + shape_str(s),
        "a shape broadcastable to the normalized shape " + shape_str(norm_shape));
  const int64_t n = shape_numel(norm_shape);
  std::vector<T> out(static_cast<size_t>(n));
  const std::vector<int64_t> str = broadcast_strides(s, norm_shape);
  std::vector<int64_t> idx(norm_shape.size(), 0);
  for (int64_t j = 0; j < n; ++j) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * str[d];
    out[static_cast<size_t>(j)] = static_cast<T>(v[static_cast<size_t>(off)]);
    for (size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < norm_shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

// Scale and B as rows, made once in prepare where both are f32 constants
// of one shape (the normalized shape, whenever X's is what the model
// says): row_param per run allocated and ran its broadcast loop on every
// call, microseconds of a batch-1 ViT's 60. The run uses them where X's
// normalized shape is that shape and the inputs are these tensors.
struct LayerNormRows {
  const void* scale_src = nullptr;
  const void* bias_src = nullptr;  // nullptr: no B
  Shape shape;
  std::vector<float> scale, bias;
};

// prepare for the ops with Scale and B at inputs `param` and param + 1.
std::shared_ptr<const void> layernorm_prepare(const PrepareContext& ctx, int param) {
  const auto at = [&](int i) -> const Tensor* {
    return static_cast<size_t>(i) < ctx.constants.size() ? ctx.constants[static_cast<size_t>(i)] : nullptr;
  };
  const Tensor* sc = at(param);
  const bool has_b = ctx.node.inputs.size() > static_cast<size_t>(param + 1) &&
                     !ctx.node.inputs[static_cast<size_t>(param + 1)].empty();
  const Tensor* b = has_b ? at(param + 1) : nullptr;
  if (sc == nullptr || sc->dtype() != DType::kF32 || (has_b && (b == nullptr || b->dtype() != DType::kF32 ||
                                                                 b->shape() != sc->shape())))
    return nullptr;
  auto st = std::make_shared<LayerNormRows>();
  st->scale_src = sc->raw();
  st->bias_src = b != nullptr ? b->raw() : nullptr;
  st->shape = sc->shape();
  st->scale = row_param<float>(*sc, st->shape, ctx.node, "Scale");
  if (b != nullptr) st->bias = row_param<float>(*b, st->shape, ctx.node, "B");
  return st;
}

// The prepared rows where they serve this call (see LayerNormRows), else nullptr.
const LayerNormRows* prepared_rows(const OpContext& ctx, int param, const Shape& norm_shape) {
  const auto* st = static_cast<const LayerNormRows*>(ctx.state());
  if (st == nullptr || st->shape != norm_shape || ctx.input(param).raw() != st->scale_src) return nullptr;
  const void* b = ctx.has_input(param + 1) ? ctx.input(param + 1).raw() : nullptr;
  return b == st->bias_src ? st : nullptr;
}

// t[j] += t[j + W] for j < W (the other lanes: whatever).
template <int W, typename T>
NN_INLINE void fold_half(Vec16<T>& t) {
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  using Mask [[gnu::vector_size(16 * sizeof(T))]] = I;
  Mask up;
  for (int l = 0; l < 16; ++l) up[l] = (l + W) % 16;
  t += __builtin_shuffle(t, up);
}

// The sums of R rows of n values, x + r * n for r < R (Sq: of (x[i] - mu[r])^2),
// into out[r], as a LayerNormalization row takes them: in 64 lanes (four
// vectors of 16, four independent chains of adds where one chain of 16
// dependent adds per row made a Transformer's rows of 256 wait on the
// adder), the vectors added pairwise, their 16 lanes folded in halves, then
// the tail (n % 16 values) in order. The R rows' chains are interleaved, each
// row's operations the same for any R (so the same bits): a row's two sums,
// divisions and square root are one chain of dependent steps, and R rows at
// once keep the adders busy while each waits on its own.
template <bool Sq, int R, typename T>
NN_INLINE void row_sums(const T* x, int64_t n, const T* mu, T* out) {
  using V = Vec16<T>;
  V a[R][4] = {};
  const auto add = [x, n, mu](int r, int64_t i, V& acc) NN_LAMBDA {
    V v;
    std::memcpy(&v, x + r * n + i, sizeof v);
    if constexpr (Sq) v = (v - mu[r]) * (v - mu[r]);
    acc += v;
  };
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < 4; ++k) add(r, i + 16 * k, a[r][k]);
  for (int k = 0; i + 16 <= n; i += 16, ++k)
    for (int r = 0; r < R; ++r) add(r, i, a[r][k]);
  for (int r = 0; r < R; ++r) {
    V t = (a[r][0] + a[r][1]) + (a[r][2] + a[r][3]);
    // Lane j += lane j + w for w = 8, 4, 2, 1, by shuffles in the register
    // (through memory, the 16 scalar loads of a vector just stored wait on it).
    fold_half<8, T>(t);
    fold_half<4, T>(t);
    fold_half<2, T>(t);
    fold_half<1, T>(t);
    T s = t[0];
    const T* row = x + r * n;
    for (int64_t j = i; j < n; ++j) s += Sq ? (row[j] - mu[r]) * (row[j] - mu[r]) : row[j];
    out[r] = s;
  }
}

// R rows of n values, x + r * n, normalized into y + r * n (y may be x); the
// rows' means and 1 / sqrt(var + eps) into mean[r] and inv[r].
template <int R, typename T>
NN_INLINE void layernorm_rows(const T* x, T* y, int64_t n, const T* scale, const T* bias, T eps,
                              T* mean, T* inv) {
  const T zero[R] = {};
  T sum[R], var[R];
  if (n > 0) row_sums<false, R>(x, n, zero, sum);
  for (int r = 0; r < R; ++r) mean[r] = n > 0 ? sum[r] / static_cast<T>(n) : T(0);
  if (n > 0) row_sums<true, R>(x, n, mean, var);
  for (int r = 0; r < R; ++r) {
    inv[r] = T(1) / std::sqrt((n > 0 ? var[r] / static_cast<T>(n) : T(0)) + eps);
    const T m = mean[r], iv = inv[r];
    const T* xr = x + r * n;
    T* yr = y + r * n;
    if (bias != nullptr)
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) * iv * scale[i] + bias[i];
    else
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) * iv * scale[i];
  }
}

// Rows of 4 go through layernorm_rows<4>, the last rows one by one.
constexpr int64_t kLayerNormGroup = 4;

DType stash_dtype(const ir::Node& node) {
  const int64_t st = node.attr_int("stash_type", 1);
  QFORGE_CHECK(st == 1 || st == 11, Errc::kUnsupported, node.describe(),
        "has stash_type " + std::to_string(st), "1 (float) or 11 (double)");
  return st == 1 ? DType::kF32 : DType::kF64;
}

// LayerNormalization of x, its Scale and B at inputs `param` and param + 1;
// with `skip` (x's shape and type), of x + skip (ai.qforge
// AddLayerNormalization): each row's sum is written into Y's row and
// normalized there, in place.
void layernorm_impl(OpContext& ctx, const Tensor& x, int param, const Tensor* skip) {
  const ir::Node& node = ctx.node();
  const Tensor& sc = ctx.input(param);
  const int64_t rank = x.rank();
  const int64_t axis = normalize_axis(node.attr_int("axis", -1), rank, node);
  const DType stash = stash_dtype(node);
  Shape norm_shape(x.shape().begin() + axis, x.shape().end());
  Shape stat_shape(x.shape().begin(), x.shape().begin() + axis);
  stat_shape.resize(static_cast<size_t>(rank), 1);
  const int64_t n = shape_numel(norm_shape);
  const int64_t rows = n > 0 ? x.numel() / n : shape_numel(Shape(x.shape().begin(), x.shape().begin() + axis));
  const double eps = node.attr_float("epsilon", 1e-5f);
  const LayerNormRows* rows_st = prepared_rows(ctx, param, norm_shape);
  dispatch_float(x.dtype(), node, "input X", [&](auto z) {
    using T = decltype(z);
    const LayerNormRows* pre = std::is_same_v<T, float> ? rows_st : nullptr;
    std::vector<T> scale, bias;
    if (pre == nullptr) {
      scale = row_param<T>(sc, norm_shape, node, "Scale");
      if (ctx.has_input(param + 1)) bias = row_param<T>(ctx.input(param + 1), norm_shape, node, "B");
    }
    Tensor& y = ctx.output(0, x.dtype(), x.shape());
    Tensor* mean_t = ctx.wants_output(1) ? &ctx.output(1, stash, stat_shape) : nullptr;
    Tensor* inv_t = ctx.wants_output(2) ? &ctx.output(2, stash, stat_shape) : nullptr;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T* ps = scale.data();
    const T* pb = bias.empty() ? nullptr : bias.data();
    if constexpr (std::is_same_v<T, float>) {
      if (pre != nullptr) {
        ps = pre->scale.data();
        pb = pre->bias.empty() ? nullptr : pre->bias.data();
      }
    }
    const T e = static_cast<T>(eps);
    const T* pk = skip != nullptr ? skip->data<T>() : nullptr;
    parallel(ctx.pool(), rows, grain_for(n), [&](int64_t b0, int64_t e0) {
      for (int64_t r = b0; r < e0;) {
        const int64_t k = e0 - r >= kLayerNormGroup ? kLayerNormGroup : 1;
        T mean[kLayerNormGroup], inv[kLayerNormGroup];
        run_vectorized([&]() NN_LAMBDA {
          // The next group's rows, fetched now: the rows' sums and square
          // roots are chains of dependent steps, which hold back the loads of
          // the next rows where the inputs come from L3 (fetching one row two
          // ahead, when rows went one at a time: transformer4 at batch 32,
          // AddLayerNormalization 43% less time in a slow phase of the host).
          const int64_t ahead = std::min(k, e0 - r - k);
          if (ahead > 0) {
            prefetch_rows(px + (r + k) * n, ahead, n, n);
            if (pk != nullptr) prefetch_rows(pk + (r + k) * n, ahead, n, n);
          }
          const T* src = px + r * n;
          if (pk != nullptr) {
            const T* b = pk + r * n;
            T* row = py + r * n;
            for (int64_t i = 0; i < k * n; ++i) row[i] = src[i] + b[i];
            src = row;
          }
          if (k == kLayerNormGroup)
            layernorm_rows<kLayerNormGroup>(src, py + r * n, n, ps, pb, e, mean, inv);
          else
            layernorm_rows<1>(src, py + r * n, n, ps, pb, e, mean, inv);
        });
        for (int64_t j = 0; j < k; ++j) {
          if (mean_t != nullptr) {
            if (stash == DType::kF32) mean_t->data<float>()[r + j] = static_cast<float>(mean[j]);
            else mean_t->data<double>()[r + j] = static_cast<double>(mean[j]);
          }
          if (inv_t != nullptr) {
            if (stash == DType::kF32) inv_t->data<float>()[r + j] = static_cast<float>(inv[j]);
            else inv_t->data<double>()[r + j] = static_cast<double>(inv[j]);
          }
        }
        r += k;
      }
    });
  });
}

void layernorm_run(OpContext& ctx) { layernorm_impl(ctx, ctx.input(0), 1, nullptr); }

// ai.qforge AddLayerNormalization(A, B, Scale, [Bias]), LayerNormalization's
// attributes, one output: LayerNormalization(A + B), written by
// passes::fuse_add_layernorm for an f32 Add whose only reader is the
// LayerNormalization (a post-norm Transformer's residuals). The sums are the
// Add op's float sums, normalized by LayerNormalization's own row code: bit
// for bit the two nodes. Where A and B have one shape (residuals) the sums
// are made row by row into Y and normalized there, one pass; otherwise A + B
// is broadcast into a tensor of its own first, as Add would.
void add_layernorm_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  QFORGE_CHECK(b.dtype() == a.dtype(), Errc::kTypeMismatch, node.describe(),
               "input B has type " + std::string(dtype_name(b.dtype())),
               "input A's type " + std::string(dtype_name(a.dtype())));
  if (b.shape() == a.shape()) return layernorm_impl(ctx, a, 2, &b);
  const Shape out = broadcast_shapes(a.shape(), b.shape(), node);
  Tensor sum(a.dtype(), out);
  const std::vector<int64_t> sa = broadcast_strides(a.shape(), out), sb = broadcast_strides(b.shape(), out);
  dispatch_float(a.dtype(), node, "input A", [&](auto z) {
    using T = decltype(z);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* ps = sum.data<T>();
    std::vector<int64_t> idx(out.size(), 0);
    int64_t ia = 0, ib = 0;
    for (int64_t i = 0; i < sum.numel(); ++i) {
      ps[i] = pa[ia] + pb[ib];
      for (size_t d = idx.size(); d-- > 0;) {  // odometer over out, both offsets along
        ia += sa[d];
        ib += sb[d];
        if (++idx[d] < out[d]) break;
        ia -= sa[d] * out[d];
        ib -= sb[d] * out[d];
        idx[d] = 0;
      }
    }
  });
  layernorm_impl(ctx, sum, 2, nullptr);
}

void add_layernorm_infer(InferContext& ctx) {
  const ir::ValueInfo& a = ctx.input(0);
  const ir::ValueInfo& b = ctx.input(1);
  std::optional<ir::SymShape> shape;
  if (a.shape && b.shape) shape = broadcast_sym(*a.shape, *b.shape, ctx.node());
  set_output(ctx, 0, a.dtype, shape);
}

// ai.qforge QLinearLayerNormalization(X, X_scale, X_zero_point, Scale, B,
// Y_scale, Y_zero_point), attributes axis and epsilon: Y =
// quantize(LayerNormalization(dequantize(X), Scale, B)), X and Y per-tensor
// u8 or i8, Scale and B float. A run of rows at a time: the codes
// dequantized on the SIMD kernel into a float buffer, the float
// LayerNormalization's row kernel, quantized on the SIMD kernel; bit for
// bit the DequantizeLinear ->
// LayerNormalization -> QuantizeLinear group it replaces (passes::fuse_qdq).
void qlinear_layernorm_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Q8 xq = read_q8(ctx, 1, 2, x.dtype(), "X");
  const Q8 yq = read_q8(ctx, 5, 6, ctx.has_input(6) ? ctx.input(6).dtype() : x.dtype(), "Y");
  const Tensor& sc = ctx.input(3);
  if (sc.dtype() != DType::kF32) bad_type(node, "input Scale", sc.dtype(), "f32");
  const int64_t axis = normalize_axis(node.attr_int("axis", -1), x.rank(), node);
  const Shape norm_shape(x.shape().begin() + axis, x.shape().end());
  const int64_t n = shape_numel(norm_shape);
  const LayerNormRows* pre = prepared_rows(ctx, 3, norm_shape);
  std::vector<float> scale, bias;
  if (pre == nullptr) {
    scale = row_param<float>(sc, norm_shape, node, "Scale");
    if (ctx.has_input(4)) bias = row_param<float>(ctx.input(4), norm_shape, node, "B");
  }
  Tensor& y = ctx.output(0, yq.type, x.shape());
  if (n == 0 || x.numel() == 0) return;
  const int64_t rows = x.numel() / n;
  const auto* px = static_cast<const uint8_t*>(x.raw());
  auto* py = static_cast<uint8_t*>(y.raw());
  const float* ps = pre != nullptr ? pre->scale.data() : scale.data();
  const std::vector<float>& bv = pre != nullptr ? pre->bias : bias;
  const float* pb = bv.empty() ? nullptr : bv.data();
  const auto eps = static_cast<float>(node.attr_float("epsilon", 1e-5f));
  // Rows in runs of about 4K values: one lookup loop, one kernel call and
  // one quantize call per run rather than per (short) row; each row's
  // float arithmetic is the same.
  const int64_t run = std::max<int64_t>(1, 4096 / n);
  parallel(ctx.pool(), rows, std::max(run, grain_for(n)), [&](int64_t b0, int64_t e0) {
    thread_local std::vector<float> buf;  // grow-only, kept between calls
    const auto need = static_cast<size_t>(std::min(run, e0 - b0) * n);
    if (buf.size() < need) buf.resize(need);
    float* f = buf.data();
    for (int64_t r0 = b0; r0 < e0; r0 += run) {
      const int64_t k = std::min(run, e0 - r0), len = k * n;
      const uint8_t* xr = px + r0 * n;
      dequantize_q8(xr, len, xq, f);
      run_vectorized([&]() NN_LAMBDA {
        float mean[kLayerNormGroup], inv[kLayerNormGroup];
        int64_t r = 0;
        for (; r + kLayerNormGroup <= k; r += kLayerNormGroup)
          layernorm_rows<kLayerNormGroup>(f + r * n, f + r * n, n, ps, pb, eps, mean, inv);
        for (; r < k; ++r) layernorm_rows<1>(f + r * n, f + r * n, n, ps, pb, eps, mean, inv);
      });
      quantize_q8(f, len, yq, py + r0 * n);
    }
  });
}

void qlinear_layernorm_infer(InferContext& c) {
  set_output(c, 0, c.has_input(6) ? c.input(6).dtype : c.input(0).dtype, c.input(0).shape);
}

void layernorm_infer(InferContext& ctx) {
  const ir::ValueInfo& x = ctx.input(0);
  const DType stash = stash_dtype(ctx.node());
  infer_same_as(ctx);
  std::optional<ir::SymShape> stat;
  if (x.shape) {
    const int64_t rank = static_cast<int64_t>(x.shape->size());
    const int64_t axis = normalize_axis(ctx.node().attr_int("axis", -1), rank, ctx.node());
    stat = ir::SymShape(x.shape->begin(), x.shape->begin() + axis);
    stat->resize(static_cast<size_t>(rank), ir::Dim(1));
  }
  if (ctx.num_outputs() > 1) set_output(ctx, 1, stash, stat);
  if (ctx.num_outputs() > 2) set_output(ctx, 2, stash, stat);
}

// ---- InstanceNormalization ----

void instancenorm_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  QFORGE_CHECK(x.rank() >= 3, Errc::kShapeMismatch, node.describe(),
        "has X of shape " + shape_str(x.shape()), "X of rank >= 3 (N, C, spatial...)");
  const int64_t N = x.dim(0), C = x.dim(1);
  const int64_t plane = N * C > 0 ? x.numel() / (N * C) : 0;
  const Tensor& st = ctx.input(1);
  const Tensor& bt = ctx.input(2);
  QFORGE_CHECK(st.numel() == C && bt.numel() == C, Errc::kShapeMismatch, node.describe(),
        "has scale of shape " + shape_str(st.shape()) + " and B of shape " + shape_str(bt.shape()),
        std::to_string(C) + " values each (one per channel)");
  const std::vector<double> scale = as_doubles(st, node, "scale");
  const std::vector<double> bias = as_doubles(bt, node, "B");
  const double eps = node.attr_float("epsilon", 1e-5f);
  dispatch_float(x.dtype(), node, "input X", [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), x.shape());
    const T* px = x.data<T>();
    T* py = y.data<T>();
    parallel(ctx.pool(), N * C, grain_for(plane), [&](int64_t b0, int64_t e0) {
      for (int64_t t = b0; t < e0; ++t) {
        const size_t c = static_cast<size_t>(t % C);
        const T* xp = px + t * plane;
        T* yp = py + t * plane;
        run_vectorized([&]() NN_LAMBDA {
          T mean, var;
          moments(xp, plane, mean, var);
          const T a = static_cast<T>(scale[c] / std::sqrt(static_cast<double>(var) + eps));
          const T b = static_cast<T>(bias[c]) - mean * a;
          affine(xp, yp, plane, a, b);
        });
      }
    });
  });
}

// ---- LpNormalization ----

template <typename T>
NN_INLINE void lp_rows(const T* x, T* y, int64_t n, int64_t p) {
  constexpr int64_t L = 16;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int64_t j = 0; j < L; ++j) acc[j] += p == 1 ? std::abs(x[i + j]) : x[i + j] * x[i + j];
  T s = 0;
  for (int64_t j = 0; j < L; ++j) s += acc[j];
  for (; i < n; ++i) s += p == 1 ? std::abs(x[i]) : x[i] * x[i];
  const T norm = p == 1 ? s : std::sqrt(s);
  const T inv = norm > T(0) ? T(1) / norm : T(0);
  for (int64_t k = 0; k < n; ++k) y[k] = x[k] * inv;
}

template <typename T>
NN_INLINE void lp_cols(const T* x, T* y, int64_t n, int64_t inner, int64_t j0, int64_t j1,
                       int64_t p) {
  constexpr int64_t B = 64;
  T s[B];
  for (int64_t c0 = j0; c0 < j1; c0 += B) {
    const int64_t w = std::min(B, j1 - c0);
    for (int64_t j = 0; j < w; ++j) s[j] = 0;
    for (int64_t k = 0; k < n; ++k) {
      const T* xk = x + k * inner + c0;
      for (int64_t j = 0; j < w; ++j) s[j] += p == 1 ? std::abs(xk[j]) : xk[j] * xk[j];
    }
    for (int64_t j = 0; j < w; ++j) {
      const T norm = p == 1 ? s[j] : std::sqrt(s[j]);
      s[j] = norm > T(0) ? T(1) / norm : T(0);
    }
    for (int64_t k = 0; k < n; ++k) {
      const T* xk = x + k * inner + c0;
      T* yk = y + k * inner + c0;
      for (int64_t j = 0; j < w; ++j) yk[j] = xk[j] * s[j];
    }
  }
}

void lpnorm_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const int64_t p = node.attr_int("p", 2);
  QFORGE_CHECK(p == 1 || p == 2, Errc::kInvalidArgument, node.describe(), "has p " + std::to_string(p),
        "p = 1 or 2");
  const int64_t rank = x.rank();
  const int64_t axis = normalize_axis(node.attr_int("axis", -1), rank, node);
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t v = x.shape()[static_cast<size_t>(d)];
    if (d < axis) outer *= v;
    else if (d == axis) n = v;
    else inner *= v;
  }
  dispatch_float(x.dtype(), node, "input X", [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), x.shape());
    const T* px = x.data<T>();
    T* py = y.data<T>();
    if (y.numel() == 0) return;
    if (inner == 1) {
      parallel(ctx.pool(), outer, grain_for(n), [&](int64_t b0, int64_t e0) {
        for (int64_t r = b0; r < e0; ++r)
          run_vectorized([&]() NN_LAMBDA { lp_rows(px + r * n, py + r * n, n, p); });
      });
    } else {
      parallel(ctx.pool(), outer, grain_for(n * inner), [&](int64_t b0, int64_t e0) {
        for (int64_t o = b0; o < e0; ++o) {
          const int64_t off = o * n * inner;
          run_vectorized([&]() NN_LAMBDA { lp_cols(px + off, py + off, n, inner, 0, inner, p); });
        }
      });
    }
  });
}

// ---- LRN ----

template <typename T>
NN_INLINE void lrn_block(const T* const* planes, int64_t count, const T* x, T* y, int64_t w,
                         T bias, T alpha_n, T beta) {
  T sq[256];
  for (int64_t j = 0; j < w; ++j) sq[j] = 0;
  for (int64_t q = 0; q < count; ++q) {
    const T* s = planes[q];
    for (int64_t j = 0; j < w; ++j) sq[j] += s[j] * s[j];
  }
  if (beta == T(0.75)) {
    for (int64_t j = 0; j < w; ++j) {
      const T b = bias + alpha_n * sq[j];
      const T r = std::sqrt(b);
      y[j] = x[j] / (r * std::sqrt(r));
    }
  } else if (beta == T(0.5)) {
    for (int64_t j = 0; j < w; ++j) y[j] = x[j] / std::sqrt(bias + alpha_n * sq[j]);
  } else if (beta == T(1)) {
    for (int64_t j = 0; j < w; ++j) y[j] = x[j] / (bias + alpha_n * sq[j]);
  } else {
    for (int64_t j = 0; j < w; ++j) y[j] = x[j] * std::pow(bias + alpha_n * sq[j], -beta);
  }
}

void lrn_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  QFORGE_CHECK(x.rank() >= 3, Errc::kShapeMismatch, node.describe(),
        "has X of shape " + shape_str(x.shape()), "X of rank >= 3 (N, C, spatial...)");
  QFORGE_CHECK(node.has_attr("size"), Errc::kNotFound, node.describe(), "has no attribute 'size'",
        "size, which LRN requires");
  const int64_t size = node.attr_int("size", 1);
  QFORGE_CHECK(size >= 1, Errc::kInvalidArgument, node.describe(), "has size " + std::to_string(size),
        "size >= 1");
  const double alpha = node.attr_float("alpha", 1e-4f), beta = node.attr_float("beta", 0.75f),
               bias = node.attr_float("bias", 1.0f);
  const int64_t N = x.dim(0), C = x.dim(1);
  const int64_t plane = N * C > 0 ? x.numel() / (N * C) : 0;
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  dispatch_float(x.dtype(), node, "input X", [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), x.shape());
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T tb = static_cast<T>(bias), ta = static_cast<T>(alpha / static_cast<double>(size)),
            tbeta = static_cast<T>(beta);
    parallel(ctx.pool(), N * C, grain_for(plane * size), [&](int64_t b0, int64_t e0) {
      std::vector<const T*> planes(static_cast<size_t>(size));
      for (int64_t t = b0; t < e0; ++t) {
        const int64_t n = t / C, c = t % C;
        const int64_t c0 = std::max<int64_t>(0, c - before), c1 = std::min(C - 1, c + after);
        for (int64_t j0 = 0; j0 < plane; j0 += 256) {
          const int64_t w = std::min<int64_t>(256, plane - j0);
          int64_t count = 0;
          for (int64_t q = c0; q <= c1; ++q) planes[static_cast<size_t>(count++)] = px + (n * C + q) * plane + j0;
          const T* xp = px + t * plane + j0;
          T* yp = py + t * plane + j0;
          const T* const* pl = planes.data();
          run_vectorized([&]() NN_LAMBDA { lrn_block(pl, count, xp, yp, w, tb, ta, tbeta); });
        }
      }
    });
  });
}

// ---- MeanVarianceNormalization ----

void mvn_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  std::vector<int64_t> axes = node.attr_ints("axes", {0, 2, 3});
  QFORGE_CHECK(rank > 0, Errc::kShapeMismatch, node.describe(), "has a scalar input", "rank >= 1");
  std::vector<bool> reduced(static_cast<size_t>(rank), false);
  for (int64_t a : axes) reduced[static_cast<size_t>(normalize_axis(a, rank, node))] = true;
  const Shape& s = x.shape();
  // Index of each element's statistics: its coordinates in the kept
  // dimensions, row-major; kstride[d] is 0 for a reduced dimension.
  std::vector<int64_t> kstride(static_cast<size_t>(rank), 0);
  int64_t kept = 1;
  for (int64_t d = rank; d-- > 0;) {
    if (reduced[static_cast<size_t>(d)]) continue;
    kstride[static_cast<size_t>(d)] = kept;
    kept *= s[static_cast<size_t>(d)];
  }
  const int64_t numel = x.numel();
  const int64_t count = kept > 0 ? numel / kept : 0;
  dispatch_float(x.dtype(), node, "input X", [&](auto z) {
    using T = decltype(z);
    Tensor& y = ctx.output(0, x.dtype(), x.shape());
    if (numel == 0) return;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const int64_t last = rank > 0 ? s.back() : 1;
    const int64_t lstride = rank > 0 ? kstride.back() : 0;
    // Visits each row of the last dimension with its statistics index.
    auto rows = [&](auto&& fn) {
      std::vector<int64_t> idx(static_cast<size_t>(std::max<int64_t>(rank - 1, 0)), 0);
      for (int64_t r = 0; r < numel / last; ++r) {
        int64_t k = 0;
        for (size_t d = 0; d < idx.size(); ++d) k += idx[d] * kstride[d];
        fn(r * last, k);
        for (size_t d = idx.size(); d-- > 0;) {
          if (++idx[d] < s[d]) break;
          idx[d] = 0;
        }
      }
    };
    std::vector<double> mean(static_cast<size_t>(kept), 0.0), var(static_cast<size_t>(kept), 0.0);
    rows([&](int64_t off, int64_t k) {
      for (int64_t j = 0; j < last; ++j) mean[static_cast<size_t>(k + j * lstride)] += static_cast<double>(px[off + j]);
    });
    for (double& m : mean) m /= static_cast<double>(count);
    rows([&](int64_t off, int64_t k) {
      for (int64_t j = 0; j < last; ++j) {
        const size_t q = static_cast<size_t>(k + j * lstride);
        const double d = static_cast<double>(px[off + j]) - mean[q];
        var[q] += d * d;
      }
    });
    for (double& v : var) v = 1.0 / (std::sqrt(v / static_cast<double>(count)) + 1e-9);
    rows([&](int64_t off, int64_t k) {
      for (int64_t j = 0; j < last; ++j) {
        const size_t q = static_cast<size_t>(k + j * lstride);
        py[off + j] = static_cast<T>((static_cast<double>(px[off + j]) - mean[q]) * var[q]);
      }
    });
  });
}

void infer_float_same(InferContext& ctx) {
  const ir::ValueInfo& in = ctx.input(0);
  if (in.dtype && *in.dtype != DType::kF32 && *in.dtype != DType::kF64)
    bad_type(ctx.node(), "input 0", *in.dtype, "f32 or f64");
  infer_same_as(ctx);
}

}  // namespace

void register_nn_norm_ops(OpRegistry& r) {
  r.add({.domain = "", .op_type = "BatchNormalization", .min_opset = 1, .max_opset = 21,
         .infer = batchnorm_infer, .check = batchnorm_check, .run = batchnorm_run});
  r.add({.domain = "", .op_type = "LayerNormalization", .min_opset = 17, .max_opset = 21,
         .infer = layernorm_infer,
         .prepare = [](const PrepareContext& p) { return layernorm_prepare(p, 1); },
         .run = layernorm_run});
  r.add({.domain = "ai.qforge", .op_type = "AddLayerNormalization", .min_opset = 1, .max_opset = 1,
         .infer = add_layernorm_infer,
         .prepare = [](const PrepareContext& p) { return layernorm_prepare(p, 2); },
         .run = add_layernorm_run});
  r.add({.domain = "ai.qforge", .op_type = "QLinearLayerNormalization", .min_opset = 1, .max_opset = 1,
         .infer = qlinear_layernorm_infer,
         .prepare = [](const PrepareContext& p) { return layernorm_prepare(p, 3); },
         .run = qlinear_layernorm_run});
  r.add({.domain = "", .op_type = "InstanceNormalization", .min_opset = 1, .max_opset = 21,
         .infer = infer_float_same, .run = instancenorm_run});
  r.add({.domain = "", .op_type = "LpNormalization", .min_opset = 1, .max_opset = 21,
         .infer = infer_float_same, .run = lpnorm_run});
  r.add({.domain = "", .op_type = "LRN", .min_opset = 1, .max_opset = 21,
         .infer = infer_float_same, .run = lrn_run});
  r.add({.domain = "", .op_type = "MeanVarianceNormalization", .min_opset = 9, .max_opset = 21,
         .infer = infer_float_same, .run = mvn_run});
}

}  // namespace qforge::ops
