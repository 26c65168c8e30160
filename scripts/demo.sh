#!/usr/bin/env bash
# The README's first command: set up, build, and run qforge's main job on the
# bundled default. Until the quantization pipeline lands this is
# `qforge doctor` and a quantize/dequantize round trip of the bundled tensor
# (16 Fashion-MNIST test images, as a model's input layer sees them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh >/dev/null
./build/qforge doctor
echo
echo "== round trip of data/sample_activations.npy, u8 affine, min-max observer"
./build/qforge roundtrip data/sample_activations.npy
echo
echo "== the same, i4 symmetric, histogram observer (least squared error)"
./build/qforge roundtrip data/sample_activations.npy --dtype i4 --symmetric --observer mse
