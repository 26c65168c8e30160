// The neural-network ops (src/ops/nn*.cpp) beyond ONNX's backend test data:
// Conv / ConvTranspose / pooling on random data against direct loops written
// from the ONNX spec's formulas (every path: im2col in chunks, 1x1 direct,
// depthwise 3x3 / 5x5 / strided, groups, 1-D and 3-D, packed and unpacked
// weights, one and several threads), Gemm's C broadcasting, MatMul's numpy
// semantics (1-D operands, broadcast batches), Softmax before and after
// opset 13, the normalizations, symbolic shape inference, and bad input (a
// qforge::Error naming the node, never a crash).
//
// References: the ONNX operator spec (ONNX 1.12 Operators.md: the doc
// strings of each op, quoted in the tests), numpy semantics for MatMul and
// broadcasting, and hand-computed examples where noted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/session.h"
#include "test_util.h"

namespace qforge {
namespace {

using ints = std::vector<int64_t>;
using floats = std::vector<float>;

using test::expect_error;

ir::Node make_node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
  ir::Node n;
  n.name = op + "0";
  n.op_type = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

// A model of one node; `feed` are graph inputs, `consts` initializers (so
// prepare sees them as constants and packs them).
std::vector<Tensor> run(const ir::Node& n, const Session::NamedTensors& feed, int64_t opset = 17,
                        const Session::NamedTensors& consts = {}, int threads = 0) {
  ir::Model m;
  m.opsets[""] = opset;
  m.graph.name = "main";
  for (const auto& [name, t] : feed) {
    m.graph.inputs.push_back(name);
    m.graph.values[name] = ir::ValueInfo{t.dtype(), ir::to_sym(t.shape())};
  }
  for (const auto& [name, t] : consts) m.graph.initializers[name] = t;
  for (const std::string& o : n.outputs)
    if (!o.empty()) m.graph.outputs.push_back(o);
  m.graph.nodes.push_back(n);
  SessionOptions so;
  so.threads = threads;
  Session s(std::move(m), so);
  return s.run(feed);
}

Tensor f32(Shape s, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  return Tensor::from<float>(s, test::random_floats(static_cast<size_t>(shape_numel(s)), lo, hi, seed));
}

floats values(const Tensor& t) { return {t.data<float>(), t.data<float>() + t.numel()}; }

// |got - want| <= atol + rtol * |want| elementwise, with the first mismatch reported.
void expect_close(const Tensor& got, const Tensor& want, double rtol = 1e-4, double atol = 1e-5,
                  const std::string& what = "") {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  for (int64_t i = 0; i < got.numel(); ++i) {
    double g = 0, w = 0;
    if (got.dtype() == DType::kF32) {
      g = got.data<float>()[i];
      w = want.data<float>()[i];
    } else if (got.dtype() == DType::kF64) {
      g = got.data<double>()[i];
      w = want.data<double>()[i];
    } else if (got.dtype() == DType::kI64) {
      g = static_cast<double>(got.data<int64_t>()[i]);
      w = static_cast<double>(want.data<int64_t>()[i]);
    } else if (got.dtype() == DType::kI32) {
      g = got.data<int32_t>()[i];
      w = want.data<int32_t>()[i];
    } else if (got.dtype() == DType::kU8) {
      g = got.data<uint8_t>()[i];
      w = want.data<uint8_t>()[i];
    }
    if (g == w || (std::isnan(w) && std::isnan(g))) continue;
    if (!(std::fabs(g - w) <= atol + rtol * std::fabs(w))) {
      ADD_FAILURE() << what << " element " << i << ": got " << g << ", want " << w;
      return;
    }
  }
}

// Row-major multi-index of a flat index.
ints unravel(int64_t flat, const Shape& s) {
  ints idx(s.size());
  for (size_t i = s.size(); i-- > 0;) {
    idx[i] = flat % s[i];
    flat /= s[i];
  }
  return idx;
}

int64_t ravel(const ints& idx, const Shape& s) {
  int64_t f = 0;
  for (size_t i = 0; i < s.size(); ++i) f = f * s[i] + idx[i];
  return f;
}

// ---- window geometry, from the spec's formulas ----

struct Window {
  ints k, s, d, pb, pe, out;
};

// Conv / pool output sizes (ONNX spec, Conv and MaxPool "auto_pad" and
// "Output shape" text): NOTSET: floor((in + pb + pe - ((k-1)*d+1)) / s) + 1
// (ceil with ceil_mode); SAME_*: ceil(in / s), the total padding split with
// the extra at the end (UPPER) or the beginning (LOWER); VALID: no padding.
Window window(const Shape& in, const ints& k, ints s, ints d, ints pads, const std::string& auto_pad,
              bool ceil_mode = false) {
  const size_t r = in.size();
  if (s.empty()) s.assign(r, 1);
  if (d.empty()) d.assign(r, 1);
  if (pads.empty()) pads.assign(2 * r, 0);
  Window w{k, s, d, ints(r), ints(r), ints(r)};
  for (size_t i = 0; i < r; ++i) {
    const int64_t ext = (k[i] - 1) * d[i] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      w.out[i] = (in[i] + s[i] - 1) / s[i];
      const int64_t total = std::max<int64_t>(0, (w.out[i] - 1) * s[i] + ext - in[i]);
      w.pb[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      w.pe[i] = total - w.pb[i];
    } else {
      w.pb[i] = auto_pad == "VALID" ? 0 : pads[i];
      w.pe[i] = auto_pad == "VALID" ? 0 : pads[r + i];
      const double q = static_cast<double>(in[i] + w.pb[i] + w.pe[i] - ext) / static_cast<double>(s[i]);
      w.out[i] = static_cast<int64_t>(ceil_mode ? std::ceil(q) : std::floor(q)) + 1;
      if (ceil_mode && (w.out[i] - 1) * s[i] >= in[i] + w.pb[i]) --w.out[i];
    }
  }
  return w;
}

// Conv by its definition: y[n, m, o] = b[m] + sum over the group's channels
// c and kernel taps t of x[n, c, o*s + t*d - pb] * w[m, c, t], taps outside
// the input reading zero (padding).
Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor* b, int64_t group, const Window& win) {
  const Shape& xs = x.shape();
  const Shape& ws = w.shape();
  const size_t r = xs.size() - 2;
  const int64_t N = xs[0], C = xs[1], M = ws[0], Cg = C / group, Mg = M / group;
  Shape in(xs.begin() + 2, xs.end()), ks(ws.begin() + 2, ws.end());
  Shape ys = {N, M};
  ys.insert(ys.end(), win.out.begin(), win.out.end());
  Tensor y(DType::kF32, ys);
  const int64_t osz = shape_numel(win.out), ksz = shape_numel(ks), isz = shape_numel(in);
  std::vector<ints> outs, taps;
  for (int64_t p = 0; p < osz; ++p) outs.push_back(unravel(p, win.out));
  for (int64_t q = 0; q < ksz; ++q) taps.push_back(unravel(q, ks));
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t p = 0; p < osz; ++p) {
        const ints& o = outs[static_cast<size_t>(p)];
        double acc = b != nullptr ? b->data<float>()[m] : 0.0;
        const int64_t g = m / Mg;
        for (int64_t q = 0; q < ksz; ++q) {
          const ints& t = taps[static_cast<size_t>(q)];
          int64_t flat = 0;
          bool ok = true;
          for (size_t i = 0; i < r; ++i) {
            const int64_t ii = o[i] * win.s[i] + t[i] * win.d[i] - win.pb[i];
            ok = ok && ii >= 0 && ii < in[i];
            flat = flat * in[i] + ii;
          }
          if (!ok) continue;
          for (int64_t c = 0; c < Cg; ++c)
            acc += static_cast<double>(px[(n * C + g * Cg + c) * isz + flat]) * pw[(m * Cg + c) * ksz + q];
        }
        y.data<float>()[(n * M + m) * osz + p] = static_cast<float>(acc);
      }
  return y;
}

struct ConvCase {
  std::string name;
  Shape x, w;
  int64_t group = 1;
  ints strides, dilations, pads;
  std::string auto_pad = "NOTSET";
  bool bias = true;
};

ir::Node conv_node(const ConvCase& c, bool with_bias) {
  ir::Node n = make_node("Conv", {"x", "w"}, {"y"});
  if (with_bias) n.inputs.push_back("b");
  if (c.group != 1) n.attrs["group"] = ir::Attribute::of(c.group);
  if (!c.strides.empty()) n.attrs["strides"] = ir::Attribute::of(c.strides);
  if (!c.dilations.empty()) n.attrs["dilations"] = ir::Attribute::of(c.dilations);
  if (!c.pads.empty()) n.attrs["pads"] = ir::Attribute::of(c.pads);
  if (c.auto_pad != "NOTSET") n.attrs["auto_pad"] = ir::Attribute::of(c.auto_pad);
  return n;
}

