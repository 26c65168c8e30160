// ThreadPool (see include/qforge/thread_pool.h).
//
// Design: one job at a time. A job lives on the stack of the thread that
// called parallel_for; it is published to the workers through the atomic
// `job_`, then a new generation number. A worker that sees the generation
// change counts itself in `busy_` and only then reads `job_`; the caller,
// when no chunk is left, unpublishes the job (`job_` = null) and waits
// (spinning, then on done_cv_) until `busy_` is zero. The four accesses are
// sequentially consistent, so a worker that read the job is counted in the
// `busy_` the caller reads after unpublishing it: the job (and with it the
// chunk counters and the caller's fn) goes out of scope only after every
// worker has left it. No lock is taken on this path: with a mutex around
// joining and leaving, a worker that found the mutex held (the caller
// publishing or unpublishing) slept in the kernel, and a fork-join of
// trivial chunks took 4-7 us instead of 0.6 in a third of the calls on the
// 2-core VM. The mutex and condition variables serve only threads that
// have stopped spinning: idle workers (sleepers_) and a caller whose
// workers are slow (caller_sleeping_), each found by the other side with
// the same sequentially consistent pairs.
//
// Each pair has a read-modify-write on one side and, on the caller's, an
// exchange rather than a store before the load it must precede
// (`job_` = null, then `busy_`; `caller_sleeping_` = true, then `busy_`).
// C++ orders a sequentially consistent store before a later sequentially
// consistent load just as it orders an exchange, and x86 compiles both to
// xchg; Arm compiles the store to stlr, and qemu-aarch64 7.2 on an x86 host
// (the Arm tests in CI) lets a later ldar pass it: the store-buffering
// litmus test (bench/litmus/store_buffering.cpp) gave the forbidden result
// in 51 of 200000 rounds with stores and in none with exchanges. With the
// stores, CI's Arm kernel tests hung once, every thread waiting on a
// futex: as when a worker's busy_ = 0 misses caller_sleeping_ = true and
// the caller, having read busy_ before it, sleeps with no one to wake it.
//
// The chunks are cut into one contiguous range per thread (the caller is
// thread 0, worker i thread i): each thread first claims the chunks of its
// own range, in order, then those left in the others'. So consecutive
// loops over the same rows give each thread the same rows, and the data it
// wrote in the last loop is still in its own cache. (On the 2-core VM,
// reading 1 MiB that the other core has just written takes 3x as long as
// reading it after writing it on the same core; with one shared counter
// the chunks went to either thread at random.)
#include "qforge/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace qforge {
namespace {

// True while this thread runs chunks of some pool's parallel_for. A nested
// parallel_for then runs inline. This is deliberately not per pool: a
// parallel_for of another pool from inside fn could otherwise deadlock (pool
// B's worker calling back into pool A, whose call lock is held by a caller
// waiting for that very worker) and would oversubscribe the cores anyway.
thread_local bool t_in_parallel_for = false;

// Sets t_in_parallel_for for a scope, restoring the previous value.
class InParallelScope {
 public:
  InParallelScope() : prev_(t_in_parallel_for) { t_in_parallel_for = true; }
  ~InParallelScope() { t_in_parallel_for = prev_; }
  InParallelScope(const InParallelScope&) = delete;
  InParallelScope& operator=(const InParallelScope&) = delete;

 private:
  bool prev_;
};

// A hint to the CPU that this is a spin-wait loop (saves power, and yields
// the core to the sibling hyper-thread).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#else
  std::this_thread::yield();
#endif
}

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  const unsigned hc = std::thread::hardware_concurrency();  // 0 = unknown
  return hc == 0 ? 1 : static_cast<int>(hc);
}

}  // namespace

struct ThreadPool::Impl {
  // Threads beyond this many share the ranges of chunks (see the file comment).
  static constexpr int kMaxAffinityThreads = 64;

