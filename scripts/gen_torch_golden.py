#!/usr/bin/python3
"""Regenerates tests/golden/torch_quant.json, the golden vectors that qforge's
quantization arithmetic is tested against, from PyTorch 1.13 (Debian's
python3-torch). The tests do not need PyTorch: the JSON is committed.

    sudo apt-get install python3-torch   # scripts/setup.sh --peers does this
    /usr/bin/python3 scripts/gen_torch_golden.py

Float arrays are written as strings, each the shortest decimal that reads
back (strtof) as the same float32; scalars are JSON numbers (float64, exact)."""
import json
import os
import sys
import warnings

import torch
from torch.ao.quantization import observer as O
from torch.ao.quantization.fake_quantize import FakeQuantize

warnings.filterwarnings("ignore")
torch.manual_seed(20261122)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden",
                   "torch_quant.json")

DTYPES = {"u8": torch.quint8, "i8": torch.qint8}


def fl(t):
    """A float32 tensor as a flat list of strings: NumPy's shortest decimal
    that reads back (strtof) as the same float32. Half the size of doubles."""
    return [str(v) for v in t.detach().to(torch.float32).reshape(-1).numpy()]


def ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def f32(v):
    return float(torch.tensor(v, dtype=torch.float32))


def datasets():
    """Named lists of batches covering the edge cases the arithmetic must handle."""
    g = torch.Generator().manual_seed(7)
    n = lambda *s: torch.randn(*s, generator=g)
    return {
        "normal": [n(4, 3, 8) * 2.5 + 0.3 for _ in range(3)],
        "relu": [torch.relu(n(4, 3, 8)) * 4 for _ in range(3)],        # range without 0 below
        "positive": [n(4, 3, 8).abs() + 1.5 for _ in range(3)],        # must widen to contain 0
        "negative": [-(n(4, 3, 8).abs() + 0.25) for _ in range(3)],
        "zeros": [torch.zeros(4, 3, 8) for _ in range(2)],               # all-zero tensor
        "constant": [torch.full((4, 3, 8), 0.75) for _ in range(2)],    # min == max
        "wide": [n(4, 3, 8) * 1e30 for _ in range(2)],                  # very large range
        "tiny": [n(4, 3, 8) * 1e-9 for _ in range(2)],                  # scale clamps to eps
        "growing": [n(4, 3, 8) * (1 + 3 * i) for i in range(4)],        # range moves
    }


def observer_cases():
    cases = []
    for data_name, batches in datasets().items():
        for dt_name, dt in DTYPES.items():
            for scheme in ("affine", "symmetric"):
                for rr in (False, True):
                    if dt_name == "u8" and scheme == "symmetric" and rr:
                        continue  # PyTorch refuses reduce_range for symmetric quint8
                    pt = torch.per_tensor_affine if scheme == "affine" else torch.per_tensor_symmetric
                    pc = torch.per_channel_affine if scheme == "affine" else torch.per_channel_symmetric
                    kinds = [
                        ("minmax", O.MinMaxObserver(dtype=dt, qscheme=pt, reduce_range=rr), -1),
                        ("moving_average", O.MovingAverageMinMaxObserver(
                            dtype=dt, qscheme=pt, reduce_range=rr), -1),
                        ("per_channel_minmax", O.PerChannelMinMaxObserver(
                            ch_axis=1, dtype=dt, qscheme=pc, reduce_range=rr), 1),
                        ("per_channel_moving_average", O.MovingAveragePerChannelMinMaxObserver(
                            ch_axis=0, dtype=dt, qscheme=pc, reduce_range=rr), 0),
                    ]
                    for kind, obs, axis in kinds:
                        steps = []
                        for b in batches:
                            obs(b)
                            s, z = obs.calculate_qparams()
                            steps.append({"min": fl(obs.min_val), "max": fl(obs.max_val),
                                          "scale": fl(s), "zero_point": ints(z)})
                        cases.append({"kind": kind, "data": data_name, "dtype": dt_name,
                                      "scheme": scheme, "reduce_range": rr, "axis": axis,
                                      "qmin": obs.quant_min, "qmax": obs.quant_max,
                                      "shape": list(batches[0].shape),
                                      "batches": [fl(b) for b in batches], "steps": steps})
    return cases


def quantize_cases():
    g = torch.Generator().manual_seed(11)
    cases = []
    for dt_name, dt in DTYPES.items():
        for scale, zp in ((0.1, 3 if dt_name == "i8" else 128), (0.0123, 0), (1.7, -5 if dt_name == "i8" else 20)):
            s = f32(scale)
            x = torch.randn(257, generator=g) * 30 * s
            # Exact ties k.5 * scale and their float neighbours: where rounding matters.
            k = torch.arange(-40, 40, dtype=torch.float32)
            ties = (k + 0.5) * s
            x = torch.cat([x, ties, torch.nextafter(ties, ties + 1), torch.tensor([1e20, -1e20, 0.0])])
            q = torch.quantize_per_tensor(x, s, zp, dt)
            cases.append({"kind": "per_tensor", "dtype": dt_name, "scale": s, "zero_point": zp,
                          "x": fl(x), "q": ints(q.int_repr()), "dq": fl(q.dequantize())})
        for axis in (0, 1):
            x = torch.randn(4, 6, 5, generator=g) * 3
            c = x.shape[axis]
            scales = torch.tensor([f32(0.01 + 0.02 * i) for i in range(c)], dtype=torch.float64)
            zps = torch.tensor([(i * 7) % 20 - (10 if dt_name == "i8" else 0) + (0 if dt_name == "i8" else 100)
                                for i in range(c)], dtype=torch.int64)
            q = torch.quantize_per_channel(x, scales, zps, axis, dt)
            cases.append({"kind": "per_channel", "dtype": dt_name, "axis": axis,
                          "shape": list(x.shape), "scale": [float(v) for v in scales],
                          "zero_point": ints(zps), "x": fl(x), "q": ints(q.int_repr()),
                          "dq": fl(q.dequantize())})
    return cases