// Each case runs with W (and B) as graph inputs (no prepared state: plain
// sgemm) and as initializers (weights packed in prepare), on 1 and 3 threads.
TEST(ConvOp, MatchesDirectLoopsOnEveryPath) {
  const std::vector<ConvCase> cases = {
      {"2d 3x3 pad 1", {2, 3, 9, 11}, {8, 3, 3, 3}, 1, {}, {}, {1, 1, 1, 1}},
      {"2d 1x1 direct", {2, 16, 7, 9}, {24, 16, 1, 1}},
      {"2d 1x1 stride 2", {1, 8, 7, 9}, {5, 8, 1, 1}, 1, {2, 2}},
      {"2d groups, stride, dilation, asymmetric pads", {2, 4, 10, 9}, {6, 2, 3, 3}, 2, {2, 1}, {2, 2}, {1, 0, 2, 1}},
      {"depthwise 3x3 s1 p1", {2, 8, 12, 37}, {8, 1, 3, 3}, 8, {}, {}, {1, 1, 1, 1}},
      {"depthwise 3x3 s2 odd pads", {1, 5, 13, 14}, {5, 1, 3, 3}, 5, {2, 2}, {}, {0, 1, 1, 0}},
      {"depthwise 3x3 dilation 2 s3", {1, 3, 15, 16}, {3, 1, 3, 3}, 3, {3, 3}, {2, 2}, {2, 2, 2, 2}},
      {"depthwise 5x5 p2", {1, 4, 11, 20}, {4, 1, 5, 5}, 4, {}, {}, {2, 2, 2, 2}},
      {"depthwise 3x3 no padding, narrow", {1, 2, 3, 3}, {2, 1, 3, 3}, 2},
      {"depthwise 3x3 SAME_UPPER s2", {1, 3, 8, 9}, {3, 1, 3, 3}, 3, {2, 2}, {}, {}, "SAME_UPPER"},
      {"depthwise 7x7 p3 s2", {1, 3, 17, 19}, {3, 1, 7, 7}, 3, {2, 2}, {}, {3, 3, 3, 3}},
      {"depthwise 1x3 strides 2x1", {2, 3, 9, 10}, {3, 1, 1, 3}, 3, {2, 1}, {}, {0, 1, 0, 1}},
      {"depthwise 3x3 strides 1x3 dilation 2x1", {1, 2, 11, 13}, {2, 1, 3, 3}, 2, {1, 3}, {2, 1}, {2, 0, 1, 2}},
      {"depthwise 3x3 on a 1x1 plane", {2, 4, 1, 1}, {4, 1, 3, 3}, 4, {}, {}, {1, 1, 1, 1}},
      {"depthwise 3x3 s2 pads wider than the plane", {1, 2, 2, 3}, {2, 1, 3, 3}, 2, {2, 2}, {}, {2, 3, 2, 3}},
      {"channel multiplier 2", {1, 4, 6, 7}, {8, 1, 3, 3}, 4, {}, {}, {1, 1, 1, 1}},
      {"1d", {2, 3, 23}, {5, 3, 4}, 1, {3}, {2}, {2, 1}},
      {"1d no bias", {1, 2, 10}, {3, 2, 3}, 1, {}, {}, {1, 1}, "NOTSET", false},
      {"3d", {1, 2, 5, 7, 6}, {3, 2, 2, 3, 2}, 1, {1, 2, 1}, {}, {1, 0, 1, 0, 1, 1}},
      {"3d groups dilation", {1, 4, 6, 6, 5}, {4, 2, 2, 2, 2}, 2, {}, {2, 1, 2}},
      {"SAME_LOWER s2", {1, 3, 8, 7}, {4, 3, 4, 3}, 1, {2, 2}, {}, {}, "SAME_LOWER"},
      {"SAME_UPPER s2", {1, 3, 8, 7}, {4, 3, 4, 3}, 1, {2, 2}, {}, {}, "SAME_UPPER"},
      {"VALID", {1, 3, 8, 7}, {4, 3, 3, 2}, 1, {}, {}, {}, "VALID"},
      // Over 2^20 multiply-adds in one image: on 3 threads the padded-plane
      // path cuts it into bands of output rows (the last one shorter).
      {"one image in bands", {1, 16, 40, 41}, {32, 16, 3, 3}, 1, {}, {}, {1, 1, 1, 1}},
      {"one image in bands, stride 2", {1, 8, 61, 64}, {24, 8, 5, 5}, 1, {2, 2}, {}, {2, 2, 2, 2}},
      // K * positions = 144 * 8100 > 2^20 floats: the columns come in chunks.
      {"im2col in chunks", {3, 16, 90, 90}, {4, 16, 3, 3}, 1, {}, {}, {1, 1, 1, 1}},
  };
  uint32_t seed = 1;
  for (const ConvCase& c : cases) {
    const Tensor x = f32(c.x, seed++);
    const Tensor w = f32(c.w, seed++);
    const Tensor b = f32({c.w[0]}, seed++);
    const Shape in(c.x.begin() + 2, c.x.end());
    const Window win = window(in, ints(c.w.begin() + 2, c.w.end()), c.strides, c.dilations, c.pads, c.auto_pad);
    const Tensor want = naive_conv(x, w, c.bias ? &b : nullptr, c.group, win);
    const ir::Node n = conv_node(c, c.bias);
    for (int threads : {1, 3}) {
      Session::NamedTensors feed = {{"x", x}, {"w", w}};
      if (c.bias) feed.push_back({"b", b});
      expect_close(run(n, feed, 17, {}, threads)[0], want, 1e-4, 1e-5, c.name + " (W input)");
      Session::NamedTensors consts = {{"w", w}};
      if (c.bias) consts.push_back({"b", b});
      expect_close(run(n, {{"x", x}}, 17, consts, threads)[0], want, 1e-4, 1e-5, c.name + " (W constant)");
    }
  }
}

// com.microsoft FusedConv (the graph passes' Conv + Relu / Clip) on the
// depthwise path, which applies the activation as it writes each plane:
// against the direct loops followed by max(v, 0) / min(max(v, lo), hi).
TEST(ConvOp, FusedActivationOnTheDepthwisePath) {
  const std::vector<ConvCase> cases = {
      {"3x3 s1", {2, 5, 9, 21}, {5, 1, 3, 3}, 5, {}, {}, {1, 1, 1, 1}},
      {"3x3 s2", {1, 4, 12, 11}, {4, 1, 3, 3}, 4, {2, 2}, {}, {1, 1, 1, 1}},
      {"5x5 s1", {1, 3, 10, 18}, {3, 1, 5, 5}, 3, {}, {}, {2, 2, 2, 2}},
  };
  uint32_t seed = 101;
  for (const ConvCase& c : cases) {
    const Tensor x = f32(c.x, seed++, -2.0f, 2.0f);
    const Tensor w = f32(c.w, seed++);
    const Tensor b = f32({c.w[0]}, seed++);
    const Shape in(c.x.begin() + 2, c.x.end());
    const Window win = window(in, ints(c.w.begin() + 2, c.w.end()), c.strides, c.dilations, c.pads, c.auto_pad);
    const Tensor conv = naive_conv(x, w, &b, c.group, win);
    for (const std::string act : {"Relu", "Clip"}) {
      ir::Node n = conv_node(c, true);
      n.op_type = "FusedConv";
      n.domain = "com.microsoft";
      n.attrs["activation"] = ir::Attribute::of(act);
      const float lo = -0.25f, hi = 0.5f;
      if (act == "Clip") n.attrs["activation_params"] = ir::Attribute::of(floats{lo, hi});
      Tensor want = conv.clone();
      float* pw = want.data<float>();
      for (int64_t i = 0; i < want.numel(); ++i)
        pw[i] = act == "Relu" ? std::max(pw[i], 0.0f) : std::min(std::max(pw[i], lo), hi);
      for (int threads : {1, 2}) {
        ir::Model m;
        m.opsets[""] = 17;
        m.opsets["com.microsoft"] = 1;
        m.graph.name = "main";
        m.graph.inputs.push_back("x");
        m.graph.values["x"] = ir::ValueInfo{x.dtype(), ir::to_sym(x.shape())};
        m.graph.initializers["w"] = w;
        m.graph.initializers["b"] = b;
        m.graph.outputs.push_back("y");
        m.graph.nodes.push_back(n);
        SessionOptions so;
        so.threads = threads;
        expect_close(Session(std::move(m), so).run({{"x", x}})[0], want, 1e-4, 1e-5, c.name + " " + act);
      }
    }
  }
}

// Spec: "kernel_shape: If not present, should be inferred from input W";
// when present it must agree with W.
TEST(ConvOp, KernelShapeAttributeMustMatchW) {
  ir::Node n = make_node("Conv", {"x", "w"}, {"y"});
  n.attrs["kernel_shape"] = ir::Attribute::of(ints{3, 3});
  const Tensor x = f32({1, 1, 4, 4}, 1), w = f32({1, 1, 3, 3}, 2);
  EXPECT_EQ(run(n, {{"x", x}, {"w", w}})[0].shape(), (Shape{1, 1, 2, 2}));
  n.attrs["kernel_shape"] = ir::Attribute::of(ints{2, 2});
  expect_error([&] { run(n, {{"x", x}, {"w", w}}); }, "kernel_shape");
}

TEST(ConvOp, BadInputIsAnErrorNamingTheNode) {
  const ir::Node n = make_node("Conv", {"x", "w", "b"}, {"y"});
  const Tensor w = f32({4, 3, 3, 3}, 2), b = f32({4}, 3);
  // C of X (2) != W.shape[1] * group (3).
  expect_error([&] { run(n, {{"x", f32({1, 2, 5, 5}, 1)}, {"w", w}, {"b", b}}); }, "node 'Conv0' (Conv)");
  expect_error([&] { run(n, {{"x", f32({1, 2, 5, 5}, 1)}, {"w", w}, {"b", b}}); }, "C == W.shape[1] * group");
  // Ranks.
  expect_error([&] { run(n, {{"x", f32({3, 5}, 1)}, {"w", w}, {"b", b}}); }, "rank >= 3");
  expect_error([&] { run(n, {{"x", f32({1, 3, 5, 5, 5}, 1)}, {"w", w}, {"b", b}}); }, "same rank");
  // Bias of the wrong length.
  expect_error([&] { run(n, {{"x", f32({1, 3, 5, 5}, 1)}, {"w", w}, {"b", f32({3}, 4)}}); }, "B of shape [4]");
  // Input smaller than the kernel.
  expect_error([&] { run(n, {{"x", f32({1, 3, 2, 5}, 1)}, {"w", w}, {"b", b}}); }, "at least as large");
  // M not divisible by group.
  ir::Node g = n;
  g.attrs["group"] = ir::Attribute::of(int64_t{3});
  expect_error([&] { run(g, {{"x", f32({1, 3, 5, 5}, 1)}, {"w", f32({4, 1, 3, 3}, 2)}, {"b", b}}); },
               "divisible by group");
  // Attribute values.
  ir::Node s = n;
  s.attrs["strides"] = ir::Attribute::of(ints{0, 1});
  expect_error([&] { run(s, {{"x", f32({1, 3, 5, 5}, 1)}, {"w", w}, {"b", b}}); }, "strides");
  ir::Node p = n;
  p.attrs["pads"] = ir::Attribute::of(ints{1, 1});
  expect_error([&] { run(p, {{"x", f32({1, 3, 5, 5}, 1)}, {"w", w}, {"b", b}}); }, "pads");
  ir::Node a = n;
  a.attrs["auto_pad"] = ir::Attribute::of(std::string("SAME"));
  expect_error([&] { run(a, {{"x", f32({1, 3, 5, 5}, 1)}, {"w", w}, {"b", b}}); }, "auto_pad");
  // Types.
  expect_error([&] { run(n, {{"x", Tensor(DType::kF64, {1, 3, 5, 5})}, {"w", w}, {"b", b}}); }, "f32");
  // Missing W.
  expect_error([&] { run(make_node("Conv", {"x", ""}, {"y"}), {{"x", f32({1, 3, 5, 5}, 1)}}); }, "input 1");
}

// ---- ConvTranspose ----

