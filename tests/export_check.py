#!/usr/bin/env python3
"""ich-export, checked by the runtimes a deployer would use (ctest
Export.OnnxRuntimeAndPyTorchGiveIchLogits; run with the venv of
tests/reference/make_onnx_venv.sh).

Models: on a small phantom, ich-train's resnext_mini (3 channels), the same
with --context 1 (9 channels), a resnext101_32x8d trained one step at 32 px
(the architecture torchvision has), and ich-train-seq's bidirectional LSTM
(two layers) and GRU (one layer). Each is exported as ONNX and .pth.

ONNX: onnx's checker (full_check, shape inference) passes; ONNX Runtime's
logits equal ich-forward's within 1e-4 for every model, several batch sizes
and, for the slice models, two image sizes (batch, height and width are free
in the graph); its "probabilities" are sigmoid(logits / T). Series models:
series of different lengths in one batch (padded), compared where each
series has slices. PyTorch: tests/export_torch_check.py under Debian's torch
(its own interpreter) within 1e-5. Exit 0 when all hold.

Usage: export_check.py BIN WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

BIN, WORK = os.path.abspath(sys.argv[1]), sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
failures = []


def run(*args):
    r = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout[-2000:]}")
    return r.stdout


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


# --- models ---
run(f"{BIN}/ich-phantom", "--difficulty", "easy", "--out", "ph", "--patients", "6", "--slices-per-series", "10",
    "--size", "64", "--seed", "5")
run(f"{BIN}/ich-window", "--input", "ph/dicom", "--out", "img")
run(f"{BIN}/ich-split", "--labels", "ph/labels.csv", "--meta", "img/meta.csv", "--out", "split")
common = ["--train", "split/train.csv", "--valid", "split/valid.csv", "--images", "img", "--device", "cpu",
          "--seed", "3", "--epochs", "1"]
run(f"{BIN}/ich-train", *common, "--arch", "resnext_mini", "--size", "64", "--batch", "8", "--lr", "1e-3",
    "--out", "mini")
run(f"{BIN}/ich-train", *common, "--arch", "resnext_mini", "--size", "64", "--batch", "8", "--lr", "1e-3",
    "--context", "1", "--max-steps-per-epoch", "3", "--out", "ctx")
# Under the sanitizers (scripts/sanitize.sh sets ICH_EXPORT_SMALL_ONLY) the ResNeXt-101 (a training step and
# forward passes of 88 M parameters, minutes under ASan) is left out, said here; the release run exports it.
small_only = os.environ.get("ICH_EXPORT_SMALL_ONLY") == "1"
if small_only:
    print("note: ICH_EXPORT_SMALL_ONLY=1: resnext101_32x8d left out (the release run checks it)")
else:
    run(f"{BIN}/ich-train", *common, "--arch", "resnext101_32x8d", "--size", "32", "--batch", "2", "--lr", "1e-4",
        "--max-steps-per-epoch", "1", "--out", "r101")
run(f"{BIN}/ich-embed", "--checkpoint", "mini/best.ckpt", "--data", "split/train.csv", "--data", "split/valid.csv",
    "--images", "img", "--out", "emb", "--device", "cpu")
seq = ["--train", "split/train.csv", "--valid", "split/valid.csv", "--embeddings", "emb", "--device", "cpu",
       "--epochs", "2", "--batch", "2", "--seed", "4"]
run(f"{BIN}/ich-train-seq", *seq, "--cell", "lstm", "--hidden", "8", "--layers", "2", "--out", "lstm")
run(f"{BIN}/ich-train-seq", *seq, "--cell", "gru", "--hidden", "6", "--layers", "1", "--out", "gru")

slice_models = {"mini": ("resnext_mini", 3, [64, 80]), "ctx": ("resnext_mini", 9, [64])}
if not small_only:
    slice_models["r101"] = ("resnext101_32x8d", 3, [64])
series_models = {"lstm": ("lstm", 2, 8), "gru": ("gru", 1, 6)}
for name in list(slice_models) + list(series_models):
    print(run(f"{BIN}/ich-export", "--checkpoint", f"{name}/best.ckpt", "--onnx", f"{name}.onnx", "--pth",
              f"{name}.pth").strip())

rng = np.random.default_rng(7)
torch_cases = []


def meta(model):
    return {p.key: p.value for p in model.metadata_props}


# --- slice models ---
for name, (arch, channels, sizes) in slice_models.items():
    m = onnx.load(f"{name}.onnx")
    onnx.checker.check_model(m, full_check=True)
    md = meta(m)
    check(m.opset_import[0].version == 17 and md["ich.kind"] == "slice" and md["ich.arch"] == arch,
          f"{name}: onnx checker passes; opset 17, metadata {md['ich.arch']} windows {md['ich.windows']}")
    temps = np.array([float(t) for t in md["ich.temperature"].split(",")], dtype=np.float32)
    sess = ort.InferenceSession(f"{name}.onnx", providers=["CPUExecutionProvider"])
    runs = []
    for size in sizes:
        for batch in (1, 3, 8) if arch != "resnext101_32x8d" else (1, 2):
            x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
            xp, ip = f"{name}_x{batch}_{size}.npy", f"{name}_ich{batch}_{size}.npy"
            np.save(xp, x)
            run(f"{BIN}/ich-forward", "--checkpoint", f"{name}/best.ckpt", "--input", xp, "--output", ip,
                "--device", "cpu")
            ich = np.load(ip)
            logits, probs = sess.run(["logits", "probabilities"], {"input": x})
            d = float(np.abs(logits - ich).max())
            dp = float(np.abs(probs - 1 / (1 + np.exp(-ich / temps))).max())
            check(d <= 1e-4 and dp <= 1e-5,
                  f"{name} batch {batch} {size}px: max |ORT - ich| logits {d:.2e} (|logit| up to "
                  f"{np.abs(ich).max():.2f}), probabilities {dp:.2e}")
            runs.append([os.path.abspath(xp), os.path.abspath(ip), None])
    torch_cases.append({"name": name, "kind": "slice", "arch": arch, "pth": os.path.abspath(f"{name}.pth"),
                        "runs": runs})

# --- series models ---
for name, (cell, layers, hidden) in series_models.items():
    m = onnx.load(f"{name}.onnx")
    onnx.checker.check_model(m, full_check=True)
    md = meta(m)
    features = 3 * int(md["ich.features"]) + 2
    check(md["ich.kind"] == "series" and md["ich.cell"] == cell and int(md["ich.hidden"]) == hidden,
          f"{name}: onnx checker passes; metadata {md['ich.cell']} hidden {md['ich.hidden']} layers "
          f"{md['ich.layers']} views {md['ich.views']}")
    sess = ort.InferenceSession(f"{name}.onnx", providers=["CPUExecutionProvider"])
    runs = []
    for batch, steps in ((1, 5), (3, 9), (4, 12)):
        x = rng.standard_normal((batch, steps, features)).astype(np.float32)
        lengths = np.array([steps] + list(rng.integers(2, steps + 1, batch - 1)), dtype=np.int64)
        for b in range(batch):
            x[b, lengths[b]:] = 0  # padding, as ich's loader leaves it
        xp, lp, ip = f"{name}_x{batch}.npy", f"{name}_len{batch}.npy", f"{name}_ich{batch}.npy"
        np.save(xp, x)
        np.save(lp, lengths)
        run(f"{BIN}/ich-forward", "--checkpoint", f"{name}/best.ckpt", "--input", xp, "--lengths", lp, "--output",
            ip, "--device", "cpu")
        ich = np.load(ip)
        logits, probs = sess.run(["logits", "probabilities"], {"series": x, "lengths": lengths})
        valid = np.arange(steps)[None, :] < lengths[:, None]
        d = float(np.abs(logits - ich)[valid].max())
        dp = float(np.abs(probs - 1 / (1 + np.exp(-ich)))[valid].max())
        check(d <= 1e-4 and dp <= 1e-5,
              f"{name} batch {batch}, lengths {lengths.tolist()}: max |ORT - ich| logits {d:.2e}, "
              f"probabilities {dp:.2e}")
        runs.append([os.path.abspath(xp), os.path.abspath(ip), os.path.abspath(lp)])
    torch_cases.append({"name": name, "kind": "series", "cell": cell, "layers": layers, "hidden": hidden,
                        "features": features, "pth": os.path.abspath(f"{name}.pth"), "runs": runs})

# --- PyTorch ---
json.dump(torch_cases, open("torch_cases.json", "w"), indent=1)
r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "export_torch_check.py"), "torch_cases.json"],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
print(r.stdout.strip())
check(r.returncode == 0, "PyTorch loads every .pth strictly and gives ich's eval logits within 1e-5")

# --- bad input: one line, non-zero exit, nothing written ---
with open("truncated.ckpt", "wb") as f:
    f.write(open("mini/best.ckpt", "rb").read()[:5000])
r = subprocess.run([f"{BIN}/ich-export", "--checkpoint", "truncated.ckpt", "--onnx", "t.onnx"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
check(r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and not os.path.exists("t.onnx"),
      f"a truncated checkpoint: exit {r.returncode}, one line ({r.stderr.strip()[:120]}), no output")

print(f"export_check: {len(failures)} failure(s), onnxruntime {ort.__version__}, onnx {onnx.__version__}")
if not failures:  # the ResNeXt-101's checkpoint, ONNX and .pth (1.7 GB) go; a failure keeps them to look at
    shutil.rmtree("r101", ignore_errors=True)
    for f in ("r101.onnx", "r101.pth"):
        if os.path.exists(f):
            os.remove(f)
sys.exit(1 if failures else 0)
