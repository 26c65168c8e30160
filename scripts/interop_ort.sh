#!/usr/bin/env bash
# Interop with ONNX Runtime 1.30 (npm onnxruntime-node, CPU provider): qforge
# quantizes the bundled models in several configurations (--target
# onnxruntime), ONNX Runtime runs each written model, and the unit test
# Interop.* checks that every model passes the ONNX checker, loads and runs
# in qforge, and that qforge's outputs agree with ONNX Runtime's within the
# tolerance the manifest gives (in steps of the output's quantization).
#
#   scripts/interop_ort.sh                  check against a fresh ORT run
#   scripts/interop_ort.sh --update-golden  also refresh tests/data/interop
#                                           (the CNN cases the test command checks)
#
# Needs node and npm (Debian nodejs, npm) and the npm registry. When they
# can't be had it says so loudly and exits 0: the committed golden data in
# tests/data/interop still hold qforge to ONNX Runtime's outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
update=0
[[ "${1:-}" == "--update-golden" ]] && update=1

skip() {
  echo "" >&2
  echo "########################################################################" >&2
  echo "# interop_ort.sh: SKIPPED the live ONNX Runtime interop check: $*" >&2
  echo "########################################################################" >&2
  exit 0
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 ||
    skip "node and npm are not installed and apt-get could not install them"
fi
if [[ ! -d build-peers/ort/node_modules/onnxruntime-node ]]; then
  echo "interop_ort.sh: installing onnxruntime-node@1.30.0 (npm, --ignore-scripts)" >&2
  mkdir -p build-peers/ort
  (cd build-peers/ort && npm install --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0 >/dev/null 2>&1) ||
    skip "npm could not install onnxruntime-node@1.30.0 (no registry?)"
fi
node -e "require('./build-peers/ort/node_modules/onnxruntime-node')" 2>/dev/null ||
  skip "onnxruntime-node does not load on this machine"

if [[ ! -x build/qforge || ! -x build/tests/qforge_unit_tests ]]; then
  cmake -S . -B build -G Ninja -DQFORGE_WERROR=ON >/dev/null
fi
ninja -C build qforge_cli qforge_unit_tests >/dev/null

out=build-peers/interop
rm -rf "$out"
mkdir -p "$out"
fashion=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
manifest="$out/manifest.txt"
echo "# case input-name input-file tolerance-in-output-steps" >"$manifest"

# case model tolerance quantize-arguments...
run_case() {
  local name=$1 model=$2 tol=$3
  shift 3
  local input
  input=$(build/qforge inspect "models/$model.onnx" | sed -n '/^inputs/{n;p}' | awk '{print $1}')
  build/qforge quantize "models/$model.onnx" -o "$out/$name.onnx" --target onnxruntime -q "$@"
  cp "models/$model.input.npy" "$out/$name.input.npy"
  node bench/peers/ort_run.js "$out/$name.onnx" "$out/$name.ort" "$input=$out/$name.input.npy"
  mv "$out/$name.ort/logits.npy" "$out/$name.ort.npy"
  rmdir "$out/$name.ort"
  echo "$name $input $name.input.npy $tol" >>"$manifest"
}

# The CNNs agree to the last bit; tolerance 1 step is the issue's bar.
run_case fashion_cnn_static_qdq fashion_cnn 1 --calib "$fashion" --calib-samples 256
run_case fashion_cnn_static_qop_s8 fashion_cnn 1 --calib "$fashion" --calib-samples 256 \
  --format qop --activation-type s8
run_case fashion_cnn_static_entropy_per_tensor fashion_cnn 1 --calib "$fashion" --calib-samples 256 \
  --calib-method entropy --per-tensor
run_case fashion_cnn_dynamic fashion_cnn 1 --mode dynamic
run_case mobilenet_dw_static_qdq mobilenet_dw 1 --calib models/mobilenet_dw.input.npy
run_case mobilenet_dw_dynamic mobilenet_dw 1 --mode dynamic
# The Transformer: ONNX Runtime requantizes in float32 where the ONNX
# reference (and qforge) use float64, so a code next to a rounding tie can
# differ by one; four LayerNormalizations later that is a few output steps.
run_case transformer4_static_qdq transformer4 4 --calib models/transformer4.input.npy
run_case transformer4_dynamic transformer4 4 --mode dynamic
# ConvTranspose (int32 bias, per-channel weights on axis 1), nearest Resize on
# the integers, and Softmax over channels (ORT's QLinearSoftmax assumes an
# output range of [0, 1) in steps of 1/256, which --target onnxruntime sets).
run_case upsample_seg_static_qdq upsample_seg 1 --calib "$fashion" --calib-samples 64
# Dynamic and static in one model: the ViT's MatMuls and Gemm dynamic, the
# Adds that read them static (their inputs quantized after the dynamic ops).
run_case vit_mixed fmnist/vit 1 --calib "$fashion" --calib-samples 256 --config tests/data/mixed_dynamic_matmul.json

QFORGE_INTEROP_DIR="$out" build/tests/qforge_unit_tests --gtest_filter='Interop.*'

if [[ $update -eq 1 ]]; then
  golden=tests/data/interop
  rm -rf "$golden"
  mkdir -p "$golden"
  grep -E '^#|^(fashion_cnn_static_qdq|fashion_cnn_static_qop_s8|fashion_cnn_dynamic|mobilenet_dw_static_qdq|upsample_seg_static_qdq) ' \
    "$manifest" >"$golden/manifest.txt"
  while read -r name _; do
    [[ "$name" == "#" ]] && continue
    cp "$out/$name.onnx" "$out/$name.input.npy" "$out/$name.ort.npy" "$golden/"
  done <"$golden/manifest.txt"
  echo "interop_ort.sh: refreshed $golden" >&2
fi
