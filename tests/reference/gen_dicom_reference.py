#!/usr/bin/python3
"""Reference for tests/test_dicom.cpp: ich-window against pydicom + numpy.

Copies real DICOM files from Debian's pydicom test data (python3-pydicom)
into OUT/input/ together with files that must fail (MR_truncated.dcm,
no_meta.dcm, a zero-byte file, random bytes, a text file), and writes
OUT/expected.ichw: for each good file, pydicom's pixels after the modality
LUT (raw * slope + intercept), ImagePositionPatient and ImageOrientationPatient
where the file has them, and the windowed uint8 image in the default
windows (brain 40/80, subdural 80/200, soft 40/380) computed with numpy:
    u8 = round(255 * (clip(HU, c - w/2, c + w/2) - (c - w/2)) / w)
Usage: gen_dicom_reference.py --out DIR
"""
import argparse
import glob
import os
import shutil
import sys

import numpy as np
import pydicom
from pydicom.pixel_data_handlers.util import apply_modality_lut

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichw  # noqa: E402

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
GOOD = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
        "image_dfl.dcm"]
BAD = ["MR_truncated.dcm", "no_meta.dcm"]
WINDOWS = [(40, 80), (80, 200), (40, 380)]

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
args = ap.parse_args()
inp = os.path.join(args.out, "input")
shutil.rmtree(inp, ignore_errors=True)
os.makedirs(inp)
files = [os.path.join(TEST_FILES, f) for f in GOOD]
files += sorted(glob.glob(os.path.join(TEST_FILES, "dicomdirtests", "77654033", "CT2", "*")))[:3]
out = []
for i, path in enumerate(files):
    name = f"good{i:02d}_{os.path.basename(path)}"
    shutil.copy(path, os.path.join(inp, name))
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    chans = []
    for c, w in WINDOWS:
        lo = c - w / 2
        chans.append(np.floor(255 * (np.clip(hu, lo, lo + w) - lo) / w + 0.5).astype(np.uint8))
    u8 = np.stack(chans, axis=-1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        u8 = 255 - u8
    key = str(ds.SOPInstanceUID)
    out += [(f"{name}/hu", hu.astype(np.float32)), (f"{name}/u8", u8)]
    if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:  # the geometry meta.csv must carry
        out += [(f"{name}/ipp", np.array([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)),
                (f"{name}/iop", np.array([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64))]
    with open(os.path.join(args.out, "ids.txt"), "a" if i else "w") as f:
        f.write(f"{name},{key}\n")
for b in BAD:
    shutil.copy(os.path.join(TEST_FILES, b), os.path.join(inp, "bad_" + b))
open(os.path.join(inp, "bad_empty.dcm"), "wb").close()
rng = np.random.default_rng(0)
open(os.path.join(inp, "bad_random.bin"), "wb").write(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
open(os.path.join(inp, "bad_readme.txt"), "w").write("not an image\n")
ichw.write(os.path.join(args.out, "expected.ichw"), out)
print(f"{len(files)} good and {len(BAD) + 3} bad files in {inp}")
