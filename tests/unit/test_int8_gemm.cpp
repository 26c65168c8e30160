// The int8 GEMM (kernels/qgemm.h): every microkernel this CPU can run (the
// scalar reference, AVX2 vpmaddwd and vpmaddubsw, AVX-VNNI, AVX-512 VNNI,
// Arm NEON and dotprod; missing ISAs are skipped at run time) against a
// naive oracle written here from the contract in qgemm.h (exact int64 sums
// of (A - a_zp)(B - b_zp), wrapped to int32, then each epilogue's formula),
// and against the reference kernel bit for bit: all four signedness pairs
// (u8 x s8, s8 x s8, u8 x u8, s8 x u8); M, N, K below, at and past every
// tile edge (K not a multiple of 4 or of the vector width, M = 1, N = 1,
// K = 0); padded lda / ldc with guard values that must survive; adversarial
// operands (255 x -128, -128 x 127, zero points at the ends of their range),
// the int32 edge (K = 33025 with the largest deviations: exact; beyond: the
// wrap the contract promises); every pair of byte values exhaustively;
// threads; and s8 weights of 7 bits (where vpmaddubsw runs itself rather
// than its exact stand-in). Random inputs are seeded so failures replay.
//
// vpmaddubsw saturation: the pair bound of qgemm.h over all 65536 weight
// pairs (sufficient and tight, and qpack_b's flag agrees), and adversarial
// weights that would saturate it, taken through the dispatch exactly while
// the kernel without its check is shown to be wrong on them.
//
// Only the kernel layer: this file is part of the kernel-only (Arm cross)
// test build; the integer ops on top are in test_int8_gemm_ops.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/qgemm.h"
#include "qforge/error.h"
#include "qforge/quant.h"
#include "qforge/thread_pool.h"

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
  bool a_rows_padded = false;  // QGemmArgs::a_rows_padded
  std::vector<int64_t> col_parts;  // QGemmArgs::col_parts (boundaries), or none

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
  // C 64-byte aligned, as a tensor's storage is (where the driver may then
  // use non-temporal stores, QGemmTile::stream).
  const size_t bytes = static_cast<size_t>(p.M * p.ldc) * p.elem();
  std::vector<uint8_t> buf(bytes + 64, guard);
  uint8_t* c = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
  QGemmArgs a;
  a.M = p.M;
  a.A = p.A.data();
  a.lda = p.lda;
  a.a_signed = p.a_signed;
  a.a_zp = p.a_zp;
  a.a_rows_padded = p.a_rows_padded;
  a.B = &pb;
  a.b_zp = p.b_zp.data();
  a.out = p.out;
  a.bias = p.bias.empty() ? nullptr : p.bias.data();
  a.bias_ld = p.bias_ld;
  a.scale = p.scale.empty() ? nullptr : p.scale.data();
  a.fbias = p.fbias.empty() ? nullptr : p.fbias.data();
  a.y_zp = p.y_zp;
  a.y_signed = p.y_signed;
  a.C = c;
  a.ldc = p.ldc;
  a.cold_c = true;
  if (!p.col_parts.empty()) {
    a.col_parts = p.col_parts.data();
    a.col_part_count = static_cast<int>(p.col_parts.size()) - 1;
  }
  kernels::qgemm_with(kr, a, pool);
  return std::vector<uint8_t>(c, c + bytes);
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