// ConvTranspose by its definition (the adjoint of Conv): every input value
// x[n, c, i] adds x * w[c, m, t] to y[n, g*Mg + m, i*s + t*d - pb] where that
// is inside the output; plus the bias.
Tensor naive_convt(const Tensor& x, const Tensor& w, const Tensor* b, int64_t group, const ints& s,
                   const ints& d, const ints& pb, const Shape& out) {
  const Shape& xs = x.shape();
  const Shape& ws = w.shape();
  const size_t r = xs.size() - 2;
  const int64_t N = xs[0], C = xs[1], Cg = C / group, Mg = ws[1], M = Mg * group;
  Shape in(xs.begin() + 2, xs.end()), ks(ws.begin() + 2, ws.end());
  Shape ys = {N, M};
  ys.insert(ys.end(), out.begin(), out.end());
  std::vector<double> acc(static_cast<size_t>(shape_numel(ys)), 0.0);
  const int64_t isz = shape_numel(in), osz = shape_numel(out), ksz = shape_numel(ks);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < isz; ++p) {
        const ints i = unravel(p, in);
        const double xv = x.data<float>()[(n * C + c) * isz + p];
        const int64_t g = c / Cg;
        for (int64_t m = 0; m < Mg; ++m)
          for (int64_t q = 0; q < ksz; ++q) {
            const ints t = unravel(q, ks);
            ints o(r);
            bool ok = true;
            for (size_t k = 0; k < r; ++k) {
              o[k] = i[k] * s[k] + t[k] * d[k] - pb[k];
              ok = ok && o[k] >= 0 && o[k] < out[k];
            }
            if (ok)
              acc[static_cast<size_t>((n * M + g * Mg + m) * osz + ravel(o, out))] +=
                  xv * w.data<float>()[(c * Mg + m) * ksz + q];
          }
      }
  Tensor y(DType::kF32, ys);
  for (int64_t e = 0; e < y.numel(); ++e) {
    const int64_t m = (e / osz) % M;
    y.data<float>()[e] = static_cast<float>(acc[static_cast<size_t>(e)] + (b ? b->data<float>()[m] : 0.0));
  }
  return y;
}

struct ConvTCase {
  std::string name;
  Shape x, w;
  int64_t group = 1;
  ints strides, dilations, pads, output_padding, output_shape;
  std::string auto_pad = "NOTSET";
  // Expected (from the spec's formulas, worked out by hand for each case):
  ints want_pb;
  Shape want_out;
};

// Spec (ConvTranspose): output_shape[i] = stride[i] * (input_size[i] - 1) +
// output_padding[i] + ((kernel_shape[i] - 1) * dilations[i] + 1) -
// pads[start_i] - pads[end_i]; with output_shape given, total_padding[i] is
// that expression's value before the pads minus output_shape[i], split as
// pads[start_i] = total_padding[i] / 2 for SAME_UPPER and total_padding[i] -
// total_padding[i] / 2 otherwise; auto_pad SAME_* gives output_shape[i] =
// input_shape[i] * strides[i].
TEST(ConvTransposeOp, MatchesDirectLoops) {
  const std::vector<ConvTCase> cases = {
      // out = 1*(5-1) + 0 + 3 - 0 - 0 = 7
      {"2d basic", {2, 3, 5, 4}, {3, 2, 3, 3}, 1, {}, {}, {}, {}, {}, "NOTSET", {0, 0}, {7, 6}},
      // out_h = 2*(4-1) + 1 + ((3-1)*2+1) - 1 - 2 = 9; out_w = 3*(5-1) + 2 + 2 - 0 - 1 = 15
      {"2d strides dilations pads output_padding", {1, 2, 4, 5}, {2, 3, 3, 2}, 1, {2, 3}, {2, 1},
       {1, 0, 2, 1}, {1, 2}, {}, "NOTSET", {1, 0}, {9, 15}},
      // groups: C=4 (2 per group), M = 3 * 2 = 6; out = 2*(3-1) + 2 = 6
      {"2d groups", {1, 4, 3, 3}, {4, 3, 2, 2}, 2, {2, 2}, {}, {}, {}, {}, "NOTSET", {0, 0}, {6, 6}},
      // output_shape [10, 8]: totals 3*2+0+3-10 = -1 and 2*2+3-8 = -1: pads
      // start = -1 - floor(-1/2) = 0, the extra row and column at the end.
      {"output_shape", {1, 1, 3, 3}, {1, 2, 3, 3}, 1, {3, 2}, {}, {}, {}, {10, 8}, "NOTSET", {0, 0}, {10, 8}},
      // output_shape [7, 5] with SAME_UPPER: totals 2*3+3-7 = 2 and 1*3+3-5 = 1 -> starts 1, 0
      {"output_shape SAME_UPPER", {1, 2, 4, 4}, {2, 1, 3, 3}, 1, {2, 1}, {}, {}, {}, {7, 5}, "SAME_UPPER", {1, 0}, {7, 5}},
      // SAME_UPPER: out = 3*2 = 6, total = 2*2+3-6 = 1 -> start 0 (extra at the end)
      {"SAME_UPPER", {1, 1, 3, 3}, {1, 2, 3, 3}, 1, {2, 2}, {}, {}, {}, {}, "SAME_UPPER", {0, 0}, {6, 6}},
      // SAME_LOWER: start 1 (extra at the beginning)
      {"SAME_LOWER", {1, 1, 3, 3}, {1, 2, 3, 3}, 1, {2, 2}, {}, {}, {}, {}, "SAME_LOWER", {1, 1}, {6, 6}},
      // 1-D: out = 3*(6-1) + 4 - 1 - 1 = 17
      {"1d", {2, 3, 6}, {3, 2, 4}, 1, {3}, {}, {1, 1}, {}, {}, "NOTSET", {1}, {17}},
      // 3-D: out = (2*(3-1)+2, 1*(2-1)+3, 2*(2-1)+2) = (6, 4, 4)
      {"3d", {1, 2, 3, 2, 2}, {2, 2, 2, 3, 2}, 1, {2, 1, 2}, {}, {}, {}, {}, "NOTSET", {0, 0, 0}, {6, 4, 4}},
  };
  uint32_t seed = 100;
  for (const ConvTCase& c : cases) {
    const Tensor x = f32(c.x, seed++), w = f32(c.w, seed++), b = f32({c.w[1] * c.group}, seed++);
    const size_t r = c.x.size() - 2;
    const ints s = c.strides.empty() ? ints(r, 1) : c.strides;
    const ints d = c.dilations.empty() ? ints(r, 1) : c.dilations;
    const Tensor want = naive_convt(x, w, &b, c.group, s, d, c.want_pb, c.want_out);
    ir::Node n = make_node("ConvTranspose", {"x", "w", "b"}, {"y"});
    if (c.group != 1) n.attrs["group"] = ir::Attribute::of(c.group);
    if (!c.strides.empty()) n.attrs["strides"] = ir::Attribute::of(c.strides);
    if (!c.dilations.empty()) n.attrs["dilations"] = ir::Attribute::of(c.dilations);
    if (!c.pads.empty()) n.attrs["pads"] = ir::Attribute::of(c.pads);
    if (!c.output_padding.empty()) n.attrs["output_padding"] = ir::Attribute::of(c.output_padding);
    if (!c.output_shape.empty()) n.attrs["output_shape"] = ir::Attribute::of(c.output_shape);
    if (c.auto_pad != "NOTSET") n.attrs["auto_pad"] = ir::Attribute::of(c.auto_pad);
    for (int threads : {1, 3}) {
      expect_close(run(n, {{"x", x}, {"w", w}, {"b", b}}, 17, {}, threads)[0], want, 1e-4, 1e-5,
                   c.name + " (W input)");
      expect_close(run(n, {{"x", x}}, 17, {{"w", w}, {"b", b}}, threads)[0], want, 1e-4, 1e-5,
                   c.name + " (W constant)");
    }
  }
}

TEST(ConvTransposeOp, BadInput) {
  const ir::Node n = make_node("ConvTranspose", {"x", "w"}, {"y"});
  // W.shape[0] must be C.
  expect_error([&] { run(n, {{"x", f32({1, 3, 4, 4}, 1)}, {"w", f32({2, 2, 3, 3}, 2)}}); },
               "W.shape[0] == C");
  // Pads that leave no output.
  ir::Node p = n;
  p.attrs["pads"] = ir::Attribute::of(ints{3, 3, 3, 3});
  expect_error([&] { run(p, {{"x", f32({1, 1, 2, 2}, 1)}, {"w", f32({1, 1, 3, 3}, 2)}}); }, "sizes >= 1");
}

// ---- Gemm ----

// Spec: Y = alpha * A' * B' + beta * C, A' = transpose(A) if transA, C
// unidirectionally broadcast to [M, N].
Tensor naive_gemm(const Tensor& a, const Tensor& b, const Tensor* c, bool ta, bool tb, double alpha,
                  double beta) {
  const int64_t M = ta ? a.dim(1) : a.dim(0), K = ta ? a.dim(0) : a.dim(1), N = tb ? b.dim(0) : b.dim(1);
  Tensor y(DType::kF32, {M, N});
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += static_cast<double>(a.data<float>()[ta ? k * M + i : i * K + k]) *
               b.data<float>()[tb ? j * K + k : k * N + j];
      double cv = 0;
      if (c != nullptr) {
        const Shape& cs = c->shape();
        const int64_t cr = cs.size() == 2 ? cs[0] : 1, cc = cs.empty() ? 1 : cs.back();
        cv = c->data<float>()[(cr == 1 ? 0 : i) * cc + (cc == 1 ? 0 : j)];
      }
      y.data<float>()[i * N + j] = static_cast<float>(alpha * acc + beta * cv);
    }
  return y;
}

TEST(GemmOp, BroadcastsCAndHonoursAttributes) {
  uint32_t seed = 200;
  struct Case {
    int64_t M, N, K;
    bool ta, tb;
    float alpha, beta;
    Shape c;  // {} = scalar; {-1} = no C
  };
  const std::vector<Case> cases = {
      {5, 7, 3, false, false, 1.0f, 1.0f, {7}},        {5, 7, 3, true, false, 0.5f, 2.0f, {1, 7}},
      {5, 7, 3, false, true, 1.0f, -1.0f, {5, 1}},     {5, 7, 3, true, true, 2.0f, 0.25f, {5, 7}},
      {5, 7, 3, false, false, 1.0f, 3.0f, {}},         {5, 7, 3, false, false, 1.0f, 3.0f, {1}},
      {5, 7, 3, false, false, 1.0f, 1.0f, {1, 1}},     {5, 7, 3, false, false, 1.5f, 1.0f, {-1}},
      {1, 40, 33, false, true, 1.0f, 1.0f, {40}},      {40, 1, 33, true, false, 1.0f, 1.0f, {40, 1}},
      {64, 96, 80, false, true, 1.0f, 0.0f, {64, 96}}, {3, 3, 0, false, false, 1.0f, 1.0f, {3}},
  };
  for (const Case& k : cases) {
    const Tensor a = f32(k.ta ? Shape{k.K, k.M} : Shape{k.M, k.K}, seed++);
    const Tensor b = f32(k.tb ? Shape{k.N, k.K} : Shape{k.K, k.N}, seed++);
    const bool has_c = !(k.c.size() == 1 && k.c[0] == -1);
    const Tensor c = has_c ? f32(k.c, seed++) : Tensor();
    ir::Node n = make_node("Gemm", {"a", "b"}, {"y"});
    if (has_c) n.inputs.push_back("c");
    n.attrs["transA"] = ir::Attribute::of(int64_t{k.ta});
    n.attrs["transB"] = ir::Attribute::of(int64_t{k.tb});
    n.attrs["alpha"] = ir::Attribute::of(k.alpha);
    n.attrs["beta"] = ir::Attribute::of(k.beta);
    const Tensor want = naive_gemm(a, b, has_c ? &c : nullptr, k.ta, k.tb, k.alpha, k.beta);
    Session::NamedTensors feed = {{"a", a}, {"b", b}};
    if (has_c) feed.push_back({"c", c});
    const std::string what = "M=" + std::to_string(k.M) + " N=" + std::to_string(k.N) + " C=" + shape_str(k.c);
    expect_close(run(n, feed, 13)[0], want, 1e-4, 1e-5, what + " (B input)");
    Session::NamedTensors consts = {{"b", b}};
    if (has_c) consts.push_back({"c", c});
    expect_close(run(n, {{"a", a}}, 13, consts)[0], want, 1e-4, 1e-5, what + " (B constant)");
  }
}

