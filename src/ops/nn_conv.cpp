// Conv and ConvTranspose (1-D, 2-D, 3-D and beyond; groups, dilations,
// strides, pads, auto_pad). Registered from register_nn_ops (nn.cpp).
//
// Conv: per image and group, im2col (skipped for 1x1 stride-1 unpadded
// convolutions) then sgemm with the weights as the left operand, packed once
// in prepare when they are constant, and the bias fused in the epilogue. The
// columns are built for a bounded range of output positions at a time.
// Depthwise 2-D convolutions (group == C == M) take a direct path, per
// channel plane, parallel over planes: the padded plane split into stride
// phases so that every tap is a contiguous vectorised read (see below).
// ConvTranspose: sgemm (W^T x X) into columns, then col2im adds them into
// the output, parallel over output channels.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm.h"
#include "kernels/qgemm.h"
#include "ops/families.h"
#include "ops/nn_common.h"
#include "ops/op_util.h"
#include "ops/quant_gemm.h"
#include "qforge/thread_pool.h"

namespace qforge::ops {


namespace {

using namespace nn_detail;


// Grow-only per-thread buffers (columns of im2col / col2im, padded planes);
// `slot` tells apart up to four in use at once.
float* scratch(int64_t n, int slot = 0) {
  thread_local std::vector<float> buf[4];
  std::vector<float>& b = buf[slot];
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

// Floats of columns built at once: bounds the scratch memory per thread.
constexpr int64_t kMaxColumns = int64_t{1} << 20;

// Output positions per column chunk for `rows` rows out of `total`.
int64_t chunk_positions(int64_t rows, int64_t total) {
  int64_t p = std::max<int64_t>(kMaxColumns / std::max<int64_t>(rows, 1), 256);
  if (p >= total) return std::max<int64_t>(total, 1);
  return std::max<int64_t>(16, p / 16 * 16);
}

// ---- geometry ----

struct ConvGeom {
  int64_t N = 0, C = 0, M = 0, group = 1, Cg = 0, Mg = 0;
  size_t r = 0;  // spatial rank
  Shape in, k, s, d, pb, pe, out, out_pad;
  int64_t in_size = 1, out_size = 1, ksize = 1;
};

void read_window(const ir::Node& node, ConvGeom& g, const Shape& wk) {
  const size_t r = g.r;
  if (node.has_attr("kernel_shape")) {
    const std::vector<int64_t> ks = nn_detail::window_ints(node, "kernel_shape", r, 1, 1);
    QFORGE_CHECK(ks == wk, Errc::kShapeMismatch, node.describe(),
          "has kernel_shape " + shape_str(ks) + " but weights of spatial shape " + shape_str(wk),
          "kernel_shape equal to W's spatial dimensions");
  }
  g.k = wk;
  g.s = nn_detail::window_ints(node, "strides", r, 1, 1);
  g.d = nn_detail::window_ints(node, "dilations", r, 1, 1);
  const std::vector<int64_t> pads = nn_detail::window_ints(node, "pads", 2 * r, 0, 0);
  g.pb.assign(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(r));
  g.pe.assign(pads.begin() + static_cast<std::ptrdiff_t>(r), pads.end());
  for (int64_t x : g.k) g.ksize *= x;
}

void check_conv_ranks(const ir::Node& node, const Shape& x, const Shape& w) {
  QFORGE_CHECK(x.size() >= 3 && w.size() == x.size(), Errc::kShapeMismatch, node.describe(),
        "has X of shape " + shape_str(x) + " and W of shape " + shape_str(w),
        "X of rank >= 3 (N, C, spatial...) and W of the same rank");
}

ConvGeom conv_geom(const ir::Node& node, const Shape& x, const Shape& w) {
  check_conv_ranks(node, x, w);
  ConvGeom g;
  g.r = x.size() - 2;
  g.N = x[0];
  g.C = x[1];
  g.M = w[0];
  g.group = node.attr_int("group", 1);
  QFORGE_CHECK(g.group >= 1 && g.M % g.group == 0 && g.C == w[1] * g.group, Errc::kShapeMismatch,
        node.describe(),
        "has X with " + std::to_string(g.C) + " channels, W of shape " + shape_str(w) +
            " and group " + std::to_string(g.group),
        "C == W.shape[1] * group and M (W.shape[0]) divisible by group");
  g.Cg = w[1];
  g.Mg = g.M / g.group;
  g.in.assign(x.begin() + 2, x.end());
  read_window(node, g, Shape(w.begin() + 2, w.end()));
  const std::string auto_pad = nn_detail::auto_pad_attr(node);
  g.out.resize(g.r);
  for (size_t i = 0; i < g.r; ++i) {
    g.out[i] = nn_detail::window_out_dim(node, g.in[i], g.k[i], g.s[i], g.d[i], auto_pad, false,
                                         g.pb[i], g.pe[i]);
    g.in_size *= g.in[i];
    g.out_size *= g.out[i];
  }
  return g;
}

// ---- Conv: im2col ----

// Columns [K = Cg * ksize rows] x [np positions] for output positions
// [p0, p0 + np) of one image and group; rows [r0, r1).
void im2col_rows(const ConvGeom& g, const float* x, int64_t p0, int64_t np, float* col,
                 int64_t r0, int64_t r1) {
  const size_t R = g.r, L = R - 1;
  const int64_t Wl = g.out[L], Wi = g.in[L], sl = g.s[L], dl = g.d[L], pl = g.pb[L];
  int64_t kk[8] = {}, o[8] = {};
  std::vector<int64_t> kk_big, o_big;
  int64_t* kkp = kk;
  int64_t* op = o;
  if (R > 8) {
    kk_big.resize(R);
    o_big.resize(R);
    kkp = kk_big.data();
    op = o_big.data();
  }
  for (int64_t row = r0; row < r1; ++row) {
    float* dst = col + row * np;
    const int64_t c = row / g.ksize;
    int64_t kidx = row % g.ksize;
    for (size_t i = R; i-- > 0;) {
      kkp[i] = kidx % g.k[i];
      kidx /= g.k[i];
    }
    const float* src_c = x + c * g.in_size;
    const int64_t base = kkp[L] * dl - pl;
    // Output columns whose input column is inside: iw = ow * sl + base in [0, Wi).
    const int64_t lo = base >= 0 ? 0 : std::min(Wl, (-base + sl - 1) / sl);
    const int64_t hi = std::clamp<int64_t>(Wi - base <= 0 ? 0 : (Wi - base + sl - 1) / sl, lo, Wl);
    int64_t p = p0;
    while (p < p0 + np) {
      int64_t outer = p / Wl;
      const int64_t ow0 = p % Wl;
      const int64_t seg = std::min(Wl - ow0, p0 + np - p);
      bool valid = true;
      int64_t off = 0, stride = Wi;
      for (size_t i = L; i-- > 0;) {
        op[i] = outer % g.out[i];
        outer /= g.out[i];
        const int64_t ii = op[i] * g.s[i] + kkp[i] * g.d[i] - g.pb[i];
        if (ii < 0 || ii >= g.in[i]) valid = false;
        off += ii * stride;
        stride *= g.in[i];
      }
      if (!valid) {
        std::memset(dst, 0, static_cast<size_t>(seg) * sizeof(float));
      } else {
        const float* src = src_c + off + base;
        const int64_t e = ow0 + seg;
        const int64_t a = std::clamp(lo, ow0, e), b = std::clamp(hi, a, e);
        float* d0 = dst - ow0;  // indexed by ow
        for (int64_t ow = ow0; ow < a; ++ow) d0[ow] = 0.0f;
        if (sl == 1) {
          if (b > a) std::memcpy(d0 + a, src + a, static_cast<size_t>(b - a) * sizeof(float));
        } else {
          for (int64_t ow = a; ow < b; ++ow) d0[ow] = src[ow * sl];
        }
        for (int64_t ow = b; ow < e; ++ow) d0[ow] = 0.0f;
      }
      dst += seg;
      p += seg;
    }
  }
}

// The same for 2-D convolutions, a row of the output plane at a time (no
// division per position).
void im2col_2d(const ConvGeom& g, const float* x, int64_t p0, int64_t np, float* col, int64_t r0,
               int64_t r1) {
  const int64_t Hi = g.in[0], Wi = g.in[1], Wo = g.out[1];
  const int64_t KH = g.k[0], KW = g.k[1], sh = g.s[0], sw = g.s[1], dh = g.d[0], dw = g.d[1];
  const int64_t ph = g.pb[0], pw = g.pb[1];
  const int64_t oh0 = p0 / Wo, oh1 = (p0 + np - 1) / Wo;
  for (int64_t row = r0; row < r1; ++row) {
    float* dst = col + row * np - p0;  // indexed by output position
    const int64_t c = row / (KH * KW), kh = row / KW % KH, kw = row % KW;
    const float* src_c = x + c * g.in_size;
    const int64_t base = kw * dw - pw;  // input column of output column 0
    // Output columns whose input column ow * sw + base is inside [0, Wi).
    const int64_t lo = base >= 0 ? 0 : std::min(Wo, (-base + sw - 1) / sw);
    const int64_t hi = std::clamp<int64_t>(Wi - base <= 0 ? 0 : (Wi - base + sw - 1) / sw, lo, Wo);
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      const int64_t a = std::max(oh * Wo, p0) - oh * Wo, e = std::min(oh * Wo + Wo, p0 + np) - oh * Wo;
      float* d = dst + oh * Wo;  // indexed by ow
      const int64_t ih = oh * sh + kh * dh - ph;
      if (ih < 0 || ih >= Hi) {
        std::memset(d + a, 0, static_cast<size_t>(e - a) * sizeof(float));
        continue;
      }
      const float* srow = src_c + ih * Wi + base;  // indexed by ow * sw
      const int64_t l = std::clamp(lo, a, e), h = std::clamp(hi, l, e);
      for (int64_t ow = a; ow < l; ++ow) d[ow] = 0.0f;
      if (sw == 1) {
        if (h > l) std::memcpy(d + l, srow + l, static_cast<size_t>(h - l) * sizeof(float));
      } else {
        for (int64_t ow = l; ow < h; ++ow) d[ow] = srow[ow * sw];
      }
      for (int64_t ow = h; ow < e; ++ow) d[ow] = 0.0f;
    }
  }
}

// ---- Conv: depthwise 2-D ----
//
// Per channel plane. The input plane is copied, with its zero padding, into
// sh * sw phase planes: phase (a, b) holds the padded pixels P[r*sh + a][c*sw + b],
// Hq x Wq of them (Hq = ceil(Hp / sh), Wq = ceil(Wp / sw) for the padded
// Hp x Wp plane). Output pixel (oh, ow) reads P[oh*sh + kh*dh][ow*sw + kw*dw],
// which is phase ((kh*dh) % sh, (kw*dw) % sw) at
//   (oh + (kh*dh) / sh) * Wq + ow + (kw*dw) / sw,
// i.e. at flat index i = oh*Wq + ow plus an offset fixed per tap. So the
// outputs are computed on a flat grid of Ho x Wq (the last Wq - Wo of each row
// are discarded), each tap a contiguous read: one vectorised loop over the
// grid with all taps of a group summed in registers. Strided layers compute
// only the outputs they keep. The grid is then copied into the output rows
// with the activation. Each plane is followed by Wq + kLanes zeros, so the
// discarded columns and the rounding up of the grid to whole vectors read
// inside the buffer.

constexpr int64_t kLanes = 16;  // the grid is rounded up to whole vectors of this many

struct DwPlane {
  int64_t Hi, Wi, Ho, Wo, KH, KW, sh, sw, dh, dw, pt, pl;
  int64_t Hq = 0, Wq = 0;  // phase plane size
  int64_t plane() const { return Hq * Wq + Wq + kLanes; }  // floats per phase plane, tail included
  int64_t grid() const { return (Ho * Wq + kLanes - 1) / kLanes * kLanes; }
};

DwPlane dw_plane_geom(const ConvGeom& g) {
  DwPlane p{g.in[0], g.in[1], g.out[0], g.out[1], g.k[0], g.k[1], g.s[0], g.s[1],
            g.d[0], g.d[1], g.pb[0], g.pb[1]};
  const int64_t Hp = (p.Ho - 1) * p.sh + (p.KH - 1) * p.dh + 1;
  const int64_t Wp = (p.Wo - 1) * p.sw + (p.KW - 1) * p.dw + 1;
  p.Hq = (Hp + p.sh - 1) / p.sh;
  p.Wq = (Wp + p.sw - 1) / p.sw;
  return p;
}

// One padded row: row[c] = padded column c (input column c - pl, or 0) for
// c in [0, n), of input row xr (nullptr: a padding row).
NN_INLINE void dw_padded_row(const DwPlane& p, const float* xr, float* row, int64_t n) {
  const int64_t c0 = xr != nullptr ? std::clamp<int64_t>(p.pl, 0, n) : n;
  const int64_t c1 = xr != nullptr ? std::clamp<int64_t>(p.pl + p.Wi, c0, n) : n;
  for (int64_t c = 0; c < c0; ++c) row[c] = 0.0f;
  for (int64_t c = c0; c < c1; ++c) row[c] = xr[c - p.pl];
  for (int64_t c = c1; c < n; ++c) row[c] = 0.0f;
}

// Copies plane x into the phase planes at q (phase (a, b) at q + (a*sw + b) *
// plane()), a padded row at a time; `row` holds Wq * sw floats.
NN_INLINE void dw_phases(const DwPlane& p, const float* x, float* q, float* row) {
  const int64_t stride = p.plane(), n = p.Wq * p.sw;
  for (int64_t R = 0; R < p.Hq * p.sh; ++R) {
    const int64_t a = R % p.sh, r = R / p.sh, ir = R - p.pt;
    const float* xr = ir >= 0 && ir < p.Hi ? x + ir * p.Wi : nullptr;
    float* d = q + a * p.sw * stride + r * p.Wq;
    if (p.sw == 1) {
      dw_padded_row(p, xr, d, n);
      continue;
    }
    dw_padded_row(p, xr, row, n);
    if (p.sw == 2) {  // a constant stride, so that the split vectorises
      float* d1 = d + stride;
      for (int64_t j = 0; j < p.Wq; ++j) {
        d[j] = row[2 * j];
        d1[j] = row[2 * j + 1];
      }
    } else {
      for (int64_t b = 0; b < p.sw; ++b)
        for (int64_t j = 0; j < p.Wq; ++j) d[b * stride + j] = row[j * p.sw + b];
    }
  }
  for (int64_t ph = 0; ph < p.sh * p.sw; ++ph)
    for (int64_t j = p.Hq * p.Wq; j < stride; ++j) q[ph * stride + j] = 0.0f;
}

// grid[i] (+)= sum over T taps of w[t] * src[t][i], i in [0, n); the first
// group of taps starts from the bias.
template <int T>
NN_INLINE void dw_taps(const float* const* src, const float* w, float* __restrict grid, int64_t n,
                       bool first, float bias) {
  const float* s[T];
  float wt[T];
  for (int t = 0; t < T; ++t) s[t] = src[t], wt[t] = w[t];
  for (int64_t i = 0; i < n; ++i) {
    float acc = first ? bias : grid[i];
#pragma GCC unroll 9
    for (int t = 0; t < T; ++t) acc += wt[t] * s[t][i];
    grid[i] = acc;
  }
}

// The grid's rows into the output plane, with the activation.
template <kernels::Epilogue A>
NN_INLINE void dw_store(const DwPlane& p, const float* grid, float* y, float lo, float hi) {
  for (int64_t oh = 0; oh < p.Ho; ++oh) {
    const float* g = grid + oh * p.Wq;
    float* yr = y + oh * p.Wo;
    for (int64_t ow = 0; ow < p.Wo; ++ow) {
      const float v = g[ow];
      if constexpr (A == kernels::Epilogue::kRelu) yr[ow] = v > 0.0f ? v : 0.0f;
      else if constexpr (A == kernels::Epilogue::kClip) yr[ow] = std::min(std::max(v, lo), hi);
      else yr[ow] = v;
    }
  }
}

// One channel plane: x (Hi x Wi) into y (Ho x Wo); `work` holds the phase
// planes, the grid and a padded row.
NN_INLINE void dw_plane(const DwPlane& p, const int64_t* offsets, const float* x, const float* w,
                        float bias, float* y, float* work, const kernels::GemmEpilogue& act) {
  float* phases = work;
  float* grid = phases + p.sh * p.sw * p.plane();
  dw_phases(p, x, phases, grid + p.grid());
  const int64_t taps = p.KH * p.KW, n = p.grid();
  const float* src[9];
  for (int64_t t0 = 0; t0 < taps; t0 += 9) {
    const int64_t T = std::min<int64_t>(9, taps - t0);
    for (int64_t t = 0; t < T; ++t) src[t] = phases + offsets[t0 + t];
    const bool first = t0 == 0;
    switch (T) {
      case 9: dw_taps<9>(src, w + t0, grid, n, first, bias); break;
      case 8: dw_taps<8>(src, w + t0, grid, n, first, bias); break;
      case 7: dw_taps<7>(src, w + t0, grid, n, first, bias); break;
      case 6: dw_taps<6>(src, w + t0, grid, n, first, bias); break;
      case 5: dw_taps<5>(src, w + t0, grid, n, first, bias); break;
      case 4: dw_taps<4>(src, w + t0, grid, n, first, bias); break;
      case 3: dw_taps<3>(src, w + t0, grid, n, first, bias); break;
      case 2: dw_taps<2>(src, w + t0, grid, n, first, bias); break;
      default: dw_taps<1>(src, w + t0, grid, n, first, bias); break;
    }
  }
  switch (act.act) {
    case kernels::Epilogue::kRelu: dw_store<kernels::Epilogue::kRelu>(p, grid, y, 0, 0); break;
    case kernels::Epilogue::kClip:
      dw_store<kernels::Epilogue::kClip>(p, grid, y, act.clip_min, act.clip_max);
      break;
    default: dw_store<kernels::Epilogue::kNone>(p, grid, y, 0, 0); break;
  }
}

#if defined(__x86_64__)
// The depthwise convolution with 16 channels in the lanes of a vector
// (AVX-512). Per image and block of 16 channels: the planes are transposed
// (kernels' 16 x 16 pack transpose) into a zero-padded Hp x Wp x 16 buffer,
// each output pixel's 16 channels are summed tap by tap with aligned loads
// (no stride phases needed, every output computed once; kernels::dwconv_16c__avx512,
// eight pixels of a row at a time), and the
// Ho*Wo x 16 result is transposed back into the 16 output planes. Channels
// past C in the last block are zeros and are not written.
constexpr int64_t kDwLanes = 16;
constexpr int64_t kDwLanesMaxPixels = 1024;  // stride-1 output pixels per plane up to which lanes win
constexpr int64_t kDwLanesMaxStrided = 1 << 16;  // strided: bounds the 16-channel buffer per thread

void depthwise_lanes(const ConvGeom& g, const DwPlane& p, const float* x, const float* w,
                     const float* bias, float* y, const kernels::GemmEpilogue& act,
                     ThreadPool* pool) {
  const int64_t Hp = (p.Ho - 1) * p.sh + (p.KH - 1) * p.dh + 1;
  const int64_t Wp = (p.Wo - 1) * p.sw + (p.KW - 1) * p.dw + 1;
  const int64_t blocks = (g.C + kDwLanes - 1) / kDwLanes, taps = p.KH * p.KW;
  const int64_t in_cols = std::min(p.Wi, Wp - p.pl);  // input columns the windows read
  const int64_t per = p.Ho * p.Wo * taps * kDwLanes;
  std::vector<int64_t> offsets;  // tap (kh, kw) in the Hp x Wp x 16 buffer
  for (int64_t kh = 0; kh < p.KH; ++kh)
    for (int64_t kw = 0; kw < p.KW; ++kw) offsets.push_back((kh * p.dh * Wp + kw * p.dw) * kDwLanes);
  parallel(pool, g.N * blocks, grain_for(per, 1 << 16), [&](int64_t b, int64_t e) {
    float* buf = scratch(Hp * Wp * kDwLanes, 0);
    float* out = scratch(p.Ho * p.Wo * kDwLanes, 1);
    float* wb = scratch((taps + 1) * kDwLanes, 2);  // weights, then the bias
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / blocks, c0 = item % blocks * kDwLanes;
      const int64_t nc = std::min(kDwLanes, g.C - c0);
      for (int64_t t = 0; t <= taps; ++t)
        for (int64_t l = 0; l < kDwLanes; ++l) {
          const bool real = l < nc;
          float v = 0.0f;
          if (real && t < taps) v = w[(c0 + l) * taps + t];
          else if (real && bias != nullptr) v = bias[c0 + l];
          wb[t * kDwLanes + l] = v;
        }
      const float* xc = x + (n * g.C + c0) * g.in_size;
      for (int64_t r = 0; r < Hp; ++r) {
        float* row = buf + r * Wp * kDwLanes;
        const int64_t ih = r - p.pt;
        if (ih < 0 || ih >= p.Hi || in_cols <= 0) {
          std::fill(row, row + Wp * kDwLanes, 0.0f);
          continue;
        }
        std::fill(row, row + p.pl * kDwLanes, 0.0f);
        kernels::pack_transpose__avx512(xc + ih * p.Wi, g.in_size, nc, in_cols, row + p.pl * kDwLanes,
                                        kDwLanes, kDwLanes);
        std::fill(row + (p.pl + in_cols) * kDwLanes, row + Wp * kDwLanes, 0.0f);
      }
      kernels::dwconv_16c__avx512({buf, Wp * kDwLanes, p.sh, p.sw, offsets.data(), taps, wb,
                                   wb + taps * kDwLanes, p.Ho, p.Wo, out, act.act, act.clip_min,
                                   act.clip_max});
      const int64_t pixels = p.Ho * p.Wo;
      float* yc = y + (n * g.C + c0) * g.out_size;
      for (int64_t p0 = 0; p0 < pixels; p0 += kDwLanes) {
        const int64_t np = std::min(kDwLanes, pixels - p0);
        kernels::pack_transpose__avx512(out + p0 * kDwLanes, kDwLanes, np, nc, yc + p0, g.out_size, np);
      }
    }
  });
}
#endif

void depthwise_run(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y,
                   const kernels::GemmEpilogue& act, ThreadPool* pool) {
  const DwPlane p = dw_plane_geom(g);
#if defined(__x86_64__)
  // Lanes unless a large stride-1 plane, where the planar path's flat passes
  // cost less than the transposes (BM_Conv, batch 1, one thread: 48 x 48
  // stride 1 33 us planar, 40 lanes; 24 x 24 stride 1 53 and 40; 48 x 48
  // stride 2 67 and 34, the planar path splitting the plane into phases).
  const bool strided = p.sh * p.sw > 1;
  const int64_t pixels = p.Ho * p.Wo;
  if (vector_isa() == 2 &&
      (pixels <= kDwLanesMaxPixels || (strided && pixels <= kDwLanesMaxStrided))) {
    depthwise_lanes(g, p, x, w, bias, y, act, pool);
    return;
  }
#endif
  // Where each tap (kh, kw) reads, relative to the first phase plane.
  std::vector<int64_t> offsets;
  for (int64_t kh = 0; kh < p.KH; ++kh)
    for (int64_t kw = 0; kw < p.KW; ++kw) {
      const int64_t a = kh * p.dh % p.sh, b = kw * p.dw % p.sw;
      offsets.push_back((a * p.sw + b) * p.plane() + (kh * p.dh / p.sh) * p.Wq + kw * p.dw / p.sw);
    }
  const int64_t planes = g.N * g.C;
  const int64_t per = p.Ho * p.Wo * p.KH * p.KW;
  const int64_t work_size = p.sh * p.sw * p.plane() + p.grid() + p.Wq * p.sw;
  parallel(pool, planes, grain_for(per, 1 << 16), [&](int64_t b, int64_t e) {
    float* work = scratch(work_size);
    for (int64_t t = b; t < e; ++t) {
      const int64_t c = t % g.C;
      const float* xp = x + t * g.in_size;
      const float* wp = w + c * p.KH * p.KW;
      const float bv = bias != nullptr ? bias[c] : 0.0f;
      float* yp = y + t * g.out_size;
      run_vectorized([&]() NN_LAMBDA { dw_plane(p, offsets.data(), xp, wp, bv, yp, work, act); });
    }
  });
}

// ---- Conv ----

struct ConvState {
  std::vector<kernels::PackedMatrix> packed;  // per group: Mg x (Cg * ksize)
};

bool is_depthwise(const ConvGeom& g) { return g.r == 2 && g.Cg == 1 && g.Mg == 1; }

std::shared_ptr<const void> conv_prepare(const PrepareContext& p) {
  const Tensor* w = p.constants.size() > 1 ? p.constants[1] : nullptr;
  if (w == nullptr || w->dtype() != DType::kF32 || w->rank() < 3) return nullptr;
  const int64_t group = p.node.attr_int("group", 1);
  const int64_t M = w->dim(0), Cg = w->dim(1);
  if (group < 1 || M % group != 0 || w->numel() == 0) return nullptr;
  const int64_t Mg = M / group;
  if (w->rank() == 4 && Cg == 1 && Mg == 1) return nullptr;  // depthwise: direct path
  const int64_t K = w->numel() / M;
  auto st = std::make_shared<ConvState>();
  for (int64_t gi = 0; gi < group; ++gi)
    st->packed.push_back(kernels::pack_a(false, Mg, K, w->data<float>() + gi * Mg * K, K));
  return st;
}

// MaxPool 2x2 / 2 (no padding, floor) of a plane with row pitch `pitch` into
// y (Hh x Wh): the window taken in MaxPool's order, a NaN never the larger
// (as nn_pool.cpp's loops).
NN_INLINE void pool2x2_plane(const float* x, int64_t pitch, int64_t Hh, int64_t Wh, float* y) {
  auto larger = [](float v, float m) { return __builtin_isgreater(v, m) ? v : m; };
  for (int64_t i = 0; i < Hh; ++i) {
    const float* r0 = x + 2 * i * pitch;
    const float* r1 = r0 + pitch;
    float* yr = y + i * Wh;
    for (int64_t j = 0; j < Wh; ++j) {
      float m = larger(r0[2 * j], -INFINITY);
      m = larger(r0[2 * j + 1], m);
      m = larger(r1[2 * j], m);
      yr[j] = larger(r1[2 * j + 1], m);
    }
  }
}

// Multiply-adds per image below which conv_padded keeps an image in one piece.
constexpr int64_t kMinBandMacs = int64_t{1} << 20;

// Floats of a padded image beyond which conv_padded leaves the work to im2col.
constexpr int64_t kMaxPadded = int64_t{1} << 20;

// 2-D convolution without im2col. Each image is copied once into
// zero-padded planes split into stride phases (as for the depthwise path:
// per channel sh * sw phase planes of Hq x Wq, pitch plane()). Output
// position (oh, ow) of the grid of Ho x Wq positions (Wq - Wo of each row
// discarded) reads tap (c, kh, kw) in phase ((kh*dh) % sh, (kw*dw) % sw) of
// channel c at (kh*dh / sh) * Wq + (kw*dw) / sw + oh*Wq + ow: so the im2col
// matrix's row for (c, kh, kw) is that phase plane from a fixed offset, and
// the GEMM (sgemm_packed_a_rows, the weights packed in prepare) reads it in
// place. The grid's valid columns are then copied into Y.
void conv_padded(const ConvGeom& g, const DwPlane& p, const ConvState& st, const float* x,
                 const float* bias, const kernels::GemmEpilogue& act, bool pool2, float* y,
                 ThreadPool* pool) {
  // Work items are bands of output rows of one image, each with its own
  // padded copy of the input rows it reads (the kernel's reach past the band
  // is copied twice): one band per image when there are enough images for
  // the threads, else as many bands as it takes. Items share nothing, so a
  // thread never reads what another one just wrote. A band's rows are even
  // when pooling, so that no window straddles two bands.
  // Small images stay whole: bands of a tiny convolution (fashion_cnn's first
  // layer, 0.2M multiply-adds) cost more in copies and cross-core traffic
  // than the second thread gains.
  const int threads = pool != nullptr ? pool->threads() : 1;
  const int64_t macs = g.M * g.Cg * p.KH * p.KW * p.Ho * p.Wo;
  const bool split = g.N < threads && macs >= kMinBandMacs;
  const int64_t bands = split ? std::min<int64_t>((threads + g.N - 1) / g.N, p.Ho) : 1;
  int64_t band_rows = (p.Ho + bands - 1) / bands;
  if (pool2) band_rows += band_rows % 2;
  const int64_t nbands = (p.Ho + band_rows - 1) / band_rows;
  DwPlane pb = p;  // one band's geometry (every band as tall as the first)
  pb.Ho = band_rows;
  pb.Hq = ((pb.Ho - 1) * p.sh + (p.KH - 1) * p.dh + 1 + p.sh - 1) / p.sh;
  const int64_t plane = pb.plane(), chan = p.sh * p.sw * plane, grid = pb.Ho * p.Wq;
  std::vector<int64_t> rows;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t kh = 0; kh < p.KH; ++kh)
      for (int64_t kw = 0; kw < p.KW; ++kw) {
        const int64_t a = kh * p.dh % p.sh, b = kw * p.dw % p.sw;
        rows.push_back(c * chan + (a * p.sw + b) * plane + (kh * p.dh / p.sh) * p.Wq + kw * p.dw / p.sw);
      }
  // The last tile reads up to a panel past the grid: zeros after the last plane.
  const int64_t tail = kernels::panel_columns(st.packed[0].isa()) + p.KW * p.dw;
  const int64_t Hh = p.Ho / 2, Wh = p.Wo / 2;  // pooled output
  auto item = [&](int64_t n, int64_t band) {
    const int64_t oh0 = band * band_rows, valid = std::min(band_rows, p.Ho - oh0);
    DwPlane pt = pb;
    pt.pt = p.pt - oh0 * p.sh;  // the band's first padded row is input row oh0 * sh - pt
    float* xp = scratch(g.C * chan + tail, 0);
    float* out = scratch(g.Mg * grid, 1);
    float* row = scratch(p.Wq * p.sw, 2);
    run_vectorized([&]() NN_LAMBDA {
      for (int64_t c = 0; c < g.C; ++c) dw_phases(pt, x + (n * g.C + c) * g.in_size, xp + c * chan, row);
    });
    std::fill(xp + g.C * chan, xp + g.C * chan + tail, 0.0f);
    for (int64_t gi = 0; gi < g.group; ++gi) {
      kernels::GemmEpilogue ep = act;
      ep.bias_m = bias != nullptr ? bias + gi * g.Mg : nullptr;
      kernels::sgemm_packed_a_rows(st.packed[static_cast<size_t>(gi)], grid, xp + gi * g.Cg * chan,
                                   rows.data(), out, grid, ep, nullptr);
      if (pool2) {
        float* yp = y + (n * g.M + gi * g.Mg) * Hh * Wh + oh0 / 2 * Wh;
        const int64_t rows_out = valid / 2;
        if (p.Wq % 2 != 0) {
          run_vectorized([&]() NN_LAMBDA {
            for (int64_t m = 0; m < g.Mg; ++m)
              pool2x2_plane(out + m * grid, p.Wq, rows_out, Wh, yp + m * Hh * Wh);
          });
          continue;
        }
        // Wq even: every window is out[2q], out[2q + 1] and the same a row
        // below, so one flat vectorised pass computes the window of every
        // even position of the grid (half[q]); then the rows the pooling
        // keeps are copied out.
        const int64_t nq = (g.Mg * grid - p.Wq) / 2;
        float* half = scratch(nq, 3);
        run_vectorized([&]() NN_LAMBDA {
          const int64_t Wq = p.Wq;
          auto larger = [](float v, float m) { return __builtin_isgreater(v, m) ? v : m; };
          for (int64_t q = 0; q < nq; ++q) {
            float m = larger(out[2 * q], -INFINITY);
            m = larger(out[2 * q + 1], m);
            m = larger(out[2 * q + Wq], m);
            half[q] = larger(out[2 * q + Wq + 1], m);
          }
          for (int64_t m = 0; m < g.Mg; ++m)
            for (int64_t i = 0; i < rows_out; ++i) {
              const float* src = half + (m * grid + 2 * i * Wq) / 2;
              float* dst = yp + m * Hh * Wh + i * Wh;
              for (int64_t j = 0; j < Wh; ++j) dst[j] = src[j];
            }
        });
        continue;
      }
      float* yg = y + (n * g.M + gi * g.Mg) * g.out_size + oh0 * p.Wo;
      // Rows are short (Wo floats): a vectorised loop, not a memcpy call each.
      run_vectorized([&]() NN_LAMBDA {
        const int64_t Wo = p.Wo, Wq = p.Wq, plane_out = g.out_size;
        for (int64_t m = 0; m < g.Mg; ++m)
          for (int64_t i = 0; i < valid; ++i) {
            const float* src = out + m * grid + i * Wq;
            float* dst = yg + m * plane_out + i * Wo;
            for (int64_t ow = 0; ow < Wo; ++ow) dst[ow] = src[ow];
          }
      });
    }
  };
  const int64_t items = g.N * nbands;
  if (pool != nullptr && items > 1) {
    pool->parallel_for(items, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) item(t / nbands, t % nbands);
    });
  } else {
    for (int64_t t = 0; t < items; ++t) item(t / nbands, t % nbands);
  }
}

