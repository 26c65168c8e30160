// Chooses kernels once from the CPU's features (see kernels.h).
#include <cstdlib>

#include "kernels/kernels.h"
#include "kernels/qgemm.h"
#include "qforge/cpu.h"
#include "qforge/error.h"

namespace qforge::kernels {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kRef: return "ref";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvxVnni: return "avxvnni";
    case Isa::kAvx512: return "avx512";
    case Isa::kNeon: return "neon";
    case Isa::kDotprod: return "dotprod";
  }
  return "?";
}

const char* isa_features(Isa isa) {
  switch (isa) {
    case Isa::kRef: return "nothing";
    case Isa::kAvx2: return "AVX2, FMA and F16C";
    case Isa::kAvxVnni: return "AVX2, FMA, F16C and AVX-VNNI";
    case Isa::kAvx512: return "AVX-512 F, BW, VL and DQ";
    case Isa::kNeon: return "AArch64 NEON (asimd)";
    case Isa::kDotprod: return "AArch64 NEON with the dot product instructions (asimddp)";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  for (Isa i : {Isa::kRef, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kNeon, Isa::kDotprod})
    if (name == isa_name(i)) return i;
  throw Error(Errc::kInvalidArgument, "QFORGE_ISA='" + name + "'", "is not a known ISA",
              "ref, avx2, avxvnni, avx512 (x86-64), neon or dotprod (AArch64)");
}

Isa base_isa(Isa isa) {
  if (isa == Isa::kAvxVnni) return Isa::kAvx2;
  if (isa == Isa::kDotprod) return Isa::kNeon;  // NEON quantize / dequantize
  return isa;
}

std::vector<Isa> available_isas(const CpuFeatures& f) {
  std::vector<Isa> r{Isa::kRef};
#if defined(__x86_64__)
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (avx2) r.push_back(Isa::kAvx2);
  if (avx2 && f.avxvnni) r.push_back(Isa::kAvxVnni);
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) r.push_back(Isa::kAvx512);
#elif defined(__aarch64__)
  if (f.neon) r.push_back(Isa::kNeon);
  if (f.neon && f.dotprod) r.push_back(Isa::kDotprod);
#else
  (void)f;  // no SIMD kernels for this architecture yet
#endif
  return r;
}

KernelTable kernels_for(Isa isa, const CpuFeatures& cpu) {
  bool ok = false;
  for (Isa a : available_isas(cpu)) ok = ok || a == isa;
  check(ok, Errc::kUnsupported, std::string("ISA ") + isa_name(isa),
        "is not supported by this CPU (" + (cpu.model.empty() ? cpu.arch : cpu.model) + ")",
        isa_features(isa));
  KernelTable t;
  t.isa = isa;
  // Step by step, as MLAS's platform object: start from the references and
  // replace each entry as the ISA allows.
  t.quantize_u8 = f32_qu8_quantize__ref;
  t.quantize_i8 = f32_qs8_quantize__ref;
  t.dequantize_u8 = qu8_f32_dequantize__ref;
  t.dequantize_i8 = qs8_f32_dequantize__ref;
  t.minmax_f32 = f32_minmax__ref;  // AArch64 too: no NEON version yet
  const Isa ew = base_isa(isa);
#if defined(__x86_64__)
  if (ew == Isa::kAvx2) {
    t.quantize_u8 = f32_qu8_quantize__avx2;
    t.quantize_i8 = f32_qs8_quantize__avx2;
    t.dequantize_u8 = qu8_f32_dequantize__avx2;
    t.dequantize_i8 = qs8_f32_dequantize__avx2;
    t.minmax_f32 = f32_minmax__avx2;
  } else if (ew == Isa::kAvx512) {
    t.quantize_u8 = f32_qu8_quantize__avx512;
    t.quantize_i8 = f32_qs8_quantize__avx512;
    t.dequantize_u8 = qu8_f32_dequantize__avx512;
    t.dequantize_i8 = qs8_f32_dequantize__avx512;
    t.minmax_f32 = f32_minmax__avx512;
  }
#elif defined(__aarch64__)
  if (ew == Isa::kNeon) {
    t.quantize_u8 = f32_qu8_quantize__neon;
    t.quantize_i8 = f32_qs8_quantize__neon;
    t.dequantize_u8 = qu8_f32_dequantize__neon;
    t.dequantize_i8 = qs8_f32_dequantize__neon;
  }
#endif
  t.qgemm = qgemm_kernel_for(isa, cpu);
  const std::string suffix = std::string("__") + isa_name(ew);
  std::string gemm = t.qgemm->name;
  if (t.qgemm->exact != nullptr)
    gemm += std::string(" (") + t.qgemm->exact->name + " where weight pairs could saturate int16)";
  t.names = {{"quantize f32->u8 (per tensor)", "f32_qu8_quantize" + suffix},
             {"quantize f32->i8 (per tensor)", "f32_qs8_quantize" + suffix},
             {"dequantize u8->f32 (per tensor)", "qu8_f32_dequantize" + suffix},
             {"dequantize i8->f32 (per tensor)", "qs8_f32_dequantize" + suffix},
             {"int8 GEMM (u8/s8 x s8/u8 -> s32)", gemm},
             {"range of f32 (per tensor)",
              std::string("f32_minmax__") + isa_name(ew == Isa::kNeon ? Isa::kRef : ew)}};
  return t;
}

const KernelTable& kernels() {
  static const KernelTable table = [] {
    const char* env = std::getenv("QFORGE_ISA");
    if (env && *env) {
      KernelTable t = kernels_for(parse_isa(env));
      t.reason = std::string("QFORGE_ISA=") + env;
      return t;
    }
    KernelTable t = kernels_for(available_isas().back());
    t.reason = "best ISA this CPU supports";
    return t;
  }();
  return table;
}

}  // namespace qforge::kernels
