#!/usr/bin/env python3
"""One table of ratios from the two training benchmarks of a GPU run.

Reads ich-bench-train's table (bench_ich.md) and the PyTorch baseline's
(bench_torch.md, from shared/bench/torch_resnext_baseline.py) and prints, per
precision and batch: images/s of both and ich/PyTorch, peak GiB of both and
ich/PyTorch. ich's bf16 is compared with PyTorch's "bf16 AMP + channels_last",
fp32 with fp32. Targets (issue 7): bf16 speed ratio >= 1.2 with memory ratio
<= 1.0; fp32 at batch 8 (the seed's setting) speed ratio >= 1.0.

Usage: bench/compare_torch.py bench_ich.md bench_torch.md
"""
import sys


def rows(path, precision_col, batch_col, ips_col, peak_col):
    out = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) <= max(precision_col, batch_col, ips_col, peak_col) or not cells[batch_col].isdigit():
            continue
        precision = "bf16" if "bf16" in cells[precision_col] or "amp" in cells[precision_col] else \
            "fp16" if "fp16" in cells[precision_col] else "fp32"
        out[(precision, int(cells[batch_col]))] = (float(cells[ips_col]), float(cells[peak_col]))
    return out


def main():
    ich = rows(sys.argv[1], 1, 2, 3, 4)  # | engine | precision | batch | images/s | peak GiB | ...
    torch = rows(sys.argv[2], 0, 1, 2, 3)  # | precision | batch | images/s | peak GiB |
    print("| precision | batch | ich images/s | PyTorch images/s | speed ratio | ich GiB | PyTorch GiB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for key in sorted(set(ich) | set(torch)):
        i, t = ich.get(key), torch.get(key)
        fmt = lambda v: f"{v:.1f}" if v is not None else "-"
        speed = f"{i[0] / t[0]:.2f}x" if i and t and t[0] > 0 else "-"
        mem = f"{i[1] / t[1]:.2f}x" if i and t and t[1] > 0 else "-"
        print(f"| {key[0]} | {key[1]} | {fmt(i and i[0])} | {fmt(t and t[0])} | {speed} | "
              f"{fmt(i and i[1])} | {fmt(t and t[1])} | {mem} |")


main()
