#!/usr/bin/env bash
# qforge's int8 path against ONNX Runtime 1.30 (npm onnxruntime-node, CPU
# provider) and PyTorch 1.13 (Debian's python3-torch, quantized engines
# onednn and qnnpack), side by side (issue 5). Prints Markdown tables:
#
#   peak    this machine's peak int8 dot-product (vpdpbusd) and fp32 FMA
#           throughput per core, and its read bandwidth (bench/bench_peak.cpp)
#   gemm    the int8 GEMM on issue 5's shapes at 1 and 2 threads: qforge's
#           kernel (bench/bench_int8_gemm.cpp, the process's choice, int32
#           out and requantized to u8), its percent of the measured peak,
#           ORT's MatMulInteger (bench/peers/ort_gemm.js) and PyTorch's
#           quantized.linear (bench/peers/torch_bench.py gemm), and the
#           read bandwidth that bounds M = 1
#   models  end to end: the five Fashion-MNIST models (models/fmnist)
#           quantized static by qforge (the lstm dynamic) and
#           models/transformer4.onnx dynamic: qforge int8 and fp32 (qforge
#           bench, interleaved in blocks of warm runs, as each peer's own
#           loop is warm), ORT on the same qforge-written int8 file, and
#           PyTorch's own PTQ of the same architectures (random weights)
#
#   scripts/bench_int8.sh [peak|gemm|models|all] [SECONDS]    (default: all 0.5)
#
# SECONDS is the time per measurement. Every measurement is repeated in
# ROUNDS rounds (default 3; environment variable), the runtimes taking turns
# within each round (in `models`, ORT, qforge and PyTorch one after the
# other on each configuration, seconds apart), and the tables show the median over the rounds of each
# runtime's median. MODELS (environment variable, e.g. MODELS=mlp,vit)
# limits `models` to those names. Ratio columns are time ratios qforge / peer: below 1
# means qforge is faster. `all` takes 10-15 minutes at 0.5 s on 2 cores
# (14 on a loaded 2-core VM); `gemm` about 1.5 minutes at 0.3 s. On a machine
# shared with other work, `chrt -f 10 scripts/bench_int8.sh ...` (as root;
# the children inherit the priority) keeps the others off the cores while it
# runs. In `models`, every runtime's one-thread runs are pinned (taskset) to
# one CPU, the last unless BENCH_CPU (environment) names another: on a VM the
# virtual CPUs can differ in speed by a quarter, hour by hour (the host's load
# on the cores behind them), and a runtime that happened to land on the slow
# one while its peer didn't made the ratio a coin toss. Raw results stay
# under build-peers/int8/.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
secs=${2:-0.5}
rounds=${ROUNDS:-3}
case $what in peak|gemm|models|all) ;; *) echo "usage: $0 [peak|gemm|models|all] [SECONDS]" >&2; exit 2 ;; esac
out=build-peers/int8
PY=/usr/bin/python3  # Debian's, with python3-torch

scripts/setup.sh --peers
if [[ ! -d build-peers/ort/node_modules/onnxruntime-node ]]; then
  echo "bench_int8.sh: installing onnxruntime-node@1.30.0 (npm, --ignore-scripts)" >&2
  mkdir -p build-peers/ort
  (cd build-peers/ort && npm install --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0 >/dev/null)
fi
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DQFORGE_BUILD_BENCH=ON -DQFORGE_BUILD_TESTS=OFF >/dev/null
ninja -C build-bench qforge_bench qforge_cli >/dev/null
B=build-bench/bench/qforge_bench
Q=build-bench/qforge
export BENCH_CPU=${BENCH_CPU:-$(($(nproc) - 1))}
mkdir -p "$out"
gbench() {  # gbench FILTER MIN_TIME OUT.json
  $B --benchmark_filter="$1" --benchmark_min_time="$2" --benchmark_format=json >"$3" 2>/dev/null
}
tables() { $PY bench/peers/int8_tables.py "$@"; }

peak() {
  echo "bench_int8.sh: peak" >&2
  $B --benchmark_filter='^BM_Peak' --benchmark_min_time="$secs" --benchmark_repetitions="$rounds" \
     --benchmark_format=json >"$out/peak.json" 2>/dev/null
}

