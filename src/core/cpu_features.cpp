// CPU feature detection (see include/qforge/cpu.h).
//
// This file is compiled without any -m flags and must run on every CPU of its
// architecture: it only executes CPUID / XGETBV (x86) or reads the auxiliary
// vector (Linux on Arm), never an instruction from the features it probes.
// A feature is reported only when both the CPU has it and the OS saves the
// register state it needs, so a kernel dispatching on these flags can use them.
#include "qforge/cpu.h"

#include <thread>

#if defined(__x86_64__)
#include <cpuid.h>

#include <cstdint>
#include <cstring>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace qforge {
namespace {

#if defined(__x86_64__)

struct CpuidRegs {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

// CPUID(leaf, subleaf); all zero when the leaf is above the CPU's maximum,
// which reads as "no features" below.
CpuidRegs cpuid(uint32_t leaf, uint32_t subleaf) {
  CpuidRegs r;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(leaf, subleaf, &a, &b, &c, &d)) r = {a, b, c, d};
  return r;
}

bool bit(uint32_t reg, int n) { return ((reg >> n) & 1u) != 0; }

// XCR0, the set of register states the OS saves on context switch. Only call
// this when CPUID.1:ECX.OSXSAVE is set, else XGETBV faults. Written as inline
// asm so that the file needs no -mxsave (the assembler accepts the mnemonic
// regardless of the compiler's target flags).
uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0u));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// The 48-byte brand string from leaves 0x80000002..4, with the padding
// spaces and NULs that some vendors add at either end removed.
std::string brand_string() {
  if (cpuid(0x80000000u, 0).eax < 0x80000004u) return {};
  char buf[49] = {};
  for (uint32_t i = 0; i < 3; ++i) {
    const CpuidRegs r = cpuid(0x80000002u + i, 0);
    const uint32_t words[4] = {r.eax, r.ebx, r.ecx, r.edx};
    std::memcpy(buf + 16 * i, words, sizeof(words));
  }
  std::string s(buf);  // stops at the first NUL
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(' ');
  return s.substr(first, last - first + 1);
}

void detect(CpuFeatures& f) {
  f.arch = "x86_64";
  f.model = brand_string();

  const uint32_t max_leaf = cpuid(0, 0).eax;
  const CpuidRegs l1 = cpuid(1, 0);
  const CpuidRegs l7 = max_leaf >= 7 ? cpuid(7, 0) : CpuidRegs{};
  // Subleaf 1 of leaf 7 exists only when CPUID.(7,0):EAX (max subleaf) >= 1.
  const CpuidRegs l7s1 = (max_leaf >= 7 && l7.eax >= 1) ? cpuid(7, 1) : CpuidRegs{};

  // OS support. XCR0 bit 1 = SSE (XMM), 2 = AVX (upper YMM), 5 = opmask,
  // 6 = upper ZMM0-15, 7 = ZMM16-31, 17 = XTILECFG, 18 = XTILEDATA.
  const uint64_t xcr0 = bit(l1.ecx, 27) ? read_xcr0() : 0;  // 27 = OSXSAVE
  const auto xcr0_has = [xcr0](uint64_t mask) { return (xcr0 & mask) == mask; };
  const bool os_avx = xcr0_has((1u << 1) | (1u << 2));
  const bool os_avx512 = os_avx && xcr0_has((1u << 5) | (1u << 6) | (1u << 7));
  const bool os_amx = xcr0_has((1u << 17) | (1u << 18));

  f.sse41 = bit(l1.ecx, 19);

  // AVX class. Dependent flags are also ANDed with their base feature (as the
  // Linux kernel does for /proc/cpuinfo): some hypervisors expose inconsistent
  // CPUID bits, and code that checks only `avx2` must be able to rely on AVX.
  f.avx = os_avx && bit(l1.ecx, 28);
  f.avx2 = f.avx && bit(l7.ebx, 5);
  f.fma = f.avx && bit(l1.ecx, 12);
  f.f16c = f.avx && bit(l1.ecx, 29);
  f.avxvnni = f.avx && bit(l7s1.eax, 4);

  // AVX-512 class.
  f.avx512f = os_avx512 && f.avx && bit(l7.ebx, 16);
  f.avx512dq = f.avx512f && bit(l7.ebx, 17);
  f.avx512bw = f.avx512f && bit(l7.ebx, 30);
  f.avx512vl = f.avx512f && bit(l7.ebx, 31);
  f.avx512vnni = f.avx512f && bit(l7.ecx, 11);
  f.avx512bf16 = f.avx512f && bit(l7s1.eax, 5);

  // AMX. On Linux a process must still request permission for the tile data
  // state (arch_prctl(ARCH_REQ_XCOMP_PERM)) before executing AMX instructions;
  // that is the AMX kernels' job, this only says the hardware and OS have it.
  f.amx_tile = os_amx && bit(l7.edx, 24);
  f.amx_int8 = f.amx_tile && bit(l7.edx, 25);
  f.amx_bf16 = f.amx_tile && bit(l7.edx, 22);
}

#elif defined(__aarch64__)

#if defined(__linux__)
// Bit values from the kernel's arch/arm64/include/uapi/asm/hwcap.h, for libc
// headers too old to define them.
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1UL << 13)
#endif
#endif

void detect(CpuFeatures& f) {
  f.arch = "aarch64";
#if defined(__linux__)
  const unsigned long hwcap = getauxval(AT_HWCAP);
  const unsigned long hwcap2 = getauxval(AT_HWCAP2);
  f.neon = (hwcap & HWCAP_ASIMD) != 0;
  f.dotprod = f.neon && (hwcap & HWCAP_ASIMDDP) != 0;
  f.i8mm = f.neon && (hwcap2 & HWCAP2_I8MM) != 0;
#else
  // Advanced SIMD is mandatory in the AArch64 ABIs qforge targets; the
  // optional extensions stay off where there is no portable way to ask.
  f.neon = true;
#endif
}

#else

void detect(CpuFeatures& f) { f.arch = "other"; }

#endif

CpuFeatures detect_all() {
  CpuFeatures f;
  detect(f);
  const unsigned hc = std::thread::hardware_concurrency();  // 0 = unknown
  f.logical_cores = hc == 0 ? 1 : static_cast<int>(hc);
  return f;
}

}  // namespace

std::vector<std::pair<std::string, bool>> CpuFeatures::list() const {
  if (arch == "x86_64") {
    return {{"sse4.1", sse41},         {"avx", avx},
            {"avx2", avx2},            {"fma", fma},
            {"f16c", f16c},            {"avx512f", avx512f},
            {"avx512bw", avx512bw},    {"avx512vl", avx512vl},
            {"avx512dq", avx512dq},    {"avx512vnni", avx512vnni},
            {"avxvnni", avxvnni},      {"avx512bf16", avx512bf16},
            {"amx-tile", amx_tile},    {"amx-int8", amx_int8},
            {"amx-bf16", amx_bf16}};
  }
  if (arch == "aarch64") return {{"neon", neon}, {"dotprod", dotprod}, {"i8mm", i8mm}};
  return {};
}

const CpuFeatures& cpu_features() {
  // A function-local static: initialised once, thread-safely, on first use.
  static const CpuFeatures features = detect_all();
  return features;
}

}  // namespace qforge
