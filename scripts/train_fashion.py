#!/usr/bin/python3
"""Trains five small reference float models on Fashion-MNIST with PyTorch 1.13
(Debian's python3-torch), exports them to ONNX under models/fmnist/, and
measures PyTorch's own post-training quantization of the same models: the
yardstick qforge's quantizer is compared with.

  mlp        Flatten, 784-256 ReLU, 256-128 ReLU, 128-10
  cnn_bn     two Conv3x3-BN-ReLU-MaxPool2 stages (32, 64 channels),
             Linear(3136,128)-ReLU, Linear(128,10)
  dwsep_cnn  Conv3x3(1,32)-BN-ReLU, three depthwise-separable blocks
             (32->64 s2, 64->128 s2, 128->128 s1), global average pool,
             Linear(128,10)
  lstm       the image read row by row: 28 steps of 28 pixels into one
             LSTM layer (hidden 128, sequence-major), last step -> Linear
  vit        7x7 patches (16 tokens, d=64), learned position embedding,
             2 pre-norm encoder layers (4 heads, ff 128, GELU; attention
             written with Linear + matmul + softmax), LayerNorm, mean
             pooling, Linear(64,10)

Every model takes "image" f32[N,1,28,28] (pixels / 255, no normalization)
and returns "logits" f32[N,10], with a dynamic batch axis. For each one,
models/fmnist/ gets

  <name>.onnx         the float model (opset 13; 17 for vit, for
                      LayerNormalization), BatchNorm folded in eval mode
  <name>.input.npy    the first 8 test images, f32[8,1,28,28]
  <name>.output.npy   PyTorch's float logits for them, f32[8,10]

and models/fmnist/pytorch_results.json holds, per model: the float top-1
accuracy on the 10k test images; the accuracy after PyTorch's dynamic PTQ
(quantize_dynamic over nn.Linear and nn.LSTM, qint8; Conv stays float) and
after eager-mode static PTQ (fused Conv-BN-ReLU / Linear-ReLU,
get_default_qconfig(engine), calibrated on the first 1024 training images)
with the 'onednn' and the 'qnnpack' engines; the ONNX file size and the
torch.save'd state_dict size of each; latency at batch 1 and 32 (median of
20 warm runs on one thread, the variants taking turns so that other load on
the machine hits them alike); and notes saying exactly what each mode
quantized. The lstm also gets "static_lstm_float" (only its final Linear
static int8) next to "static" (nn.LSTM quantized too, through PyTorch's
default eager custom-module path, nn.quantizable.LSTM -> nn.quantized.LSTM).

Training: Adam with a one-cycle learning-rate schedule, batch 128, two
threads, torch.manual_seed(0) before each model, so reruns give the same
weights. About 13 minutes on two cores (cnn_bn and dwsep_cnn take most).

Run: scripts/setup.sh --peers && /usr/bin/python3 scripts/train_fashion.py
     [--models mlp,cnn_bn,...]  (only those; others' results are kept)
"""
import argparse
import copy
import ctypes
import gzip
import io
import json
import math
import os
import struct
import sys
import time

# Idle OpenMP threads sleep instead of spinning: with spinning, two training threads
# on two cores run up to 20x slower whenever anything else (a compiler) takes a core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.ao.quantization as tq  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "models", "fmnist")
FMNIST = "/usr/share/datasets/fashion-mnist"
BATCH = 128
CALIB_IMAGES = 1024
TRAIN_THREADS = 2


