#!/usr/bin/env bash
# Issue 16's claim on the realistic phantom, seed by seed: the per-slice
# model stays below AUC(any) 0.98, and the sequence stage lowers the
# competition's weighted log loss by at least 10% of the per-slice value.
# Runs scripts/demo.sh per seed (about 3 minutes each on 2 cores) and exits
# non-zero when a seed misses either. Not in ctest: one float32 training run
# is one draw, and on another CPU (BLAS kernel) the same seed trains to other
# numbers; the measured seeds and the spread are in docs/layers/sequence.md.
# Usage: tests/sequence_gain.sh [SEED ...]   (default: 2 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(2 3)
fails=0
for s in "${seeds[@]}"; do
  dir=$(mktemp -d)
  out=$(ICH_DEMO_SEED=$s ICH_DEMO_DIR=$dir scripts/demo.sh 2>&1)
  auc=$(echo "$out" | awk -F'|' '/^\| AUC/ {gsub(/ /, "", $9); print $9}')
  line=$(echo "$out" | grep "^weighted log loss (competition metric): per-slice")
  x=$(echo "$line" | sed -E 's/.*per-slice ([0-9.]+),.*/\1/')
  y=$(echo "$line" | sed -E 's/.*series context ([0-9.]+)$/\1/')
  verdict=$(awk -v a="$auc" -v x="$x" -v y="$y" 'BEGIN {
    ok = (a < 0.98) && (y <= 0.9 * x); printf "%s (AUC any %s per slice, Y/X %.3f)", ok ? "ok" : "MISSED", a, y / x }')
  echo "seed $s: per-slice $x, with series context $y: $verdict"
  case $verdict in ok*) ;; *) fails=$((fails + 1)) ;; esac
  rm -rf "$dir"
done
[ $fails -eq 0 ] && echo "1 passed, 0 failed" || { echo "0 passed, 1 failed ($fails seeds missed)"; exit 1; }
