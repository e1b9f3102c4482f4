#!/usr/bin/python3
"""Reference for tests/test_float32_accuracy.cpp: how far PyTorch's float32
is from the float64 truth, op by op, on this machine.

Every input is drawn in float32 (so it is exact in both precisions); the op
then runs in PyTorch in float64 (the truth) and in float32. The C++ test runs
our float32 kernels on the same inputs and sets both errors side by side.
This runs where the test runs (ctest's fixture), so PyTorch's column is
measured with the same CPU and BLAS kernels as ours (OPENBLAS_CORETYPE
reaches both).

Shapes are ResNeXt-101's own where they are cheap (the grouped 3x3 of
layer2, 32 groups of width 8; the 2048 -> 6 head) and reduced in space
elsewhere, so that the sums have the lengths training sees.

For each case "<op>/<case>/" the file holds the inputs a, b, c..., the
upstream gradient gy (when the op has a backward), and for each result r
("y", "g_a", ...) r64 (truth) and r32 (PyTorch float32); plus params.
Usage: gen_accuracy_reference.py --out DIR
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichw  # noqa: E402

torch.manual_seed(2024)
out = []


def put(prefix, **arrays):
    for k, v in arrays.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy().copy()
        out.append((f"{prefix}/{k}", np.asarray(v)))


def case(prefix, fn, inputs, params=(), backward=True):
    """inputs: float32 tensors. Runs fn in both precisions; stores inputs,
    gy, and each result's truth (suffix 64) and PyTorch float32 (suffix 32).
    fn may return (y, {name: tensor}) for results besides y (kept as well)."""
    put(prefix, params=np.array(params, dtype=np.float64))
    names = "abcdefgh"
    for n, t in zip(names, inputs):
        put(prefix, **{n: t})
    gy = None
    for dt, tag in ((torch.float64, "64"), (torch.float32, "32")):
        xs = [t.to(dt).requires_grad_(backward) for t in inputs]
        y = fn(*xs)
        if isinstance(y, tuple):
            y, extra = y
            put(prefix, **{f"{k}{tag}": v for k, v in extra.items()})
        put(prefix, **{f"y{tag}": y})
        if not backward:
            continue
        if gy is None:
            gy = torch.randn(y.shape, dtype=torch.float32)
            put(prefix, gy=gy)
        y.backward(gy.to(dt))
        for n, x in zip(names, xs):
            put(prefix, **{f"g_{n}{tag}": x.grad})


def rnd(*shape, scale=1.0, offset=0.0):
    return (torch.randn(*shape) * scale + offset).float()


# conv2d: name -> (x, w, stride, pad, groups)
conv_cases = {
    "stem_7x7_s2": ((4, 3, 64, 64), (64, 3, 7, 7), 2, 3, 1),
    "grouped_3x3_g32": ((4, 256, 16, 16), (256, 8, 3, 3), 1, 1, 32),
    "grouped_3x3_g32_s2": ((4, 256, 16, 16), (256, 8, 3, 3), 2, 1, 32),
    "pointwise_1x1": ((4, 256, 16, 16), (512, 256, 1, 1), 1, 0, 1),
    "downsample_1x1_s2": ((4, 256, 16, 16), (512, 256, 1, 1), 2, 0, 1),
}
for name, (xs, ws, s, p, g) in conv_cases.items():
    fan_in = ws[1] * ws[2] * ws[3]
    case(f"conv2d/{name}", lambda x, w, s=s, p=p, g=g: F.conv2d(x, w, None, s, p, 1, g),
         [rnd(*xs).relu(), rnd(*ws, scale=(2.0 / fan_in) ** 0.5)], (s, p, g))

case("linear/head_2048x6", F.linear, [rnd(32, 2048).relu(), rnd(6, 2048, scale=0.02), rnd(6, scale=0.02)])


# Batch norm in training: an input whose mean is large against its spread
# (the case a one-pass variance gets wrong), the statistics written back.
def bn_train(x, gamma, beta, rm, rv):
    return F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-5)


for name, (shape, offset, spread) in {"centered": ((8, 64, 16, 16), 0.0, 1.0),
                                     "offset_mean": ((8, 64, 16, 16), 30.0, 0.5)}.items():
    x, gamma, beta = rnd(*shape, scale=spread, offset=offset), rnd(shape[1], scale=0.2, offset=1.0), rnd(shape[1])
    rm, rv = rnd(shape[1], scale=0.1), torch.rand(shape[1]) + 0.5

    def fn(a, b, c, rm=rm, rv=rv):
        rmd, rvd = rm.to(a.dtype).clone(), rv.to(a.dtype).clone()
        return bn_train(a, b, c, rmd, rvd), {"rm": rmd, "rv": rvd}
    case(f"batch_norm/{name}", fn, [x, gamma, beta])
    put(f"batch_norm/{name}", rm0=rm, rv0=rv)

case("max_pool2d/stem_3x3_s2_p1", lambda x: F.max_pool2d(x, 3, 2, 1), [rnd(4, 64, 32, 32)], (3, 2, 1))
case("adaptive_avg_pool2d/global_7x7", lambda x: F.adaptive_avg_pool2d(x, 1), [rnd(8, 2048, 7, 7).relu()])
case("sum/1m", torch.sum, [rnd(1 << 20, offset=0.5)])

target = (torch.rand(32, 6) < 0.3).float()
case("bce/32x6", lambda x: F.binary_cross_entropy_with_logits(x, target.to(x.dtype)), [rnd(32, 6, scale=3.0)])
put("bce/32x6", target=target)

# Adam: 20 steps of lr 1e-3 on one tensor, gradients spanning eight decades
# (the near-zero ones are where Adam's division amplifies rounding).
p0 = rnd(1 << 16, scale=0.05)
grads = [rnd(1 << 16) * torch.pow(10.0, -torch.randint(0, 8, (1 << 16,)).float()) for _ in range(20)]
put("adam", p0=p0, **{f"grad{i}": g for i, g in enumerate(grads)})
for dt, tag in ((torch.float64, "64"), (torch.float32, "32")):
    p = p0.to(dt).clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=1e-3)
    for g in grads:
        p.grad = g.to(dt).clone()
        opt.step()
    put("adam", **{f"p{tag}": p})

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
ichw.write(os.path.join(args.out, "accuracy_ref.ichw"), out)
print(f"wrote {len(out)} tensors, torch {torch.__version__}, {torch.get_num_threads()} threads")
