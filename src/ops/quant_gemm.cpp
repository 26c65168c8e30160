// The integer matrix ops on the int8 GEMM (see quant_gemm.h): batching,
// weights packed in prepare or per call, and convolution as im2col + GEMM.
//
// Convolution. The input is first copied channels-last ([N, in..., C]), so
// that the C / group values one kernel tap sees at one position are
// contiguous. Then per image, group and chunk of output positions, the
// im2col rows (one per output position: for each kernel tap, the group's
// channels at the tapped position, or the input's zero point where the tap
// is in the padding, which contributes (x_zp - x_zp) * w = 0) are the GEMM's
// A, and the group's weights, transposed once to K x (M / group) with K in
// the same (tap, channel) order, its packed B; so the per-output-channel
// zero points, scales and biases are per column. A 1x1 convolution with
// stride 1 and no padding needs no im2col: the channels-last input is A.
// The chunk's result (positions x channels) is transposed into NCHW. Chunks
// run in parallel. Depthwise 2-D convolutions (one input and one output
// channel per group) have too little depth for a GEMM and take a direct
// loop, also channels-last, with the channels across the vector lanes
// (depthwise_2d).
#include "ops/quant_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "ops/nn_common.h"
#include "qforge/thread_pool.h"

namespace qforge::ops::int8 {
namespace {

using kernels::QOutput;
using kernels::QPackedB;

size_t sz(int64_t v) {
  return static_cast<size_t>(v);
}
int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

bool is_8bit(DType t) {
  return t == DType::kU8 || t == DType::kI8;
}
bool is_signed8(const Tensor& t) {
  return t.dtype() == DType::kI8;
}
const uint8_t* bytes(const Tensor& t) {
  return static_cast<const uint8_t*>(t.raw());
}

size_t elem_size(QOutput out) {
  return out == QOutput::kQ8Double || out == QOutput::kQ8Float ? 1 : 4;
}

// A grow-only per-thread byte buffer.
uint8_t* scratch(std::vector<uint8_t>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// The kernels::QGemmArgs epilogue fields for output columns [j0, j0 + n).
void set_epilogue(kernels::QGemmArgs& a, const Epilogue& ep, int64_t j0) {
  a.out = ep.out;
  a.scale = ep.scale.empty() ? nullptr : ep.scale.data() + j0;
  a.fbias = ep.fbias.empty() ? nullptr : ep.fbias.data() + j0;
  a.bias = ep.bias.empty() ? nullptr : ep.bias.data() + j0;
  a.bias_ld = 0;
  a.y_zp = ep.y_zp;
  a.y_signed = ep.y_signed;
}

template <typename F>
void parallel(ThreadPool* pool, int64_t n, F&& fn) {
  if (pool == nullptr || pool->threads() == 1 || n <= 1) {
    fn(0, n);
    return;
  }
  pool->parallel_for(n, 1, fn);
}

// ---- convolution helpers ----

// kw4: a one-channel 2-D input and a kernel 3 taps wide (a grayscale first
// layer's 3 x 3), whose im2col rows hold each kernel row as 4 bytes: its 3
// taps then x_zp's byte, times a weight 0. That adds (x_zp - x_zp) * (0 -
// w_zp) = 0 to each sum, so the sums are the 3-tap layout's, and each kernel
// row is one 4-byte word of the input, aligned with the GEMM's groups of 4
// (im2col_1ch). K is then 4 * kernel height.
struct ConvDims {
  int64_t Cg = 0, Mg = 0, K = 0, ksize = 1, in_size = 1, P = 1;
  bool kw4 = false;
};

// Sets d.kw4 for a 2-D convolution of C input channels and a KH x KW kernel
// with dilation dw along W, and then K (the run's dims_of and prepare_conv
// alike).
void set_kw4(ConvDims& d, int64_t C, int64_t KH, int64_t KW, int64_t dw) {
  d.kw4 = C == 1 && KW == 3 && dw == 1;
  if (d.kw4) d.K = 4 * KH;
}

ConvDims dims_of(const Conv& p) {
  ConvDims d;
  d.Cg = p.C / p.group;
  d.Mg = p.M / p.group;
  d.ksize = shape_numel(p.kernel);
  d.in_size = shape_numel(p.in);
  d.P = shape_numel(p.out);
  d.K = d.Cg * d.ksize;
  if (p.in.size() == 2) set_kw4(d, p.C, p.kernel[0], p.kernel[1], p.dilation[1]);
  return d;
}

// The input channels-last: xcl[(n * in_size + s) * C + c] = x[(n * C + c) * in_size + s].
std::vector<uint8_t> channels_last(const Conv& p, const ConvDims& d, ThreadPool* pool) {
  std::vector<uint8_t> xcl(sz(p.N * p.C * d.in_size));
  const uint8_t* x = bytes(*p.x);
  constexpr int64_t kBlock = 256;  // positions per task
  const int64_t blocks = ceil_div(d.in_size, kBlock);
  parallel(pool, p.N * blocks, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t n = t / blocks, s0 = (t % blocks) * kBlock,
                    s1 = std::min(d.in_size, s0 + kBlock);
      const int64_t image = n * p.C * d.in_size;
      kernels::transpose_u8(x + image + s0, p.C, s1 - s0, d.in_size, xcl.data() + image + s0 * p.C,
                            p.C);
    }
  });
  return xcl;
}

// im2col rows [p0, p0 + np) of one image and group, from the channels-last
// input: row i, column tap * Cg + c = channel c of the group at the position
// of output p0 + i under kernel tap `tap`, or the zero point's byte where
// that position is in the padding. xg: the image's first position, offset to
// the group's first channel. Rows are ld >= K bytes apart, the bytes past K
// zero (QGemmArgs::a_rows_padded where ld is K rounded up to 4).
// 2-D im2col without the N-D odometer, for several groups (one group of
// several channels takes im2col_2d_plane, a one-channel image mostly
// im2col_1ch), with single bytes stored directly where a group has one
// channel, where a memcpy per tap costs more than the copy.
void im2col_2d(const Conv& p, const ConvDims& d, const uint8_t* xg, int64_t p0, int64_t np, uint8_t zp,
               uint8_t* col, int64_t ld) {
  const int64_t H = p.in[0], W = p.in[1], Wo = p.out[1], KH = p.kernel[0], KW = p.kernel[1];
  const int64_t sh = p.stride[0], sw = p.stride[1], dh = p.dilation[0], dw = p.dilation[1];
  const int64_t ph = p.pad_begin[0], pw = p.pad_begin[1], C = p.C, cg = d.Cg;
  int64_t oh = p0 / Wo, ow = p0 % Wo;
  for (int64_t i = 0; i < np; ++i) {
    uint8_t* row = col + i * ld;
    for (int64_t k = d.K; k < ld; ++k) row[k] = 0;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = oh * sh - ph + kh * dh;
      uint8_t* r = row + kh * KW * cg;
      if (ih < 0 || ih >= H) {
        std::memset(r, zp, sz(KW * cg));
        continue;
      }
      const uint8_t* xr = xg + ih * W * C;
      const int64_t iw0 = ow * sw - pw;
      if (C == cg && dw == 1 && iw0 >= 0 && iw0 + KW <= W) {
        // One group, every tap of the row inside: KW positions in a row
        // (one channel: a few bytes, copied here rather than by a call).
        if (cg == 1)
          for (int64_t kw = 0; kw < KW; ++kw) r[kw] = xr[iw0 + kw];
        else
          std::memcpy(r, xr + iw0 * C, sz(KW * cg));
        continue;
      }
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t iw = ow * sw - pw + kw * dw;
        const bool inside = iw >= 0 && iw < W;
        if (cg == 1) r[kw] = inside ? xr[iw * C] : zp;
        else if (inside) std::memcpy(r + kw * cg, xr + iw * C, sz(cg));
        else std::memset(r + kw * cg, zp, sz(cg));
      }
    }
    if (++ow == Wo) ow = 0, ++oh;
  }
}

// im2col_1ch's d.kw4 rows for `run` output positions along an output row:
// row i, word kh = the 4 bytes at win + i * sw + kh * step with the last
// replaced by zp. KH taps high, fixed at compile time where KHC > 0.
template <int KHC>
NN_INLINE void kw4_rows(const uint8_t* win, int64_t step, int64_t sw, int64_t run, uint8_t zp,
                        uint8_t* row, int64_t ld, int64_t KH = KHC) {
  if constexpr (KHC > 0) KH = KHC;
  for (int64_t i = 0; i < run; ++i, win += sw, row += ld)
    for (int64_t kh = 0; kh < KH; ++kh) {
      uint8_t word[4];
      std::memcpy(word, win + kh * step, 4);
      word[3] = zp;
      std::memcpy(row + kh * 4, word, 4);
    }
}

