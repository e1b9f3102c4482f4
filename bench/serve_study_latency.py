#!/usr/bin/python3
"""One study through ich-serve: the time from a 40-slice CT study's last
instance to its results (SR, KOS, key images) stored in the PACS, with
resnext101_32x8d at 256 px on this machine's cores, fp32 and, where the CPU
has the kernels, --precision bf16.

A phantom study of 40 slices of 512 x 512 (ich-phantom), a resnext101_32x8d
checkpoint of 6 outputs at size 256 (ich-train, one step on a small phantom:
the speed, not the accuracy, is measured), DCMTK's storescp as the PACS and
storescu as the scanner, ich-serve in between (--stable-seconds 1). Prints
ich-serve's own timings from results.jsonl (predict, key images, write;
latency = last instance to results sent, the 1 s quiet period included).

Usage: bench/serve_study_latency.py [--bin build/bin] [--work build/serve_latency] [--slices 40] [--size 256]
"""
import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="build/bin")
ap.add_argument("--work", default="build/serve_latency")
ap.add_argument("--slices", type=int, default=40)
ap.add_argument("--size", type=int, default=256)
a = ap.parse_args()
BIN = os.path.abspath(a.bin)
os.makedirs(a.work, exist_ok=True)
os.chdir(a.work)


def run(*args):
    subprocess.run([str(x) for x in args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if not os.path.exists(f"r101_{a.size}/best.ckpt"):
    shutil.rmtree("train", ignore_errors=True)
    run(f"{BIN}/ich-phantom", "--difficulty", "easy", "--out", "train/ph", "--patients", "4", "--slices-per-series", "8",
        "--size", "64", "--seed", "5")
    run(f"{BIN}/ich-window", "--input", "train/ph/dicom", "--out", "train/img")
    run(f"{BIN}/ich-split", "--labels", "train/ph/labels.csv", "--meta", "train/img/meta.csv", "--out", "train/split")
    run(f"{BIN}/ich-train", "--train", "train/split/train.csv", "--valid", "train/split/valid.csv", "--images",
        "train/img", "--out", f"r101_{a.size}", "--arch", "resnext101_32x8d", "--size", a.size, "--batch", "2",
        "--epochs", "1", "--max-steps-per-epoch", "1", "--device", "cpu")
if not os.path.isdir("study/dicom"):
    run(f"{BIN}/ich-phantom", "--out", "study", "--patients", "1", "--slices-per-series", a.slices, "--size", "512",
        "--seed", "9")
files = sorted(glob.glob("study/dicom/*.dcm"))
has_bf16 = any(f in open("/proc/cpuinfo").read() for f in ("amx_bf16", "avx512_bf16"))
rows = []
for precision in ["fp32"] + (["bf16"] if has_bf16 else []):
    work = f"serve_{precision}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(f"pacs_{precision}", ignore_errors=True)
    os.makedirs(f"pacs_{precision}")
    pacs_port, port = free_port(), free_port()
    pacs = subprocess.Popen(["storescp", "+uf", "-od", f"pacs_{precision}", "-aet", "PACS", str(pacs_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    serve = subprocess.Popen([f"{BIN}/ich-serve", "--aet", "ICH", "--port", str(port), "--checkpoint",
                              f"r101_{a.size}/best.ckpt", "--work", work, "--dest-aet", "PACS", "--dest-host",
                              "127.0.0.1", "--dest-port", str(pacs_port), "--stable-seconds", "1", "--device", "cpu",
                              "--precision", precision, "--allow", "STORESCU@127.0.0.1", "--min-free-mb", "1"],
                             stdout=subprocess.DEVNULL, stderr=open(f"{work}.log", "w"))
    try:
        for _ in range(600):
            if subprocess.run(["echoscu", "-aec", "ICH", "127.0.0.1", str(port)], capture_output=True).returncode == 0:
                break
            if serve.poll() is not None:
                sys.exit(f"ich-serve exited: {open(work + '.log').read()[-500:]}")
            time.sleep(0.2)
        run("storescu", "-aec", "ICH", "127.0.0.1", port, *files)
        t0 = time.time()
        line = None
        while time.time() - t0 < 600 and line is None:
            p = f"{work}/results.jsonl"
            if os.path.exists(p) and open(p).read().strip():
                line = json.loads(open(p).read().strip().splitlines()[0])
            time.sleep(0.1)
        if line is None:
            sys.exit(f"no results in 600 s: {open(work + '.log').read()[-500:]}")
        t = line["timings_s"]
        rows.append((precision, t["predict"], t["key_images"], t["write"], line["sent"]["latency_s"],
                     len(os.listdir(f"pacs_{precision}"))))
    finally:
        serve.terminate()
        pacs.terminate()
        serve.wait()
        pacs.wait()

cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
print(f"# one {len(files)}-slice study through ich-serve, resnext101_32x8d at {a.size} px, {os.cpu_count()} cores "
      f"({cpu}), {time.strftime('%Y-%m-%d')}")
print("| precision | predict s | key images s | write s | last instance -> results sent s | objects in the PACS |")
print("|---|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]} |")
