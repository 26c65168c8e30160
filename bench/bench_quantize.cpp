// Quantize / dequantize kernels, one benchmark per kernel and ISA, so the
// SIMD paths can be compared with the scalar reference in one run:
//   scripts/build.sh -DQFORGE_BUILD_BENCH=ON && ./build/bench/qforge_bench
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace {

using qforge::kernels::Isa;

std::vector<float> inputs(int64_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = d(rng);
  return x;
}

bool runnable(Isa isa, benchmark::State& state) {
  for (Isa a : qforge::kernels::available_isas())
    if (a == isa) return true;
  state.SkipWithError("this CPU can't run this ISA");
  return false;
}

void BM_QuantizeU8(benchmark::State& state, Isa isa) {
  if (!runnable(isa, state)) return;
  const auto k = qforge::kernels::kernels_for(isa);
  const int64_t n = state.range(0);
  const auto x = inputs(n);
  std::vector<uint8_t> y(static_cast<size_t>(n));
  for (auto _ : state) {
    k.quantize_u8(x.data(), n, 0.047f, 128, 0, 255, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 4);
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_DequantizeU8(benchmark::State& state, Isa isa) {
  if (!runnable(isa, state)) return;
  const auto k = qforge::kernels::kernels_for(isa);
  const int64_t n = state.range(0);
  std::vector<uint8_t> q(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) q[static_cast<size_t>(i)] = static_cast<uint8_t>(i * 37);
  std::vector<float> y(static_cast<size_t>(n));
  for (auto _ : state) {
    k.dequantize_u8(q.data(), n, 0.047f, 128, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n);
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK_CAPTURE(BM_QuantizeU8, ref, Isa::kRef)->Arg(4096)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_QuantizeU8, avx2, Isa::kAvx2)->Arg(4096)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_QuantizeU8, avx512, Isa::kAvx512)->Arg(4096)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_DequantizeU8, ref, Isa::kRef)->Arg(4096)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_DequantizeU8, avx2, Isa::kAvx2)->Arg(4096)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_DequantizeU8, avx512, Isa::kAvx512)->Arg(4096)->Arg(1 << 20);

}  // namespace
