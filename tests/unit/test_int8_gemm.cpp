// The int8 GEMM (kernels/qgemm.h) and the fast paths of the integer matrix
// ops built on it (ops/quant_gemm.h).
//
// Kernels: every microkernel this CPU can run (the scalar reference, AVX2
// vpmaddwd and vpmaddubsw, AVX-VNNI, AVX-512 VNNI; missing ISAs are skipped
// at run time) against a naive oracle
// written here from the contract in qgemm.h (exact int64 sums of
// (A - a_zp)(B - b_zp), wrapped to int32, then each epilogue's formula), and
// against the reference kernel bit for bit: all four signedness pairs
// (u8 x s8, s8 x s8, u8 x u8, s8 x u8); M, N, K below, at and past every
// tile edge (K not a multiple of 4 or of the vector width, M = 1, N = 1,
// K = 0); padded lda / ldc with guard values that must survive; adversarial
// operands (255 x -128, -128 x 127, zero points at the ends of their range),
// the int32 edge (K = 33025 with the largest deviations: exact; beyond: the
// wrap the contract promises); every pair of byte values exhaustively; and
// threads; s8 weights of 7 bits (where vpmaddubsw runs itself rather than
// its exact stand-in). Random inputs are seeded so failures replay.
//
// vpmaddubsw saturation: the pair bound of qgemm.h over all 65536 weight
// pairs (sufficient and tight, and qpack_b's flag agrees), and adversarial
// weights that would saturate it, taken through the dispatch exactly while
// the kernel without its check is shown to be wrong on them.
//
// Ops: each fast op against the reference implementation in quant.cpp
// (ops::reference), bit for bit, on random shapes: batching and broadcasting
// for the matmuls, pads / strides / dilations / groups / depthwise / 1-D to
// 3-D for the convolutions, per-tensor and per-column parameters, weights
// packed in prepare, packed per run, and overridden after packing, on 1 and
// 3 threads. QGemm also against values computed by hand from its definition
// in ONNX Runtime's ContribOperators.md, and against ONNX Runtime 1.30's own
// output (tests/golden/qgemm_ort.json, made by scripts/gen_qgemm_golden.js).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/qgemm.h"
#include "ops/quant_gemm.h"
#include "qforge/error.h"
#include "qforge/ir.h"
#include "qforge/op.h"
#include "qforge/quant.h"
#include "qforge/session.h"
#include "qforge/thread_pool.h"
#include "test_util.h"

namespace qforge {
namespace kernels {
// For GoogleTest's messages: the kernel's name, not its address.
inline void PrintTo(const QGemmKernel* k, std::ostream* os) {
  *os << k->name;
}
}  // namespace kernels
namespace {

using kernels::QGemmArgs;
using kernels::QGemmKernel;
using kernels::QOutput;
using kernels::QPackedB;

const char* out_name(QOutput o) {
  switch (o) {
    case QOutput::kS32:
      return "s32";
    case QOutput::kQ8Double:
      return "q8-double";
    case QOutput::kQ8Float:
      return "q8-float";
    case QOutput::kF32:
      return "f32";
  }
  return "?";
}

// ---------------------------------------------------------------- the oracle

// One GEMM problem with its operands as bytes (s8 or u8 by the flags).
struct Problem {
  int64_t M = 0, N = 0, K = 0;
  bool a_signed = false, b_signed = true, trans_b = false;
  int64_t lda = 0, ldb = 0, ldc = 0;
  std::vector<uint8_t> A, B;  // M x lda; K x ldb (N x ldb when trans_b)
  int32_t a_zp = 0;
  std::vector<int32_t> b_zp;  // N
  QOutput out = QOutput::kS32;
  std::vector<int32_t> bias;  // empty, N (one row) or M x N
  int64_t bias_ld = 0;
  std::vector<float> scale, fbias;
  int32_t y_zp = 0;
  bool y_signed = false;

  int32_t a(int64_t m, int64_t k) const {
    const uint8_t v = A[static_cast<size_t>(m * lda + k)];
    return a_signed ? int32_t{static_cast<int8_t>(v)} : int32_t{v};
  }
  int32_t b(int64_t k, int64_t n) const {
    const uint8_t v = B[static_cast<size_t>(trans_b ? n * ldb + k : k * ldb + n)];
    return b_signed ? int32_t{static_cast<int8_t>(v)} : int32_t{v};
  }
  size_t elem() const { return out == QOutput::kQ8Double || out == QOutput::kQ8Float ? 1 : 4; }
};

// The value the contract in qgemm.h gives element (m, n): computed from the
// definition, with int64 sums and no zero-point folding.
int32_t oracle_acc(const Problem& p, int64_t m, int64_t n) {
  int64_t s = 0;
  for (int64_t k = 0; k < p.K; ++k)
    s += int64_t{p.a(m, k) - p.a_zp} * (p.b(k, n) - p.b_zp[static_cast<size_t>(n)]);
  if (!p.bias.empty()) s += p.bias[static_cast<size_t>(m * p.bias_ld + n)];
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(s)));
}

// C as the oracle has it, as bytes (ldc-strided; padding keeps `guard`).
std::vector<uint8_t> oracle(const Problem& p, uint8_t guard) {
  std::vector<uint8_t> c(static_cast<size_t>(p.M * p.ldc) * p.elem(), guard);
  const int32_t qmin = p.y_signed ? -128 : 0, qmax = p.y_signed ? 127 : 255;
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = 0; n < p.N; ++n) {
      const int32_t v = oracle_acc(p, m, n);
      const size_t at = static_cast<size_t>(m * p.ldc + n) * p.elem();
      const float s = p.scale.empty() ? 0.0f : p.scale[static_cast<size_t>(n)];
      switch (p.out) {
        case QOutput::kS32:
          std::memcpy(&c[at], &v, 4);
          break;
        case QOutput::kF32: {
          float f = static_cast<float>(v) * s;
          if (!p.fbias.empty()) f += p.fbias[static_cast<size_t>(n)];
          std::memcpy(&c[at], &f, 4);
          break;
        }
        case QOutput::kQ8Double: {  // ONNX's reference: float64 product, clamp, round half to even
          double d = static_cast<double>(v) * static_cast<double>(s);
          if (std::isnan(d)) d = qmin - p.y_zp;  // the contract: NaN gives qmin
          d = std::min(std::max(d, static_cast<double>(qmin - p.y_zp)),
                       static_cast<double>(qmax - p.y_zp));
          c[at] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(d)) + p.y_zp);
          break;
        }
        case QOutput::kQ8Float: {  // ONNX Runtime's: the same in float32
          float f = static_cast<float>(v) * s;
          if (std::isnan(f)) f = static_cast<float>(qmin - p.y_zp);
          f = std::min(std::max(f, static_cast<float>(qmin - p.y_zp)),
                       static_cast<float>(qmax - p.y_zp));
          c[at] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(f)) + p.y_zp);
          break;
        }
      }
    }
  return c;
}

// Runs a kernel on the problem; C starts as `guard` everywhere.
std::vector<uint8_t> run_kernel(const QGemmKernel& kr, const Problem& p, uint8_t guard,
                                ThreadPool* pool = nullptr) {
  const QPackedB pb = kernels::qpack_b(p.b_signed, p.trans_b, p.K, p.N, p.B.data(), p.ldb);
  std::vector<uint8_t> c(static_cast<size_t>(p.M * p.ldc) * p.elem(), guard);
  QGemmArgs a;
  a.M = p.M;
  a.A = p.A.data();
  a.lda = p.lda;
  a.a_signed = p.a_signed;
  a.a_zp = p.a_zp;
  a.B = &pb;
  a.b_zp = p.b_zp.data();
  a.out = p.out;
  a.bias = p.bias.empty() ? nullptr : p.bias.data();
  a.bias_ld = p.bias_ld;
  a.scale = p.scale.empty() ? nullptr : p.scale.data();
  a.fbias = p.fbias.empty() ? nullptr : p.fbias.data();
  a.y_zp = p.y_zp;
  a.y_signed = p.y_signed;
  a.C = c.data();
  a.ldc = p.ldc;
  kernels::qgemm_with(kr, a, pool);
  return c;
}

std::string describe(const Problem& p) {
  return "M=" + std::to_string(p.M) + " N=" + std::to_string(p.N) + " K=" + std::to_string(p.K) +
         (p.a_signed ? " s8" : " u8") + (p.b_signed ? "xs8" : "xu8") +
         (p.trans_b ? " transB" : "") + " a_zp=" + std::to_string(p.a_zp) +
         " b_zp[0]=" + std::to_string(p.b_zp.empty() ? 0 : p.b_zp[0]) + " out=" + out_name(p.out) +
         (p.bias.empty() ? "" : " bias_ld=" + std::to_string(p.bias_ld));
}

