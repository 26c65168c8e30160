// The float Session end to end on the bundled models (models/, made by
// scripts/make_models.py), at batch 1 and 32 with 1 and 2 threads. The peer
// comparison with ONNX Runtime is scripts/bench_float.sh, which runs these
// next to ONNX Runtime on the same models and shapes.
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "qforge/session.h"

namespace {

using qforge::DType;
using qforge::Shape;
using qforge::Tensor;

Tensor random_input(DType dt, const Shape& shape) {
  Tensor t(dt, shape);
  std::mt19937 rng(1);
  if (dt == DType::kI64) {
    std::uniform_int_distribution<int64_t> u(0, 999);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<int64_t>()[i] = u(rng);
  } else {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  }
  return t;
}

// range(0) = batch, range(1) = threads.
void BM_Session(benchmark::State& state, const char* model, DType dt, Shape sample) {
  qforge::SessionOptions options;
  options.threads = static_cast<int>(state.range(1));
  const qforge::Session session(std::string(QFORGE_MODELS_DIR) + "/" + model + ".onnx", options);
  Shape shape{state.range(0)};
  shape.insert(shape.end(), sample.begin(), sample.end());
  const Tensor x = random_input(dt, shape);
  const std::string name = session.inputs()[0].name;
  for (int i = 0; i < 3; ++i) session.run({{name, x}});
  for (auto _ : state) benchmark::DoNotOptimize(session.run({{name, x}}));
  state.counters["samples/s"] =
      benchmark::Counter(static_cast<double>(state.range(0)), benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(BM_Session, fashion_cnn, "fashion_cnn", DType::kF32, Shape{1, 28, 28})
    ->ArgsProduct({{1, 32}, {1, 2}})->ArgNames({"batch", "threads"})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Session, mobilenet_dw, "mobilenet_dw", DType::kF32, Shape{3, 96, 96})
    ->ArgsProduct({{1, 32}, {1, 2}})->ArgNames({"batch", "threads"})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Session, transformer4, "transformer4", DType::kI64, Shape{64})
    ->ArgsProduct({{1, 32}, {1, 2}})->ArgNames({"batch", "threads"})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
