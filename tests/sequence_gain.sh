#!/usr/bin/env bash
# The demo's claim on the realistic phantom, seed by seed: the per-slice
# model's AUC(any) lies in the band 0.93-0.99 (the phantom is learnable and
# not trivial: the easy phantom gives 1.000), and the sequence stage lowers
# the competition's weighted log loss by at least 10% of the per-slice value.
# Runs scripts/demo.sh per seed (about 2.5 minutes each on 2 cores), prints
# one line per seed, and exits non-zero when more than one seed in four
# misses either: one float32 training run is one draw, and on another CPU
# (BLAS kernel) the same seed trains to other numbers. Not in ctest (20
# minutes for 8 seeds); the measured seeds are in docs/layers/rnn.md.
# Usage: tests/sequence_gain.sh [SEED ...]   (default: 1 to 8)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3 4 5 6 7 8)
fails=0
for s in "${seeds[@]}"; do
  dir=$(mktemp -d)
  out=$(ICH_DEMO_SEED=$s ICH_DEMO_DIR=$dir scripts/demo.sh 2>&1)
  auc=$(echo "$out" | awk -F'|' '/^\| AUC/ {gsub(/ /, "", $9); print $9}')
  line=$(echo "$out" | grep "^weighted log loss (competition metric): per-slice")
  x=$(echo "$line" | sed -E 's/.*per-slice ([0-9.]+),.*/\1/')
  y=$(echo "$line" | sed -E 's/.*series context ([0-9.]+)$/\1/')
  verdict=$(awk -v a="$auc" -v x="$x" -v y="$y" 'BEGIN {
    ok = (a >= 0.93) && (a <= 0.99) && (y <= 0.9 * x); printf "%s (AUC any %s per slice, Y/X %.3f)", ok ? "ok" : "MISSED", a, y / x }')
  echo "seed $s: per-slice $x, with series context $y: $verdict"
  case $verdict in ok*) ;; *) fails=$((fails + 1)) ;; esac
  rm -rf "$dir"
done
n=${#seeds[@]}
echo "$fails of $n seeds missed (allowed: $((n / 4)))"
[ $((fails * 4)) -le "$n" ] && echo "1 passed, 0 failed" || { echo "0 passed, 1 failed"; exit 1; }
