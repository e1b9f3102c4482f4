#!/usr/bin/env bash
# ich against PyTorch on this CPU in one run (issue 20's benchmark): training
# (batch 8) and inference (batch 32) of resnext101_32x8d at 200x200 on equal
# threads, images/s and peak RSS of both with the ratios, and the time from
# start to the first logits of one image. Builds first if needed.
#   bench/cpu_vs_torch.sh [--threads N] [--steps 5] [--warmup 2] [--only train,eval,load]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bin/ich-bench-train ] && [ -x build/bin/ich-forward ] || scripts/build.sh
exec /usr/bin/python3 bench/cpu_vs_torch.py --bin build/bin "$@"
