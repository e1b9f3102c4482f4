#!/usr/bin/python3
"""PyTorch's side of tests/export_check.py: torch.load reads each .pth that
ich-export wrote, the module it is meant for takes it with
load_state_dict(strict=True), and its eval logits on the same inputs equal
ich's (ich-forward) within 1e-5.

Slice models: torchvision's resnext101_32x8d(num_classes=6) as it is for
that architecture (the claim users rely on); for the small preset
(resnext_mini, 16 base planes, which torchvision has no constructor for)
torchvision's own ResNet and Bottleneck classes with those widths. Series
models: nn.LSTM / nn.GRU(bidirectional, batch_first) + nn.Linear, run on
packed sequences (each series' own length).

Usage: export_torch_check.py CASES.json   (written by export_check.py)
"""
import json
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import Bottleneck, ResNet

torch.set_num_threads(2)
PRESETS = {"resnext_mini": ([1, 1, 1, 1], 8, 4, 16)}  # blocks, groups, width per group, base planes


class SmallResNeXt(ResNet):
    """torchvision's ResNet with base planes other than 64 (its __init__ fixes 64)."""

    def __init__(self, blocks, groups, width, base, classes, in_ch):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = base, 1, groups, width
        self.conv1 = nn.Conv2d(in_ch, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(Bottleneck, base, blocks[0])
        self.layer2 = self._make_layer(Bottleneck, base * 2, blocks[1], stride=2)
        self.layer3 = self._make_layer(Bottleneck, base * 4, blocks[2], stride=2)
        self.layer4 = self._make_layer(Bottleneck, base * 8, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(base * 8 * 4, classes)


class Series(nn.Module):
    def __init__(self, cell, features, hidden, layers):
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(features, hidden, layers, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(2 * hidden, 6)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.fc(h)


def main():
    cases = json.load(open(sys.argv[1]))
    worst = 0.0
    failed = False
    for c in cases:
        sd = torch.load(c["pth"])
        if c["kind"] == "slice":
            in_ch = sd["conv1.weight"].shape[1]
            if c["arch"] == "resnext101_32x8d":
                m = torchvision.models.resnext101_32x8d(num_classes=6)
                if in_ch != 3:
                    m.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
            else:
                blocks, groups, width, base = PRESETS[c["arch"]]
                m = SmallResNeXt(blocks, groups, width, base, 6, in_ch)
        else:
            m = Series(c["cell"], c["features"], c["hidden"], c["layers"])
        m.load_state_dict(sd, strict=True)  # every name and shape, nothing left over
        m.eval()
        for x_path, ich_path, len_path in c["runs"]:
            x = torch.from_numpy(np.load(x_path))
            with torch.no_grad():
                if c["kind"] == "slice":
                    z = m(x).numpy()
                    ok = np.ones(z.shape, dtype=bool)
                else:
                    lengths = np.load(len_path)
                    z = m(x, torch.from_numpy(lengths)).numpy()
                    ok = np.arange(z.shape[1])[None, :, None] < lengths[:, None, None]
            ich = np.load(ich_path)
            d = float(np.abs(z - ich)[np.broadcast_to(ok, z.shape)].max())
            worst = max(worst, d)
            verdict = "ok" if d <= 1e-5 else "FAIL"
            failed |= verdict != "ok"
            print(f"torch {c['name']} {x_path.split('/')[-1]} {tuple(x.shape)}: max |PyTorch - ich| {d:.2e} "
                  f"(|logit| up to {np.abs(ich).max():.2f}) {verdict}")
    print(f"PyTorch {torch.__version__}: largest logit difference {worst:.2e} (bound 1e-5)")
    sys.exit(1 if failed else 0)


main()
