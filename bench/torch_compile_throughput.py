#!/usr/bin/env python3
"""PyTorch with torch.compile on the same training step, when it runs there.

The same setup as the workplace's baseline (shared/bench/torch_resnext_baseline.py,
which gpu-check runs for PyTorch eager): torchvision resnext101_32x8d,
fc -> Linear(2048, 6), BCEWithLogits, Adam(2e-5), square inputs, random data
resident on the device; the model wrapped in torch.compile (inductor, default
mode). Compilation happens in the warm-up steps and is not timed. Prints rows
in the baseline's format, the precision cell marked "compile", so that
bench/compare_torch.py can join them. A configuration that fails to compile
(no Triton, an old PyTorch) prints a row of "-" and the reason on stderr.

Usage: torch_compile_throughput.py [--size 200] [--steps 20] [--warmup 5]
       [--configs amp:64] [--out compile.md]
"""
import argparse, statistics, sys, time, traceback

import torch, torchvision


def run(dev, mode, batch, size, steps, warmup):
    torch.manual_seed(0)
    m = torchvision.models.resnext101_32x8d()
    m.fc = torch.nn.Linear(2048, 6)
    m.to(dev).train()
    x = torch.randn(batch, 3, size, size, device=dev)
    y = (torch.rand(batch, 6, device=dev) > 0.8).float()
    if mode == 'amp':
        m = m.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), lr=2e-5)
    crit = torch.nn.BCEWithLogitsLoss()
    cm = torch.compile(m)
    times = []
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type='cuda', dtype=torch.bfloat16, enabled=(mode == 'amp')):
            loss = crit(cm(x), y)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times), torch.cuda.max_memory_allocated() / 2**30


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, default=200)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--configs', default='amp:64')
    p.add_argument('--out')
    a = p.parse_args()
    if not torch.cuda.is_available() or not hasattr(torch, 'compile'):
        sys.exit('torch_compile_throughput: needs CUDA and torch.compile (PyTorch 2)')
    torch.backends.cudnn.benchmark = True
    lines = [f'# PyTorch {torch.__version__} torch.compile on {torch.cuda.get_device_name()}: resnext101_32x8d, '
             f'{a.size}x{a.size}, Adam, BCE', '', '| precision | batch | images/s | peak GiB |', '|---|---|---|---|']
    for c in a.configs.split(','):
        mode, batch = c.split(':')
        name = 'fp32 compile' if mode == 'fp32' else 'bf16 AMP + channels_last compile'
        try:
            ips, peak = run(torch.device('cuda'), mode, int(batch), a.size, a.steps, a.warmup)
            lines.append(f'| {name} | {batch} | {ips:.1f} | {peak:.1f} |')
        except Exception:
            traceback.print_exc()
            lines.append(f'| {name} | {batch} | - | - |')
        print(lines[-1], flush=True)
    text = '\n'.join(lines) + '\n'
    print(text)
    if a.out:
        open(a.out, 'w').write(text)


main()
