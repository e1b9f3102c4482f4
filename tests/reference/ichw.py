"""Read and write the ich flat weights format (weights/FORMAT.md) from Python.

Used by the reference generators in this folder; it needs only numpy and
zlib, so torch is not required to read fixtures back.
"""
import os
import struct
import zlib

import numpy as np

MAGIC = b"ICHW"
VERSION = 1
ALIGN = 64
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.uint8): 4, np.dtype(np.int64): 5}
CODES = {v: k for k, v in DTYPES.items()}


def write(path, tensors):
    """tensors: iterable of (name, numpy array); written atomically."""
    items = [(n, np.asarray(a).copy(order="C")) for n, a in tensors]  # (ascontiguousarray makes 0-d 1-d)
    names = [n for n, _ in items]
    assert len(set(names)) == len(names), "duplicate names"
    table_bytes = sum(2 + len(n.encode()) + 2 + 8 * a.ndim + 20 for n, a in items)
    pos = -(-(32 + table_bytes) // ALIGN) * ALIGN
    table, layout = b"", []
    for n, a in items:
        if a.dtype not in DTYPES:
            raise ValueError(f"{n}: dtype {a.dtype} not supported")
        raw = a.tobytes()
        nb = n.encode()
        table += struct.pack("<H", len(nb)) + nb + struct.pack("<BB", DTYPES[a.dtype], a.ndim)
        table += struct.pack(f"<{a.ndim}q", *a.shape)
        table += struct.pack("<QQI", pos, len(raw), zlib.crc32(raw) & 0xFFFFFFFF)
        layout.append((pos, raw))
        pos = -(-(pos + len(raw)) // ALIGN) * ALIGN
    header = MAGIC + struct.pack("<IQQII", VERSION, len(items), len(table), zlib.crc32(table) & 0xFFFFFFFF, 0)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(header + table)
        at = 32 + len(table)
        for off, raw in layout:
            f.write(b"\0" * (off - at))
            f.write(raw)
            at = off + len(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read(path):
    """Returns a dict name -> numpy array, checking magic, version and CRCs."""
    data = open(path, "rb").read()
    assert data[:4] == MAGIC, f"{path}: bad magic"
    version, count, tbytes, tcrc, _ = struct.unpack_from("<IQQII", data, 4)
    assert version == VERSION, f"{path}: version {version}"
    table = data[32:32 + tbytes]
    assert zlib.crc32(table) & 0xFFFFFFFF == tcrc, f"{path}: table checksum"
    out, p = {}, 0
    for _ in range(count):
        (ln,) = struct.unpack_from("<H", table, p); p += 2
        name = table[p:p + ln].decode(); p += ln
        code, nd = struct.unpack_from("<BB", table, p); p += 2
        shape = struct.unpack_from(f"<{nd}q", table, p); p += 8 * nd
        off, nbytes, crc = struct.unpack_from("<QQI", table, p); p += 20
        raw = data[off:off + nbytes]
        assert zlib.crc32(raw) & 0xFFFFFFFF == crc, f"{path}: {name} checksum"
        out[name] = np.frombuffer(raw, dtype=CODES[code]).reshape(shape)
    return out