// Whether im2col_1ch serves this convolution.
bool im2col_1ch_fits(const Conv& p) {
  return p.C == 1 && p.in.size() == 2 && p.kernel[1] <= 4 && p.dilation[1] == 1;
}

// R rows of one image's channels-last input x (positions of C bytes), from
// input row `first` on, each padded to Wp >= pad_begin[1] + W positions:
// pad_begin[1] positions of the zero point's byte, the row, then the zero
// point's byte; rows outside the image all the zero point's byte.
const uint8_t* padded_rows(const Conv& p, const uint8_t* x, int64_t C, int64_t first, int64_t R, int64_t Wp,
                           uint8_t zp, std::vector<uint8_t>& buf) {
  const int64_t H = p.in[0], W = p.in[1], pw = p.pad_begin[1], row_bytes = Wp * C;
  uint8_t* plane = scratch(buf, sz(R * row_bytes));
  for (int64_t r = 0; r < R; ++r) {
    uint8_t* pr = plane + r * row_bytes;
    const int64_t ih = first + r;
    if (ih < 0 || ih >= H) {
      std::memset(pr, zp, sz(row_bytes));
      continue;
    }
    std::memset(pr, zp, sz(pw * C));
    std::memcpy(pr + pw * C, x + ih * W * C, sz(W * C));
    std::memset(pr + (pw + W) * C, zp, sz(row_bytes - (pw + W) * C));
  }
  return plane;
}

// im2col_2d for a one-channel input (a first layer's grayscale image), with
// kernel rows of at most 4 taps and no dilation along W. The input rows the
// chunk's windows read are first copied into a plane padded with the zero
// point's byte (every tap then lands inside it), and each kernel row of a
// window is one 4-byte copy: its bytes past KW are overwritten by the next
// kernel row's, then by the row's zero padding, or (the last row's few
// bytes past K + padding) land in the next im2col row, which is written
// after it, or in the buffer's 4 spare bytes. With d.kw4 the copy's 4th byte
// is the zero point's instead (see ConvDims).
void im2col_1ch(const Conv& p, const ConvDims& d, const uint8_t* x, int64_t p0, int64_t np,
                uint8_t zp, uint8_t* col, int64_t ld, std::vector<uint8_t>& plane_buf) {
  const int64_t W = p.in[1], OW = p.out[1], KH = p.kernel[0], KW = p.kernel[1];
  const int64_t sh = p.stride[0], sw = p.stride[1], dh = p.dilation[0];
  const int64_t ph = p.pad_begin[0], pw = p.pad_begin[1];
  const int64_t oh_first = p0 / OW, oh_last = (p0 + np - 1) / OW;
  // Plane row r is padded row oh_first * sh + r (input row that less ph).
  const int64_t R = (oh_last - oh_first) * sh + (KH - 1) * dh + 1;
  const int64_t Wp = std::max(pw + W, (OW - 1) * sw + 4);
  const uint8_t* plane = padded_rows(p, x, 1, oh_first * sh - ph, R, Wp, zp, plane_buf);
  const int64_t K = d.K;
  int64_t oh = oh_first, ow = p0 % OW;
  if (d.kw4) {
    // Each kernel row a word: its 3 taps and the zero point's byte (ld == K),
    // a run of output positions along an output row at a time.
    const int64_t step = dh * Wp;
    for (int64_t i = 0; i < np;) {
      const int64_t run = std::min(np - i, OW - ow);
      const uint8_t* win = plane + (oh - oh_first) * sh * Wp + ow * sw;
      if (KH == 3)
        kw4_rows<3>(win, step, sw, run, zp, col + i * ld, ld);
      else
        kw4_rows<0>(win, step, sw, run, zp, col + i * ld, ld, KH);
      i += run;
      ow = 0, ++oh;
    }
    return;
  }
  for (int64_t i = 0; i < np; ++i) {
    uint8_t* row = col + i * ld;
    const uint8_t* win = plane + (oh - oh_first) * sh * Wp + ow * sw;
    for (int64_t kh = 0; kh < KH; ++kh) std::memcpy(row + kh * KW, win + kh * dh * Wp, 4);
    for (int64_t k = K; k < ld; ++k) row[k] = 0;
    if (++ow == OW) ow = 0, ++oh;
  }
}

// Copies n bytes in 32-byte pieces, the last one overlapping the one before
// (where n >= 32; shorter copies halve the piece), without a call: a kernel
// row of a few channels is tens to hundreds of bytes, and memcpy's call and
// size dispatch cost more than the copy.
NN_INLINE void copy_bytes(uint8_t* dst, const uint8_t* src, int64_t n) {
  auto pieces = [&](auto piece) {
    constexpr int64_t P = decltype(piece)::value;
    int64_t j = 0;
    for (; j + P < n; j += P) std::memcpy(dst + j, src + j, P);
    std::memcpy(dst + n - P, src + n - P, P);
  };
  if (n >= 32) pieces(std::integral_constant<int64_t, 32>());
  else if (n >= 16) pieces(std::integral_constant<int64_t, 16>());
  else if (n >= 8) pieces(std::integral_constant<int64_t, 8>());
  else if (n >= 4) pieces(std::integral_constant<int64_t, 4>());
  else
    for (int64_t j = 0; j < n; ++j) dst[j] = src[j];
}

// The padded channels-last plane of one group that output positions [p0,
// p0 + np) read: every tap inside it, and with `word_rows` (a kw4
// convolution's kernel rows read as 4-byte words) the byte past each
// window's last tap too. Position (oh, ow)'s window starts at plane + (oh -
// oh_first) * sh * row_bytes + ow * sw * C, its kernel rows dh * row_bytes
// apart.
struct Plane {
  const uint8_t* data;
  int64_t oh_first, row_bytes;
};
Plane padded_plane(const Conv& p, const uint8_t* x, int64_t p0, int64_t np, uint8_t zp,
                   std::vector<uint8_t>& plane_buf, bool word_rows = false) {
  const int64_t W = p.in[1], OW = p.out[1], KH = p.kernel[0], KW = word_rows ? 4 : p.kernel[1];
  const int64_t sh = p.stride[0], sw = p.stride[1], dh = p.dilation[0], dw = p.dilation[1];
  const int64_t oh_first = p0 / OW, oh_last = (p0 + np - 1) / OW;
  // Plane row r is padded row oh_first * sh + r, position j padded column j.
  const int64_t R = (oh_last - oh_first) * sh + (KH - 1) * dh + 1;
  const int64_t Wp = std::max(p.pad_begin[1] + W, (OW - 1) * sw + (KW - 1) * dw + 1);
  return {padded_rows(p, x, p.C, oh_first * sh - p.pad_begin[0], R, Wp, zp, plane_buf), oh_first,
          Wp * p.C};
}

// im2col_2d for one group (cg == C) of several channels: the input rows the
// chunk's windows read are first copied, channels-last, into a plane padded
// with the zero point's byte, so that every tap lands inside it and each
// kernel row of a window (KW taps of C channels, contiguous without
// dilation) is one copy_bytes, with no bounds test per tap. cnn_bn (second
// conv: 32 channels, 3 x 3, kernel rows of 96 bytes), pairs of binaries in
// turns: the conv's im2col at batch 1 on one thread 3.4-3.8 -> 2.0 us; the
// model at batch 32, 657 -> 618 us (one thread), 356 -> 336 (two).
void im2col_2d_plane(const Conv& p, const ConvDims& d, const uint8_t* x, int64_t p0, int64_t np,
                     uint8_t zp, uint8_t* col, int64_t ld, std::vector<uint8_t>& plane_buf) {
  const int64_t OW = p.out[1], KH = p.kernel[0], KW = p.kernel[1];
  const int64_t sh = p.stride[0], sw = p.stride[1], dh = p.dilation[0], dw = p.dilation[1];
  const int64_t C = p.C;
  const Plane pl = padded_plane(p, x, p0, np, zp, plane_buf);
  const uint8_t* const plane = pl.data;
  const int64_t oh_first = pl.oh_first, row_bytes = pl.row_bytes;
  const int64_t K = d.K, span = KW * C;
  int64_t oh = oh_first, ow = p0 % OW;
  for (int64_t i = 0; i < np; ++i) {
    uint8_t* row = col + i * ld;
    const uint8_t* win = plane + (oh - oh_first) * sh * row_bytes + ow * sw * C;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const uint8_t* src = win + kh * dh * row_bytes;
      if (dw == 1)
        copy_bytes(row + kh * span, src, span);
      else
        for (int64_t kw = 0; kw < KW; ++kw) copy_bytes(row + kh * span + kw * C, src + kw * dw * C, C);
    }
    for (int64_t k = K; k < ld; ++k) row[k] = 0;
    if (++ow == OW) ow = 0, ++oh;
  }
}

