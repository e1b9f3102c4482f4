#!/usr/bin/env python3
"""One table of ratios from the training benchmarks of a GPU run.

Reads ich-bench-train's table (bench_ich.md), the PyTorch eager baseline's
(bench_torch.md, from shared/bench/torch_resnext_baseline.py) and, when
given, torch.compile's (bench_compile.md, from bench/torch_compile_throughput.py),
and prints one row per ich configuration: its images/s and peak GiB, PyTorch
eager's at the same precision and batch and the ratios ich/PyTorch, and
torch.compile's images/s with that ratio. ich's bf16 (with or without
channels-last, eager or as a CUDA graph: the "ich" column says which) is
compared with PyTorch's "bf16 AMP + channels_last", fp32 with fp32 (PyTorch's
fp32 runs cuDNN convolutions on TF32 by default, so ich's "+tf32" rows are the
like-for-like ones; plain fp32 is strict float32).
Targets (issue 7): bf16 speed ratio >= 1.2 with memory ratio <= 1.0; fp32 at
batch 8 (the seed's setting) speed ratio >= 1.0.

Usage: bench/compare_torch.py bench_ich.md bench_torch.md [bench_compile.md]
"""
import sys


def precision_of(cell):
    return "bf16" if "bf16" in cell or "amp" in cell else "fp16" if "fp16" in cell else "fp32"


def rows(path, precision_col, batch_col, ips_col, peak_col):
    """(variant cell, precision, batch, images/s, peak GiB) for each data row; '-' cells give None."""
    out = []
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return out
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) <= max(precision_col, batch_col, ips_col, peak_col) or not cells[batch_col].isdigit():
            continue
        num = lambda c: float(c) if c not in ("-", "") else None
        out.append((cells[precision_col], precision_of(cells[precision_col]), int(cells[batch_col]),
                    num(cells[ips_col]), num(cells[peak_col])))
    return out


def main():
    ich = rows(sys.argv[1], 1, 2, 3, 4)  # | engine | precision | batch | images/s | peak GiB | ...
    eager = {(p, b): (ips, peak) for _, p, b, ips, peak in rows(sys.argv[2], 0, 1, 2, 3)}
    compiled = {(p, b): (ips, peak) for _, p, b, ips, peak in rows(sys.argv[3], 0, 1, 2, 3)} \
        if len(sys.argv) > 3 else {}
    fmt = lambda v: f"{v:.1f}" if v is not None else "-"
    ratio = lambda a, b: f"{a / b:.2f}x" if a is not None and b else "-"
    print("| ich | batch | ich images/s | PyTorch images/s | speed ratio | ich GiB | PyTorch GiB | memory ratio "
          "| torch.compile images/s | ratio to compile |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for variant, p, b, ips, peak in sorted(ich, key=lambda r: (r[1], r[2], r[0])):
        t_ips, t_peak = eager.get((p, b), (None, None))
        c_ips, _ = compiled.get((p, b), (None, None))
        print(f"| {variant} | {b} | {fmt(ips)} | {fmt(t_ips)} | {ratio(ips, t_ips)} | {fmt(peak)} | {fmt(t_peak)} | "
              f"{ratio(peak, t_peak)} | {fmt(c_ips)} | {ratio(ips, c_ips)} |")


main()