def set_threads(n):
    """torch.set_num_threads(n), and the same for OpenBLAS: Debian's torch calls the
    generic libblas.so.3 (OpenBLAS here), whose own thread pool torch doesn't size."""
    torch.set_num_threads(n)
    try:
        ctypes.CDLL("libblas.so.3").openblas_set_num_threads(n)
    except (OSError, AttributeError):  # reference BLAS, or not OpenBLAS: single-threaded
        pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split):
    images = read_idx(f"{FMNIST}/{split}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = read_idx(f"{FMNIST}/{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(images).unsqueeze(1).contiguous(), torch.from_numpy(labels)


# ---------------------------------------------------------------- models

def conv_bn_relu(cin, cout, k=3, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU())


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1, self.relu1 = nn.Linear(784, 256), nn.ReLU()
        self.fc2, self.relu2 = nn.Linear(256, 128), nn.ReLU()
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.relu1(self.fc1(self.flatten(x)))
        return self.fc3(self.relu2(self.fc2(x)))

    fuse_groups = [["fc1", "relu1"], ["fc2", "relu2"]]


class CnnBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = conv_bn_relu(1, 32)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = conv_bn_relu(32, 64)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1, self.relu = nn.Linear(64 * 7 * 7, 128), nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        x = self.flatten(self.pool2(self.conv2(x)))
        return self.fc2(self.relu(self.fc1(x)))

    fuse_groups = [["conv1.0", "conv1.1", "conv1.2"], ["conv2.0", "conv2.1", "conv2.2"],
                   ["fc1", "relu"]]


class DwSepCNN(nn.Module):
    blocks_cfg = [(32, 64, 2), (64, 128, 2), (128, 128, 1)]

    def __init__(self):
        super().__init__()
        layers = [conv_bn_relu(1, 32)]
        for cin, cout, stride in self.blocks_cfg:
            layers.append(conv_bn_relu(cin, cin, 3, stride, groups=cin))  # depthwise
            layers.append(conv_bn_relu(cin, cout, 1))                      # pointwise
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.features(x))))

    fuse_groups = [[f"features.{i}.0", f"features.{i}.1", f"features.{i}.2"]
                   for i in range(1 + 2 * len(blocks_cfg))]


class RowLSTM(nn.Module):
    def __init__(self, hidden=128):
        super().__init__()
        self.lstm = nn.LSTM(28, hidden, num_layers=1)  # batch_first=False: [T, N, 28]
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x):
        rows = x.squeeze(1).transpose(0, 1)  # [N,1,28,28] -> [28 steps, N, 28 pixels]
        out, _ = self.lstm(rows)
        return self.fc(out[-1])

    fuse_groups = []


class SelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.d, self.heads = d, heads
        self.scale = 1.0 / math.sqrt(d // heads)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, s = x.shape[0], x.shape[1]
        h, d = self.heads, self.d
        qkv = self.qkv(x).reshape(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)  # [3, b, h, s, d/h]
        q, k, v = qkv.unbind(0)
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        return self.proj(torch.matmul(att, v).transpose(1, 2).reshape(b, s, d))


class EncoderLayer(nn.Module):
    """Pre-norm: x + attn(ln1(x)), then x + ff(ln2(x))."""

    def __init__(self, d, heads, ff):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.act = nn.GELU()
        self.ff2 = nn.Linear(ff, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.ff2(self.act(self.ff1(self.ln2(x))))


class ViT(nn.Module):
    def __init__(self, d=64, heads=4, ff=128, layers=2, patch=7):
        super().__init__()
        self.patch = nn.Conv2d(1, d, patch, stride=patch)
        tokens = (28 // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.layers = nn.ModuleList([EncoderLayer(d, heads, ff) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos  # [N, 16, d]
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x).mean(dim=1))

    fuse_groups = []


# name: (class, epochs, learning rate, ONNX opset)
MODELS = {
    "mlp": (MLP, 8, 1e-3, 13),
    "cnn_bn": (CnnBN, 3, 1e-3, 13),
    "dwsep_cnn": (DwSepCNN, 4, 2e-3, 13),
    "lstm": (RowLSTM, 6, 2e-3, 13),
    "vit": (ViT, 12, 1e-3, 17),
}


# ---------------------------------------------------------------- training / evaluation

def train(model, xs, ys, epochs, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * math.ceil(len(xs) / BATCH), pct_start=0.2)
    model.train()
    for epoch in range(epochs):
        t0 = time.time()
        perm = torch.randperm(len(xs))
        total = 0.0
        for i in range(0, len(xs), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / len(xs):.4f} ({time.time() - t0:.1f} s)")
    model.eval()


@torch.no_grad()
def accuracy(model, xs, ys, batch=1000):
    correct = 0
    for i in range(0, len(xs), batch):
        correct += (model(xs[i:i + batch]).argmax(1) == ys[i:i + batch]).sum().item()
    return round(100.0 * correct / len(xs), 2)


def state_dict_bytes(model):
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


@torch.no_grad()
def latencies(models, xs, runs=20, warmup=5):
    """{label: model} -> {label: latencies in ms}, one thread (torch and OpenBLAS).
    The models take turns, run by run, so that load from other processes falls on
    all of them alike; the median is the figure, the minimum shows the noise."""
    prev = torch.get_num_threads()
    set_threads(1)
    out = {label: {} for label in models}
    try:
        for batch in (1, 32):
            x = xs[:batch].contiguous()
            times = {label: [] for label in models}
            for _ in range(warmup):
                for m in models.values():
                    m(x)
            for _ in range(runs):
                for label, m in models.items():
                    t0 = time.perf_counter()
                    m(x)
                    times[label].append((time.perf_counter() - t0) * 1e3)
            for label, t in times.items():
                out[label][f"batch{batch}_ms"] = round(float(np.median(t)), 4)
                out[label][f"batch{batch}_min_ms"] = round(float(np.min(t)), 4)
        for lat in out.values():
            lat["batch32_ms_per_image"] = round(lat["batch32_ms"] / 32, 4)
    finally:
        set_threads(prev)
    return out


# ---------------------------------------------------------------- export

def export_onnx(model, name, opset, test_x):
    path = os.path.join(OUT, f"{name}.onnx")
    example = test_x[:8].contiguous()
    torch.onnx.export(model, example, path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=opset, do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL)
    with torch.no_grad():
        logits = model(example)
    np.save(os.path.join(OUT, f"{name}.input.npy"), example.numpy())
    np.save(os.path.join(OUT, f"{name}.output.npy"), logits.numpy())
    return path


# ---------------------------------------------------------------- PyTorch quantization

class Quantized(nn.Module):
    """QuantStub -> model -> DeQuantStub: the whole model runs quantized."""

    def __init__(self, model):
        super().__init__()
        self.quant = tq.QuantStub()
        self.model = model
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.model(self.quant(x)))


