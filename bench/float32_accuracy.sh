#!/usr/bin/env bash
# Float32 accuracy, ours against PyTorch's, across BLAS kernels and thread
# counts: for each OPENBLAS_CORETYPE and OMP_NUM_THREADS, both references are
# made again under that setting (PyTorch's float32 column moves with it too)
# and the two accuracy suites print their numbers; a table is printed last.
#   bench/float32_accuracy.sh [BUILD_DIR] [CORETYPES...]
# Default kernels: the machine's own, Haswell, Zen, Prescott (the issue's
# three plus this CPU's). Needs a build (scripts/build.sh) and Debian's
# PyTorch at /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
if [ $# -gt 0 ]; then kernels=("$@"); else kernels=(default Haswell Zen Prescott); fi
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf "| OPENBLAS_CORETYPE | threads | twenty steps: ours | PyTorch | ratio | per-op rows: worst ratio (op) |\n"
printf "|---|---:|---:|---:|---:|---|\n"
for k in "${kernels[@]}"; do
  for t in 1 2; do
    env_k=()
    [ "$k" != default ] && env_k=(OPENBLAS_CORETYPE="$k")
    env "${env_k[@]}" OMP_NUM_THREADS="$t" "$py" tests/reference/gen_train_reference.py --out "$build/train_ref" > /dev/null
    env "${env_k[@]}" OMP_NUM_THREADS="$t" "$py" tests/reference/gen_accuracy_reference.py --out "$build/accuracy_ref" > /dev/null
    env "${env_k[@]}" OMP_NUM_THREADS="$t" "$build/bin/test_train_reference" > "$tmp/train.txt" 2>&1 || true
    env "${env_k[@]}" OMP_NUM_THREADS="$t" "$build/bin/test_float32_accuracy" > "$tmp/ops.txt" 2>&1 || true
    line=$(grep "geometric mean" "$tmp/train.txt" || echo "no result")
    ours=$(sed -E 's/.*ours ([0-9.e+-]+),.*/\1/' <<< "$line")
    torch=$(sed -E 's/.*PyTorch ([0-9.e+-]+) .*/\1/' <<< "$line")
    ratio=$(sed -E 's/.*ratio ([0-9.]+).*/\1/' <<< "$line")
    worst=$(grep -E '^\| [a-z]' "$tmp/ops.txt" | awk -F'|' '{gsub(/ /,"",$2); gsub(/ /,"",$3); r=$6+0; if (r>w) {w=r; n=$2" "$3}} END {printf "%.2f (%s)", w, n}')
    printf "| %s | %s | %s | %s | %s | %s |\n" "$k" "$t" "$ours" "$torch" "$ratio" "$worst"
    grep -q "FAILED" "$tmp/train.txt" "$tmp/ops.txt" && echo "  (a test failed under this setting: see the suites' output)"
  done
done
# Leave the references as the suite makes them (this machine's defaults).
"$py" tests/reference/gen_train_reference.py --out "$build/train_ref" > /dev/null
"$py" tests/reference/gen_accuracy_reference.py --out "$build/accuracy_ref" > /dev/null
