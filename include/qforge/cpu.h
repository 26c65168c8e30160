// CPU feature detection, done once at first use. On x86 it reads CPUID and
// checks with XGETBV that the OS saves the AVX / AVX-512 / AMX register
// state; on Arm (Linux) it reads the auxiliary vector (getauxval).
#pragma once

#include <string>
#include <vector>

namespace qforge {

struct CpuFeatures {
  std::string arch;   // "x86_64", "aarch64", or "other"
  std::string model;  // brand string where the CPU reports one, else ""
  int logical_cores = 1;
  // x86
  bool sse41 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avxvnni = false, avx512bf16 = false;
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
  // Arm
  bool neon = false, dotprod = false, i8mm = false;

  // "name: yes/no" pairs in a fixed order, for `qforge doctor` and logs.
  std::vector<std::pair<std::string, bool>> list() const;
};

// The features of the CPU this process runs on (detected once, thread-safe).
const CpuFeatures& cpu_features();

}  // namespace qforge