// Conv, or (pool2: ai.qforge ConvMaxPool) Conv then MaxPool 2x2 / 2.
void conv_run_impl(OpContext& ctx, bool pool2) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  if (x.dtype() != DType::kF32) bad_type(node, "input X", x.dtype(), "f32");
  if (w.dtype() != DType::kF32) bad_type(node, "input W", w.dtype(), "f32");
  const ConvGeom g = conv_geom(node, x.shape(), w.shape());
  const float* bias = nullptr;
  if (ctx.has_input(2)) {
    const Tensor& b = ctx.input(2);
    if (b.dtype() != DType::kF32) bad_type(node, "input B", b.dtype(), "f32");
    QFORGE_CHECK(b.rank() == 1 && b.dim(0) == g.M, Errc::kShapeMismatch, node.describe(),
          "has B of shape " + shape_str(b.shape()), "B of shape [" + std::to_string(g.M) + "]");
    bias = b.data<float>();
  }
  Shape ys = {g.N, g.M};
  ys.insert(ys.end(), g.out.begin(), g.out.end());
  if (pool2) {
    QFORGE_CHECK(g.r == 2, Errc::kShapeMismatch, node.describe(), "has X of rank " + std::to_string(g.r + 2),
          "a 2-D convolution (X of rank 4)");
    ys[2] /= 2;
    ys[3] /= 2;
  }
  Tensor& yt = ctx.output(0, DType::kF32, ys);
  if (yt.numel() == 0) return;
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  float* py = yt.data<float>();
  ThreadPool* pool = ctx.pool();
  const kernels::GemmEpilogue act = fused_activation(node);
  const ConvState* st = ctx.state() != nullptr ? &ctx.state_as<ConvState>() : nullptr;
  const int64_t K = g.Cg * g.ksize;
  if (st != nullptr)
    QFORGE_CHECK(static_cast<int64_t>(st->packed.size()) == g.group && st->packed[0].rows() == g.Mg &&
              st->packed[0].cols() == K,
          Errc::kInternal, node.describe(), "has packed weights that do not match W");
  bool direct = true;  // 1x1, stride 1, no padding: the image is the GEMM's B
  for (size_t i = 0; i < g.r; ++i)
    direct = direct && g.k[i] == 1 && g.s[i] == 1 && g.pb[i] == 0 && g.pe[i] == 0;
  const int threads = pool != nullptr ? pool->threads() : 1;
  const int64_t macs = g.M * K * g.out_size;
  const bool by_image = threads > 1 && g.N > 1 &&
                        (g.N % threads == 0 || g.N >= 4 * threads || macs < (int64_t{1} << 20));
  if (st != nullptr && !direct && g.r == 2) {
    const DwPlane p = dw_plane_geom(g);
    if (g.C * p.sh * p.sw * p.plane() <= kMaxPadded) {
      conv_padded(g, p, *st, px, bias, act, pool2, py, pool);
      return;
    }
  }
  // The other paths write the convolution's whole output; ConvMaxPool then
  // pools it.
  std::vector<float> unpooled;
  if (pool2) {
    unpooled.resize(static_cast<size_t>(g.N * g.M * g.out_size));
    py = unpooled.data();
  }
  if (is_depthwise(g)) {
    depthwise_run(g, px, pw, bias, py, act, pool);
  } else {
    const int64_t P = direct ? g.out_size : chunk_positions(K, g.out_size);
    auto image = [&](int64_t n, ThreadPool* inner) {
      for (int64_t gi = 0; gi < g.group; ++gi) {
        const float* xg = px + (n * g.C + gi * g.Cg) * g.in_size;
        float* yg = py + (n * g.M + gi * g.Mg) * g.out_size;
        kernels::GemmEpilogue ep = act;
        ep.bias_m = bias != nullptr ? bias + gi * g.Mg : nullptr;
        for (int64_t p0 = 0; p0 < g.out_size; p0 += P) {
          const int64_t np = std::min(P, g.out_size - p0);
          const float* cols = xg;
          int64_t ldb = g.in_size;
          if (!direct) {
            float* buf = scratch(K * np);
            parallel(inner, K, grain_for(np, 1 << 14),
                     [&](int64_t r0, int64_t r1) {
                       if (g.r == 2) im2col_2d(g, xg, p0, np, buf, r0, r1);
                       else im2col_rows(g, xg, p0, np, buf, r0, r1);
                     });
            cols = buf;
            ldb = np;
          } else {
            cols = xg + p0;
          }
          if (st != nullptr && direct) {
            // 1x1: B is the image itself, row k (channel k) at k * in_size; the
            // whole panels read it in place, the last partial one is packed.
            const kernels::PackedMatrix& a = st->packed[static_cast<size_t>(gi)];
            const int64_t nr = kernels::panel_columns(a.isa());
            const int64_t full = np / nr * nr;
            thread_local std::vector<int64_t> offs;
            offs.resize(static_cast<size_t>(K));
            for (int64_t k = 0; k < K; ++k) offs[static_cast<size_t>(k)] = k * ldb;
            if (full > 0) kernels::sgemm_packed_a_rows(a, full, cols, offs.data(), yg + p0, g.out_size, ep, inner);
            if (full < np)
              kernels::sgemm_packed_a(a, np - full, cols + full, ldb, false, 0.0f, yg + p0 + full,
                                      g.out_size, ep, inner);
          } else if (st != nullptr)
            kernels::sgemm_packed_a(st->packed[static_cast<size_t>(gi)], np, cols, ldb, false, 0.0f,
                                    yg + p0, g.out_size, ep, inner);
          else
            kernels::sgemm(false, false, g.Mg, np, K, 1.0f, pw + gi * g.Mg * K, K, cols, ldb, 0.0f,
                           yg + p0, g.out_size, ep, inner);
        }
      }
    };
    if (by_image) {
      pool->parallel_for(g.N, 1, [&](int64_t b, int64_t e) {
        for (int64_t n = b; n < e; ++n) image(n, nullptr);
      });
    } else {
      for (int64_t n = 0; n < g.N; ++n) image(n, pool);
    }
  }
  if (pool2) {
    const int64_t Hh = g.out[0] / 2, Wh = g.out[1] / 2;
    for (int64_t c = 0; c < g.N * g.M; ++c)
      pool2x2_plane(unpooled.data() + c * g.out_size, g.out[1], Hh, Wh, yt.data<float>() + c * Hh * Wh);
  }
}

