# What the DICOM node's end-to-end tests share (serve_e2e.py,
# serve_security.py, serve_load.py): failing with the children killed,
# free ports, waiting, a phantom turned into studies with standard UIDs as a
# PACS would send them, a small model trained in seconds, and a raw
# A-ASSOCIATE-RQ built byte by byte (PS3.8 9.3.2) for hostile peers.
import atexit
import hashlib
import os
import random
import socket
import struct
import subprocess
import sys
import time
import warnings

import pydicom

warnings.filterwarnings("ignore", message="Invalid value for VR UI")  # the phantom's RSNA-style UIDs
procs = []


def kill_children():
    for p in procs:
        if p.poll() is None:
            p.kill()


atexit.register(kill_children)  # an exception in a test leaves no server behind either


def fail(msg):
    print("FAIL:", msg, flush=True)
    kill_children()
    sys.exit(1)


def run(*args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        fail(f"{args[0]} exited {r.returncode}: {r.stderr[-2000:]}")
    return r


def free_port():
    """A port below the kernel's ephemeral range that nobody holds: ports the
    kernel hands to outgoing connections (thousands in the hostile-peer test)
    can be held in TIME_WAIT by a client and refuse a server's bind."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    fail(f"no free port below {low}")


def wait_for(what, cond, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    fail(f"timed out after {timeout} s waiting for {what}")


def uid_for(old):  # a standard UID (2.25 + 128 bits) for each of the phantom's RSNA-style ones
    return "2.25." + str(int(hashlib.sha256(old.encode()).hexdigest()[:32], 16))


def phantom_studies(phantom_dicom, out, date="20261203"):
    """Each phantom study under out/<k>/ with standard UIDs and the study
    attributes a scanner writes; returns ([files of study k], [study UID k])."""
    studies = {}
    for name in sorted(os.listdir(phantom_dicom)):
        ds = pydicom.dcmread(f"{phantom_dicom}/{name}")
        studies.setdefault(ds.StudyInstanceUID, []).append(ds)
    order = sorted(studies)
    paths = []
    for k, old in enumerate(order):
        os.makedirs(f"{out}/{k}")
        files = []
        for ds in studies[old]:
            ds.StudyInstanceUID = uid_for(ds.StudyInstanceUID)
            ds.SeriesInstanceUID = uid_for(ds.SeriesInstanceUID)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid_for(ds.SOPInstanceUID)
            ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = date, "120000", str(k + 1), f"A{k + 1}"
            ds.PatientName = f"Phantom^{k + 1}"
            files.append(f"{out}/{k}/{ds.SOPInstanceUID}.dcm")
            ds.save_as(files[-1], write_like_original=False)
        paths.append(sorted(files))
    return paths, [uid_for(old) for old in order]


def small_model(bin_dir, patients=6, slices=8, size=64, seed=21):
    """A phantom (ph/) and a resnext_mini slice model (run/best.ckpt) trained
    for one epoch: its findings mean nothing, its timing and plumbing are real."""
    run(f"{bin_dir}/ich-phantom", "--difficulty", "easy", "--out", "ph", "--patients", patients, "--slices-per-series",
        slices, "--size", size, "--seed", seed)
    run(f"{bin_dir}/ich-window", "--input", "ph/dicom", "--out", "img")
    run(f"{bin_dir}/ich-split", "--labels", "ph/labels.csv", "--meta", "img/meta.csv", "--out", "split")
    run(f"{bin_dir}/ich-train", "--train", "split/train.csv", "--valid", "split/valid.csv", "--images", "img", "--arch",
        "resnext_mini", "--size", "64", "--batch", "8", "--lr", "1e-3", "--device", "cpu", "--seed", "3", "--epochs",
        "1", "--out", "run")


VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"


def pdu_item(kind, data):
    return bytes([kind, 0]) + struct.pack(">H", len(data)) + data


def associate_rq(calling, called, contexts=((1, VERIFICATION, (IMPLICIT_LE,)),)):
    """An A-ASSOCIATE-RQ PDU: application context, presentation contexts
    (id, abstract syntax, transfer syntaxes), user information (max PDU
    length, implementation class UID)."""
    items = pdu_item(0x10, b"1.2.840.10008.3.1.1.1")
    for pid, abstract, syntaxes in contexts:
        body = bytes([pid, 0, 0, 0]) + pdu_item(0x30, abstract.encode())
        body += b"".join(pdu_item(0x40, ts.encode()) for ts in syntaxes)
        items += pdu_item(0x20, body)
    items += pdu_item(0x50, pdu_item(0x51, struct.pack(">I", 16384)) + pdu_item(0x52, b"1.2.826.0.1.3680043.2.1545.1"))
    body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode() + bytes(32) + items
    return bytes([0x01, 0]) + struct.pack(">I", len(body)) + body


def read_pdu(sock, timeout=10):
    """(type, body) of the next PDU, or (None, b'') when the peer closed."""
    sock.settimeout(timeout)
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            return None, b""
        head += chunk
    length = struct.unpack(">I", head[2:6])[0]
    body = b""
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            return None, body
        body += chunk
    return head[0], body


def try_associate(port, calling, called, source="127.0.0.1", contexts=None):
    """Sends an A-ASSOCIATE-RQ from source: ('accepted', None) after an
    orderly release, or ('rejected', (result, source, reason)), or (None, why)."""
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    try:
        s.sendall(associate_rq(calling, called, contexts or ((1, VERIFICATION, (IMPLICIT_LE,)),)))
        kind, body = read_pdu(s)
        if kind == 0x02:
            s.sendall(bytes([0x05, 0]) + struct.pack(">I", 4) + bytes(4))  # A-RELEASE-RQ
            read_pdu(s)
            return "accepted", None
        if kind == 0x03:
            return "rejected", (body[1], body[2], body[3])
        return None, f"PDU type {kind}"
    finally:
        s.close()