void im2col(const Conv& p, const ConvDims& d, const uint8_t* xg, int64_t p0, int64_t np, uint8_t zp,
            uint8_t* col, int64_t ld, std::vector<uint8_t>& plane_buf) {
  if (p.in.size() == 2 && p.group == 1 && p.C > 1)
    return im2col_2d_plane(p, d, xg, p0, np, zp, col, ld, plane_buf);
  if (p.in.size() == 2) return im2col_2d(p, d, xg, p0, np, zp, col, ld);
  const size_t S = p.in.size();
  // Offsets of each kernel tap along each spatial axis (dilated).
  std::vector<int64_t> tap(sz(d.ksize) * S);
  for (int64_t kk = 0; kk < d.ksize; ++kk) {
    int64_t rem = kk;
    for (size_t s = S; s-- > 0;) {
      tap[sz(kk) * S + s] = (rem % p.kernel[s]) * p.dilation[s];
      rem /= p.kernel[s];
    }
  }
  std::vector<int64_t> o(S), base(S);
  int64_t rem = p0;
  for (size_t s = S; s-- > 0;) {
    o[s] = rem % p.out[s];
    rem /= p.out[s];
  }
  const size_t cg = sz(d.Cg);
  for (int64_t i = 0; i < np; ++i) {
    for (size_t s = 0; s < S; ++s) base[s] = o[s] * p.stride[s] - p.pad_begin[s];
    uint8_t* row = col + i * ld;
    for (int64_t k = d.K; k < ld; ++k) row[k] = 0;
    for (int64_t kk = 0; kk < d.ksize; ++kk) {
      int64_t off = 0;
      bool inside = true;
      for (size_t s = 0; s < S; ++s) {
        const int64_t pos = base[s] + tap[sz(kk) * S + s];
        if (pos < 0 || pos >= p.in[s]) {
          inside = false;
          break;
        }
        off = off * p.in[s] + pos;
      }
      if (inside)
        std::memcpy(row + kk * d.Cg, xg + off * p.C, cg);
      else
        std::memset(row + kk * d.Cg, zp, cg);
    }
    for (size_t s = S; s-- > 0;) {  // next output position
      if (++o[s] < p.out[s]) break;
      o[s] = 0;
    }
  }
}

// One group's weights, [Mg, Cg, taps] at w, packed as the GEMM's B: K x Mg
// with K in im2col's (tap, channel) order.
// kw4: each kernel row's 3 taps then a 0.
QPackedB pack_conv_group(const ConvDims& d, bool w_signed, const uint8_t* w) {
  if (d.ksize == 1) return kernels::qpack_b(w_signed, true, d.K, d.Mg, d.K > 0 ? w : nullptr, d.K);
  std::vector<uint8_t> t(sz(d.Mg * d.K));
  if (d.kw4) {
    for (int64_t m = 0; m < d.Mg; ++m)
      for (int64_t kk = 0; kk < d.ksize; ++kk) t[sz(m * d.K + kk / 3 * 4 + kk % 3)] = w[m * d.ksize + kk];
    return kernels::qpack_b(w_signed, true, d.K, d.Mg, t.data(), d.K);
  }
  for (int64_t m = 0; m < d.Mg; ++m)
    for (int64_t c = 0; c < d.Cg; ++c)
      for (int64_t kk = 0; kk < d.ksize; ++kk)
        t[sz(m * d.K + kk * d.Cg + c)] = w[(m * d.Cg + c) * d.ksize + kk];
  return kernels::qpack_b(w_signed, true, d.K, d.Mg, t.data(), d.K);
}

// dst[m * P + i] = src[i * Mg + m] for a chunk of np positions, 4-byte elements.
void transpose_out4(const uint8_t* src, int64_t np, int64_t Mg, uint8_t* dst, int64_t P) {
  for (int64_t m = 0; m < Mg; ++m) {
    uint8_t* o = dst + sz(m * P) * 4;
    for (int64_t i = 0; i < np; ++i) std::memcpy(o + sz(i) * 4, src + sz(i * Mg + m) * 4, 4);
  }
}

// One output element of the depthwise path from its wrapped int32 sum, bias
// included (kQ8Double is done in the vector loop; this serves the rest).
void store_value(const Epilogue& ep, int64_t c, uint32_t acc, void* y, int64_t at) {
  const auto v = static_cast<int32_t>(acc);
  const int32_t qmin = ep.y_signed ? -128 : 0, qmax = ep.y_signed ? 127 : 255;
  switch (ep.out) {
    case QOutput::kS32:
      static_cast<int32_t*>(y)[at] = v;
      break;
    case QOutput::kF32: {
      float f = static_cast<float>(v) * ep.scale[sz(c)];
      if (!ep.fbias.empty()) f += ep.fbias[sz(c)];
      static_cast<float*>(y)[at] = f;
      break;
    }
    case QOutput::kQ8Double:
      static_cast<uint8_t*>(y)[at] =
          static_cast<uint8_t>(kernels::requantize_double(v, ep.scale[sz(c)], ep.y_zp, qmin, qmax));
      break;
    case QOutput::kQ8Float:
      static_cast<uint8_t*>(y)[at] =
          static_cast<uint8_t>(kernels::requantize_float(v, ep.scale[sz(c)], ep.y_zp, qmin, qmax));
      break;
  }
}

// Depthwise 2-D (C / group == M / group == 1), channels-last. Channels go
// across the vector lanes, in blocks of kDwLanes (C rounded up to Cp, the
// padding channels having weight 0 and their outputs dropped).
//
// Per task (one image, one band of output rows):
//  - band: the padded input rows the band's taps read, [rows][Wp][Cp] bytes,
//    the codes as they are (u8 or s8) and the zero point's byte in the
//    padding. The image's rows are transposed to channels-last (transpose_u8)
//    and copied in at column pw.
//  - sums: for each output position and block of channels,
//      acc = base[c] + sum_taps x[tap][c] * wz[tap][c]   (uint32, wrapping)
//    where wz = w - w_zp[c] and base[c] = bias[c] - x_zp * sum_taps wz[tap][c]:
//    sum (x - x_zp) wz = sum x wz - x_zp sum wz, and a tap in the padding
//    reads x_zp, adding (x_zp - x_zp) wz = 0 as the reference's skipped tap.
//    Everything is modulo 2^32 (the products x * wz fit int32), so acc is the
//    reference's wrapped sum plus bias, hence its exact one whenever that
//    fits int32 (what quant.cpp checks for the requantizing ops).
//  - epilogue: kQ8Double (QLinearConv) as kernels::requantize_double, lane by
//    lane (double product, clamp, nearbyint: round half to even), into a
//    channels-last byte tile that transpose_u8 writes to the NCHW output;
//    the other outputs (ConvInteger's int32) element by element.
// The loops over a block's kDwLanes channels are fixed-length, so
// run_vectorized compiles each to one AVX-512 register (two AVX2 ones).
constexpr int64_t kDwLanes = 16;
constexpr int64_t kDwBandBytes = int64_t{96} << 10;  // band buffer per task (L2)

// One output row of depthwise sums, channels-last: for ow < OW and every
// channel c < cp, s[ow * cp + c] = base[c] + sum_t x[ow * step + off[t] + c]
// * wz[t * cp + c], wrapping; x: the band row of the windows' first taps.
// (The accumulator block stays in one register through the tap loop.)
template <typename XT>
NN_INLINE void dw_sums_row(const XT* x, int64_t OW, int64_t step, const int64_t* off,
                           int64_t T, const int32_t* wz, const uint32_t* base, int64_t cp,
                           uint32_t* s) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const XT* win = x + ow * step;
    for (int64_t c0 = 0; c0 < cp; c0 += kDwLanes) {
      uint32_t acc[kDwLanes];
      for (int64_t j = 0; j < kDwLanes; ++j) acc[j] = base[c0 + j];
      for (int64_t t = 0; t < T; ++t) {
        const XT* xt = win + off[t] + c0;
        const int32_t* wt = wz + t * cp + c0;
        for (int64_t j = 0; j < kDwLanes; ++j)
          acc[j] += static_cast<uint32_t>(int32_t{xt[j]} * wt[j]);
      }
      std::memcpy(s + ow * cp + c0, acc, sizeof acc);
    }
  }
}