// kQ8Double is the float64 product rounded; a kernel may compute it in
// float32 where that gives the same integers (qgemm_avx512vnni.cpp) but must
// not where it does not. A is 0, so each sum is its bias (M x N), and the
// test's oracle is the contract's float64 formula. Columns 0-3: multiplier
// 0.1f (a little above 0.1) on odd multiples of 5, whose products lie just
// past a half-integer (5 * 0.1f = 0.50000000745...) and round away from it,
// where the float32 product is the half-integer itself and would round to
// even. Column 4: 16777219 (past float32's 2^24, where it becomes 16777220)
// times the float32 4.470347505503014e-07: the product 7.49999991 rounds to
// 7, while the float32 one, 7.50000048, is no half-integer and rounds to 8.
// Column 5: exact ties (multiplier 0.5 on odd sums), to even.
TEST_P(QGemmKernels, Q8DoubleNearHalfIntegersAndPastFloat32) {
  const QGemmKernel& kr = *GetParam();
  float past24 = 0.0f;
  const uint32_t past24_bits = 888143869u;  // 4.470347505503014e-07
  std::memcpy(&past24, &past24_bits, 4);
  const float col_scale[6] = {0.1f, 0.1f, 0.1f, 0.1f, past24, 0.5f};
  for (const bool y_signed : {false, true}) {
    Problem p = random_problem(8, 6, 4, false, true, QOutput::kQ8Double, 9);
    std::fill(p.A.begin(), p.A.end(), uint8_t{0});
    p.a_zp = 0;
    p.bias_ld = p.N;
    p.bias.assign(static_cast<size_t>(p.M * p.N), 0);
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t n = 0; n < p.N; ++n) {
        const auto i = static_cast<int32_t>(m * p.N + n);
        int32_t& b = p.bias[static_cast<size_t>(m * p.N + n)];
        // Even rows: the near and exact half-integers; odd rows: only
        // column 4's (a vector with both would be redone for either).
        const bool odd = m % 2 == 1;
        if (n < 4) b = odd ? 0 : (2 * i + 1) * 5 * (i % 3 == 1 ? -1 : 1);
        else if (n == 4) b = odd ? 16777219 : 0;
        else b = (odd ? 2 * i : 2 * i + 1) - 2 * static_cast<int32_t>(p.M);
      }
    p.scale.assign(col_scale, col_scale + 6);
    p.y_signed = y_signed;
    p.y_zp = y_signed ? -100 : 0;
    const auto want = oracle(p, kGuard);
    ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard), want)) << kr.name;
    // The oracle itself: 5 * 0.1f rounds up to 1, 16777219 * past24 to 7.
    auto code = [&](int64_t m, int64_t n) {
      const uint8_t c = want[static_cast<size_t>(m * p.ldc + n)];
      return y_signed ? int32_t{static_cast<int8_t>(c)} : int32_t{c};
    };
    EXPECT_EQ(code(0, 0), 1 + p.y_zp);
    EXPECT_EQ(code(1, 4), 7 + p.y_zp);
  }
}

// Any split over threads gives the same bytes as one thread: over N, and
// over M where u8 A is read in place (K a multiple of 4: 130 x 97 x 64,
// 96 x 300 x 256, split into bands of rows).
TEST_P(QGemmKernels, ThreadsDoNotChangeResults) {
  const QGemmKernel& kr = *GetParam();
  ThreadPool pool(3);
  uint32_t seed = 100;
  for (const auto& [M, N, K] : std::vector<std::array<int64_t, 3>>{
           {1, 768, 300}, {64, 200, 129}, {130, 97, 64}, {96, 300, 256}})
    for (const QOutput out : {QOutput::kS32, QOutput::kQ8Double, QOutput::kF32}) {
      const Problem p = random_problem(M, N, K, seed % 2 == 0, true, out, seed);
      ++seed;
      ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard, &pool), oracle(p, kGuard))) << kr.name;
    }
}

// Columns split by parts (QGemmArgs::col_parts: attention's q, k and v,
// each by heads over the threads) give the bytes of one thread: parts of
// whole panels, a part narrower than a panel per thread (a thread's share
// empty), a last part ending inside a panel, and a boundary inside a panel
// (the parts ignored); 2 and 3 threads.
TEST_P(QGemmKernels, ColumnPartsDoNotChangeResults) {
  const QGemmKernel& kr = *GetParam();
  const int64_t nr = kr.nr;
  ThreadPool two(2), three(3);
  uint32_t seed = 1900;
  for (const std::vector<int64_t>& parts :
       std::vector<std::vector<int64_t>>{{0, 8 * nr, 16 * nr, 24 * nr},
                                         {0, nr, 3 * nr, 10 * nr},
                                         {0, 8 * nr, 8 * nr + 5},
                                         {0, 3, 70}})
    for (const QOutput out : {QOutput::kS32, QOutput::kQ8Double, QOutput::kF32}) {
      Problem p = random_problem(64, parts.back(), 256, seed % 2 == 0, true, out, seed);
      ++seed;
      p.col_parts = parts;
      const auto want = oracle(p, kGuard);
      ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard, &two), want)) << kr.name << " 2 threads";
      ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard, &three), want)) << kr.name << " 3 threads";
    }
}

// C's rows 4 KiB apart (ldc * element size a multiple of 4096): the driver
// sweeps the column panels over blocks of rows instead of whole chunks;
// row counts past a block with tails, one thread and several.
TEST_P(QGemmKernels, RowsFourKiBApartOverRowBlocks) {
  const QGemmKernel& kr = *GetParam();
  ThreadPool pool(2);
  const QOutput outs[] = {QOutput::kS32, QOutput::kQ8Double, QOutput::kQ8Float, QOutput::kF32};
  uint32_t seed = 1300;
  for (const int64_t M : {7, 17, 37, 130})
    for (const int64_t N : {1, 33, 70})
      for (const int64_t K : {4, 65, 256}) {
        Problem p = random_problem(M, N, K, seed % 3 == 0, true, outs[seed % 4], seed);
        ++seed;
        p.ldc = 4096 / static_cast<int64_t>(p.elem());
        const auto want = oracle(p, kGuard);
        ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard), want)) << kr.name << " " << describe(p);
        ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard, &pool), want)) << kr.name << " threads";
      }
}

