#!/usr/bin/env python3
# ich-serve under load: 50 studies of 40 slices from 8 concurrent storescu
# senders (DCMTK), resnext_mini, results to a storescp that keeps every copy
# it receives (+uf): every study's results are delivered exactly once, every
# instance stored; prints p50/p95 latency (last instance received -> SR
# stored), the throughput and the node's peak memory (VmHWM).
#   serve_load.py BIN WORK [STUDIES SLICES SENDERS]
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pydicom  # noqa: E402
from serve_util import fail, free_port, phantom_studies, procs, small_model, wait_for  # noqa: E402

BIN, WORK = sys.argv[1], sys.argv[2]
STUDIES, SLICES, SENDERS = (int(a) for a in (sys.argv[3:6] if len(sys.argv) > 5 else (50, 40, 8)))
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
t0 = time.time()
small_model(BIN, patients=STUDIES, slices=SLICES, size=64)
paths, study_uid = phantom_studies("ph/dicom", "studies")
if len(paths) != STUDIES or any(len(p) != SLICES for p in paths):
    fail(f"the phantom gave {len(paths)} studies of {sorted(set(len(p) for p in paths))} slices")
print(f"model and {STUDIES} studies of {SLICES} slices in {time.time() - t0:.1f} s", flush=True)

dest_port, port = free_port(), free_port()
os.makedirs("pacs")
storescp = subprocess.Popen(["storescp", "+uf", "-aet", "PACS", "-od", "pacs", str(dest_port)],
                            stdout=subprocess.DEVNULL, stderr=open("storescp.log", "w"))
procs.append(storescp)
node = subprocess.Popen([f"{BIN}/ich-serve", "--aet", "ICH", "--port", str(port), "--checkpoint", "run/best.ckpt",
                         "--work", "node", "--dest-aet", "PACS", "--dest-host", "127.0.0.1", "--dest-port", str(dest_port),
                         "--stable-seconds", "2", "--workers", "2", "--device", "cpu", "--min-free-mb", "1",
                         "--max-pending", str(STUDIES), "--allow", "STORESCU@127.0.0.1", "--allow", "ECHOSCU@127.0.0.1"],
                        stdout=subprocess.DEVNULL, stderr=open("node.log", "w"))
procs.append(node)
wait_for("ich-serve to answer C-ECHO", lambda: subprocess.run(
    ["echoscu", "-aec", "ICH", "127.0.0.1", str(port)], capture_output=True).returncode == 0, 60)

t1 = time.time()
senders = []
# The senders disable Nagle's algorithm (DCMTK does when TCP_NODELAY=1), as
# the node does on its side: else each small instance waits for a delayed
# ACK (40 ms) and the senders, not the node, set the pace.
for k in range(SENDERS):
    files = [f for s in range(k, STUDIES, SENDERS) for f in paths[s]]
    senders.append(subprocess.Popen(["storescu", "-aec", "ICH", "127.0.0.1", str(port), *files],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    env=dict(os.environ, TCP_NODELAY="1")))
for s in senders:
    if s.wait(600) != 0:
        fail(f"a sender failed: {s.stderr.read()[-1000:]}")
sent_s = time.time() - t1


def results():
    try:
        return [json.loads(line) for line in open("node/results.jsonl")]
    except FileNotFoundError:
        return []


wait_for(f"results for all {STUDIES} studies", lambda: len(results()) >= STUDIES, 900)
total_s = time.time() - t1
with open(f"/proc/{node.pid}/status") as f:
    peak_mb = int([line for line in f if line.startswith("VmHWM")][0].split()[1]) / 1024
node.send_signal(signal.SIGTERM)
if node.wait(60) != 0:
    fail(f"ich-serve exited {node.returncode} on SIGTERM")
time.sleep(1)  # storescp writes its last file
storescp.terminate()
storescp.wait(10)

lines = results()
by_study = {}
for r in lines:
    by_study.setdefault(r["study_uid"], []).append(r)
if sorted(by_study) != sorted(study_uid) or any(len(v) != 1 for v in by_study.values()):
    fail(f"results.jsonl: {len(lines)} lines for {len(by_study)} studies, expected one line for each of {STUDIES}")
bad = [r for r in lines if r.get("instances") != SLICES or "sent" not in r]
if bad:
    fail(f"studies not received whole or not sent: {bad[:3]}")
copies = {}
for name in os.listdir("pacs"):
    ds = pydicom.dcmread(f"pacs/{name}", stop_before_pixels=True)
    if ds.Modality == "SR":
        copies[ds.StudyInstanceUID] = copies.get(ds.StudyInstanceUID, 0) + 1
if copies != {u: 1 for u in study_uid}:
    fail(f"SRs at the destination per study (each must arrive once): {sorted(copies.values())}")
lat = sorted(r["sent"]["latency_s"] for r in lines)
p50 = statistics.median(lat)
p95 = lat[min(len(lat) - 1, int(round(0.95 * len(lat))) - 1)]
print(f"{STUDIES} studies x {SLICES} slices from {SENDERS} concurrent storescu: all received whole, each study's "
      f"results delivered once; sending took {sent_s:.1f} s, every result out {total_s:.1f} s after the first "
      f"instance ({STUDIES * SLICES / total_s:.0f} instances/s); latency (last instance -> SR stored, "
      f"--stable-seconds 2 included) p50 {p50:.2f} s, p95 {p95:.2f} s, max {lat[-1]:.2f} s; ich-serve peak RSS "
      f"{peak_mb:.0f} MB")
