// Tests for qforge::ThreadPool. They check results only, never timings (the
// machines running them are shared and noisy), and are meant to be run under
// AddressSanitizer / UBSan / ThreadSanitizer as well.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "qforge/thread_pool.h"

namespace {

using qforge::ThreadPool;

// Runs parallel_for and checks that every index in [0, n) was visited
// exactly once, and that the chunks tile [0, n) with at least `grain` items
// in each chunk but the last.
void check_cover(ThreadPool& pool, int64_t n, int64_t grain) {
  SCOPED_TRACE("threads=" + std::to_string(pool.threads()) + " n=" + std::to_string(n) +
               " grain=" + std::to_string(grain));
  std::vector<std::atomic<int>> visits(static_cast<size_t>(n));
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    {
      std::lock_guard<std::mutex> lk(mu);
      chunks.emplace_back(begin, end);
    }
    for (int64_t i = begin; i < end; ++i) {
      visits[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
    }
  });
  int64_t bad = 0;
  for (const auto& v : visits) bad += v.load() != 1 ? 1 : 0;
  EXPECT_EQ(bad, 0) << "indices not visited exactly once";

  if (n <= 0) {
    EXPECT_TRUE(chunks.empty());
    return;
  }
  std::sort(chunks.begin(), chunks.end());
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front().first, 0);
  EXPECT_EQ(chunks.back().second, n);
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_LT(chunks[i].first, chunks[i].second);
    if (i + 1 < chunks.size()) {
      EXPECT_EQ(chunks[i].second, chunks[i + 1].first);  // contiguous, no overlap
      EXPECT_GE(chunks[i].second - chunks[i].first, std::max<int64_t>(grain, 1));
    }
  }
}

TEST(ThreadPool, ThreadCount) {
  for (int t : {1, 2, 3, 8}) EXPECT_EQ(ThreadPool(t).threads(), t);
  const unsigned hc = std::thread::hardware_concurrency();
  EXPECT_EQ(ThreadPool(0).threads(), hc == 0 ? 1 : static_cast<int>(hc));
}

TEST(ThreadPool, VisitsEveryIndexOnce) {
  for (int t : {1, 2, 3, 8}) {
    ThreadPool pool(t);
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{100003}}) {
      for (int64_t grain : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{64}, int64_t{5000}}) {
        check_cover(pool, n, grain);
      }
    }
  }
}

TEST(ThreadPool, NegativeCountDoesNothing) {
  ThreadPool pool(3);
  int calls = 0;
  pool.parallel_for(-5, 1, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, SmallRangeRunsInlineAsOneChunk) {
  ThreadPool pool(4);
  std::vector<std::pair<int64_t, int64_t>> chunks;  // only the caller may append
  const auto caller = std::this_thread::get_id();
  pool.parallel_for(10, 10, [&](int64_t b, int64_t e) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    chunks.emplace_back(b, e);
  });
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0], std::make_pair(int64_t{0}, int64_t{10}));
}

// Each thread owns a contiguous range of the chunks and claims its own
// first, in order (so consecutive loops give a thread the same rows). n = 100
// on 2 threads: 8 chunks of 13, the caller's range the first 4 (begins 0,
// 13, 26, 39), the worker's the last 4 (52 ...). The two threads meet inside
// their first chunks, so neither can take the other's chunks before both
// have started: the caller's first chunk is then 0 and the worker's 52 (with
// one shared counter the worker's was 13). Afterwards either may take what
// is left of the other's range; the caller's chunks still rise (its own
// range, then the worker's).
TEST(ThreadPool, EachThreadStartsWithItsOwnRange) {
  ThreadPool pool(2);
  const auto caller = std::this_thread::get_id();
  // Says this thread is in, then waits (at most 10 s, then gives up: a
  // failure, not a hang) for the other.
  auto meet = [](std::atomic<bool>& mine, const std::atomic<bool>& other) {
    mine.store(true);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!other.load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    return other.load();
  };
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<int64_t> by_caller, by_worker;  // each appended by its own thread only
    std::atomic<bool> caller_in{false}, worker_in{false};
    std::atomic<bool> met{true};
    pool.parallel_for(100, 1, [&](int64_t b, int64_t e) {
      EXPECT_EQ(e - b, std::min<int64_t>(13, 100 - b));
      const bool is_caller = std::this_thread::get_id() == caller;
      std::vector<int64_t>& mine = is_caller ? by_caller : by_worker;
      if (mine.empty() && !(is_caller ? meet(caller_in, worker_in) : meet(worker_in, caller_in))) met.store(false);
      mine.push_back(b);
    });
    ASSERT_TRUE(met.load()) << "the two threads never both ran a chunk";
    ASSERT_FALSE(by_caller.empty());
    ASSERT_FALSE(by_worker.empty());
    EXPECT_EQ(by_caller[0], 0);
    EXPECT_EQ(by_worker[0], 52);
    EXPECT_TRUE(std::is_sorted(by_caller.begin(), by_caller.end()));
    std::vector<int64_t> all = by_caller;
    all.insert(all.end(), by_worker.begin(), by_worker.end());
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, (std::vector<int64_t>{0, 13, 26, 39, 52, 65, 78, 91}));
  }
}