TEST(GemmOp, OtherTypesAndErrors) {
  // Hand-computed: [[1,2],[3,4]] x [[5,6],[7,8]] = [[19,22],[43,50]], + C [1, 2] (row).
  ir::Node n = make_node("Gemm", {"a", "b", "c"}, {"y"});
  const auto y = run(n, {{"a", Tensor::from<int32_t>({2, 2}, {1, 2, 3, 4})},
                         {"b", Tensor::from<int32_t>({2, 2}, {5, 6, 7, 8})},
                         {"c", Tensor::from<int32_t>({2}, {1, 2})}}, 13)[0];
  EXPECT_EQ(std::vector<int32_t>(y.data<int32_t>(), y.data<int32_t>() + 4), (std::vector<int32_t>{20, 24, 44, 52}));
  const auto yd = run(n, {{"a", Tensor::from<double>({1, 2}, {1, 2})},
                          {"b", Tensor::from<double>({2, 1}, {3, 4})},
                          {"c", Tensor::from<double>({}, {0.5})}}, 13)[0];
  EXPECT_EQ(yd.data<double>()[0], 11.5);
  // C that does not broadcast to [M, N].
  expect_error([&] { run(n, {{"a", f32({2, 3}, 1)}, {"b", f32({3, 4}, 2)}, {"c", f32({3}, 3)}}, 13); },
               "broadcastable to [M, N]");
  // Inner dimensions.
  expect_error([&] { run(n, {{"a", f32({2, 3}, 1)}, {"b", f32({4, 4}, 2)}, {"c", f32({4}, 3)}}, 13); },
               "op(A) columns equal to op(B) rows");
  // Ranks.
  expect_error([&] { run(n, {{"a", f32({2, 3, 1}, 1)}, {"b", f32({3, 4}, 2)}, {"c", f32({4}, 3)}}, 13); },
               "rank 2");
  // C is optional only from opset 11 (Gemm-11: "Optional input tensor C").
  const ir::Node no_c = make_node("Gemm", {"a", "b"}, {"y"});
  expect_error([&] { run(no_c, {{"a", f32({2, 3}, 1)}, {"b", f32({3, 4}, 2)}}, 9); }, "optional only from opset 11");
  EXPECT_EQ(run(no_c, {{"a", f32({2, 3}, 1)}, {"b", f32({3, 4}, 2)}}, 11)[0].shape(), (Shape{2, 4}));
}

// ---- MatMul ----

// numpy.matmul: 1-D A gets a 1 prepended (then removed), 1-D B a 1 appended
// (then removed); batch dimensions broadcast.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  Shape as = a.shape(), bs = b.shape();
  const bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  const Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const size_t r = std::max(ab.size(), bb.size());
  Shape ob(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t x = i < r - ab.size() ? 1 : ab[i - (r - ab.size())];
    const int64_t y = i < r - bb.size() ? 1 : bb[i - (r - bb.size())];
    ob[i] = x == 1 ? y : x;
  }
  Shape os = ob;
  if (!a1) os.push_back(M);
  if (!b1) os.push_back(N);
  Tensor y(DType::kF32, os);
  for (int64_t t = 0; t < shape_numel(ob); ++t) {
    const ints oi = unravel(t, ob);
    ints ai(ab.size()), bi(bb.size());
    for (size_t i = 0; i < ab.size(); ++i) ai[i] = ab[i] == 1 ? 0 : oi[i + r - ab.size()];
    for (size_t i = 0; i < bb.size(); ++i) bi[i] = bb[i] == 1 ? 0 : oi[i + r - bb.size()];
    const float* pa = a.data<float>() + ravel(ai, ab) * M * K;
    const float* pb = b.data<float>() + ravel(bi, bb) * K * N;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(pa[i * K + k]) * pb[k * N + j];
        y.data<float>()[(t * M + i) * N + j] = static_cast<float>(acc);
      }
  }
  return y;
}

TEST(MatMulOp, NumpySemantics) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{7}, {7}},                 // -> scalar
      {{7}, {7, 5}},              // -> [5]
      {{4, 7}, {7}},              // -> [4]
      {{3, 7}, {7}},              // 1-D B on a batch
      {{2, 4, 7}, {7}},           // -> [2, 4]
      {{7}, {3, 7, 5}},           // -> [3, 5]
      {{4, 7}, {7, 5}},
      {{2, 3, 4, 7}, {7, 33}},    // B one matrix: A's batch folded into its rows
      {{2, 1, 4, 7}, {3, 7, 5}},  // broadcast batches -> [2, 3, 4, 5]
      {{1, 4, 7}, {6, 7, 5}},     // A broadcast over B's batch
      {{64, 3, 5}, {64, 5, 4}},   // many small matrices: parallel over the batch
      {{2, 70, 90}, {2, 90, 80}}, // few larger ones: threaded GEMM each
      {{1, 1, 4, 7}, {7, 5}},
      {{5, 0}, {0, 3}},           // K = 0: zeros
  };
  uint32_t seed = 300;
  for (const auto& [as, bs] : cases) {
    const Tensor a = f32(as, seed++), b = f32(bs, seed++);
    const Tensor want = naive_matmul(a, b);
    const ir::Node n = make_node("MatMul", {"a", "b"}, {"y"});
    const std::string what = shape_str(as) + " x " + shape_str(bs);
    for (int threads : {1, 3}) {
      expect_close(run(n, {{"a", a}, {"b", b}}, 13, {}, threads)[0], want, 1e-4, 1e-5, what);
      expect_close(run(n, {{"a", a}}, 13, {{"b", b}}, threads)[0], want, 1e-4, 1e-5, what + " (B constant)");
    }
  }
}

TEST(MatMulOp, IntegersAndErrors) {
  // Hand-computed: [1, 2, 3] . [4, 5, 6] = 32 (1-D x 1-D gives a scalar).
  const ir::Node n = make_node("MatMul", {"a", "b"}, {"y"});
  const Tensor y = run(n, {{"a", Tensor::from<int64_t>({3}, {1, 2, 3})}, {"b", Tensor::from<int64_t>({3}, {4, 5, 6})}})[0];
  EXPECT_EQ(y.shape(), Shape{});
  EXPECT_EQ(y.data<int64_t>()[0], 32);
  expect_error([&] { run(n, {{"a", f32({2, 3}, 1)}, {"b", f32({4, 2}, 2)}}); }, "second-to-last");
  expect_error([&] { run(n, {{"a", f32({2, 2, 3}, 1)}, {"b", f32({3, 3, 2}, 2)}}); }, "broadcast");
  expect_error([&] { run(n, {{"a", f32({}, 1)}, {"b", f32({3}, 2)}}); }, "rank >= 1");
  expect_error([&] { run(n, {{"a", f32({2, 3}, 1)}, {"b", Tensor(DType::kF64, {3, 2})}}); }, "one type");
}

// ---- Softmax, LogSoftmax, Hardmax ----

// Reference: opset < 13 coerces the input to 2-D [prod(d[:axis]),
// prod(d[axis:])] and normalizes each row; opset >= 13 normalizes along
// `axis` alone (Softmax-13: "The operation is applied along the axis").
Tensor naive_soft(const Tensor& x, int64_t axis, bool coerce, int kind /*0 softmax 1 log 2 hard*/) {
  const Shape& s = x.shape();
  const int64_t r = static_cast<int64_t>(s.size());
  if (axis < 0) axis += r;
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t d = 0; d < r; ++d) {
    if (d < axis) outer *= s[static_cast<size_t>(d)];
    else if (d == axis || coerce) n *= s[static_cast<size_t>(d)];
    else inner *= s[static_cast<size_t>(d)];
  }
  Tensor y(DType::kF32, s);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      auto at = [&](int64_t k) { return o * n * inner + k * inner + j; };
      double m = -INFINITY;
      int64_t arg = 0;
      for (int64_t k = 0; k < n; ++k)
        if (x.data<float>()[at(k)] > m) {
          m = x.data<float>()[at(k)];
          arg = k;
        }
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) sum += std::exp(x.data<float>()[at(k)] - m);
      for (int64_t k = 0; k < n; ++k) {
        const double v = x.data<float>()[at(k)];
        y.data<float>()[at(k)] = static_cast<float>(
            kind == 0 ? std::exp(v - m) / sum : kind == 1 ? v - m - std::log(sum) : (k == arg ? 1.0 : 0.0));
      }
    }
  return y;
}

TEST(SoftmaxOps, CoercedBeforeOpset13AlongOneAxisAfter) {
  const char* ops[3] = {"Softmax", "LogSoftmax", "Hardmax"};
  const Tensor x = f32({2, 3, 4, 5}, 400, -5.0f, 5.0f);
  for (int kind = 0; kind < 3; ++kind)
    for (int64_t opset : {11, 13})
      for (int64_t axis : {-4, -1, 0, 1, 2, 3}) {
        ir::Node n = make_node(ops[kind], {"x"}, {"y"});
        n.attrs["axis"] = ir::Attribute::of(axis);
        const Tensor want = naive_soft(x, axis, opset < 13, kind);
        expect_close(run(n, {{"x", x}}, opset)[0], want, 1e-5, 1e-6,
                     std::string(ops[kind]) + " opset " + std::to_string(opset) + " axis " + std::to_string(axis));
      }
  // The defaults: axis 1 (coerced) before 13, -1 after.
  for (int kind = 0; kind < 3; ++kind) {
    const ir::Node n = make_node(ops[kind], {"x"}, {"y"});
    expect_close(run(n, {{"x", x}}, 11)[0], naive_soft(x, 1, true, kind), 1e-5, 1e-6, "default axis 11");
    expect_close(run(n, {{"x", x}}, 13)[0], naive_soft(x, -1, false, kind), 1e-5, 1e-6, "default axis 13");
  }
}