// dw_sums_row for a kernel of T taps known at compile time (3 x 3): per
// block of channels, its T tap offsets and weight vectors are loaded once
// for the whole row, the taps unrolled, and the sums stored straight from
// the accumulator (the same wrapping sums, in the same order).
template <typename XT, int T>
NN_INLINE void dw_sums_row_fixed(const XT* x, int64_t OW, int64_t step, const int64_t* off,
                                 const int32_t* wz, const uint32_t* base, int64_t cp, uint32_t* s) {
  for (int64_t c0 = 0; c0 < cp; c0 += kDwLanes) {
    int64_t o[T];
    int32_t wt[T][kDwLanes];
    for (int t = 0; t < T; ++t) {
      o[t] = off[t] + c0;
      for (int64_t j = 0; j < kDwLanes; ++j) wt[t][j] = wz[t * cp + c0 + j];
    }
    const uint32_t* b = base + c0;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const XT* win = x + ow * step;
      uint32_t acc[kDwLanes];
      for (int64_t j = 0; j < kDwLanes; ++j) acc[j] = b[j];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t)
        for (int64_t j = 0; j < kDwLanes; ++j)
          acc[j] += static_cast<uint32_t>(int32_t{win[o[t] + j]} * wt[t][j]);
      uint32_t* out = s + ow * cp + c0;
      for (int64_t j = 0; j < kDwLanes; ++j) out[j] = acc[j];
    }
  }
}

// dw_tables of C channels of T taps each.
template <typename WT>
DwTables dw_tables_of(const WT* w, int64_t C, int64_t T, int32_t x_zp, const ConvChannels& ch) {
  const Epilogue& ep = ch.ep;
  DwTables d;
  d.T = T;
  d.Cp = ceil_div(C, kDwLanes) * kDwLanes;
  d.wz.assign(sz(T * d.Cp), 0);
  d.base.assign(sz(d.Cp), 0);
  d.scale.assign(sz(d.Cp), 0.0);
  for (int64_t c = 0; c < C; ++c) {
    uint32_t wsum = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int32_t v = int32_t{w[c * T + t]} - ch.w_zp[sz(c)];
      d.wz[sz(t * d.Cp + c)] = v;
      wsum += static_cast<uint32_t>(v);
    }
    d.base[sz(c)] = (ep.bias.empty() ? 0u : static_cast<uint32_t>(ep.bias[sz(c)])) -
                    static_cast<uint32_t>(x_zp) * wsum;
    if (!ep.scale.empty()) d.scale[sz(c)] = static_cast<double>(ep.scale[sz(c)]);
  }
  return d;
}

template <typename XT, typename WT>
void depthwise_2d(const Conv& p, void* y, ThreadPool* pool) {
  const int64_t C = p.C, H = p.in[0], W = p.in[1], OH = p.out[0], OW = p.out[1];
  const int64_t KH = p.kernel[0], KW = p.kernel[1], T = KH * KW;
  const int64_t sh = p.stride[0], sw = p.stride[1], dh = p.dilation[0], dw = p.dilation[1];
  const int64_t ph = p.pad_begin[0], pw = p.pad_begin[1];
  const int64_t Cp = ceil_div(C, kDwLanes) * kDwLanes;
  // The padded width covers every tap of every output column.
  const int64_t Wp = std::max(pw + W, (OW - 1) * sw + (KW - 1) * dw + 1);
  const int64_t P = OH * OW;
  const Epilogue& ep = p.ch->ep;

  // Weights less their zero points, [T][Cp]; base[c] as above (made once
  // where the caller has them).
  DwTables made;
  if (p.ch->dw.T != T || p.ch->dw.Cp != Cp)
    made = dw_tables_of(static_cast<const WT*>(p.w->raw()), C, T, p.x_zp, *p.ch);
  const DwTables& tab = made.T == T ? made : p.ch->dw;
  const std::vector<int32_t>& wz = tab.wz;
  const std::vector<uint32_t>& base = tab.base;
  const std::vector<double>& scale = tab.scale;
  // Tap offsets in the band, in bytes from the window's first position.
  std::vector<int64_t> off(sz(T));
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t kw = 0; kw < KW; ++kw) off[sz(kh * KW + kw)] = (kh * dh * Wp + kw * dw) * Cp;

  // Bands of output rows: a bounded band buffer each, enough of them to keep
  // every thread busy.
  const int64_t row_bytes = Wp * Cp;
  const int64_t span = (KH - 1) * dh + 1;  // band rows of one output row
  int64_t rows = std::clamp<int64_t>((kDwBandBytes / row_bytes - span) / sh + 1, 1, OH);
  const int threads = pool != nullptr ? pool->threads() : 1;
  if (p.N * ceil_div(OH, rows) < threads)
    rows = std::max<int64_t>(1, ceil_div(OH, ceil_div(threads, p.N)));
  const int64_t bands = ceil_div(OH, rows);
  const auto zp_byte = static_cast<uint8_t>(p.x_zp);
  const int32_t qmin = ep.y_signed ? -128 : 0, qmax = ep.y_signed ? 127 : 255;

  parallel(pool, p.N * bands, [&](int64_t b, int64_t e) {
    thread_local std::vector<uint8_t> band_buf, rows_buf, sum_buf, out_buf;
    for (int64_t task = b; task < e; ++task) {
      const int64_t n = task / bands, oh0 = (task % bands) * rows;
      const int64_t oh1 = std::min(OH, oh0 + rows), np = (oh1 - oh0) * OW;
      // Band row r is padded row oh0 * sh + r, input row oh0 * sh + r - ph.
      const int64_t R = (oh1 - 1 - oh0) * sh + span;
      const int64_t ih0 = std::max<int64_t>(0, oh0 * sh - ph);
      const int64_t ih1 = std::min(H, oh0 * sh - ph + R);
      uint8_t* band = scratch(band_buf, sz(R * row_bytes));
      // The zero point's byte where no input row or column lands.
      const int64_t r0 = std::min(R, ih0 + ph - oh0 * sh);
      const int64_t r1 = std::clamp(ih1 + ph - oh0 * sh, r0, R);
      std::memset(band, zp_byte, sz(r0 * row_bytes));
      std::memset(band + r1 * row_bytes, zp_byte, sz((R - r1) * row_bytes));
      for (int64_t r = r0; r < r1; ++r) {
        std::memset(band + r * row_bytes, zp_byte, sz(pw * Cp));
        std::memset(band + (r * Wp + pw + W) * Cp, zp_byte, sz((Wp - pw - W) * Cp));
      }
      if (ih1 > ih0 && p.cl_in) {
        // The input rows as they are, each position's C channels (and the
        // padding channels' zero point, which weigh 0) into its band row.
        const uint8_t* xr = bytes(*p.x) + (n * H + ih0) * W * C;
        for (int64_t ih = ih0; ih < ih1; ++ih, xr += W * C) {
          uint8_t* br = band + ((ih + ph - oh0 * sh) * Wp + pw) * Cp;
          if (Cp == C) {
            std::memcpy(br, xr, sz(W * C));
            continue;
          }
          for (int64_t iw = 0; iw < W; ++iw) {
            std::memcpy(br + iw * Cp, xr + iw * C, sz(C));
            std::memset(br + iw * Cp + C, zp_byte, sz(Cp - C));
          }
        }
      } else if (ih1 > ih0) {
        // The input rows channels-last, then each row into its band row.
        uint8_t* cl = scratch(rows_buf, sz((ih1 - ih0) * W * Cp));
        if (Cp != C) std::memset(cl, zp_byte, sz((ih1 - ih0) * W * Cp));
        kernels::transpose_u8(bytes(*p.x) + (n * C * H + ih0) * W, C, (ih1 - ih0) * W, H * W, cl,
                              Cp);
        for (int64_t ih = ih0; ih < ih1; ++ih)  // (Wp >= pw + W)
          std::memcpy(band + ((ih + ph - oh0 * sh) * Wp + pw) * Cp, cl + (ih - ih0) * W * Cp,
                      sz(W * Cp));
      }
      // The sums, channels-last: sums[i * Cp + c], i < np.
      auto* sums = reinterpret_cast<uint32_t*>(scratch(sum_buf, sz(np * Cp) * 4));
      nn_detail::run_vectorized([&]() NN_LAMBDA {
        const XT* const xb = reinterpret_cast<const XT*>(band);
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          const XT* row = xb + (oh - oh0) * sh * Wp * Cp;
          uint32_t* s = sums + (oh - oh0) * OW * Cp;
          if (T == 9)
            dw_sums_row_fixed<XT, 9>(row, OW, sw * Cp, off.data(), wz.data(), base.data(), Cp, s);
          else
            dw_sums_row(row, OW, sw * Cp, off.data(), T, wz.data(), base.data(), Cp, s);
        }
      });
      // To NCHW: channel c's band is np contiguous outputs from oh0 * OW.
      const int64_t first = n * C * P + oh0 * OW;
      if (ep.out != QOutput::kQ8Double) {
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < np; ++i)
            store_value(ep, c, sums[i * Cp + c], y, first + c * P + i);
        continue;
      }
      // Requantized as kernels::requantize_double (the float multiplier
      // widened to double beforehand, which is exact): the double product,
      // clamped to [qmin - y_zp, qmax - y_zp] in its operand order (NaN gives
      // qmin - y_zp), rounded half to even by nearbyint (the default
      // rounding mode), plus y_zp. The locals keep the byte stores from
      // aliasing what the loop reads. Then transposed to NCHW.
      uint8_t* const q = scratch(out_buf, sz(np * Cp));
      nn_detail::run_vectorized([&]() NN_LAMBDA {
        const uint32_t* const sv = sums;
        const double* const sp = scale.data();
        uint8_t* const qv = q;
        const int64_t cp = Cp, count = np;
        const int32_t yzp = ep.y_zp;
        const double lo = static_cast<double>(qmin - yzp), hi = static_cast<double>(qmax - yzp);
        for (int64_t i = 0; i < count; ++i)
          for (int64_t c = 0; c < cp; ++c) {
            const double v = static_cast<double>(static_cast<int32_t>(sv[i * cp + c])) * sp[c];
            double r = v > lo ? v : lo;
            r = r < hi ? r : hi;
            qv[i * cp + c] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(r)) + yzp);
          }
      });
      if (!p.cl_out) {
        kernels::transpose_u8(q, np, C, Cp, static_cast<uint8_t*>(y) + first, P);
        continue;
      }
      uint8_t* yo = static_cast<uint8_t*>(y) + (n * P + oh0 * OW) * C;  // channels-last rows
      if (Cp == C) {
        std::memcpy(yo, q, sz(np * C));
        continue;
      }
      for (int64_t i = 0; i < np; ++i) std::memcpy(yo + i * C, q + i * Cp, sz(C));
    }
  });
}