// Bytes equal, else the first differing element of C (as the output type).
::testing::AssertionResult same_c(const Problem& p, const std::vector<uint8_t>& got,
                                  const std::vector<uint8_t>& want) {
  if (got == want) return ::testing::AssertionSuccess();
  const size_t es = p.elem();
  for (size_t i = 0; i < got.size(); i += es) {
    if (std::memcmp(&got[i], &want[i], es) == 0) continue;
    const int64_t e = static_cast<int64_t>(i / es), row = e / p.ldc, col = e % p.ldc;
    std::string g, w;
    if (es == 1) {
      g = std::to_string(p.y_signed ? int{static_cast<int8_t>(got[i])} : int{got[i]});
      w = std::to_string(p.y_signed ? int{static_cast<int8_t>(want[i])} : int{want[i]});
    } else if (p.out == QOutput::kF32) {
      float a, b;
      std::memcpy(&a, &got[i], 4);
      std::memcpy(&b, &want[i], 4);
      g = std::to_string(a);
      w = std::to_string(b);
    } else {
      int32_t a, b;
      std::memcpy(&a, &got[i], 4);
      std::memcpy(&b, &want[i], 4);
      g = std::to_string(a);
      w = std::to_string(b);
    }
    return ::testing::AssertionFailure()
           << describe(p) << ": C[" << row << ", " << col << "] is " << g << ", expected " << w
           << (col >= p.N ? " (padding: a write outside C)" : "");
  }
  return ::testing::AssertionFailure() << describe(p) << ": sizes differ";
}

// A random problem: operands over their whole range, zero points anywhere
// in theirs, the given epilogue.
Problem random_problem(int64_t M, int64_t N, int64_t K, bool as, bool bs, QOutput out,
                       uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255), pad(0, 3), coin(0, 1);
  Problem p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.a_signed = as;
  p.b_signed = bs;
  p.trans_b = coin(rng) == 1;
  p.lda = K + pad(rng);
  p.ldb = (p.trans_b ? K : N) + pad(rng);
  p.ldc = N + pad(rng);
  p.A.resize(static_cast<size_t>(std::max<int64_t>(M * p.lda, 1)));
  for (auto& v : p.A) v = static_cast<uint8_t>(byte(rng));
  p.B.resize(static_cast<size_t>(std::max<int64_t>((p.trans_b ? N : K) * p.ldb, 1)));
  for (auto& v : p.B) v = static_cast<uint8_t>(byte(rng));
  auto zp = [&](bool s) { return s ? byte(rng) - 128 : byte(rng); };
  p.a_zp = zp(as);
  const bool per_column = coin(rng) == 1;
  const int32_t b0 = zp(bs);
  for (int64_t n = 0; n < N; ++n) p.b_zp.push_back(per_column ? zp(bs) : b0);
  p.out = out;
  if (coin(rng) == 1) {  // bias: one row, or a full matrix
    p.bias_ld = coin(rng) == 1 ? N : 0;
    std::uniform_int_distribution<int32_t> bd(-100000, 100000);
    p.bias.resize(static_cast<size_t>(p.bias_ld == 0 ? N : M * N));
    for (auto& v : p.bias) v = bd(rng);
  }
  // Scales put typical sums over the output range, so that requantized
  // codes both vary and saturate.
  const double typical = 74.0 * 74.0 * std::sqrt(static_cast<double>(std::max<int64_t>(K, 1)));
  std::uniform_real_distribution<double> u(0.5, 2.0);
  for (int64_t n = 0; n < N; ++n) {
    const double s = (out == QOutput::kF32 ? 1e-3 : 60.0 / typical) * u(rng);
    p.scale.push_back(static_cast<float>(n % 7 == 3 ? -s : s));
  }
  if (out == QOutput::kF32 && coin(rng) == 1)
    for (int64_t n = 0; n < N; ++n) p.fbias.push_back(static_cast<float>(u(rng) - 1.0));
  p.y_signed = coin(rng) == 1;
  p.y_zp = zp(p.y_signed);
  return p;
}

constexpr uint8_t kGuard = 0xA5;

class QGemmKernels : public ::testing::TestWithParam<const QGemmKernel*> {};

std::string kernel_param_name(const ::testing::TestParamInfo<const QGemmKernel*>& info) {
  std::string n = info.param->name;
  return n.substr(n.find("__") + 2);
}

// Tile edges: M, N and K below, at and past every MR, NR and vector width.
TEST_P(QGemmKernels, MatchesOracleOverTileEdges) {
  const QGemmKernel& kr = *GetParam();
  const QGemmKernel& ref = *kernels::qgemm_kernels().front();
  const QOutput outs[] = {QOutput::kS32, QOutput::kQ8Double, QOutput::kQ8Float, QOutput::kF32};
  uint32_t seed = 1;
  for (const int64_t M : {1, 2, 3, 4, 5, 8, 9, 17})
    for (const int64_t N : {1, 15, 16, 17, 32, 33, 70})
      for (const int64_t K : {0, 1, 3, 4, 5, 17, 64, 65, 259}) {
        for (int types = 0; types < 4; ++types) {
          const QOutput out = outs[seed % 4];
          const Problem p =
              random_problem(M, N, K, (types & 1) != 0, (types & 2) != 0, out, seed++);
          const auto got = run_kernel(kr, p, kGuard);
          ASSERT_TRUE(same_c(p, got, oracle(p, kGuard))) << kr.name;
          if (&kr != &ref) {
            ASSERT_TRUE(same_c(p, got, run_kernel(ref, p, kGuard))) << kr.name << " vs ref";
          }
        }
      }
}

// The largest |products|: 255 x -128 (u8 x s8), -128 x 127 (s8 x s8) and
// their deviations from zero points at the ends of the range, over K up to
// the int32 edge and past it (where the contract is the int32 wrap).
TEST_P(QGemmKernels, AdversarialOperandsAndTheInt32Edge) {
  const QGemmKernel& kr = *GetParam();
  struct Case {
    bool as, bs;
    uint8_t a, b;  // every byte of A and of B
    int32_t a_zp, b_zp;
  };
  const Case cases[] = {
      {false, true, 255, 0x80, 0, 127},      // (255 - 0) * (-128 - 127) = -65025 per k
      {false, true, 255, 0x7f, 0, -128},     // 255 * 255
      {false, true, 0, 0x80, 255, 127},      // (-255) * (-255)
      {true, true, 0x80, 0x7f, 127, -128},   // (-255) * 255
      {true, true, 0x7f, 0x7f, -128, -128},  // 255 * 255
      {false, false, 255, 0, 0, 255},        // u8 x u8: 255 * -255
      {true, false, 0x80, 255, 127, 0},      // s8 x u8: -255 * 255
      {false, true, 255, 0x80, 0, 0},        // vpmaddubsw's trap: 255 * -128 pairs, zp 0
  };
  for (const Case& c : cases)
    for (const int64_t K : {1, 2, 3, 4, 7, 8, 9, 64, 1000, 33025, 33026, 40000}) {
      const int64_t M = K > 1000 ? 3 : 9, N = K > 1000 ? 33 : 35;
      Problem p = random_problem(M, N, K, c.as, c.bs, QOutput::kS32, static_cast<uint32_t>(K));
      p.bias.clear();
      std::fill(p.A.begin(), p.A.end(), c.a);
      std::fill(p.B.begin(), p.B.end(), c.b);
      p.a_zp = c.a_zp;
      std::fill(p.b_zp.begin(), p.b_zp.end(), c.b_zp);
      const auto got = run_kernel(kr, p, kGuard);
      ASSERT_TRUE(same_c(p, got, oracle(p, kGuard))) << kr.name;
      // Up to K = 33025 the int32 result is the exact sum, and says so.
      const int64_t exact =
          int64_t{(c.as ? int32_t{static_cast<int8_t>(c.a)} : int32_t{c.a}) - c.a_zp} *
          ((c.bs ? int32_t{static_cast<int8_t>(c.b)} : int32_t{c.b}) - c.b_zp) * K;
      int32_t first;
      std::memcpy(&first, got.data(), 4);
      if (K <= 33025) {
        EXPECT_EQ(first, exact) << describe(p);
        EXPECT_TRUE(kernels::exact_in_int32(K, c.as, c.a_zp, c.bs, p.b_zp.data(), N))
            << describe(p);
      }
    }
  // Requantized and float outputs of the worst case, near the edge.
  for (const QOutput out : {QOutput::kQ8Double, QOutput::kQ8Float, QOutput::kF32}) {
    Problem p = random_problem(5, 40, 33025, false, true, out, 7);
    std::fill(p.A.begin(), p.A.end(), uint8_t{255});
    std::fill(p.B.begin(), p.B.end(), uint8_t{0x80});
    p.a_zp = 0;
    std::fill(p.b_zp.begin(), p.b_zp.end(), 127);
    p.bias.clear();
    ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard), oracle(p, kGuard))) << kr.name;
  }
}

// Every pair of byte values: A's 256 rows are the 256 codes (K = 1, and K = 5
// with the code repeated), B's 256 columns likewise, for each type pair and
// a few zero points.
TEST_P(QGemmKernels, EveryPairOfBytes) {
  const QGemmKernel& kr = *GetParam();
  for (int types = 0; types < 4; ++types)
    for (const int64_t K : {1, 5})
      for (const int zp_case : {0, 1, 2}) {
        Problem p = random_problem(256, 256, K, (types & 1) != 0, (types & 2) != 0,
                                   zp_case == 2 ? QOutput::kQ8Double : QOutput::kS32, 11);
        p.trans_b = false;
        p.lda = K;
        p.ldb = 256;
        p.ldc = 256;
        p.A.assign(256 * static_cast<size_t>(K), 0);
        p.B.assign(256 * static_cast<size_t>(K), 0);
        for (int i = 0; i < 256; ++i)
          for (int64_t k = 0; k < K; ++k) {
            p.A[static_cast<size_t>(i * K + k)] = static_cast<uint8_t>(i);
            p.B[static_cast<size_t>(k * 256 + i)] = static_cast<uint8_t>(i);
          }
        p.a_zp = zp_case == 0 ? 0 : (p.a_signed ? 127 : 255);
        std::fill(p.b_zp.begin(), p.b_zp.end(), zp_case == 0 ? 0 : (p.b_signed ? -128 : 0));
        p.bias.clear();
        ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard), oracle(p, kGuard))) << kr.name;
      }
}

