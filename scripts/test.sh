#!/usr/bin/env bash
# The README's test command (and CI's): set up, build with warnings as
# errors, run every test; then build the unit tests with AddressSanitizer and
# UndefinedBehaviorSanitizer and run them again. In between, the Arm kernels
# cross-compiled and tested under qemu (scripts/test_arm.sh) and the live
# interop check against ONNX Runtime (scripts/interop_ort.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release build (warnings are errors)"
scripts/build.sh
echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs"
echo "== Arm kernels: cross-compiled for AArch64, tested under qemu-aarch64"
scripts/test_arm.sh
echo "== interop with ONNX Runtime 1.30 (live; says loudly when it has to skip)"
scripts/interop_ort.sh

echo "== sanitizer build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DQFORGE_WERROR=ON -DQFORGE_SANITIZE=ON >/dev/null
ninja -C build-asan qforge_unit_tests qforge_cli qforge_conformance
echo "== tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"
