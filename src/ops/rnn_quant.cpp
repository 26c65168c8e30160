// Dynamically quantized recurrent layers: the input and recurrent
// projections run on the int8 GEMM, with weights quantized ahead of time
// and activations quantized at run time; the gate equations are the float
// ops' own (rnn.h).
//
//   com.microsoft DynamicQuantizeLSTM (ONNX Runtime's contrib op, version 1)
//     X, W, R, B, sequence_lens, initial_h, initial_c, P,
//     W_scale, W_zero_point, R_scale, R_zero_point  ->  Y, Y_h, Y_c
//   ai.qforge DynamicQuantizeGRU (qforge's own; ONNX Runtime has no such op)
//     X, W, R, B, sequence_lens, initial_h,
//     W_scale, W_zero_point, R_scale, R_zero_point  ->  Y, Y_h
//
// Attributes are those of ONNX's LSTM / GRU without `layout` (always 0).
// W is [dirs, input, G*H] and R [dirs, H, G*H] (u8 or s8): the transposes
// of ONNX's W and R, so that a direction's W is the K x N matrix of
// X[t] x W directly. Scales (f32) and zero points (W's / R's type) are
// [dirs] (one per direction) or [dirs, G*H] (one per output column).
// ONNX Runtime takes per-column zero points only when they are all 0 (s8)
// or all equal (u8); qforge's GEMM takes any.
//
// What runs, as ONNX Runtime's kernel (dynamic_quantize_lstm.cc and the
// quantized ComputeGemm of rnn_helpers.cc) computes it:
//  * X is quantized once, u8 per tensor exactly as DynamicQuantizeLinear
//    would (range widened to 0, scale = range / 255, zero point rounded half
//    to even), over the times any sequence reaches (t < max(sequence_lens));
//    the projection of every step and direction is then one int8 GEMM,
//    dequantized in its epilogue: float(acc) * (x_scale * W_scale[n]) + bias[n].
//  * At each step, H_{t-1} is quantized the same way, per tensor: the
//    [batch, H] state the step reads, as Y holds it (zero rows for entries
//    that ended before the previous step; initial_h, or zeros, at the first
//    step). H_{t-1} x R then runs on the int8 GEMM against R packed once,
//    dequantized to float and added to the gates.
//  * A GRU without linear_before_reset multiplies (r . H_{t-1}) by R_h: that
//    product is quantized on its own, per step, over the entries still
//    running (the only ones it has a value for).
// Sums are int32, as ONNX Runtime's (exact for any K up to 33025).
//
// ONNX Runtime splits a batch over threads when it is large enough and each
// thread then quantizes H for its own rows, so its results depend on the
// thread count; and when Y is not asked for, its rows of ended entries keep
// their last state instead of zeros. With one thread (or one batch entry)
// and Y asked for, it computes the definition above, which qforge follows
// whatever the threads and outputs. qforge's LSTM splits a large batch over
// threads too (rnn::StepProduct::split), but the threads combine their
// rows' ranges at every step and quantize with the parameters of the whole
// state: the bits of one thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/qgemm.h"
#include "kernels/scratch.h"
#include "ops/families.h"
#include "ops/op_util.h"
#include "ops/quant_gemm.h"
#include "ops/rnn.h"
#include "qforge/quant.h"