// Round half to even at exact ties, and the clamp at both ends, for both
// requantizing epilogues: multiplier 0.5 makes every odd sum a tie.
TEST_P(QGemmKernels, RequantizationTiesAndSaturation) {
  const QGemmKernel& kr = *GetParam();
  for (const QOutput out : {QOutput::kQ8Double, QOutput::kQ8Float})
    for (const bool y_signed : {false, true}) {
      Problem p = random_problem(7, 37, 3, false, true, out, 5);
      p.bias.clear();
      std::fill(p.scale.begin(), p.scale.end(), 0.5f);
      p.y_signed = y_signed;
      p.y_zp = y_signed ? -3 : 100;
      ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard), oracle(p, kGuard))) << kr.name;
      // A huge multiplier saturates nearly everything; an infinite one gives
      // NaN for a zero sum (0 * inf), which both epilogues map to qmin.
      std::fill(p.scale.begin(), p.scale.end(), 1e30f);
      ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard), oracle(p, kGuard))) << kr.name;
      std::fill(p.A.begin(), p.A.end(), uint8_t{0});
      p.a_zp = 0;
      std::fill(p.scale.begin(), p.scale.end(), std::numeric_limits<float>::infinity());
      const auto got = run_kernel(kr, p, kGuard);
      ASSERT_TRUE(same_c(p, got, oracle(p, kGuard))) << kr.name;
      EXPECT_EQ(got[0], static_cast<uint8_t>(y_signed ? -128 : 0));
    }
}

// Any split over threads gives the same bytes as one thread.
TEST_P(QGemmKernels, ThreadsDoNotChangeResults) {
  const QGemmKernel& kr = *GetParam();
  ThreadPool pool(3);
  uint32_t seed = 100;
  for (const auto& [M, N, K] :
       std::vector<std::array<int64_t, 3>>{{1, 768, 300}, {64, 200, 129}, {130, 97, 64}})
    for (const QOutput out : {QOutput::kS32, QOutput::kQ8Double, QOutput::kF32}) {
      const Problem p = random_problem(M, N, K, seed % 2 == 0, true, out, seed);
      ++seed;
      ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard, &pool), oracle(p, kGuard))) << kr.name;
    }
}

// s8 weights in [-64, 63] (the quantizer's reduce_range): vpmaddubsw can't
// saturate on them (qgemm.h), so the AVX2 maddubs kernel itself runs here,
// not its exact stand-in; tile edges as above, every A type and epilogue.
TEST_P(QGemmKernels, SevenBitWeightsOverTileEdges) {
  const QGemmKernel& kr = *GetParam();
  const QOutput outs[] = {QOutput::kS32, QOutput::kQ8Double, QOutput::kQ8Float, QOutput::kF32};
  uint32_t seed = 500;
  for (const int64_t M : {1, 2, 3, 4, 5, 9})
    for (const int64_t N : {1, 16, 17, 33})
      for (const int64_t K : {1, 3, 4, 5, 64, 259})
        for (const bool as : {false, true}) {
          Problem p = random_problem(M, N, K, as, true, outs[seed % 4], seed);
          ++seed;
          for (auto& v : p.B) v = static_cast<uint8_t>(static_cast<int8_t>(v % 128 - 64));
          const QPackedB pb = kernels::qpack_b(true, p.trans_b, K, N, p.B.data(), p.ldb);
          ASSERT_TRUE(pb.maddubs_exact()) << describe(p);
          ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard), oracle(p, kGuard))) << kr.name;
        }
}

INSTANTIATE_TEST_SUITE_P(Int8Gemm, QGemmKernels, ::testing::ValuesIn(kernels::qgemm_kernels()),
                         kernel_param_name);

TEST(Int8Gemm, KernelTableChoosesByIsaAndVnni) {
  using kernels::Isa;
  EXPECT_STREQ(kernels::kernels_for(Isa::kRef).qgemm->name, "qu8_qs8_gemm_4x16c4__ref");
  const auto isas = kernels::available_isas();
  auto has = [&](Isa i) { return std::find(isas.begin(), isas.end(), i) != isas.end(); };
  if (has(Isa::kAvx2)) {
    // vpmaddubsw, with the exact vpmaddwd kernel for weights that could saturate it.
    const QGemmKernel* k = kernels::kernels_for(Isa::kAvx2).qgemm;
    EXPECT_STREQ(k->name, "qu8_qs8_gemm_4x16c4__avx2_maddubs");
    ASSERT_NE(k->exact, nullptr);
    EXPECT_STREQ(k->exact->name, "qu8_qs8_gemm_3x16c4__avx2");
    EXPECT_EQ(k->exact->exact, nullptr);
    // The AVX2 table never uses VNNI, even where the CPU has it.
    CpuFeatures f = cpu_features();
    f.avxvnni = true;
    EXPECT_EQ(kernels::kernels_for(Isa::kAvx2, f).qgemm, k);
    EXPECT_STREQ(kernels::kernels_for(Isa::kAvxVnni, f).qgemm->name,
                 "qu8_qs8_gemm_6x16c4__avxvnni");
    EXPECT_EQ(kernels::kernels_for(Isa::kAvxVnni, f).qgemm->exact, nullptr);
  }
  if (has(Isa::kAvx512)) {
    CpuFeatures f = cpu_features();
    f.avx512vnni = true;
    EXPECT_STREQ(kernels::kernels_for(Isa::kAvx512, f).qgemm->name,
                 "qu8_qs8_gemm_8x32c4__avx512vnni");
    f.avx512vnni = false;
    f.avxvnni = true;
    EXPECT_STREQ(kernels::kernels_for(Isa::kAvx512, f).qgemm->name,
                 "qu8_qs8_gemm_6x16c4__avxvnni");
    f.avxvnni = false;
    EXPECT_STREQ(kernels::kernels_for(Isa::kAvx512, f).qgemm->name,
                 "qu8_qs8_gemm_4x16c4__avx2_maddubs");
  }
  // The process's table holds one of the kernels this CPU runs.
  const auto all = kernels::qgemm_kernels();
  EXPECT_NE(std::find(all.begin(), all.end(), kernels::kernels().qgemm), all.end());
}

// ---------------------------------------------------------------- vpmaddubsw saturation

// The AVX2 vpmaddubsw kernel, or nullptr on a CPU without AVX2.
const QGemmKernel* maddubs_kernel() {
  for (const QGemmKernel* k : kernels::qgemm_kernels())
    if (k->exact != nullptr) return k;
  return nullptr;
}

// The same kernel with its safety check removed: what qgemm would compute
// if it trusted vpmaddubsw on any weights.
QGemmKernel unchecked(const QGemmKernel& k) {
  QGemmKernel raw = k;
  raw.exact = nullptr;
  return raw;
}

