#!/bin/bash
# CPU inference of resnext101_32x8d (6 outputs, eval, batch 32, 200 x 200)
# on the same machine in one run, the same threads each: ich fp32 (what
# --precision fp32 runs: compiled NHWC float32 on AVX-512F or AVX2 + FMA,
# the engine elsewhere) and the layer-by-layer engine (fp32 engine); on an
# AVX-512 CPU also ich's AVX2 kernel beside OpenVINO held to AVX2
# (ONEDNN_MAX_CPU_ISA=AVX2): the race a CPU without AVX-512 would see; ich bf16
# (AMX, and AVX512-BF16 alone, where the CPU has them), PyTorch (Debian's,
# fp32 and autocast bf16), ONNX Runtime fp32 and OpenVINO f32 and bf16 (PyPI,
# in a venv this script makes), the latter two fed by ich's own ONNX export
# of the same model. Images/s and each process's peak resident memory, the
# ratios last.
#
# Usage: bench/cpu_inference_race.sh [BIN=build/bin] [WORK=build/race] [THREADS=2]
# Env: STEPS (timed batches, 5), BATCH (32), SIZE (200), ROUNDS (2): every
# runtime runs once per round, the rounds one after the other, and the table
# keeps each runtime's best round (a VM's speed drifts by 5-10% over minutes;
# the rounds give every runtime the same chances).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=$(cd "${1:-build/bin}" && pwd)
work=${2:-build/race}
threads=${3:-2}
steps=${STEPS:-5}
rounds=${ROUNDS:-2}
batch=${BATCH:-32}
size=${SIZE:-200}
mkdir -p "$work"
work=$(cd "$work" && pwd)
venv=$work/venv
"$root/tests/reference/make_onnx_venv.sh" "$venv" openvino==2026.4.1 > /dev/null
export OMP_NUM_THREADS=$threads
cd "$work"

# The model: resnext101_32x8d with 6 outputs from ich-train (one step on a
# phantom, so its batch norms hold statistics), exported by ich-export.
if [ ! -s r101.onnx ] || [ ! -s r101.pth ]; then
  rm -rf ph img split r101
  "$bin/ich-phantom" --difficulty easy --out ph --patients 4 --slices-per-series 8 --size 64 --seed 5 > /dev/null 2>&1
  "$bin/ich-window" --input ph/dicom --out img > /dev/null 2>&1
  "$bin/ich-split" --labels ph/labels.csv --meta img/meta.csv --out split > /dev/null
  "$bin/ich-train" --train split/train.csv --valid split/valid.csv --images img --out r101 --arch resnext101_32x8d \
    --size 32 --batch 2 --epochs 1 --max-steps-per-epoch 1 --device cpu > /dev/null 2>&1
  "$bin/ich-export" --checkpoint r101/best.ckpt --onnx r101.onnx --pth r101.pth
fi

results=$work/results.txt
: > "$results"
cpu_has() { grep -qw "$1" /proc/cpuinfo; }
ich_run() {  # name, config, env...
  local name=$1 config=$2
  shift 2
  local line mem
  line=$(env "$@" /usr/bin/time -f "MAXRSS %M" "$bin/ich-bench-train" --device cpu --configs "$config" \
    --size "$size" --steps "$steps" --warmup 2 2> time.txt | grep '^| ich')
  mem=$(awk '/MAXRSS/ {print int($2 / 1024)}' time.txt)
  echo "RESULT $name $(echo "$line" | awk -F'|' '{gsub(/ /, "", $5); print $5}') $mem" | tee -a "$results"
}
py_run() {  # python, runtime, model, precision
  "$1" "$here/cpu_inference_race.py" "$2" "$3" "$4" --threads "$threads" --batch "$batch" --size "$size" \
    --steps "$steps" | grep '^RESULT' | tee -a "$results"
}
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $threads threads each," \
  "resnext101_32x8d eval, batch $batch, ${size}x$size, $rounds rounds, $(date -u +%F)"