def histogram_cases():
    g = torch.Generator().manual_seed(13)
    cases = []
    # Batches whose min and max are integers: PyTorch 1.13 calls
    # torch.histc(x, min=int(min), max=int(max)), truncating the range, so
    # only integer endpoints give it a histogram over the true range. Range
    # growth by a whole multiple of the old range keeps its re-binning exact.
    def with_ends(t, lo, hi):
        """Maps t affinely so that its own min and max land exactly on lo and hi."""
        t = t.reshape(-1).double()
        t = (t - t.min()) / (t.max() - t.min()) * (hi - lo) + lo
        t = t.float()
        t[t.argmin()], t[t.argmax()] = lo, hi
        return t.reshape(-1, 64)
    dist = torch.distributions
    datas = {
        "normal": [with_ends(torch.randn(8192, generator=g), -4.0, 5.0)],
        "student_t": [with_ends(dist.StudentT(3.0).sample((16384,)), -30.0, 25.0)],
        "laplace": [with_ends(dist.Laplace(0.0, 1.0).sample((16384,)), -12.0, 13.0)],
        "lognormal": [with_ends(dist.LogNormal(0.0, 1.0).sample((16384,)), 0.0, 60.0)],
        "uniform": [with_ends(torch.rand(4096, generator=g), -3.0, 5.0)],
        "two_batches": [with_ends(torch.randn(4096, generator=g), -4.0, 4.0),
                        with_ends(dist.StudentT(4.0).sample((4096,)), -4.0, 12.0)],
    }
    for name, batches in datas.items():
        # The search uses 2^8 levels for both 8-bit types; two variants suffice.
        for dt_name, scheme in (("u8", "affine"), ("i8", "symmetric")):
            qs = torch.per_tensor_affine if scheme == "affine" else torch.per_tensor_symmetric
            obs = O.HistogramObserver(dtype=DTYPES[dt_name], qscheme=qs)
            for b in batches:
                obs(b)
            new_min, new_max = obs._non_linear_param_search()
            s, z = obs.calculate_qparams()
            cases.append({"data": name, "dtype": dt_name, "scheme": scheme,
                          "batches": [fl(b) for b in batches],
                          "hist_min": float(obs.min_val), "hist_max": float(obs.max_val),
                          "bins": obs.bins,
                          "histogram": fl(obs.histogram),
                          "range_min": float(new_min), "range_max": float(new_max),
                          "scale": fl(s), "zero_point": ints(z)})
    return cases


def fake_quant_cases():
    g = torch.Generator().manual_seed(17)
    cases = []
    configs = [
        ("u8", "affine", True, -1),    # PyTorch's default_fake_quant
        ("u8", "affine", False, -1),
        ("i8", "symmetric", False, -1),
        ("i8", "affine", True, -1),
        ("i8", "symmetric", False, 0),  # default_per_channel_weight_fake_quant
        ("u8", "affine", False, 1),
    ]
    for dt_name, scheme, rr, axis in configs:
        dt = DTYPES[dt_name]
        if axis < 0:
            qs = torch.per_tensor_affine if scheme == "affine" else torch.per_tensor_symmetric
            obs = O.MovingAverageMinMaxObserver.with_args(dtype=dt, qscheme=qs, reduce_range=rr)
        else:
            qs = torch.per_channel_affine if scheme == "affine" else torch.per_channel_symmetric
            obs = O.MovingAveragePerChannelMinMaxObserver.with_args(
                ch_axis=axis, dtype=dt, qscheme=qs, reduce_range=rr)
        fq = FakeQuantize(observer=obs)
        steps = []
        batches = []
        for i in range(3):
            x = (torch.randn(4, 3, 6, generator=g) * (1 + i)).requires_grad_(True)
            gy = torch.randn(4, 3, 6, generator=g)
            y = fq(x)
            y.backward(gy)
            batches.append(fl(x))
            steps.append({"grad_out": fl(gy), "y": fl(y), "grad_in": fl(x.grad),
                          "scale": fl(fq.scale), "zero_point": ints(fq.zero_point)})
        cases.append({"dtype": dt_name, "scheme": scheme, "reduce_range": rr, "axis": axis,
                      "quant_min": fq.quant_min, "quant_max": fq.quant_max, "shape": [4, 3, 6],
                      "batches": batches, "steps": steps})
    return cases


def main():
    golden = {
        "generator": "scripts/gen_torch_golden.py",
        "torch_version": torch.__version__,
        "quantize": quantize_cases(),
        "observers": observer_cases(),
        "histogram": histogram_cases(),
        "fake_quantize": fake_quant_cases(),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
