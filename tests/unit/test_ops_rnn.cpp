// RNN, GRU and LSTM (src/ops/rnn.cpp) beyond what ONNX's backend test data
// covers (it has no reverse or bidirectional layers, no ragged
// sequence_lens, no clip or non-default activations).
//
// Reference: the equations of the ONNX operator spec (RNN/GRU/LSTM doc
// strings, opset 14), implemented below as a plain double-precision loop
// over time, batch and units (`reference`), independent of the kernel's
// GEMM-based structure; plus a hand-computed example and numpy/C library
// values for the activations.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/session.h"
#include "test_util.h"

namespace qforge {
namespace {

using test::random_floats;

using test::expect_error;

ir::Attribute strings_attr(std::vector<std::string> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kStrings;
  a.strings = std::move(v);
  return a;
}

using test::OneNode;

// ---- the reference: the spec's equations, in double ----

struct Spec {
  std::string op = "LSTM";  // RNN, GRU, LSTM
  std::string direction = "forward";
  int64_t layout = 0;
  int64_t seq = 3, batch = 2, input = 4, hidden = 3;
  float clip = 0;
  bool input_forget = false;
  bool linear_before_reset = false;
  std::vector<std::string> acts;  // empty: the defaults
  std::vector<float> alpha, beta;
  bool with_b = true, with_lens = false, with_h0 = false, with_c0 = false, with_p = false;
  std::vector<int32_t> lens;
};

int64_t gates(const Spec& s) {
  return s.op == "RNN" ? 1 : s.op == "GRU" ? 3 : 4;
}
int64_t dirs(const Spec& s) {
  return s.direction == "bidirectional" ? 2 : 1;
}

struct Data {
  Tensor X, W, R, B, lens, h0, c0, P;
};

Data make_data(const Spec& s, uint32_t seed) {
  const int64_t D = dirs(s), G = gates(s), H = s.hidden;
  Data d;
  const Shape xs = s.layout == 0 ? Shape{s.seq, s.batch, s.input} : Shape{s.batch, s.seq, s.input};
  const Shape st = s.layout == 0 ? Shape{D, s.batch, H} : Shape{s.batch, D, H};
  auto rnd = [&](Shape sh, uint32_t k) {
    return Tensor::from(sh,
                        random_floats(static_cast<size_t>(shape_numel(sh)), -1.0f, 1.0f, seed + k));
  };
  d.X = rnd(xs, 1);
  d.W = rnd({D, G * H, s.input}, 2);
  d.R = rnd({D, G * H, H}, 3);
  d.B = rnd({D, 2 * G * H}, 4);
  d.h0 = rnd(st, 5);
  d.c0 = rnd(st, 6);
  d.P = rnd({D, 3 * H}, 7);
  std::vector<int32_t> l = s.lens;
  if (l.empty()) l.assign(static_cast<size_t>(s.batch), static_cast<int32_t>(s.seq));
  d.lens = Tensor::from({s.batch}, l);
  return d;
}

double act(const std::string& name, double x, double a, double b) {
  if (name == "Sigmoid") return 1.0 / (1.0 + std::exp(-x));
  if (name == "Tanh") return std::tanh(x);
  if (name == "Relu") return x > 0 ? x : 0;
  if (name == "Affine") return a * x + b;
  if (name == "LeakyRelu") return x >= 0 ? x : a * x;
  if (name == "ThresholdedRelu") return x > a ? x : 0;
  if (name == "ScaledTanh") return a * std::tanh(b * x);
  if (name == "HardSigmoid") return std::max(0.0, std::min(1.0, a * x + b));
  if (name == "Elu") return x >= 0 ? x : a * (std::exp(x) - 1);
  if (name == "Softsign") return x / (1 + std::fabs(x));
  if (name == "Softplus") return std::log(1 + std::exp(x));
  ADD_FAILURE() << "unknown activation " << name;
  return 0;
}

struct RefAct {
  std::string name;
  double a = 0, b = 0;
};

// The activations per direction with their alpha/beta, consumed in order by
// the functions that take them (the spec's "consumed in the order of
// activation functions"), defaults those of the ONNX ops.
std::vector<RefAct> ref_acts(const Spec& s) {
  std::vector<std::string> names = s.acts;
  const size_t per = s.op == "RNN" ? 1 : s.op == "GRU" ? 2 : 3;
  if (names.empty()) {
    for (int64_t d = 0; d < dirs(s); ++d) {
      if (s.op == "LSTM") names.insert(names.end(), {"Sigmoid", "Tanh", "Tanh"});
      if (s.op == "GRU") names.insert(names.end(), {"Sigmoid", "Tanh"});
      if (s.op == "RNN") names.insert(names.end(), {"Tanh"});
    }
  }
  EXPECT_EQ(names.size(), per * static_cast<size_t>(dirs(s)));
  std::vector<RefAct> r;
  size_t ai = 0, bi = 0;
  for (const auto& n : names) {
    RefAct x{n};
    const bool ta = n == "Affine" || n == "LeakyRelu" || n == "ThresholdedRelu" ||
                    n == "ScaledTanh" || n == "HardSigmoid" || n == "Elu";
    const bool tb = n == "Affine" || n == "ScaledTanh" || n == "HardSigmoid";
    x.a = n == "LeakyRelu" ? 0.01 : n == "HardSigmoid" ? 0.2 : 1.0;
    x.b = n == "HardSigmoid" ? 0.5 : n == "ScaledTanh" ? 1.0 : 0.0;
    if (ta && ai < s.alpha.size()) x.a = s.alpha[ai++];
    if (tb && bi < s.beta.size()) x.b = s.beta[bi++];
    r.push_back(x);
  }
  return r;
}

struct Ref {
  std::vector<double> Y, Yh, Yc;  // in the layout's order
};

Ref reference(const Spec& s, const Data& d) {
  const int64_t D = dirs(s), G = gates(s), H = s.hidden, I = s.input, S = s.seq, N = s.batch;
  const float* X = d.X.data<float>();
  const float* W = d.W.data<float>();
  const float* R = d.R.data<float>();
  const float* B = d.B.data<float>();
  const float* P = d.P.data<float>();
  const auto acts = ref_acts(s);
  const size_t per = acts.size() / static_cast<size_t>(D);
  Ref r;
  r.Y.assign(static_cast<size_t>(S * D * N * H), 0.0);
  r.Yh.assign(static_cast<size_t>(D * N * H), 0.0);
  r.Yc.assign(static_cast<size_t>(D * N * H), 0.0);
  auto x_at = [&](int64_t t, int64_t b, int64_t i) {
    return static_cast<double>(s.layout == 0 ? X[(t * N + b) * I + i] : X[(b * S + t) * I + i]);
  };
  auto st_idx = [&](int64_t dd, int64_t b, int64_t j) {
    return static_cast<size_t>(s.layout == 0 ? (dd * N + b) * H + j : (b * D + dd) * H + j);
  };
  auto y_idx = [&](int64_t t, int64_t dd, int64_t b, int64_t j) {
    return static_cast<size_t>(s.layout == 0 ? ((t * D + dd) * N + b) * H + j
                                             : ((b * S + t) * D + dd) * H + j);
  };
  auto clipv = [&](double v) {
    return s.clip > 0 ? std::max<double>(-s.clip, std::min<double>(s.clip, v)) : v;
  };
  for (int64_t dd = 0; dd < D; ++dd) {
    const bool rev = s.direction == "reverse" || dd == 1;
    const RefAct* a = &acts[static_cast<size_t>(dd) * per];
    auto f = [&](int k, double v) { return act(a[k].name, clipv(v), a[k].a, a[k].b); };
    const float* Wd = W + dd * G * H * I;
    const float* Rd = R + dd * G * H * H;
    const float* Wb = B + dd * 2 * G * H;
    const float* Rb = Wb + G * H;
    const float* Pd = P + dd * 3 * H;
    for (int64_t b = 0; b < N; ++b) {
      const int64_t len = s.with_lens ? d.lens.data<int32_t>()[b] : S;
      std::vector<double> h(static_cast<size_t>(H), 0.0), c(static_cast<size_t>(H), 0.0);
      for (int64_t j = 0; j < H; ++j) {
        if (s.with_h0) h[static_cast<size_t>(j)] = d.h0.data<float>()[st_idx(dd, b, j)];
        if (s.with_c0) c[static_cast<size_t>(j)] = d.c0.data<float>()[st_idx(dd, b, j)];
      }
      for (int64_t step = 0; step < len; ++step) {
        const int64_t t = rev ? len - 1 - step : step;
        // xw[g*H + j] = Xt . W_g,j + Wb ; hr[g*H + j] = H_{t-1} . R_g,j + Rb
        std::vector<double> xw(static_cast<size_t>(G * H)), hr(static_cast<size_t>(G * H));
        for (int64_t k = 0; k < G * H; ++k) {
          double sx = s.with_b ? Wb[k] : 0.0, sh = s.with_b ? Rb[k] : 0.0;
          for (int64_t i = 0; i < I; ++i) sx += x_at(t, b, i) * Wd[k * I + i];
          for (int64_t i = 0; i < H; ++i) sh += h[static_cast<size_t>(i)] * Rd[k * H + i];
          xw[static_cast<size_t>(k)] = sx;
          hr[static_cast<size_t>(k)] = sh;
        }
        std::vector<double> hn(static_cast<size_t>(H));
        for (int64_t j = 0; j < H; ++j) {
          const size_t u = static_cast<size_t>(j);
          auto g = [&](int64_t gate) { return static_cast<size_t>(gate * H + j); };
          if (s.op == "RNN") {
            hn[u] = f(0, xw[u] + hr[u]);
          } else if (s.op == "GRU") {
            // after this loop: h needs every r_j
          } else {
            const double pi = s.with_p ? Pd[j] : 0.0, po = s.with_p ? Pd[H + j] : 0.0,
                         pf = s.with_p ? Pd[2 * H + j] : 0.0;
            const double it = f(0, xw[g(0)] + hr[g(0)] + pi * c[u]);
            const double ft = s.input_forget ? 1 - it : f(0, xw[g(2)] + hr[g(2)] + pf * c[u]);
            const double ct = f(1, xw[g(3)] + hr[g(3)]);
            const double C = ft * c[u] + it * ct;
            const double ot = f(0, xw[g(1)] + hr[g(1)] + po * C);
            hn[u] = ot * act(a[2].name, C, a[2].a, a[2].b);
            c[u] = C;
          }
        }
        if (s.op == "GRU") {
          std::vector<double> z(static_cast<size_t>(H)), rr(static_cast<size_t>(H));
          for (int64_t j = 0; j < H; ++j) {
            const size_t u = static_cast<size_t>(j), v = static_cast<size_t>(H + j);
            z[u] = f(0, xw[u] + hr[u]);
            rr[u] = f(0, xw[v] + hr[v]);
          }
          for (int64_t j = 0; j < H; ++j) {
            const size_t u = static_cast<size_t>(j), v = static_cast<size_t>(2 * H + j);
            double pre;
            if (s.linear_before_reset) {
              pre = xw[v] + rr[u] * hr[v];  // rt (.) (Ht-1*Rh^T + Rbh)
            } else {
              pre = xw[v] + (s.with_b ? Rb[2 * H + j] : 0.0);  // (rt (.) Ht-1)*Rh^T + Rbh
              for (int64_t i = 0; i < H; ++i)
                pre += rr[static_cast<size_t>(i)] * h[static_cast<size_t>(i)] *
                       Rd[(2 * H + j) * H + i];
            }
            hn[u] = (1 - z[u]) * f(1, pre) + z[u] * h[u];
          }
        }
        h = hn;
        for (int64_t j = 0; j < H; ++j) r.Y[y_idx(t, dd, b, j)] = h[static_cast<size_t>(j)];
      }
      for (int64_t j = 0; j < H; ++j) {  // zero for an empty sequence (ONNX Runtime's choice)
        r.Yh[st_idx(dd, b, j)] = len == 0 ? 0.0 : h[static_cast<size_t>(j)];
        r.Yc[st_idx(dd, b, j)] = len == 0 ? 0.0 : c[static_cast<size_t>(j)];
      }
    }
  }
  return r;
}

OneNode make_node(const Spec& s, const Data& d) {
  OneNode n;
  n.node.name = "rnn0";
  n.node.op_type = s.op;
  n.node.inputs = {
      "X", "W", "R", s.with_b ? "B" : "", s.with_lens ? "lens" : "", s.with_h0 ? "h0" : ""};
  if (s.op == "LSTM") {
    n.node.inputs.push_back(s.with_c0 ? "c0" : "");
    n.node.inputs.push_back(s.with_p ? "P" : "");
  }
  while (!n.node.inputs.empty() && n.node.inputs.back().empty()) n.node.inputs.pop_back();
  n.node.outputs = {"Y", "Y_h"};
  if (s.op == "LSTM") n.node.outputs.push_back("Y_c");
  n.node.attrs["hidden_size"] = ir::Attribute::of(s.hidden);
  n.node.attrs["direction"] = ir::Attribute::of(s.direction);
  if (s.layout) n.node.attrs["layout"] = ir::Attribute::of(s.layout);
  if (s.clip > 0) n.node.attrs["clip"] = ir::Attribute::of(s.clip);
  if (s.input_forget) n.node.attrs["input_forget"] = ir::Attribute::of(int64_t{1});
  if (s.linear_before_reset) n.node.attrs["linear_before_reset"] = ir::Attribute::of(int64_t{1});
  if (!s.acts.empty()) n.node.attrs["activations"] = strings_attr(s.acts);
  if (!s.alpha.empty()) n.node.attrs["activation_alpha"] = ir::Attribute::of(s.alpha);
  if (!s.beta.empty()) n.node.attrs["activation_beta"] = ir::Attribute::of(s.beta);
  n.inputs = {{"X", d.X}, {"W", d.W}, {"R", d.R}};
  if (s.with_b) n.inputs.emplace_back("B", d.B);
  if (s.with_lens) n.inputs.emplace_back("lens", d.lens);
  if (s.with_h0) n.inputs.emplace_back("h0", d.h0);
  if (s.op == "LSTM" && s.with_c0) n.inputs.emplace_back("c0", d.c0);
  if (s.op == "LSTM" && s.with_p) n.inputs.emplace_back("P", d.P);
  return n;
}

void expect_near_all(const Tensor& got, const std::vector<double>& want, double tol,
                     const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  const float* g = got.data<float>();
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(g[i], want[i], tol * (1 + std::fabs(want[i]))) << what << " element " << i;
}

// Runs the spec on both the runtime-packed path (weights as inputs) and the
// prepared path (weights as initializers), and compares with the reference.
void check_against_reference(const Spec& s, uint32_t seed, int threads = 1) {
  const Data d = make_data(s, seed);
  const Ref want = reference(s, d);
  for (bool consts : {false, true}) {
    OneNode n = make_node(s, d);
    if (consts) n.constants = {"W", "R", "B"};
    const std::vector<Tensor> out = n.run(threads);
    ASSERT_EQ(out.size(), s.op == "LSTM" ? 3u : 2u);
    const std::string what = s.op + " " + s.direction + (consts ? " (prepared)" : "");
    const int64_t D = dirs(s);
    EXPECT_EQ(out[0].shape(), (s.layout == 0 ? Shape{s.seq, D, s.batch, s.hidden}
                                             : Shape{s.batch, s.seq, D, s.hidden}));
    expect_near_all(out[0], want.Y, 1e-5, what + " Y");
    expect_near_all(out[1], want.Yh, 1e-5, what + " Y_h");
    if (s.op == "LSTM") expect_near_all(out[2], want.Yc, 1e-5, what + " Y_c");
  }
}

// ---- tests ----

// Hand-computed: RNN, one unit, W = 0.5, R = 0.25, B = 0, X = [1, 2]:
// h1 = tanh(0.5), h2 = tanh(2 * 0.5 + 0.25 * h1) (the spec's
// Ht = f(Xt*Wi^T + Ht-1*Ri^T + Wbi + Rbi)).
TEST(RnnOp, HandComputedTwoSteps) {
  OneNode n;
  n.node.name = "rnn";
  n.node.op_type = "RNN";
  n.node.inputs = {"X", "W", "R"};
  n.node.outputs = {"Y", "Y_h"};
  n.node.attrs["hidden_size"] = ir::Attribute::of(int64_t{1});
  n.inputs = {{"X", Tensor::from<float>({2, 1, 1}, {1, 2})},
              {"W", Tensor::from<float>({1, 1, 1}, {0.5f})},
              {"R", Tensor::from<float>({1, 1, 1}, {0.25f})}};
  const auto out = n.run();
  const double h1 = std::tanh(0.5), h2 = std::tanh(1.0 + 0.25 * h1);
  ASSERT_EQ(out[0].shape(), (Shape{2, 1, 1, 1}));
  EXPECT_NEAR(out[0].data<float>()[0], h1, 1e-6);
  EXPECT_NEAR(out[0].data<float>()[1], h2, 1e-6);
  EXPECT_NEAR(out[1].data<float>()[0], h2, 1e-6);
}

// The spec's LSTM equations (with peepholes, initial_h/c) in each direction;
// bidirectional concatenates forward and reverse along num_directions.
TEST(RnnOp, LstmAllDirectionsAgainstSpec) {
  for (const char* dir : {"forward", "reverse", "bidirectional"}) {
    Spec s;
    s.direction = dir;
    s.with_h0 = s.with_c0 = s.with_p = true;
    check_against_reference(s, 10);
  }
}

// sequence_lens: outputs past each length are zero, Y_h/Y_c are taken at the
// last valid step; reverse runs each sequence backwards within its length.
TEST(RnnOp, LstmRaggedSequenceLens) {
  Spec s;
  s.direction = "bidirectional";
  s.seq = 5;
  s.batch = 4;
  s.with_lens = s.with_h0 = s.with_c0 = s.with_p = true;
  s.lens = {5, 2, 0, 3};
  check_against_reference(s, 20);
  // And Y really is zero past the length (not just equal to the reference).
  const Data d = make_data(s, 20);
  const auto out = make_node(s, d).run();
  const float* y = out[0].data<float>();
  for (int64_t t = 2; t < 5; ++t)
    for (int64_t dd = 0; dd < 2; ++dd)
      for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(y[((t * 2 + dd) * 4 + 1) * 3 + j], 0.0f);
  // Length 0: Y_h and Y_c are zero (the spec is silent; ONNX Runtime's
  // choice, which the reference below follows too).
  for (int64_t dd = 0; dd < 2; ++dd)
    for (int64_t j = 0; j < 3; ++j) {
      EXPECT_EQ(out[1].data<float>()[(dd * 4 + 2) * 3 + j], 0.0f);
      EXPECT_EQ(out[2].data<float>()[(dd * 4 + 2) * 3 + j], 0.0f);
    }
}

// input_forget couples f = 1 - i; clip bounds each gate's input; layout 1
// is [batch, seq, ...] (spec, opset 14): all against the reference.
TEST(RnnOp, LstmInputForgetClipAndLayout1) {
  Spec s;
  s.direction = "bidirectional";
  s.layout = 1;
  s.clip = 0.7f;
  s.input_forget = true;
  s.with_lens = s.with_h0 = s.with_c0 = true;
  s.lens = {3, 1};
  check_against_reference(s, 30);
}

// The spec's two GRU forms of h: (r . H) Rh^T + Rbh (linear_before_reset 0)
// and r . (H Rh^T + Rbh) (1), in each direction.
TEST(RnnOp, GruBothResetModes) {
  for (bool lbr : {false, true})
    for (const char* dir : {"forward", "reverse", "bidirectional"}) {
      Spec s;
      s.op = "GRU";
      s.direction = dir;
      s.linear_before_reset = lbr;
      s.with_h0 = true;
      check_against_reference(s, 40);
    }
}

// GRU with ragged lengths, layout 1, and B absent (the spec: "If not
// specified - assumed to be 0").
TEST(RnnOp, GruRaggedLayout1NoBias) {
  Spec s;
  s.op = "GRU";
  s.direction = "bidirectional";
  s.layout = 1;
  s.seq = 4;
  s.batch = 3;
  s.with_b = false;
  s.with_lens = true;
  s.lens = {1, 4, 2};
  check_against_reference(s, 50);
  s.linear_before_reset = true;
  s.with_b = true;
  check_against_reference(s, 51);
}

// RNN Ht = f(clip(Xt Wi^T + Ht-1 Ri^T + Wbi + Rbi)) with f = Relu, reversed.
TEST(RnnOp, RnnReverseReluClip) {
  Spec s;
  s.op = "RNN";
  s.direction = "reverse";
  s.acts = {"Relu"};
  s.clip = 0.5f;
  s.with_h0 = true;
  check_against_reference(s, 60);
}

// Activations with parameters: alpha/beta consumed in order by the functions
// that take them; defaults from the ONNX ops (LeakyRelu alpha 0.01, ...).
TEST(RnnOp, ParameterisedActivations) {
  Spec s;
  s.direction = "bidirectional";
  s.acts = {"HardSigmoid", "LeakyRelu", "ScaledTanh", "Sigmoid", "Softsign", "Affine"};
  s.alpha = {0.3f, 0.1f, 1.5f, 0.7f};
  s.beta = {0.4f, 0.8f, 0.2f};
  s.with_h0 = s.with_c0 = true;
  check_against_reference(s, 70);
  Spec g;
  g.op = "GRU";
  g.direction = "bidirectional";
  g.acts = {"Sigmoid", "Elu", "HardSigmoid", "Softplus"};  // Elu, HardSigmoid: defaults
  check_against_reference(g, 71);
  Spec r;
  r.op = "RNN";
  r.acts = {"ThresholdedRelu"};
  r.alpha = {0.2f};
  check_against_reference(r, 72);
}

// Sizes that take the GEMM's blocked paths (batch > 1, hidden not a
// multiple of the register tile) on several threads.
TEST(RnnOp, LargerShapesOnThreads) {
  Spec s;
  s.direction = "bidirectional";
  s.seq = 6;
  s.batch = 5;
  s.input = 19;
  s.hidden = 37;
  s.with_h0 = s.with_c0 = s.with_p = s.with_lens = true;
  s.lens = {6, 3, 6, 1, 5};
  check_against_reference(s, 80, 4);
  s.op = "GRU";
  check_against_reference(s, 81, 4);
}

// The fast tanh/sigmoid against the C library, through an RNN whose output
// is f(x): W = identity, R = 0, no bias.
TEST(RnnOp, ActivationAccuracy) {
  std::vector<float> xs = {0.0f,   1e-8f, -1e-6f, 1e-3f,  0.1f,  -0.39f, 0.4f,
                           0.41f,  -0.9f, 1.0f,   2.5f,   -5.0f, 9.0f,   15.0f,
                           -20.0f, 44.0f, -90.0f, 100.0f, 1e30f, -1e30f};
  for (int i = -400; i <= 400; ++i) xs.push_back(static_cast<float>(i) * 0.025f);
  const int64_t H = static_cast<int64_t>(xs.size());
  std::vector<float> eye(static_cast<size_t>(H * H), 0.0f), zero(static_cast<size_t>(H * H), 0.0f);
  for (int64_t i = 0; i < H; ++i) eye[static_cast<size_t>(i * H + i)] = 1.0f;
  for (const char* a : {"Tanh", "Sigmoid"}) {
    OneNode n;
    n.node.name = "act";
    n.node.op_type = "RNN";
    n.node.inputs = {"X", "W", "R"};
    n.node.outputs = {"Y"};
    n.node.attrs["activations"] = strings_attr({a});
    n.inputs = {{"X", Tensor::from({1, 1, H}, xs)},
                {"W", Tensor::from({1, H, H}, eye)},
                {"R", Tensor::from({1, H, H}, zero)}};
    const auto out = n.run();
    for (int64_t i = 0; i < H; ++i) {
      const double x = xs[static_cast<size_t>(i)];
      const double want = std::string(a) == "Tanh" ? std::tanh(x) : 1.0 / (1.0 + std::exp(-x));
      EXPECT_NEAR(out[0].data<float>()[i], want, 1e-30 + 4e-7 * std::fabs(want))
          << a << "(" << x << ")";
    }
  }
}

// IEEE semantics (as numpy's tanh/sigmoid): a NaN input gives NaN outputs,
// not a clamped finite value.
TEST(RnnOp, NanPropagates) {
  OneNode n;
  n.node.name = "nan";
  n.node.op_type = "LSTM";
  n.node.inputs = {"X", "W", "R"};
  n.node.outputs = {"Y"};
  n.node.attrs["hidden_size"] = ir::Attribute::of(int64_t{1});
  n.inputs = {{"X", Tensor::from<float>({1, 1, 1}, {std::numeric_limits<float>::quiet_NaN()})},
              {"W", Tensor::from<float>({1, 4, 1}, {1, 1, 1, 1})},
              {"R", Tensor::from<float>({1, 4, 1}, {0, 0, 0, 0})}};
  EXPECT_TRUE(std::isnan(n.run()[0].data<float>()[0]));
}

// Optional outputs (the spec: every output is optional): only Y_c wanted.
TEST(RnnOp, OptionalOutputs) {
  Spec s;
  s.with_h0 = s.with_c0 = true;
  const Data d = make_data(s, 90);
  const Ref want = reference(s, d);
  OneNode n = make_node(s, d);
  n.node.outputs = {"", "", "Y_c"};
  const auto out = n.run();
  ASSERT_EQ(out.size(), 1u);
  expect_near_all(out[0], want.Yc, 1e-5, "Y_c only");
}

// Zero-length sequence: Y is [0, dirs, batch, H], Y_h is zero.
TEST(RnnOp, EmptySequence) {
  Spec s;
  s.op = "GRU";
  s.seq = 0;
  s.with_h0 = true;
  const Data d = make_data(s, 95);
  const auto out = make_node(s, d).run();
  EXPECT_EQ(out[0].shape(), (Shape{0, 1, 2, 3}));
  EXPECT_EQ(out[1].shape(), (Shape{1, 2, 3}));
  for (int64_t i = 0; i < out[1].numel(); ++i) EXPECT_EQ(out[1].data<float>()[i], 0.0f);
}

// ---- shape inference (symbolic) ----

ir::ValueInfo vi(DType dt, ir::SymShape s) {
  return ir::ValueInfo{dt, std::move(s)};
}

// Output shapes from the spec: Y [seq, dirs, batch, H] (layout 0) or
// [batch, seq, dirs, H] (layout 1), Y_h/Y_c [dirs, batch, H] or [batch, dirs, H].
TEST(RnnInfer, SymbolicShapes) {
  const ops::OpDef* def = ops::OpRegistry::global().find("", "LSTM", 14);
  ASSERT_TRUE(def);
  ir::Node n;
  n.name = "l";
  n.op_type = "LSTM";
  n.inputs = {"X", "W", "R"};
  n.outputs = {"Y", "Y_h", "Y_c"};
  n.attrs["direction"] = ir::Attribute::of(std::string("bidirectional"));
  const ir::ValueInfo x = vi(DType::kF32, {ir::Dim::sym("T"), ir::Dim::sym("N"), 4});
  const ir::ValueInfo w = vi(DType::kF32, {2, 20, 4});
  const ir::ValueInfo r = vi(DType::kF32, {2, 20, 5});
  {
    ops::InferContext c(n, 14, {&x, &w, &r}, {nullptr, nullptr, nullptr});
    def->infer(c);
    EXPECT_EQ(c.output(0).str(), "f32[T, 2, N, 5]");
    EXPECT_EQ(c.output(1).str(), "f32[2, N, 5]");
    EXPECT_EQ(c.output(2).str(), "f32[2, N, 5]");
  }
  n.attrs["layout"] = ir::Attribute::of(int64_t{1});
  n.attrs["hidden_size"] = ir::Attribute::of(int64_t{5});
  const ir::ValueInfo xb = vi(DType::kF32, {ir::Dim::sym("N"), ir::Dim::sym("T"), 4});
  {
    ops::InferContext c(n, 14, {&xb, &w, &r}, {nullptr, nullptr, nullptr});
    def->infer(c);
    EXPECT_EQ(c.output(0).str(), "f32[N, T, 2, 5]");
    EXPECT_EQ(c.output(1).str(), "f32[N, 2, 5]");
  }
  // Unknown X shape and R: rank known, dimensions unknown; H from W (20 / 4).
  const ir::ValueInfo unknown;
  n.attrs.erase("layout");
  n.attrs.erase("hidden_size");
  {
    ops::InferContext c(n, 14, {&unknown, &w, &unknown}, {nullptr, nullptr, nullptr});
    def->infer(c);
    EXPECT_EQ(c.output(0).str(), "?[?, 2, ?, 5]");
  }
  // GRU: H from R's last dimension; before opset 14, layout does not exist.
  const ops::OpDef* gru = ops::OpRegistry::global().find("", "GRU", 7);
  ASSERT_TRUE(gru);
  ir::Node g = n;
  g.op_type = "GRU";
  g.outputs = {"Y", "Y_h"};
  g.attrs.erase("direction");
  const ir::ValueInfo gw = vi(DType::kF32, {1, 9, 4}), gr = vi(DType::kF32, {1, 9, 3});
  ops::InferContext c(g, 7, {&x, &gw, &gr}, {nullptr, nullptr, nullptr});
  gru->infer(c);
  EXPECT_EQ(c.output(0).str(), "f32[T, 1, N, 3]");
  EXPECT_EQ(c.output(1).str(), "f32[1, N, 3]");
}

// The op's check: qforge runs these layers in f32 only, and says so before
// running (ONNX also allows f16 and f64).
TEST(RnnInfer, CheckRefusesNonF32) {
  ir::Node n;
  n.name = "g";
  n.op_type = "GRU";
  n.inputs = {"X", "W", "R"};
  n.outputs = {"Y"};
  const ir::ValueInfo x64 = vi(DType::kF64, {2, 1, 3}), x32 = vi(DType::kF32, {2, 1, 3});
  ops::InferContext bad(n, 14, {&x64, &x64, &x64}, {nullptr, nullptr, nullptr});
  EXPECT_NE(ops::unsupported_reason(n, 14, &bad).find("f32 only"), std::string::npos);
  ops::InferContext good(n, 14, {&x32, &x32, &x32}, {nullptr, nullptr, nullptr});
  EXPECT_EQ(ops::unsupported_reason(n, 14, &good), "");
}

// ---- bad input: a qforge::Error naming the node, never a crash ----

TEST(RnnErrors, BadInputs) {
  Spec s;
  const Data d = make_data(s, 100);
  auto with = [&](auto edit) {
    OneNode n = make_node(s, d);
    edit(n);
    return n;
  };
  expect_error(
      [&] { with([](OneNode& n) {
              n.inputs[1].second = Tensor(DType::kF32, {1, 12, 5});
            }).run(); },
      "input W has shape [1, 12, 5]");
  expect_error(
      [&] { with([](OneNode& n) {
              n.inputs[2].second = Tensor(DType::kF32, {1, 12});
            }).run(); },
      "input R has shape");
  expect_error(
      [&] { with([](OneNode& n) {
              n.inputs[0].second = Tensor(DType::kF32, {3, 2});
            }).run(); },
      "input X has shape");
  expect_error(
      [&] { with([](OneNode& n) {
              n.inputs[3].second = Tensor(DType::kF32, {1, 23});
            }).run(); },
      "input B has shape");
  expect_error(
      [&] { with([](OneNode& n) {
              n.inputs[0].second = Tensor(DType::kF64, {3, 2, 4});
            }).run(); },
      "input X is f64");
  expect_error(
      [&] {
        with([](OneNode& n) {
          n.node.attrs["direction"] = ir::Attribute::of(std::string("sideways"));
        }).run();
      },
      "direction 'sideways'");
  expect_error(
      [&] {
        with([](OneNode& n) {
          n.node.attrs["activations"] = strings_attr({"Sigmoid", "Tanh", "Cube"});
        }).run();
      },
      "activation 'Cube'");
  expect_error(
      [&] {
        with([](OneNode& n) { n.node.attrs["activations"] = strings_attr({"Sigmoid"}); }).run();
      },
      "has 1 activations");
  expect_error(
      [&] {
        with([](OneNode& n) { n.node.attrs["hidden_size"] = ir::Attribute::of(int64_t{4}); }).run();
      },
      "has shape");
  expect_error(
      [&] { with([](OneNode& n) { n.node.attrs["clip"] = ir::Attribute::of(-1.0f); }).run(); },
      "clip");
  // sequence_lens beyond the sequence, negative, or of the wrong size.
  for (const std::vector<int32_t>& l : {std::vector<int32_t>{4, 1}, std::vector<int32_t>{-1, 1}}) {
    expect_error(
        [&] {
          with([&](OneNode& n) {
            n.node.inputs = {"X", "W", "R", "B", "lens"};
            n.inputs.emplace_back("lens", Tensor::from<int32_t>({2}, l));
          }).run();
        },
        "sequence_lens");
  }
  expect_error(
      [&] {
        with([&](OneNode& n) {
          n.node.inputs = {"X", "W", "R", "B", "lens"};
          n.inputs.emplace_back("lens", Tensor::from<int32_t>({3}, {1, 1, 1}));
        }).run();
      },
      "input sequence_lens has shape [3]");
  expect_error(
      [&] {
        with([&](OneNode& n) {
          n.node.inputs = {"X", "W", "R", "", "", "h0"};
          n.inputs.resize(3);
          n.inputs.emplace_back("h0", Tensor(DType::kF32, {1, 3, 3}));
        }).run();
      },
      "input initial_h has shape [1, 3, 3]");
  // R missing altogether.
  expect_error(
      [&] {
        with([&](OneNode& n) {
          n.node.inputs = {"X", "W"};
          n.inputs.resize(2);
        }).run();
      },
      "has no input 2");
}

}  // namespace
}  // namespace qforge
