#!/usr/bin/python3
"""Writes small PyTorch checkpoints that exercise the checkpoint reader
(weights/torch_checkpoint.cpp), and what they must read back as:

  tests/fixtures/checkpoints/<case>_{zip,legacy}.pth
  tests/fixtures/checkpoints/expected.ichw      "<case>/<name>" -> values

Cases: plain (float32, float64, int64, uint8 tensors, a 0-d tensor, an empty
one), views (a transposed and an offset view sharing one storage), half
(float16 and bfloat16 storages, read as float32), wrapped (a dict holding
{"state_dict": OrderedDict("module." prefixed)} and an epoch), parameters
(nn.Parameter values). Run from the repository root with Debian's torch:
    /usr/bin/python3 tests/reference/gen_checkpoint_cases.py
"""
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichw  # noqa: E402

out_dir = "tests/fixtures/checkpoints"
os.makedirs(out_dir, exist_ok=True)
torch.manual_seed(5)
base = torch.randn(4, 6)
cases = {
    "plain": collections.OrderedDict(
        w=torch.randn(3, 2, 2), d=torch.randn(5, dtype=torch.float64), n=torch.tensor(7),
        idx=torch.arange(6, dtype=torch.int64).reshape(2, 3), img=torch.arange(10, dtype=torch.uint8),
        empty=torch.zeros(0, 3)),
    "views": collections.OrderedDict(t=base.t(), row=base[2], block=base[1:3, 2:5]),
    "half": collections.OrderedDict(h=torch.randn(7).half(), b=torch.randn(2, 3).bfloat16()),
    "wrapped": {"state_dict": collections.OrderedDict([("module.fc.weight", torch.randn(2, 3)),
                                                      ("module.fc.bias", torch.randn(2))]), "epoch": 3},
    "parameters": collections.OrderedDict(p=torch.nn.Parameter(torch.randn(3))),
}
expected = []
for name, obj in cases.items():
    torch.save(obj, os.path.join(out_dir, f"{name}_zip.pth"))
    torch.save(obj, os.path.join(out_dir, f"{name}_legacy.pth"), _use_new_zipfile_serialization=False)
    sd = obj["state_dict"] if "state_dict" in obj else obj
    for k, v in sd.items():
        v = v.detach()
        if v.dtype in (torch.float16, torch.bfloat16):
            v = v.float()
        expected.append((f"{name}/{k.replace('module.', '', 1)}", v.contiguous().numpy().copy()))
ichw.write(os.path.join(out_dir, "expected.ichw"), expected)
print(f"wrote {len(cases) * 2} checkpoints and {len(expected)} expected tensors to {out_dir}")
