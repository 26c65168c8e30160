#!/usr/bin/python3
"""PyTorch 1.13's int8 inference (Debian's python3-torch, CPU), the peer of
qforge's int8 path in scripts/bench_int8.sh. Prints one JSON line per
measurement: the median ms of a call over SECONDS (after warm-up runs).

  torch_bench.py gemm THREADS SECONDS M,K,N [M,K,N ...]
      torch.ops.quantized.linear (u8 activations, s8 weights per tensor,
      prepacked with linear_prepack, u8 output requantized: the peer of
      qforge's BM_Int8GemmRequant) per shape, engines onednn and qnnpack,
      one after the other per shape; GOPS = 2*M*N*K / median.

  torch_bench.py model NAME SECONDS
      NAME one of mlp, cnn_bn, dwsep_cnn, vit (static PTQ, train_fashion.py's
      static_ptq), lstm (dynamic PTQ, its dynamic_ptq) and transformer4
      (make_models.py's Transformer, dynamic PTQ over nn.Linear), built from
      the definitions in those scripts with random weights (only speed is
      measured here; calibration on random images in [0, 1)), quantized
      with each engine; at batch 1 and 32 and 1 and 2 threads, the engines
      taking turns run by run (at least 5 runs each). With BENCH_CPU set
      (environment), the one-thread runs are pinned to that CPU.

  torch_bench.py serve NAME SECONDS
      The same models, built once; then one measurement per line read from
      stdin ("BATCH THREADS"), its two JSON lines (onednn, qnnpack) printed
      when done. bench_int8.sh keeps one running per model so that PyTorch
      is timed right after ONNX Runtime and qforge on each configuration:
      this host's speed changes within seconds, and peers timed apart
      could land in different phases.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import train_fashion as tf  # noqa: E402  (sets OMP_WAIT_POLICY=PASSIVE unless set)
import make_models as mm  # noqa: E402
import torch  # noqa: E402
import torch.ao.nn.quantized.dynamic.modules.rnn as qrnn  # noqa: E402

ENGINES = ("onednn", "qnnpack")


def emit(**kw):
    import json
    print(json.dumps(kw), flush=True)


def time_calls(fns, seconds, warmup=3, min_runs=10):
    """{label: fn} -> {label: (median ms, runs)}; the fns take turns, call by call,
    so load from other processes falls on all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in fns}
    end = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < end or len(next(iter(times.values()))) < min_runs:
        for label, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[label].append((time.perf_counter() - t0) * 1e3)
    return {label: (statistics.median(t), len(t)) for label, t in times.items()}


def engine_call(engine, fn):
    """fn run with `engine` as torch's quantized engine (qnnpack and onednn
    kernels read the global setting when called)."""
    def call():
        torch.backends.quantized.engine = engine
        return fn()
    return call


@torch.no_grad()
def gemm(threads, seconds, shapes):
    tf.set_threads(threads)
    torch.manual_seed(0)
    for s in shapes:
        M, K, N = map(int, s.split(","))
        x = torch.quantize_per_tensor(torch.rand(M, K), 1.0 / 255, 0, torch.quint8)
        w = torch.quantize_per_tensor(torch.randn(N, K), 0.02, 0, torch.qint8)
        fns = {}
        for engine in ENGINES:
            torch.backends.quantized.engine = engine
            packed = torch.ops.quantized.linear_prepack(w, None)
            fns[engine] = engine_call(engine, lambda p=packed: torch.ops.quantized.linear(x, p, 0.05, 128))
        for engine, (ms, runs) in time_calls(fns, seconds).items():
            emit(runtime="pytorch", engine=engine, op="quantized.linear", M=M, K=K, N=N, threads=threads,
                 ms_median=ms, runs=runs, gops=2 * M * N * K / (ms * 1e6))


def dynamic(model, engine):
    """Dynamic PTQ. PyTorch asks for reduce_range in every dynamic Linear and
    LSTM cell; qnnpack ignores it but logs a warning on every call, a cost
    that isn't the kernel's. So for qnnpack the Linear modules use their
    version-3 forward, and the LSTMs are made as version 1, whose cells don't
    ask for it."""
    if engine != "qnnpack":
        return tf.dynamic_ptq(model, engine)
    init = qrnn.RNNBase.__init__

    def init_v1(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.version = 1
    qrnn.RNNBase.__init__ = init_v1
    try:
        q = tf.dynamic_ptq(model, engine)
    finally:
        qrnn.RNNBase.__init__ = init
    for m in q.modules():
        if isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
            m.version = 3
    return q


def quantized_model(name, engine):
    torch.manual_seed(0)
    if name == "transformer4":
        return dynamic(mm.Transformer().eval(), engine)
    model = tf.MODELS[name][0]().eval()
    if name == "lstm":
        return dynamic(model, engine)
    return tf.static_ptq(model, name, engine, torch.rand(256, 1, 28, 28))[0]


ALL_CPUS = frozenset(os.sched_getaffinity(0))


def pin(threads):
    """On one thread, run on CPU $BENCH_CPU where it is set (bench_int8.sh pins
    every runtime's one-thread runs to the same CPU); else on all of them."""
    cpu = os.environ.get("BENCH_CPU")
    os.sched_setaffinity(0, {int(cpu)} if threads == 1 and cpu is not None else ALL_CPUS)


@torch.no_grad()
def measure(name, models, batch, threads, seconds):
    if name == "transformer4":
        x = torch.randint(0, 1000, (batch, 64))
    else:
        x = torch.rand(batch, 1, 28, 28)
    tf.set_threads(threads)
    pin(threads)
    fns = {e: engine_call(e, lambda m=m: m(x)) for e, m in models.items()}
    for engine, (ms, runs) in time_calls(fns, seconds, min_runs=5).items():
        emit(runtime="pytorch", engine=engine, model=name, batch=batch, threads=threads,
             ms_median=ms, runs=runs)


def model_bench(name, seconds):
    models = {engine: quantized_model(name, engine) for engine in ENGINES}
    for batch in (1, 32):
        for threads in (1, 2):
            measure(name, models, batch, threads, seconds)


def serve(name, seconds):
    models = {engine: quantized_model(name, engine) for engine in ENGINES}
    print("ready", flush=True)
    for line in sys.stdin:
        batch, threads = (int(v) for v in line.split())
        measure(name, models, batch, threads, seconds)


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "gemm":
        gemm(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "model":
        model_bench(sys.argv[2], float(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