// ---- small matmuls with B given per call ----

// B per call and small matrices (attention's Q x K^T and weights x V: a few
// dozen rows and columns each, one product per image and head): packing B
// and running the tiled GEMM per matrix costs more than the products. Here
// each B less its zero points is widened to int16 once, and each row of A
// accumulates (a - a_zp) * row k of B into N sums, a loop over the columns
// the compiler vectorises. The sums are the GEMM's, modulo 2^32 alike
// (uint32 arithmetic); each element then goes through the epilogue's scalar
// rule (store_one, or requantize_double for the requantizing case), which
// every GEMM kernel matches, so the result is the GEMM path's bit for bit.
constexpr int64_t kDirectMaxN = 64, kDirectMaxK = 256;
constexpr int64_t kDirectMinParallelMacs = int64_t{1} << 20;

bool direct_matmul_fits(const Matmul& p) {
  return p.N <= kDirectMaxN && p.K <= kDirectMaxK && p.M <= 4 * kDirectMaxN;
}

void matmul_direct(const Matmul& p, void* y, ThreadPool* pool) {
  const bool a_signed = is_signed8(*p.a), b_signed = is_signed8(*p.b);
  const int64_t M = p.M, K = p.K, N = p.N, count = static_cast<int64_t>(p.a_mat.size());
  const int64_t MN = M * N, NP = (N + 15) / 16 * 16;
  const size_t es = elem_size(p.ep.out);
  const int32_t qmin = p.ep.y_signed ? -128 : 0, qmax = p.ep.y_signed ? 127 : 255;
  const bool requant = p.ep.out == QOutput::kQ8Double;
  // The requantizing epilogue's per-column values repeated for every row,
  // so that it is one contiguous loop over the M x N result.
  std::vector<float> scale(requant ? sz(MN) : 0);
  std::vector<uint32_t> bias(requant ? sz(MN) : 0, 0u);
  for (int64_t j = 0; requant && j < MN; ++j) {
    scale[sz(j)] = p.ep.scale[sz(j % N)];
    if (!p.ep.bias.empty()) bias[sz(j)] = static_cast<uint32_t>(p.ep.bias[sz(j % N)]);
  }
  // Few small products (attention at batch 1) run on the calling thread:
  // waking the pool costs more than they do.
  ThreadPool* const mpool = count * M * K * N >= kDirectMinParallelMacs ? pool : nullptr;
  parallel(mpool, count, [&](int64_t b, int64_t e) {
    std::vector<int16_t> bw(sz(K * NP), 0);  // K x NP: B less its zero points, zero padded
    std::vector<int32_t> av(sz(M * K));
    std::vector<uint32_t> acc(sz(MN));
    int64_t packed = -1;  // the B matrix bw holds
    for (int64_t i = b; i < e; ++i) {
      const int64_t bm = p.b_mat[sz(i)];
      if (bm != packed) {
        const uint8_t* B = bytes(*p.b) + bm * K * N;
        for (int64_t k = 0; k < K; ++k)
          for (int64_t n = 0; n < N; ++n) {
            const uint8_t v = B[k * N + n];
            const int32_t c = b_signed ? int32_t{static_cast<int8_t>(v)} : int32_t{v};
            bw[sz(k * NP + n)] = static_cast<int16_t>(c - p.b_zp[sz(n)]);
          }
        packed = bm;
      }
      const uint8_t* A = bytes(*p.a) + p.a_mat[sz(i)] * M * K;
      for (int64_t j = 0; j < M * K; ++j)
        av[sz(j)] = (a_signed ? int32_t{static_cast<int8_t>(A[j])} : int32_t{A[j]}) - p.a_zp;
      uint32_t* s = acc.data();
      const int16_t* w = bw.data();
      const int32_t* a = av.data();
      // Each row's sums 16 columns at a time in a fixed-size array, which
      // the compiler keeps in a vector register across k (bw's rows are
      // padded with zeros to NP columns). The lambda takes copies: stores
      // through a captured reference would make it reload the captures.
      nn_detail::run_vectorized([s, w, a, M, K, N, NP]() NN_LAMBDA {
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n0 = 0; n0 < NP; n0 += 16) {
            uint32_t t[16] = {};
            for (int64_t k = 0; k < K; ++k) {
              const int32_t x = a[m * K + k];
              const int16_t* wk = w + k * NP + n0;
              for (int j = 0; j < 16; ++j) t[j] += static_cast<uint32_t>(x * int32_t{wk[j]});
            }
            const int64_t cols = std::min<int64_t>(16, N - n0);
            for (int64_t j = 0; j < cols; ++j) s[m * N + n0 + j] = t[j];
          }
      });
      const int64_t at = i * MN;
      if (!requant) {
        for (int64_t j = 0; j < MN; ++j) {
          const int64_t c = j % N;
          const uint32_t bv = p.ep.bias.empty() ? 0u : static_cast<uint32_t>(p.ep.bias[sz(c)]);
          store_value(p.ep, c, s[j] + bv, y, at + j);
        }
        continue;
      }
      uint8_t* o = static_cast<uint8_t*>(y) + sz(at) * es;
      const float* sc = scale.data();
      const uint32_t* bi = bias.data();
      const int32_t zp = p.ep.y_zp;
      nn_detail::run_vectorized([o, s, bi, sc, zp, qmin, qmax, MN]() NN_LAMBDA {
        // Locals: a byte store may alias the closure, whose members the
        // loop would then reload every element (and not vectorise).
        uint8_t* __restrict out = o;
        const uint32_t* __restrict sums = s;
        const uint32_t* __restrict add = bi;
        const float* __restrict mult = sc;
        const int32_t z = zp, lo = qmin, hi = qmax;
        const int64_t len = MN;
        for (int64_t j = 0; j < len; ++j)
          out[j] = static_cast<uint8_t>(
              kernels::requantize_double(static_cast<int32_t>(sums[j] + add[j]), mult[j], z, lo, hi));
      });
    }
  });
}

// MaxPool 2x2 / 2 of a channels-last tile of `pairs` pairs of output rows
// (OW positions of Mg codes each) into pairs x OW / 2 positions, ldo bytes
// apart: each channel's max over the window, the channels across the vector
// lanes.
template <typename T>
void pool_2x2_cl(const uint8_t* tile, int64_t pairs, int64_t OW, int64_t Mg, uint8_t* out,
                 int64_t ldo) {
  nn_detail::run_vectorized([=]() NN_LAMBDA {
    const T* const src = reinterpret_cast<const T*>(tile);
    T* __restrict dst = reinterpret_cast<T*>(out);
    const int64_t pw_count = OW / 2, mg = Mg, ow = OW, ld = ldo;
    for (int64_t r = 0; r < pairs; ++r)
      for (int64_t j = 0; j < pw_count; ++j) {
        const T* __restrict a = src + (2 * r * ow + 2 * j) * mg;
        const T* __restrict b = a + ow * mg;
        T* __restrict q = dst + (r * pw_count + j) * ld;
        for (int64_t m = 0; m < mg; ++m)
          q[m] = std::max(std::max(a[m], a[mg + m]), std::max(b[m], b[mg + m]));
      }
  });
}

