#!/usr/bin/env python3
"""Reference for tests/test_dicom_wild.cpp: ich-window on DICOM the way
archives and scanners write it, against pydicom.

Runs in a venv the suite makes (tests/reference/make_j2k_venv.sh): Debian's
pydicom and numpy, plus pylibjpeg and pylibjpeg-openjpeg from PyPI, which
pydicom uses to decode JPEG 2000. Never part of the product.

Writes OUT/input/ (the files), OUT/manifest.csv and OUT/expected.ichw:
- pydicom's own JPEG 2000 test files (lossless and lossy, a codestream with a
  sign that disagrees with PixelRepresentation, BitsStored below the
  codestream's precision), and two it cannot or should not read;
- made here from pydicom's CT_small.dcm and MR_small.dcm:
  * a Modality LUT Sequence in place of the rescale (16-bit entries, an
    unsigned and a signed first value mapped; 8-bit entries);
  * the RSNA 12-bit signature on a CT file (fixed), the RSNA header without
    the signature on a CT file (left alone), the signature on an MR file
    (left alone, and converted only with --any-modality);
  * JPEG 2000 lossless (1.2.840.10008.1.2.4.90) and lossy (.91) encodings,
    made with OpenJPEG's opj_compress (Debian's libopenjp2-tools);
  * an Enhanced CT multi-frame file (four frames; per-frame position,
    rescale and window in the functional groups, PS3.3 C.7.6.16), also with
    its frames in JPEG 2000, with and without a Basic Offset Table;
  * explicit VR files whose Modality, rescale, window and geometry are
    written with VR UN (as some converters write known attributes; PS3.5
    6.2.2: read with the dictionary's VR), a CT slice whose Modality was
    removed (its SOP class says CT), and an MR-class slice without Modality
    (refused).
For every frame: pydicom's pixels, the standard's modality stage applied
here in numpy (LUT, or the frame's own slope and intercept, or the RSNA fix
where the test expects it), and the windowed bytes:
    u8 = round(255 * (clip(HU, c - w/2, c + w/2) - (c - w/2)) / w)
manifest.csv: case, file, ich-window arguments, frame count, image ids,
z per frame, rsna_fix per frame, lossless (1: HU must be exact), and for a
file that must fail, the text its errors.csv line must hold.
Usage: gen_dicom_wild_reference.py --out DIR
"""
import argparse
import copy
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
import openjpeg
from pydicom.pixel_data_handlers import numpy_handler, pillow_handler, pylibjpeg_handler, rle_handler
from pydicom.pixel_data_handlers.util import apply_modality_lut
from pydicom.sequence import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichw  # noqa: E402

warnings.simplefilter("ignore")  # pydicom's notes on non-conformant test files
assert pylibjpeg_handler.is_available(), "pylibjpeg and pylibjpeg-openjpeg are needed (make_j2k_venv.sh)"
pydicom.config.pixel_data_handlers = [numpy_handler, rle_handler, pylibjpeg_handler]  # J2K: OpenJPEG via pylibjpeg

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
DEFAULT = [(40, 80), (80, 200), (40, 380)]
J2K_LOSSLESS, J2K_LOSSY = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"
ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
args = ap.parse_args()
inp = os.path.join(args.out, "input")
shutil.rmtree(inp, ignore_errors=True)
os.makedirs(inp)
tmp = tempfile.mkdtemp()
out, manifest = [], []


def window(hu, windows):
    chans = []
    for c, w in windows:
        lo = c - w / 2
        chans.append(np.floor(255 * (np.clip(hu, lo, lo + w) - lo) / w + 0.5).astype(np.uint8))
    return np.stack(chans, axis=-1)


def spec(windows):
    return ",".join(f"{c}/{w}" for c, w in windows)