namespace qforge::ops {
namespace {

using rnn::Attrs;
using rnn::Cell;
using rnn::Recurrence;

size_t sz(int64_t v) {
  return static_cast<size_t>(v);
}

bool is_8bit(DType t) {
  return t == DType::kU8 || t == DType::kI8;
}

// Where the scales and zero points are: after P (LSTM) or initial_h (GRU).
struct ParamInputs {
  int w_scale, w_zero_point, r_scale, r_zero_point;
};
ParamInputs param_inputs(Cell cell) {
  return cell == Cell::kLstm ? ParamInputs{8, 9, 10, 11} : ParamInputs{6, 7, 8, 9};
}

int64_t hidden_of(const Attrs& at, const Tensor& R) {
  return at.hidden >= 0 ? at.hidden : R.dim(1);
}

// ---- checks ----

// W [dirs, input, G*H] and R [dirs, H, G*H], u8 or s8 (R's rank is checked).
void check_weights(const ir::Node& node, const Attrs& at, const Tensor& W, const Tensor& R,
                   int64_t input, int64_t H) {
  const int64_t dirs = at.dirs, GH = rnn::gates_of(at.cell) * H;
  if (!is_8bit(W.dtype())) bad_type(node, "input W", W.dtype(), "u8 or s8");
  if (!is_8bit(R.dtype())) bad_type(node, "input R", R.dtype(), "u8 or s8");
  const std::string g = at.cell == Cell::kLstm ? "4" : "3";
  rnn::expect_shape(node, &W,
                    "input W (quantized, [num_directions, input_size, " + g + "*hidden_size])",
                    {dirs, input, GH});
  rnn::expect_shape(node, &R,
                    "input R (quantized, [num_directions, hidden_size, " + g + "*hidden_size])",
                    {dirs, H, GH});
}

// A scale or zero point: [dirs] (per direction) or [dirs, G*H] (per column).
void check_param_shape(const ir::Node& node, const Tensor& t, const std::string& what, int64_t dirs,
                       int64_t GH) {
  const bool per_dir = t.rank() == 1 && t.dim(0) == dirs;
  const bool per_col = t.rank() == 2 && t.dim(0) == dirs && t.dim(1) == GH;
  if (!per_dir && !per_col)
    throw Error(
        Errc::kShapeMismatch, node.describe(), what + " has shape " + shape_str(t.shape()),
        shape_str({dirs}) + " (per direction) or " + shape_str({dirs, GH}) + " (per column)");
}

// One value per column of every direction ([dirs * G*H]) from a [dirs] or
// [dirs, G*H] input.
template <typename T>
std::vector<T> per_column(const std::vector<T>& v, int64_t dirs, int64_t GH) {
  if (static_cast<int64_t>(v.size()) == dirs * GH) return v;
  std::vector<T> r(sz(dirs * GH));
  for (int64_t d = 0; d < dirs; ++d) std::fill_n(r.begin() + d * GH, GH, v[sz(d)]);
  return r;
}

// The quantization of W or R as the GEMM uses it: per column of every direction.
struct Columns {
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
};

Columns read_columns(OpContext& ctx, int scale_i, int zp_i, const char* weight, const Tensor& w,
                     int64_t dirs, int64_t GH) {
  const ir::Node& node = ctx.node();
  const std::string sw = std::string(weight) + "_scale", zw = std::string(weight) + "_zero_point";
  const Tensor& s = ctx.input(scale_i);
  const Tensor& z = ctx.input(zp_i);
  if (s.dtype() != DType::kF32) bad_type(node, ("input " + sw).c_str(), s.dtype(), "f32");
  if (z.dtype() != w.dtype())
    throw Error(Errc::kTypeMismatch, node.describe(),
                "input " + zw + " is " + std::string(dtype_name(z.dtype())) + " but " + weight +
                    " is " + std::string(dtype_name(w.dtype())),
                std::string(dtype_name(w.dtype())) + ", the type of " + weight);
  check_param_shape(node, s, "input " + sw, dirs, GH);
  check_param_shape(node, z, "input " + zw, dirs, GH);
  Columns c;
  c.scale = per_column(std::vector<float>(s.data<float>(), s.data<float>() + s.numel()), dirs, GH);
  std::vector<int32_t> zp;
  if (z.dtype() == DType::kI8)
    zp.assign(z.data<int8_t>(), z.data<int8_t>() + z.numel());
  else
    zp.assign(z.data<uint8_t>(), z.data<uint8_t>() + z.numel());
  c.zero_point = per_column(zp, dirs, GH);
  return c;
}

// ---- packed weights ----

// W of every direction side by side (K = input, N = dirs * G*H), so the
// projection of all directions is one GEMM, as in the float ops; R per
// direction (for a GRU without linear_before_reset, its z and r columns and
// its h columns apart: the h gate multiplies r . H_{t-1}).
kernels::QPackedB pack_input_weights(const Tensor& W) {
  const int64_t dirs = W.dim(0), K = W.dim(1), GH = W.dim(2);
  const bool s8 = W.dtype() == DType::kI8;
  if (dirs == 1) return kernels::qpack_b(s8, false, K, GH, W.raw(), GH);
  const auto* w = static_cast<const uint8_t*>(W.raw());
  std::vector<uint8_t> side(sz(K * dirs * GH));
  for (int64_t d = 0; d < dirs; ++d)
    for (int64_t k = 0; k < K; ++k)
      std::memcpy(side.data() + (k * dirs + d) * GH, w + (d * K + k) * GH, sz(GH));
  return kernels::qpack_b(s8, false, K, dirs * GH, side.data(), dirs * GH);
}

std::vector<kernels::QPackedB> pack_recurrent_weights(const Tensor& R, Cell cell, bool lbr) {
  const int64_t dirs = R.dim(0), H = R.dim(1), GH = R.dim(2);
  const bool s8 = R.dtype() == DType::kI8;
  const auto* r = static_cast<const uint8_t*>(R.raw());
  std::vector<kernels::QPackedB> out;
  for (int64_t d = 0; d < dirs; ++d) {
    const uint8_t* rd = r + d * H * GH;
    if (cell == Cell::kGru && !lbr) {
      out.push_back(kernels::qpack_b(s8, false, H, 2 * H, rd, GH));
      out.push_back(kernels::qpack_b(s8, false, H, H, rd + 2 * H, GH));
    } else {
      out.push_back(kernels::qpack_b(s8, false, H, GH, rd, GH));
    }
  }
  return out;
}

int8::PackedWeights packed(const Tensor& t, std::vector<kernels::QPackedB> mats) {
  int8::PackedWeights p;
  p.source = int8::SourceTensor::of(&t);
  p.mats = std::move(mats);
  return p;
}

struct State {
  int8::PackedWeights w, r;  // empty mats: not prepared
};

// Packs constant W and R of the shapes run expects; anything else is left
// to run, which reports it.
std::shared_ptr<const void> prepare(const PrepareContext& pc, Cell cell) {
  try {
    const Attrs at = rnn::read_attrs(pc.node, cell, pc.opset, false);
    const Tensor* W = pc.constants.size() > 1 ? pc.constants[1] : nullptr;
    const Tensor* R = pc.constants.size() > 2 ? pc.constants[2] : nullptr;
    const int64_t G = rnn::gates_of(cell);
    auto st = std::make_shared<State>();
    if (R && is_8bit(R->dtype()) && R->rank() == 3 && R->dim(0) == at.dirs &&
        R->dim(2) == G * hidden_of(at, *R))
      st->r = packed(*R, pack_recurrent_weights(*R, cell, at.linear_before_reset));
    if (W && is_8bit(W->dtype()) && W->rank() == 3 && W->dim(0) == at.dirs && W->dim(2) % G == 0) {
      std::vector<kernels::QPackedB> mats;
      mats.push_back(pack_input_weights(*W));
      st->w = packed(*W, std::move(mats));
    }
    if (st->w.mats.empty() && st->r.mats.empty()) return nullptr;
    return st;
  } catch (const Error&) {
    return nullptr;  // run reports the problem
  }
}

// ---- dynamic quantization of activations ----

// A range of values, widened to contain 0; finite: no NaN or Inf was seen.
struct Range {
  float lo = 0.0f, hi = 0.0f;
  bool finite = true;
};

// The range of rows [r0, r1) of `a` (K floats each) that have in_range ==
// nullptr or (*in_range)[r] (the others count as zeros, which the range
// holds anyway).
Range row_range(const float* a, int64_t r0, int64_t r1, int64_t K,
                const std::vector<char>* in_range) {
  const auto& kr = kernels::kernels();
  Range g;
  // The vector min/max kernel over each run of consecutive rows in range
  // (at every step of a batch still running, one call for the whole state).
  // Min and max are exact, so the range is what an element by element scan
  // gives, however the rows are cut; std::min / std::max keep the first
  // operand (+0) against a -0.
  for (int64_t r = r0; r < r1 && g.finite;) {
    if (in_range && !(*in_range)[sz(r)]) {
      ++r;
      continue;
    }
    int64_t e = r + 1;
    while (e < r1 && (!in_range || (*in_range)[sz(e)])) ++e;
    if (K > 0) {
      float run_lo = 0.0f, run_hi = 0.0f;
      g.finite = kr.minmax_f32(a + r * K, (e - r) * K, &run_lo, &run_hi);
      g.lo = std::min(g.lo, run_lo);
      g.hi = std::max(g.hi, run_hi);
    }
    r = e;
  }
  return g;
}

// The u8 per-tensor parameters DynamicQuantizeLinear chooses for range g; a
// NaN or Inf in it is an Error naming the node.
QuantParams params_of(const ir::Node& node, const char* what, const Range& g) {
  if (!g.finite)
    throw Error(Errc::kInvalidArgument, node.describe(), std::string(what) + " holds NaN or Inf",
                "finite values to quantize");
  return choose_params(QuantSpec{}, g.lo, g.hi, what);
}

// Quantizes rows x K floats at `a` to u8 codes at `q`, per tensor, as
// DynamicQuantizeLinear would; the range comes from the rows r with
// in_range == nullptr or (*in_range)[r], every row is quantized. Returns
// the parameters.
QuantParams quantize_rows(const ir::Node& node, const char* what, const float* a, int64_t rows,
                          int64_t K, const std::vector<char>* in_range, uint8_t* q) {
  const QuantParams p = params_of(node, what, row_range(a, 0, rows, K, in_range));
  if (rows * K > 0)
    kernels::kernels().quantize_u8(a, rows * K, p.scale[0], p.zero_point[0], 0, 255, q);
  return p;
}

// H_{t-1} (or r . H_{t-1}) x R on the int8 GEMM, quantized per step.
class QuantProduct : public rnn::StepProduct {
 public:
  QuantProduct(const ir::Node& node, int64_t d, const kernels::QPackedB* r0,
               const kernels::QPackedB* r1, const Columns& cols, int64_t H, int64_t GH)
      : node_(node), d_(d), r_{r0, r1}, cols_(cols), H_(H), GH_(GH) {}

