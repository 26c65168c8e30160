// Kernel tables: for each operation, the implementation this CPU will use,
// chosen once (at first use) from the detected features, and overridable with
// the environment variable QFORGE_ISA=ref|avx2|avxvnni|avx512 (x86-64) or
// QFORGE_ISA=ref|neon|dotprod (AArch64) so one machine can test every path.
// avxvnni is avx2 with the int8 GEMM on AVX-VNNI's 256-bit vpdpbusd (CPUs
// with AVX-VNNI but no AVX-512 choose it); avx2 itself never uses VNNI, so
// that its int8 GEMM (vpmaddubsw where the weights allow, else vpmaddwd) can
// be tested on any CPU. Every SIMD kernel has a scalar reference (kernels/ref) and is
// tested against it bit for bit.
//
// Kernel names spell their contract: input type, output type, operation,
// then the ISA after a double underscore: f32_qu8_quantize__avx2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qforge/cpu.h"

// Loops left to the compiler's vectoriser, compiled for x86-64-v4 (AVX-512)
// and v3 (AVX2) as well as the baseline, picked at load time (GCC function
// multiversioning). Integer loops give the same results on every ISA; a
// float loop may have its multiply and add fused (FMA) on the wider ones.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QFORGE_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QFORGE_ISA_CLONES
#endif

namespace qforge::kernels {

// In order of preference within an architecture: x86-64 has avx2, avxvnni
// and avx512, AArch64 neon (Advanced SIMD) and dotprod (NEON plus the
// Armv8.2 dot product instructions, getauxval's asimddp).
enum class Isa { kRef, kAvx2, kAvxVnni, kAvx512, kNeon, kDotprod };
const char* isa_name(Isa isa);
// The CPU features an ISA needs, in words (the message of a refusal).
const char* isa_features(Isa isa);

// y[i] = saturate(round_half_even(x[i] / scale) + zp) into [qmin, qmax], for
// u8 or i8 output. NaN gives qmin.
using QuantizeU8Fn = void (*)(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                              int32_t qmax, uint8_t* y);
using QuantizeI8Fn = void (*)(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                              int32_t qmax, int8_t* y);
// y[i] = (x[i] - zp) * scale.
using DequantizeU8Fn = void (*)(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y);
using DequantizeI8Fn = void (*)(const int8_t* x, int64_t n, float scale, int32_t zp, float* y);
// The range of x[0, n) (n >= 1) into *lo, *hi; false (and *lo, *hi
// unspecified) if some x[i] is NaN or infinite. Exact: min and max don't round.
using MinMaxF32Fn = bool (*)(const float* x, int64_t n, float* lo, float* hi);

// The int8 GEMM microkernel and its tile (kernels/qgemm.h).
struct QGemmKernel;

struct KernelTable {
  Isa isa = Isa::kRef;
  std::string reason;  // why this ISA: detected features, or the override
  QuantizeU8Fn quantize_u8 = nullptr;
  QuantizeI8Fn quantize_i8 = nullptr;
  DequantizeU8Fn dequantize_u8 = nullptr;
  DequantizeI8Fn dequantize_i8 = nullptr;
  MinMaxF32Fn minmax_f32 = nullptr;
  const QGemmKernel* qgemm = nullptr;
  // "operation: kernel name" lines, for `qforge doctor`.
  std::vector<std::pair<std::string, std::string>> names;
};

// The table for this process (QFORGE_ISA honoured; an ISA the CPU lacks is
// refused with an Error that names the missing feature).
const KernelTable& kernels();
// The table for a given ISA; throws Error if a CPU with features `cpu`
// can't run it (the features are a parameter so tests can pose as any CPU).
KernelTable kernels_for(Isa isa, const CpuFeatures& cpu = cpu_features());
// ISAs a CPU with these features can run, best last.
std::vector<Isa> available_isas(const CpuFeatures& cpu = cpu_features());
Isa parse_isa(const std::string& name);
// The ISA whose kernels an ISA uses for everything but the int8 GEMM (float
// GEMM, quantize, ops): itself, except avxvnni: avx2.
Isa base_isa(Isa isa);
// The int8 GEMM kernel of an ISA on a CPU with these features: avxvnni uses
// AVX-VNNI; AVX-512 uses AVX512_VNNI (vpdpbusd) where the CPU has it, else
// AVX-VNNI, else AVX2's; avx2 uses vpmaddubsw where the packed weights
// can't saturate it, else vpmaddwd; dotprod uses udot (qgemm.h, qgemm.cpp).
const QGemmKernel* qgemm_kernel_for(Isa isa, const CpuFeatures& cpu);

// Reference kernels, always present.
void f32_qu8_quantize__ref(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                           int32_t qmax, uint8_t* y);
void f32_qs8_quantize__ref(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                           int32_t qmax, int8_t* y);
void qu8_f32_dequantize__ref(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y);
void qs8_f32_dequantize__ref(const int8_t* x, int64_t n, float scale, int32_t zp, float* y);
bool f32_minmax__ref(const float* x, int64_t n, float* lo, float* hi);

#if defined(__x86_64__)
void f32_qu8_quantize__avx2(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                            int32_t qmax, uint8_t* y);
void f32_qs8_quantize__avx2(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                            int32_t qmax, int8_t* y);
void qu8_f32_dequantize__avx2(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y);
void qs8_f32_dequantize__avx2(const int8_t* x, int64_t n, float scale, int32_t zp, float* y);
bool f32_minmax__avx2(const float* x, int64_t n, float* lo, float* hi);
void f32_qu8_quantize__avx512(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                              int32_t qmax, uint8_t* y);
void f32_qs8_quantize__avx512(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                              int32_t qmax, int8_t* y);
void qu8_f32_dequantize__avx512(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y);
void qs8_f32_dequantize__avx512(const int8_t* x, int64_t n, float scale, int32_t zp, float* y);
bool f32_minmax__avx512(const float* x, int64_t n, float* lo, float* hi);
#endif

#if defined(__aarch64__)
// Used by both AArch64 ISAs: dotprod adds nothing to quantize / dequantize.
void f32_qu8_quantize__neon(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                            int32_t qmax, uint8_t* y);
void f32_qs8_quantize__neon(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin,
                            int32_t qmax, int8_t* y);
void qu8_f32_dequantize__neon(const uint8_t* x, int64_t n, float scale, int32_t zp, float* y);
void qs8_f32_dequantize__neon(const int8_t* x, int64_t n, float scale, int32_t zp, float* y);
#endif

}  // namespace qforge::kernels
