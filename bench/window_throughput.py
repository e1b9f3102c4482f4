#!/usr/bin/python3
"""ich-window's throughput against the seed's pipeline, on the same files, in
the same run, one core each.

The seed (RSNA-Create npy Images notebook): pydicom read, HU = raw * slope +
intercept, clip to the file's first window, scale by the image's own min and
max to 0..255, np.save as uint8. ich-window: DCMTK read, the RSNA fix, three
windows (brain, subdural, soft), .npy HxWx3 written atomically, meta.csv.
Both run single-threaded (ich-window --threads 1); the ratio is per core.

Usage: bench/window_throughput.py --bin build/bin [--patients 8] [--size 512]
"""
import argparse
import glob
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pydicom


def seed_pipeline(files, out):
    os.makedirs(out, exist_ok=True)
    for f in files:
        ds = pydicom.dcmread(f)
        img = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        wc = ds.WindowCenter[0] if isinstance(ds.WindowCenter, pydicom.multival.MultiValue) else ds.WindowCenter
        ww = ds.WindowWidth[0] if isinstance(ds.WindowWidth, pydicom.multival.MultiValue) else ds.WindowWidth
        lo, hi = float(wc) - float(ww) // 2, float(wc) + float(ww) // 2
        img = np.clip(img, lo, hi)
        with np.errstate(invalid="ignore", divide="ignore"):  # the seed's fully clipped slices give NaN
            img = (img - img.min()) / (img.max() - img.min()) * 255
        np.save(os.path.join(out, os.path.basename(f)[:-4] + ".npy"), np.nan_to_num(img).astype(np.uint8))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ich_window_bench_")
    try:
        subprocess.run([f"{a.bin}/ich-phantom", "--out", f"{work}/ph", "--patients", str(a.patients), "--size",
                        str(a.size)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        files = sorted(glob.glob(f"{work}/ph/dicom/*.dcm"))
        seed_pipeline(files[:5], f"{work}/warm")  # imports and caches warm
        t = time.perf_counter()
        subprocess.run([f"{a.bin}/ich-window", "--input", f"{work}/ph/dicom", "--out", f"{work}/ich", "--threads", "1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ich = len(files) / (time.perf_counter() - t)
        t = time.perf_counter()
        seed_pipeline(files, f"{work}/seed")
        seed = len(files) / (time.perf_counter() - t)
        print(f"{len(files)} RSNA-like {a.size}x{a.size} CT slices, one core each")
        print(f"| pipeline | files/s |\n|---|---|\n| ich-window (3 windows) | {ich:.1f} |\n| seed (pydicom, 1 window) | {seed:.1f} |")
        print(f"ratio ich/seed: {ich / seed:.2f}x per core")
    finally:
        shutil.rmtree(work)


main()