// A C of 4-byte elements past 1 MiB with ldc a multiple of 16 goes out by
// non-temporal stores where the kernel takes the hint (AVX-512), whole
// vectors only: N a multiple of 16 and not (the last panel's masked stores
// beside them), ldc that allows them and one that doesn't; one thread and
// two.
TEST_P(QGemmKernels, LargeCOverNonTemporalStores) {
  const QGemmKernel& kr = *GetParam();
  ThreadPool pool(2);
  uint32_t seed = 1700;
  for (const auto& [N, ldc] : std::vector<std::array<int64_t, 2>>{{512, 512}, {500, 512}, {512, 515}})
    for (const QOutput out : {QOutput::kS32, QOutput::kF32}) {
      Problem p = random_problem(530, N, 68, seed % 2 == 0, true, out, seed);
      ++seed;
      p.ldc = ldc;
      const auto want = oracle(p, kGuard);
      ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard), want)) << kr.name;
      ASSERT_TRUE(same_c(p, run_kernel(kr, p, kGuard, &pool), want)) << kr.name << " threads";
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

// u8 A read in place: rows padded with zeros to K rounded up to 4
// (a_rows_padded; the bytes past that, up to lda, anything) and K a multiple
// of 4; weights without zero points (the driver then passes zero row sums
// to kernels that only multiply them by -b_zp') and with them, per tensor
// and per column.
TEST_P(QGemmKernels, InPlaceAAndSymmetricWeights) {
  const QGemmKernel& kr = *GetParam();
  const QOutput outs[] = {QOutput::kS32, QOutput::kQ8Double, QOutput::kQ8Float, QOutput::kF32};
  uint32_t seed = 900;
  for (const int64_t M : {1, 5, 9, 300})
    for (const int64_t N : {1, 16, 33})
      for (const int64_t K : {1, 3, 5, 9, 12, 17, 64, 259})
        for (int zp_case = 0; zp_case < 3; ++zp_case) {
          Problem p = random_problem(M, N, K, false, true, outs[seed % 4], seed);
          ++seed;
          const int64_t kp = (K + 3) / 4 * 4;
          if (K % 4 != 0 || zp_case == 1) {
            p.a_rows_padded = true;
            p.lda = kp + static_cast<int64_t>(seed % 3);
            p.A.assign(static_cast<size_t>(M * p.lda), 0);
            std::mt19937 rng(seed);
            for (int64_t m = 0; m < M; ++m)
              for (int64_t k = 0; k < p.lda; ++k)
                if (k < K || k >= kp) p.A[static_cast<size_t>(m * p.lda + k)] = static_cast<uint8_t>(rng());
          }
          if (zp_case < 2) std::fill(p.b_zp.begin(), p.b_zp.end(), 0);
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
  if (has(kernels::Isa::kNeon)) {
    EXPECT_STREQ(kernels::kernels_for(kernels::Isa::kNeon).qgemm->name,
                 "qu8_qs8_gemm_3x16c4__neon");
  }
  if (has(kernels::Isa::kDotprod)) {
    EXPECT_STREQ(kernels::kernels_for(kernels::Isa::kDotprod).qgemm->name,
                 "qu8_qs8_gemm_4x16c4__neondot");
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
  // The column that deviates most decides, wherever it is.
  for (const std::vector<int32_t>& zp : {std::vector<int32_t>{0, 127, 0}, std::vector<int32_t>{0, -128, 3}}) {
    EXPECT_TRUE(kernels::exact_in_int32(33025, false, 0, true, zp.data(), 3));
    EXPECT_FALSE(kernels::exact_in_int32(33026, false, 0, true, zp.data(), 3));
  }
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
  x = a;
  x.a_signed = true;
  x.a_rows_padded = true;
  expect_bad(x, "a_rows_padded with s8 A");
  const QPackedB pb3 = kernels::qpack_b(true, false, 3, 4, B.data(), 4);
  x = a;
  x.B = &pb3;
  x.lda = 3;
  x.a_rows_padded = true;
  expect_bad(x, "a_rows_padded with lda 3 < kp 4");
  // One column's zero point out of range, in the middle, either side.
  for (int32_t bad : {128, -129}) {
    const std::vector<int32_t> zp_mid = {0, 5, bad, -3};
    x = a;
    x.b_zp = zp_mid.data();
    expect_bad(x, "an s8 zero point of B out of range in column 2");
  }
  EXPECT_THROW(kernels::qpack_b(true, false, -1, 4, B.data(), 4), Error);
  EXPECT_THROW(kernels::qpack_b(true, false, 4, 4, B.data(), 3), Error);
}

}  // namespace
}  // namespace qforge
