#!/usr/bin/python3
"""Reference for tests/test_rnn.cpp: torch.nn.LSTM and torch.nn.GRU (2 layers,
bidirectional, batch_first) on padded sequences of ragged lengths, through
pack_padded_sequence, in float32 and float64.

For each cell C (lstm, gru) and dtype D (f32, f64), OUT/rnn_ref.ichw holds
under "C/D/": state/<name> (the module's state_dict, torch's names), x
(B, T, in), lengths (int64), out (B, T, 2H; zero past each length, as
pad_packed_sequence gives), h_n (and c_n for the LSTM), R (a random tensor
like out) and g/<name> and g/x: the gradients of sum(out * R). The float32
modules' state_dicts are also saved as OUT/lstm.pth and OUT/gru.pth, for
ich-convert.
Deterministic (seeded). Usage: gen_rnn_reference.py --out DIR
"""
import argparse
import os
import sys

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ichw  # noqa: E402

IN, H, LAYERS, B, T = 5, 4, 2, 3, 6
OUT = "."
LENGTHS = [6, 2, 4]  # unsorted, ragged, one full


def case(cell, dtype, seed):
    torch.manual_seed(seed)
    cls = nn.LSTM if cell == "lstm" else nn.GRU
    m = cls(IN, H, num_layers=LAYERS, bidirectional=True, batch_first=True).to(dtype)
    x = torch.randn(B, T, IN, dtype=dtype, requires_grad=True)
    lengths = torch.tensor(LENGTHS, dtype=torch.int64)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_p, state = m(packed)
    out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=T)
    R = torch.randn_like(out)
    (out * R).sum().backward()
    name = "f32" if dtype == torch.float32 else "f64"
    p = f"{cell}/{name}/"
    if name == "f32":  # as a user would have it: a .pth for ich-convert
        torch.save(m.state_dict(), os.path.join(OUT, f"{cell}.pth"))
    items = [(p + "state/" + k, v.detach().numpy()) for k, v in m.state_dict().items()]
    items += [(p + "x", x.detach().numpy()), (p + "lengths", lengths.numpy()), (p + "out", out.detach().numpy()),
              (p + "R", R.numpy()), (p + "g/x", x.grad.numpy())]
    if cell == "lstm":
        items += [(p + "h_n", state[0].detach().numpy()), (p + "c_n", state[1].detach().numpy())]
    else:
        items += [(p + "h_n", state.detach().numpy())]
    items += [(p + "g/" + k, v.grad.numpy()) for k, v in m.named_parameters()]
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    global OUT
    OUT = a.out
    items = []
    for seed, cell in enumerate(("lstm", "gru")):
        for dtype in (torch.float32, torch.float64):
            items += case(cell, dtype, 100 + seed)
    ichw.write(os.path.join(a.out, "rnn_ref.ichw"), [(n, np.ascontiguousarray(v)) for n, v in items])


if __name__ == "__main__":
    main()
