#!/usr/bin/python3
"""ich against PyTorch on this CPU, in one run: training, inference, loading.

Every measurement runs in a process of its own, so that its peak resident set
(os.wait4's ru_maxrss) is its own: ich-bench-train for ich, this script as a
worker for PyTorch (Debian's 1.13, oneDNN), both on the same number of
threads (OMP_NUM_THREADS and torch.set_num_threads). The model is
resnext101_32x8d with a 6-way head; training is BCE with logits and Adam on
random data (batch --train-batch), inference a forward pass in eval mode
without gradients (batch --eval-batch). Loading is one process from start to
the first logits of one image: `ich-forward` on an ich weights file converted
from a torchvision state_dict, against PyTorch's torch.load +
load_state_dict + forward (its import of torch not counted); page cache warm
for both (the file is read once before).

Prints one table with images/s, peak RSS and the ratios, then the targets of
issue 20 (training >= 1.0x, eval >= 1.2x, peak memory <= 1.0x, load < 1.5 s)
with a verdict each. Exit status 0 whatever the verdicts: a benchmark
reports, the reader judges.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def torch_worker(a):
    import torch
    import torchvision
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.worker == 'load':
        t0 = time.perf_counter()
        m = torchvision.models.resnext101_32x8d()
        m.load_state_dict(torch.load(a.weights))
        m.eval()
        with torch.no_grad():
            m(torch.randn(1, 3, a.size, a.size))
        print(f'seconds {time.perf_counter() - t0:.3f}')
        return
    if a.worker == 'save':
        m = torchvision.models.resnext101_32x8d()
        torch.save(m.state_dict(), a.weights)
        import numpy as np
        np.save(a.image, np.random.default_rng(0).standard_normal((1, 3, a.size, a.size), dtype=np.float32))
        return
    m = torchvision.models.resnext101_32x8d()
    m.fc = torch.nn.Linear(2048, 6)
    x = torch.randn(a.batch, 3, a.size, a.size)
    times = []
    if a.worker == 'train':
        m.train()
        y = (torch.rand(a.batch, 6) > 0.8).float()
        opt = torch.optim.Adam(m.parameters(), lr=2e-5)
        crit = torch.nn.BCEWithLogitsLoss()
        for i in range(a.warmup + a.steps):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            crit(m(x), y).backward()
            opt.step()
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
    else:
        m.eval()
        with torch.no_grad():
            for i in range(a.warmup + a.steps):
                t = time.perf_counter()
                m(x)
                if i >= a.warmup:
                    times.append(time.perf_counter() - t)
    print(f'images/s {a.batch / statistics.median(times):.4f}')


def run_measured(cmd, env):
    """Runs cmd, returns (stdout, stderr, peak RSS GiB) from wait4's rusage."""
    with tempfile.TemporaryFile('w+') as fo, tempfile.TemporaryFile('w+') as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0), fe.seek(0)
        out, err = fo.read(), fe.read()
    if p.returncode != 0:
        sys.exit(f'cpu_vs_torch: {" ".join(cmd)} failed (exit {p.returncode}):\n{err[-2000:]}')
    return out, err, ru.ru_maxrss / 2**20  # KiB -> GiB


def value_after(text, key, cmd):
    for line in text.splitlines():
        if line.startswith(key + ' '):
            return float(line.split()[1])
    sys.exit(f'cpu_vs_torch: no "{key}" in the output of {" ".join(cmd)}:\n{text[-2000:]}')


