#!/usr/bin/python3
"""Regenerates the figures in docs/figures/ from our own tools.

  phantom_windows.png   one phantom slice of each subtype in the three default
                        windows (brain 40/80, subdural 80/200, soft 40/380)

Usage (from the repository root, after a build): scripts/make_figures.py [--bin build/bin]
"""
import argparse
import csv
import subprocess
import tempfile

import numpy as np
from PIL import Image, ImageDraw

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="build/bin")
a = ap.parse_args()
with tempfile.TemporaryDirectory() as work:
    subprocess.run([f"{a.bin}/ich-phantom", "--out", f"{work}/ph", "--patients", "40", "--size", "256",
                    "--seed", "7"], check=True, capture_output=True)
    subprocess.run([f"{a.bin}/ich-window", "--input", f"{work}/ph/dicom", "--out", f"{work}/w"], check=True,
                   capture_output=True)
    rows = list(csv.DictReader(open(f"{work}/ph/manifest.csv")))
    subs = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    tiles = []
    for s in subs:
        cands = [r for r in rows if r[s] == "1" and r["corrupt"] == "none" and r["rows"] == r["cols"] == "256"]
        if not cands:
            continue
        best = max(cands, key=lambda r: int(r["px_" + s]))
        img = np.load(f"{work}/w/{best['image_id']}.npy")
        row = np.concatenate([img[:, :, 0], img[:, :, 1], img[:, :, 2]], axis=1)
        label = Image.new("L", (row.shape[1], 18), 0)
        ImageDraw.Draw(label).text((4, 3), f"{s} ({best['image_id']}): brain 40/80 | subdural 80/200 | soft 40/380",
                                   fill=255)
        tiles += [np.array(label), row]
    Image.fromarray(np.concatenate(tiles, axis=0)).save("docs/figures/phantom_windows.png", optimize=True)
print("wrote docs/figures/phantom_windows.png")