  void multiply(int mat, int64_t batch, const float* a, const std::vector<char>& rows, float* c,
                int64_t ldc, bool accumulate, ThreadPool* pool) override {
    const int64_t N = r_[mat]->N();
    if (batch == 0 || N == 0) return;
    codes_.resize(sz(batch * H_));
    const QuantParams p = quantize_rows(node_, mat == 0 ? "hidden state" : "r . hidden state", a,
                                        batch, H_, &rows, codes_.data());
    scale_.resize(sz(N));
    if (accumulate) out_.resize(sz(batch * N));
    gemm(mat, batch, codes_.data(), p, scale_.data(), accumulate ? out_.data() : c,
         accumulate ? N : ldc, pool);
    if (!accumulate) return;
    for (int64_t b = 0; b < batch; ++b) {
      const float* s = out_.data() + b * N;
      float* dst = c + b * ldc;
      for (int64_t n = 0; n < N; ++n) dst[n] += s[n];
    }
  }

  // Makes the input projection at the steps: proj's GEMM (A the u8 codes
  // of X, batch rows a step, bias and scales in its epilogue), a part's
  // rows of a step at a time.
  void project_at_steps(const kernels::QGemmArgs& proj, int64_t batch) {
    proj_ = proj;
    batch_ = batch;
    gather_ld_ = (proj.lda + 63) / 64 * 64;  // a part's gathered rows start a line
    gather_.resize(sz(batch * gather_ld_));
  }