shapes=(1,768,768 32,768,768 128,768,3072 512,1024,1024 1,4096,4096)
gemm() {
  [[ -f $out/peak.json ]] || peak
  rm -rf "$out/gemm" && mkdir -p "$out/gemm"
  for r in $(seq "$rounds"); do
    echo "bench_int8.sh: gemm, round $r of $rounds" >&2
    # With the read bandwidth, the bound of M = 1, and the int8 dot-product
    # peak on 1 and 2 threads (bench/bench_peak.cpp), in the same round.
    gbench 'BM_Int8Gemm(Requant)?/.*/kernel:-1/|BM_PeakReadBandwidth|BM_PeakInt8Dot$|BM_PeakInt8Dot/' \
      "$secs" "$out/gemm/r$r.qforge.json"
    for t in 1 2; do
      # 1,4,4: the cost of a session.run through Node alone.
      node bench/peers/ort_gemm.js build-peers/gemm_models "$t" "$secs" 1,4,4 "${shapes[@]}" >>"$out/gemm/r$r.ort.jsonl"
      $PY bench/peers/torch_bench.py gemm "$t" "$secs" "${shapes[@]}" >>"$out/gemm/r$r.torch.jsonl"
    done
  done
}

# name, float model, qforge quantize flags, ORT input type, sample shape
model_specs=(
  "mlp models/fmnist/mlp.onnx static f32 1,28,28"
  "cnn_bn models/fmnist/cnn_bn.onnx static f32 1,28,28"
  "dwsep_cnn models/fmnist/dwsep_cnn.onnx static f32 1,28,28"
  "vit models/fmnist/vit.onnx static f32 1,28,28"
  "lstm models/fmnist/lstm.onnx dynamic f32 1,28,28"
  "transformer4 models/transformer4.onnx dynamic i64 64"
)
models() {
  local calib=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
  rm -rf "$out/models" && mkdir -p "$out/models"
  for spec in "${model_specs[@]}"; do
    read -r name float mode dtype sample <<<"$spec"
    [[ -z ${MODELS:-} || ",$MODELS," == *",$name,"* ]] || continue
    local q=$out/models/$name.int8.onnx
    if [[ $mode == static ]]; then
      $Q quantize "$float" -o "$q" --calib "$calib" --calib-samples 1024 --no-speed-check -q
    else
      $Q quantize "$float" -o "$q" --mode dynamic --no-speed-check -q
    fi
    # PyTorch, its models built once, times each configuration on request
    # right after ORT and qforge (torch_bench.py serve).
    coproc TORCH { $PY bench/peers/torch_bench.py serve "$name" "$secs"; }
    local ready torch_line
    read -r ready <&"${TORCH[0]}"
    [[ $ready == ready ]] || { echo "bench_int8.sh: torch_bench.py serve $name did not start" >&2; exit 1; }
    for r in $(seq "$rounds"); do
      echo "bench_int8.sh: models, $name, round $r of $rounds" >&2
      for batch in 1 32; do
        for t in 1 2; do
          local ort_line runs pin=()
          [[ $t == 1 ]] && pin=(taskset -c "$BENCH_CPU")
          ort_line=$("${pin[@]}" node bench/peers/ort_bench.js "$q" "$dtype" "$batch,$sample" "$t" "$secs")
          echo "{\"name\": \"$name\", \"batch\": $batch, \"round\": $r, \"ort\": $ort_line}" >>"$out/models/ort.jsonl"
          # As many qforge runs as ORT needs for SECONDS (at least 10, at most 2000).
          runs=$($PY -c "import json,sys; ms=json.loads(sys.argv[1])['ms_median']; print(max(10, min(2000, int($secs*1000/ms))))" "$ort_line")
          "${pin[@]}" $Q bench "$float" "$q" --batch "$batch" --threads "$t" --runs "$runs" -q \
             --json "$out/models/$name.b$batch.t$t.r$r.qforge.json" >/dev/null
          echo "$batch $t" >&"${TORCH[1]}"
          for _ in 1 2; do  # onednn, qnnpack
            read -r torch_line <&"${TORCH[0]}"
            echo "{\"round\": $r, ${torch_line#\{}" >>"$out/models/torch.jsonl"
          done
        done
      done
    done
    local torch_pid=$TORCH_PID
    exec {TORCH[1]}>&-
    wait "$torch_pid"
  done
}

case $what in
  peak) peak; tables peak "$out" ;;
  gemm) gemm; tables gemm "$out" ;;
  models) models; tables models "$out" ;;
  all) peak; gemm; models; tables peak "$out"; tables gemm "$out"; tables models "$out" ;;
esac
