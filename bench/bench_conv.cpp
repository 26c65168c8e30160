// One float Conv node in a Session (weights and bias initializers, so they
// are prepared as in a model), on the convolution shapes of the bundled
// models: per-layer figures for the Conv paths (depthwise, 1x1, im2col)
// that the whole-model benchmarks (bench_session.cpp) mix together.
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "qforge/ir.h"
#include "qforge/session.h"

namespace {

using qforge::DType;
using qforge::Shape;
using qforge::Tensor;
namespace ir = qforge::ir;

Tensor random_f32(const Shape& shape, uint32_t seed) {
  Tensor t(DType::kF32, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = u(rng);
  return t;
}

// range: batch, threads. Conv of x [batch, C, H, H] by M x (C/group) x k x k,
// stride s, pad k/2, group, followed by Clip(0, 6) (fused into the Conv)
// and a Slice of one channel.
void BM_Conv(benchmark::State& state, int64_t C, int64_t H, int64_t M, int64_t k, int64_t s,
             int64_t group) {
  ir::Model m;
  m.opsets[""] = 17;
  m.graph.name = "conv";
  const Shape xs{state.range(0), C, H, H};
  m.graph.inputs.push_back("x");
  m.graph.values["x"] = ir::ValueInfo{DType::kF32, ir::to_sym(xs)};
  m.graph.initializers["w"] = random_f32({M, C / group, k, k}, 2);
  m.graph.initializers["b"] = random_f32({M}, 3);
  m.graph.initializers["lo"] = Tensor::from<float>({}, {0.0f});
  m.graph.initializers["hi"] = Tensor::from<float>({}, {6.0f});
  ir::Node conv;
  conv.op_type = "Conv";
  conv.name = "conv";
  conv.inputs = {"x", "w", "b"};
  conv.outputs = {"c"};
  conv.attrs["strides"] = ir::Attribute::of(std::vector<int64_t>{s, s});
  conv.attrs["pads"] = ir::Attribute::of(std::vector<int64_t>{k / 2, k / 2, k / 2, k / 2});
  conv.attrs["group"] = ir::Attribute::of(group);
  ir::Node clip;
  clip.op_type = "Clip";
  clip.name = "clip";
  clip.inputs = {"c", "lo", "hi"};
  clip.outputs = {"y"};
  // The Slice keeps one channel as the output, so that the Conv writes into a
  // pooled intermediate buffer as inside a model, not into a fresh output.
  m.graph.initializers["starts"] = Tensor::from<int64_t>({1}, {0});
  m.graph.initializers["ends"] = Tensor::from<int64_t>({1}, {1});
  m.graph.initializers["axes"] = Tensor::from<int64_t>({1}, {1});
  ir::Node slice;
  slice.op_type = "Slice";
  slice.name = "slice";
  slice.inputs = {"y", "starts", "ends", "axes"};
  slice.outputs = {"out"};
  m.graph.nodes = {conv, clip, slice};
  m.graph.outputs.push_back("out");
  ir::infer_shapes(m);  // typed values, so that the Clip fuses into the Conv as in a model
  qforge::SessionOptions options;
  options.threads = static_cast<int>(state.range(1));
  const qforge::Session session(std::move(m), options);
  const Tensor x = random_f32(xs, 1);
  for (int i = 0; i < 3; ++i) session.run({{"x", x}});
  for (auto _ : state) benchmark::DoNotOptimize(session.run({{"x", x}}));
  const int64_t Ho = (H + s - 1) / s;
  state.counters["GFLOPS"] = benchmark::Counter(
      2.0 * static_cast<double>(state.range(0) * M * (C / group) * k * k * Ho * Ho),
      benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

#define QF_CONV(name, C, H, M, k, s, g)                                                   \
  BENCHMARK_CAPTURE(BM_Conv, name, C, H, M, k, s, g)                                      \
      ->ArgsProduct({{1, 32}, {1, 2}})->ArgNames({"batch", "threads"})->UseRealTime()     \
      ->Unit(benchmark::kMicrosecond)

// models/mobilenet_dw.onnx (input 3 x 96 x 96).
QF_CONV(mb_stem_3x3s2, 3, 96, 32, 3, 2, 1);
QF_CONV(mb_dw32_48_s1, 32, 48, 32, 3, 1, 32);
QF_CONV(mb_pw32to64_48, 32, 48, 64, 1, 1, 1);
QF_CONV(mb_dw64_48_s2, 64, 48, 64, 3, 2, 64);
QF_CONV(mb_dw128_24_s1, 128, 24, 128, 3, 1, 128);
QF_CONV(mb_pw128to128_24, 128, 24, 128, 1, 1, 1);
QF_CONV(mb_dw256_12_s1, 256, 12, 256, 3, 1, 256);
// models/fashion_cnn.onnx (input 1 x 28 x 28).
QF_CONV(fc_conv1, 1, 28, 32, 3, 1, 1);
QF_CONV(fc_conv2, 32, 14, 64, 3, 1, 1);

}  // namespace
