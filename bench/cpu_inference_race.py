#!/usr/bin/env python3
"""One runtime's inference speed on a CPU, for bench/cpu_inference_race.sh:
images/s (median of the timed batches) and this process's peak resident
memory, as one line "RESULT <name> <images/s> <peak MiB>".

  cpu_inference_race.py torch    MODEL.pth   [fp32|bf16]   (Debian's /usr/bin/python3)
  cpu_inference_race.py ort      MODEL.onnx  fp32          (the venv's python)
  cpu_inference_race.py openvino MODEL.onnx  [f32|bf16]    (the venv's python)
Options: --threads 2 --batch 32 --size 200 --steps 5 --warmup 2
"""
import argparse
import os
import resource
import statistics
import time

ap = argparse.ArgumentParser()
ap.add_argument("runtime")
ap.add_argument("model")
ap.add_argument("precision")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--size", type=int, default=200)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--warmup", type=int, default=2)
a = ap.parse_args()
shape = (a.batch, 3, a.size, a.size)


def timed(run):
    for _ in range(a.warmup):
        run()
    t = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        run()
        t.append(time.perf_counter() - t0)
    return a.batch / statistics.median(t)


if a.runtime == "torch":
    import torch
    import torchvision

    torch.set_num_threads(a.threads)
    m = torchvision.models.resnext101_32x8d(num_classes=6)
    m.load_state_dict(torch.load(a.model), strict=True)
    m.eval()
    x = torch.randn(*shape)

    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            m(x)

    name = f"PyTorch {torch.__version__.split('+')[0]} {a.precision}"
elif a.runtime == "ort":
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def run():
        s.run(["logits"], {"input": x})

    name = f"ONNX Runtime {ort.__version__} fp32"
else:
    import numpy as np
    import openvino as ov

    core = ov.Core()
    model = core.read_model(a.model)
    model.reshape({"input": list(shape)})
    cfg = {"INFERENCE_NUM_THREADS": a.threads, "INFERENCE_PRECISION_HINT": a.precision,
           "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    c = core.compile_model(model, "CPU", cfg)
    req = c.create_infer_request()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def run():
        req.infer({"input": x})

    got = str(c.get_property("INFERENCE_PRECISION_HINT"))
    runs = "bf16" if "bfloat16" in got else "f32" if "float32" in got else got
    name = f"OpenVINO {ov.__version__.split('-')[0]} {a.precision}" + ("" if runs == a.precision else f" (runs {runs})")
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):  # oneDNN's kernels held to an ISA (AVX2: as on a CPU without AVX-512)
        name += f" {os.environ['ONEDNN_MAX_CPU_ISA']}"

ips = timed(run)
print(f"RESULT {name.replace(' ', '_')} {ips:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
