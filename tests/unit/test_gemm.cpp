// The float32 GEMM (kernels/gemm.h) against a naive double-precision
// reference, for every ISA this CPU can run: all four transpose combinations,
// sizes 0, 1, primes and around the register tile and cache block edges,
// padded leading dimensions, alpha and beta, bias and activations, packed
// operands, and threads. beta == 0 must ignore NaN in C, and nothing may be
// written outside C's M x N window (checked with guard values in the
// padding).
//
// Tolerance: each element may differ from the exact result by a few float
// rounding errors per term, scaled by the size of the terms:
// |c - ref| <= 2e-6 * sqrt(K + 1) * (|alpha| sum_k |a b| + |beta c| + |bias|) + tiny.
// Random inputs give errors far below that; a wrong index gives errors of the
// order of the terms themselves.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "qforge/error.h"
#include "qforge/thread_pool.h"

namespace qforge {
namespace {

using kernels::Epilogue;
using kernels::GemmEpilogue;
using kernels::Isa;
using kernels::PackedMatrix;

constexpr float kGuard = -12345.0f;  // in C's padding; must survive every call

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// One GEMM problem with its stored operands (row-major, padded rows).
struct Problem {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1, beta = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  std::vector<float> A, B, C0;  // C0: C before the call (guards in the padding)
  std::vector<float> bias_m, bias_n;
  GemmEpilogue ep;

  Problem(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float al, float be,
          int64_t pad, uint32_t seed)
      : ta(trans_a), tb(trans_b), M(m), N(n), K(k), alpha(al), beta(be) {
    const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
    const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
    lda = std::max<int64_t>(a_cols + pad, 1);
    ldb = std::max<int64_t>(b_cols + pad, 1);
    ldc = std::max<int64_t>(N + pad, 1);
    A = random_vec(static_cast<size_t>(a_rows * lda), seed);
    B = random_vec(static_cast<size_t>(b_rows * ldb), seed + 1);
    C0 = random_vec(static_cast<size_t>(M * ldc), seed + 2);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = N; j < ldc; ++j) C0[static_cast<size_t>(i * ldc + j)] = kGuard;
    bias_m = random_vec(static_cast<size_t>(M), seed + 3);
    bias_n = random_vec(static_cast<size_t>(N), seed + 4);
  }

  float a(int64_t i, int64_t k) const {
    return A[static_cast<size_t>(ta ? k * lda + i : i * lda + k)];
  }
  float b(int64_t k, int64_t j) const {
    return B[static_cast<size_t>(tb ? j * ldb + k : k * ldb + j)];
  }

  // Checks C (after a call) against the double reference, and the guards.
  void check(const std::vector<float>& C, const std::string& what) const {
    SCOPED_TRACE(what + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                 " K=" + std::to_string(K) + " ta=" + std::to_string(ta) +
                 " tb=" + std::to_string(tb) + " alpha=" + std::to_string(alpha) +
                 " beta=" + std::to_string(beta));
    int failures = 0;
    for (int64_t i = 0; i < M && failures < 5; ++i) {
      for (int64_t j = 0; j < ldc && failures < 5; ++j) {
        const float got = C[static_cast<size_t>(i * ldc + j)];
        if (j >= N) {
          if (got != kGuard) {
            ADD_FAILURE() << "wrote C padding at (" << i << ", " << j << ")";
            ++failures;
          }
          continue;
        }
        double sum = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double t = static_cast<double>(a(i, k)) * static_cast<double>(b(k, j));
          sum += t;
          mag += std::fabs(t);
        }
        double v = static_cast<double>(alpha) * sum;
        mag *= std::fabs(static_cast<double>(alpha));
        if (beta != 0.0f) {
          const double c = static_cast<double>(beta) * C0[static_cast<size_t>(i * ldc + j)];
          v += c;
          mag += std::fabs(c);
        }
        if (ep.bias_m != nullptr) {
          v += ep.bias_m[i];
          mag += std::fabs(ep.bias_m[i]);
        }
        if (ep.bias_n != nullptr) {
          v += ep.bias_n[j];
          mag += std::fabs(ep.bias_n[j]);
        }
        if (ep.act == Epilogue::kRelu) v = std::max(v, 0.0);
        if (ep.act == Epilogue::kClip)
          v = std::min(std::max(v, static_cast<double>(ep.clip_min)),
                       static_cast<double>(ep.clip_max));
        const double tol = 2e-6 * std::sqrt(static_cast<double>(K) + 1.0) * mag + 1e-30;
        if (!(std::fabs(static_cast<double>(got) - v) <= tol)) {
          ADD_FAILURE() << "C(" << i << ", " << j << ") = " << got << ", expected " << v
                        << " (tolerance " << tol << ")";
          ++failures;
        }
      }
    }
  }