// QLinearSoftmax on copies x 8 rows of n codes, each row's maximum from `top`, against
// the float Softmax (SoftmaxOps.QLinearSoftmaxOneTablePerRowMaximum).
void qlinear_softmax_rows(int64_t n, int copies) {
  SCOPED_TRACE(std::to_string(copies) + " x 8 rows of " + std::to_string(n));
  const std::vector<uint8_t> eight = {10, 200, 10, 200, 30, 10, 30, 200};
  std::vector<uint8_t> top;
  for (int k = 0; k < copies; ++k) top.insert(top.end(), eight.begin(), eight.end());
  std::vector<uint8_t> codes;
  std::vector<float> deq;
  for (size_t r = 0; r < top.size(); ++r)
    for (int64_t i = 0; i < n; ++i) {
      const auto c = static_cast<uint8_t>(i == static_cast<int64_t>(r) % n ? top[r] : top[r] - 1 - 2 * i % top[r]);
      codes.push_back(c);
      deq.push_back(static_cast<float>(c));
    }
  const int64_t rows = static_cast<int64_t>(top.size());
  ir::Model m;
  m.opsets[""] = 13;
  m.opsets["com.microsoft"] = 1;
  m.graph.name = "main";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kU8, ir::to_sym(Shape{rows, n})};
  m.graph.initializers["xs"] = Tensor::from<float>({}, {1.0f});
  m.graph.initializers["xz"] = Tensor::from<uint8_t>({}, {0});
  m.graph.initializers["ys"] = Tensor::from<float>({}, {1.0f / 256});
  m.graph.initializers["yz"] = Tensor::from<uint8_t>({}, {0});
  ir::Node q = make_node("QLinearSoftmax", {"x", "xs", "xz", "ys", "yz"}, {"y"});
  q.domain = "com.microsoft";
  q.attrs["axis"] = ir::Attribute::of(int64_t{-1});
  q.attrs["opset"] = ir::Attribute::of(int64_t{13});
  m.graph.nodes = {q};
  m.graph.outputs = {"y"};
  const Tensor y = Session(std::move(m)).run({{"x", Tensor::from<uint8_t>({rows, n}, codes)}})[0];
  const floats want =
      values(run(make_node("Softmax", {"x"}, {"y"}), {{"x", Tensor::from<float>({rows, n}, deq)}}, 13)[0]);
  ASSERT_EQ(y.numel(), rows * n);
  for (int64_t i = 0; i < y.numel(); ++i) {
    const float v = std::nearbyint(want[static_cast<size_t>(i)] * 256.0f);
    EXPECT_EQ(static_cast<const uint8_t*>(y.raw())[i], static_cast<uint8_t>(std::min(v, 255.0f)))
        << "element " << i;
  }
}

// com.microsoft QLinearSoftmax along the last axis keeps one table of 256
// exponentials per row maximum for rows longer than 64 (n = 70 here) or many
// values (64 x 8 rows of 5), and takes the exponentials of a few short rows
// directly (8 rows of 5). With X scale 1 the maxima 10 and 200 are 190
// apart, so a row read through the other maximum's table would underflow to
// 0/0 or overflow to inf/inf. Reference: the float Softmax of the
// dequantized rows, quantized by hand (Y scale 1/256: y * 256 is exact).
TEST(SoftmaxOps, QLinearSoftmaxOneTablePerRowMaximum) {
  for (const int64_t n : {5, 70}) qlinear_softmax_rows(n, 1);
  qlinear_softmax_rows(5, 64);
}

// Softmax along the last axis runs several rows at a time (their row maxima
// and sums folded across the rows), a single row alone: the rows of one call
// must be, bit for bit, what each row gives alone. Row lengths around the 16
// lanes, row counts around the 16-row groups, with -inf, all -inf rows, +-0
// and large values; f32 and f64.
TEST(SoftmaxOps, RowsTogetherAreEachRowAloneBitForBit) {
  const ir::Node sm = make_node("Softmax", {"x"}, {"y"});
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t n : {1, 5, 16, 17, 33, 64, 100})
    for (int64_t rows : {2, 3, 15, 16, 17, 40}) {
      Tensor x = f32({rows, n}, static_cast<uint32_t>(n * 100 + rows), -30.0f, 30.0f);
      float* px = x.data<float>();
      px[0] = -inf;                                   // a masked position
      if (rows > 2) std::fill_n(px + 2 * n, n, -inf);  // a row of -inf only
      px[(rows - 1) * n] = -0.0f;
      px[n * rows / 2] = 80.0f;
      Tensor xd(DType::kF64, {rows, n});
      for (int64_t i = 0; i < rows * n; ++i) xd.data<double>()[i] = px[i];
      const std::string what = std::to_string(rows) + " rows of " + std::to_string(n);
      const Tensor y = run(sm, {{"x", x}}, 13, {}, 1)[0];
      const Tensor yd = run(sm, {{"x", xd}}, 13, {}, 1)[0];
      for (int64_t r = 0; r < rows; ++r) {
        const Tensor row = Tensor::from<float>({1, n}, floats(px + r * n, px + (r + 1) * n));
        const Tensor one = run(sm, {{"x", row}}, 13, {}, 1)[0];
        Tensor rowd(DType::kF64, {1, n});
        std::copy_n(xd.data<double>() + r * n, n, rowd.data<double>());
        const Tensor oned = run(sm, {{"x", rowd}}, 13, {}, 1)[0];
        for (int64_t i = 0; i < n; ++i) {
          const float a = y.data<float>()[r * n + i], b = one.data<float>()[i];
          ASSERT_TRUE(std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)))
              << what << ", f32 row " << r << " value " << i << ": " << a << " alone " << b;
          const double c = yd.data<double>()[r * n + i], d = oned.data<double>()[i];
          ASSERT_TRUE(std::memcmp(&c, &d, sizeof c) == 0 || (std::isnan(c) && std::isnan(d)))
              << what << ", f64 row " << r << " value " << i << ": " << c << " alone " << d;
        }
      }
    }
}

TEST(SoftmaxOps, HandExamplesAndEdgeCases) {
  // Softmax of [1000, 1001, 1002] = softmax of [0, 1, 2] (max subtracted):
  // e^0, e^1, e^2 over their sum 11.107338 = 0.0900306, 0.2447285, 0.6652410.
  const ir::Node sm = make_node("Softmax", {"x"}, {"y"});
  const floats y = values(run(sm, {{"x", Tensor::from<float>({1, 3}, {1000, 1001, 1002})}}, 13)[0]);
  EXPECT_NEAR(y[0], 0.0900306f, 1e-6);
  EXPECT_NEAR(y[1], 0.2447285f, 1e-6);
  EXPECT_NEAR(y[2], 0.6652410f, 1e-6);
  // -inf (a masked position) gives exactly 0.
  const float inf = std::numeric_limits<float>::infinity();
  const floats m = values(run(sm, {{"x", Tensor::from<float>({1, 3}, {-inf, 0.0f, 0.0f})}}, 13)[0]);
  EXPECT_EQ(m[0], 0.0f);
  EXPECT_FLOAT_EQ(m[1], 0.5f);
  // Hardmax takes the first of equal maxima (spec: "the first occurrence").
  const ir::Node hm = make_node("Hardmax", {"x"}, {"y"});
  EXPECT_EQ(values(run(hm, {{"x", Tensor::from<float>({2, 3}, {1, 3, 3, 4, 4, 0})}}, 13)[0]),
            (floats{0, 1, 0, 1, 0, 0}));
  // A long strided axis (axis 0 of [5, 300]) and a long row (100003 values).
  const Tensor t = f32({5, 300}, 7, -20.0f, 20.0f);
  ir::Node a0 = make_node("LogSoftmax", {"x"}, {"y"});
  a0.attrs["axis"] = ir::Attribute::of(int64_t{0});
  expect_close(run(a0, {{"x", t}}, 13)[0], naive_soft(t, 0, false, 1), 1e-5, 1e-5, "strided");
  const Tensor big = f32({2, 100003}, 8, -30.0f, 30.0f);
  expect_close(run(sm, {{"x", big}}, 13, {}, 3)[0], naive_soft(big, -1, false, 0), 1e-4, 1e-9, "long rows");
  // Double precision.
  const Tensor d = run(sm, {{"x", Tensor::from<double>({2}, {0.0, std::log(3.0)})}}, 13)[0];
  EXPECT_NEAR(d.data<double>()[0], 0.25, 1e-15);
  // Errors: axis out of range, integer input.
  ir::Node bad = make_node("Softmax", {"x"}, {"y"});
  bad.attrs["axis"] = ir::Attribute::of(int64_t{2});
  expect_error([&] { run(bad, {{"x", f32({2, 3}, 1)}}, 13); }, "axis");
  expect_error([&] { run(sm, {{"x", Tensor::from<int64_t>({2}, {1, 2})}}, 13); }, "f32 or f64");
}

// ---- pooling ----

// Pooling by its definition: the max (or mean) of the taps inside the input;
// AveragePool's divisor counts the taps inside the input, or with
// count_include_pad those inside input + pads.
Tensor naive_pool(const Tensor& x, const Window& w, bool is_max, bool include_pad, Tensor* indices = nullptr,
                  bool col_major = false) {
  const Shape& xs = x.shape();
  const size_t r = xs.size() - 2;
  const Shape in(xs.begin() + 2, xs.end());
  Shape ys = {xs[0], xs[1]};
  ys.insert(ys.end(), w.out.begin(), w.out.end());
  Tensor y(DType::kF32, ys);
  if (indices) *indices = Tensor(DType::kI64, ys);
  const int64_t isz = shape_numel(in), osz = shape_numel(w.out), ksz = shape_numel(w.k);
  for (int64_t t = 0; t < xs[0] * xs[1]; ++t)
    for (int64_t p = 0; p < osz; ++p) {
      const ints o = unravel(p, w.out);
      double acc = is_max ? -INFINITY : 0.0;
      int64_t cnt = 0, arg = -1;
      for (int64_t q = 0; q < ksz; ++q) {
        const ints k = unravel(q, w.k);
        ints ii(r);
        bool in_x = true, in_pad = true;
        for (size_t i = 0; i < r; ++i) {
          ii[i] = o[i] * w.s[i] + k[i] * w.d[i] - w.pb[i];
          in_x = in_x && ii[i] >= 0 && ii[i] < in[i];
          in_pad = in_pad && ii[i] >= -w.pb[i] && ii[i] < in[i] + w.pe[i];
        }
        if (include_pad ? in_pad : in_x) ++cnt;
        if (!in_x) continue;
        const double v = x.data<float>()[t * isz + ravel(ii, in)];
        if (is_max) {
          if (v > acc) {
            acc = v;
            int64_t ci = 0, st = 1;
            if (col_major)
              for (size_t i = 0; i < r; ++i) {
                ci += ii[i] * st;
                st *= in[i];
              }
            else
              ci = ravel(ii, in);
            arg = t * isz + ci;
          }
        } else {
          acc += v;
        }
      }
      y.data<float>()[t * osz + p] = static_cast<float>(is_max ? acc : acc / static_cast<double>(cnt));
      if (indices) indices->data<int64_t>()[t * osz + p] = arg;
    }
  return y;
}

struct PoolCase {
  std::string name;
  Shape x;
  ints k, s, d, pads;
  std::string auto_pad = "NOTSET";
  bool ceil_mode = false;
};

