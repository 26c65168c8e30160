#!/usr/bin/env bash
# The Fashion-MNIST table of docs/RESULTS.md: each reference model
# (models/fmnist, trained by scripts/train_fashion.py) quantized static and
# dynamic by qforge, top-1 on Debian's 10k test images, file sizes, and
# latency (qforge bench, batch 1 and 32, 1 thread), beside PyTorch 1.13's own
# post-training quantization of the same models (models/fmnist/pytorch_results.json,
# measured by train_fashion.py).
#
#   scripts/results_fmnist.sh [OUT_DIR]      (default build/results_fmnist)
#
# Static: 1024 training images calibrate, as PyTorch's did; the calibration
# method is minmax (qforge's default) and mse (PyTorch's HistogramObserver).
# The speed check is off so the models are the same on every machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/results_fmnist}
mkdir -p "$out"
D=/usr/share/datasets/fashion-mnist
Q=build/qforge
[[ -x $Q ]] || scripts/build.sh >/dev/null
for m in mlp cnn_bn dwsep_cnn lstm vit; do
  f=models/fmnist/$m.onnx
  $Q quantize "$f" -o "$out/$m.static.onnx" --calib $D/train-images-idx3-ubyte.gz --calib-samples 1024 --no-speed-check -q
  $Q quantize "$f" -o "$out/$m.static_mse.onnx" --calib $D/train-images-idx3-ubyte.gz --calib-samples 1024 \
     --calib-method mse --no-speed-check -q
  $Q quantize "$f" -o "$out/$m.dynamic.onnx" --mode dynamic --no-speed-check -q
  models=("$f" "$out/$m.static.onnx" "$out/$m.static_mse.onnx" "$out/$m.dynamic.onnx")
  $Q eval "${models[@]}" --data $D/t10k-images-idx3-ubyte.gz --json "$out/$m.eval.json" -q >/dev/null
  for b in 1 32; do
    $Q bench "${models[@]}" --batch $b --threads 1 --runs 20 --json "$out/$m.bench_b$b.json" -q >/dev/null
  done
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
torch = json.load(open("models/fmnist/pytorch_results.json"))["models"]
print("| model | float | qforge static (minmax / mse) | qforge dynamic | PyTorch static (onednn / qnnpack) | PyTorch dynamic | file: float -> static / dynamic | qforge ms, batch 1: float / static / dynamic | batch 32 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in ["mlp", "cnn_bn", "dwsep_cnn", "lstm", "vit"]:
    e = {r["model"]: r["value"] for r in json.load(open(f"{out}/{m}.eval.json"))["models"]}
    b = {k: {r["model"]: r for r in json.load(open(f"{out}/{m}.bench_b{k}.json"))["models"]} for k in (1, 32)}
    f, s, sm, d = (f"models/fmnist/{m}.onnx", f"{out}/{m}.static.onnx", f"{out}/{m}.static_mse.onnx", f"{out}/{m}.dynamic.onnx")
    t = torch[m]
    st = t["static"]
    acc = lambda v: f"{v['acc']:.2f}" if isinstance(v, dict) and "acc" in v else "n/a"
    size = lambda k: b[1][k]["file_bytes"]
    lat = lambda k, batch: f"{b[batch][k]['p50_ms']:.3f}"
    print(f"| {m} | {e[f]:.2f} | {e[s]:.2f} / {e[sm]:.2f} | {e[d]:.2f} | {acc(st.get('onednn'))} / {acc(st.get('qnnpack'))} "
          f"| {t['dynamic']['acc']:.2f} | {size(f)/1024:.0f} KiB -> {100*size(s)/size(f):.1f}% / {100*size(d)/size(f):.1f}% "
          f"| {lat(f,1)} / {lat(s,1)} / {lat(d,1)} | {lat(f,32)} / {lat(s,32)} / {lat(d,32)} |")
PY
