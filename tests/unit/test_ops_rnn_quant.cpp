// The dynamically quantized recurrent ops (src/ops/rnn_quant.cpp):
// com.microsoft DynamicQuantizeLSTM and ai.qforge DynamicQuantizeGRU.
//
// References:
//  * `reference` below, written here from the definition, in double, step
//    by step: the LSTM / GRU equations of the ONNX spec with W and R
//    dequantized, X fake-quantized once (over the times some sequence
//    reaches) and the hidden state fake-quantized at every step as the
//    [batch, H] tensor Y holds (a GRU's r . H over the entries still
//    running), each with the parameters DynamicQuantizeLinear chooses
//    (qforge::choose_params, u8 per tensor). W and R are quantized the way the quantizer does it
//    (s8 symmetric per output column or per direction, or u8 affine);
//  * ONNX Runtime 1.30's DynamicQuantizeLSTM on seeded inputs
//    (tests/golden/dynamic_quantize_lstm_ort.json, scripts/gen_dqlstm_golden.js);
//  * the float LSTM / GRU: the quantized op must differ from it by more
//    than the tolerance above, or the comparison could not see quantization.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/quant.h"
#include "qforge/session.h"
#include "test_util.h"

namespace qforge {
namespace {

using test::random_floats;

template <typename F>
void expect_error(F&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needles[0] << "'";
  } catch (const Error& e) {
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

using test::OneNode;

ir::Attribute strings_attr(std::vector<std::string> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kStrings;
  a.strings = std::move(v);
  return a;
}

// ---- the case, its float data, its quantized weights ----

struct Spec {
  std::string name;
  std::string op = "LSTM";  // LSTM or GRU
  std::string direction = "forward";
  int64_t seq = 5, batch = 3, input = 4, hidden = 6;
  bool per_channel = true;
  DType wtype = DType::kI8;  // the weights' type
  bool with_b = true, with_h0 = false, with_c0 = false, with_p = false;
  bool input_forget = false, linear_before_reset = false;
  float clip = 0;
  std::vector<int32_t> lens;  // empty: no sequence_lens
};

int64_t dirs(const Spec& s) {
  return s.direction == "bidirectional" ? 2 : 1;
}
int64_t gates(const Spec& s) {
  return s.op == "LSTM" ? 4 : 3;
}
size_t sz(int64_t v) {
  return static_cast<size_t>(v);
}

struct Data {
  Tensor X, W, R, B, lens, h0, c0, P;  // W, R float, in ONNX's layout
};

Data make_data(const Spec& s, uint32_t seed) {
  const int64_t D = dirs(s), GH = gates(s) * s.hidden, H = s.hidden;
  auto rnd = [&](Shape sh, float lo, float hi, uint32_t k) {
    return Tensor::from(sh, random_floats(sz(shape_numel(sh)), lo, hi, seed + k));
  };
  Data d;
  d.X = rnd({s.seq, s.batch, s.input}, -1.5f, 1.5f, 1);
  d.W = rnd({D, GH, s.input}, -0.6f, 0.6f, 2);
  d.R = rnd({D, GH, H}, -0.6f, 0.6f, 3);
  d.B = rnd({D, 2 * GH}, -0.5f, 0.5f, 4);
  d.h0 = rnd({D, s.batch, H}, -1, 1, 5);
  d.c0 = rnd({D, s.batch, H}, -1, 1, 6);
  d.P = rnd({D, 3 * H}, -0.5f, 0.5f, 7);
  if (!s.lens.empty()) d.lens = Tensor::from({s.batch}, s.lens);
  return d;
}

// W or R [D, N, K] quantized as qforge's quantizer does: per direction,
// s8 symmetric in [-127, 127] (or u8 affine), per output column (row of the
// direction's [N, K]) or one scale per direction; codes transposed to
// [D, K, N], scales and zero points [D, N] or [D]. `deq` holds the
// dequantized values in the float layout [D, N, K].
struct QWeight {
  Tensor codes, scale, zero_point;
  std::vector<double> deq;
};

QWeight quantize_weight(const Tensor& w, bool per_channel, DType t) {
  const int64_t D = w.dim(0), N = w.dim(1), K = w.dim(2);
  QuantSpec spec;
  spec.dtype = t;
  spec.symmetric = t == DType::kI8;
  spec.narrow_range = t == DType::kI8;
  spec.axis = per_channel ? 0 : -1;
  QWeight q;
  q.codes = Tensor(t, {D, K, N});
  const Shape ps = per_channel ? Shape{D, N} : Shape{D};
  q.scale = Tensor(DType::kF32, ps);
  q.zero_point = Tensor(t, ps);
  q.deq.resize(sz(D * N * K));
  const int64_t per = per_channel ? N : 1;
  for (int64_t d = 0; d < D; ++d) {
    const float* src = w.data<float>() + d * N * K;
    const Tensor slice = Tensor::from<float>({N, K}, std::vector<float>(src, src + N * K));
    const QuantParams p = choose_params_for(slice, spec);
    for (int64_t c = 0; c < per; ++c) {
      q.scale.data<float>()[d * per + c] = p.scale[sz(c)];
      if (t == DType::kI8)
        q.zero_point.data<int8_t>()[d * per + c] = static_cast<int8_t>(p.zero_point[sz(c)]);
      else
        q.zero_point.data<uint8_t>()[d * per + c] = static_cast<uint8_t>(p.zero_point[sz(c)]);
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const size_t ci = per_channel ? sz(n) : 0;
        const int32_t code =
            quantize_value(src[n * K + k], p.scale[ci], p.zero_point[ci],
                           static_cast<int32_t>(p.qmin()), static_cast<int32_t>(p.qmax()));
        const int64_t at = (d * K + k) * N + n;
        if (t == DType::kI8)
          q.codes.data<int8_t>()[at] = static_cast<int8_t>(code);
        else
          q.codes.data<uint8_t>()[at] = static_cast<uint8_t>(code);
        q.deq[sz((d * N + n) * K + k)] = dequantize_value(code, p.scale[ci], p.zero_point[ci]);
      }
  }
  return q;
}

// ---- the reference ----

// DynamicQuantizeLinear's parameters for a set of values, and a value
// quantized and dequantized with them.
struct Fq {
  float scale;
  int32_t zp;
  double operator()(double x) const {
    return dequantize_value(quantize_value(static_cast<float>(x), scale, zp, 0, 255), scale, zp);
  }
};
Fq fq_for(const std::vector<double>& v) {
  float lo = 0, hi = 0;
  for (double x : v) {
    lo = std::min(lo, static_cast<float>(x));
    hi = std::max(hi, static_cast<float>(x));
  }
  const QuantParams p = choose_params(QuantSpec{}, lo, hi);
  return {p.scale[0], p.zero_point[0]};
}

double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

struct Ref {
  std::vector<double> Y, Yh, Yc;
};

Ref reference(const Spec& s, const Data& d, const QWeight& w, const QWeight& r) {
  const int64_t D = dirs(s), G = gates(s), H = s.hidden, I = s.input, S = s.seq, N = s.batch,
                GH = G * H;
  const bool lstm = s.op == "LSTM";
  std::vector<int64_t> lens(sz(N), S);
  if (!s.lens.empty())
    for (int64_t b = 0; b < N; ++b) lens[sz(b)] = s.lens[sz(b)];
  const int64_t max_len = *std::max_element(lens.begin(), lens.end());
  const float* X = d.X.data<float>();
  // X: once, over the times some sequence reaches.
  const Fq fx = fq_for(std::vector<double>(X, X + max_len * N * I));
  auto clipv = [&](double v) { return s.clip > 0 ? std::clamp<double>(v, -s.clip, s.clip) : v; };
  Ref ref;
  ref.Y.assign(sz(S * D * N * H), 0.0);
  ref.Yh.assign(sz(D * N * H), 0.0);
  ref.Yc.assign(sz(D * N * H), 0.0);
  for (int64_t dd = 0; dd < D; ++dd) {
    const bool rev = s.direction == "reverse" || dd == 1;
    const double* Wd = w.deq.data() + dd * GH * I;
    const double* Rd = r.deq.data() + dd * GH * H;
    const float* Wb = d.B.data<float>() + dd * 2 * GH;
    const float* Rb = Wb + GH;
    const float* P = d.P.data<float>() + dd * 3 * H;
    std::vector<double> h(sz(N * H), 0.0), c(sz(N * H), 0.0);
    for (int64_t i = 0; i < N * H; ++i) {
      if (s.with_h0) h[sz(i)] = d.h0.data<float>()[dd * N * H + i];
      if (s.with_c0) c[sz(i)] = d.c0.data<float>()[dd * N * H + i];
    }
    for (int64_t step = 0; step < max_len; ++step) {
      std::vector<int64_t> active, t_of(sz(N), -1);
      for (int64_t b = 0; b < N; ++b)
        if (step < lens[sz(b)]) {
          active.push_back(b);
          t_of[sz(b)] = rev ? lens[sz(b)] - 1 - step : step;
        }
      // The hidden state as Y holds it, quantized as one tensor: initial_h
      // at the first step, then the states the previous step made (entries
      // that ended before it have zero rows, which change no range).
      std::vector<double> hv;
      for (int64_t b = 0; b < N; ++b)
        if (step == 0 || lens[sz(b)] >= step)
          hv.insert(hv.end(), h.begin() + b * H, h.begin() + (b + 1) * H);
      const Fq fh = fq_for(hv);
      // xw = Xq W + Wb, hr = Hq R + Rb per running entry.
      std::vector<double> xw(sz(N * GH)), hr(sz(N * GH));
      for (int64_t b : active) {
        const float* x = X + (t_of[sz(b)] * N + b) * I;
        for (int64_t k = 0; k < GH; ++k) {
          double sx = s.with_b ? Wb[k] : 0.0, sh = s.with_b ? Rb[k] : 0.0;
          for (int64_t i = 0; i < I; ++i) sx += fx(x[i]) * Wd[k * I + i];
          for (int64_t j = 0; j < H; ++j) sh += fh(h[sz(b * H + j)]) * Rd[k * H + j];
          xw[sz(b * GH + k)] = sx;
          hr[sz(b * GH + k)] = sh;
        }
      }
      std::vector<double> hn = h;
      if (lstm) {
        for (int64_t b : active)
          for (int64_t j = 0; j < H; ++j) {
            auto pre = [&](int64_t g) {
              return xw[sz(b * GH + g * H + j)] + hr[sz(b * GH + g * H + j)];
            };
            double& cs = c[sz(b * H + j)];
            const double pi = s.with_p ? P[j] : 0.0, po = s.with_p ? P[H + j] : 0.0,
                         pf = s.with_p ? P[2 * H + j] : 0.0;
            const double it = sigmoid(clipv(pre(0) + pi * cs));
            const double ft = s.input_forget ? 1 - it : sigmoid(clipv(pre(2) + pf * cs));
            const double ct = std::tanh(clipv(pre(3)));
            cs = ft * cs + it * ct;
            const double ot = sigmoid(clipv(pre(1) + po * cs));
            hn[sz(b * H + j)] = ot * std::tanh(cs);
          }
      } else {
        std::vector<double> z(sz(N * H)), rr(sz(N * H));
        for (int64_t b : active)
          for (int64_t j = 0; j < H; ++j) {
            const size_t u = sz(b * GH + j), v = sz(b * GH + H + j);
            z[sz(b * H + j)] = sigmoid(clipv(xw[u] + hr[u]));
            rr[sz(b * H + j)] = sigmoid(clipv(xw[v] + hr[v]));
          }
        // Without linear_before_reset, r . H is a product of its own, quantized on its own.
        std::vector<double> rh;
        for (int64_t b : active)
          for (int64_t j = 0; j < H; ++j) rh.push_back(rr[sz(b * H + j)] * h[sz(b * H + j)]);
        const Fq frh = fq_for(rh);
        for (int64_t b : active)
          for (int64_t j = 0; j < H; ++j) {
            const size_t v = sz(b * GH + 2 * H + j);
            double pre;
            if (s.linear_before_reset) {
              pre = xw[v] + rr[sz(b * H + j)] * hr[v];  // hr includes Rbh
            } else {
              pre = xw[v] + (s.with_b ? Rb[2 * H + j] : 0.0);
              for (int64_t k = 0; k < H; ++k)
                pre += frh(rr[sz(b * H + k)] * h[sz(b * H + k)]) * Rd[(2 * H + j) * H + k];
            }
            const double zt = z[sz(b * H + j)];
            hn[sz(b * H + j)] = (1 - zt) * std::tanh(clipv(pre)) + zt * h[sz(b * H + j)];
          }
      }
      h = hn;
      for (int64_t b : active)
        for (int64_t j = 0; j < H; ++j)
          ref.Y[sz(((t_of[sz(b)] * D + dd) * N + b) * H + j)] = h[sz(b * H + j)];
    }
    for (int64_t b = 0; b < N; ++b)
      for (int64_t j = 0; j < H; ++j) {
        const bool empty = lens[sz(b)] == 0;  // zero, as ONNX Runtime gives
        ref.Yh[sz((dd * N + b) * H + j)] = empty ? 0.0 : h[sz(b * H + j)];
        ref.Yc[sz((dd * N + b) * H + j)] = empty ? 0.0 : c[sz(b * H + j)];
      }
  }
  return ref;
}

// ---- the node ----

void set_rnn_attrs(ir::Node& n, const Spec& s) {
  n.attrs["hidden_size"] = ir::Attribute::of(s.hidden);
  n.attrs["direction"] = ir::Attribute::of(s.direction);
  if (s.clip > 0) n.attrs["clip"] = ir::Attribute::of(s.clip);
  if (s.input_forget) n.attrs["input_forget"] = ir::Attribute::of(int64_t{1});
  if (s.linear_before_reset) n.attrs["linear_before_reset"] = ir::Attribute::of(int64_t{1});
}

// X W R B sequence_lens initial_h [initial_c P]: the inputs both forms share.
std::vector<std::pair<std::string, Tensor>> shared_inputs(const Spec& s, const Data& d, ir::Node& n,
                                                          const Tensor& W, const Tensor& R) {
  const bool lstm = s.op == "LSTM";
  n.inputs = {
      "X", "W", "R", s.with_b ? "B" : "", s.lens.empty() ? "" : "lens", s.with_h0 ? "h0" : ""};
  if (lstm) n.inputs.insert(n.inputs.end(), {s.with_c0 ? "c0" : "", s.with_p ? "P" : ""});
  std::vector<std::pair<std::string, Tensor>> in = {{"X", d.X}, {"W", W}, {"R", R}};
  if (s.with_b) in.emplace_back("B", d.B);
  if (!s.lens.empty()) in.emplace_back("lens", d.lens);
  if (s.with_h0) in.emplace_back("h0", d.h0);
  if (lstm && s.with_c0) in.emplace_back("c0", d.c0);
  if (lstm && s.with_p) in.emplace_back("P", d.P);
  n.outputs = {"Y", "Y_h"};
  if (lstm) n.outputs.push_back("Y_c");
  return in;
}

OneNode quantized_node(const Spec& s, const Data& d, const QWeight& w, const QWeight& r) {
  OneNode o;
  o.node.name = "qrnn";
  o.node.op_type = s.op == "LSTM" ? "DynamicQuantizeLSTM" : "DynamicQuantizeGRU";
  o.node.domain = s.op == "LSTM" ? "com.microsoft" : ops::kQforgeDomain;
  set_rnn_attrs(o.node, s);
  o.inputs = shared_inputs(s, d, o.node, w.codes, r.codes);
  o.node.inputs.insert(o.node.inputs.end(), {"W_scale", "W_zero_point", "R_scale", "R_zero_point"});
  o.inputs.insert(o.inputs.end(), {{"W_scale", w.scale},
                                   {"W_zero_point", w.zero_point},
                                   {"R_scale", r.scale},
                                   {"R_zero_point", r.zero_point}});
  return o;
}

OneNode float_node(const Spec& s, const Data& d) {
  OneNode o;
  o.node.name = "frnn";
  o.node.op_type = s.op;
  set_rnn_attrs(o.node, s);
  o.inputs = shared_inputs(s, d, o.node, d.W, d.R);
  return o;
}

double max_abs_diff(const Tensor& got, const std::vector<double>& want) {
  double m = 0;
  for (size_t i = 0; i < want.size(); ++i)
    m = std::max(m, std::fabs(got.data<float>()[i] - want[i]));
  return m;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, static_cast<double>(std::fabs(a.data<float>()[i] - b.data<float>()[i])));
  return m;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::equal(a.data<float>(), a.data<float>() + a.numel(), b.data<float>());
}

// Against the reference: weights as graph inputs (packed per run) and as
// initializers (packed once in prepare), on 1 and 4 threads, all four
// giving the same bits.
void check_case(const Spec& s, uint32_t seed, double tol) {
  SCOPED_TRACE(s.name);
  const Data d = make_data(s, seed);
  const QWeight w = quantize_weight(d.W, s.per_channel, s.wtype);
  const QWeight r = quantize_weight(d.R, s.per_channel, s.wtype);
  const Ref want = reference(s, d, w, r);
  OneNode q = quantized_node(s, d, w, r);
  const std::vector<Tensor> got = q.run();
  ASSERT_EQ(got[0].shape(), (Shape{s.seq, dirs(s), s.batch, s.hidden}));
  ASSERT_EQ(got[1].shape(), (Shape{dirs(s), s.batch, s.hidden}));
  const double eY = max_abs_diff(got[0], want.Y), eH = max_abs_diff(got[1], want.Yh);
  double err = std::max(eY, eH);
  if (s.op == "LSTM") err = std::max(err, max_abs_diff(got[2], want.Yc));
  EXPECT_LE(err, tol);

  // The float op with the float weights: quantization must show.
  const std::vector<Tensor> fl = float_node(s, d).run();
  double qerr = 0;
  for (size_t i = 0; i < fl.size(); ++i) qerr = std::max(qerr, max_abs_diff(got[i], fl[i]));
  EXPECT_GT(qerr, 20 * tol);
  std::printf("  %-58s |op - reference| %.2e   |op - float op| %.2e\n", s.name.c_str(), err, qerr);

  q.constants = {"W", "R", "W_scale", "W_zero_point", "R_scale", "R_zero_point"};
  const std::vector<Tensor> prepared = q.run();
  const std::vector<Tensor> threaded = q.run(4);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(same_bits(prepared[i], got[i])) << "output " << i << ": prepared weights";
    EXPECT_TRUE(same_bits(threaded[i], got[i])) << "output " << i << ": 4 threads";
  }
}

// float32 arithmetic (and its own exp / tanh) against the double reference;
// a rounding flip of one quantized code would cost ~1e-3.
constexpr double kRefTol = 2e-5;

TEST(DynamicQuantizeLstm, MatchesReference) {
  std::vector<Spec> cases(6);
  cases[0].name = "forward, s8 per column";
  cases[1] = {.name = "reverse, sequence_lens, initial_h", .direction = "reverse", .seq = 6};
  cases[1].lens = {6, 2, 4};
  cases[1].with_h0 = true;
  cases[2] = {.name = "bidirectional, per direction, sequence_lens with 0, initial_h/c, P",
              .direction = "bidirectional",
              .per_channel = false};
  cases[2].lens = {3, 5, 0};
  cases[2].with_h0 = cases[2].with_c0 = cases[2].with_p = true;
  cases[3] = {.name = "bidirectional, u8 per column (per-column zero points), clip",
              .direction = "bidirectional",
              .wtype = DType::kU8,
              .clip = 1.2f};
  cases[4] = {.name = "forward, per direction, input_forget, no B, sequence_lens below seq",
              .batch = 2,
              .per_channel = false,
              .with_b = false,
              .input_forget = true};
  cases[4].lens = {3, 4};
  cases[5] = {.name = "bidirectional, larger (input 37, hidden 20, batch 5)",
              .direction = "bidirectional",
              .seq = 4,
              .batch = 5,
              .input = 37,
              .hidden = 20};
  cases[5].with_h0 = cases[5].with_c0 = true;
  uint32_t seed = 100;
  for (const Spec& s : cases) check_case(s, seed += 10, kRefTol);
}

// Steps of 2^20 multiply-adds and up (batch x 4H x H) run with the batch cut
// over the threads, each thread quantizing its rows with the range of the
// whole state: the bits of one thread, for odd batches, cuts that split
// runs of ended entries, and entries that end on either side of a cut.
TEST(DynamicQuantizeLstm, BatchCutOverThreadsKeepsTheBits) {
  std::vector<Spec> cases(4);
  cases[0] = {.name = "forward, batch 33, hidden 128, sequence_lens, initial_h/c",
              .seq = 6,
              .batch = 33,
              .input = 5,
              .hidden = 128};
  cases[0].with_h0 = cases[0].with_c0 = true;
  for (int64_t b = 0; b < 33; ++b) cases[0].lens.push_back(static_cast<int32_t>((b * 5) % 7));
  cases[1] = {.name = "bidirectional, batch 7, hidden 200, per direction, P, clip",
              .direction = "bidirectional",
              .seq = 4,
              .batch = 7,
              .input = 3,
              .hidden = 200,
              .per_channel = false,
              .with_p = true,
              .clip = 0.8f};
  cases[1].lens = {4, 1, 0, 3, 4, 2, 1};
  cases[2] = {.name = "reverse, batch 17, hidden 128, u8, input_forget, sequence_lens",
              .direction = "reverse",
              .seq = 3,
              .batch = 17,
              .input = 4,
              .hidden = 128,
              .wtype = DType::kU8,
              .input_forget = true};
  // Reversed, entries of different lengths read different times at a step.
  for (int64_t b = 0; b < 17; ++b) cases[2].lens.push_back(static_cast<int32_t>(b % 4));
  // Hidden 40: the cuts move to multiples of 8 rows (88 of 170 on 2
  // threads, 56 and 112 on 3), each part's rows of H starting a cache line.
  cases[3] = {.name = "forward, batch 170, hidden 40, sequence_lens: cuts on cache lines",
              .seq = 3,
              .batch = 170,
              .input = 6,
              .hidden = 40};
  for (int64_t b = 0; b < 170; ++b) cases[3].lens.push_back(static_cast<int32_t>(1 + b % 3));
  uint32_t seed = 500;
  for (const Spec& s : cases) {
    SCOPED_TRACE(s.name);
    const Data d = make_data(s, seed += 10);
    const QWeight w = quantize_weight(d.W, s.per_channel, s.wtype);
    const QWeight r = quantize_weight(d.R, s.per_channel, s.wtype);
    OneNode q = quantized_node(s, d, w, r);
    q.constants = {"W", "R", "W_scale", "W_zero_point", "R_scale", "R_zero_point"};
    // More threads first: a buffer the cut runs leave unwritten then holds
    // another case's values, not what one thread just wrote there.
    const std::vector<Tensor> two = q.run(2), three = q.run(3), one = q.run(1);
    for (size_t i = 0; i < one.size(); ++i) {
      EXPECT_TRUE(same_bits(two[i], one[i])) << "output " << i << ", 2 threads";
      EXPECT_TRUE(same_bits(three[i], one[i])) << "output " << i << ", 3 threads";
    }
  }
}

TEST(DynamicQuantizeGru, MatchesReference) {
  std::vector<Spec> cases(5);
  for (auto& c : cases) c.op = "GRU";
  cases[0].name = "forward, s8 per column";
  cases[1].name = "reverse, linear_before_reset, sequence_lens, initial_h";
  cases[1].direction = "reverse";
  cases[1].linear_before_reset = true;
  cases[1].lens = {5, 1, 3};
  cases[1].with_h0 = true;
  cases[2].name = "bidirectional, per direction, sequence_lens with 0, initial_h";
  cases[2].direction = "bidirectional";
  cases[2].per_channel = false;
  cases[2].lens = {0, 4, 5};
  cases[2].with_h0 = true;
  cases[3].name = "bidirectional, linear_before_reset, u8 per column, clip";
  cases[3].direction = "bidirectional";
  cases[3].linear_before_reset = true;
  cases[3].wtype = DType::kU8;
  cases[3].clip = 0.9f;
  cases[4].name = "forward, larger (input 29, hidden 24, batch 4), no B";
  cases[4].input = 29;
  cases[4].hidden = 24;
  cases[4].batch = 4;
  cases[4].with_b = false;
  uint32_t seed = 300;
  for (const Spec& s : cases) check_case(s, seed += 10, kRefTol);
}

// ---- ONNX Runtime ----

Tensor tensor_of(const nlohmann::json& t) {
  const Shape shape = test::shape_of(t["shape"]);
  const std::string type = t["type"];
  if (type == "float32") return Tensor::from(shape, test::floats(t["data"]));
  if (type == "int32") return Tensor::from(shape, test::ints(t["data"]));
  const std::vector<int32_t> v = test::ints(t["data"]);
  Tensor r(type == "int8" ? DType::kI8 : DType::kU8, shape);
  for (size_t i = 0; i < v.size(); ++i) {
    if (r.dtype() == DType::kI8)
      r.data<int8_t>()[i] = static_cast<int8_t>(v[i]);
    else
      r.data<uint8_t>()[i] = static_cast<uint8_t>(v[i]);
  }
  return r;
}

TEST(DynamicQuantizeLstm, MatchesOnnxRuntime) {
  const nlohmann::json j =
      test::load_json(std::string(QFORGE_GOLDEN_DIR) + "/dynamic_quantize_lstm_ort.json");
  const char* names[] = {"X",         "W",           "R", "B",       "sequence_lens",
                         "initial_h", "initial_c",   "P", "W_scale", "W_zero_point",
                         "R_scale",   "R_zero_point"};
  ASSERT_GE(j["cases"].size(), 6u);
  for (const auto& c : j["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    OneNode o;
    o.node.name = "lstm";
    o.node.op_type = "DynamicQuantizeLSTM";
    o.node.domain = "com.microsoft";
    o.node.outputs = {"Y", "Y_h", "Y_c"};
    for (const auto& [k, v] : c["attrs"].items()) {
      if (v.is_string())
        o.node.attrs[k] = ir::Attribute::of(v.get<std::string>());
      else if (v.is_array())
        o.node.attrs[k] = strings_attr(v.get<std::vector<std::string>>());
      else if (v.is_number_integer())
        o.node.attrs[k] = ir::Attribute::of(v.get<int64_t>());
      else
        o.node.attrs[k] = ir::Attribute::of(v.get<float>());
    }
    for (size_t i = 0; i < c["inputs"].size(); ++i) {
      const auto& t = c["inputs"][i];
      o.node.inputs.push_back(t.is_null() ? "" : names[i]);
      if (!t.is_null()) o.inputs.emplace_back(names[i], tensor_of(t));
    }
    for (int pass = 0; pass < 2; ++pass) {  // weights packed per run, then in prepare
      if (pass == 1) o.constants = {"W", "R"};
      const std::vector<Tensor> got = o.run();
      double err = 0, ref = 0;
      for (size_t k = 0; k < 3; ++k) {
        const Tensor want = tensor_of({{"type", "float32"},
                                       {"shape", c["outputs"][k]["shape"]},
                                       {"data", c["outputs"][k]["data"]}});
        ASSERT_EQ(got[k].shape(), want.shape()) << "output " << k;
        err = std::max(err, max_abs_diff(got[k], want));
        for (int64_t i = 0; i < want.numel(); ++i)
          ref = std::max(ref, static_cast<double>(std::fabs(want.data<float>()[i])));
      }
      if (pass == 0)
        std::printf("  %-72s max |qforge - ORT| %.2e (outputs up to %.2f)\n", name.c_str(), err,
                    ref);
      // Both compute in float32 with their own exp / tanh and summation order.
      EXPECT_LE(err, 2e-5);
    }
  }
}

// ---- bad input ----

struct BadCase {
  Spec s;
  Data d;
  QWeight w, r;
  BadCase(const std::string& op) {
    s.op = op;
    s.direction = "bidirectional";
    d = make_data(s, 7);
    w = quantize_weight(d.W, true, DType::kI8);
    r = quantize_weight(d.R, true, DType::kI8);
  }
  OneNode node() const { return quantized_node(s, d, w, r); }
  static void set(OneNode& o, const std::string& name, Tensor t) {
    for (auto& [n, v] : o.inputs)
      if (n == name) v = std::move(t);
  }
};

TEST(DynamicQuantizeLstm, BadInputsNameTheNode) {
  for (const std::string op : {"LSTM", "GRU"}) {
    SCOPED_TRACE(op);
    BadCase bc(op);
    ASSERT_NO_THROW(bc.node().run());
    const int64_t D = 2, GH = gates(bc.s) * bc.s.hidden;
    {  // W in ONNX's layout [dirs, G*H, input] instead of [dirs, input, G*H]
      OneNode o = bc.node();
      BadCase::set(o, "W", Tensor(DType::kI8, {D, GH, bc.s.input}));
      expect_error([&] { o.run(); }, {"node 'qrnn'", "input W", shape_str({D, bc.s.input, GH})});
      o.constants = {"W"};  // prepare leaves it to run, which says the same
      expect_error([&] { o.run(); }, {"node 'qrnn'", "input W"});
    }
    {  // R with the wrong hidden size
      OneNode o = bc.node();
      BadCase::set(o, "R", Tensor(DType::kI8, {D, bc.s.hidden + 1, GH}));
      expect_error([&] { o.run(); }, {"node 'qrnn'", "input R"});
    }
    {  // one scale too many
      OneNode o = bc.node();
      BadCase::set(o, "W_scale", Tensor(DType::kF32, {D, GH + 1}));
      expect_error([&] { o.run(); },
                   {"node 'qrnn'", "W_scale", "(per direction) or", "(per column)"});
    }
    {  // per tensor, but one scale for two directions
      OneNode o = bc.node();
      BadCase::set(o, "R_scale", Tensor::from<float>({1}, {0.01f}));
      expect_error([&] { o.run(); }, {"node 'qrnn'", "R_scale", "[2]"});
    }
    {  // zero point of another type than its weight
      OneNode o = bc.node();
      BadCase::set(o, "R_zero_point", Tensor(DType::kU8, {D, GH}));
      expect_error([&] { o.run(); }, {"node 'qrnn'", "R_zero_point", "u8"});
    }
    {  // float weights
      OneNode o = bc.node();
      BadCase::set(o, "W", bc.d.W);
      expect_error([&] { o.run(); }, {"node 'qrnn'", "input W", "f32"});
    }
  }
}

TEST(DynamicQuantizeLstm, NonFiniteActivationsAreAnError) {
  BadCase bc("LSTM");
  OneNode o = bc.node();
  Tensor X = bc.d.X.clone();
  X.data<float>()[3] = std::nanf("");
  BadCase::set(o, "X", X);
  expect_error([&] { o.run(); }, {"node 'qrnn'", "input X", "NaN or Inf"});
}

}  // namespace
}  // namespace qforge
