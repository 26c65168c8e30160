// `qforge doctor`: what this machine offers and what qforge will use on it.
#include <cstdio>

#include "commands.h"
#include "kernels/kernels.h"
#include "qforge/cpu.h"
#include "qforge/thread_pool.h"

namespace qforge::cli {

Command add_doctor(CLI::App& app) {
  auto* cmd = app.add_subcommand("doctor", "Print this CPU's features and the kernels qforge will use");
  return {cmd, [] {
    const CpuFeatures& f = cpu_features();
    std::printf("qforge %s\n\n", QFORGE_VERSION);
    std::printf("CPU\n  arch:          %s\n  model:         %s\n  logical cores: %d\n",
                f.arch.c_str(), f.model.empty() ? "(not reported)" : f.model.c_str(),
                f.logical_cores);
    std::printf("  threads used:  %d (QFORGE_NUM_THREADS overrides)\n\n",
                default_thread_pool().threads());
    std::printf("Features\n");
    for (const auto& [name, on] : f.list()) std::printf("  %-12s %s\n", name.c_str(), on ? "yes" : "no");
    std::printf("\nKernel ISAs this CPU can run:");
    for (auto isa : kernels::available_isas()) std::printf(" %s", kernels::isa_name(isa));
    const auto& k = kernels::kernels();
    std::printf("\nSelected: %s (%s; QFORGE_ISA=ref|avx2|avxvnni|avx512 overrides)\n\nKernels\n",
                kernels::isa_name(k.isa), k.reason.c_str());
    for (const auto& [op, name] : k.names) std::printf("  %-34s %s\n", op.c_str(), name.c_str());
    return 0;
  }};
}

}  // namespace qforge::cli
