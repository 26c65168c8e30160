#!/usr/bin/env bash
# Installs everything qforge needs to build and test, from Debian 12's
# packages. Safe to re-run: when everything is already installed it prints
# nothing and changes nothing.
#
#   scripts/setup.sh          build and test dependencies
#   scripts/setup.sh --peers  also PyTorch 1.13 and OpenBLAS, to regenerate
#                             golden data (scripts/gen_torch_golden.py)
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libprotobuf-dev protobuf-compiler libonnx-dev
  nlohmann-json3-dev libcli11-dev zlib1g-dev libstb-dev
  libonnx-testdata dataset-fashion-mnist
  chromium python3  # the report test renders HTML in headless Chromium
  g++-aarch64-linux-gnu qemu-user  # the Arm kernel tests (scripts/test_arm.sh)
)
if [[ "${1:-}" == "--peers" ]]; then
  packages+=(python3-torch python3-numpy libopenblas0-pthread)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup.sh: done" >&2
