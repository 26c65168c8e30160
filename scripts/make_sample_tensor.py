#!/usr/bin/python3
"""Writes data/sample_activations.npy: the first 16 Fashion-MNIST test images
(Debian's dataset-fashion-mnist), as float32 [16, 1, 28, 28], normalised with
the data set's mean 0.2860 and standard deviation 0.3530, as a model's input
layer sees them. This is the bundled tensor of `qforge roundtrip`."""
import gzip
import os
import numpy as np

SRC = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
OUT = os.path.join(os.path.dirname(__file__), "..", "data", "sample_activations.npy")

with gzip.open(SRC, "rb") as f:
    raw = f.read()
magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
assert magic == 2051, "not an IDX image file"
images = np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, rows, cols)[:16]
x = ((images.astype(np.float32) / 255.0 - 0.2860) / 0.3530).astype(np.float32)
np.save(OUT, x)
print(f"wrote {OUT}: {x.shape} {x.dtype} range [{x.min():.4f}, {x.max():.4f}]")
