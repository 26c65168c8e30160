#!/usr/bin/env bash
# Configures and builds qforge into build/ (Release, warnings as errors).
#   scripts/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQFORGE_WERROR=ON "$@" >/dev/null
ninja -C build