ir::Node pool_node(const std::string& op, const PoolCase& c, bool include_pad, int64_t order, bool indices) {
  ir::Node n = make_node(op, {"x"}, {"y"});
  if (indices) n.outputs.push_back("i");
  n.attrs["kernel_shape"] = ir::Attribute::of(c.k);
  if (!c.s.empty()) n.attrs["strides"] = ir::Attribute::of(c.s);
  if (!c.d.empty()) n.attrs["dilations"] = ir::Attribute::of(c.d);
  if (!c.pads.empty()) n.attrs["pads"] = ir::Attribute::of(c.pads);
  if (c.auto_pad != "NOTSET") n.attrs["auto_pad"] = ir::Attribute::of(c.auto_pad);
  if (c.ceil_mode) n.attrs["ceil_mode"] = ir::Attribute::of(int64_t{1});
  if (include_pad) n.attrs["count_include_pad"] = ir::Attribute::of(int64_t{1});
  if (order != 0) n.attrs["storage_order"] = ir::Attribute::of(order);
  return n;
}

TEST(PoolOps, MatchDirectLoops) {
  const std::vector<PoolCase> cases = {
      {"2d 3x3 s2 p1", {2, 3, 13, 14}, {3, 3}, {2, 2}, {}, {1, 1, 1, 1}},
      {"2d 2x2 s2", {1, 4, 8, 10}, {2, 2}, {2, 2}},
      {"2d 3x3 s1 p1", {1, 2, 9, 33}, {3, 3}, {}, {}, {1, 1, 1, 1}},
      {"2d ceil_mode", {1, 2, 7, 8}, {3, 3}, {2, 2}, {}, {}, "NOTSET", true},
      {"2d ceil_mode, pads", {1, 2, 6, 6}, {3, 3}, {2, 2}, {}, {1, 1, 1, 1}, "NOTSET", true},
      {"2d dilations s3", {1, 2, 12, 13}, {3, 2}, {3, 3}, {2, 3}, {1, 0, 2, 1}},
      {"2d SAME_UPPER", {1, 2, 7, 6}, {3, 2}, {2, 2}, {}, {}, "SAME_UPPER"},
      {"2d SAME_LOWER", {1, 2, 7, 6}, {3, 2}, {2, 2}, {}, {}, "SAME_LOWER"},
      {"2d VALID", {1, 2, 7, 6}, {3, 2}, {2, 1}, {}, {}, "VALID"},
      {"1d", {2, 3, 17}, {4}, {3}, {}, {1, 2}},
      {"3d", {1, 2, 6, 7, 5}, {2, 3, 2}, {2, 1, 2}, {1, 1, 2}, {0, 1, 1, 1, 0, 0}},
  };
  uint32_t seed = 500;
  for (const PoolCase& c : cases) {
    const Tensor x = f32(c.x, seed++);
    const Shape in(c.x.begin() + 2, c.x.end());
    const Window w = window(in, c.k, c.s, c.d, c.pads, c.auto_pad, c.ceil_mode);
    for (int threads : {1, 3}) {
      expect_close(run(pool_node("MaxPool", c, false, 0, false), {{"x", x}}, 12, {}, threads)[0],
                   naive_pool(x, w, true, false), 0, 0, c.name + " max");
      for (bool inc : {false, true})
        expect_close(run(pool_node("AveragePool", c, inc, 0, false), {{"x", x}}, 19, {}, threads)[0],
                     naive_pool(x, w, false, inc), 1e-5, 1e-6, c.name + " avg" + (inc ? " include_pad" : ""));
      // The u8 and i8 codes of a quantized tensor (the 2-D fast path too):
      // the same maxima as the float loops over the codes' values.
      for (DType dt : {DType::kU8, DType::kI8}) {
        Tensor q(dt, x.shape()), qf(DType::kF32, x.shape());
        for (int64_t i = 0; i < x.numel(); ++i) {
          const int v = static_cast<int>(std::lround(x.data<float>()[i] * 127.0f));  // f32() is in [-1, 1]
          if (dt == DType::kU8) q.data<uint8_t>()[i] = static_cast<uint8_t>(v + 128);
          else q.data<int8_t>()[i] = static_cast<int8_t>(v);
          qf.data<float>()[i] = static_cast<float>(dt == DType::kU8 ? v + 128 : v);
        }
        const Tensor got = run(pool_node("MaxPool", c, false, 0, false), {{"x", q}}, 12, {}, threads)[0];
        Tensor gotf(DType::kF32, got.shape());
        for (int64_t i = 0; i < got.numel(); ++i)
          gotf.data<float>()[i] = dt == DType::kU8 ? got.data<uint8_t>()[i] : got.data<int8_t>()[i];
        expect_close(gotf, naive_pool(qf, w, true, false), 0, 0, c.name + " max " + std::string(dtype_name(dt)));
      }
      for (int64_t order : {0, 1}) {
        Tensor want_i;
        const Tensor want = naive_pool(x, w, true, false, &want_i, order == 1);
        const auto got = run(pool_node("MaxPool", c, false, order, true), {{"x", x}}, 12, {}, threads);
        expect_close(got[0], want, 0, 0, c.name + " max with indices");
        expect_close(got[1], want_i, 0, 0, c.name + " indices, storage_order " + std::to_string(order));
      }
    }
  }
}

TEST(PoolOps, HandExamples) {
  // MaxPool 2x2 stride 2 on [[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]:
  // [[6, 8], [14, 16]] at (h, w) = (1,1), (1,3), (3,1), (3,3): indices
  // h * 4 + w = 5, 7, 13, 15 (row major), or with storage_order 1 (column
  // major) h + w * 4 = 5, 13, 7, 15.
  PoolCase c{"", {1, 1, 4, 4}, {2, 2}, {2, 2}};
  floats v(16);
  for (int i = 0; i < 16; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i + 1);
  const Tensor x = Tensor::from<float>({1, 1, 4, 4}, v);
  auto got = run(pool_node("MaxPool", c, false, 0, true), {{"x", x}}, 12);
  EXPECT_EQ(values(got[0]), (floats{6, 8, 14, 16}));
  EXPECT_EQ(std::vector<int64_t>(got[1].data<int64_t>(), got[1].data<int64_t>() + 4), (ints{5, 7, 13, 15}));
  got = run(pool_node("MaxPool", c, false, 1, true), {{"x", x}}, 12);
  EXPECT_EQ(std::vector<int64_t>(got[1].data<int64_t>(), got[1].data<int64_t>() + 4), (ints{5, 13, 7, 15}));
  // AveragePool 3x3 pad 1 at a corner: taps inside = 4 ({1,2,5,6}: mean
  // 3.5), with count_include_pad the divisor is 9 (14 / 9).
  PoolCase a{"", {1, 1, 4, 4}, {3, 3}, {}, {}, {1, 1, 1, 1}};
  EXPECT_FLOAT_EQ(values(run(pool_node("AveragePool", a, false, 0, false), {{"x", x}}, 11)[0])[0], 3.5f);
  EXPECT_FLOAT_EQ(values(run(pool_node("AveragePool", a, true, 0, false), {{"x", x}}, 11)[0])[0], 14.0f / 9.0f);
  // uint8 MaxPool (opset 12 types).
  const Tensor u = Tensor::from<uint8_t>({1, 1, 2, 2}, {3, 200, 7, 9});
  PoolCase k2{"", {1, 1, 2, 2}, {2, 2}};
  EXPECT_EQ(run(pool_node("MaxPool", k2, false, 0, false), {{"x", u}}, 12)[0].data<uint8_t>()[0], 200);
}

TEST(PoolOps, GlobalPools) {
  // Hand-computed over each 2x3 plane: mean and max.
  const Tensor x = Tensor::from<float>({1, 2, 2, 3}, {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -7});
  const auto avg = run(make_node("GlobalAveragePool", {"x"}, {"y"}), {{"x", x}}, 13)[0];
  EXPECT_EQ(avg.shape(), (Shape{1, 2, 1, 1}));
  EXPECT_FLOAT_EQ(values(avg)[0], 3.5f);
  EXPECT_FLOAT_EQ(values(avg)[1], -22.0f / 6.0f);
  const auto mx = run(make_node("GlobalMaxPool", {"x"}, {"y"}), {{"x", x}}, 13)[0];
  EXPECT_EQ(values(mx), (floats{6, -1}));
  // A large plane (more than the 16 partial sums) against a direct sum.
  const Tensor big = f32({2, 3, 41, 37}, 9);
  const auto g = values(run(make_node("GlobalAveragePool", {"x"}, {"y"}), {{"x", big}}, 13, {}, 3)[0]);
  for (int t = 0; t < 6; ++t) {
    double s = 0;
    for (int i = 0; i < 41 * 37; ++i) s += big.data<float>()[t * 41 * 37 + i];
    EXPECT_NEAR(g[static_cast<size_t>(t)], s / (41 * 37), 1e-5);
  }
}

TEST(PoolOps, BadInput) {
  PoolCase c{"", {1, 1, 4, 4}, {2, 2}};
  ir::Node n = pool_node("MaxPool", c, false, 0, false);
  n.attrs.erase("kernel_shape");
  expect_error([&] { run(n, {{"x", f32({1, 1, 4, 4}, 1)}}, 12); }, "kernel_shape");
  PoolCase p{"", {1, 1, 4, 4}, {2, 2}, {}, {}, {2, 0, 0, 0}};
  expect_error([&] { run(pool_node("AveragePool", p, false, 0, false), {{"x", f32({1, 1, 4, 4}, 1)}}, 11); },
               "pads smaller than the (dilated) kernel");
  PoolCase k{"", {1, 1, 4, 4}, {5, 2}};
  expect_error([&] { run(pool_node("MaxPool", k, false, 0, false), {{"x", f32({1, 1, 4, 4}, 1)}}, 12); },
               "at least as large");
  expect_error([&] { run(pool_node("MaxPool", c, false, 0, false), {{"x", f32({4, 4}, 1)}}, 12); }, "rank >= 3");
  expect_error([&] { run(pool_node("MaxPool", c, false, 2, false), {{"x", f32({1, 1, 4, 4}, 1)}}, 12); },
               "storage_order");
  expect_error([&] { run(pool_node("AveragePool", c, false, 0, false), {{"x", Tensor(DType::kI32, {1, 1, 4, 4})}}, 11); },
               "f32 or f64");
}

// ---- normalizations ----