def expect(case, ds, hu_frames, windows, lossless, rsna_fix=None, extra_args="", save=None):
    """Records a file the test converts: one entry per frame. save(ds, path)
    writes the file when pydicom's own writer would not write it so."""
    name = f"{case}.dcm"
    if save:
        save(ds, os.path.join(inp, name))
    else:
        ds.save_as(os.path.join(inp, name), write_like_original=False)
    frames = len(hu_frames)
    uid = str(ds.SOPInstanceUID)
    ids = [uid] if frames == 1 else [f"{uid}_f{k + 1}" for k in range(frames)]
    zs = []
    for k, hu in enumerate(hu_frames):
        w = windows[k] if isinstance(windows[0], list) else windows
        u8 = window(hu.astype(np.float64), w)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            u8 = 255 - u8
        out.append((f"{case}/{k + 1}/hu", hu.astype(np.float32)))
        out.append((f"{case}/{k + 1}/u8", u8))
        zs.append(frame_z(ds, k))
    windows_arg = "--windows dicom" if isinstance(windows[0], list) else "--windows " + spec(windows)
    fixes = rsna_fix if rsna_fix is not None else [0] * frames
    manifest.append([case, name, f"{windows_arg} {extra_args}".strip(), frames, ";".join(ids), ";".join(zs),
                     ";".join(str(f) for f in fixes), int(lossless), ""])


def expect_error(case, path_or_ds, text, extra_args="--any-modality", save=None):
    name = f"{case}.dcm"
    if save:
        save(path_or_ds, os.path.join(inp, name))
    elif isinstance(path_or_ds, str):
        shutil.copy(path_or_ds, os.path.join(inp, name))
    else:
        path_or_ds.save_as(os.path.join(inp, name), write_like_original=False)
    manifest.append([case, name, extra_args, 0, "", "", "", 0, text])


def frame_z(ds, k):
    if "PerFrameFunctionalGroupsSequence" in ds:
        item = ds.PerFrameFunctionalGroupsSequence[k]
        if "PlanePositionSequence" in item:
            return repr(float(item.PlanePositionSequence[0].ImagePositionPatient[2]))
    return repr(float(ds.ImagePositionPatient[2])) if "ImagePositionPatient" in ds else ""


def plain_hu(ds):
    return apply_modality_lut(ds.pixel_array, ds).astype(np.float64)


def opj_encode(arr, lossy):
    """One J2K codestream of a 2-d int16/uint16 array, by opj_compress."""
    raw = os.path.join(tmp, "frame.rawl")  # .rawl: little-endian raw input
    arr.astype("<i2" if arr.dtype.kind == "i" else "<u2").tofile(raw)
    j2k = os.path.join(tmp, "frame.j2k")
    sign = "s" if arr.dtype.kind == "i" else "u"
    cmd = ["opj_compress", "-i", raw, "-o", j2k, "-F", f"{arr.shape[1]},{arr.shape[0]},1,16,{sign}"]
    if lossy:
        cmd += ["-I", "-r", "12"]  # irreversible 9/7, 12:1
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return open(j2k, "rb").read()