// The bound in qgemm.h, exhaustively: for each of the 65536 pairs (b0, b1)
// of s8 weights in consecutive k of one column, the maddubs kernel run
// directly (no check) is exact for every A' in [0, 255]^2 (the extremes of
// a linear form are at the corners, so A' rows (255, 255), (255, 0),
// (0, 255) and (0, 0) cover them) exactly when maddubs_pair_exact says so:
// the bound is sufficient and tight. qpack_b's flag agrees pair by pair,
// for the pair in rows k = 0, 1 and in rows k = 2, 3 of a group.
TEST(Int8GemmSaturation, PairBoundIsExactAndTight) {
  const QGemmKernel* mk = maddubs_kernel();
  if (mk == nullptr) GTEST_SKIP() << "this CPU lacks AVX2";
  constexpr int64_t N = 65536, K = 4;
  for (const int64_t k0 : {0, 2}) {
    std::vector<uint8_t> B(static_cast<size_t>(K * N), 0);
    for (int64_t n = 0; n < N; ++n) {
      B[static_cast<size_t>(k0 * N + n)] = static_cast<uint8_t>(n >> 8);
      B[static_cast<size_t>((k0 + 1) * N + n)] = static_cast<uint8_t>(n & 255);
    }
    const QPackedB pb = kernels::qpack_b(true, false, K, N, B.data(), N);
    EXPECT_FALSE(pb.maddubs_exact());
    // Four rows of A' (k0, k0 + 1 set to a corner; the other pair 0).
    const uint8_t corners[4][2] = {{255, 255}, {255, 0}, {0, 255}, {0, 0}};
    std::array<uint8_t, 16> a{};
    for (int i = 0; i < 4; ++i) {
      a[static_cast<size_t>(4 * i + k0)] = corners[i][0];
      a[static_cast<size_t>(4 * i + k0 + 1)] = corners[i][1];
    }
    const std::vector<int32_t> zeros(32, 0);
    std::vector<int32_t> c(4 * 16);
    kernels::QGemmTile t;
    t.a = a.data();
    t.lda = 4;
    t.kp = K;
    t.m = mk->mr < 4 ? mk->mr : 4;
    t.n = 16;
    t.row_sum = zeros.data();
    t.col_off = zeros.data();
    t.neg_b_zp = zeros.data();
    t.c = c.data();
    t.ldc = 16;
    int64_t exact_pairs = 0;
    for (int64_t panel = 0; panel < N / 16; ++panel) {
      t.b = pb.data() + panel * K * 16;
      mk->tile(t);
      for (int64_t j = 0; j < 16; ++j) {
        const int64_t n = panel * 16 + j;
        const int b0 = static_cast<int8_t>(n >> 8), b1 = static_cast<int8_t>(n & 255);
        bool right = true;
        for (int64_t i = 0; i < t.m; ++i)
          right = right && c[static_cast<size_t>(i * 16 + j)] ==
                               corners[i][0] * b0 + corners[i][1] * b1;
        ASSERT_EQ(right, kernels::maddubs_pair_exact(b0, b1)) << "pair " << b0 << ", " << b1;
        exact_pairs += right ? 1 : 0;
      }
    }
    // Opposite signs: 2 * 127 * 128 = 32512. Both in [0, 127] with sum <=
    // 128: 128 + (128 + 127 + ... + 2) = 8383. Both in [-128, 0] with sum
    // >= -128: 129 + 128 + ... + 1 = 8385. (0, 0) is in both: 49279 in all.
    EXPECT_EQ(exact_pairs, 32512 + 8383 + 8385 - 1);
  }
  // qpack_b's flag, one pair at a time, in either half of a group.
  for (int b0 = -128; b0 < 128; b0 += 3)
    for (int b1 = -128; b1 < 128; ++b1)
      for (const int64_t k0 : {0, 2}) {
        std::array<uint8_t, 5> col{};  // K = 5: the padding rows count too
        col[static_cast<size_t>(k0)] = static_cast<uint8_t>(b0);
        col[static_cast<size_t>(k0 + 1)] = static_cast<uint8_t>(b1);
        const QPackedB pb = kernels::qpack_b(true, true, 5, 1, col.data(), 5);
        ASSERT_EQ(pb.maddubs_exact(), kernels::maddubs_pair_exact(b0, b1)) << b0 << ", " << b1;
      }
}

// Weights built to saturate vpmaddubsw, against A' at its extremes (u8 255,
// or s8 127 which packs to 255), K large: the flag from packing is as
// derived, qgemm through the AVX2 table (and qgemm_with on the maddubs
// kernel) equals the int64 oracle exactly, while the maddubs kernel without
// its check is wrong on every unsafe pattern: the detection matters.
TEST(Int8GemmSaturation, AdversarialWeightsTakeTheExactPath) {
  const QGemmKernel* mk = maddubs_kernel();
  if (mk == nullptr) GTEST_SKIP() << "this CPU lacks AVX2";
  const QGemmKernel& avx2 = *kernels::kernels_for(kernels::Isa::kAvx2).qgemm;
  ASSERT_EQ(&avx2, mk);
  const QGemmKernel raw = unchecked(*mk);
  struct Case {
    std::array<int, 4> b;  // B' down each column, repeated over k (s8 weights)
    bool exact;            // what the bound says
  };
  const Case cases[] = {
      {{-128, -128, -128, -128}, false},  // 255 * -256: the worst case
      {{127, 127, 127, 127}, false},      // 255 * 254
      {{-128, -1, 0, 0}, false},          // -129: one past the bound
      {{64, 65, 0, 0}, false},            // 129
      {{0, 0, 100, 29}, false},           // the second pair of a group
      {{-128, 127, -128, 127}, true},     // opposite signs never saturate
      {{0, -128, -128, 0}, true},         // k = 1, 2 are not a pair
      {{64, 64, -64, -64}, true},         // exactly 128 and -128
      {{-128, 0, 0, -128}, true},
      {{63, 63, -64, -64}, true},         // 7-bit extremes
  };
  for (const Case& c : cases)
    for (const bool a_signed : {false, true})
      for (const int64_t K : {4, 1000, 33025}) {
        const int64_t M = 3, N = 33;
        Problem p = random_problem(M, N, K, a_signed, true, QOutput::kS32, 9);
        p.trans_b = false;
        p.ldb = N;
        p.B.assign(static_cast<size_t>(K * N), 0);
        for (int64_t k = 0; k < K; ++k)
          for (int64_t n = 0; n < N; ++n)
            p.B[static_cast<size_t>(k * N + n)] = static_cast<uint8_t>(c.b[k % 4]);
        std::fill(p.A.begin(), p.A.end(), static_cast<uint8_t>(a_signed ? 127 : 255));
        p.a_zp = 0;
        std::fill(p.b_zp.begin(), p.b_zp.end(), 0);
        p.bias.clear();
        const std::string what = describe(p) + " B' " + std::to_string(c.b[0]) + " " +
                                 std::to_string(c.b[1]) + " " + std::to_string(c.b[2]) + " " +
                                 std::to_string(c.b[3]);
        const QPackedB pb = kernels::qpack_b(true, false, K, N, p.B.data(), N);
        EXPECT_EQ(pb.maddubs_exact(), c.exact) << what;
        const auto want = oracle(p, kGuard);
        EXPECT_TRUE(same_c(p, run_kernel(avx2, p, kGuard), want)) << what;
        // The process's own choice, whatever QFORGE_ISA made it (ctest also
        // runs this suite under QFORGE_ISA=avx2).
        EXPECT_TRUE(same_c(p, run_kernel(*kernels::kernels().qgemm, p, kGuard), want)) << what;
        if (c.exact) {
          EXPECT_TRUE(same_c(p, run_kernel(raw, p, kGuard), want)) << what;
        } else {
          EXPECT_FALSE(same_c(p, run_kernel(raw, p, kGuard), want))
              << what << ": vpmaddubsw did not saturate, so this case proves nothing";
        }
      }
  // u8 weights, even 7-bit ones ([0, 127], B' = B - 128 in [-128, -1]),
  // can saturate: they take the exact path.
  std::vector<uint8_t> u7(64);
  for (size_t i = 0; i < u7.size(); ++i) u7[i] = static_cast<uint8_t>(i * 2);
  EXPECT_FALSE(kernels::qpack_b(false, false, 8, 8, u7.data(), 8).maddubs_exact());
  const std::vector<uint8_t> centred(64, 128);  // B' = 0
  EXPECT_TRUE(kernels::qpack_b(false, false, 8, 8, centred.data(), 8).maddubs_exact());
}

// The byte transpose (convolution layouts, QGemm's transA) against the
// definition, for sizes around its 16 x 16 blocks, with padded rows whose
// bytes must not be written.
TEST(Int8Gemm, TransposeBytes) {
  std::mt19937 rng(3);
  for (const int64_t rows : {0, 1, 5, 15, 16, 17, 31, 32, 33, 50})
    for (const int64_t cols : {0, 1, 3, 15, 16, 17, 40}) {
      const int64_t lds = cols + 3, ldd = rows + 5;
      std::vector<uint8_t> src(static_cast<size_t>(rows * lds) + 1);
      for (auto& v : src) v = static_cast<uint8_t>(rng());
      std::vector<uint8_t> got(static_cast<size_t>(cols * ldd) + 1, kGuard), want = got;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          want[static_cast<size_t>(c * ldd + r)] = src[static_cast<size_t>(r * lds + c)];
      kernels::transpose_u8(src.data(), rows, cols, lds, got.data(), ldd);
      ASSERT_EQ(got, want) << rows << " x " << cols;
    }
}

TEST(Int8Gemm, ExactInInt32Bound) {
  const std::vector<int32_t> zp127(3, 127), zp0(3, 0);
  // u8 A with zp 0 deviates by up to 255; s8 B with zp 127 by up to 255.
  EXPECT_TRUE(kernels::exact_in_int32(33025, false, 0, true, zp127.data(), 3));
  EXPECT_FALSE(kernels::exact_in_int32(33026, false, 0, true, zp127.data(), 3));
  // A bias eats into the margin: 255 * 255 * 33025 = 2147450625, 2^31 - 1 - that = 33022.
  EXPECT_TRUE(kernels::exact_in_int32(33025, false, 0, true, zp127.data(), 3, 33022));
  EXPECT_FALSE(kernels::exact_in_int32(33025, false, 0, true, zp127.data(), 3, 33023));
  // Centred zero points halve the deviation: 255 * 128 = 32640, and
  // 32640 * 65793 = 2147483520 <= 2^31 - 1 < 32640 * 65794.
  EXPECT_TRUE(kernels::exact_in_int32(65793, false, 0, true, zp0.data(), 3));
  EXPECT_FALSE(kernels::exact_in_int32(65794, false, 0, true, zp0.data(), 3));
}

