// This machine's peak int8 dot-product and fp32 FMA throughput per core (the
// AVX-512 ones also on 2 threads, to see whether the cores share units),
// and its read bandwidth (the bound of an int8 GEMM at M = 1):
//   ./build-bench/bench/qforge_bench --benchmark_filter=Peak
// Each benchmark runs a long unrolled loop of one instruction on 14
// independent register accumulators (enough to cover its latency: 4-5
// cycles x 2 pipes), so only the issue rate bounds it. The "GOPS" counter counts 2 operations per multiply-add:
//   vpdpbusd zmm   64 u8 x s8 products summed into 16 int32 lanes = 128 ops
//   vpdpbusd ymm   (AVX-VNNI, VEX encoded)                        =  64 ops
//   vfmadd   zmm   16 fp32 lanes x 2                              =  32 ops
//   vfmadd   ymm    8 fp32 lanes x 2                              =  16 ops
// The kernels carry their own target attribute, so the rest of the binary
// keeps the baseline ISA; a CPU without the feature skips with an error.
// scripts/bench_int8.sh divides the int8 GEMM's GOPS by these figures.
#include <benchmark/benchmark.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

constexpr int64_t kLoops = 1 << 14;  // 14 instructions each: 229k instructions per call
// Accumulators (QF_X14): 14 + the two operands fill the 16 registers AVX2
// has, and cover latency x pipes (4-5 cycles x 2) on current cores.
constexpr int kChains = 14;

// Keeps the compiler from proving anything about a vector (no folding, no
// merging of equal accumulators).
template <typename V>
inline void opaque(V& v) {
  asm volatile("" : "+v"(v));
}

// The instructions, in inline asm: with the intrinsics g++ 12 adds a
// register copy per vpdpbusd (its destructive operand), which halves the
// measured rate. Overloaded on the vector type, so that QF_PEAK_FN can name
// them. VEX-encoded forms need registers 0-15 ("x"); EVEX ones may use all 32 ("v").
#define QF_ASM_OP(attr, V, insn, reg)                                  \
  __attribute__((target(attr))) inline V peak_op(V acc, V a, V b) {   \
    asm(insn " %2, %1, %0" : "+" reg(acc) : reg(a), reg(b));          \
    return acc;                                                       \
  }
QF_ASM_OP("avx512f,avx512vnni", __m512i, "vpdpbusd", "v")
QF_ASM_OP("avx2,avxvnni", __m256i, "%{vex%} vpdpbusd", "x")
QF_ASM_OP("avx512f", __m512, "vfmadd231ps", "v")
QF_ASM_OP("avx2,fma", __m256, "vfmadd231ps", "x")
#undef QF_ASM_OP

