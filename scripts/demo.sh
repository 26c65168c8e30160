#!/usr/bin/env bash
# The README's first command: set up, build, and run qforge's main job on the
# bundled Fashion-MNIST CNN and Debian's Fashion-MNIST data: dynamic and
# static quantization, accuracy on the 10k test images, latency and memory,
# per-layer error, a sensitivity scan, and an offline HTML report
# (qforge-demo/report.html). Arguments go to `qforge demo` (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh >/dev/null
./build/qforge doctor
echo
exec ./build/qforge demo "$@"
