// Tests for qforge::cpu_features(). The machine running the tests is unknown,
// so these check internal consistency, and on x86 Linux compare with the
// kernel's own view of the CPU in /proc/cpuinfo.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "qforge/cpu.h"

#if defined(__linux__)
#include <sys/utsname.h>
#endif

namespace {

using qforge::cpu_features;
using qforge::CpuFeatures;

TEST(CpuFeatures, SameObjectEveryCall) { EXPECT_EQ(&cpu_features(), &cpu_features()); }

TEST(CpuFeatures, ArchMatchesCompileTarget) {
#if defined(__x86_64__)
  EXPECT_EQ(cpu_features().arch, "x86_64");
#elif defined(__aarch64__)
  EXPECT_EQ(cpu_features().arch, "aarch64");
#else
  EXPECT_EQ(cpu_features().arch, "other");
#endif
}

TEST(CpuFeatures, LogicalCoresAtLeastOne) { EXPECT_GE(cpu_features().logical_cores, 1); }

TEST(CpuFeatures, ModelHasNoSurroundingSpace) {
  const std::string& m = cpu_features().model;
  if (m.empty()) return;
  EXPECT_NE(m.front(), ' ');
  EXPECT_NE(m.back(), ' ');
  EXPECT_EQ(m.find('\0'), std::string::npos);
}

// `a` implies `b`, with a readable failure message.
#define EXPECT_IMPLIES(a, b) EXPECT_TRUE(!(a) || (b)) << #a " is set but " #b " is not"

TEST(CpuFeatures, ImpliedFeaturesAreConsistent) {
  const CpuFeatures& f = cpu_features();
  EXPECT_IMPLIES(f.avx2, f.avx);
  EXPECT_IMPLIES(f.fma, f.avx);
  EXPECT_IMPLIES(f.f16c, f.avx);
  EXPECT_IMPLIES(f.avxvnni, f.avx);
  EXPECT_IMPLIES(f.avx512f, f.avx);
  EXPECT_IMPLIES(f.avx512bw, f.avx512f);
  EXPECT_IMPLIES(f.avx512vl, f.avx512f);
  EXPECT_IMPLIES(f.avx512dq, f.avx512f);
  EXPECT_IMPLIES(f.avx512vnni, f.avx512f);
  EXPECT_IMPLIES(f.avx512bf16, f.avx512f);
  EXPECT_IMPLIES(f.amx_int8, f.amx_tile);
  EXPECT_IMPLIES(f.amx_bf16, f.amx_tile);
  EXPECT_IMPLIES(f.dotprod, f.neon);
  EXPECT_IMPLIES(f.i8mm, f.neon);
}

TEST(CpuFeatures, OtherArchitecturesFlagsAreOff) {
  const CpuFeatures& f = cpu_features();
  if (f.arch != "aarch64") {
    EXPECT_FALSE(f.neon || f.dotprod || f.i8mm);
  }
  if (f.arch != "x86_64") {
    EXPECT_FALSE(f.sse41 || f.avx || f.avx2 || f.fma || f.f16c || f.avx512f || f.avx512bw ||
                 f.avx512vl || f.avx512dq || f.avx512vnni || f.avxvnni || f.avx512bf16 ||
                 f.amx_tile || f.amx_int8 || f.amx_bf16);
  }
}

TEST(CpuFeatures, ListNamesMatchArchAndAreUnique) {
  const CpuFeatures& f = cpu_features();
  std::vector<std::string> expected;
  if (f.arch == "x86_64") {
    expected = {"sse4.1",   "avx",        "avx2",    "fma",        "f16c",
                "avx512f",  "avx512bw",   "avx512vl", "avx512dq",  "avx512vnni",
                "avxvnni",  "avx512bf16", "amx-tile", "amx-int8",  "amx-bf16"};
  } else if (f.arch == "aarch64") {
    expected = {"neon", "dotprod", "i8mm"};
  }
  const auto list = f.list();
  std::vector<std::string> names;
  std::set<std::string> unique;
  for (const auto& [name, on] : list) {
    names.push_back(name);
    unique.insert(name);
  }
  EXPECT_EQ(names, expected);
  EXPECT_EQ(unique.size(), names.size());
}

TEST(CpuFeatures, ListValuesMatchFields) {
  const CpuFeatures& f = cpu_features();
  const std::map<std::string, bool> fields = {
      {"sse4.1", f.sse41},         {"avx", f.avx},           {"avx2", f.avx2},
      {"fma", f.fma},              {"f16c", f.f16c},         {"avx512f", f.avx512f},
      {"avx512bw", f.avx512bw},    {"avx512vl", f.avx512vl}, {"avx512dq", f.avx512dq},
      {"avx512vnni", f.avx512vnni}, {"avxvnni", f.avxvnni},  {"avx512bf16", f.avx512bf16},
      {"amx-tile", f.amx_tile},    {"amx-int8", f.amx_int8}, {"amx-bf16", f.amx_bf16},
      {"neon", f.neon},            {"dotprod", f.dotprod},   {"i8mm", f.i8mm}};
  for (const auto& [name, on] : f.list()) {
    const auto it = fields.find(name);
    ASSERT_NE(it, fields.end()) << name;
    EXPECT_EQ(on, it->second) << name;
  }
}

#if defined(__x86_64__) && defined(__linux__)

// The words of the first "flags" line of /proc/cpuinfo; false if unreadable.
bool read_cpuinfo_flags(std::set<std::string>& flags) {
  std::ifstream in("/proc/cpuinfo");
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream words(line.substr(colon + 1));
    std::string w;
    while (words >> w) flags.insert(w);
    return true;
  }
  return false;
}

