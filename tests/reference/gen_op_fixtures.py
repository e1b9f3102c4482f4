#!/usr/bin/python3
"""Writes tests/fixtures/ops.ichw: PyTorch's outputs and gradients for every
engine op, in float32, for tests/test_reference_ops.cpp and test_optim.cpp.

Run with Debian's torch (python3-torch), from the repository root:
    /usr/bin/python3 tests/reference/gen_op_fixtures.py [--out tests/fixtures/ops.ichw]

For each case "<op>/<case>/" the file holds the inputs, an upstream gradient
"gy", PyTorch's output "y" and the gradients "g_<input>" of y.backward(gy),
plus "params" (float64) with the op's integer settings. The C++ test runs the
same op on the same inputs and compares. Deterministic (seeded).
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichw  # noqa: E402

torch.manual_seed(1234)
out = []


def put(prefix, **arrays):
    for k, v in arrays.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy().copy()  # numpy would share memory with later in-place updates
        out.append((f"{prefix}/{k}", np.asarray(v)))


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float32).requires_grad_(True)


def run(prefix, fn, inputs, params=()):
    """fn(*inputs) -> y; stores inputs, y, gy and the gradient of each input."""
    y = fn(*inputs)
    gy = torch.randn_like(y)
    y.backward(gy)
    put(prefix, y=y, gy=gy, params=np.array(params, dtype=np.float64))
    for name, t in zip("abcdefgh", inputs):
        put(prefix, **{name: t})
        if t.grad is not None:
            put(prefix, **{f"g_{name}": t.grad})


# conv2d: (x shape, w shape, bias, stride, pad, groups)
conv_cases = {
    "plain": ((2, 3, 7, 9), (4, 3, 3, 3), True, 1, 1, 1),
    "groups2_stride2": ((2, 4, 8, 6), (6, 2, 3, 3), False, 2, 1, 2),
    "groups32": ((1, 64, 5, 7), (64, 2, 3, 3), False, 1, 1, 32),
    "downsample_1x1_s2": ((2, 8, 9, 11), (16, 8, 1, 1), False, 2, 0, 1),
    "stem_7x7_s2": ((2, 3, 11, 13), (5, 3, 7, 7), False, 2, 3, 1),
    "pointwise_1x1": ((2, 16, 5, 5), (8, 16, 1, 1), True, 1, 0, 1),
}
for name, (xs, ws, bias, s, p, g) in conv_cases.items():
    inputs = [leaf(*xs), leaf(*ws)] + ([leaf(ws[0])] if bias else [])
    run(f"conv2d/{name}", lambda x, w, b=None: F.conv2d(x, w, b, stride=s, padding=p, groups=g), inputs,
        (s, p, g, int(bias)))

# batch norm, training: three steps to check the running statistics too.
bn_x = [torch.randn(4, 3, 5, 6) * 2 + 1 for _ in range(3)]
for mode in ("train", "eval"):
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(3) + 0.5)
        bn.bias.copy_(torch.randn(3))
        bn.running_mean.copy_(torch.randn(3) * 0.1)
        bn.running_var.copy_(torch.rand(3) + 0.5)
    put(f"bn/{mode}", gamma=bn.weight, beta=bn.bias, rm0=bn.running_mean.clone(), rv0=bn.running_var.clone())
    bn.train(mode == "train")
    for step, x0 in enumerate(bn_x):
        x = x0.clone().requires_grad_(True)
        bn.zero_grad()
        y = bn(x)
        gy = torch.randn_like(y)
        y.backward(gy)
        put(f"bn/{mode}/{step}", x=x, y=y, gy=gy, g_x=x.grad, g_gamma=bn.weight.grad, g_beta=bn.bias.grad,
            rm=bn.running_mean, rv=bn.running_var)

run("relu/a", F.relu, [leaf(3, 4, 5)])
run("sigmoid/a", torch.sigmoid, [leaf(3, 4, 5)])
# max pool: (x shape, kernel, stride, pad)
for name, (xs, k, s, p) in {"stem_3x3_s2_p1": ((2, 3, 9, 10), 3, 2, 1), "k2_s2": ((1, 2, 8, 8), 2, 2, 0)}.items():
    run(f"max_pool2d/{name}", lambda x: F.max_pool2d(x, k, s, p), [leaf(*xs)], (k, s, p))
for name, (xs, o) in {"global": ((2, 3, 7, 5), (1, 1)), "3x2": ((2, 3, 7, 5), (3, 2))}.items():
    run(f"adaptive_avg_pool2d/{name}", lambda x: F.adaptive_avg_pool2d(x, o), [leaf(*xs)], o)
run("linear/a", F.linear, [leaf(5, 7), leaf(3, 7), leaf(3)])
run("add/a", torch.add, [leaf(2, 3, 4), leaf(2, 3, 4)])
run("mul/a", torch.mul, [leaf(2, 3, 4), leaf(2, 3, 4)])

# BCE with logits: targets and pos_weight are constants; gy is a scalar.
logits = torch.randn(8, 6) * 3
logits[0, 0], logits[1, 1] = 40.0, -40.0  # far tails must stay finite
target = (torch.rand(8, 6) > 0.7).float()
pos_weight = torch.rand(6) * 5 + 0.5
for name, pw in (("plain", None), ("pos_weight", pos_weight)):
    x = logits.clone().requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(x, target, pos_weight=pw)
    loss.backward()
    put(f"bce/{name}", x=x, target=target, y=loss, g_x=x.grad)
    if pw is not None:
        put(f"bce/{name}", pos_weight=pw)

# Optimizers: five steps on fixed parameters and gradients.
p0 = torch.randn(3, 11)
grads = [torch.randn(3, 11) for _ in range(5)]
put("optim", p0=p0, **{f"grad{i}": g for i, g in enumerate(grads)})
configs = {
    "adam": (torch.optim.Adam, dict(lr=1e-2)),
    "adam_wd": (torch.optim.Adam, dict(lr=2e-5, weight_decay=1e-2, betas=(0.8, 0.99), eps=1e-6)),
    "sgd": (torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum_wd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-3, dampening=0.1)),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
}
for name, (cls, kw) in configs.items():
    p = p0.clone().requires_grad_(True)
    opt = cls([p], **kw)
    for i, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        put(f"optim/{name}", **{f"p{i}": p})

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/ops.ichw")
    args = ap.parse_args()
    ichw.write(args.out, out)
    print(f"wrote {len(out)} tensors to {args.out} ({os.path.getsize(args.out)} bytes), torch {torch.__version__}")