def ich_rate(text, cmd):
    """images/s from ich-bench-train's table row."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) >= 4 and cells[0].startswith('ich (') and cells[2].isdigit():
            return float(cells[3])
    sys.exit(f'cpu_vs_torch: no table row in the output of {" ".join(cmd)}:\n{text[-2000:]}')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=os.cpu_count())
    p.add_argument('--size', type=int, default=200)
    p.add_argument('--train-batch', type=int, default=8)
    p.add_argument('--eval-batch', type=int, default=32)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--bin', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'build', 'bin'))
    p.add_argument('--only', default='train,eval,load', help='comma-separated subset of train,eval,load')
    p.add_argument('--worker', help=argparse.SUPPRESS)
    p.add_argument('--batch', type=int, help=argparse.SUPPRESS)
    p.add_argument('--weights', help=argparse.SUPPRESS)
    p.add_argument('--image', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return torch_worker(a)

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    me = [sys.executable, os.path.abspath(__file__), '--threads', str(a.threads), '--size', str(a.size),
          '--steps', str(a.steps), '--warmup', str(a.warmup)]
    bench = os.path.join(a.bin, 'ich-bench-train')
    only = a.only.split(',')
    rows, verdicts = [], []
    print(f'# ich vs PyTorch on this CPU: resnext101_32x8d, {a.size}x{a.size}, {a.threads} threads each, '
          f'median of {a.steps} steps after {a.warmup}', flush=True)
    for what, batch in (('train', a.train_batch), ('eval', a.eval_batch)):
        if what not in only:
            continue
        cfg = f'fp32:{batch}' if what == 'train' else f'fp32+eval:{batch}'
        cmd = [bench, '--device', 'cpu', '--size', str(a.size), '--configs', cfg, '--steps', str(a.steps),
               '--warmup', str(a.warmup)]
        out, _, ich_rss = run_measured(cmd, env)
        ich_ips = ich_rate(out, cmd)
        tcmd = me + ['--worker', what, '--batch', str(batch)]
        tout, _, torch_rss = run_measured(tcmd, env)
        torch_ips = value_after(tout, 'images/s', tcmd)
        rows.append((f'{what}, batch {batch}', ich_ips, torch_ips, ich_rss, torch_rss))
        target = 1.0 if what == 'train' else 1.2
        verdicts.append(f'{what} speed {ich_ips / torch_ips:.2f}x (target >= {target}x): '
                        f'{"met" if ich_ips / torch_ips >= target else "NOT met"}')
        verdicts.append(f'{what} peak memory {ich_rss / torch_rss:.2f}x (target <= 1.0x): '
                        f'{"met" if ich_rss <= torch_rss else "NOT met"}')
        print(f'  {what}: ich {ich_ips:.2f} images/s, {ich_rss:.2f} GiB; PyTorch {torch_ips:.2f} images/s, '
              f'{torch_rss:.2f} GiB', flush=True)
    load = None
    if 'load' in only:
        with tempfile.TemporaryDirectory() as d:
            pth, ichw, img = os.path.join(d, 'r.pth'), os.path.join(d, 'r.ichw'), os.path.join(d, 'x.npy')
            run_measured(me + ['--worker', 'save', '--weights', pth, '--image', img], env)
            run_measured([os.path.join(a.bin, 'ich-convert'), '--input', pth, '--output', ichw, '--arch',
                          'resnext101_32x8d'], env)
            for f in (pth, ichw):  # warm the page cache for both readers
                with open(f, 'rb') as fh:
                    while fh.read(1 << 24):
                        pass
            fwd = [os.path.join(a.bin, 'ich-forward'), '--arch', 'resnext101_32x8d', '--weights', ichw, '--input', img,
                   '--output', os.path.join(d, 'y.npy'), '--device', 'cpu']
            t0 = time.perf_counter()
            run_measured(fwd, env)
            ich_s = time.perf_counter() - t0
            tcmd = me + ['--worker', 'load', '--weights', pth]
            torch_s = value_after(run_measured(tcmd, env)[0], 'seconds', tcmd)
            load = (ich_s, torch_s)
            verdicts.append(f'load to first logits {ich_s:.2f} s (target < 1.5 s): {"met" if ich_s < 1.5 else "NOT met"}')
    print()
    print('| run | ich images/s | PyTorch images/s | speed ratio | ich peak RSS GiB | PyTorch peak RSS GiB | memory ratio |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name, ii, ti, ir, tr in rows:
        print(f'| {name} | {ii:.2f} | {ti:.2f} | {ii / ti:.2f}x | {ir:.2f} | {tr:.2f} | {ir / tr:.2f}x |')
    if load:
        print(f'| load to first logits, 1 image (s) | {load[0]:.2f} | {load[1]:.2f} | {load[1] / load[0]:.2f}x | | | |')
    print()
    for v in verdicts:
        print('- ' + v)


if __name__ == '__main__':
    main()