// MaxPool 2x2 / 2 of a channels-last tile of int32 sums (as pool_2x2_cl),
// each maximum then through the kQ8Double epilogue
// (kernels::requantize_double with its channel's multiplier), into codes
// of T. Where every multiplier is positive, requantization never decreases
// as the sum grows, so it commutes with max: these are the codes of
// requantizing every sum and pooling the codes, from a quarter of the
// requantizations (conv's pool_sums).
//
// The requantization is the AVX-512 kernel's (x86/qgemm_avx512vnni.cpp,
// requantize_q8_double): in float32, where that provably gives the float64
// codes (|v| <= 2^24, and the clamped product not a half-integer), the
// vector redone in float64 where a lane isn't. Both round half to even by
// adding and subtracting 1.5 * 2^23 (2^52 in float64), exact for the few
// hundred the clamp leaves.
template <typename T>
void pool_2x2_requant_cl(const int32_t* sums, int64_t pairs, int64_t OW, int64_t Mg, const float* scale,
                         int32_t zp, uint8_t* out, int64_t ldo) {
  constexpr int32_t qmin = std::is_signed_v<T> ? -128 : 0, qmax = std::is_signed_v<T> ? 127 : 255;
  nn_detail::run_vectorized([=]() NN_LAMBDA {
    using VI = nn_detail::Vec16<int32_t>;
    using VU = nn_detail::Vec16<uint32_t>;
    using VF = nn_detail::Vec16<float>;
    using VT = nn_detail::Vec16<T>;
    // float64 8 lanes at a time (wider generic vectors of double are
    // compiled lane by lane).
    using VI8 [[gnu::vector_size(32)]] = int32_t;
    using VF8 [[gnu::vector_size(32)]] = float;
    using VD8 [[gnu::vector_size(64)]] = double;
    using VT8 [[gnu::vector_size(8)]] = T;
    const VF lo = VF{} + static_cast<float>(qmin - zp), hi = VF{} + static_cast<float>(qmax - zp);
    const VF magic = VF{} + 12582912.0f;  // 1.5 * 2^23
    const VI vzp = VI{} + zp;
    const VD8 dlo = VD8{} + (qmin - zp), dhi = VD8{} + (qmax - zp);
    const VD8 dmagic = VD8{} + 6755399441055744.0;  // 1.5 * 2^52
    const VI8 vzp8 = VI8{} + zp;
    const int64_t pw_count = OW / 2, vec = Mg / 16 * 16;
    // v = the 2x2 maximum of channels [m, m + lanes) at pooled position j
    // of row pair r (v a vector, or one int32_t for the scalar tail).
    auto pooled_max = [&](int64_t r, int64_t j, int64_t m, auto& v) NN_LAMBDA {
      const int32_t* a = sums + (2 * r * OW + 2 * j) * Mg + m;
      const int32_t* b = a + OW * Mg;
      auto a0 = v, a1 = v, b0 = v, b1 = v;
      std::memcpy(&a0, a, sizeof a0);
      std::memcpy(&a1, a + Mg, sizeof a1);
      std::memcpy(&b0, b, sizeof b0);
      std::memcpy(&b1, b + Mg, sizeof b1);
      a0 = a0 > a1 ? a0 : a1;
      b0 = b0 > b1 ? b0 : b1;
      v = a0 > b0 ? a0 : b0;
    };
    for (int64_t r = 0; r < pairs; ++r) {
      T* const row = reinterpret_cast<T*>(out + r * pw_count * ldo);
      VU flag = VU{};  // lanes float32 can't answer for, over the row
      for (int64_t j = 0; j < pw_count; ++j)
        for (int64_t m = 0; m < vec; m += 16) {
          VI v;
          pooled_max(r, j, m, v);
          VF sc;
          std::memcpy(&sc, scale + m, sizeof sc);
          VF f = __builtin_convertvector(v, VF) * sc;
          f = f > lo ? f : lo;
          f = f < hi ? f : hi;
          const VF rf = (f + magic) - magic;
          const VF frac = f - rf;
          // |v| >= 2^24, or |frac| == 0.5 (it is at most that), in shifts
          // and adds: compares used as values are compiled lane by lane
          // here, where the lambda is first compiled for the base ISA.
          const VU fbits = __builtin_bit_cast(VU, frac) & 0x7fffffffu;
          flag |= ((__builtin_bit_cast(VU, v) + 0x01000000u) >> 25) | ((fbits + 0x01000000u) >> 30);
          const VT c = __builtin_convertvector(__builtin_convertvector(rf, VI) + vzp, VT);
          std::memcpy(row + j * ldo + m, &c, sizeof c);
        }
      uint32_t lanes[16];
      std::memcpy(lanes, &flag, sizeof lanes);
      bool redo = false;
      for (uint32_t l : lanes) redo |= l != 0;
      if (__builtin_expect(redo, 0)) {  // the row again, in float64
        for (int64_t j = 0; j < pw_count; ++j)
          for (int64_t m = 0; m < vec; m += 8) {
            VF8 sc;
            std::memcpy(&sc, scale + m, sizeof sc);
            VI8 v;
            pooled_max(r, j, m, v);
            VD8 x = __builtin_convertvector(v, VD8) * __builtin_convertvector(sc, VD8);
            x = x > dlo ? x : dlo;
            x = x < dhi ? x : dhi;
            const VT8 c = __builtin_convertvector(__builtin_convertvector((x + dmagic) - dmagic, VI8) + vzp8, VT8);
            std::memcpy(row + j * ldo + m, &c, sizeof c);
          }
      }
      for (int64_t j = 0; j < pw_count; ++j)
        for (int64_t m = vec; m < Mg; ++m) {
          int32_t v = 0;
          pooled_max(r, j, m, v);
          row[j * ldo + m] = static_cast<T>(kernels::requantize_double(v, scale[m], zp, qmin, qmax));
        }
    }
  });
}

// Below these many multiply-adds a convolution runs on one thread (the int8
// GEMM's own threshold; the depthwise loop spends more per multiply-add).
constexpr int64_t kMinParallelMacs = int64_t{1} << 20;
constexpr int64_t kMinParallelDw = int64_t{1} << 18;

// Columns of im2col built at once per task: bounds the scratch memory and
// keeps the chunk in L2.
constexpr int64_t kColBytes = int64_t{256} << 10;
// A chunk's int32 sums where they are pooled before requantization
// (conv's pool_sums): within L1.
constexpr int64_t kSumBytes = int64_t{32} << 10;

}  // namespace

// ---- prepare ----

std::shared_ptr<const void> prepare_matmul(const PrepareContext& ctx, int b_index) {
  const Tensor* b = sz(b_index) < ctx.constants.size() ? ctx.constants[sz(b_index)] : nullptr;
  if (b == nullptr || !is_8bit(b->dtype()) || b->rank() < 1) return nullptr;
  const int64_t K = b->rank() == 1 ? b->dim(0) : b->dim(-2);
  const int64_t N = b->rank() == 1 ? 1 : b->dim(-1);
  if (K == 0 || N == 0) return nullptr;
  auto st = std::make_shared<PackedWeights>();
  st->source = SourceTensor::of(b);
  for (int64_t i = 0; i < b->numel() / (K * N); ++i)
    st->mats.push_back(kernels::qpack_b(is_signed8(*b), false, K, N, bytes(*b) + i * K * N, N));
  return st;
}

std::shared_ptr<const void> prepare_gemm(const PrepareContext& ctx, int b_index, bool trans_b) {
  const Tensor* b = sz(b_index) < ctx.constants.size() ? ctx.constants[sz(b_index)] : nullptr;
  if (b == nullptr || !is_8bit(b->dtype()) || b->rank() != 2 || b->numel() == 0) return nullptr;
  const int64_t K = trans_b ? b->dim(1) : b->dim(0), N = trans_b ? b->dim(0) : b->dim(1);
  auto st = std::make_shared<PackedWeights>();
  st->source = SourceTensor::of(b);
  st->trans = trans_b;
  st->mats.push_back(kernels::qpack_b(is_signed8(*b), trans_b, K, N, b->raw(), b->dim(1)));
  return st;
}