  // One parallel_for call. Lives on the caller's stack (see the file comment).
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    int64_t chunk = 1;    // items per chunk; the last chunk may be shorter
    int64_t nchunks = 0;  // ceil(n / chunk)
    // Thread t's range of chunks is [t * nchunks / T, (t + 1) * nchunks / T)
    // for T threads; next[t] is the next of them to hand out (may run past
    // the range's end: then it is used up).
    struct alignas(64) Next {
      std::atomic<int64_t> v{0};
    };
    int nthreads = 1;
    std::atomic<bool> failed{false};  // set once fn threw; stops new chunks
    Next next[kMaxAffinityThreads];
    std::mutex error_mu;
    std::exception_ptr error;  // the first exception; guarded by error_mu
  };

  // How long an idle worker polls for a new job before it sleeps (about a
  // millisecond: `pause` takes ~40-140 cycles). A Session run issues one
  // parallel_for per node, back to back, and waking a sleeping worker costs
  // tens of microseconds in a VM: measured on the 2-core dev VM, a batch-1
  // Gemm (1 x 3136 x 128) took 63 us on 2 threads with a 2000-iteration spin
  // and 17 us with this one (1 thread: 43 us). Idle workers still sleep
  // after the spin, so a process that stops computing stops using CPU.
  static constexpr int kSpinIterations = 20000;

  explicit Impl(int threads) : nthreads(resolve_threads(threads)) {
    try {
      workers.reserve(static_cast<size_t>(nthreads - 1));
      for (int i = 1; i < nthreads; ++i) workers.emplace_back([this, i] { worker_loop(i); });
    } catch (...) {
      // Thread creation failed (std::system_error): the destructor will not
      // run, and destroying a joinable std::thread terminates, so join here.
      stop_and_join();
      throw;
    }
  }

  ~Impl() { stop_and_join(); }

  // Wakes every worker with stop_ set and joins it. Workers only look at
  // stop_ between jobs, and no job can be running here (a job's caller is
  // inside parallel_for, which must have returned before the pool dies).
  void stop_and_join() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_.store(true);
    }
    work_cv_.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
  }

  // The first chunk of range t of `job`.
  static int64_t range_begin(const Job& job, int t) {
    return job.nchunks * t / job.nthreads;
  }

  // Claims the next chunk of range t, or returns -1 if it is used up.
  static int64_t claim(Job& job, int t) {
    const int64_t end = range_begin(job, t + 1);
    if (job.next[t].v.load(std::memory_order_relaxed) >= end) return -1;
    const int64_t c = job.next[t].v.fetch_add(1, std::memory_order_relaxed);
    return c < end ? c : -1;
  }

  // Runs chunks of `job` on the calling thread (thread `self` of the pool)
  // until none are left or fn has failed: its own range first, then the
  // others' in turn. Records the first exception.
  static void run_chunks(Job& job, int self) {
    InParallelScope scope;
    for (int k = 0; k < job.nthreads; ++k) {
      const int t = (self + k) % job.nthreads;
      for (;;) {
        if (job.failed.load(std::memory_order_relaxed)) return;
        const int64_t c = claim(job, t);
        if (c < 0) break;
        run_chunk(job, c);
      }
    }
  }

  static void run_chunk(Job& job, int64_t c) {
    const int64_t begin = c * job.chunk;
    const int64_t end = begin + std::min(job.chunk, job.n - begin);  // no overflow
    try {
      (*job.fn)(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lk(job.error_mu);
      if (!job.error) job.error = std::current_exception();
      job.failed.store(true, std::memory_order_relaxed);
    }
  }

  void worker_loop(int id) {
    uint64_t seen = 0;  // the last generation this worker has looked at
    for (;;) {
      uint64_t g = generation_.load(std::memory_order_acquire);
      for (int i = 0; i < kSpinIterations && g == seen; ++i) {
        if (stop_.load(std::memory_order_relaxed)) return;
        cpu_relax();
        g = generation_.load(std::memory_order_acquire);
      }
      if (g == seen) {  // idle: sleep until the next job (or stop)
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        work_cv_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
        sleepers_.fetch_sub(1);
        g = generation_.load();
      }
      if (stop_.load()) return;
      seen = g;
      // Before counting itself in busy_, the worker starts fetching the
      // lines of the job it will most likely find (job_ read early, as a
      // hint only: a prefetch of a stale address is harmless): the job, its
      // own range's counter and the caller's fn. Each is a line the caller
      // has just written, and on the 2-core VM a line takes about 300 ns to
      // move between cores (BM_CoreToCoreRoundTrip: 560-600 ns for two), so
      // fetched one after another they made most of the 1.2-1.4 us between
      // publishing a job and the worker starting a chunk; with the
      // prefetches 0.9-1.1 us. BM_ForkJoin/work_ns:0 (bench/bench_pool.cpp)
      // 1236-1396 -> 1011-1145 ns (docs/PERFORMANCE.md, Session 19).
      if (const Job* hint = job_.load(std::memory_order_relaxed)) {
        __builtin_prefetch(hint);
        __builtin_prefetch(&hint->next[std::min(id, kMaxAffinityThreads - 1)], 1);
        __builtin_prefetch(fn_hint_.load(std::memory_order_relaxed));
      }
      busy_.fetch_add(1);
      if (Job* job = job_.load()) run_chunks(*job, id % job->nthreads);
      if (busy_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
        std::lock_guard<std::mutex> lk(mu_);  // the caller is in done_cv_.wait or sees busy_ == 0
        done_cv_.notify_all();
      }
    }
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    std::lock_guard<std::mutex> call_lock(call_mu_);  // one job at a time

    Job job;
    job.fn = &fn;
    job.n = n;
    // At least `grain` items per chunk, and about 4 chunks per thread so
    // uneven chunks balance without paying for a counter update per item.
    const int64_t per_thread_share = n / (nthreads * 4) + (n % (nthreads * 4) != 0 ? 1 : 0);
    job.chunk = std::max(grain, per_thread_share);
    job.nchunks = n / job.chunk + (n % job.chunk != 0 ? 1 : 0);
    job.nthreads = std::min(nthreads, kMaxAffinityThreads);
    for (int t = 0; t < job.nthreads; ++t) job.next[t].v.store(range_begin(job, t), std::memory_order_relaxed);

    job_.store(&job);
    fn_hint_.store(&fn, std::memory_order_relaxed);
    generation_.fetch_add(1);
    if (sleepers_.load() > 0) {
      { std::lock_guard<std::mutex> lk(mu_); }  // a sleeper counted is in work_cv_.wait now
      work_cv_.notify_all();
    }

    run_chunks(job, 0);

    // Every chunk is claimed; late workers must not join. (An exchange, not
    // a store: see the file comment.)
    job_.exchange(nullptr);
    // Wait for the workers still in the job: spin first, as the workers do
    // for new jobs (in a VM, sleeping on done_cv_ and being woken costs tens
    // of microseconds, as much as a small GEMM), then sleep.
    for (int i = 0; i < kSpinIterations && busy_.load() != 0; ++i) cpu_relax();
    if (busy_.load() != 0) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_sleeping_.exchange(true);  // an exchange: see the file comment
      done_cv_.wait(lk, [&] { return busy_.load() == 0; });
      caller_sleeping_.store(false);
    }
    // All workers have left the job, so `error` is no longer written.
    if (job.error) std::rethrow_exception(job.error);
  }

  const int nthreads;
  std::vector<std::thread> workers;

 private:
  std::mutex call_mu_;  // serialises parallel_for calls from different threads
  std::mutex mu_;       // for the condition variables (sleeping threads only)
  std::condition_variable work_cv_;  // idle workers wait here for a new job or stop
  std::condition_variable done_cv_;  // the caller waits here for busy_ == 0
  std::atomic<Job*> job_{nullptr};   // the job open to workers, or null
  std::atomic<const void*> fn_hint_{nullptr};  // the last job's fn (a prefetch hint)
  std::atomic<uint64_t> generation_{0};  // bumped after each job is published
  std::atomic<int> busy_{0};             // workers between seeing a generation and leaving
  std::atomic<int> sleepers_{0};         // workers in work_cv_.wait (counted under mu_)
  std::atomic<bool> caller_sleeping_{false};  // the caller in done_cv_.wait (set under mu_)
  std::atomic<bool> stop_{false};
};

ThreadPool::ThreadPool(int threads) : impl_(std::make_unique<Impl>(threads)) {}

ThreadPool::~ThreadPool() = default;

int ThreadPool::threads() const noexcept { return impl_->nthreads; }

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // Inline cases: nothing to share, too little work to be worth a wake-up,
  // or a nested call (see t_in_parallel_for). A top-level inline run does
  // not mark the thread, so loops nested inside it may still use the pool.
  if (impl_->nthreads == 1 || n <= grain || t_in_parallel_for) {
    fn(0, n);
    return;
  }
  impl_->run(n, grain, fn);
}

namespace {

// QFORGE_NUM_THREADS as a positive int, else 0 (one thread per logical core).
int env_num_threads() {
  const char* s = std::getenv("QFORGE_NUM_THREADS");
  if (s == nullptr) return 0;
  const char* end = s + std::strlen(s);
  int v = 0;
  const auto [ptr, ec] = std::from_chars(s, end, v);
  if (ec != std::errc() || ptr != end || v <= 0) return 0;
  return v;
}

}  // namespace

ThreadPool& default_thread_pool() {
  // Function-local static: created on first use (thread-safe), joined at exit.
  static ThreadPool pool(env_num_threads());
  return pool;
}

}  // namespace qforge