TEST(Int8Gemm, BadArgumentsAreErrors) {
  const std::vector<uint8_t> A(16, 1), B(16, 1);
  const QPackedB pb = kernels::qpack_b(true, false, 4, 4, B.data(), 4);
  const std::vector<int32_t> zp(4, 0);
  std::vector<int32_t> C(16);
  QGemmArgs a;
  a.M = 4;
  a.A = A.data();
  a.lda = 4;
  a.B = &pb;
  a.b_zp = zp.data();
  a.C = C.data();
  a.ldc = 4;
  EXPECT_NO_THROW(kernels::qgemm(a));
  auto expect_bad = [](QGemmArgs x, const char* what) {
    try {
      kernels::qgemm(x);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kInvalidArgument) << e.what();
      EXPECT_FALSE(e.expected().empty()) << e.what();
    }
  };
  QGemmArgs x = a;
  x.lda = 3;
  expect_bad(x, "lda < K");
  x = a;
  x.ldc = 3;
  expect_bad(x, "ldc < N");
  x = a;
  x.a_zp = 256;
  expect_bad(x, "a u8 zero point of 256");
  x = a;
  x.a_signed = true;
  x.a_zp = 128;
  expect_bad(x, "an s8 zero point of 128");
  x = a;
  x.B = nullptr;
  expect_bad(x, "no B");
  x = a;
  x.out = QOutput::kF32;
  expect_bad(x, "no scale");
  x = a;
  x.M = -1;
  expect_bad(x, "M < 0");
  EXPECT_THROW(kernels::qpack_b(true, false, -1, 4, B.data(), 4), Error);
  EXPECT_THROW(kernels::qpack_b(true, false, 4, 4, B.data(), 3), Error);
}

// ---------------------------------------------------------------- the ops

using Attrs = std::map<std::string, ir::Attribute>;
using Inputs = std::vector<std::optional<Tensor>>;
using RefFn = void (*)(ops::OpContext&);
const std::string kMs = "com.microsoft";

ir::Attribute ai(int64_t v) {
  return ir::Attribute::of(v);
}
ir::Attribute ais(std::vector<int64_t> v) {
  return ir::Attribute::of(std::move(v));
}
ir::Attribute af(float v) {
  return ir::Attribute::of(v);
}

ir::Node make_node(const std::string& domain, const std::string& op, const Inputs& in,
                   Attrs attrs) {
  ir::Node node;
  node.name = "n";
  node.op_type = op;
  node.domain = domain;
  for (size_t i = 0; i < in.size(); ++i)
    node.inputs.push_back(in[i] ? "in" + std::to_string(i) : "");
  node.outputs.push_back("out0");
  node.attrs = std::move(attrs);
  return node;
}

std::vector<const Tensor*> pointers(const Inputs& in) {
  std::vector<const Tensor*> r;
  for (const auto& t : in) r.push_back(t ? &*t : nullptr);
  return r;
}

// One op call: the registered definition (the fast path) with weights packed
// in prepare when `packed` lists constant inputs (or packed from `pack_from`
// when given: a stale packing that must not be used), and the reference.
struct OpCall {
  std::string domain = "";
  std::string op;
  int64_t opset = 21;
  Inputs in;
  Attrs attrs;
  std::vector<int> packed;          // inputs prepare sees as constants
  std::optional<Inputs> pack_from;  // prepare on these inputs instead
};

Tensor run_fast(const OpCall& c, ThreadPool* pool) {
  const ir::Node node = make_node(c.domain, c.op, c.in, c.attrs);
  const ops::OpDef* def = ops::OpRegistry::global().find(c.domain, c.op, c.opset);
  if (def == nullptr) throw std::runtime_error("no OpDef for " + c.op);
  std::shared_ptr<const void> state;
  if (!c.packed.empty()) {
    const Inputs& src = c.pack_from ? *c.pack_from : c.in;
    std::vector<const Tensor*> consts(src.size(), nullptr);
    for (int i : c.packed)
      consts[static_cast<size_t>(i)] =
          src[static_cast<size_t>(i)] ? &*src[static_cast<size_t>(i)] : nullptr;
    EXPECT_TRUE(def->prepare) << c.op << " has no prepare";
    if (def->prepare) state = def->prepare(ops::PrepareContext{node, c.opset, consts, pool});
  }
  ops::OpContext ctx(node, c.opset, pointers(c.in), state.get(), pool);
  def->run(ctx);
  return ctx.outputs().at(0);
}

Tensor run_reference(const OpCall& c, RefFn ref) {
  const ir::Node node = make_node(c.domain, c.op, c.in, c.attrs);
  ops::OpContext ctx(node, c.opset, pointers(c.in), nullptr, nullptr);
  ref(ctx);
  return ctx.outputs().at(0);
}

std::string value_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kU8:
      return std::to_string(int{static_cast<const uint8_t*>(t.raw())[i]});
    case DType::kI8:
      return std::to_string(int{static_cast<const int8_t*>(t.raw())[i]});
    case DType::kI32:
      return std::to_string(t.data<int32_t>()[i]);
    case DType::kF32:
      return std::to_string(t.data<float>()[i]);
    default:
      return "?";
  }
}

// Same dtype, shape and bytes; else the first difference.
::testing::AssertionResult same_tensor(const Tensor& got, const Tensor& want) {
  if (got.dtype() != want.dtype() || got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "got " << dtype_name(got.dtype()) << shape_str(got.shape()) << ", expected "
           << dtype_name(want.dtype()) << shape_str(want.shape());
  if (got.nbytes() == 0 || std::memcmp(got.raw(), want.raw(), got.nbytes()) == 0)
    return ::testing::AssertionSuccess();
  const int64_t es = static_cast<int64_t>(want.nbytes()) / want.numel();
  for (int64_t i = 0; i < want.numel(); ++i)
    if (std::memcmp(static_cast<const uint8_t*>(got.raw()) + i * es,
                    static_cast<const uint8_t*>(want.raw()) + i * es, static_cast<size_t>(es)) != 0)
      return ::testing::AssertionFailure()
             << "element " << i << " of " << shape_str(want.shape()) << " is " << value_at(got, i)
             << ", the reference gives " << value_at(want, i);
  return ::testing::AssertionFailure() << "bytes differ";
}

// The fast path on 1 and 3 threads, with and without packing, equals the reference.
void expect_fast_is_reference(OpCall c, RefFn ref, const std::string& what) {
  SCOPED_TRACE(c.op + ": " + what);
  const Tensor want = run_reference(c, ref);
  ThreadPool pool(3);
  const std::vector<int> packed = c.packed;
  for (const bool pack : {false, true}) {
    c.packed = pack ? packed : std::vector<int>{};
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      ASSERT_TRUE(same_tensor(run_fast(c, p), want))
          << (pack ? "packed in prepare" : "packed per run") << (p ? ", 3 threads" : ", 1 thread");
    }
  }
}

class Rng {
 public:
  explicit Rng(uint32_t seed) : g_(seed) {}
  int64_t range(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(g_);
  }
  bool coin() { return range(0, 1) == 1; }
  float real(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_); }
  DType type8() { return coin() ? DType::kI8 : DType::kU8; }
  // Codes over the type's whole range.
  Tensor codes(DType t, Shape s) {
    Tensor x(t, std::move(s));
    auto* d = static_cast<uint8_t*>(x.raw());
    for (int64_t i = 0; i < x.numel(); ++i) d[i] = static_cast<uint8_t>(range(0, 255));
    return x;
  }
  Tensor code(DType t) { return codes(t, {}); }
  Tensor i32(Shape s, int32_t lo, int32_t hi) {
    Tensor x(DType::kI32, std::move(s));
    for (int64_t i = 0; i < x.numel(); ++i)
      x.data<int32_t>()[i] = static_cast<int32_t>(range(lo, hi));
    return x;
  }
  Tensor f32(Shape s, float lo, float hi) {
    Tensor x(DType::kF32, std::move(s));
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = real(lo, hi);
    return x;
  }

 private:
  std::mt19937 g_;
};

Tensor scalar_f32(float v) {
  return Tensor::from<float>({}, {v});
}

// The typical |sum| of K products of uniform codes: the scale that spreads
// requantized outputs over the code range.
float spread_scale(int64_t K) {
  return 40.0f / (74.0f * 74.0f * std::sqrt(static_cast<float>(std::max<int64_t>(K, 1))));
}

// Matmul shapes: 2-D, batched A with 2-D B (folded into one GEMM), both
// batched with broadcasting, 1-D A or B.
std::pair<Shape, Shape> matmul_shapes(Rng& r, int i) {
  const int64_t M = r.range(1, 40), K = r.range(1, 90), N = r.range(1, 70);
  switch (i % 5) {
    case 0:
      return {{M, K}, {K, N}};
    case 1:
      return {{r.range(1, 3), M, K}, {K, N}};
    case 2:
      return {{2, 1, M, K}, {3, K, N}};
    case 3:
      return {{K}, {r.range(1, 2), K, N}};
    default:
      return {{M, K}, {K}};
  }
}

TEST(Int8GemmOps, MatMulIntegerFastPathIsTheReference) {
  Rng r(1);
  for (int i = 0; i < 40; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType ta = r.type8(), tb = r.type8();
    const int64_t N = bs.size() == 1 ? 1 : bs.back();
    OpCall c;
    c.op = "MatMulInteger";
    c.opset = 10;
    c.in = {r.codes(ta, as), r.codes(tb, bs), std::nullopt, std::nullopt};
    if (i % 4 != 0) c.in[2] = r.code(ta);
    if (i % 3 == 1) c.in[3] = r.code(tb);
    if (i % 3 == 2) c.in[3] = r.codes(tb, {N});  // per column
    c.packed = {1};
    expect_fast_is_reference(c, ops::reference::matmul_integer, "case " + std::to_string(i));
  }
}