DwTables dw_tables(const Tensor& w, int32_t x_zp, const ConvChannels& ch) {
  const int64_t T = w.numel() / std::max<int64_t>(w.dim(0), 1);
  const int64_t C = w.dim(0);
  if (is_signed8(w)) return dw_tables_of(static_cast<const int8_t*>(w.raw()), C, T, x_zp, ch);
  return dw_tables_of(static_cast<const uint8_t*>(w.raw()), C, T, x_zp, ch);
}

std::shared_ptr<const void> prepare_conv(const PrepareContext& ctx, int w_index) {
  const Tensor* w = sz(w_index) < ctx.constants.size() ? ctx.constants[sz(w_index)] : nullptr;
  if (w == nullptr || !is_8bit(w->dtype()) || w->rank() < 3 || w->numel() == 0) return nullptr;
  const int64_t group = ctx.node.attr_int("group", 1);
  const int64_t M = w->dim(0);
  if (group < 1 || M % group != 0) return nullptr;  // the run reports it
  const int64_t Mg = M / group, K = w->numel() / M;
  if (w->rank() == 4 && w->dim(1) == 1 && Mg == 1) return nullptr;  // depthwise: direct loop
  if (w->dim(1) == 0) return nullptr;
  ConvDims d;
  d.Mg = Mg;
  d.Cg = w->dim(1);
  d.K = K;
  d.ksize = K / d.Cg;
  const std::vector<int64_t> dil = ctx.node.attr_ints("dilations", {});
  if (w->rank() == 4) set_kw4(d, group * d.Cg, w->dim(2), w->dim(3), dil.size() == 2 ? dil[1] : 1);
  auto st = std::make_shared<PackedWeights>();
  st->source = SourceTensor::of(w);
  st->group = group;
  st->kw4 = d.kw4;
  for (int64_t g = 0; g < group; ++g)
    st->mats.push_back(pack_conv_group(d, is_signed8(*w), bytes(*w) + g * Mg * K));
  return st;
}

// ---- matmul ----

void matmul(const Matmul& p, const void* state, void* y, ThreadPool* pool) {
  const auto count = static_cast<int64_t>(p.a_mat.size());
  if (count == 0 || p.M == 0 || p.N == 0) return;
  const auto* st = static_cast<const PackedWeights*>(state);
  if (st != nullptr && !st->matches(*p.b)) st = nullptr;
  const int64_t nb = *std::max_element(p.b_mat.begin(), p.b_mat.end()) + 1;
  if (st == nullptr && p.K > 0 && direct_matmul_fits(p)) return matmul_direct(p, y, pool);
  std::vector<QPackedB> local;
  std::vector<const QPackedB*> mats(sz(nb), nullptr);
  if (st != nullptr && static_cast<int64_t>(st->mats.size()) >= nb) {
    for (int64_t i = 0; i < nb; ++i) mats[sz(i)] = &st->mats[sz(i)];
  } else {
    local.reserve(sz(nb));
    for (int64_t i = 0; i < nb; ++i) {
      local.push_back(kernels::qpack_b(is_signed8(*p.b), false, p.K, p.N,
                                       p.K * p.N > 0 ? bytes(*p.b) + i * p.K * p.N : nullptr, p.N));
      mats[sz(i)] = &local.back();
    }
  }
  kernels::QGemmArgs a;
  a.lda = p.K;
  a.a_signed = is_signed8(*p.a);
  a.a_zp = p.a_zp;
  a.b_zp = p.b_zp.data();
  set_epilogue(a, p.ep, 0);
  a.ldc = p.N;
  a.cold_c = true;  // y: the op's output
  const size_t es = elem_size(p.ep.out);
  const uint8_t* A = p.K > 0 ? bytes(*p.a) : nullptr;
  auto* Y = static_cast<uint8_t*>(y);
  bool folded = nb == 1;
  for (int64_t i = 0; folded && i < count; ++i) folded = p.a_mat[sz(i)] == i;
  if (folded) {
    // One B: A's batch folds into its rows, one GEMM.
    a.M = count * p.M;
    a.A = A;
    a.B = mats[0];
    a.C = Y;
    kernels::qgemm(a, pool);
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    a.M = p.M;
    a.A = A != nullptr ? A + p.a_mat[sz(i)] * p.M * p.K : nullptr;
    a.B = mats[sz(p.b_mat[sz(i)])];
    a.C = Y + sz(i * p.M * p.N) * es;
    kernels::qgemm(a, pool);
  }
}

// ---- gemm (QGemm) ----

void gemm(const Gemm& p, const void* state, void* y, ThreadPool* pool) {
  if (p.M == 0 || p.N == 0) return;
  const auto* st = static_cast<const PackedWeights*>(state);
  if (st != nullptr && !st->matches(*p.b, 1, p.trans_b)) st = nullptr;
  QPackedB local;
  const QPackedB* B = st != nullptr ? &st->mats[0] : nullptr;
  if (B == nullptr) {
    local = kernels::qpack_b(is_signed8(*p.b), p.trans_b, p.K, p.N,
                             p.b->numel() > 0 ? p.b->raw() : nullptr,
                             p.b->rank() == 2 ? p.b->dim(1) : 0);
    B = &local;
  }
  std::vector<uint8_t> at;  // A transposed to M x K
  const uint8_t* A = p.K > 0 ? bytes(*p.a) : nullptr;
  if (p.trans_a && A != nullptr) {
    at.resize(sz(p.M * p.K));
    kernels::transpose_u8(A, p.K, p.M, p.M, at.data(), p.K);
    A = at.data();
  }
  kernels::QGemmArgs a;
  a.M = p.M;
  a.A = A;
  a.lda = p.K;
  a.a_signed = is_signed8(*p.a);
  a.a_zp = p.a_zp;
  a.B = B;
  a.b_zp = p.b_zp.data();
  set_epilogue(a, p.ep, 0);
  a.bias = p.bias;
  a.bias_ld = p.bias_ld;
  a.C = y;
  a.ldc = p.N;
  a.cold_c = true;  // y: the op's output
  kernels::qgemm(a, pool);
}

// ---- convolution ----