  bool projects() const override { return proj_.B != nullptr; }

  void project_rows(const int64_t* times, int64_t b0, int64_t b1, float* out,
                    int64_t ldo) override {
    const int64_t K = proj_.lda;
    const auto* x = static_cast<const uint8_t*>(proj_.A);  // row t * batch + b
    int64_t t0 = -1;
    bool one_time = true;
    for (int64_t i = 0; i < b1 - b0; ++i) {
      if (times[i] < 0) continue;
      if (t0 < 0) t0 = times[i];
      one_time = one_time && times[i] == t0;
    }
    if (t0 < 0) return;
    kernels::QGemmArgs g = proj_;
    g.M = b1 - b0;
    if (one_time) {
      g.A = x + (t0 * batch_ + b0) * K;  // the rows in place
    } else {
      // Entries at different times (ends apart, reversed): their rows side
      // by side (a done entry's any row: its output isn't read).
      uint8_t* dst = gather_.data() + b0 * gather_ld_;
      for (int64_t i = 0; i < b1 - b0; ++i)
        std::memcpy(dst + i * gather_ld_,
                    x + ((times[i] < 0 ? t0 : times[i]) * batch_ + b0 + i) * K, sz(K));
      g.A = dst;
      g.lda = gather_ld_;
    }
    g.C = out;
    g.ldc = ldo;
    kernels::qgemm(g, nullptr);
  }