TEST(Int8GemmOps, QLinearMatMulFastPathIsTheReference) {
  Rng r(2);
  for (int i = 0; i < 40; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType ta = r.type8(), tb = r.type8(), ty = r.type8();
    const int64_t K = as.back(), N = bs.size() == 1 ? 1 : bs.back();
    OpCall c;
    c.op = "QLinearMatMul";
    c.opset = i % 2 == 0 ? 10 : 21;
    const bool per_col = i % 3 != 0;
    Tensor b_scale = per_col ? r.f32({N}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f));
    c.in = {r.codes(ta, as),
            scalar_f32(r.real(0.5f, 2.0f)),
            r.code(ta),
            r.codes(tb, bs),
            b_scale,
            per_col ? r.codes(tb, {N}) : r.code(tb),
            scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
            r.code(ty)};
    if (i % 7 == 3) {  // multipliers of exactly 0.5: ties everywhere
      c.in[1] = scalar_f32(1.0f);
      c.in[4] = scalar_f32(1.0f);
      c.in[6] = scalar_f32(2.0f);
    }
    if (i % 8 == 5) {  // opset 21: f16 scales (the multiplier is rounded to f16 twice)
      for (const int k : {1, 4, 6}) {
        const Tensor& f = *c.in[static_cast<size_t>(k)];
        Tensor h(DType::kF16, f.shape());
        for (int64_t e = 0; e < f.numel(); ++e)
          static_cast<uint16_t*>(h.raw())[e] = f32_to_f16(f.data<float>()[e]);
        c.in[static_cast<size_t>(k)] = h;
      }
    }
    c.packed = {3};
    expect_fast_is_reference(c, ops::reference::qlinear_matmul, "case " + std::to_string(i));
  }
}

// Where the int32 sum could differ from the reference's int64 one (K past
// the bound with extreme zero points), the op must still give the reference
// result: it falls back.
TEST(Int8GemmOps, QLinearMatMulBeyondTheInt32BoundFallsBack) {
  Rng r(3);
  const int64_t K = 33100;
  Tensor a(DType::kU8, {2, K}), b(DType::kI8, {K, 3});
  std::memset(a.raw(), 255, a.nbytes());
  std::memset(b.raw(), 0x80, b.nbytes());  // -128
  OpCall c;
  c.op = "QLinearMatMul";
  c.opset = 10;
  c.in = {a,
          scalar_f32(1.0f),
          Tensor::from<uint8_t>({}, {0}),
          b,
          scalar_f32(1.0f),
          Tensor::from<int8_t>({}, {127}),
          scalar_f32(1e7f),
          Tensor::from<uint8_t>({}, {128})};
  c.packed = {3};
  expect_fast_is_reference(c, ops::reference::qlinear_matmul, "K = 33100, worst zero points");
  // The exact sum is -255 * 255 * 33100 = -2152327500 (below int32's range):
  // times 1e-7 that is -215.23, and with zero point 128 saturates to 0.
  EXPECT_EQ(static_cast<const uint8_t*>(run_fast(c, nullptr).raw())[0], 0);
}

TEST(Int8GemmOps, MatMulIntegerToFloatFastPathIsTheReference) {
  Rng r(4);
  for (int i = 0; i < 30; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType ta = r.type8(), tb = r.type8();
    const int64_t N = bs.size() == 1 ? 1 : bs.back();
    OpCall c;
    c.domain = kMs;
    c.op = "MatMulIntegerToFloat";
    c.opset = 1;
    const bool per_col = i % 2 == 1;
    c.in = {r.codes(ta, as),
            r.codes(tb, bs),
            scalar_f32(r.real(1e-3f, 1e-2f)),
            per_col ? r.f32({N}, -1e-2f, 1e-2f) : scalar_f32(r.real(1e-3f, 1e-2f)),
            std::nullopt,
            std::nullopt,
            std::nullopt};
    if (i % 3 != 0) c.in[4] = r.code(ta);
    if (i % 4 == 1) c.in[5] = r.code(tb);
    if (i % 4 == 2) c.in[5] = r.codes(tb, {N});
    if (i % 2 == 0) c.in[6] = r.f32({N}, -2.0f, 2.0f);
    c.packed = {1};
    expect_fast_is_reference(c, ops::reference::matmul_integer_to_float,
                             "case " + std::to_string(i));
  }
}

TEST(Int8GemmOps, DynamicQuantizeMatMulFastPathIsTheReference) {
  Rng r(5);
  for (int i = 0; i < 20; ++i) {
    const auto [as, bs] = matmul_shapes(r, i);
    const DType tb = r.type8();
    const int64_t N = bs.size() == 1 ? 1 : bs.back();
    OpCall c;
    c.domain = kMs;
    c.op = "DynamicQuantizeMatMul";
    c.opset = 1;
    const float lo = i % 3 == 0 ? 0.5f : -3.0f;  // ranges with and without 0 inside
    c.in = {r.f32(as, lo, 2.0f), r.codes(tb, bs),
            i % 2 ? r.f32({N}, 1e-3f, 1e-2f) : scalar_f32(0.01f), std::nullopt, std::nullopt};
    if (i % 3 == 1) c.in[3] = r.code(tb);
    if (i % 3 == 2) c.in[3] = r.codes(tb, {N});
    if (i % 2 == 0) c.in[4] = r.f32({N}, -1.0f, 1.0f);
    c.packed = {1};
    expect_fast_is_reference(c, ops::reference::dynamic_quantize_matmul,
                             "case " + std::to_string(i));
  }
}

// A random convolution: 1-D to 3-D, groups (and depthwise), kernel sizes,
// strides, dilations, pads or auto_pad.
struct ConvCase {
  Shape x, w;
  Attrs attrs;
};

ConvCase random_conv(Rng& r, int i) {
  const size_t S = i % 6 == 5 ? 1 : (i % 6 == 4 ? 3 : 2);
  const bool depthwise = S == 2 && i % 4 == 1;
  const int64_t group = depthwise ? r.range(1, 6) : r.range(1, 3);
  const int64_t Cg = depthwise ? 1 : r.range(1, 5), Mg = depthwise ? 1 : r.range(1, 7);
  ConvCase c;
  c.x = {r.range(1, 2), Cg * group};
  c.w = {Mg * group, Cg};
  std::vector<int64_t> strides, dil, pads(2 * S);
  for (size_t s = 0; s < S; ++s) {
    const int64_t k = r.range(1, S == 3 ? 2 : 3);
    strides.push_back(r.range(1, 2));
    dil.push_back(r.range(1, 2));
    pads[s] = r.range(0, 2);
    pads[s + S] = r.range(0, 2);
    c.w.push_back(k);
    c.x.push_back((k - 1) * dil.back() + 1 + r.range(0, S == 3 ? 3 : 8));
  }
  c.attrs = {{"group", ai(group)}, {"strides", ais(strides)}, {"dilations", ais(dil)}};
  if (i % 7 == 6)
    c.attrs["auto_pad"] = ir::Attribute::of(std::string(i % 2 ? "SAME_UPPER" : "SAME_LOWER"));
  else
    c.attrs["pads"] = ais(pads);
  return c;
}

std::string conv_what(const ConvCase& cc, int i) {
  return "case " + std::to_string(i) + ": x " + shape_str(cc.x) + " w " + shape_str(cc.w) +
         " group " + std::to_string(cc.attrs.at("group").i);
}

TEST(Int8GemmOps, QLinearConvFastPathIsTheReference) {
  Rng r(6);
  for (int i = 0; i < 60; ++i) {
    const ConvCase cc = random_conv(r, i);
    const DType tx = r.type8(), tw = r.type8(), ty = r.type8();
    const int64_t M = cc.w[0], K = cc.w[1] * shape_numel(Shape(cc.w.begin() + 2, cc.w.end()));
    const bool per_ch = i % 3 != 0;
    OpCall c;
    c.op = "QLinearConv";
    c.opset = 10;
    c.attrs = cc.attrs;
    c.in = {r.codes(tx, cc.x),
            scalar_f32(r.real(0.5f, 2.0f)),
            r.code(tx),
            r.codes(tw, cc.w),
            per_ch ? r.f32({M}, 0.5f, 2.0f) : scalar_f32(r.real(0.5f, 2.0f)),
            per_ch ? r.codes(tw, {M}) : r.code(tw),
            scalar_f32(4.0f / spread_scale(K) * r.real(0.5f, 2.0f)),
            r.code(ty),
            std::nullopt};
    if (i % 2 == 0) c.in[8] = r.i32({M}, -50000, 50000);
    c.packed = {3};
    expect_fast_is_reference(c, ops::reference::qlinear_conv, conv_what(cc, i));
  }
}

TEST(Int8GemmOps, ConvIntegerFastPathIsTheReference) {
  Rng r(7);
  for (int i = 0; i < 60; ++i) {
    const ConvCase cc = random_conv(r, i);
    const DType tx = r.type8(), tw = r.type8();
    OpCall c;
    c.op = "ConvInteger";
    c.opset = 10;
    c.attrs = cc.attrs;
    c.in = {r.codes(tx, cc.x), r.codes(tw, cc.w), std::nullopt, std::nullopt};
    if (i % 3 != 0) c.in[2] = r.code(tx);
    const int zp_kind = i / 3 % 3;  // not i % 3: depthwise cases get all three
    if (zp_kind == 1) c.in[3] = r.code(tw);
    if (zp_kind == 2) c.in[3] = r.codes(tw, {cc.w[0]});
    c.packed = {1};
    expect_fast_is_reference(c, ops::reference::conv_integer, conv_what(cc, i));
  }
}

