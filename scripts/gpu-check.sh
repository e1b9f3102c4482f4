#!/usr/bin/env bash
# The one command for a lent GPU machine (see ../shared/GUIDE.md, "GPU checks").
#
#   scripts/gpu-check.sh prepare   here: builds the CUDA test and benchmark
#                                  binaries for sm_90 into build-gpu/, and packs
#                                  .gpu/ (binaries, the runtime libraries they
#                                  need that the GPU machine may lack, the
#                                  PyTorch baseline script, the commit)
#   scripts/gpu-check.sh           there, with carry [".gpu"]: runs every CUDA
#                                  test, the ResNeXt-101 reference on the GPU,
#                                  and the training benchmark of ich and of
#                                  PyTorch on the same card; prints a short
#                                  table last; full log and table under $OUT
#
# Must finish within 8 minutes on one H100. No network and no DCMTK there;
# cuDNN comes from PyTorch's Python package (nvidia/cudnn).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "${1:-}" = "prepare" ]; then
  set -e
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > build-gpu.log
  grep -q "ich: CUDA backend ON" build-gpu.log || { echo "prepare: the CUDA backend is not configured"; exit 1; }
  cmake --build build-gpu --target test_cuda test_resnext ich-convert ich-forward ich-bench-train ich-train ich-launch
  rm -rf .gpu && mkdir -p .gpu/bin .gpu/lib
  for b in test_cuda test_resnext ich-convert ich-forward ich-bench-train ich-train ich-launch; do
    strip -o ".gpu/bin/$b" "build-gpu/bin/$b"
  done
  # Debian runtime libraries the binaries use and a PyTorch image may lack.
  for l in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libgomp.so.1 \
           libgloo.so.0 libhiredis.so.0.14 libibverbs.so.1 libnl-route-3.so.200 libnl-3.so.200; do
    cp -L "$(ldconfig -p | awk -v l="$l" '$1 == l {print $NF; exit}')" .gpu/lib/
  done
  cp ../shared/bench/torch_resnext_baseline.py .gpu/
  git rev-parse HEAD > .gpu/COMMIT 2>/dev/null || echo unknown > .gpu/COMMIT
  du -sh .gpu
  echo "prepared: run 'scripts/gpu-check.sh' on the device with carry [\".gpu\"]"
  exit 0
fi

OUT=${OUT:-$root/gpu-out}
mkdir -p "$OUT"
log="$OUT/gpu-check.log"
table="$OUT/table.md"
exec > >(tee "$log") 2>&1
t_start=$(date +%s)
results=()
note() { results+=("| $1 | $2 |"); }

echo "== gpu-check $(date -u +%Y-%m-%dT%H:%MZ), commit $(cat .gpu/COMMIT 2>/dev/null || echo unknown)"
gpu=1
if ! nvidia-smi -L; then
  echo "no GPU visible (nvidia-smi failed): a dry run; CUDA tests will skip and the benchmarks are left out"
  note "GPU" "none visible: dry run only"
  gpu=0
fi
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
py=$(command -v python3)
# the interpreter that has PyTorch (there: the first python3; here: Debian's /usr/bin/python3)
for cand in "$py" /usr/bin/python3; do
  if "$cand" -c 'import torch' 2>/dev/null; then py=$cand; break; fi
done
cudnn_lib=$("$py" -c 'import os, nvidia.cudnn as c; print(os.path.join(os.path.dirname(c.__file__), "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$root/.gpu/lib:${cudnn_lib}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
bin="$root/.gpu/bin"
if [ ! -x "$bin/test_cuda" ]; then
  echo "no carried build in .gpu/: run 'scripts/gpu-check.sh prepare' here first and carry .gpu"
  exit 1
fi

echo "== CUDA op tests (test_cuda)"
# pass only if tests ran and none failed; all skipped (no GPU) is not a pass
verdict() {  # $1: exit status, $2: gtest output file
  if [ "$1" != 0 ]; then echo FAIL
  elif grep -q '^\[  PASSED  \] [1-9]' "$2"; then echo pass
  else echo "not run (skipped)"
  fi
}
timeout 300 "$bin/test_cuda" --gtest_brief=1 > "$OUT/test_cuda.txt" 2>&1
s=$(verdict $? "$OUT/test_cuda.txt")
tail -3 "$OUT/test_cuda.txt"
note "test_cuda (every op CPU vs CUDA, optimizers, training steps, allocator)" "$s: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/test_cuda.txt" | tr '\n' ' ')"

echo "== ResNeXt-101 32x8d on the GPU against PyTorch"
ref="$OUT/resnext_ref"
if timeout 240 "$py" tests/reference/gen_resnext_reference.py --out "$ref" > "$OUT/reference.txt" 2>&1 &&
   "$bin/ich-convert" --input "$ref/ref_zip.pth" --output "$ref/zip.ichw" >> "$OUT/reference.txt" 2>&1 &&
   "$bin/ich-convert" --input "$ref/ref_legacy.pth" --output "$ref/legacy.ichw" >> "$OUT/reference.txt" 2>&1 &&
   ICH_RESNEXT_REF_DIR="$ref" ICH_BIN_DIR="$bin" timeout 240 "$bin/test_resnext" \
     --gtest_filter='ResNeXtReferenceCuda.*' > "$OUT/reference_test.txt" 2>&1; then
  s=$(verdict 0 "$OUT/reference_test.txt")
else
  s=FAIL
