#!/usr/bin/env bash
# The Arm kernels, cross-compiled and tested under emulation (CI runs this
# from scripts/test.sh): builds the kernel-only test executable for AArch64
# into build-arm/ (Release, warnings as errors) with g++-aarch64-linux-gnu,
# then runs it under qemu-aarch64 (Debian's qemu-user):
#   - on an emulated CPU with every extension (-cpu max: NEON and dotprod),
#     once per ISA (QFORGE_ISA=ref, neon, dotprod) and once choosing itself;
#   - on a Cortex-A53 (Armv8.0: NEON, no dotprod), where the automatic choice
#     must fall back to neon and QFORGE_ISA=dotprod must be refused.
# Emulated timings mean nothing; this checks results only.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-arm -G Ninja --no-warn-unused-cli -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DQFORGE_WERROR=ON -DQFORGE_KERNELS_ONLY=ON >/dev/null
ninja -C build-arm qforge_kernel_tests
bin=build-arm/tests/kernels_only/qforge_kernel_tests
max=(qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max)   # every extension: NEON, dotprod, i8mm
a53=(qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a53)  # Armv8.0: NEON, no dotprod

# One run; prints gtest's summary lines and fails on any failed test, or
# on a run past 5 minutes (each takes seconds: a hang, not a slow test).
run() {
  local label=$1; shift
  local log rc=0
  log=$(mktemp)
  timeout 300 "$@" --gtest_brief=1 >"$log" 2>&1 || rc=$?
  if [[ $rc != 0 ]]; then
    cat "$log"; rm -f "$log"
    [[ $rc == 124 ]] && echo "test_arm.sh: $label did not finish in 5 minutes" >&2
    echo "test_arm.sh: FAILED: $label" >&2
    exit 1
  fi
  echo "  $label: $(grep -E '^\[  PASSED  \]' "$log") $(grep -E '^\[  SKIPPED \]' "$log" || true)"
  rm -f "$log"
}

echo "== Arm kernel tests under $(qemu-aarch64 --version | head -1)"
for isa in ref neon dotprod; do
  run "-cpu max, QFORGE_ISA=$isa" env QFORGE_ISA=$isa "${max[@]}" "$bin"
done
# The automatic choice (QFORGE_EXPECT_ISA: checked by KernelsTable.AvailableIsasAndDefault):
# dotprod where the CPU has it; on a Cortex-A53 (Armv8.0, no asimddp) neon,
# where every test runs again.
run "-cpu max, automatic choice: dotprod" env QFORGE_EXPECT_ISA=dotprod "${max[@]}" "$bin" \
  --gtest_filter='KernelsTable.*:CpuFeatures.*'
run "-cpu cortex-a53, automatic choice: neon" env QFORGE_EXPECT_ISA=neon "${a53[@]}" "$bin"
# Forcing dotprod there is refused with an Error naming the missing feature.
if out=$(QFORGE_ISA=dotprod "${a53[@]}" "$bin" --gtest_filter=KernelsTable.AvailableIsasAndDefault 2>&1); then
  echo "test_arm.sh: QFORGE_ISA=dotprod was not refused on a Cortex-A53" >&2
  exit 1
fi
grep -q "ISA dotprod.*is not supported by this CPU.*asimddp" <<<"$out" || {
  echo "$out"; echo "test_arm.sh: QFORGE_ISA=dotprod on a Cortex-A53: not the expected Error" >&2; exit 1; }
echo "  -cpu cortex-a53, QFORGE_ISA=dotprod: refused: $(grep -o 'ISA dotprod.*(asimddp))' <<<"$out" | head -1)"
