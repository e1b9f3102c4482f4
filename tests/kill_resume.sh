#!/usr/bin/env bash
# Crash-safe training: kill -9 ich-train at random moments, again and again.
# After every kill, each checkpoint on disk must load (ich-eval runs it), and
# --resume from the last one must continue; the final weights must equal, bit
# for bit, those of an uninterrupted run (CPU).
# Usage: tests/kill_resume.sh BIN_DIR WORK_DIR [KILLS]
set -euo pipefail
bin=$1
work=$2
kills=${3:-6}
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*"; exit 1; }
"$bin/ich-phantom" --difficulty easy --out ph --patients 6 --slices-per-series 20 --size 64 --seed 5 > /dev/null 2>&1
"$bin/ich-window" --input ph/dicom --out img > /dev/null 2>&1
"$bin/ich-split" --labels ph/labels.csv --meta img/meta.csv --out split > /dev/null
args=(--train split/train.csv --valid split/valid.csv --images img --arch resnext_mini --size 64 --batch 8
      --lr 1e-3 --device cpu --seed 9 --epochs 4)
"$bin/ich-train" "${args[@]}" --out straight 2> /dev/null

RANDOM=42
for ((i = 1; i <= kills; i++)); do
  resume=()
  [ -f killed/last.ckpt ] && resume=(--resume killed/last.ckpt)
  "$bin/ich-train" "${args[@]}" --out killed "${resume[@]}" 2> /dev/null &
  pid=$!
  sleep "0.$(( RANDOM % 9 + 1 ))"
  kill -9 "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  for c in killed/*.ckpt; do
    [ -e "$c" ] || continue
    "$bin/ich-eval" --checkpoint "$c" --data split/valid.csv --images img --out "eval_$i" --device cpu \
      > /dev/null 2>&1 || fail "after kill $i, $c does not load"
  done
done
resume=()
[ -f killed/last.ckpt ] && resume=(--resume killed/last.ckpt)
"$bin/ich-train" "${args[@]}" --out killed "${resume[@]}" 2> /dev/null
cmp -s straight/last.ckpt killed/last.ckpt || fail "after $kills kills and a resume, the weights differ from an uninterrupted run"
ls killed | grep -q '\.tmp\.' && fail "temporary files left in the run folder: $(ls killed)"
echo "kill -9 x$kills: every checkpoint loadable, final weights identical to the uninterrupted run"
echo "1 passed, 0 failed"