  std::vector<float> run(Isa isa, ThreadPool* pool = nullptr) const {
    std::vector<float> C = C0;
    kernels::sgemm_for_isa(isa, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta,
                           C.data(), ldc, ep, pool);
    return C;
  }
};

std::vector<Isa> isas() { return kernels::available_isas(); }

std::string name(Isa isa) { return kernels::isa_name(isa); }

// Sizes around every tile edge (MR = 4, 6, 12; NR = 16, 32) and primes.
const std::vector<int64_t> kSmall = {1, 2, 3, 5, 7, 12, 13, 16, 17, 31, 33, 37};

TEST(Gemm, SmallShapesAllTransposes) {
  for (Isa isa : isas()) {
    uint32_t seed = 1;
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t M : kSmall)
          for (int64_t N : {1, 5, 16, 31, 33, 47})
            for (int64_t K : {1, 4, 17}) {
              const Problem p(ta, tb, M, N, K, 1.0f, 0.0f, (M + N) % 3, seed++);
              p.check(p.run(isa), name(isa));
            }
  }
}

TEST(Gemm, AlphaBetaAndLeadingDims) {
  for (Isa isa : isas()) {
    uint32_t seed = 100;
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [alpha, beta] : {std::pair{1.0f, 1.0f}, {-0.5f, 2.0f}, {2.0f, 0.0f},
                                   {1.0f, -1.0f}}) {
          for (int64_t pad : {0, 1, 9}) {
            const Problem p(ta, tb, 29, 53, 41, alpha, beta, pad, seed++);
            p.check(p.run(isa), name(isa));
          }
        }
  }
}

// Large enough for several KC blocks (K > 256), MC blocks (M > 192) and NC
// blocks (N > 512), still modest for a debug sanitizer build.
TEST(Gemm, CacheBlockEdges) {
  for (Isa isa : isas()) {
    for (bool t : {false, true}) {
      const Problem p1(t, t, 203, 19, 300, 1.0f, 0.5f, 3, 7);
      p1.check(p1.run(isa), name(isa));
      const Problem p2(t, !t, 5, 1061, 13, 0.75f, 0.0f, 0, 8);
      p2.check(p2.run(isa), name(isa));
    }
  }
}

TEST(Gemm, MatrixVector) {
  for (Isa isa : isas()) {
    uint32_t seed = 200;
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [M, N] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {1, 100}, {1, 1030},
                            {7, 1}, {100, 1}, {1030, 1}})
          for (int64_t K : {1, 17, 131}) {
            const Problem p(ta, tb, M, N, K, 1.5f, 0.5f, 2, seed++);
            p.check(p.run(isa), name(isa));
          }
  }
}

TEST(Gemm, ZeroSizes) {
  for (Isa isa : isas()) {
    // M or N == 0: nothing happens (and nothing is read).
    std::vector<float> C(4, 7.0f);
    kernels::sgemm_for_isa(isa, false, false, 0, 2, 3, 1.0f, nullptr, 3, nullptr, 2, 0.0f,
                           C.data(), 2);
    kernels::sgemm_for_isa(isa, false, false, 2, 0, 3, 1.0f, nullptr, 3, nullptr, 1, 0.0f,
                           C.data(), 1);
    EXPECT_EQ(C, std::vector<float>(4, 7.0f));
    // K == 0: C = beta * C, then bias and activation.
    for (float beta : {0.0f, 2.0f}) {
      Problem p(false, false, 3, 5, 0, 1.0f, beta, 1, 300);
      p.ep.bias_n = p.bias_n.data();
      p.ep.act = Epilogue::kRelu;
      p.check(p.run(isa), name(isa) + " K=0");
    }
    // alpha == 0 is the same (A and B are not used).
    Problem p(false, true, 4, 6, 5, 0.0f, 0.5f, 0, 301);
    p.ep.bias_m = p.bias_m.data();
    p.check(p.run(isa), name(isa) + " alpha=0");
  }
}

TEST(Gemm, BetaZeroIgnoresNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  ThreadPool pool(2);
  for (Isa isa : isas()) {
    // The larger ones are split between threads.
    for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{17, 45, 23},
                           {1, 70, 23},
                           {70, 1, 23},
                           {300, 40, 50},
                           {1, 700, 100},
                           {700, 1, 100}}) {
      Problem p(false, false, M, N, K, 1.0f, 0.0f, 0, 400);
      std::fill(p.C0.begin(), p.C0.end(), nan);
      p.check(p.run(isa), name(isa));
      p.check(p.run(isa, &pool), name(isa) + " 2 threads");
    }
  }
}

TEST(Gemm, Epilogues) {
  for (Isa isa : isas()) {
    uint32_t seed = 500;
    for (auto [M, N] : {std::pair<int64_t, int64_t>{13, 35}, {1, 50}, {50, 1}, {40, 70}}) {
      for (int variant = 0; variant < 6; ++variant) {
        Problem p(variant % 2 == 1, false, M, N, 37, 1.0f, variant < 3 ? 0.0f : 0.5f, 1, seed++);
        if (variant != 1) p.ep.bias_m = p.bias_m.data();
        if (variant != 2) p.ep.bias_n = p.bias_n.data();
        p.ep.act = variant % 3 == 0 ? Epilogue::kNone
                   : variant % 3 == 1 ? Epilogue::kRelu
                                      : Epilogue::kClip;
        p.ep.clip_min = -0.5f;
        p.ep.clip_max = 0.75f;
        p.check(p.run(isa), name(isa) + " epilogue " + std::to_string(variant));
      }
    }
  }
}

// C's elements are computed by the same operations whatever the split into
// tiles, so threads give the very same bits. The sizes are above the
// threshold for using threads (M*N*K >= 2^19, or 2^16 for matrix-vector
// products) and split N, M, or (4 threads) both.
TEST(Gemm, ThreadsMatchSingleThread) {
  ThreadPool two(2), four(4);
  for (Isa isa : isas()) {
    uint32_t seed = 600;
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [M, N, K, pool] : {std::tuple<int64_t, int64_t, int64_t, ThreadPool*>{
                                         128, 260, 20, &two},
                                     {7, 700, 110, &two},
                                     {300, 20, 90, &two},
                                     {256, 256, 10, &four},
                                     {1, 1500, 60, &two},
                                     {1500, 1, 60, &four}}) {
          Problem p(ta, tb, M, N, K, 1.0f, 0.25f, 1, seed++);
          p.ep.bias_n = p.bias_n.data();
          p.ep.act = Epilogue::kRelu;
          const auto single = p.run(isa);
          const auto threaded = p.run(isa, pool);
          const std::string what = name(isa) + " " + std::to_string(pool->threads()) + " threads";
          p.check(threaded, what);
          EXPECT_TRUE(single == threaded) << what << " M=" << M << " N=" << N << " K=" << K;
        }
  }
}