// Bigger layers: several chunks of output positions, several groups.
TEST(Int8GemmOps, ConvLayersOfRealisticSize) {
  Rng r(8);
  const std::vector<ConvCase> cases = {
      {{1, 16, 30, 30}, {32, 16, 3, 3}, {{"pads", ais({1, 1, 1, 1})}}},
      {{2, 32, 14, 14},
       {64, 8, 3, 3},
       {{"group", ai(4)}, {"strides", ais({2, 2})}, {"pads", ais({1, 1, 1, 1})}}},
      {{1, 24, 20, 20}, {24, 1, 5, 5}, {{"group", ai(24)}, {"pads", ais({2, 2, 2, 2})}}},
      {{1, 64, 9, 9}, {48, 64, 1, 1}, {}},
  };
  int i = 0;
  for (const ConvCase& cc : cases) {
    const int64_t M = cc.w[0], K = cc.w[1] * cc.w[2] * cc.w[3];
    OpCall c;
    c.op = "QLinearConv";
    c.opset = 10;
    c.attrs = cc.attrs;
    c.in = {r.codes(DType::kU8, cc.x),
            scalar_f32(0.02f),
            r.code(DType::kU8),
            r.codes(DType::kI8, cc.w),
            r.f32({M}, 0.01f, 0.02f),
            Tensor(DType::kI8, {M}),
            scalar_f32(0.02f * 0.015f / spread_scale(K) * 3),
            r.code(DType::kU8),
            r.i32({M}, -5000, 5000)};
    c.packed = {3};
    expect_fast_is_reference(c, ops::reference::qlinear_conv, "layer " + std::to_string(i++));
  }
}

// Weights packed in prepare are used only for the tensor they were packed
// from: an initializer overridden at run time (same shape) is packed anew.
TEST(Int8GemmOps, PackedWeightsOfAnotherTensorAreNotUsed) {
  Rng r(9);
  OpCall c;
  c.op = "MatMulInteger";
  c.opset = 10;
  c.in = {r.codes(DType::kU8, {5, 40}), r.codes(DType::kI8, {40, 20}), std::nullopt, std::nullopt};
  c.packed = {1};
  c.pack_from = Inputs{c.in[0], r.codes(DType::kI8, {40, 20}), std::nullopt, std::nullopt};
  ASSERT_TRUE(same_tensor(run_fast(c, nullptr), run_reference(c, ops::reference::matmul_integer)));
  OpCall v;
  v.op = "QLinearConv";
  v.opset = 10;
  v.in = {r.codes(DType::kU8, {1, 4, 6, 6}),
          scalar_f32(1.0f),
          r.code(DType::kU8),
          r.codes(DType::kI8, {6, 4, 3, 3}),
          scalar_f32(1.0f),
          r.code(DType::kI8),
          scalar_f32(300.0f),
          r.code(DType::kU8),
          std::nullopt};
  v.packed = {3};
  v.pack_from = v.in;
  (*v.pack_from)[3] = r.codes(DType::kI8, {6, 4, 3, 3});
  ASSERT_TRUE(same_tensor(run_fast(v, nullptr), run_reference(v, ops::reference::qlinear_conv)));
}