def as_j2k(ds, frames, lossy, fragments_per_frame=1, has_bot=True):
    """ds with its frames (list of 2-d arrays) as encapsulated JPEG 2000."""
    ds = copy.deepcopy(ds)
    streams = [opj_encode(f, lossy) for f in frames]
    if fragments_per_frame > 1:  # each codestream cut in two fragments (even lengths)
        data = []
        for s in streams:
            s = s + (b"\0" if len(s) % 2 else b"")
            half = (len(s) // 4) * 2
            data += [s[:half], s[half:]]
        ds.PixelData = encapsulate_fragments(data, has_bot, len(frames))
    else:
        ds.PixelData = encapsulate(streams, has_bot=has_bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = J2K_LOSSY if lossy else J2K_LOSSLESS
    ds.is_implicit_VR, ds.is_little_endian = False, True
    return ds


def encapsulate_fragments(fragments, has_bot, frames):
    """Items as PS3.5 A.4: an (empty) Basic Offset Table, then the fragments."""
    assert not has_bot
    body = b"\xfe\xff\x00\xe0" + (0).to_bytes(4, "little")
    for f in fragments:
        body += b"\xfe\xff\x00\xe0" + len(f).to_bytes(4, "little") + f
    return body


def explicit_le(ds):
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.is_implicit_VR, ds.is_little_endian = False, True
    return ds


ct = pydicom.dcmread(os.path.join(TEST_FILES, "CT_small.dcm"))
mr = pydicom.dcmread(os.path.join(TEST_FILES, "MR_small.dcm"))
ct_px = ct.pixel_array.astype(np.int16)  # 128 x 128, stored 128..2191, intercept -1024

# 1. pydicom's JPEG 2000 files, decoded by pydicom through pylibjpeg-openjpeg.
for case, f, windows, lossless in [("wild_j2k_lossless_mr", "MR_small_jp2klossless.dcm", [(1000, 2000)], True),
                                   ("wild_j2k_lossy_ct_bits14", "693_J2KI.dcm", DEFAULT, False),
                                   ("wild_j2k_lossy_nm", "JPEG2000.dcm", [(100, 300)], False)]:
    ds = pydicom.dcmread(os.path.join(TEST_FILES, f))
    expect(case, ds, [plain_hu(ds)], windows, lossless, extra_args="--any-modality")
# A CT file whose header says signed 13 bits, its codestream unsigned 13 bits.
# pydicom 2.3's pylibjpeg path then rewrites PixelRepresentation to 0 and
# gives 0..8191 (an air-free CT); the header is right (pydicom 3 and its
# Pillow path read it so: -2000..1896 HU). The reference: the codestream's
# bits as OpenJPEG (pylibjpeg-openjpeg) decodes them, read as the header
# says, checked against pydicom's Pillow path.
ds = pydicom.dcmread(os.path.join(TEST_FILES, "J2K_pixelrep_mismatch.dcm"))
bits = int(ds.BitsStored)
codestream = next(pydicom.encaps.generate_pixel_data_frame(ds.PixelData))
raw = openjpeg.decode(codestream).astype(np.int64) & ((1 << bits) - 1)
signed = np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)
check = pydicom.dcmread(os.path.join(TEST_FILES, "J2K_pixelrep_mismatch.dcm"))
pydicom.config.pixel_data_handlers = [pillow_handler]
assert np.array_equal(check.pixel_array, signed), "pydicom's Pillow path reads the file otherwise"
pydicom.config.pixel_data_handlers = [numpy_handler, rle_handler, pylibjpeg_handler]
hu = signed * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
expect("wild_j2k_pixelrep_mismatch_ct", ds, [hu], DEFAULT, True, extra_args="--any-modality")
expect_error("wild_j2k_colour", os.path.join(TEST_FILES, "GDCMJ2K_TextGBR.dcm"), "SamplesPerPixel 3")
expect_error("wild_j2k_broken_codestream", os.path.join(TEST_FILES, "JPEG2000-embedded-sequence-delimiter.dcm"),
             "JPEG 2000")

# 2. Modality LUT Sequence instead of slope and intercept.
def with_lut(src, first, n, bits, shift=0):
    ds = explicit_le(copy.deepcopy(src))
    px = (src.pixel_array.astype(np.int32) + shift).astype(np.int16)
    ds.PixelData = px.tobytes()
    del ds.RescaleSlope
    del ds.RescaleIntercept
    top = 255 if bits == 8 else 1800
    k = np.arange(n)
    lut = np.round(top / 2 + (top / 2 - 10) * np.tanh((k - n / 2) / (n / 4))).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [n, first, bits]
    item.ModalityLUTType = "HU"
    item.LUTData = lut.tolist()
    item["LUTData"].VR = "US"
    ds.ModalityLUTSequence = Sequence([item])
    # The descriptor's second value is SS when PixelRepresentation is 1 and
    # the value is negative (PS3.3 C.11.1.1).
    item["LUTDescriptor"].VR = "SS" if first < 0 else "US"
    return ds


for case, first, n, bits, shift, windows in [("lut16_first200", 200, 1500, 16, 0, [(900, 1800), (600, 400), (1400, 400)]),
                                             ("lut16_first_negative", -500, 1200, 16, -1000, [(900, 1800), (300, 600)]),
                                             ("lut8", 300, 1000, 8, 0, [(128, 256), (60, 120)])]:
    ds = with_lut(ct, first, n, bits, shift)
    expect(case, ds, [apply_modality_lut(ds.pixel_array, ds).astype(np.float64)], windows, True)

# 3. The RSNA 12-bit signature: HU modulo 4096 in 12 unsigned bits.
yy, xx = np.mgrid[0:128, 0:128]
head = (yy - 64) ** 2 + (xx - 64) ** 2 < 50 ** 2
hu_true = np.where(head, 20 + (ct_px.astype(np.int32) % 60), -1000)  # air around a head
def rsna_like(src, stored, modality):
    ds = explicit_le(copy.deepcopy(src))
    ds.Modality = modality
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = stored.astype(np.uint16).tobytes()
    return ds


wrapped = np.mod(hu_true, 4096)
ds = rsna_like(ct, wrapped, "CT")
fixed = np.mod(ds.pixel_array.astype(np.int64) + 1000, 4096) - 1000  # the documented fix, in numpy
assert np.array_equal(fixed, hu_true)
expect("rsna_signature_ct", ds, [fixed.astype(np.float64)], DEFAULT, True, rsna_fix=[1])
ds = rsna_like(ct, hu_true + 1000, "CT")  # the header, stored values all below 3096: left alone
expect("rsna_header_only_ct", ds, [plain_hu(ds)], [(1000, 80), (1040, 400)], True)
mr_like = rsna_like(mr, np.zeros((64, 64), np.uint16), "MR")
mr_stored = np.clip(mr.pixel_array.astype(np.int64) * 2, 0, 4095)
mr_stored[:8, :] = 3500  # a bright band: the signature (> 1% of the pixels at 3096 and above)
mr_like.PixelData = mr_stored.astype(np.uint16).tobytes()
expect("rsna_signature_mr", mr_like, [plain_hu(mr_like)], [(2048, 4096)], True, extra_args="--any-modality")
expect_error("rsna_signature_mr_refused", mr_like, "Modality MR is not CT", extra_args="")

# 4. JPEG 2000 made by OpenJPEG's encoder from CT_small (signed values).
ct_signed = explicit_le(copy.deepcopy(ct))
signed_px = (ct_px.astype(np.int32) - 1024).astype(np.int16)  # -896..1167: negative values in the codestream
ct_signed.PixelData = signed_px.tobytes()
ct_signed.RescaleIntercept = 0
for case, lossy in [("opj_j2k_lossless_ct", False), ("opj_j2k_lossy_ct", True)]:
    ds = as_j2k(ct_signed, [signed_px], lossy)
    expect(case, ds, [plain_hu(ds)], DEFAULT, not lossy)

# 5. Enhanced CT, four frames, per-frame functional groups.
def enhanced(frames_px):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.77.1"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    ds.is_implicit_VR, ds.is_little_endian = False, True
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77.2", "1.2.826.0.1.3680043.8.498.77.3"
    ds.PatientID, ds.Modality = "ENH001", "CT"
    ds.Rows, ds.Columns = frames_px[0].shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.NumberOfFrames = len(frames_px)
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing, pm.SliceThickness = [0.5, 0.5], 5.0
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = 40, 80
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([pm]), Sequence([po])
    shared.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for k in range(len(frames_px)):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [-32.0, -32.0, 100.0 + 5.0 * k]
        item.PlanePositionSequence = Sequence([pos])
        pvt = Dataset()
        pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = -1024 + 10 * k, [1, 1, 0.5, 2][k], "HU"
        item.PixelValueTransformationSequence = Sequence([pvt])
        if k >= 2:  # the last two frames carry their own window
            v = Dataset()
            v.WindowCenter, v.WindowWidth = 80, 200
            item.FrameVOILUTSequence = Sequence([v])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.stack(frames_px).astype(np.int16).tobytes()
    return ds


def enhanced_hu(ds):
    """PS3.3 C.7.6.16.2.9: each frame's own slope and intercept."""
    px = ds.pixel_array.astype(np.float64)
    hus, windows = [], []
    for k in range(int(ds.NumberOfFrames)):
        pvt = ds.PerFrameFunctionalGroupsSequence[k].PixelValueTransformationSequence[0]
        hus.append(px[k] * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept))
        item = ds.PerFrameFunctionalGroupsSequence[k]
        voi = (item if "FrameVOILUTSequence" in item else ds.SharedFunctionalGroupsSequence[0]).FrameVOILUTSequence[0]
        windows.append([(float(voi.WindowCenter), float(voi.WindowWidth))])
    return hus, windows


