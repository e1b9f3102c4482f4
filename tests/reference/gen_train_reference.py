#!/usr/bin/python3
"""Reference for tests/test_train_reference.cpp: 20 training steps of the
small preset (resnext_mini) in PyTorch, from weights that our engine then
loads through the flat format, in 32 runs.

resnext_mini is a ResNeXt with one Bottleneck per stage, 8 groups of width
4, and stage planes 16, 32, 64, 128 (torchvision's ResNet class fixes
64..512), so it is assembled here from torchvision's own Bottleneck class,
with torchvision's names. Adam (lr 1e-3), BCE with logits, train mode,
fixed batches (no augmentation), CPU, float32.

Why 32 runs: one float32 training trajectory is a single draw of a chaotic
process. Adam moves every weight by about lr whatever the size of its
gradient, so float32 rounding (~3e-6 relative in the gradients, ours and
PyTorch's alike) grows about 2.5x a step: after 15 steps PyTorch's own
float32 losses are 1e-3..1e-2 from its float64 ones, by an amount that
changes with the CPU, the BLAS kernel and the thread count. Over 32 runs
(same initial weights and images; each run its own order of the images and
its own labels) the typical deviation is a stable measure of accuracy.

Writes OUT/train_ref.ichw: init/<name> (the initial state_dict), x<i> (20
batches of 4 x 3 x 64 x 64), and per run r: run<r>/order (the batch index of
each step), run<r>/y<k> (the labels of step k, 4 x 6), run<r>/loss32 and
run<r>/loss64 (the 20 losses of the float32 and the float64 run); for run 0
also final64/<name>, a few tensors after the 20 float64 steps.
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
RUNS, STEPS = 32, 20
images = [torch.randn(4, 3, 64, 64) for _ in range(STEPS)]
out += [(f"x{i}", x.numpy().copy()) for i, x in enumerate(images)]


def train(order, labels, dt):
    m = resnext_mini().to(dt)
    m.load_state_dict(model.state_dict())  # copied into m's dtype
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m.train()
    losses = []
    for i, y in zip(order, labels):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(m.forward(images[i].to(dt)), y.to(dt))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return m, np.array(losses, dtype=np.float64)


for r in range(RUNS):
    g = torch.Generator().manual_seed(100 + r)
    order = list(range(STEPS)) if r == 0 else torch.randperm(STEPS, generator=g).tolist()
    labels = [(torch.rand(4, 6, generator=g) < 0.3).float() for _ in range(STEPS)]
    out.append((f"run{r}/order", np.array(order, dtype=np.int64)))
    out += [(f"run{r}/y{k}", y.numpy().copy()) for k, y in enumerate(labels)]
    for dt, tag in ((torch.float32, "32"), (torch.float64, "64")):
        m, losses = train(order, labels, dt)
        out.append((f"run{r}/loss{tag}", losses))
        if r == 0 and tag == "64":
            sd = m.state_dict()
            for k in ["conv1.weight", "layer3.0.conv2.weight", "fc.weight", "layer4.0.bn3.running_var"]:
                out.append((f"final64/{k}", sd[k].numpy().copy()))
ichw.write(os.path.join(args.out, "train_ref.ichw"), out)
print(f"{RUNS} runs of {STEPS} steps, torch {torch.__version__}")