  bool split(int parts, int64_t batch) override {
    parts_ = parts;
    ranges_.assign(sz(2 * parts), Slot{});
    // Each part's scales on cache lines of their own (16 floats a line).
    scale_stride_ = (r_[0]->N() + 15) / 16 * 16;
    part_scale_.resize(sz(parts * scale_stride_));
    codes_.resize(sz(batch * H_));
    return true;
  }

  void range(int set, int part, const float* a, int64_t b0, int64_t b1,
             const std::vector<char>& rows) override {
    ranges_[sz(set * parts_ + part)].r = row_range(a, b0, b1, H_, &rows);
  }

  void multiply_rows(int set, int part, const float* a, int64_t b0, int64_t b1, float* c,
                     int64_t ldc, ThreadPool* pool) override {
    const int64_t N = r_[0]->N();
    if (b1 <= b0 || N == 0) return;
    Range g;
    for (int p = 0; p < parts_; ++p) {
      const Range& r = ranges_[sz(set * parts_ + p)].r;
      g.lo = std::min(g.lo, r.lo);
      g.hi = std::max(g.hi, r.hi);
      g.finite = g.finite && r.finite;
    }
    const QuantParams p = params_of(node_, "hidden state", g);
    uint8_t* q = codes_.data() + b0 * H_;
    if (H_ > 0)
      kernels::kernels().quantize_u8(a + b0 * H_, (b1 - b0) * H_, p.scale[0], p.zero_point[0], 0,
                                     255, q);
    gemm(0, b1 - b0, q, p, part_scale_.data() + part * scale_stride_, c + b0 * ldc, ldc, pool);
  }

 private:
  // c (ldc apart) = rows x mat's columns of codes (quantized with p) x R,
  // dequantized; `scale` takes the N column scales.
  void gemm(int mat, int64_t rows, const uint8_t* codes, const QuantParams& p, float* scale,
            float* c, int64_t ldc, ThreadPool* pool) const {
    const kernels::QPackedB& m = *r_[mat];
    const int64_t N = m.N(), col0 = d_ * GH_ + (mat == 0 ? 0 : 2 * H_);
    for (int64_t n = 0; n < N; ++n) scale[n] = p.scale[0] * cols_.scale[sz(col0 + n)];
    kernels::QGemmArgs g;
    g.M = rows;
    g.A = codes;
    g.lda = H_;
    g.a_signed = false;
    g.a_zp = p.zero_point[0];
    g.B = &m;
    g.b_zp = cols_.zero_point.data() + col0;
    g.out = kernels::QOutput::kF32;
    g.scale = scale;
    g.C = c;
    g.ldc = ldc;
    // run_directions hands the pool to steps of 2^20 multiply-adds and up,
    // a float GEMM's measure. The int8 GEMM does such a step in a few
    // microseconds, less than waking the pool and waiting for it costs (an
    // LSTM of hidden size 128 at batch 32 ran 15-30% slower on 2 threads than
    // on 1): it takes the threads from 2^22 on.
    constexpr int64_t kMinParallelMacs = int64_t{1} << 22;
    kernels::qgemm(g, rows * N * H_ >= kMinParallelMacs ? pool : nullptr);
  }