def quantize_islands(model, types, qconfig):
    """Replaces each module of `types` by QuantStub -> module -> DeQuantStub, with
    `qconfig` only there: those layers run on int8 (input quantized with its own
    calibrated parameters, output dequantized), everything between them stays float."""
    for name, child in model.named_children():
        if isinstance(child, types):
            island = nn.Sequential(tq.QuantStub(), child, tq.DeQuantStub())
            island.qconfig = qconfig
            setattr(model, name, island)
        else:
            quantize_islands(child, types, qconfig)
    return model


def static_ptq(float_model, name, engine, calib_x, lstm_float=False):
    """Eager-mode static PTQ with `engine`'s default qconfig; returns the model and
    a note on what was quantized."""
    torch.backends.quantized.engine = engine
    qconfig = tq.get_default_qconfig(engine)
    inner = copy.deepcopy(float_model).eval()
    if name == "vit":
        # Only Conv (patch embedding) and Linear become int8; LayerNorm, softmax,
        # matmuls, GELU, the position-embedding and residual adds and the mean stay float.
        model = quantize_islands(inner, (nn.Linear, nn.Conv2d), qconfig)
        note = ("static int8: patch Conv2d and every nn.Linear (qkv, proj, ff1, ff2, head), "
                "each between its own QuantStub/DeQuantStub; float: LayerNorm, q@k^T and att@v "
                "matmuls, softmax, GELU, residual and position adds, mean pooling")
    elif name == "lstm" and lstm_float:
        model = quantize_islands(inner, (nn.Linear,), qconfig)
        note = "static int8: the final nn.Linear only; nn.LSTM left float"
    else:
        if inner.fuse_groups:
            tq.fuse_modules(inner, inner.fuse_groups, inplace=True)
        model = Quantized(inner)
        model.qconfig = qconfig
        note = {
            "mlp": "whole model static int8; Linear+ReLU fused",
            "cnn_bn": "whole model static int8; Conv+BN+ReLU and Linear+ReLU fused, MaxPool "
                      "and Flatten on int8",
            "dwsep_cnn": "whole model static int8; every Conv+BN+ReLU fused (depthwise too), "
                         "average pool on int8",
            "lstm": "whole model static int8: nn.LSTM through PyTorch's default eager custom "
                    "module path (nn.quantizable.LSTM observed, nn.quantized.LSTM converted: "
                    "int8 gate Linears, quantized gate adds/muls/sigmoid/tanh), final Linear int8",
        }[name]
    model.eval()
    tq.prepare(model, inplace=True)
    with torch.no_grad():
        for i in range(0, len(calib_x), 256):
            model(calib_x[i:i + 256])
    tq.convert(model, inplace=True)
    return model, note


def dynamic_ptq(float_model, engine):
    torch.backends.quantized.engine = engine
    return tq.quantize_dynamic(copy.deepcopy(float_model).eval(), {nn.Linear, nn.LSTM},
                               dtype=torch.qint8)


