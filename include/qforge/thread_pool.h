// A fixed pool of worker threads for data-parallel loops. The calling thread
// takes part in the work, so a pool of N threads has N - 1 workers. See
// docs/ARCHITECTURE.md for why qforge has its own pool rather than OpenMP.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace qforge {

class ThreadPool {
 public:
  // threads: total threads including the caller; 0 means one per logical core.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const noexcept;

  // Runs fn(begin, end) over [0, n) split into chunks of at least `grain`
  // items, on all threads, and returns when every chunk is done. Chunks are
  // handed out dynamically, so uneven work balances. The first exception
  // thrown by fn is re-thrown here after all threads stop. Calls from several
  // threads at once are serialised; a call from inside fn runs inline.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A process-wide pool sized by QFORGE_NUM_THREADS, else one per logical core.
ThreadPool& default_thread_pool();

}  // namespace qforge