// Defines `T name()`, which runs peak_op on 14 independent accumulators
// (named variables, so that they stay in registers; an array gets spilled)
// kLoops times and returns one lane of a fold of them (a scalar: a vector
// return would change the ABI), so none is dead.
#define QF_X14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define QF_DECL(i)   \
  auto c##i = init; \
  opaque(c##i);
#define QF_STEP(i) c##i = peak_op(c##i, a, b);
#define QF_FOLD(i) sum = peak_op(sum, c##i, b);
#define QF_PEAK_FN(name, attr, V, T, init_acc, init_a, init_b, lane0) \
  __attribute__((target(attr))) T name() {                           \
    const V init = init_acc;                                         \
    V a = init_a, b = init_b;                                        \
    opaque(a);                                                       \
    opaque(b);                                                       \
    QF_X14(QF_DECL)                                                  \
    for (int64_t i = 0; i < kLoops; ++i) {                           \
      QF_X14(QF_STEP)                                                \
    }                                                                \
    V sum = init;                                                    \
    QF_X14(QF_FOLD)                                                  \
    return lane0(sum);                                               \
  }
QF_PEAK_FN(dot_zmm, "avx512f,avx512vnni", __m512i, int, _mm512_setzero_si512(),
           _mm512_set1_epi8(1), _mm512_set1_epi8(-1), _mm512_cvtsi512_si32)
QF_PEAK_FN(dot_ymm, "avx2,avxvnni", __m256i, int, _mm256_setzero_si256(), _mm256_set1_epi8(1),
           _mm256_set1_epi8(-1), _mm256_cvtsi256_si32)
// acc = acc * 1 + 0 stays at 1.0: no overflow, no denormals.
QF_PEAK_FN(fma_zmm, "avx512f", __m512, float, _mm512_set1_ps(1.0f), _mm512_set1_ps(1.0f),
           _mm512_setzero_ps(), _mm512_cvtss_f32)
QF_PEAK_FN(fma_ymm, "avx2,fma", __m256, float, _mm256_set1_ps(1.0f), _mm256_set1_ps(1.0f),
           _mm256_setzero_ps(), _mm256_cvtss_f32)
#undef QF_PEAK_FN
#undef QF_DECL
#undef QF_STEP
#undef QF_FOLD
#undef QF_X14

// ops_per_instruction: see the table at the top.
template <typename F>
void peak(benchmark::State& state, bool supported, F kernel, double ops_per_instruction) {
  if (!supported) {
    state.SkipWithError("this CPU lacks the instruction");
    return;
  }
  for (auto _ : state) {
    auto r = kernel();
    benchmark::DoNotOptimize(r);
  }
  state.counters["GOPS"] = benchmark::Counter(
      1e-9 * ops_per_instruction * kChains * kLoops * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

void BM_PeakInt8Dot(benchmark::State& state) {
  __builtin_cpu_init();
  peak(state, __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512f"), dot_zmm,
       128);
  state.SetLabel("vpdpbusd zmm");
}
void BM_PeakInt8DotAvxVnni(benchmark::State& state) {
  __builtin_cpu_init();
  peak(state, __builtin_cpu_supports("avxvnni") && __builtin_cpu_supports("avx2"), dot_ymm, 64);
  state.SetLabel("vpdpbusd ymm (AVX-VNNI)");
}
void BM_PeakFp32Fma(benchmark::State& state) {
  __builtin_cpu_init();
  peak(state, __builtin_cpu_supports("avx512f"), fma_zmm, 32);
  state.SetLabel("vfmadd zmm");
}
void BM_PeakFp32FmaAvx2(benchmark::State& state) {
  __builtin_cpu_init();
  peak(state, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), fma_ymm, 16);
  state.SetLabel("vfmadd ymm");
}

// Read bandwidth: the bound of an int8 GEMM at M = 1, which reads each byte
// of the packed B once per call and makes 2 operations of it (one
// multiply-add), so no kernel can pass 2 x this many GB/s in GOPS. The
// buffer is 1 x 4096 x 4096's B (16 MiB: past L2, within this machine's
// L3, as B is in the GEMM benchmark, which reads it on every call), summed
// 128 bytes at a time into 4 independent accumulators; on two threads each
// reads half, as the GEMM's threads read half of B's columns each.
constexpr size_t kReadBytes = size_t{16} << 20;

__attribute__((target("avx2"))) int64_t read_sum(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  return _mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 3);
}

void BM_PeakReadBandwidth(benchmark::State& state) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2")) {
    state.SkipWithError("this CPU lacks AVX2");
    return;
  }
  static const uint8_t* const buf = [] {  // every thread's, for the process's life
    auto* b = static_cast<uint8_t*>(std::aligned_alloc(64, kReadBytes));
    if (b != nullptr) std::memset(b, 1, kReadBytes);
    return b;
  }();
  if (buf == nullptr) {
    state.SkipWithError("no memory for the buffer");
    return;
  }
  const size_t part = kReadBytes / static_cast<size_t>(state.threads());
  const uint8_t* p = buf + part * static_cast<size_t>(state.thread_index());
  for (auto _ : state) benchmark::DoNotOptimize(read_sum(p, part));
  state.counters["GBps"] = benchmark::Counter(1e-9 * static_cast<double>(part * state.iterations()),
                                              benchmark::Counter::kIsRate);
  state.SetLabel("16 MiB, 32-byte loads");
}

// One thread: rates over the thread's CPU time, so that other processes
// taking the core now and then don't lower the peak. Two threads: over
// wall-clock time (CPU time would be per thread), so a loaded machine shows.
BENCHMARK(BM_PeakInt8Dot);
BENCHMARK(BM_PeakInt8Dot)->Threads(2)->UseRealTime();
BENCHMARK(BM_PeakInt8DotAvxVnni);
BENCHMARK(BM_PeakFp32Fma);
BENCHMARK(BM_PeakFp32Fma)->Threads(2)->UseRealTime();
BENCHMARK(BM_PeakFp32FmaAvx2);
BENCHMARK(BM_PeakReadBandwidth);
BENCHMARK(BM_PeakReadBandwidth)->Threads(2)->UseRealTime();

}  // namespace

#endif  // x86-64
