// Float32 GEMM (kernels/gemm.h) on transformer- and conv-like shapes, with 1
// and 2 threads, plain and with B packed once (weights). The ISA is the
// process's (kernels().isa), so compare the paths with QFORGE_ISA:
//   ./build/bench/qforge_bench --benchmark_filter=Gemm
//   QFORGE_ISA=avx2 ./build/bench/qforge_bench --benchmark_filter=Gemm
// GFLOPS counts 2*M*N*K per call over wall-clock time. Arguments: M, N, K,
// threads.
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "qforge/thread_pool.h"

namespace {

namespace k = qforge::kernels;

std::vector<float> random_vec(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

struct Setup {
  int64_t M, N, K;
  std::vector<float> A, B, C;
  std::unique_ptr<qforge::ThreadPool> pool;  // null: one thread

  explicit Setup(const benchmark::State& state)
      : M(state.range(0)), N(state.range(1)), K(state.range(2)), A(random_vec(M * K, 1)),
        B(random_vec(K * N, 2)), C(static_cast<size_t>(M * N)) {
    const auto threads = static_cast<int>(state.range(3));
    if (threads > 1) pool = std::make_unique<qforge::ThreadPool>(threads);
  }

  void report(benchmark::State& state) const {
    state.counters["GFLOPS"] = benchmark::Counter(
        2e-9 * static_cast<double>(M * N * K) * static_cast<double>(state.iterations()),
        benchmark::Counter::kIsRate);
    state.SetLabel(k::isa_name(k::kernels().isa));
  }
};

void BM_Gemm(benchmark::State& state) {
  Setup s(state);
  for (auto _ : state) {
    k::sgemm(false, false, s.M, s.N, s.K, 1.0f, s.A.data(), s.K, s.B.data(), s.N, 0.0f,
             s.C.data(), s.N, {}, s.pool.get());
    benchmark::DoNotOptimize(s.C.data());
    benchmark::ClobberMemory();
  }
  s.report(state);
}

// ONNX Gemm's usual form: B stored N x K (transB = 1).
void BM_GemmTransB(benchmark::State& state) {
  Setup s(state);
  for (auto _ : state) {
    k::sgemm(false, true, s.M, s.N, s.K, 1.0f, s.A.data(), s.K, s.B.data(), s.K, 0.0f,
             s.C.data(), s.N, {}, s.pool.get());
    benchmark::DoNotOptimize(s.C.data());
    benchmark::ClobberMemory();
  }
  s.report(state);
}

void BM_GemmPackedB(benchmark::State& state) {
  Setup s(state);
  const k::PackedMatrix pb = k::pack_b(false, s.K, s.N, s.B.data(), s.N);
  for (auto _ : state) {
    k::sgemm_packed_b(s.M, s.A.data(), s.K, false, pb, 0.0f, s.C.data(), s.N, {}, s.pool.get());
    benchmark::DoNotOptimize(s.C.data());
    benchmark::ClobberMemory();
  }
  s.report(state);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t threads : {1, 2})
    for (auto [m, n, kk] : {std::array<int64_t, 3>{1, 768, 768},
                            {32, 768, 768},
                            {128, 3072, 768},
                            {512, 1024, 1024},
                            {1, 4096, 4096},
                            {64, 784, 288},
                            {64, 196, 288}})
      b->Args({m, n, kk, threads});
  b->ArgNames({"M", "N", "K", "threads"})->UseRealTime();
}

BENCHMARK(BM_Gemm)->Apply(shapes);
BENCHMARK(BM_GemmPackedB)->Apply(shapes);

// Conv's form: the weights (A, M x K) packed once, the im2col columns as B.
void BM_GemmPackedA(benchmark::State& state) {
  Setup s(state);
  const k::PackedMatrix pa = k::pack_a(false, s.M, s.K, s.A.data(), s.K);
  for (auto _ : state) {
    k::sgemm_packed_a(pa, s.N, s.B.data(), s.N, false, 0.0f, s.C.data(), s.N, {}, s.pool.get());
    benchmark::DoNotOptimize(s.C.data());
    benchmark::ClobberMemory();
  }
  s.report(state);
}
BENCHMARK(BM_GemmPackedA)->Apply(shapes);
BENCHMARK(BM_GemmTransB)
    ->Args({32, 768, 768, 1})
    ->Args({128, 3072, 768, 2})
    ->ArgNames({"M", "N", "K", "threads"})
    ->UseRealTime();

}  // namespace