void conv_run(OpContext& ctx) { conv_run_impl(ctx, false); }
void conv_maxpool_run(OpContext& ctx) { conv_run_impl(ctx, true); }

// ---- shape inference (Conv and ConvTranspose) ----

// The output dimension of a window op for a symbolic input dimension: the
// input's own Dim where the window keeps the size, unknown where it is not
// computable.
ir::Dim sym_window_dim(const ir::Node& node, const ir::Dim& in, int64_t k, int64_t s, int64_t d,
                       const std::string& auto_pad, bool ceil_mode, int64_t pb, int64_t pe) {
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  if (in.known() && (k > 0 || same))
    return nn_detail::window_out_dim(node, in.size, std::max<int64_t>(k, 1), s, d, auto_pad,
                                     ceil_mode, pb, pe);
  if (s == 1 && (same || (k > 0 && (k - 1) * d == (auto_pad == "VALID" ? 0 : pb + pe)))) return in;
  return ir::Dim();
}

// The Conv's output shape, or (pool2) after MaxPool 2x2 / 2 (floor).
void conv_infer_impl(InferContext& ctx, bool pool2) {
  const ir::Node& node = ctx.node();
  const ir::ValueInfo& x = ctx.input(0);
  const ir::ValueInfo& w = ctx.input(1);
  const std::optional<DType> dt = x.dtype ? x.dtype : w.dtype;
  if (!x.shape && !w.shape) {
    set_output(ctx, 0, dt, std::nullopt);
    return;
  }
  const size_t rank = x.shape ? x.shape->size() : w.shape->size();
  QFORGE_CHECK(rank >= 3 && (!x.shape || !w.shape || x.shape->size() == w.shape->size()),
        Errc::kShapeMismatch, node.describe(),
        "has X of shape " + (x.shape ? ir::sym_shape_str(*x.shape) : "?") + " and W of shape " +
            (w.shape ? ir::sym_shape_str(*w.shape) : "?"),
        "X of rank >= 3 (N, C, spatial...) and W of the same rank");
  const size_t r = rank - 2;
  const int64_t group = node.attr_int("group", 1);
  QFORGE_CHECK(group >= 1, Errc::kInvalidArgument, node.describe(), "has group " + std::to_string(group),
        "group >= 1");
  if (x.shape && w.shape) {
    const ir::Dim c = (*x.shape)[1], wc = (*w.shape)[1];
    QFORGE_CHECK(!c.known() || !wc.known() || c.size == wc.size * group, Errc::kShapeMismatch,
          node.describe(),
          "has X with " + c.str() + " channels and W with " + wc.str() + " per group (group " +
              std::to_string(group) + ")",
          "C == W.shape[1] * group");
  }
  std::vector<int64_t> k(r, -1);
  if (node.has_attr("kernel_shape")) k = nn_detail::window_ints(node, "kernel_shape", r, 1, 1);
  else if (w.shape)
    for (size_t i = 0; i < r; ++i) k[i] = (*w.shape)[2 + i].known() ? (*w.shape)[2 + i].size : -1;
  const std::vector<int64_t> s = nn_detail::window_ints(node, "strides", r, 1, 1);
  const std::vector<int64_t> d = nn_detail::window_ints(node, "dilations", r, 1, 1);
  const std::vector<int64_t> pads = nn_detail::window_ints(node, "pads", 2 * r, 0, 0);
  const std::string auto_pad = nn_detail::auto_pad_attr(node);
  ir::SymShape out(rank);
  out[0] = x.shape ? (*x.shape)[0] : ir::Dim();
  out[1] = w.shape ? (*w.shape)[0] : ir::Dim();
  for (size_t i = 0; i < r; ++i)
    out[2 + i] = x.shape ? sym_window_dim(node, (*x.shape)[2 + i], k[i], s[i], d[i], auto_pad,
                                          false, pads[i], pads[r + i])
                         : ir::Dim();
  if (pool2) {
    QFORGE_CHECK(rank == 4, Errc::kShapeMismatch, node.describe(), "has X of rank " + std::to_string(rank),
          "a 2-D convolution (X of rank 4)");
    for (size_t i = 2; i < 4; ++i) out[i] = out[i].known() ? ir::Dim(out[i].size / 2) : ir::Dim();
  }
  set_output(ctx, 0, dt, out);
}