// BatchNormalization (inference, spec): Y = (X - mean) / sqrt(var + epsilon)
// * scale + B, per channel; opset < 9 with spatial=0: per activation.
TEST(NormOps, BatchNormalization) {
  const Tensor x = f32({2, 3, 4, 5}, 600);
  const Tensor sc = f32({3}, 601), b = f32({3}, 602), mean = f32({3}, 603), var = f32({3}, 604, 0.1f, 2.0f);
  ir::Node n = make_node("BatchNormalization", {"x", "s", "b", "m", "v"}, {"y"});
  n.attrs["epsilon"] = ir::Attribute::of(1e-3f);
  Tensor want(DType::kF32, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = (i / 20) % 3;
    want.data<float>()[i] = static_cast<float>((x.data<float>()[i] - mean.data<float>()[c]) /
                                                   std::sqrt(var.data<float>()[c] + 1e-3) * sc.data<float>()[c] +
                                               b.data<float>()[c]);
  }
  for (int64_t opset : {7, 9, 14, 15})
    expect_close(run(n, {{"x", x}, {"s", sc}, {"b", b}, {"m", mean}, {"v", var}}, opset)[0], want, 1e-5, 1e-6,
                 "opset " + std::to_string(opset));
  // spatial=0 (opset 7): parameters of shape [C, H, W].
  ir::Node ns = n;
  ns.attrs["spatial"] = ir::Attribute::of(int64_t{0});
  const Tensor x2 = f32({2, 2, 3}, 605), s2 = f32({2, 3}, 606), b2 = f32({2, 3}, 607), m2 = f32({2, 3}, 608),
               v2 = f32({2, 3}, 609, 0.5f, 1.0f);
  const floats y2 = values(run(ns, {{"x", x2}, {"s", s2}, {"b", b2}, {"m", m2}, {"v", v2}}, 7)[0]);
  for (int i = 0; i < 12; ++i) {
    const int j = i % 6;
    EXPECT_NEAR(y2[static_cast<size_t>(i)],
                (x2.data<float>()[i] - m2.data<float>()[j]) / std::sqrt(v2.data<float>()[j] + 1e-3f) *
                        s2.data<float>()[j] + b2.data<float>()[j], 1e-5);
  }
  // training_mode=1 is refused (inference only), naming the node.
  ir::Node t = n;
  t.attrs["training_mode"] = ir::Attribute::of(int64_t{1});
  try {
    run(t, {{"x", x}, {"s", sc}, {"b", b}, {"m", mean}, {"v", var}}, 15);
    ADD_FAILURE() << "training_mode=1 ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("training_mode"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("BatchNormalization0"), std::string::npos) << e.what();
  }
  // Training outputs (opset 9: mean, var, saved_mean, saved_var) are refused.
  ir::Node o = n;
  o.outputs = {"y", "rm"};
  expect_error([&] { run(o, {{"x", x}, {"s", sc}, {"b", b}, {"m", mean}, {"v", var}}, 9); },
               "inference mode only");
  // Parameters of the wrong length.
  expect_error([&] { run(n, {{"x", x}, {"s", f32({4}, 1)}, {"b", b}, {"m", mean}, {"v", var}}, 15); },
               "one per channel");
  const ir::Node four = make_node("BatchNormalization", {"x", "s", "b", "m"}, {"y"});
  expect_error([&] { run(four, {{"x", x}, {"s", sc}, {"b", b}, {"m", mean}}, 15); }, "input 4");
}

// LayerNormalization-17: normalized over axes [axis, rank); Mean and
// InvStdDev have X's shape with those axes set to 1; Scale and B broadcast
// over the normalized shape.
TEST(NormOps, LayerNormalization) {
  const Tensor x = f32({2, 3, 4}, 700, -3.0f, 3.0f);
  const Tensor sc = f32({4}, 701), b = f32({3, 4}, 702);  // scale broadcast along axis 1
  ir::Node n = make_node("LayerNormalization", {"x", "s", "b"}, {"y", "mean", "inv"});
  n.attrs["axis"] = ir::Attribute::of(int64_t{1});
  n.attrs["epsilon"] = ir::Attribute::of(1e-2f);
  const auto got = run(n, {{"x", x}, {"s", sc}, {"b", b}}, 17);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].shape(), (Shape{2, 1, 1}));
  EXPECT_EQ(got[2].shape(), (Shape{2, 1, 1}));
  for (int r = 0; r < 2; ++r) {
    double m = 0, v = 0;
    for (int i = 0; i < 12; ++i) m += x.data<float>()[r * 12 + i];
    m /= 12;
    for (int i = 0; i < 12; ++i) v += (x.data<float>()[r * 12 + i] - m) * (x.data<float>()[r * 12 + i] - m);
    v /= 12;
    const double inv = 1.0 / std::sqrt(v + 1e-2);
    EXPECT_NEAR(got[1].data<float>()[r], m, 1e-5);
    EXPECT_NEAR(got[2].data<float>()[r], inv, 1e-5);
    for (int i = 0; i < 12; ++i)
      EXPECT_NEAR(got[0].data<float>()[r * 12 + i],
                  (x.data<float>()[r * 12 + i] - m) * inv * sc.data<float>()[i % 4] + b.data<float>()[i], 1e-5);
  }
  // Only Y, no B, default axis -1, many rows on several threads.
  const Tensor big = f32({300, 64}, 703);
  const Tensor s64 = f32({64}, 704);
  const auto y = run(make_node("LayerNormalization", {"x", "s"}, {"y"}), {{"x", big}, {"s", s64}}, 17, {}, 3)[0];
  for (int r = 0; r < 300; r += 37) {
    double m = 0, v = 0;
    for (int i = 0; i < 64; ++i) m += big.data<float>()[r * 64 + i];
    m /= 64;
    for (int i = 0; i < 64; ++i) v += std::pow(big.data<float>()[r * 64 + i] - m, 2);
    const double inv = 1.0 / std::sqrt(v / 64 + 1e-5);
    for (int i = 0; i < 64; i += 7)
      EXPECT_NEAR(y.data<float>()[r * 64 + i], (big.data<float>()[r * 64 + i] - m) * inv * s64.data<float>()[i], 1e-4);
  }
  // Scale that doesn't broadcast to the normalized shape.
  expect_error([&] { run(n, {{"x", x}, {"s", f32({5}, 1)}, {"b", b}}, 17); }, "broadcastable to the normalized shape");
  // Not before opset 17.
  expect_error([&] { run(n, {{"x", x}, {"s", sc}, {"b", b}}, 16); }, "LayerNormalization");
}

// The rows of a LayerNormalization go four at a time where four are left
// (their sums interleaved), else one by one: each row's bits must be what
// the row alone gives (a [1, n] input takes the one-row path). Widths with
// and without a tail of n % 16, Scale and B as constants (prepared) and
// given at run time; Mean and InvStdDev as well; and a double input (its
// own instantiation of the rows). Reference: the op itself on one row, held
// to ONNX's backend data by the conformance run.
TEST(NormOps, LayerNormalizationRowsInGroupsAreTheRowsAlone) {
  {
    std::vector<double> xv(7 * 101), sv(101);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = 3.0 * std::sin(0.37 * static_cast<double>(i));
    for (size_t i = 0; i < sv.size(); ++i) sv[i] = 0.5 + 0.03 * static_cast<double>(i);
    const Tensor x = Tensor::from<double>({7, 101}, xv), sc = Tensor::from<double>({101}, sv);
    const ir::Node node = make_node("LayerNormalization", {"x", "s"}, {"y"});
    const Tensor all = run(node, {{"x", x}, {"s", sc}}, 17, {}, 1)[0];
    for (int64_t r = 0; r < 7; ++r) {
      const Tensor row = Tensor::from<double>(
          {1, 101}, std::vector<double>(xv.begin() + r * 101, xv.begin() + (r + 1) * 101));
      const Tensor one = run(node, {{"x", row}, {"s", sc}}, 17, {}, 1)[0];
      const size_t bytes = 101 * sizeof(double);
      EXPECT_EQ(std::memcmp(all.data<double>() + r * 101, one.data<double>(), bytes), 0)
          << "double row " << r;
    }
  }
  for (const int64_t n : {256, 37, 16, 5}) {
    const Tensor x = f32({7, n}, 710, -3.0f, 3.0f);
    const Tensor sc = f32({n}, 711, 0.5f, 1.5f), b = f32({n}, 712);
    ir::Node node = make_node("LayerNormalization", {"x", "s", "b"}, {"y", "mean", "inv"});
    for (const bool constants : {true, false}) {
      const Session::NamedTensors params = {{"s", sc}, {"b", b}};
      auto run_on = [&](const Tensor& in) {
        Session::NamedTensors feed = {{"x", in}};
        if (!constants) feed.insert(feed.end(), params.begin(), params.end());
        return run(node, feed, 17, constants ? params : Session::NamedTensors{}, 1);
      };
      const auto all = run_on(x);
      for (int64_t r = 0; r < 7; ++r) {
        Tensor row(DType::kF32, {1, n});
        const size_t bytes = static_cast<size_t>(n) * sizeof(float);
        std::memcpy(row.data<float>(), x.data<float>() + r * n, bytes);
        const auto one = run_on(row);
        const std::string what = "n=" + std::to_string(n) + " row " + std::to_string(r) +
                                 (constants ? " (prepared)" : "");
        EXPECT_EQ(std::memcmp(all[0].data<float>() + r * n, one[0].data<float>(), bytes), 0)
            << what << ": Y";
        EXPECT_EQ(std::memcmp(all[1].data<float>() + r, one[1].data<float>(), sizeof(float)), 0)
            << what << ": Mean";
        EXPECT_EQ(std::memcmp(all[2].data<float>() + r, one[2].data<float>(), sizeof(float)), 0)
            << what << ": InvStdDev";
      }
    }
  }
}