frames_px = [np.roll(ct_px, 9 * k, axis=1) for k in range(4)]
enh = enhanced(frames_px)
hus, frame_windows = enhanced_hu(enh)
expect("enhanced_ct", enh, hus, DEFAULT, True)
expect("enhanced_ct_own_windows", copy.deepcopy(enh), hus, frame_windows, True)
for case, frags, bot in [("enhanced_ct_j2k_bot", 1, True), ("enhanced_ct_j2k_two_fragments", 2, False)]:
    ds = as_j2k(enh, frames_px, lossy=False, fragments_per_frame=frags, has_bot=bot)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{10 + frags}"
    assert np.array_equal(ds.pixel_array, np.stack(frames_px))  # pydicom decodes what was encoded
    hus_j, _ = enhanced_hu(ds)
    expect(case, ds, hus_j, DEFAULT, True)

# 6. Known attributes written with VR UN; Modality removed.
def save_with_un(tags):
    """A writer of explicit VR little endian files in which the elements of
    `tags` carry VR UN (4-byte length, the value as implicit VR would hold
    it): pydicom itself writes them with their dictionary VR."""
    def save(ds, path):
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, False
        for el in ds:
            if el.tag in tags:
                one = DicomBytesIO()
                one.is_little_endian, one.is_implicit_VR = True, True
                write_data_element(one, el)
                value = one.getvalue()[8:]  # past the implicit tag and length
                body.write(el.tag.group.to_bytes(2, "little") + el.tag.element.to_bytes(2, "little") + b"UN\0\0" +
                           len(value).to_bytes(4, "little") + value)
            else:
                write_data_element(body, el)
        meta = DicomBytesIO()
        meta.is_little_endian, meta.is_implicit_VR = True, False
        write_file_meta_info(meta, ds.file_meta)
        with open(path, "wb") as f:
            f.write(b"\0" * 128 + b"DICM" + meta.getvalue() + body.getvalue())
    return save