void conv_infer(InferContext& ctx) { conv_infer_impl(ctx, false); }
void conv_maxpool_infer(InferContext& ctx) { conv_infer_impl(ctx, true); }

std::string conv_check(const InferContext& ctx) {
  if (std::string why = fused_activation_check(ctx.node()); !why.empty()) return why;
  if (ctx.node().op_type == "FusedConv" && ctx.has_input(3))
    return "has input Z (a fused sum); qforge's FusedConv takes X, W and B only";
  for (int i = 0; i < ctx.num_inputs() && i < 3; ++i)
    if (ctx.has_input(i) && ctx.input(i).dtype && *ctx.input(i).dtype != DType::kF32)
      return "input " + std::to_string(i) + " is " + std::string(dtype_name(*ctx.input(i).dtype)) +
             "; qforge runs " + ctx.node().op_type + " on f32 only";
  return {};
}

// ---- ConvTranspose ----

ConvGeom convt_geom(const ir::Node& node, const Shape& x, const Shape& w) {
  check_conv_ranks(node, x, w);
  ConvGeom g;
  g.r = x.size() - 2;
  g.N = x[0];
  g.C = x[1];
  g.group = node.attr_int("group", 1);
  QFORGE_CHECK(g.group >= 1 && g.C == w[0] && g.C % g.group == 0, Errc::kShapeMismatch, node.describe(),
        "has X with " + std::to_string(g.C) + " channels, W of shape " + shape_str(w) +
            " and group " + std::to_string(g.group),
        "W.shape[0] == C, divisible by group");
  g.Cg = g.C / g.group;
  g.Mg = w[1];
  g.M = g.Mg * g.group;
  g.in.assign(x.begin() + 2, x.end());
  read_window(node, g, Shape(w.begin() + 2, w.end()));
  g.out_pad = nn_detail::window_ints(node, "output_padding", g.r, 0, 0);
  const std::string auto_pad = nn_detail::auto_pad_attr(node);
  std::vector<int64_t> os = node.attr_ints("output_shape", {});
  QFORGE_CHECK(os.empty() || os.size() >= g.r, Errc::kInvalidArgument, node.describe(),
        "has output_shape " + shape_str(os),
        std::to_string(g.r) + " spatial sizes (or the full output shape)");
  if (os.size() > g.r) os.erase(os.begin(), os.end() - static_cast<std::ptrdiff_t>(g.r));
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  g.out.resize(g.r);
  auto floor_half = [](int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  for (size_t i = 0; i < g.r; ++i) {
    const int64_t full = g.s[i] * (g.in[i] - 1) + g.out_pad[i] + (g.k[i] - 1) * g.d[i] + 1;
    if (!os.empty() || same) {
      g.out[i] = !os.empty() ? os[i] : g.in[i] * g.s[i];
      const int64_t total = full - g.out[i];
      if (auto_pad == "SAME_UPPER") {
        g.pb[i] = floor_half(total);
        g.pe[i] = total - g.pb[i];
      } else {
        g.pe[i] = floor_half(total);
        g.pb[i] = total - g.pe[i];
      }
    } else {
      if (auto_pad == "VALID") g.pb[i] = g.pe[i] = 0;
      g.out[i] = full - g.pb[i] - g.pe[i];
    }
    QFORGE_CHECK(g.out[i] >= 1, Errc::kShapeMismatch, node.describe(),
          "computes an output size of " + std::to_string(g.out[i]) + " in spatial dimension " +
              std::to_string(i),
          "pads, output_padding and output_shape giving sizes >= 1");
    g.in_size *= g.in[i];
    g.out_size *= g.out[i];
  }
  return g;
}

std::shared_ptr<const void> convt_prepare(const PrepareContext& p) {
  const Tensor* w = p.constants.size() > 1 ? p.constants[1] : nullptr;
  if (w == nullptr || w->dtype() != DType::kF32 || w->rank() < 3 || w->numel() == 0) return nullptr;
  const int64_t group = p.node.attr_int("group", 1);
  const int64_t C = w->dim(0);
  if (group < 1 || C % group != 0) return nullptr;
  const int64_t Cg = C / group, rows = w->numel() / C;  // rows = Mg * ksize
  auto st = std::make_shared<ConvState>();
  for (int64_t gi = 0; gi < group; ++gi)
    st->packed.push_back(kernels::pack_a(true, rows, Cg, w->data<float>() + gi * Cg * rows, rows));
  return st;
}

// Adds columns [Mg * ksize rows] x [np input positions from p0] into the
// output planes of channels [m0, m1) of one image and group.
template <typename T>
void col2im_channels(const ConvGeom& g, const T* col, int64_t p0, int64_t np, T* y, int64_t m0, int64_t m1) {
  const size_t R = g.r, L = R - 1;
  const int64_t Wi = g.in[L], Wo = g.out[L], sl = g.s[L], dl = g.d[L], pl = g.pb[L];
  std::vector<int64_t> kk(R), o(R);
  for (int64_t m = m0; m < m1; ++m) {
    T* ym = y + m * g.out_size;
    for (int64_t kidx0 = 0; kidx0 < g.ksize; ++kidx0) {
      const T* src = col + (m * g.ksize + kidx0) * np;
      int64_t kidx = kidx0;
      for (size_t i = R; i-- > 0;) {
        kk[i] = kidx % g.k[i];
        kidx /= g.k[i];
      }
      const int64_t base = kk[L] * dl - pl;
      // Input columns whose output column iw * sl + base is inside [0, Wo).
      const int64_t lo = base >= 0 ? 0 : std::min(Wi, (-base + sl - 1) / sl);
      const int64_t hi = std::clamp<int64_t>(Wo - base <= 0 ? 0 : (Wo - base + sl - 1) / sl, lo, Wi);
      int64_t p = p0;
      while (p < p0 + np) {
        int64_t outer = p / Wi;
        const int64_t iw0 = p % Wi;
        const int64_t seg = std::min(Wi - iw0, p0 + np - p);
        bool valid = true;
        int64_t off = 0, stride = Wo;
        for (size_t i = L; i-- > 0;) {
          o[i] = outer % g.in[i];
          outer /= g.in[i];
          const int64_t oi = o[i] * g.s[i] + kk[i] * g.d[i] - g.pb[i];
          if (oi < 0 || oi >= g.out[i]) valid = false;
          off += oi * stride;
          stride *= g.out[i];
        }
        if (valid) {
          T* dst = ym + off + base;
          const T* s0 = src - iw0;  // indexed by iw
          const int64_t e = iw0 + seg;
          const int64_t a = std::clamp(lo, iw0, e), b = std::clamp(hi, a, e);
          if (sl == 1) {
            for (int64_t iw = a; iw < b; ++iw) dst[iw] += s0[iw];
          } else {
            for (int64_t iw = a; iw < b; ++iw) dst[iw * sl] += s0[iw];
          }
        }
        src += seg;
        p += seg;
      }
    }
  }
}

void convt_run(OpContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  if (x.dtype() != DType::kF32) bad_type(node, "input X", x.dtype(), "f32");
  if (w.dtype() != DType::kF32) bad_type(node, "input W", w.dtype(), "f32");
  const ConvGeom g = convt_geom(node, x.shape(), w.shape());
  const float* bias = nullptr;
  if (ctx.has_input(2)) {
    const Tensor& b = ctx.input(2);
    if (b.dtype() != DType::kF32) bad_type(node, "input B", b.dtype(), "f32");
    QFORGE_CHECK(b.rank() == 1 && b.dim(0) == g.M, Errc::kShapeMismatch, node.describe(),
          "has B of shape " + shape_str(b.shape()), "B of shape [" + std::to_string(g.M) + "]");
    bias = b.data<float>();
  }
  Shape ys = {g.N, g.M};
  ys.insert(ys.end(), g.out.begin(), g.out.end());
  Tensor& yt = ctx.output(0, DType::kF32, ys);
  if (yt.numel() == 0) return;
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  float* py = yt.data<float>();
  ThreadPool* pool = ctx.pool();
  parallel(pool, g.N * g.M, grain_for(g.out_size), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float v = bias != nullptr ? bias[t % g.M] : 0.0f;
      std::fill(py + t * g.out_size, py + (t + 1) * g.out_size, v);
    }
  });
  const int64_t rows = g.Mg * g.ksize;
  const ConvState* st = ctx.state() != nullptr ? &ctx.state_as<ConvState>() : nullptr;
  if (st != nullptr)
    QFORGE_CHECK(static_cast<int64_t>(st->packed.size()) == g.group && st->packed[0].rows() == rows &&
              st->packed[0].cols() == g.Cg,
          Errc::kInternal, node.describe(), "has packed weights that do not match W");
  const int64_t P = chunk_positions(rows, g.in_size);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t gi = 0; gi < g.group; ++gi) {
      const float* xg = px + (n * g.C + gi * g.Cg) * g.in_size;
      float* yg = py + (n * g.M + gi * g.Mg) * g.out_size;
      for (int64_t p0 = 0; p0 < g.in_size; p0 += P) {
        const int64_t np = std::min(P, g.in_size - p0);
        float* col = scratch(rows * np);
        if (st != nullptr)
          kernels::sgemm_packed_a(st->packed[static_cast<size_t>(gi)], np, xg + p0, g.in_size,
                                  false, 0.0f, col, np, {}, pool);
        else
          kernels::sgemm(true, false, rows, np, g.Cg, 1.0f, pw + gi * g.Cg * rows, rows, xg + p0,
                         g.in_size, 0.0f, col, np, {}, pool);
        parallel(pool, g.Mg, grain_for(g.ksize * np), [&](int64_t m0, int64_t m1) {
          col2im_channels(g, col, p0, np, yg, m0, m1);
        });
      }
    }
}

