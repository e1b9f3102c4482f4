#!/usr/bin/python3
"""float32 -> bfloat16 / float16 conversions by PyTorch, for engine/half.h.

Writes tests/fixtures/half/{input_f32,bf16_bits,fp16_bits}.npy (committed:
4,096 values, 32 KB): edge cases (zeros, infinities, NaN, the largest and
smallest normals and subnormals of each format, exact ties, the float16
overflow boundary) and random floats over every exponent.
Usage: /usr/bin/python3 tests/reference/gen_half_reference.py tests/fixtures/half
"""
import sys

import numpy as np
import torch

out = sys.argv[1]
rng = np.random.default_rng(2019)
edge = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0,
        65504.0, 65505.0, 65519.99, 65520.0, 65536.0, -65520.0,          # float16 top
        2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 1.5 * 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -26,  # float16 bottom
        1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 1 + 2.0 ** -9, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11,  # ties
        3.4028234663852886e38, 1.1754943508222875e-38, 1e-45, 3.0e38]
bits = rng.integers(0, 2 ** 32, size=2048, dtype=np.uint64).astype(np.uint32)
from_bits = bits.view(np.float32)
normal = (rng.standard_normal(1024) * np.exp2(rng.uniform(-30, 20, 1024))).astype(np.float32)
near_half = (rng.uniform(-70000, 70000, 512)).astype(np.float32)
tiny = (rng.uniform(-1, 1, 4096 - 2048 - 1024 - 512 - len(edge)) * 2.0 ** -13).astype(np.float32)
x = np.concatenate([np.array(edge, dtype=np.float32), from_bits, normal, near_half, tiny]).astype(np.float32)
t = torch.from_numpy(x.copy())
bf = t.to(torch.bfloat16).view(torch.int16).numpy().astype(np.int64) & 0xFFFF
fp = t.to(torch.float16).view(torch.int16).numpy().astype(np.int64) & 0xFFFF
np.save(f"{out}/input_f32.npy", x)
np.save(f"{out}/bf16_bits.npy", bf)
np.save(f"{out}/fp16_bits.npy", fp)
print(f"{len(x)} values written to {out}")