// The paths where a thread stops spinning and sleeps: idle workers (calls
// 5 ms apart, longer than a worker's spin) must be woken by the next call,
// all of them (each chunk waits, at most 10 s, until every thread holds
// one: a worker left asleep fails the test); and a caller whose worker is
// still busy after the caller's own spin (a chunk of 20 ms) must sleep until
// that chunk is done, and return only then.
TEST(ThreadPool, SleepingWorkersAndCallerAreWoken) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 4; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::atomic<int> in{0};
    std::atomic<bool> all_met{true};
    pool.parallel_for(3, 1, [&](int64_t, int64_t) {
      in.fetch_add(1);
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (in.load() < 3 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      if (in.load() < 3) all_met.store(false);
    });
    ASSERT_TRUE(all_met.load()) << "rep " << rep << ": a sleeping worker was not woken";
  }
  const auto caller = std::this_thread::get_id();
  for (int rep = 0; rep < 4; ++rep) {
    std::atomic<int> finished{0};
    pool.parallel_for(3, 1, [&](int64_t, int64_t) {
      if (std::this_thread::get_id() != caller) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      finished.fetch_add(1);
    });
    EXPECT_EQ(finished.load(), 3) << "rep " << rep << ": returned before a worker's chunk ended";
  }
}

TEST(ThreadPool, ManyCallsInARow) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 500; ++rep) {
    std::atomic<int64_t> sum{0};
    const int64_t n = 1 + rep % 97;
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum.fetch_add(i, std::memory_order_relaxed);
    });
    ASSERT_EQ(sum.load(), n * (n - 1) / 2) << "rep " << rep;
  }
}

TEST(ThreadPool, ExceptionPropagatesAndPoolStaysUsable) {
  for (int t : {1, 2, 3, 8}) {
    SCOPED_TRACE("threads=" + std::to_string(t));
    ThreadPool pool(t);
    EXPECT_THROW(pool.parallel_for(10000, 1,
                                   [](int64_t b, int64_t e) {
                                     if (b <= 4321 && 4321 < e) throw std::runtime_error("boom");
                                   }),
                 std::runtime_error);
    // Every chunk throws: still exactly one exception reaches the caller.
    EXPECT_THROW(pool.parallel_for(10000, 1, [](int64_t, int64_t) { throw std::logic_error("x"); }),
                 std::logic_error);
    check_cover(pool, 100003, 7);
  }
}

TEST(ThreadPool, ExceptionMessageIsPreserved) {
  ThreadPool pool(3);
  try {
    pool.parallel_for(1000, 1, [](int64_t b, int64_t) {
      if (b == 0) throw std::invalid_argument("first chunk failed");
    });
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "first chunk failed");
  }
}

TEST(ThreadPool, NestedCallRunsInlineAndCompletes) {
  for (int t : {1, 2, 3, 8}) {
    SCOPED_TRACE("threads=" + std::to_string(t));
    ThreadPool pool(t);
    const int64_t outer = 64, inner = 100;
    std::atomic<int64_t> total{0};
    std::atomic<int> not_inline{0};
    pool.parallel_for(outer, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const auto self = std::this_thread::get_id();
        int inner_calls = 0;
        pool.parallel_for(inner, 1, [&](int64_t ib, int64_t ie) {
          ++inner_calls;
          if (std::this_thread::get_id() != self || ib != 0 || ie != inner) ++not_inline;
          total.fetch_add(ie - ib, std::memory_order_relaxed);
        });
        if (inner_calls != 1) ++not_inline;
      }
    });
    EXPECT_EQ(not_inline.load(), 0);
    EXPECT_EQ(total.load(), outer * inner);
  }
}

TEST(ThreadPool, NestedCallOnAnotherPoolCompletes) {
  ThreadPool a(3), b(3);
  std::atomic<int64_t> total{0};
  a.parallel_for(32, 1, [&](int64_t ab, int64_t ae) {
    for (int64_t i = ab; i < ae; ++i) {
      b.parallel_for(50, 1, [&](int64_t bb, int64_t be) {
        total.fetch_add(be - bb, std::memory_order_relaxed);
      });
    }
  });
  EXPECT_EQ(total.load(), 32 * 50);
}

TEST(ThreadPool, ConcurrentCallersOnOnePool) {
  for (int t : {1, 2, 3, 8}) {
    SCOPED_TRACE("threads=" + std::to_string(t));
    ThreadPool pool(t);
    constexpr int kCallers = 4, kRounds = 50;
    std::vector<int64_t> sums(kCallers, 0);
    std::vector<int64_t> expected(kCallers, 0);
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c) {
      callers.emplace_back([&pool, &sums, &expected, c] {
        for (int r = 0; r < kRounds; ++r) {
          const int64_t n = 1000 + 37 * c + r;
          std::atomic<int64_t> sum{0};
          pool.parallel_for(n, 16, [&](int64_t b, int64_t e) {
            int64_t local = 0;
            for (int64_t i = b; i < e; ++i) local += i * (c + 1);
            sum.fetch_add(local, std::memory_order_relaxed);
          });
          sums[static_cast<size_t>(c)] += sum.load();
          expected[static_cast<size_t>(c)] += (c + 1) * (n * (n - 1) / 2);
        }
      });
    }
    for (auto& th : callers) th.join();
    EXPECT_EQ(sums, expected);
  }
}

TEST(ThreadPool, DefaultPool) {
  ThreadPool& pool = qforge::default_thread_pool();
  EXPECT_EQ(&pool, &qforge::default_thread_pool());
  EXPECT_GE(pool.threads(), 1);
  if (const char* env = std::getenv("QFORGE_NUM_THREADS")) {
    const int v = std::atoi(env);
    if (v > 0 && std::to_string(v) == env) {
      EXPECT_EQ(pool.threads(), v);
    }
  }
  check_cover(pool, 12345, 10);
}

TEST(ThreadPool, DestructorWithIdleWorkersReturns) {
  for (int rep = 0; rep < 20; ++rep) {
    ThreadPool never_used(8);
    ThreadPool used_once(3);
    std::atomic<int> calls{0};
    used_once.parallel_for(100, 1, [&](int64_t, int64_t) { ++calls; });
    EXPECT_GE(calls.load(), 1);
  }
}

}  // namespace