DYNAMIC_NOTES = {
    "mlp": "all three nn.Linear int8 (weights per tensor, activations quantized per batch)",
    "cnn_bn": "the two nn.Linear int8; Conv/BN/ReLU/MaxPool stay float (dynamic PTQ has no Conv)",
    "dwsep_cnn": "the final nn.Linear int8; all Conv/BN stay float (dynamic PTQ has no Conv)",
    "lstm": "nn.LSTM (gate weights) and the final nn.Linear int8",
    "vit": "every nn.Linear int8; patch Conv2d, LayerNorm, matmuls, softmax stay float",
}


# ---------------------------------------------------------------- main

def run_model(name, train_x, train_y, test_x, test_y):
    cls, epochs, lr, opset = MODELS[name]
    log(f"{name}: training {epochs} epochs, Adam lr {lr}, batch {BATCH}")
    torch.manual_seed(0)
    set_threads(TRAIN_THREADS)
    model = cls()
    t0 = time.time()
    train(model, train_x, train_y, epochs, lr)
    train_s = time.time() - t0
    model.eval()

    res = {"epochs": epochs, "lr": lr, "train_seconds": round(train_s, 1), "opset": opset,
           "params": sum(p.numel() for p in model.parameters())}
    res["float_acc"] = accuracy(model, test_x, test_y)
    log(f"  float accuracy {res['float_acc']}% ({train_s:.0f} s training)")

    path = export_onnx(model, name, opset, test_x)
    res["onnx_bytes"] = os.path.getsize(path)
    res["float_state_dict_bytes"] = state_dict_bytes(model)
    res["float_latency"] = None  # measured last, with the quantized models

    calib_x = train_x[:CALIB_IMAGES]
    timed = {"float": model}  # what gets a latency: float, dynamic, static with onednn
    res["dynamic"] = {"engine": "onednn", "notes": DYNAMIC_NOTES[name]}
    try:
        dyn = dynamic_ptq(model, "onednn")
        res["dynamic"]["acc"] = accuracy(dyn, test_x, test_y)
        res["dynamic"]["state_dict_bytes"] = state_dict_bytes(dyn)
        timed["dynamic"] = dyn
    except Exception as e:  # noqa: BLE001 - record what PyTorch says
        res["dynamic"]["error"] = f"{type(e).__name__}: {e}"
    log(f"  dynamic: {res['dynamic'].get('acc', res['dynamic'].get('error'))}")

    variants = [("static", False)] + ([("static_lstm_float", True)] if name == "lstm" else [])
    for key, lstm_float in variants:
        res[key] = {}
        for engine in ("onednn", "qnnpack"):
            entry = res[key][engine] = {}
            try:
                q, entry["notes"] = static_ptq(model, name, engine, calib_x, lstm_float)
                entry["acc"] = accuracy(q, test_x, test_y)
                entry["state_dict_bytes"] = state_dict_bytes(q)
                if engine == "onednn":
                    timed[key] = q
            except Exception as e:  # noqa: BLE001
                entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            log(f"  {key} {engine}: {entry.get('acc', entry.get('error'))}")

    torch.backends.quantized.engine = "onednn"
    load_before = os.getloadavg()[0]
    lat = latencies(timed, test_x)
    res["latency_loadavg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    for label, v in lat.items():
        if label == "float":
            res["float_latency"] = v
        elif label == "dynamic":
            res["dynamic"]["latency"] = v
        else:
            res[label]["onednn"]["latency"] = v
    log("  latency ms (batch 1 / batch 32): " + ", ".join(
        f"{label} {v['batch1_ms']:.3f} / {v['batch32_ms']:.3f}" for label, v in lat.items()))
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of " + ",".join(MODELS))
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n]
    for n in names:
        if n not in MODELS:
            parser.error(f"unknown model {n!r}")

    os.makedirs(OUT, exist_ok=True)
    results_path = os.path.join(OUT, "pytorch_results.json")
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f).get("models", {})

    train_x, train_y = load_split("train")
    test_x, test_y = load_split("t10k")
    for name in names:
        results[name] = run_model(name, train_x, train_y, test_x, test_y)
        results = {n: results[n] for n in MODELS if n in results}
        doc = {
            "torch": torch.__version__,
            "test_images": len(test_x),
            "calibration": f"first {CALIB_IMAGES} training images, HistogramObserver "
                           "(get_default_qconfig(engine)); onednn: per-channel weights, "
                           "qnnpack: per-tensor weights; activations u8, reduce_range=False",
            "latency": "median of 20 runs after 5 warm-up runs, one thread (torch and OpenBLAS); "
                       "dynamic and static latencies with the onednn engine",
            "models": results,
        }
        with open(results_path, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    log(f"wrote {results_path}")


if __name__ == "__main__":
    main()
