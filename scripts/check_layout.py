#!/usr/bin/env python3
"""Each folder includes only folders before it (README, "Layout").

The order is read from the README's sentence "Each folder uses only folders
above it in this list (engine, io, ...)", so the rule and its statement
cannot drift apart. Every #include "<folder>/..." in a folder's .h, .cpp,
.cu and .inc files is checked; an include of a later folder (a dependency
upwards, or a circle) is reported with file and line, and the exit status
is 1. Usage: scripts/check_layout.py [ROOT]

With --ops it checks instead that the ops line up file for file (docs/
engine.md, "The op set"): every engine/ops/<op>.cpp has its header
engine/ops/<op>.h, its reference kernels engine/cpu/<op>.cpp, its CUDA
kernels engine/cuda/<op>.cu, its page docs/layers/<op>.md and at least one
row in the op table tests/op_cases.cpp whose name starts "<op>"; and every
kernel file of cpu/ and cuda/ belongs to an op or is one of the shared
helpers listed below.
"""
import os
import re
import sys

args = [a for a in sys.argv[1:] if a != "--ops"]
root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# Kernel files that serve several ops, not one: the CPU's GEMM and direct
# convolution, its bfloat16 inference convolutions; the GPU's context, memory, allocator
# and graphs.
CPU_SHARED = {"gemm", "conv2d_direct", "conv_bf16"}
CUDA_SHARED = {"context", "allocator", "memory", "graph"}
# Ops whose cases cannot be rows of a generated-input table: the optimizers
# (a state over steps; tests/test_optim.cpp) and autocast (a mode of the
# other ops; their 16-bit rows); input is a row (normalize_input).
NO_ROWS = {"optim", "amp"}


def check_ops():
    def stems(folder, ext):
        d = os.path.join(root, folder)
        return {f[: -len(ext)] for f in os.listdir(d) if f.endswith(ext)}
    ops = stems("engine/ops", ".cpp")
    table = open(os.path.join(root, "tests/op_cases.cpp"), encoding="utf-8").read()
    rows = set(re.findall(r'"([a-z_0-9]+)/[^"]*"', table))
    bad = []
    for op in sorted(ops):
        for need in (f"engine/ops/{op}.h", f"engine/cpu/{op}.cpp", f"engine/cuda/{op}.cu", f"docs/layers/{op}.md"):
            if not os.path.isfile(os.path.join(root, need)):
                bad.append(f"op {op}: {need} is missing")
        if op not in NO_ROWS and op not in rows:
            bad.append(f"op {op}: no row named '{op}/...' in tests/op_cases.cpp")
    for folder, ext, shared in (("engine/cpu", ".cpp", CPU_SHARED), ("engine/cuda", ".cu", CUDA_SHARED)):
        for stem in sorted(stems(folder, ext) - ops - shared):
            bad.append(f"{folder}/{stem}{ext}: no op engine/ops/{stem}.cpp (a kernel file belongs to an op)")
    for b in bad:
        print(b)
    print(f"check_layout --ops: {len(ops)} ops, {len(bad)} problems")
    sys.exit(1 if bad else 0)


if "--ops" in sys.argv[1:]:
    check_ops()
readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
m = re.search(r"Each folder uses only folders\s+above it in this list \(([^)]*)\)", readme)
if not m:
    sys.exit("check_layout: README.md has no 'Each folder uses only folders above it in this list (...)' sentence")
order = [w.strip() for w in m.group(1).replace("\n", " ").split(",")]
missing = [d for d in order if not os.path.isdir(os.path.join(root, d))]
if missing:
    sys.exit(f"check_layout: README.md names folders that do not exist: {', '.join(missing)}")
include = re.compile(r'\s*#\s*include\s+"([A-Za-z0-9_]+)/')
bad, checked = [], 0
for rank, folder in enumerate(order):
    for dirpath, _, files in os.walk(os.path.join(root, folder)):
        for name in sorted(files):
            if not name.endswith((".h", ".cpp", ".cu", ".cuh", ".inc")):
                continue
            path = os.path.join(dirpath, name)
            for lineno, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
                hit = include.match(line)
                if not hit or hit.group(1) not in order:
                    continue
                checked += 1
                if order.index(hit.group(1)) > rank:
                    bad.append(f"{os.path.relpath(path, root)}:{lineno}: {folder}/ includes {hit.group(1)}/, "
                               f"which comes after it ({' < '.join(order)})")
for b in bad:
    print(b)
print(f"check_layout: {checked} includes across folders in {len(order)} folders, {len(bad)} against the order")
sys.exit(1 if bad else 0)
