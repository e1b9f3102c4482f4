#!/usr/bin/python3
"""Reference for tests/test_train_reference.cpp: 20 training steps of the
small preset (resnext_mini) in PyTorch, from weights that our engine then
loads through the flat format.

resnext_mini is a ResNeXt with one Bottleneck per stage, 8 groups of width
4, and stage planes 16, 32, 64, 128 (torchvision's ResNet class fixes
64..512), so it is assembled here from torchvision's own Bottleneck class,
with torchvision's names. Adam (lr 1e-3), BCE with logits, train mode,
fixed batches (no augmentation), CPU, float32.

Writes OUT/train_ref.ichw: init/<name> (the initial state_dict), x<i> and
y<i> (batch i: 4 x 3 x 64 x 64 and 4 x 6), and for the float32 run and (suffix
64) the float64 run: loss (20 values) and final/<name> for a few tensors
after the 20 steps.
Usage: gen_train_reference.py --out DIR
"""
import argparse
import os
import sys

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichw  # noqa: E402


def resnext_mini(num_classes=6):
    m = nn.Module()
    m.conv1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(16)
    m.relu = nn.ReLU(inplace=True)
    m.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 16
    for i, planes in enumerate([16, 32, 64, 128]):
        stride = 1 if i == 0 else 2
        ds = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
        setattr(m, f"layer{i + 1}", nn.Sequential(Bottleneck(inplanes, planes, stride, ds, groups=8, base_width=4)))
        inplanes = planes * 4
    m.avgpool = nn.AdaptiveAvgPool2d(1)
    m.fc = nn.Linear(inplanes, num_classes)
    for mod in m.modules():  # torchvision's initialisation
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(x):
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return m.fc(torch.flatten(m.avgpool(x), 1))
    m.forward = forward
    return m


ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.manual_seed(0)
model = resnext_mini()
out = [(f"init/{k}", v.detach().numpy().copy()) for k, v in model.state_dict().items()]
batches = [(torch.randn(4, 3, 64, 64), (torch.rand(4, 6) < 0.3).float()) for _ in range(20)]
for i, (x, y) in enumerate(batches):
    out += [(f"x{i}", x.numpy().copy()), (f"y{i}", y.numpy().copy())]
# The same 20 steps in float32 and, from the same weights, in float64. Adam
# moves every weight by about lr whatever the size of its gradient, so the
# float32 rounding of near-zero gradients grows step by step: PyTorch's own
# float32 losses drift from its float64 ones by ~1e-3 after 15 steps. The
# float64 run is the exact check; the float32 one is held to the same drift.
models = {"": model, "64": resnext_mini().double()}
models["64"].load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()})
for tag, m in models.items():
    dt = torch.float64 if tag else torch.float32
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m.train()
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(m.forward(x.to(dt)), y.to(dt))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out.append((f"loss{tag}", np.array(losses, dtype=np.float64)))
    sd = m.state_dict()
    for k in ["conv1.weight", "layer3.0.conv2.weight", "fc.weight", "layer4.0.bn3.running_var"]:
        out.append((f"final{tag}/{k}", sd[k].numpy().copy()))
    print(f"losses{tag}", " ".join(f"{l:.5f}" for l in losses))
ichw.write(os.path.join(args.out, "train_ref.ichw"), out)