TEST(NormOps, InstanceLpLrnMvn) {
  // InstanceNormalization (spec): y = scale * (x - mean) / sqrt(variance +
  // epsilon) + B, mean and variance per instance and channel.
  const Tensor x = f32({2, 3, 5, 7}, 800, -2.0f, 4.0f);
  const Tensor sc = f32({3}, 801), b = f32({3}, 802);
  const floats y = values(run(make_node("InstanceNormalization", {"x", "s", "b"}, {"y"}),
                              {{"x", x}, {"s", sc}, {"b", b}}, 6, {}, 3)[0]);
  for (int t = 0; t < 6; ++t) {
    double m = 0, v = 0;
    for (int i = 0; i < 35; ++i) m += x.data<float>()[t * 35 + i];
    m /= 35;
    for (int i = 0; i < 35; ++i) v += std::pow(x.data<float>()[t * 35 + i] - m, 2);
    v /= 35;
    for (int i = 0; i < 35; i += 5)
      EXPECT_NEAR(y[static_cast<size_t>(t * 35 + i)],
                  sc.data<float>()[t % 3] * (x.data<float>()[t * 35 + i] - m) / std::sqrt(v + 1e-5) + b.data<float>()[t % 3],
                  1e-4);
  }
  // LpNormalization (hand-computed): [3, 4] / 5 (p=2) and / 7 (p=1); along
  // axis 0 of [[3, 1], [4, 0]]: columns [3, 4] / 5 and [1, 0] / 1.
  ir::Node lp = make_node("LpNormalization", {"x"}, {"y"});
  expect_close(run(lp, {{"x", Tensor::from<float>({1, 2}, {3, 4})}}, 1)[0],
               Tensor::from<float>({1, 2}, {0.6f, 0.8f}), 1e-6, 0, "p=2");
  lp.attrs["p"] = ir::Attribute::of(int64_t{1});
  expect_close(run(lp, {{"x", Tensor::from<float>({1, 2}, {3, 4})}}, 1)[0],
               Tensor::from<float>({1, 2}, {3.0f / 7, 4.0f / 7}), 1e-6, 0, "p=1");
  lp.attrs["p"] = ir::Attribute::of(int64_t{2});
  lp.attrs["axis"] = ir::Attribute::of(int64_t{0});
  expect_close(run(lp, {{"x", Tensor::from<float>({2, 2}, {3, 1, 4, 0})}}, 1)[0],
               Tensor::from<float>({2, 2}, {0.6f, 1.0f, 0.8f, 0.0f}), 1e-6, 0, "axis 0");
  lp.attrs["p"] = ir::Attribute::of(int64_t{3});
  expect_error([&] { run(lp, {{"x", f32({2, 2}, 1)}}, 1); }, "p = 1 or 2");
  // LRN (spec): square_sum over channels [c - floor((size-1)/2), c +
  // ceil((size-1)/2)], y = x / (bias + alpha / size * square_sum) ^ beta.
  const Tensor lx = f32({2, 5, 3, 3}, 803);
  for (float beta : {0.75f, 0.5f, 1.0f, 0.6f}) {
    ir::Node lrn = make_node("LRN", {"x"}, {"y"});
    lrn.attrs["size"] = ir::Attribute::of(int64_t{4});
    lrn.attrs["alpha"] = ir::Attribute::of(0.5f);
    lrn.attrs["beta"] = ir::Attribute::of(beta);
    lrn.attrs["bias"] = ir::Attribute::of(2.0f);
    const floats ly = values(run(lrn, {{"x", lx}}, 13)[0]);
    for (int64_t i = 0; i < lx.numel(); ++i) {
      const int64_t n = i / 45, c = (i / 9) % 5, p = i % 9;
      double sq = 0;
      for (int64_t q = std::max<int64_t>(0, c - 1); q <= std::min<int64_t>(4, c + 2); ++q)
        sq += std::pow(lx.data<float>()[n * 45 + q * 9 + p], 2);
      EXPECT_NEAR(ly[static_cast<size_t>(i)], lx.data<float>()[i] / std::pow(2.0 + 0.5 / 4 * sq, beta), 1e-5);
    }
  }
  expect_error([&] { run(make_node("LRN", {"x"}, {"y"}), {{"x", lx}}, 13); }, "size");
  // MeanVarianceNormalization (spec function): (X - E[X]) / (sqrt(E[X^2] -
  // E[X]^2) + 1e-9) over `axes` (default [0, 2, 3]).
  const Tensor mx = f32({2, 3, 2, 2}, 804);
  for (const ints& axes : {ints{0, 2, 3}, ints{1}, ints{-1, 0}}) {
    ir::Node mvn = make_node("MeanVarianceNormalization", {"x"}, {"y"});
    mvn.attrs["axes"] = ir::Attribute::of(axes);
    const floats my = values(run(mvn, {{"x", mx}}, 13)[0]);
    std::vector<bool> red(4, false);
    for (int64_t a : axes) red[static_cast<size_t>(a < 0 ? a + 4 : a)] = true;
    for (int64_t i = 0; i < mx.numel(); ++i) {
      const ints ii = unravel(i, mx.shape());
      double s = 0, s2 = 0;
      int cnt = 0;
      for (int64_t j = 0; j < mx.numel(); ++j) {
        const ints jj = unravel(j, mx.shape());
        bool same = true;
        for (size_t d = 0; d < 4; ++d) same = same && (red[d] || jj[d] == ii[d]);
        if (!same) continue;
        s += mx.data<float>()[j];
        s2 += std::pow(mx.data<float>()[j], 2);
        ++cnt;
      }
      const double m = s / cnt, sd = std::sqrt(s2 / cnt - m * m);
      EXPECT_NEAR(my[static_cast<size_t>(i)], (mx.data<float>()[i] - m) / (sd + 1e-9), 1e-4);
    }
  }
  expect_error([&] { run(make_node("MeanVarianceNormalization", {"x"}, {"y"}), {{"x", f32({2, 3}, 1)}}, 13); },
               "axis");
}

// ---- symbolic shape inference ----

std::vector<ir::ValueInfo> infer(const ir::Node& n, int64_t opset, const std::vector<ir::ValueInfo>& in,
                                 const std::vector<const Tensor*>& consts = {}) {
  const ops::OpDef* def = ops::OpRegistry::global().find(n.domain, n.op_type, opset);
  EXPECT_NE(def, nullptr) << n.op_type;
  if (def == nullptr) return {};
  std::vector<const ir::ValueInfo*> ptrs;
  for (const auto& v : in) ptrs.push_back(&v);
  ops::InferContext ctx(n, opset, ptrs, consts);
  def->infer(ctx);
  return ctx.outputs();
}

ir::Dim sym(const std::string& s) { return ir::Dim::sym(s); }
std::string shape_of(const ir::ValueInfo& v) { return v.shape ? ir::sym_shape_str(*v.shape) : "<unknown rank>"; }
ir::ValueInfo vi(ir::SymShape s) { return ir::ValueInfo{DType::kF32, std::move(s)}; }

TEST(NnInference, SymbolicShapes) {
  // Conv: N and M carried through; a symbolic H with k=1/s=1 stays symbolic,
  // one a 3x3 kernel shrinks becomes unknown; known sizes computed.
  ir::Node conv = make_node("Conv", {"x", "w"}, {"y"});
  conv.attrs["pads"] = ir::Attribute::of(ints{1, 0, 1, 0});
  auto o = infer(conv, 17, {vi({sym("batch"), 3, sym("H"), 32}), vi({8, 3, 3, 3})});
  EXPECT_EQ(shape_of(o[0]), "[batch, 8, H, 30]");
  EXPECT_EQ(o[0].dtype, DType::kF32);
  ir::Node c1 = make_node("Conv", {"x", "w"}, {"y"});
  o = infer(c1, 17, {vi({sym("batch"), 3, sym("H"), sym("W")}), vi({8, 3, 1, 1})});
  EXPECT_EQ(shape_of(o[0]), "[batch, 8, H, W]");
  ir::Node same = c1;
  same.attrs["auto_pad"] = ir::Attribute::of(std::string("SAME_UPPER"));
  same.attrs["strides"] = ir::Attribute::of(ints{2, 2});
  o = infer(same, 17, {vi({sym("batch"), 3, 15, sym("W")}), vi({8, 3, 3, 3})});
  EXPECT_EQ(shape_of(o[0]), "[batch, 8, 8, ?]");
  // Unknown X shape, known W: rank known, sizes unknown.
  o = infer(c1, 17, {ir::ValueInfo{DType::kF32, std::nullopt}, vi({8, 3, 1, 1})});
  EXPECT_EQ(shape_of(o[0]), "[?, 8, ?, ?]");
  // Nothing known: nothing inferred, and no error.
  o = infer(c1, 17, {ir::ValueInfo{}, ir::ValueInfo{}});
  EXPECT_FALSE(o[0].shape.has_value());
  // A known channel mismatch is an error at inference.
  expect_error([&] { infer(c1, 17, {vi({1, 4, 5, 5}), vi({8, 3, 1, 1})}); }, "C == W.shape[1] * group");

  // ConvTranspose: [N, W.shape[1] * group, computed].
  ir::Node ct = make_node("ConvTranspose", {"x", "w"}, {"y"});
  ct.attrs["strides"] = ir::Attribute::of(ints{2, 2});
  o = infer(ct, 17, {vi({sym("n"), 4, 5, 6}), vi({4, 3, 3, 3})});
  EXPECT_EQ(shape_of(o[0]), "[n, 3, 11, 13]");
  o = infer(ct, 17, {vi({sym("n"), 4, sym("h"), 6}), vi({4, 3, 3, 3})});
  EXPECT_EQ(shape_of(o[0]), "[n, 3, ?, ?]");

  // MatMul: numpy batch broadcasting with symbols.
  const ir::Node mm = make_node("MatMul", {"a", "b"}, {"y"});
  o = infer(mm, 13, {vi({sym("batch"), sym("seq"), 64}), vi({64, 128})});
  EXPECT_EQ(shape_of(o[0]), "[batch, seq, 128]");
  o = infer(mm, 13, {vi({sym("seq"), 64}), vi({64})});
  EXPECT_EQ(shape_of(o[0]), "[seq]");
  o = infer(mm, 13, {vi({1, sym("h"), 5, 64}), vi({sym("b"), 1, 64, 7})});
  EXPECT_EQ(shape_of(o[0]), "[b, h, 5, 7]");
  o = infer(mm, 13, {ir::ValueInfo{DType::kF32, std::nullopt}, vi({64, 7})});
  EXPECT_FALSE(o[0].shape.has_value());
  expect_error([&] { infer(mm, 13, {vi({sym("s"), 63}), vi({64, 7})}); }, "second-to-last");

  // Gemm: [M, N] after the transposes.
  ir::Node gemm = make_node("Gemm", {"a", "b", "c"}, {"y"});
  gemm.attrs["transB"] = ir::Attribute::of(int64_t{1});
  o = infer(gemm, 13, {vi({sym("batch"), 256}), vi({10, 256}), vi({10})});
  EXPECT_EQ(shape_of(o[0]), "[batch, 10]");

  // Pools: [N, C, computed]; MaxPool's Indices are i64 of the same shape.
  ir::Node mp = make_node("MaxPool", {"x"}, {"y", "i"});
  mp.attrs["kernel_shape"] = ir::Attribute::of(ints{3, 3});
  mp.attrs["strides"] = ir::Attribute::of(ints{2, 2});
  mp.attrs["ceil_mode"] = ir::Attribute::of(int64_t{1});
  o = infer(mp, 12, {vi({sym("n"), sym("c"), 112, sym("w")})});
  EXPECT_EQ(shape_of(o[0]), "[n, c, 56, ?]");
  EXPECT_EQ(o[1].dtype, DType::kI64);
  EXPECT_EQ(shape_of(o[1]), "[n, c, 56, ?]");
  o = infer(make_node("GlobalAveragePool", {"x"}, {"y"}), 13, {vi({sym("n"), 512, sym("h"), sym("w")})});
  EXPECT_EQ(shape_of(o[0]), "[n, 512, 1, 1]");

  // LayerNormalization: Mean / InvStdDev with the normalized axes set to 1.
  ir::Node ln = make_node("LayerNormalization", {"x", "s"}, {"y", "m", "i"});
  o = infer(ln, 17, {vi({sym("b"), sym("s"), 768}), vi({768})});
  EXPECT_EQ(shape_of(o[0]), "[b, s, 768]");
  EXPECT_EQ(shape_of(o[1]), "[b, s, 1]");
  EXPECT_EQ(o[2].dtype, DType::kF32);

  // Softmax and the normalizations keep the input's shape.
  o = infer(make_node("Softmax", {"x"}, {"y"}), 13, {vi({sym("b"), 10})});
  EXPECT_EQ(shape_of(o[0]), "[b, 10]");
  o = infer(make_node("BatchNormalization", {"x", "s", "b", "m", "v"}, {"y"}), 15,
            {vi({sym("n"), 3, sym("h"), 4}), vi({3}), vi({3}), vi({3}), vi({3})});
  EXPECT_EQ(shape_of(o[0]), "[n, 3, h, 4]");
}

}  // namespace
}  // namespace qforge