// Through a Session: weights as initializers (packed once in prepare) on a
// 2-thread pool, the same as the reference.
TEST(Int8GemmOps, SessionPacksInitializerWeights) {
  Rng r(10);
  const Tensor x = r.codes(DType::kU8, {2, 8, 12, 12}), w = r.codes(DType::kI8, {16, 8, 3, 3});
  const Tensor xs = scalar_f32(0.05f), xz = r.code(DType::kU8), ws = r.f32({16}, 0.01f, 0.02f),
               wz = Tensor(DType::kI8, {16}), ys = scalar_f32(0.1f), yz = r.code(DType::kU8),
               bias = r.i32({16}, -1000, 1000);
  ir::Model m;
  m.opsets[""] = 13;
  m.graph.name = "main";
  m.graph.inputs = {"x"};
  m.graph.values["x"] = ir::ValueInfo{DType::kU8, ir::to_sym(x.shape())};
  const std::vector<std::pair<std::string, Tensor>> inits = {{"xs", xs}, {"xz", xz}, {"w", w},
                                                             {"ws", ws}, {"wz", wz}, {"ys", ys},
                                                             {"yz", yz}, {"b", bias}};
  for (const auto& [name, t] : inits) m.graph.initializers[name] = t;
  ir::Node n;
  n.name = "n";
  n.op_type = "QLinearConv";
  n.inputs = {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"};
  n.outputs = {"y"};
  n.attrs = {{"pads", ais({1, 1, 1, 1})}};
  m.graph.nodes.push_back(n);
  m.graph.outputs = {"y"};
  SessionOptions so;
  so.threads = 2;
  Session s(std::move(m), so);
  const Tensor got = s.run({{"x", x}}).at(0);
  OpCall c;
  c.op = "QLinearConv";
  c.opset = 13;
  c.attrs = n.attrs;
  c.in = {x, xs, xz, w, ws, wz, ys, yz, bias};
  EXPECT_TRUE(same_tensor(got, run_reference(c, ops::reference::qlinear_conv)));
}

// ---------------------------------------------------------------- QGemm

OpCall qgemm_call(Inputs in, Attrs attrs = {}) {
  OpCall c;
  c.domain = kMs;
  c.op = "QGemm";
  c.opset = 1;
  c.in = std::move(in);
  c.attrs = std::move(attrs);
  c.packed = {3};
  return c;
}

// Worked by hand from ContribOperators.md's definition: acc = C + (A - a_zp)(B - b_zp),
// Y = acc * alpha * a_scale * b_scale[n] (/ y_scale, rounded half to even, + y_zp).
TEST(Int8GemmOps, QGemmByHand) {
  // A - 10 = [[0, 10, 20], [-10, 245, 118]]; B = [[1, -1], [2, 0], [-3, 4]] (b_zp 0):
  // sums [[0 + 20 - 60, 0 + 0 + 80], [-10 + 490 - 354, 10 + 0 + 472]] = [[-40, 80], [126, 482]].
  const Tensor A = Tensor::from<uint8_t>({2, 3}, {10, 20, 30, 0, 255, 128});
  const Tensor At = Tensor::from<uint8_t>({3, 2}, {10, 0, 20, 255, 30, 128});
  const Tensor B = Tensor::from<int8_t>({3, 2}, {1, -1, 2, 0, -3, 4});
  const Tensor Bt = Tensor::from<int8_t>({2, 3}, {1, 2, -3, -1, 0, 4});
  const Tensor a_zp = Tensor::from<uint8_t>({}, {10}), b_zp = Tensor::from<int8_t>({}, {0});
  const Tensor C = Tensor::from<int32_t>({2}, {5, -6});  // acc [[-35, 74], [131, 476]]
  const Tensor b_scale = Tensor::from<float>({2}, {2.0f, 1.0f});
  const Attrs half = {{"alpha", af(0.5f)}};
  // Float: scale = 0.5 * 0.25 * [2, 1] = [0.25, 0.125].
  for (const bool ta : {false, true})
    for (const bool tb : {false, true}) {
      Attrs at = half;
      at["transA"] = ai(ta);
      at["transB"] = ai(tb);
      const Inputs in = {ta ? At : A, scalar_f32(0.25f), a_zp, tb ? Bt : B, b_scale, b_zp, C};
      for (RefFn fn : {static_cast<RefFn>(nullptr), ops::reference::qgemm}) {
        const OpCall call = qgemm_call(in, at);
        const Tensor y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
        ASSERT_EQ(y.dtype(), DType::kF32);
        ASSERT_EQ(y.shape(), (Shape{2, 2}));
        const float* v = y.data<float>();
        EXPECT_EQ(v[0], -8.75f);
        EXPECT_EQ(v[1], 9.25f);
        EXPECT_EQ(v[2], 32.75f);
        EXPECT_EQ(v[3], 59.5f);
      }
    }
  // Quantized, y_scale 0.5: acc * [0.5, 0.25] = [[-17.5, 18.5], [65.5, 119]],
  // rounded half to even [[-18, 18], [66, 119]], + y_zp.
  for (RefFn fn : {static_cast<RefFn>(nullptr), ops::reference::qgemm}) {
    OpCall call = qgemm_call({A, scalar_f32(0.25f), a_zp, B, b_scale, b_zp, C, scalar_f32(0.5f),
                              Tensor::from<uint8_t>({}, {100})},
                             half);
    Tensor y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
    ASSERT_EQ(y.dtype(), DType::kU8);
    EXPECT_EQ(std::vector<uint8_t>(y.data<uint8_t>(), y.data<uint8_t>() + 4),
              (std::vector<uint8_t>{82, 118, 166, 219}));
    // y_zp 200 saturates the second row: 266, 319 -> 255.
    call.in[8] = Tensor::from<uint8_t>({}, {200});
    y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
    EXPECT_EQ(std::vector<uint8_t>(y.data<uint8_t>(), y.data<uint8_t>() + 4),
              (std::vector<uint8_t>{182, 218, 255, 255}));
    // C as a column [M, 1] = [[5], [-6]]: acc [[-35, 85], [120, 476]] -> *[0.5, 0.25] =
    // [[-17.5, 21.25], [60, 119]] -> [[-18, 21], [60, 119]] + 100.
    call.in[6] = Tensor::from<int32_t>({2, 1}, {5, -6});
    call.in[8] = Tensor::from<uint8_t>({}, {100});
    y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
    EXPECT_EQ(std::vector<uint8_t>(y.data<uint8_t>(), y.data<uint8_t>() + 4),
              (std::vector<uint8_t>{82, 121, 160, 219}));
  }
}

TEST(Int8GemmOps, QGemmFastPathIsTheReference) {
  Rng r(11);
  for (int i = 0; i < 60; ++i) {
    const int64_t M = r.range(1, 40), K = r.range(0, 80), N = r.range(1, 50);
    const bool ta = r.coin(), tb = r.coin();
    const DType tA = r.type8(), tB = r.type8(), tY = r.type8();
    const bool per_col = i % 2 == 1;
    Inputs in = {r.codes(tA, ta ? Shape{K, M} : Shape{M, K}),
                 scalar_f32(r.real(0.01f, 0.1f)),
                 r.code(tA),
                 r.codes(tB, tb ? Shape{N, K} : Shape{K, N}),
                 per_col ? r.f32({N}, 0.01f, 0.1f) : scalar_f32(r.real(0.01f, 0.1f)),
                 per_col ? r.codes(tB, {N}) : r.code(tB),
                 std::nullopt,
                 std::nullopt,
                 std::nullopt};
    const Shape c_shapes[] = {{}, {N}, {1, N}, {M, 1}, {M, N}, {1}};
    if (i % 7 != 0) in[6] = r.i32(c_shapes[i % 6], -100000, 100000);
    const float y_scale = 0.05f * 0.05f / spread_scale(K) / 40.0f * 4.0f;
    if (i % 3 != 0) {
      in[7] = scalar_f32(y_scale * r.real(0.5f, 2.0f));
      in[8] = r.code(tY);
    } else if (i % 6 == 3) {
      in[7] =
          scalar_f32(y_scale);  // y_scale without y_zero_point: float output divided by it (ORT)
    }
    if (i % 5 == 2) in[5] = std::nullopt;  // b_zero_point absent: 0
    const Attrs at = {
        {"transA", ai(ta)}, {"transB", ai(tb)}, {"alpha", af(i % 4 == 1 ? -1.5f : 1.0f)}};
    expect_fast_is_reference(qgemm_call(in, at), ops::reference::qgemm,
                             "case " + std::to_string(i));
  }
}

TEST(Int8GemmOps, QGemmRefusesBadInput) {
  Rng r(12);
  const Tensor A = r.codes(DType::kU8, {2, 3}), B = r.codes(DType::kI8, {3, 4});
  const Tensor az = r.code(DType::kU8), bz = r.code(DType::kI8), s = scalar_f32(0.1f);
  auto expect_error = [](const OpCall& c, Errc code) {
    for (RefFn fn : {static_cast<RefFn>(nullptr), ops::reference::qgemm}) {
      try {
        if (fn)
          run_reference(c, fn);
        else
          run_fast(c, nullptr);
        ADD_FAILURE() << "no error";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(e.subject().find("node 'n'"), std::string::npos) << e.what();
      }
    }
  };
  expect_error(qgemm_call({A, s, az, r.codes(DType::kI8, {4, 4}), s, bz}),
               Errc::kShapeMismatch);  // K
  expect_error(qgemm_call({A, s, az, B, s, bz}, {{"transA", ai(1)}}), Errc::kShapeMismatch);
  expect_error(qgemm_call({r.codes(DType::kU8, {2, 3, 1}), s, az, B, s, bz}), Errc::kShapeMismatch);
  expect_error(qgemm_call({A, s, az, B, r.f32({3}, 0.1f, 0.2f), bz}),
               Errc::kShapeMismatch);  // b_scale
  expect_error(qgemm_call({A, s, az, B, s, r.codes(DType::kI8, {2})}), Errc::kShapeMismatch);
  expect_error(qgemm_call({A, s, r.code(DType::kI8), B, s, bz}), Errc::kTypeMismatch);  // a_zp type
  expect_error(qgemm_call({A, s, az, B, s, bz, r.i32({3}, 0, 1)}), Errc::kShapeMismatch);  // C
  expect_error(qgemm_call({A, s, az, B, s, bz, r.f32({4}, 0, 1)}), Errc::kTypeMismatch);
  expect_error(qgemm_call({A, s, az, B, s, bz, std::nullopt, std::nullopt, az}),
               Errc::kInvalidArgument);
  expect_error(qgemm_call({A, s, az, B, s, bz, std::nullopt, scalar_f32(0.0f), az}),
               Errc::kInvalidArgument);
  expect_error(qgemm_call({r.f32({2, 3}, 0, 1), s, az, B, s, bz}), Errc::kTypeMismatch);
}

TEST(Int8GemmOps, QGemmInfersShapeAndType) {
  auto vi = [](std::optional<DType> t, ir::SymShape s) {
    ir::ValueInfo v;
    v.dtype = t;
    v.shape = std::move(s);
    return v;
  };
  const ir::ValueInfo a = vi(DType::kU8, {ir::Dim(7), ir::Dim()}),
                      b = vi(DType::kI8, {ir::Dim(5), ir::Dim(9)});
  const ir::ValueInfo f = vi(DType::kF32, {}), z8 = vi(DType::kI8, {});
  auto infer = [&](std::vector<const ir::ValueInfo*> in, Attrs attrs) {
    Inputs present;
    for (const auto* p : in) present.push_back(p ? std::optional<Tensor>(Tensor()) : std::nullopt);
    const ir::Node node = make_node(kMs, "QGemm", present, std::move(attrs));
    ops::InferContext ctx(node, 1, in, std::vector<const Tensor*>(in.size(), nullptr));
    ops::OpRegistry::global().find(kMs, "QGemm", 1)->infer(ctx);
    return ctx.outputs().at(0);
  };
  ir::ValueInfo y = infer({&a, &f, &z8, &b, &f, &z8}, {});
  EXPECT_EQ(y.dtype, DType::kF32);
  EXPECT_EQ(ir::sym_shape_str(*y.shape), "[7, 9]");
  y = infer({&a, &f, &z8, &b, &f, &z8, nullptr, &f, &z8}, {{"transA", ai(1)}, {"transB", ai(1)}});
  EXPECT_EQ(y.dtype, DType::kI8);
  EXPECT_EQ(y.shape->at(1).size, 5);
  EXPECT_FALSE(y.shape->at(0).known());
}

// ONNX Runtime 1.30's own QGemm outputs (CPU provider, on an AVX-512 VNNI
// machine, where its u8 x s8 products are exact), for inputs and models made
// by scripts/gen_qgemm_golden.js: float and quantized outputs, transA /
// transB, alpha, per-column B, every C shape.
TEST(Int8GemmOps, QGemmMatchesOnnxRuntime) {
  const nlohmann::json j = test::load_json(std::string(QFORGE_GOLDEN_DIR) + "/qgemm_ort.json");
  ASSERT_GE(j.at("cases").size(), 8u);
  for (const auto& c : j.at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    Inputs in;
    for (const auto& t : c.at("inputs")) {
      if (t.is_null()) {
        in.push_back(std::nullopt);
        continue;
      }
      const std::string type = t.at("type");
      const Shape shape = t.at("shape").get<Shape>();
      if (type == "float32") {
        in.push_back(Tensor::from<float>(shape, test::floats(t.at("data"))));
      } else if (type == "int32") {
        in.push_back(Tensor::from<int32_t>(shape, t.at("data").get<std::vector<int32_t>>()));
      } else {
        const auto v = t.at("data").get<std::vector<int32_t>>();
        Tensor x(type == "int8" ? DType::kI8 : DType::kU8, shape);
        for (size_t i = 0; i < v.size(); ++i)
          static_cast<uint8_t*>(x.raw())[i] = static_cast<uint8_t>(v[i]);
        in.push_back(x);
      }
    }
    Attrs at = {{"transA", ai(c.at("transA").get<int64_t>())},
                {"transB", ai(c.at("transB").get<int64_t>())},
                {"alpha", af(c.at("alpha").get<float>())}};
    const OpCall call = qgemm_call(in, at);
    const auto& want = c.at("output");
    for (RefFn fn : {static_cast<RefFn>(nullptr), ops::reference::qgemm}) {
      const Tensor y = fn ? run_reference(call, fn) : run_fast(call, nullptr);
      ASSERT_EQ(y.shape(), want.at("shape").get<Shape>());
      if (want.at("type") == "float32") {
        ASSERT_EQ(y.dtype(), DType::kF32);
        const std::vector<float> w = test::floats(want.at("data"));
        for (size_t i = 0; i < w.size(); ++i)
          ASSERT_EQ(y.data<float>()[i], w[i]) << "element " << i;
      } else {
        ASSERT_EQ(dtype_name(y.dtype()), std::string(want.at("type") == "int8" ? "i8" : "u8"));
        const auto w = want.at("data").get<std::vector<int32_t>>();
        for (size_t i = 0; i < w.size(); ++i)
          ASSERT_EQ(std::stoi(value_at(y, static_cast<int64_t>(i))), w[i]) << "element " << i;
      }
    }
  }
}

}  // namespace
}  // namespace qforge