// The output shape of a ConvTranspose of x by w, as far as it is known.
std::optional<ir::SymShape> convt_shape(const ir::Node& node, const ir::ValueInfo& x, const ir::ValueInfo& w) {
  if (!x.shape && !w.shape) return std::nullopt;
  const size_t rank = x.shape ? x.shape->size() : w.shape->size();
  QFORGE_CHECK(rank >= 3 && (!x.shape || !w.shape || x.shape->size() == w.shape->size()),
        Errc::kShapeMismatch, node.describe(),
        "has X of shape " + (x.shape ? ir::sym_shape_str(*x.shape) : "?") + " and W of shape " +
            (w.shape ? ir::sym_shape_str(*w.shape) : "?"),
        "X of rank >= 3 (N, C, spatial...) and W of the same rank");
  const size_t r = rank - 2;
  const int64_t group = node.attr_int("group", 1);
  ir::SymShape out(rank);
  out[0] = x.shape ? (*x.shape)[0] : ir::Dim();
  if (w.shape && (*w.shape)[1].known()) out[1] = (*w.shape)[1].size * group;
  // Spatial sizes: computable when X's spatial sizes and W's kernel are known.
  bool known = x.shape && w.shape;
  for (size_t i = 0; known && i < r; ++i)
    known = (*x.shape)[2 + i].known() && (*w.shape)[2 + i].known();
  if (known && (*w.shape)[0].known() && (*w.shape)[1].known()) {
    // The geometry needs sizes: N and C don't change it (C is checked when known).
    Shape xs, ws;
    for (const ir::Dim& dd : *x.shape) xs.push_back(dd.size);
    for (const ir::Dim& dd : *w.shape) ws.push_back(dd.size);
    if (!(*x.shape)[0].known()) xs[0] = 1;
    if (!(*x.shape)[1].known()) xs[1] = ws[0];
    const ConvGeom g = convt_geom(node, xs, ws);
    for (size_t i = 0; i < r; ++i) out[2 + i] = g.out[i];
  } else {
    const std::vector<int64_t> os = node.attr_ints("output_shape", {});
    const std::vector<int64_t> s = nn_detail::window_ints(node, "strides", r, 1, 1);
    const std::string auto_pad = nn_detail::auto_pad_attr(node);
    for (size_t i = 0; i < r; ++i) {
      if (os.size() >= r) out[2 + i] = os[os.size() - r + i];
      else if ((auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") && x.shape &&
               (*x.shape)[2 + i].known())
        out[2 + i] = (*x.shape)[2 + i].size * s[i];
      else if ((auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") && x.shape && s[i] == 1)
        out[2 + i] = (*x.shape)[2 + i];
    }
  }
  return out;
}

void convt_infer(InferContext& ctx) {
  const ir::ValueInfo& x = ctx.input(0);
  const ir::ValueInfo& w = ctx.input(1);
  set_output(ctx, 0, x.dtype ? x.dtype : w.dtype, convt_shape(ctx.node(), x, w));
}

// ---- ai.qforge QLinearConvTranspose ----
//
// Inputs as QLinearConv's: x, x_scale, x_zero_point, w, w_scale,
// w_zero_point, y_scale, y_zero_point, B (optional int32, in units of
// x_scale * w_scale); attributes as ConvTranspose's. x and y are per-tensor
// u8 or i8; w is i8 or u8, per tensor or (group 1) per output channel (W's
// axis 1). With acc the integer ConvTranspose of (x - x_zp) by (w - w_zp)
// plus B[m]:
//   y = saturate(round_half_even(double(acc) * double(x_scale * w_scale[m] / y_scale)) + y_zp)
// (QLinearConv's rule). passes::fuse_qdq writes it for a DequantizeLinear ->
// ConvTranspose -> QuantizeLinear group.
//
// Per image and group, the int8 GEMM computes the columns (W_g^T, the
// weights transposed once in prepare, as its row operand; the image's
// channels as the packed column operand, x_zp as every column's zero point)
// in int32, col2im adds them into int32 planes that start at the bias, and
// each plane is requantized. The GEMM needs one weight zero point; per-channel
// zero points that differ take the scalar reference (the tests' oracle too).

struct QConvTParams {
  Q8 x, y;
  DType w_type = DType::kI8;
  std::vector<float> w_scale;  // 1 or M values
  std::vector<int32_t> w_zp;   // as many as w_scale
  std::vector<int32_t> bias;   // M values (0 if absent)
};

QConvTParams qconvt_params(const OpContext& ctx, const ConvGeom& g) {
  const ir::Node& node = ctx.node();
  QConvTParams q;
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(3);
  q.x = read_q8(ctx, 1, 2, x.dtype(), "x");
  q.y = read_q8(ctx, 6, 7, ctx.has_input(7) ? ctx.input(7).dtype() : x.dtype(), "y");
  if (w.dtype() != DType::kI8 && w.dtype() != DType::kU8) bad_type(node, "input w", w.dtype(), "i8 or u8");
  q.w_type = w.dtype();
  const Tensor& ws = ctx.input(4);
  QFORGE_CHECK(ws.dtype() == DType::kF32 && (ws.numel() == 1 || (ws.rank() == 1 && ws.numel() == g.M && g.group == 1)),
        Errc::kShapeMismatch, node.describe(), "has w_scale of shape " + shape_str(ws.shape()),
        "one f32 value, or one per output channel (" + std::to_string(g.M) + ") when group is 1");
  q.w_scale.assign(ws.data<float>(), ws.data<float>() + ws.numel());
  for (float v : q.w_scale)
    QFORGE_CHECK(std::isfinite(v) && v > 0, Errc::kInvalidArgument, node.describe(),
          "has a w_scale of " + std::to_string(v), "finite, positive scales");
  q.w_zp.assign(q.w_scale.size(), 0);
  if (ctx.has_input(5)) {
    const Tensor& wz = ctx.input(5);
    QFORGE_CHECK(wz.dtype() == w.dtype() && wz.numel() == ws.numel(), Errc::kShapeMismatch, node.describe(),
          "has w_zero_point of type " + std::string(dtype_name(wz.dtype())) + " and shape " + shape_str(wz.shape()),
          "w's type, as many values as w_scale");
    for (size_t i = 0; i < q.w_zp.size(); ++i)
      q.w_zp[i] = w.dtype() == DType::kU8 ? wz.data<uint8_t>()[i] : wz.data<int8_t>()[i];
  }
  q.bias.assign(static_cast<size_t>(g.M), 0);
  if (ctx.has_input(8)) {
    const Tensor& b = ctx.input(8);
    QFORGE_CHECK(b.dtype() == DType::kI32 && b.rank() == 1 && b.dim(0) == g.M, Errc::kShapeMismatch, node.describe(),
          "has B of type " + std::string(dtype_name(b.dtype())) + " and shape " + shape_str(b.shape()),
          "i32 of shape [" + std::to_string(g.M) + "]");
    q.bias.assign(b.data<int32_t>(), b.data<int32_t>() + g.M);
  }
  return q;
}

// Per group: W_g^T, (Mg * ksize) x Cg bytes, row r = (m, kernel index).
struct QConvTState {
  std::vector<std::vector<uint8_t>> wt;
};

std::vector<std::vector<uint8_t>> transpose_weights(const uint8_t* w, int64_t group, int64_t Cg, int64_t rows) {
  std::vector<std::vector<uint8_t>> wt(static_cast<size_t>(group));
  for (int64_t gi = 0; gi < group; ++gi) {
    wt[static_cast<size_t>(gi)].resize(static_cast<size_t>(rows * Cg));
    kernels::transpose_u8(w + gi * Cg * rows, Cg, rows, rows, wt[static_cast<size_t>(gi)].data(), Cg);
  }
  return wt;
}

std::shared_ptr<const void> qconvt_prepare(const PrepareContext& p) {
  const Tensor* w = p.constants.size() > 3 ? p.constants[3] : nullptr;
  if (w == nullptr || (w->dtype() != DType::kI8 && w->dtype() != DType::kU8) || w->rank() < 3 || w->numel() == 0)
    return nullptr;
  const int64_t group = p.node.attr_int("group", 1), C = w->dim(0);
  if (group < 1 || C % group != 0) return nullptr;
  auto st = std::make_shared<QConvTState>();
  st->wt = transpose_weights(static_cast<const uint8_t*>(w->raw()), group, C / group, w->numel() / C);
  return st;
}

// y codes from the int32 accumulator planes [M, out_size] of one image.
void qconvt_requantize(const ConvGeom& g, const QConvTParams& q, const int32_t* acc, uint8_t* y, ThreadPool* pool) {
  const int32_t qmin = q.y.type == DType::kU8 ? 0 : -128, qmax = q.y.type == DType::kU8 ? 255 : 127;
  parallel(pool, g.M, grain_for(g.out_size), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float mult = q.x.scale * q.w_scale[q.w_scale.size() == 1 ? 0 : static_cast<size_t>(m)] / q.y.scale;
      const int32_t* a = acc + m * g.out_size;
      uint8_t* o = y + m * g.out_size;
      for (int64_t i = 0; i < g.out_size; ++i)
        o[i] = static_cast<uint8_t>(kernels::requantize_double(a[i], mult, q.y.zp, qmin, qmax));
    }
  });
}

void qconvt_run_impl(OpContext& ctx, bool fast) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(3);
  const ConvGeom g = convt_geom(node, x.shape(), w.shape());
  const QConvTParams q = qconvt_params(ctx, g);
  Shape ys = {g.N, g.M};
  ys.insert(ys.end(), g.out.begin(), g.out.end());
  Tensor& yt = ctx.output(0, q.y.type, ys);
  if (yt.numel() == 0) return;
  const auto* px = static_cast<const uint8_t*>(x.raw());
  const auto* pw = static_cast<const uint8_t*>(w.raw());
  auto* py = static_cast<uint8_t*>(yt.raw());
  const bool x_signed = q.x.type == DType::kI8, w_signed = q.w_type == DType::kI8;
  auto code = [](const uint8_t* p, int64_t i, bool sgn) -> int32_t {
    return sgn ? static_cast<int8_t>(p[i]) : p[i];
  };
  const int64_t rows = g.Mg * g.ksize;
  bool one_zp = true;
  for (int32_t z : q.w_zp) one_zp = one_zp && z == q.w_zp[0];
  // Accumulators (unsigned: int32 sums wrap, as the GEMM's do).
  std::vector<uint32_t> acc(static_cast<size_t>(g.M * g.out_size));
  ThreadPool* pool = ctx.pool();
  std::vector<std::vector<uint8_t>> local;
  const std::vector<std::vector<uint8_t>>* wt = nullptr;
  if (fast && one_zp) {
    if (ctx.state() != nullptr) {
      wt = &ctx.state_as<QConvTState>().wt;
    } else {
      local = transpose_weights(pw, g.group, g.Cg, rows);
      wt = &local;
    }
  }
  const int64_t P = chunk_positions(rows, g.in_size);
  std::vector<uint32_t> col;
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t m = 0; m < g.M; ++m)
      std::fill(acc.begin() + m * g.out_size, acc.begin() + (m + 1) * g.out_size, static_cast<uint32_t>(q.bias[static_cast<size_t>(m)]));
    for (int64_t gi = 0; gi < g.group; ++gi) {
      const uint8_t* xg = px + (n * g.C + gi * g.Cg) * g.in_size;
      uint32_t* ag = acc.data() + gi * g.Mg * g.out_size;
      if (wt == nullptr) {
        // Reference: per input position, its column of products summed over
        // the group's channels (wrapping), then added where it lands.
        std::vector<uint32_t> c(static_cast<size_t>(rows));
        for (int64_t p = 0; p < g.in_size; ++p) {
          std::fill(c.begin(), c.end(), 0u);
          for (int64_t ci = 0; ci < g.Cg; ++ci) {
            const int64_t xv = code(xg, ci * g.in_size + p, x_signed) - q.x.zp;
            const uint8_t* wr = pw + (gi * g.Cg + ci) * rows;
            for (int64_t r = 0; r < rows; ++r) {
              const size_t m = static_cast<size_t>(gi * g.Mg + r / g.ksize);
              const int64_t wv = code(wr, r, w_signed) - q.w_zp[q.w_zp.size() == 1 ? 0 : m];
              c[static_cast<size_t>(r)] += static_cast<uint32_t>(xv * wv);
            }
          }
          col2im_channels<uint32_t>(g, c.data(), p, 1, ag, 0, g.Mg);
        }
        continue;
      }
      for (int64_t p0 = 0; p0 < g.in_size; p0 += P) {
        const int64_t np = std::min(P, g.in_size - p0);
        const kernels::QPackedB b = kernels::qpack_b(x_signed, false, g.Cg, np, xg + p0, g.in_size);
        const std::vector<int32_t> b_zp(static_cast<size_t>(np), q.x.zp);
        col.resize(static_cast<size_t>(rows * np));
        kernels::QGemmArgs a;
        a.M = rows;
        a.A = (*wt)[static_cast<size_t>(gi)].data();
        a.lda = g.Cg;
        a.a_signed = w_signed;
        a.a_zp = q.w_zp[0];
        a.B = &b;
        a.b_zp = b_zp.data();
        a.out = kernels::QOutput::kS32;
        a.C = col.data();
        a.ldc = np;
        kernels::qgemm(a, pool);
        parallel(pool, g.Mg, grain_for(g.ksize * np), [&](int64_t m0, int64_t m1) {
          col2im_channels<uint32_t>(g, col.data(), p0, np, ag, m0, m1);
        });
      }
    }
    qconvt_requantize(g, q, reinterpret_cast<const int32_t*>(acc.data()), py + n * g.M * g.out_size, pool);
  }
}

