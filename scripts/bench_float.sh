#!/usr/bin/env bash
# qforge's float Session against ONNX Runtime 1.30 (npm onnxruntime-node, CPU
# provider, fp32) on the bundled models, at batch 1 and 32 with 1 and 2
# threads. Each pair is measured in the same run, one after the other, on the
# same input shape; prints a Markdown table with the ratio qforge / ORT
# (below 1 means qforge is faster). Both sides report a median: ORT over its
# runs, qforge over 3 repetitions of Google Benchmark's timing loop.
#
#   scripts/bench_float.sh [SECONDS_PER_MEASUREMENT]     (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
scripts/setup.sh
if [[ ! -d build-peers/ort/node_modules/onnxruntime-node ]]; then
  echo "bench_float.sh: installing onnxruntime-node@1.30.0 (npm, --ignore-scripts)" >&2
  mkdir -p build-peers/ort
  (cd build-peers/ort && npm install --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0 >/dev/null)
fi
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DQFORGE_BUILD_BENCH=ON -DQFORGE_BUILD_TESTS=OFF >/dev/null
ninja -C build-bench qforge_bench >/dev/null

echo "| model | batch | threads | qforge ms | ONNX Runtime ms | qforge / ORT |"
echo "|---|---:|---:|---:|---:|---:|"
for spec in "fashion_cnn f32 1,28,28" "mobilenet_dw f32 3,96,96" "transformer4 i64 64"; do
  read -r model dtype sample <<<"$spec"
  for batch in 1 32; do
    for threads in 1 2; do
      ort=$(node bench/peers/ort_bench.js "models/$model.onnx" "$dtype" "$batch,$sample" "$threads" "$secs")
      q=$(build-bench/bench/qforge_bench --benchmark_filter="^BM_Session/$model/batch:$batch/threads:$threads/" \
            --benchmark_min_time="$secs" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
            --benchmark_format=json 2>/dev/null)
      python3 - "$model" "$batch" "$threads" "$ort" "$q" <<'PY'
import json, sys
model, batch, threads, ort, q = sys.argv[1:]
o = json.loads(ort)["ms_median"]
b = [r for r in json.loads(q)["benchmarks"] if r.get("aggregate_name") == "median"][0]
qms = b["real_time"] if b["time_unit"] == "ms" else b["real_time"] / 1e6
print(f"| {model} | {batch} | {threads} | {qms:.3f} | {o:.3f} | {qms / o:.2f} |")
PY
    done
  done
done
