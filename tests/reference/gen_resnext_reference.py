#!/usr/bin/python3
"""Writes the ResNeXt-101 32x8d reference for tests/test_resnext.cpp.

torchvision's resnext101_32x8d with a fixed seed, fc replaced by
Linear(2048, 6), BatchNorm weights, biases and running statistics made
non-trivial (random affine, statistics calibrated on random batches), fc
weights positive (see below), saved
in both serialisations, with PyTorch's outputs:

  OUT/ref_legacy.pth   state_dict, legacy format (_use_new_zipfile_serialization=False)
  OUT/ref_zip.pth      state_dict, zip format (the default)
  OUT/x.npy            input (2,3,64,64);   OUT/x_odd.npy  input (1,3,97,131)
  OUT/ref.ichw         eval logits for both inputs; for one train-mode step, in
                       float32 and (suffix 64) in float64: logits, BCE loss,
                       gradients of conv1.weight, layer3.5.conv2.weight (grouped),
                       fc.weight, fc.bias, bn1.weight, layer4.2.bn3.weight, and
                       running statistics after the forward

About 1.5 GB of files (the checkpoints are 355 MB each); generated during the
test run, never committed. Usage: gen_resnext_reference.py --out DIR [--arch NAME]
"""
import argparse
import copy
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichw  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--arch", default="resnext101_32x8d")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(max(1, os.cpu_count() or 1))

m = getattr(torchvision.models, args.arch)()
m.fc = torch.nn.Linear(m.fc.in_features, 6)
bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
with torch.no_grad():
    for bn in bns:
        bn.weight.uniform_(0.5, 1.0)
        bn.bias.uniform_(-0.1, 0.1)
        bn.momentum = None  # cumulative average while calibrating
    m.train()
    for _ in range(2):
        m(torch.randn(4, 3, 64, 64))
    for bn in bns:
        bn.momentum = 0.1
        bn.num_batches_tracked.zero_()
    # Positive head weights make each logit a weighted average of the 2048
    # features instead of a sum with cancellation. A random-sign head
    # amplifies the features' float32 noise ~40x in that one dot product
    # (PyTorch's own float32 logits then differ from its float64 ones by
    # 2.4e-4 relative); this way the logits measure the backbone (7e-6).
    m.fc.weight.abs_()

sd = m.state_dict()
torch.save(sd, os.path.join(args.out, "ref_legacy.pth"), _use_new_zipfile_serialization=False)
torch.save(sd, os.path.join(args.out, "ref_zip.pth"))

x = torch.randn(2, 3, 64, 64)
x_odd = torch.randn(1, 3, 97, 131)
np.save(os.path.join(args.out, "x.npy"), x.numpy())
np.save(os.path.join(args.out, "x_odd.npy"), x_odd.numpy())
out = []
m.eval()
with torch.no_grad():
    out += [("eval_logits", m(x).numpy().copy()), ("eval_logits_odd", m(x_odd).numpy().copy())]

target = torch.tensor([[1, 0, 0, 1, 0, 1], [0, 0, 1, 0, 0, 1]], dtype=torch.float32)
out.append(("target", target.numpy()))
GRADS = ["conv1.weight", "layer3.5.conv2.weight", "fc.weight", "fc.bias", "bn1.weight", "layer4.2.bn3.weight"]
# And every batch norm's weight and bias (208 small tensors through the
# whole depth): one ill-conditioned gradient is one draw of float32 rounding,
# their typical error a measure of accuracy (tests/test_resnext.cpp).
GRADS = list(dict.fromkeys(GRADS + [n for n, _ in m.named_parameters()
                                    if n.startswith("bn1.") or ".bn" in n or ".downsample.1." in n]))
STATS = ["bn1.running_mean", "bn1.running_var", "layer3.17.bn2.running_var", "layer1.0.downsample.1.running_mean"]
# One train-mode step in float32 and, from the same weights, in float64.
# A freshly initialised 101-layer net in train mode (BatchNorm on batch
# statistics of 2 images) is badly conditioned for its deep gradients:
# PyTorch's own float32 gradients differ from its float64 ones by 5-25% in
# the max norm. The float64 step is the truth both float32 runs are held to.
m64 = copy.deepcopy(m).double()
for model, dt, tag in ((m, torch.float32, ""), (m64, torch.float64, "64")):
    model.train()
    logits = model(x.to(dt))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target.to(dt))
    loss.backward()
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    out += [(f"train_logits{tag}", logits.detach().numpy().copy()), (f"train_loss{tag}", loss.detach().numpy().copy())]
    out += [(f"grad{tag}/{n}", params[n].grad.numpy().copy()) for n in GRADS]
    out += [(f"after{tag}/{n}", buffers[n].numpy().copy()) for n in STATS]
ichw.write(os.path.join(args.out, "ref.ichw"), out)
print(f"{args.arch}: reference written to {args.out}")