void conv(const Conv& p, const void* state, void* y, ThreadPool* pool) {
  const ConvDims d = dims_of(p);
  const Epilogue& ep = p.ch->ep;
  const std::vector<int32_t>& w_zp = p.ch->w_zp;
  if (p.N == 0 || p.M == 0 || d.P == 0) return;
  // A small convolution (a batch-1 image's layer: tens of microseconds or
  // less) runs on the calling thread: waking the pool costs more than it saves.
  if (p.N * d.P * p.M * std::max<int64_t>(d.K, 1) < (is_depthwise(p) ? kMinParallelDw : kMinParallelMacs))
    pool = nullptr;
  const bool xs = is_signed8(*p.x), ws = is_signed8(*p.w);
  if (is_depthwise(p)) {
    if (xs && ws)
      depthwise_2d<int8_t, int8_t>(p, y, pool);
    else if (xs)
      depthwise_2d<int8_t, uint8_t>(p, y, pool);
    else if (ws)
      depthwise_2d<uint8_t, int8_t>(p, y, pool);
    else
      depthwise_2d<uint8_t, uint8_t>(p, y, pool);
    return;
  }
  // The groups' weights, K x (M / group) each.
  const auto* st = static_cast<const PackedWeights*>(state);
  if (st != nullptr && (!st->matches(*p.w, p.group) || st->kw4 != d.kw4)) st = nullptr;
  std::vector<QPackedB> local;
  std::vector<const QPackedB*> wp(sz(p.group));
  const int64_t w_group = d.Mg * d.Cg * d.ksize;  // weights per group
  for (int64_t g = 0; g < p.group; ++g) {
    if (st != nullptr)
      wp[sz(g)] = &st->mats[sz(g)];
    else
      local.push_back(pack_conv_group(d, ws, w_group > 0 ? bytes(*p.w) + g * w_group : nullptr));
  }
  for (int64_t g = 0; st == nullptr && g < p.group; ++g) wp[sz(g)] = &local[sz(g)];

  // 1x1, stride 1, no padding: the channels-last input is the GEMM's A.
  bool direct = d.ksize == 1;
  for (size_t s = 0; s < p.in.size(); ++s)
    direct = direct && p.stride[s] == 1 && p.pad_begin[s] == 0 && p.out[s] == p.in[s];
  // The channels-last input: x itself when it is already (cl_in) or has
  // one channel ([N, 1, H, W] is [N, H, W, 1] byte for byte).
  const bool cl_in = p.cl_in || p.C == 1;
  const std::vector<uint8_t> xcl_copy = cl_in ? std::vector<uint8_t>() : channels_last(p, d, pool);
  const uint8_t* const xcl = cl_in ? bytes(*p.x) : xcl_copy.data();

  // pool2x2: only the outputs of whole pairs of rows (Pc of them; a last odd
  // row is dropped, floor), each chunk a number of row pairs, pooled in its
  // channels-last tile before the transpose, into planes of PP outputs.
  const int64_t OW = p.out.back(), pair = 2 * OW, PW = OW / 2;
  const int64_t Pc = p.pool2x2 ? p.out[0] / 2 * pair : d.P;
  const int64_t PP = p.pool2x2 ? p.out[0] / 2 * PW : d.P;
  const int64_t unit = p.pool2x2 ? pair : 1;  // chunks are multiples of it
  if (Pc == 0 || PP == 0) return;
  // pool2x2 with positive multipliers: the GEMM writes the int32 sums (bias
  // included), pooled before they are requantized (pool_2x2_requant_cl).
  const bool pool_sums =
      p.pool2x2 && ep.out == kernels::QOutput::kQ8Double &&
      std::all_of(ep.scale.begin(), ep.scale.end(),
                  [](float s) { return s > 0.0f && s <= std::numeric_limits<float>::max(); });
  // Chunks of output positions: a bounded im2col each (and where pool_sums
  // writes int32 sums, sums that stay in L1 until they are pooled; the
  // kernel's pooled epilogue, for u8 x, keeps them in registers), enough of
  // them to keep every thread busy.
  const int threads = pool != nullptr ? pool->threads() : 1;
  int64_t chunk = std::clamp<int64_t>(kColBytes / std::max<int64_t>(d.K, 1) / 16 * 16, 16, Pc);
  if (pool_sums && (xs || !kernels::qgemm_has_pool2x2()))
    chunk = std::min(chunk, std::max(unit, kSumBytes / (4 * d.Mg) / unit * unit));
  const int64_t per_image = p.N * p.group;
  if (per_image * ceil_div(Pc, chunk) < threads)
    chunk = std::min(Pc, std::max<int64_t>(16, ceil_div(Pc, ceil_div(threads, per_image))));
  chunk = std::min(Pc, ceil_div(chunk, unit) * unit);
  const int64_t chunks = ceil_div(Pc, chunk);
  const int64_t tasks = per_image * chunks;
  const size_t es = elem_size(ep.out);
  const auto zp = static_cast<uint8_t>(p.x_zp);  // the code's byte, s8 or u8
  // The pooled epilogue can read A's rows from the padded plane itself (no
  // im2col): one group, kernel rows (KW taps of C channels) whole 4-byte
  // groups, or kw4's 3-tap rows read as words (their 4th byte, the next
  // input byte here, meets a weight 0, and without zero points in the
  // weights no row sum counts it), and weights without zero points.
  const bool implicit = pool_sums && !xs && ws && !direct && p.in.size() == 2 && p.group == 1 &&
                        p.dilation[1] == 1 && (d.kw4 || p.kernel[1] * p.C % 4 == 0) &&
                        kernels::qgemm_has_pool2x2() &&
                        std::all_of(w_zp.begin(), w_zp.end(), [](int32_t z) { return z == 0; });

  auto task = [&](int64_t t, ThreadPool* inner) {
    thread_local std::vector<uint8_t> col_buf, out_buf, pool_buf, plane_buf;
    const int64_t n = t / (p.group * chunks), g = (t / chunks) % p.group;
    const int64_t p0 = (t % chunks) * chunk, np = std::min(chunk, Pc - p0);
    const uint8_t* xg = xcl + n * d.in_size * p.C + g * d.Cg;
    // cl_out without pooling: the GEMM writes the group's columns of y.
    const bool in_place = p.cl_out && !p.pool2x2;
    const bool alone = inner == nullptr || inner->threads() == 1;
    kernels::QGemmArgs a;
    a.M = np;
    a.a_signed = xs;
    a.a_zp = p.x_zp;
    a.B = wp[sz(g)];
    a.b_zp = w_zp.data() + g * d.Mg;
    set_epilogue(a, ep, g * d.Mg);
    const int64_t pairs = np / pair;
    // Pooled into y's rows (cl_out) or a tile then transposed.
    uint8_t* const pooled =
        !p.pool2x2 ? nullptr
        : p.cl_out ? static_cast<uint8_t*>(y) + (n * PP + p0 / pair * PW) * p.M + g * d.Mg
                   : scratch(pool_buf, sz(pairs * PW * d.Mg));
    const int64_t ldo = p.cl_out ? p.M : d.Mg;
    auto transpose_pooled = [&]() {
      const int64_t first = (n * p.M + g * d.Mg) * PP + p0 / pair * PW;
      kernels::transpose_u8(pooled, pairs * PW, d.Mg, d.Mg, static_cast<uint8_t*>(y) + first, PP);
    };
    if (implicit && alone) {
      const Plane pl = padded_plane(p, xg, p0, np, zp, plane_buf, d.kw4);
      kernels::QImplicitRows rows;
      rows.col_step = p.stride[1] * p.C;
      rows.row_step = p.stride[0] * pl.row_bytes;
      rows.segs = p.kernel[0];
      rows.seg_stride = p.dilation[0] * pl.row_bytes;
      a.A = pl.data;  // p0 starts a pair of output rows: window (0, 0) at the plane's start
      a.lda = d.K;
      a.C = pooled;
      a.ldc = ldo;
      if (kernels::qgemm_pool2x2(a, OW, pairs, &rows)) {
        if (!p.cl_out) transpose_pooled();
        return;
      }
    }
    const uint8_t* A = xg + p0 * p.C;
    int64_t lda = p.C;
    if (!direct) {
      // u8 codes: rows padded with zeros to a multiple of 4 bytes, which the
      // GEMM reads in place (a_rows_padded) instead of packing them again.
      const int64_t ld = xs ? d.K : ceil_div(d.K, 4) * 4;
      uint8_t* col = scratch(col_buf, sz(np * ld) + 4);
      if (im2col_1ch_fits(p))  // every d.kw4 convolution among them
        im2col_1ch(p, d, xg, p0, np, zp, col, ld, plane_buf);
      else
        im2col(p, d, xg, p0, np, zp, col, ld, plane_buf);
      A = col;
      lda = ld;
    }
    a.A = A;
    a.lda = lda;
    a.a_rows_padded = !xs && !direct;
    if (pool_sums && alone) {
      // The kernel's pooled epilogue, where it has one: each window's four
      // rows of sums stay in registers.
      a.C = pooled;
      a.ldc = ldo;
      if (kernels::qgemm_pool2x2(a, OW, pairs)) {
        if (!p.cl_out) transpose_pooled();
        return;
      }
    }
    if (pool_sums) a.out = kernels::QOutput::kS32;
    uint8_t* tmp = in_place ? static_cast<uint8_t*>(y) + sz((n * d.P + p0) * p.M + g * d.Mg) * es
                            : scratch(out_buf, sz(np * d.Mg) * (pool_sums ? 4 : es));
    a.C = tmp;
    a.ldc = in_place ? p.M : d.Mg;
    kernels::qgemm(a, inner);
    if (in_place) return;
    if (p.pool2x2) {
      const auto* sums = reinterpret_cast<const int32_t*>(tmp);
      const float* scale = ep.scale.data() + g * d.Mg;
      if (pool_sums && ep.y_signed)
        pool_2x2_requant_cl<int8_t>(sums, pairs, OW, d.Mg, scale, ep.y_zp, pooled, ldo);
      else if (pool_sums)
        pool_2x2_requant_cl<uint8_t>(sums, pairs, OW, d.Mg, scale, ep.y_zp, pooled, ldo);
      else if (ep.y_signed)
        pool_2x2_cl<int8_t>(tmp, pairs, OW, d.Mg, pooled, ldo);
      else
        pool_2x2_cl<uint8_t>(tmp, pairs, OW, d.Mg, pooled, ldo);
      if (!p.cl_out) transpose_pooled();
      return;
    }
    const int64_t first = (n * p.M + g * d.Mg) * d.P + p0;  // element offset in y
    uint8_t* dst = static_cast<uint8_t*>(y) + sz(first) * es;
    if (es == 1)
      kernels::transpose_u8(tmp, np, d.Mg, d.Mg, dst, d.P);
    else
      transpose_out4(tmp, np, d.Mg, dst, d.P);
  };
  if (tasks >= threads && threads > 1) {
    pool->parallel_for(tasks, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) task(t, nullptr);
    });
  } else {
    for (int64_t t = 0; t < tasks; ++t) task(t, pool);
  }
}

}  // namespace qforge::ops::int8