fi
cat "$OUT/reference_test.txt" >> "$OUT/reference.txt" 2>/dev/null
tail -3 "$OUT/reference.txt"
rm -f "$ref"/*.pth "$ref"/*.ichw
note "ResNeXt-101 eval logits and train step on CUDA vs PyTorch" "$s"

echo "== data-parallel: ich-launch with one worker per GPU, two training steps (NCCL between GPUs when more than one)"
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$gpu" = 1 ] && [ "${ngpu:-0}" -ge 1 ]; then
  dp="$OUT/dp"
  rm -rf "$dp" && mkdir -p "$dp/img"
  # 32 random windowed slices and a split, as ich-window and ich-split write them (no DCMTK there)
  "$py" - "$dp" <<'PYEOF' > "$OUT/dp.txt" 2>&1
import sys, numpy as np
d = sys.argv[1]; rng = np.random.default_rng(0)
head = "image_id,epidural,intraparenchymal,intraventricular,subarachnoid,subdural,any,patient_id,study_uid,series_uid,z\n"
for name, lo, hi in (("train", 0, 24), ("valid", 24, 32)):
    with open(f"{d}/{name}.csv", "w") as f:
        f.write(head)
        for i in range(lo, hi):
            np.save(f"{d}/img/ID_{i}.npy", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            y = [int(i % 3 == 0 and k == i % 5) for k in range(5)] + [int(i % 3 == 0)]
            f.write(f"ID_{i}," + ",".join(map(str, y)) + f",P{i // 4},S{i // 4},SE{i // 4},{i}\n")
PYEOF
  if timeout 180 "$bin/ich-launch" --nproc "$ngpu" --timeout 60 -- "$bin/ich-train" --train "$dp/train.csv" \
       --valid "$dp/valid.csv" --images "$dp/img" --out "$dp/run" --arch resnext_mini --size 64 --batch 4 \
       --epochs 1 --max-steps-per-epoch 2 --device cuda >> "$OUT/dp.txt" 2>&1 && [ -s "$dp/run/last.ckpt" ]; then
    s=pass
  else
    s=FAIL
  fi
  tail -4 "$OUT/dp.txt"
  note "ich-launch --nproc $ngpu (one GPU each), 2 training steps" "$s"
fi

echo "== training throughput, resnext101_32x8d, 200x200, Adam, BCE"
# eager, and the step captured as a CUDA graph (+graph, train/graph_step.h). PyTorch's float32 runs its cuDNN
# convolutions on TF32 by default (torch.backends.cudnn.allow_tf32): +tf32 is ours in the same mode; fp32:8
# without it is the strict float32 the CPU comparisons use.
configs=fp32:8,fp32+tf32:8,fp32+tf32+graph:8,fp32+tf32:32,fp32+tf32:64
configs=$configs,bf16+cl:8,bf16+cl:32,bf16+cl:64,bf16+cl+graph:32,bf16+cl+graph:64
torch_configs=fp32:8,fp32:32,fp32:64,amp:8,amp:32,amp:64
[ "$gpu" = 1 ] && timeout 300 "$bin/ich-bench-train" --size 200 --configs "$configs" --steps 20 --warmup 5 \
  --device cuda --profile > "$OUT/bench_ich.md" 2>&1
cat "$OUT/bench_ich.md" 2>/dev/null
[ "$gpu" = 1 ] && timeout 240 "$py" .gpu/torch_resnext_baseline.py --size 200 --configs "$torch_configs" \
  --out "$OUT/bench_torch.md" > "$OUT/bench_torch.txt" 2>&1
cat "$OUT/bench_torch.md" 2>/dev/null || tail -5 "$OUT/bench_torch.txt"
# torch.compile, if it runs there (Triton present): the headline configuration only, last, and only
# with time left (the device call stops at 10 minutes; the table is written after this)
elapsed=$(( $(date +%s) - t_start ))
if [ "$gpu" = 1 ] && [ "$elapsed" -lt 330 ]; then
  timeout $(( 480 - elapsed < 150 ? 480 - elapsed : 150 )) "$py" bench/torch_compile_throughput.py --size 200 \
    --configs amp:64 --out "$OUT/bench_compile.md" > "$OUT/bench_compile.txt" 2>&1
elif [ "$gpu" = 1 ]; then
  echo "skipped: ${elapsed} s gone before it" > "$OUT/bench_compile.txt"
else
  echo "skipped: no GPU" > "$OUT/bench_compile.txt"
fi
cat "$OUT/bench_compile.md" 2>/dev/null || { echo "torch.compile did not run:"; tail -3 "$OUT/bench_compile.txt" 2>/dev/null; }
[ -s "$OUT/bench_ich.md" ] && [ -s "$OUT/bench_torch.md" ] &&
  python3 bench/compare_torch.py "$OUT/bench_ich.md" "$OUT/bench_torch.md" "$OUT/bench_compile.md" > "$OUT/ratios.md" 2>&1
cat "$OUT/ratios.md" 2>/dev/null

{
  echo "# gpu-check on ${card:-no GPU}, $(date -u +%Y-%m-%d), commit $(cat .gpu/COMMIT 2>/dev/null)"
  echo
  echo "| check | result |"
  echo "|---|---|"
  printf '%s\n' "${results[@]}"
  echo
  echo "## ich / PyTorch (issue 7 targets: bf16 speed >= 1.2x at memory <= 1.0x; fp32 batch 8 >= 1.0x)"
  cat "$OUT/ratios.md" 2>/dev/null || echo "(no ratios: one of the benchmarks did not run)"
  echo
  echo "## ich"
  cat "$OUT/bench_ich.md" 2>/dev/null
  echo
  echo "## PyTorch"
  cat "$OUT/bench_torch.md" 2>/dev/null || echo "(baseline did not run; see bench_torch.txt)"
  echo
  echo "## PyTorch torch.compile"
  cat "$OUT/bench_compile.md" 2>/dev/null || echo "(did not run; see bench_compile.txt)"
  echo
  echo "total $(( $(date +%s) - t_start )) s"
} > "$table"
echo
cat "$table"