  const ir::Node& node_;
  int64_t d_;
  const kernels::QPackedB* r_[2];
  const Columns& cols_;
  int64_t H_, GH_;
  // The parts' rows of codes_ and their slots and scales lie on cache lines
  // of their own: the parts write them at once, on different threads.
  kernels::CacheLineVector<uint8_t> codes_;
  std::vector<float> scale_, out_;
  int parts_ = 1;
  struct alignas(64) Slot {
    Range r;
  };
  std::vector<Slot> ranges_;  // [2][parts_]: split's slots
  int64_t scale_stride_ = 0;
  kernels::CacheLineVector<float> part_scale_;  // [parts_][scale_stride_]
  kernels::QGemmArgs proj_;                     // B null: no projection at the steps
  int64_t batch_ = 0, gather_ld_ = 0;
  kernels::CacheLineVector<uint8_t> gather_;  // [batch][gather_ld_]: X's rows gathered, by entry
};

// ---- run ----

void run(OpContext& ctx, Cell cell) {
  const ir::Node& node = ctx.node();
  const Attrs at = rnn::read_attrs(node, cell, ctx.opset(), false);
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor& R = ctx.input(2);
  rnn::check_x(node, X, at);
  if (R.rank() != 3)  // before its hidden size is read
    throw Error(Errc::kShapeMismatch, node.describe(), "input R has shape " + shape_str(R.shape()),
                "[num_directions, hidden_size, G*hidden_size]");
  const int64_t H = hidden_of(at, R);
  check_weights(node, at, W, R, X.dim(2), H);
  const int64_t dirs = at.dirs, GH = rnn::gates_of(cell) * H;
  const ParamInputs pi = param_inputs(cell);
  const Columns wc = read_columns(ctx, pi.w_scale, pi.w_zero_point, "W", W, dirs, GH);
  const Columns rc_cols = read_columns(ctx, pi.r_scale, pi.r_zero_point, "R", R, dirs, GH);
  const Recurrence rc = rnn::make_recurrence(ctx, at, H);
  ThreadPool* pool = ctx.pool();

  // Prepacked weights if prepare made them from these very tensors, else pack now.
  const auto* st = static_cast<const State*>(ctx.state());
  kernels::QPackedB w_local;
  const kernels::QPackedB* wp = nullptr;
  if (st && !st->w.mats.empty() && st->w.matches(W)) {
    wp = &st->w.mats[0];
  } else {
    w_local = pack_input_weights(W);
    wp = &w_local;
  }
  std::vector<kernels::QPackedB> r_local;
  const std::vector<kernels::QPackedB>* rp = nullptr;
  if (st && !st->r.mats.empty() && st->r.matches(R)) {
    rp = &st->r.mats;
  } else {
    r_local = pack_recurrent_weights(R, cell, at.linear_before_reset);
    rp = &r_local;
  }

  // X quantized once, over every step any sequence reaches. Its projection
  // (every direction's, bias in the epilogue) is one GEMM ahead of the
  // steps; or, for an LSTM of one direction whose batch is cut over
  // threads, made at each step by the part of the batch that reads it
  // (QuantProduct::project_rows): on that part's thread, in its cache, at
  // no extra wake of the pool (the Fashion-MNIST LSTM at batch 32 on 2
  // threads: 0.55 -> 0.48 ms). On one thread one GEMM ahead is as fast at
  // batch 32, and faster at batch 1 (one call, not one per step).
  const int64_t rows = rc.max_len * rc.batch, N = dirs * GH;
  const bool at_steps = cell == Cell::kLstm && dirs == 1 && rows > 0 && N > 0 &&
                        rnn::lstm_parts(rc, pool) > 1;
  std::unique_ptr<float[]> xproj(
      new float[at_steps ? 1 : sz(std::max<int64_t>(rc.seq * rc.batch * N, 1))]);
  std::vector<uint8_t> xq;
  std::vector<float> scale(sz(N));
  kernels::QGemmArgs g;
  if (rows > 0 && N > 0) {
    xq.resize(sz(rnn::checked_mul(node, {rows, rc.input})));
    const QuantParams xp = quantize_rows(node, "input X", rc.X, rows, rc.input, nullptr, xq.data());
    for (int64_t n = 0; n < N; ++n) scale[sz(n)] = xp.scale[0] * wc.scale[sz(n)];
    g.M = rows;
    g.A = xq.data();
    g.lda = rc.input;
    g.a_signed = false;
    g.a_zp = xp.zero_point[0];
    g.B = wp;
    g.b_zp = wc.zero_point.data();
    g.out = kernels::QOutput::kF32;
    g.scale = scale.data();
    g.fbias = rc.bias.data();
    g.C = xproj.get();
    g.ldc = N;
    if (!at_steps) kernels::qgemm(g, pool);
  }

  const size_t per = cell == Cell::kGru && !at.linear_before_reset ? 2 : 1;
  std::vector<QuantProduct> products;
  products.reserve(sz(dirs));
  for (int64_t d = 0; d < dirs; ++d)
    products.emplace_back(node, d, &(*rp)[sz(d) * per],
                          per == 2 ? &(*rp)[sz(d) * per + 1] : nullptr, rc_cols, H, GH);
  if (at_steps) products[0].project_at_steps(g, rc.batch);
  std::vector<rnn::StepProduct*> ptrs;
  for (auto& p : products) ptrs.push_back(&p);
  rnn::run_directions(rc, xproj.get(), ptrs, pool);
}

// Why a node can't run here (types only; shapes are run's to check).
std::string check(const InferContext& c, Cell cell) {
  auto type = [&](int i) { return c.has_input(i) ? c.input(i).dtype : std::nullopt; };
  for (int i : {1, 2})
    if (auto t = type(i); t && !is_8bit(*t))
      return "input " + std::to_string(i) + " is " + std::string(dtype_name(*t)) + "; " +
             c.node().op_type + " takes u8 or s8 weights";
  // X, B, initial_h (and initial_c, P).
  const std::vector<int> floats =
      cell == Cell::kLstm ? std::vector<int>{0, 3, 5, 6, 7} : std::vector<int>{0, 3, 5};
  for (int i : floats)
    if (auto t = type(i); t && *t != DType::kF32)
      return "input " + std::to_string(i) + " is " + std::string(dtype_name(*t)) +
             "; qforge runs " + c.node().op_type + " on f32 activations only";
  return {};
}

}  // namespace

void register_quant_rnn_ops(OpRegistry& r) {
  r.add({.domain = "com.microsoft",
         .op_type = "DynamicQuantizeLSTM",
         .min_opset = 1,
         .max_opset = 1,
         .infer = [](InferContext& c) { rnn::infer(c, Cell::kLstm, false, true); },
         .check = [](const InferContext& c) { return check(c, Cell::kLstm); },
         .prepare = [](const PrepareContext& pc) { return prepare(pc, Cell::kLstm); },
         .run = [](OpContext& c) { run(c, Cell::kLstm); }});
  r.add({.domain = kQforgeDomain,
         .op_type = "DynamicQuantizeGRU",
         .min_opset = 1,
         .max_opset = 1,
         .infer = [](InferContext& c) { rnn::infer(c, Cell::kGru, false, true); },
         .check = [](const InferContext& c) { return check(c, Cell::kGru); },
         .prepare = [](const PrepareContext& pc) { return prepare(pc, Cell::kGru); },
         .run = [](OpContext& c) { run(c, Cell::kGru); }});
}

}  // namespace qforge::ops