// The packed variants against the reference, and, where both take the tiled
// path (M, N > 1), bit for bit against the unpacked call.
// Packed operands against the plain call, bit for bit. Small products read
// their unpacked operands in place (A for N <= 128, B's whole panels for
// M <= 96: 13 x 35, 64 x 64, 40 x 96, A alone in 130 x 70), so this also
// holds the in-place kernels to the packed ones' sums.
TEST(Gemm, PackedOperands) {
  ThreadPool pool(2);
  for (Isa isa : isas()) {
    uint32_t seed = 700;
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                               {1, 77, 33},
                               {1, 600, 120},
                               {5, 1, 9},
                               {13, 35, 270},
                               {64, 64, 64},
                               {40, 96, 300},
                               {130, 70, 60}}) {
          for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
            Problem p(ta, tb, M, N, K, 1.0f, 0.5f, 2, seed++);
            p.ep.bias_m = p.bias_m.data();
            p.ep.act = Epilogue::kClip;
            p.ep.clip_min = -1.0f;
            p.ep.clip_max = 1.0f;
            const std::string what = name(isa) + (tp != nullptr ? " 2 threads" : "");
            const auto plain = p.run(isa, tp);

            const PackedMatrix pa = kernels::pack_a_for_isa(isa, ta, M, K, p.A.data(), p.lda);
            EXPECT_EQ(pa.rows(), M);
            EXPECT_EQ(pa.cols(), K);
            EXPECT_EQ(pa.isa(), isa);
            EXPECT_EQ(pa.side(), PackedMatrix::Side::kA);
            std::vector<float> ca = p.C0;
            kernels::sgemm_packed_a(pa, N, p.B.data(), p.ldb, tb, p.beta, ca.data(), p.ldc, p.ep,
                                    tp);
            p.check(ca, what + " packed A");

            const PackedMatrix pb = kernels::pack_b_for_isa(isa, tb, K, N, p.B.data(), p.ldb);
            EXPECT_EQ(pb.rows(), K);
            EXPECT_EQ(pb.cols(), N);
            EXPECT_EQ(pb.side(), PackedMatrix::Side::kB);
            std::vector<float> cb = p.C0;
            kernels::sgemm_packed_b(M, p.A.data(), p.lda, ta, pb, p.beta, cb.data(), p.ldc, p.ep,
                                    tp);
            p.check(cb, what + " packed B");

            if (M > 1 && N > 1) {
              EXPECT_TRUE(ca == plain) << what << " packed A M=" << M << " N=" << N;
              EXPECT_TRUE(cb == plain) << what << " packed B M=" << M << " N=" << N;
            }
          }
        }
  }
}

TEST(Gemm, PackedMatrixIsMovable) {
  const auto A = random_vec(6 * 5, 800);
  PackedMatrix p = kernels::pack_a(false, 6, 5, A.data(), 5);
  EXPECT_EQ(p.isa(), kernels::kernels().isa);
  EXPECT_FALSE(p.empty());
  PackedMatrix q = std::move(p);
  EXPECT_EQ(q.rows(), 6);
  EXPECT_GE(q.size(), static_cast<size_t>(30));
  PackedMatrix r;
  EXPECT_TRUE(r.empty());
  r = std::move(q);
  EXPECT_EQ(r.cols(), 5);
  // The default entry (kernels().isa) agrees with the explicit one.
  const auto B = random_vec(5 * 3, 801);
  std::vector<float> c1(18), c2(18);
  kernels::sgemm(false, false, 6, 3, 5, 1.0f, A.data(), 5, B.data(), 3, 0.0f, c1.data(), 3);
  kernels::sgemm_packed_a(r, 3, B.data(), 3, false, 0.0f, c2.data(), 3);
  EXPECT_TRUE(c1 == c2);
}

TEST(Gemm, BadArgumentsThrow) {
  std::vector<float> A(16), B(16), C(16);
  EXPECT_THROW(kernels::sgemm(false, false, -1, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f,
                              C.data(), 2),
               Error);
  // lda shorter than a row of A (K = 3).
  EXPECT_THROW(kernels::sgemm(false, false, 2, 2, 3, 1.0f, A.data(), 2, B.data(), 2, 0.0f,
                              C.data(), 2),
               Error);
  const PackedMatrix pb = kernels::pack_b(false, 2, 2, B.data(), 2);
  EXPECT_THROW(kernels::sgemm_packed_a(pb, 2, B.data(), 2, false, 0.0f, C.data(), 2), Error);
}

}  // namespace
}  // namespace qforge
