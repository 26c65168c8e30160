#!/usr/bin/python3
"""Builds the models qforge's benchmarks and tests use, with PyTorch 1.13
(Debian's python3-torch), and exports them to ONNX under models/:

  fashion_cnn.onnx      a small CNN trained one epoch on Fashion-MNIST
                        (Debian's dataset-fashion-mnist), input f32[N,1,28,28]
  mobilenet_dw.onnx     a MobileNet-style depthwise-separable CNN (random
                        weights), input f32[N,3,96,96]
  transformer4.onnx     a 4-layer Transformer encoder, d=256, 4 heads, ff=1024
                        (random weights), input i64[N,64] token ids
  upsample_seg.onnx     a small segmentation-style network (random weights):
                        strided Conv, ConvTranspose, nearest Upsample, a 1x1
                        Conv and Softmax over the channels; input f32[N,1,28,28]

Next to each model, <name>.input.npy and <name>.output.npy hold an input
(batch 2) and PyTorch's output for it: qforge's tests compare with them.

Run: scripts/setup.sh --peers && /usr/bin/python3 scripts/make_models.py [NAME...]
(no names: all of them)
"""
import gzip
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")
FMNIST = "/usr/share/datasets/fashion-mnist"
torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(2)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def conv_bn(cin, cout, stride, groups=1, k=3):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU6())


class MobileNetDW(nn.Module):
    def __init__(self):
        super().__init__()
        layers = [conv_bn(3, 32, 2)]
        cfg = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)]
        for cin, cout, s in cfg:
            layers += [conv_bn(cin, cin, s, groups=cin), conv_bn(cin, cout, 1, k=1)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)

    def forward(self, x):
        b, s, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).split(d, dim=-1)
        q = q.reshape(b, s, h, d // h).transpose(1, 2)
        k = k.reshape(b, s, h, d // h).transpose(1, 2)
        v = v.reshape(b, s, h, d // h).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, s, d)
        x = self.ln1(x + self.proj(y))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class Transformer(nn.Module):
    def __init__(self, vocab=1000, d=256, heads=4, ff=1024, layers=4, seq=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, seq, d) * 0.02)
        self.layers = nn.ModuleList([EncoderLayer(d, heads, ff) for _ in range(layers)])
        self.head = nn.Linear(d, 10)

    def forward(self, ids):
        x = self.embed(ids) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean(dim=1))


class UpsampleSeg(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        y = F.relu(self.up(F.relu(self.down(x))))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        return torch.softmax(self.head(y), dim=1)


def train_fashion(model):
    x = read_idx(f"{FMNIST}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = read_idx(f"{FMNIST}/train-labels-idx1-ubyte.gz").astype(np.int64)
    xt = torch.from_numpy(x).unsqueeze(1)
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), 128):
        idx = perm[i:i + 128]
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xs = read_idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    ys = read_idx(f"{FMNIST}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    with torch.no_grad():
        pred = model(torch.from_numpy(xs).unsqueeze(1)).argmax(1).numpy()
    print(f"fashion_cnn: test accuracy {np.mean(pred == ys) * 100:.2f}% after one epoch", file=sys.stderr)




def export(model, example, name, input_name, dynamic):
    model.eval()
    path = os.path.join(ROOT, f"{name}.onnx")
    torch.onnx.export(model, example, path, input_names=[input_name], output_names=["logits"],
                      dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
                      opset_version=17, do_constant_folding=True)
    with torch.no_grad():
        out = model(example)
    np.save(os.path.join(ROOT, f"{name}.input.npy"), example.numpy())
    np.save(os.path.join(ROOT, f"{name}.output.npy"), out.numpy())
    print(f"{path}: {os.path.getsize(path)} bytes", file=sys.stderr)


def main():
    os.makedirs(ROOT, exist_ok=True)
    want = set(sys.argv[1:]) or {"fashion_cnn", "mobilenet_dw", "transformer4", "upsample_seg"}
    if "fashion_cnn" in want:
        cnn = FashionCNN()
        train_fashion(cnn)
        xs = read_idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz")[:2].astype(np.float32) / 255.0
        export(cnn, torch.from_numpy(xs).unsqueeze(1).contiguous(), "fashion_cnn", "image", True)

    if "mobilenet_dw" in want:
        mb = MobileNetDW()
        with torch.no_grad():  # give BatchNorm non-trivial statistics
            for m in mb.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        export(mb, torch.randn(2, 3, 96, 96), "mobilenet_dw", "image", True)

    if "transformer4" in want:
        tr = Transformer()
        export(tr, torch.randint(0, 1000, (2, 64)), "transformer4", "input_ids", True)

    if "upsample_seg" in want:
        torch.manual_seed(3)
        xs = read_idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz")[:2].astype(np.float32) / 255.0
        export(UpsampleSeg(), torch.from_numpy(xs).unsqueeze(1).contiguous(), "upsample_seg", "image", True)


if __name__ == "__main__":
    main()