un_ct = explicit_le(copy.deepcopy(ct))
un_ct.WindowCenter, un_ct.WindowWidth = 40, 80
un_ct.SOPInstanceUID = un_ct.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.78.1"
un_tags = {0x00080060, 0x00281052, 0x00281053, 0x00281050, 0x00281051, 0x00200032, 0x00200037, 0x00280030}
expect("un_attributes_ct", un_ct, [plain_hu(un_ct)], [[(40, 80)]], True, save=save_with_un(un_tags))
no_modality = explicit_le(copy.deepcopy(ct))
del no_modality.Modality
no_modality.SOPInstanceUID = no_modality.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.78.2"
expect("ct_class_without_modality", no_modality, [plain_hu(no_modality)], DEFAULT, True)
mr_class = copy.deepcopy(no_modality)
mr_class.SOPClassUID = mr_class.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
mr_class.SOPInstanceUID = mr_class.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.78.3"
expect_error("mr_class_without_modality_refused", mr_class, "not known to be CT", extra_args="")

with open(os.path.join(args.out, "manifest.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["case", "file", "args", "frames", "ids", "z", "rsna_fix", "lossless", "error"])
    w.writerows(manifest)
ichw.write(os.path.join(args.out, "expected.ichw"), out)
shutil.rmtree(tmp)
print(f"{len(manifest)} files in {inp}, pydicom {pydicom.__version__}")