// The running kernel's (major, minor) version, or (0, 0) if unknown.
std::pair<int, int> kernel_version() {
  utsname u{};
  if (uname(&u) != 0) return {0, 0};
  int major = 0, minor = 0;
  std::istringstream in(u.release);
  char dot = 0;
  if (!(in >> major >> dot >> minor) || dot != '.') return {0, 0};
  return {major, minor};
}

// The kernel reports what it both detected and enabled (it clears a feature
// whose register state it does not save, and its dependants), which is the
// same rule cpu_features() applies, so the two must agree.
TEST(CpuFeatures, AgreesWithProcCpuinfo) {
  std::set<std::string> flags;
  if (!read_cpuinfo_flags(flags)) GTEST_SKIP() << "/proc/cpuinfo is not readable";
  const CpuFeatures& f = cpu_features();

  struct Check {
    const char* cpuinfo_name;
    bool detected;
    bool needs_new_kernel;  // flag only listed (and AMX only enabled) by Linux >= 5.16
  };
  const Check checks[] = {
      {"avx2", f.avx2, false},
      {"fma", f.fma, false},
      {"f16c", f.f16c, false},
      {"avx512f", f.avx512f, false},
      {"avx512bw", f.avx512bw, false},
      {"avx512vl", f.avx512vl, false},
      {"avx512_vnni", f.avx512vnni, false},
      {"avx_vnni", f.avxvnni, true},
      {"avx512_bf16", f.avx512bf16, true},
      {"amx_tile", f.amx_tile, true},
      {"amx_int8", f.amx_int8, true},
  };
  const auto [major, minor] = kernel_version();
  const bool new_kernel = major > 5 || (major == 5 && minor >= 16);
  for (const Check& c : checks) {
    if (c.needs_new_kernel && !new_kernel) continue;  // an old kernel may not know the flag
    EXPECT_EQ(flags.count(c.cpuinfo_name) != 0, c.detected)
        << "flag '" << c.cpuinfo_name << "': /proc/cpuinfo and cpu_features() disagree";
  }
}

#endif

}  // namespace