void qconvt_run(OpContext& ctx) { qconvt_run_impl(ctx, true); }

void qconvt_infer(InferContext& ctx) {
  set_output(ctx, 0, ctx.has_input(7) ? ctx.input(7).dtype : ctx.input(0).dtype,
             convt_shape(ctx.node(), ctx.input(0), ctx.input(3)));
}

}  // namespace

namespace nn_detail {

kernels::GemmEpilogue fused_activation(const ir::Node& node) {
  kernels::GemmEpilogue ep;
  if (node.domain.empty()) return ep;  // FusedConv / FusedGemm (com.microsoft), ConvMaxPool (ai.qforge)
  const std::string a = node.attr_string("activation", "");
  if (a == "Relu") {
    ep.act = kernels::Epilogue::kRelu;
  } else if (a == "Clip") {
    const std::vector<float> p = node.attr_floats("activation_params");
    QFORGE_CHECK(p.size() == 2, Errc::kInvalidArgument, node.describe(),
          "has activation Clip with " + std::to_string(p.size()) + " activation_params",
          "activation_params [min, max]");
    ep.act = kernels::Epilogue::kClip;
    ep.clip_min = p[0];
    ep.clip_max = p[1];
  } else {
    QFORGE_CHECK(a.empty(), Errc::kUnsupported, node.describe(), "has activation '" + a + "'",
          "Relu or Clip");
  }
  return ep;
}

std::string fused_activation_check(const ir::Node& node) {
  if (node.domain.empty()) return {};
  try {
    (void)fused_activation(node);
  } catch (const Error& e) {
    return e.problem() + " (qforge fuses " + (e.expected().empty() ? "Relu or Clip" : e.expected()) + ")";
  }
  return {};
}

}  // namespace nn_detail

