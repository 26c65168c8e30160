#!/usr/bin/python3
"""Builds the models the graph-pass tests use (tests/unit/test_passes.cpp),
with PyTorch 1.13 (Debian's python3-torch), under tests/data/passes/:

  convbn.onnx   Conv+BatchNorm+ReLU, depthwise Conv+BatchNorm+ReLU6 (Clip),
                Linear+BatchNorm1d+ReLU, Linear; the module is in eval mode
                and exported with TrainingMode.PRESERVE and no constant
                folding, so the BatchNormalization nodes (inference form) stay
                in the graph for qforge's passes to fold, and Clip's bounds
                come through Cast nodes. Input f32[N,3,12,12].

Next to it, convbn.input.npy and convbn.output.npy hold an input (batch 3)
and PyTorch's output for it.

Run: scripts/setup.sh --peers && /usr/bin/python3 scripts/make_pass_models.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "passes")
torch.manual_seed(0)


class ConvBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 6 * 6, 16)
        self.bn3 = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.clamp(self.bn2(self.dw(x)), 0.0, 6.0)
        x = torch.relu(self.bn3(self.fc(torch.flatten(x, 1))))
        return self.head(x)


def main():
    os.makedirs(OUT, exist_ok=True)
    m = ConvBn()
    with torch.no_grad():  # BatchNorm statistics that matter
        for bn in (m.bn, m.bn2, m.bn3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.3, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    m.eval()
    x = torch.randn(3, 3, 12, 12)
    path = os.path.join(OUT, "convbn.onnx")
    torch.onnx.export(m, x, path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE)
    with torch.no_grad():
        y = m(x)
    np.save(os.path.join(OUT, "convbn.input.npy"), x.numpy())
    np.save(os.path.join(OUT, "convbn.output.npy"), y.numpy())
    print(f"{path}: {os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