for round in $(seq "$rounds"); do
  echo "## round $round"
  ich_run ich_fp32 "fp32+eval+compiled:$batch"
  ich_run ich_fp32_engine "fp32+eval:$batch"
  if cpu_has avx512f && cpu_has avx2; then ich_run ich_fp32_AVX2 "fp32+eval+compiled:$batch" ICH_CPU_F32=avx2; fi
  if cpu_has amx_bf16; then ich_run ich_bf16_AMX "bf16+eval+compiled:$batch"; fi
  if cpu_has avx512_bf16; then ich_run ich_bf16_AVX512-BF16 "bf16+eval+compiled:$batch" ICH_CPU_BF16=avx512-bf16; fi
  py_run /usr/bin/python3 torch r101.pth fp32
  if cpu_has avx512_bf16 || cpu_has amx_bf16; then py_run /usr/bin/python3 torch r101.pth bf16; fi
  py_run "$venv/bin/python" ort r101.onnx fp32
  py_run "$venv/bin/python" openvino r101.onnx f32
  if cpu_has avx512f && cpu_has avx2; then ONEDNN_MAX_CPU_ISA=AVX2 py_run "$venv/bin/python" openvino r101.onnx f32; fi
  if cpu_has avx512_bf16 || cpu_has amx_bf16; then py_run "$venv/bin/python" openvino r101.onnx bf16; fi
done

echo
echo "| runtime | images/s (best of $rounds rounds) | peak MiB (largest) |"
echo "|---|---:|---:|"
awk '{ if (!($2 in best) || $3 > best[$2]) best[$2] = $3; if ($4 > mem[$2]) mem[$2] = $4; if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 } }
     END { for (i = 1; i <= n; ++i) printf "| %s | %s | %s |\n", order[i], best[order[i]], mem[order[i]] }' "$results" | sed 's/_/ /g'
echo
awk '
  { if (!($2 in ips) || $3 > ips[$2]) ips[$2] = $3 }
  END {
    fp32 = ips["ich_fp32"]; eng = ips["ich_fp32_engine"]; amx = ips["ich_bf16_AMX"]; avx = ips["ich_bf16_AVX512-BF16"]
    for (k in ips) {
      if (k ~ /^ONNX_Runtime.*fp32/) ort = ips[k]
      if (k ~ /^OpenVINO.*_f32$/) ovf = ips[k]
      if (k ~ /^OpenVINO.*_f32_AVX2$/) ov2 = ips[k]
      if (k ~ /^OpenVINO.*_bf16/) ovb = ips[k]
      if (k ~ /^PyTorch.*fp32/) pt = ips[k]
    }
    printf "ratios (targets of issue 34 in brackets; ich fp32 is what --precision fp32 runs):\n"
    if (eng) printf "  ich fp32 / ich fp32 engine:     %.2fx\n", fp32 / eng
    if (pt) printf "  ich fp32 / PyTorch fp32:        %.2fx\n", fp32 / pt
    if (ort) printf "  ich fp32 / ONNX Runtime fp32:   %.2fx  [>= 1.0]\n", fp32 / ort
    if (ovf) printf "  ich fp32 / OpenVINO f32:        %.2fx  [>= 1.0]\n", fp32 / ovf
    if (ips["ich_fp32_AVX2"] && ov2) printf "  ich fp32 AVX2 / OpenVINO f32 AVX2: %.2fx  [>= 1.0 on a CPU without AVX-512]\n", ips["ich_fp32_AVX2"] / ov2
    if (ips["ich_fp32_AVX2"] && eng) printf "  ich fp32 AVX2 / ich fp32 engine:   %.2fx\n", ips["ich_fp32_AVX2"] / eng
    if (amx && ovb) printf "  ich bf16 (AMX) / OpenVINO bf16: %.2fx  [>= 0.5]\n", amx / ovb
    if (amx) printf "  ich bf16 (AMX) / ich fp32:      %.2fx  [>= 4]\n", amx / fp32
    if (avx) printf "  ich bf16 (AVX512-BF16 alone) / ich fp32: %.2fx  [>= 1.6 on an AVX512-BF16-only CPU]\n", avx / fp32
  }' "$results"