void register_nn_conv_ops(OpRegistry& r) {
  r.add({.domain = "", .op_type = "Conv", .min_opset = 1, .max_opset = 21, .infer = conv_infer,
         .check = conv_check, .prepare = conv_prepare, .run = conv_run});
  // ONNX Runtime's contrib op: Conv then an activation, written by qforge's
  // fusion pass (passes::fuse_activations).
  r.add({.domain = "com.microsoft", .op_type = "FusedConv", .min_opset = 1, .max_opset = 1,
         .infer = conv_infer, .check = conv_check, .prepare = conv_prepare, .run = conv_run});
  // qforge's own: Conv (activation as FusedConv's) then MaxPool 2x2 / 2
  // (no padding, floor), the pooling done as the output is written; made by
  // passes::fuse_conv_maxpool, which runs in Session only.
  r.add({.domain = "ai.qforge", .op_type = "ConvMaxPool", .min_opset = 1, .max_opset = 1,
         .infer = conv_maxpool_infer, .check = conv_check, .prepare = conv_prepare,
         .run = conv_maxpool_run});
  r.add({.domain = "", .op_type = "ConvTranspose", .min_opset = 1, .max_opset = 21,
         .infer = convt_infer, .check = conv_check, .prepare = convt_prepare, .run = convt_run});
  r.add({.domain = "ai.qforge", .op_type = "QLinearConvTranspose", .min_opset = 1, .max_opset = 1,
         .infer = qconvt_infer, .prepare = qconvt_prepare, .run = qconvt_run});
}

namespace reference {
void qlinear_conv_transpose(OpContext& ctx) { qconvt_run_impl(ctx, false); }
}  // namespace reference

}  // namespace qforge::ops
