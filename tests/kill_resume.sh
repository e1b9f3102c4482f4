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

# One command line for the first run and every retry, as a scheduler's retry
# loop has: --resume killed/last.ckpt from the start (nothing there yet: it
# starts fresh; a kill between epoch<N>.ckpt and last.ckpt: it goes on from
# epoch<N>.ckpt).
RANDOM=42
for ((i = 1; i <= kills; i++)); do
  "$bin/ich-train" "${args[@]}" --out killed --resume killed/last.ckpt 2> /dev/null &
  pid=$!
  sleep "0.$(( RANDOM % 9 + 1 ))"
  kill -9 "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  for c in killed/*.ckpt; do
    [ -e "$c" ] || continue
    "$bin/ich-eval" --checkpoint "$c" --data split/valid.csv --images img --out "eval_$i" --device cpu \
      > "eval_$i.txt" 2>&1 || fail "after kill $i, $c does not load: $(grep -m 3 -i 'error\|sanitizer' "eval_$i.txt")"
  done
done
# A kill inside an atomic write leaves "<name>.tmp.<pid>" beside the untouched
# name (the random kills above hit that window only now and then): planted
# here, the resume must clear them.
sh -c 'exit 0' &  # the id of a process that has ended: a running one's files are left alone
dead=$!
wait "$dead"
echo half > "killed/last.ckpt.tmp.$dead"
echo half > "killed/log.csv.tmp.$dead"
"$bin/ich-train" "${args[@]}" --out killed --resume killed/last.ckpt 2> resume.txt || fail "the last resume: $(tail -2 resume.txt)"
cmp -s straight/last.ckpt killed/last.ckpt || fail "after $kills kills and a resume, the weights differ from an uninterrupted run"
# A kill between epoch2.ckpt and last.ckpt: the run goes on from epoch2.ckpt, and says so.
mkdir between && cp straight/epoch2.ckpt between/
"$bin/ich-train" "${args[@]}" --out between --resume between/last.ckpt 2> between.txt ||
  fail "resume with only epoch2.ckpt: $(tail -2 between.txt)"
grep -q "continuing from between/epoch2.ckpt" between.txt || fail "no note naming epoch2.ckpt: $(head -3 between.txt)"
cmp -s straight/last.ckpt between/last.ckpt || fail "resumed from epoch2.ckpt, the weights differ from an uninterrupted run"
# Another run's folder (a best.ckpt alone) is refused, naming it; a folder with no checkpoint starts fresh.
mkdir other && cp straight/best.ckpt other/
if "$bin/ich-train" "${args[@]}" --out other --resume other/last.ckpt 2> other.txt; then
  fail "--resume into a folder holding only best.ckpt was not refused"
fi
grep -q "holds only best.ckpt" other.txt || fail "the refusal does not name best.ckpt: $(cat other.txt)"
"$bin/ich-train" "${args[@]}" --out fresh --resume fresh/last.ckpt 2> fresh.txt || fail "$(tail -2 fresh.txt)"
grep -q "nothing to resume, starting fresh" fresh.txt || fail "no note for nothing to resume: $(head -3 fresh.txt)"
cmp -s straight/last.ckpt fresh/last.ckpt || fail "a fresh run through --resume differs from the uninterrupted one"
ls killed | grep -q '\.tmp\.' && fail "temporary files left in the run folder: $(ls killed)"
echo "kill -9 x$kills with one command line (--resume from the start): every checkpoint loadable, final weights identical to the uninterrupted run; a kill between epoch2.ckpt and last.ckpt goes on from epoch2.ckpt; leftovers of killed writes cleared"
echo "1 passed, 0 failed"
