// How the float and the int8 GEMM split their output over threads.
#pragma once

#include <algorithm>
#include <cstdint>

#include "qforge/thread_pool.h"

namespace qforge::kernels {

// Calls fn(m0, m1, n0, n1) for one tile per thread of an M x N output, in
// whole mr x nr panels, as even as they can be. N is split first, into parts
// of at least 64 columns (tiles that split N pack disjoint parts of B and
// only repack the usually smaller A), then M, into parts of at least
// min_rows rows. With rows_first (a GEMM that packs no A) M is split first
// where it has enough rows, into up to 4 bands per thread: thread t first
// writes the t-th group of bands of C, the rows ThreadPool also hands
// thread t in the elementwise loops before and after, so they stay in its
// cache, and a thread that finishes first takes the last bands of a slower
// one. Elsewhere, more tiles than threads only repack more (measured
// slower).
// Without a pool of several threads, or when `parallel` is false (too little
// work to wake the pool), the whole output is one tile. Empty tiles are skipped.
template <typename Fn>
void for_each_tile(int64_t M, int64_t N, int64_t mr, int64_t nr, int64_t min_rows, ThreadPool* pool,
                   bool parallel, Fn&& fn, bool rows_first = false) {
  const int threads = pool != nullptr ? pool->threads() : 1;
  const int64_t panels_m = (M + mr - 1) / mr, panels_n = (N + nr - 1) / nr;
  int64_t split_m = 1, split_n = 1;
  if (threads > 1 && parallel && rows_first && std::min(panels_m, M / min_rows) >= threads) {
    // Up to kRowTiles bands per thread (ThreadPool::parallel_for gives each
    // thread its group and lets one that finishes early take another's
    // last), so that a core running slower (a VM's vCPU whose physical core
    // is busy with another tenant) doesn't hold up the whole call. A band
    // repacks nothing; B is read once more per band. transformer4 at batch
    // 32 on 2 threads: 7% faster with one vCPU at 75% speed, 2% slower
    // with both at full speed (docs/PERFORMANCE.md, Session 14).
    constexpr int64_t kRowTiles = 4;
    split_m = std::clamp<int64_t>(std::min(panels_m, M / min_rows), threads, threads * kRowTiles);
  } else if (threads > 1 && parallel) {
    split_n = std::clamp<int64_t>(threads, 1, std::min(panels_n, std::max<int64_t>(1, N / 64)));
    split_m = std::clamp<int64_t>((threads + split_n - 1) / split_n, 1,
                                  std::min(panels_m, std::max<int64_t>(1, M / min_rows)));
  }
  auto tile = [&](int64_t t) {
    const int64_t tm = t / split_n, tn = t % split_n;
    const int64_t m0 = panels_m * tm / split_m * mr;
    const int64_t m1 = std::min(M, panels_m * (tm + 1) / split_m * mr);
    const int64_t n0 = panels_n * tn / split_n * nr;
    const int64_t n1 = std::min(N, panels_n * (tn + 1) / split_n * nr);
    if (m0 < m1 && n0 < n1) fn(m0, m1, n0, n1);
  };
  const int64_t tiles = split_m * split_n;
  if (tiles == 1) {
    tile(0);
    return;
  }
  pool->parallel_for(tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) tile(t);
  });
}

}  // namespace qforge::kernels
