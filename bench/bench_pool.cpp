// What handing work to another core costs on this machine, which bounds how
// small a parallel loop may be before one thread is faster:
//   ./build-bench/bench/qforge_bench --benchmark_filter='CoreToCore|ForkJoin'
// BM_CoreToCoreRoundTrip: two threads pass a counter back and forth through
// two atomics on separate cache lines; each round trip moves two lines
// between the cores, so half of it is the latency of one line moving.
// BM_ForkJoin: ThreadPool::parallel_for of two chunks on two threads, each
// chunk busy for work_ns (0: the pool's own cost); the time over work_ns
// is what a fork-join adds. The 2-core VM (docs/PERFORMANCE.md, Session
// 19): a round trip 560-600 ns, a fork-join of two 2 us chunks 3.6-4.1 us.
// Run pinned to two cores (taskset -c 0-1), or the threads may share one.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "qforge/thread_pool.h"

namespace {

struct alignas(64) Line {
  std::atomic<int64_t> v{0};
};

void BM_CoreToCoreRoundTrip(benchmark::State& state) {
  Line ping, pong;
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    int64_t seen = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const int64_t v = ping.v.load(std::memory_order_acquire);
      if (v != seen) {
        seen = v;
        pong.v.store(v, std::memory_order_release);
      }
    }
  });
  int64_t i = 0;
  for (auto _ : state) {
    ping.v.store(++i, std::memory_order_release);
    while (pong.v.load(std::memory_order_acquire) != i) {
    }
  }
  stop.store(true);
  echo.join();
}
BENCHMARK(BM_CoreToCoreRoundTrip)->UseRealTime();

// Busy for ns nanoseconds of wall-clock time.
void busy(int64_t ns) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  while (std::chrono::steady_clock::now() < end) {
  }
}

void BM_ForkJoin(benchmark::State& state) {
  const int64_t work = state.range(0);
  qforge::ThreadPool pool(2);
  std::atomic<int64_t> chunks{0};
  for (auto _ : state)
    pool.parallel_for(2, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) busy(work);
      chunks.fetch_add(e - b, std::memory_order_relaxed);
    });
  if (chunks.load() != 2 * static_cast<int64_t>(state.iterations()))
    state.SkipWithError("a chunk ran twice or not at all");
}
BENCHMARK(BM_ForkJoin)->Arg(0)->Arg(2000)->ArgName("work_ns")->UseRealTime();

}  // namespace
