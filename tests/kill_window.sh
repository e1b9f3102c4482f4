#!/usr/bin/env bash
# Resumable windowing and prediction: kill -9 ich-window (then ich-predict,
# per slice and with the sequence stage)
# at random moments, again and again, and go on with --resume each time.
# After every kill, no image under its final name differs from the
# uninterrupted run's (nothing half-written is ever taken as done), and
# meta.csv / errors.csv / the submission are absent or whole; after the last
# resume the output folder is byte for byte the uninterrupted run's, and the
# last resume converted only what was missing.
# Usage: tests/kill_window.sh BIN_DIR WORK_DIR [KILLS]
set -euo pipefail
bin=$1
work=$2
kills=${3:-6}
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*"; exit 1; }
# The id of a process that has ended, for the files a kill inside an atomic
# write leaves ("<name>.tmp.<pid>"; a running process's are left alone).
sh -c 'exit 0' &
dead=$!
wait "$dead"
"$bin/ich-phantom" --difficulty easy --out ph --patients 16 --slices-per-series 60 --size 128 --corrupt-fraction 0.02 --seed 8 \
  > /dev/null 2>&1
files=$(ls ph/dicom | wc -l)
# Small chunks: a journal record every 8 files, so that kills land between
# and inside records.
wargs=(--input ph/dicom --size 96 --threads 2 --chunk 8)
ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(ms)
"$bin/ich-window" "${wargs[@]}" --out straight > /dev/null 2>&1 || [ $? = 3 ] || fail "uninterrupted ich-window failed"
window_ms=$(( $(ms) - t0 ))
# A kill lands 5-25% of an uninterrupted run's time after the start: most
# runs are cut short, and a few kills leave work for the last resume.
kill_after() { sleep "$(awk -v t="$1" -v r="$RANDOM" 'BEGIN { printf "%.3f", t * (0.05 + 0.20 * r / 32767) / 1000 }')"; }

# Every image the killed run has under its final name is the uninterrupted
# run's; the tables, if there, are whole.
check_partial() {
  for f in killed/*.npy; do
    [ -e "$f" ] || continue
    cmp -s "$f" "straight/$(basename "$f")" || fail "after kill $1: $f differs from the uninterrupted run's"
  done
  for t in meta.csv errors.csv; do
    [ -e "killed/$t" ] || continue
    cmp -s "killed/$t" "straight/$t" || fail "after kill $1: killed/$t is not whole"
  done
}

RANDOM=7
cut_short=0
# One command line for the first run and every retry, as a scheduler's retry
# loop has: --resume from the start (nothing to resume: it starts fresh).
for ((i = 1; i <= kills; i++)); do
  "$bin/ich-window" "${wargs[@]}" --out killed --resume > /dev/null 2>&1 &
  pid=$!
  kill_after "$window_ms"
  kill -9 "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  [ -e killed/meta.csv ] || cut_short=$((cut_short + 1))
  check_partial "$i"
done
[ "$cut_short" -ge 1 ] || fail "no kill landed before ich-window finished (an uninterrupted run takes $window_ms ms)"
# One more run, killed only once it has recorded work of its own (random
# kills may all land before the first record on a fast machine): the last
# resume must then find work done, and redo none of it.
kill_after_progress() {  # PID JOURNAL: kill PID once JOURNAL has grown, or once PID has ended
  local size0 size
  size0=$(stat -c %s "$2" 2> /dev/null || echo 0)
  while kill -0 "$1" 2> /dev/null; do
    size=$(stat -c %s "$2" 2> /dev/null || echo 0)
    if [ "$size" -gt "$size0" ] && [ "$size0" -gt 0 ]; then break; fi
    [ "$size0" -gt 0 ] || size0=$size
    sleep 0.01
  done
  kill -9 "$1" 2> /dev/null || true
  wait "$1" 2> /dev/null || true
}
"$bin/ich-window" "${wargs[@]}" --out killed --resume > /dev/null 2>&1 &
kill_after_progress $! killed/.ich-window.journal
check_partial "progress"
# A kill inside the tables' atomic write leaves them half-written beside
# (random kills hit that window only now and then): planted here, the
# resume must clear them (the diff below sees any file left).
echo half > "killed/meta.csv.tmp.$dead"
echo half > "killed/errors.csv.tmp.$dead"
set +e
"$bin/ich-window" "${wargs[@]}" --out killed --resume > last.txt 2>&1
rc=$?
set -e
[ $rc = 0 ] || [ $rc = 3 ] || fail "the last resume failed ($rc): $(cat last.txt)"
done_before=$(sed -nE 's/.*\(([0-9]+) done by an earlier run\).*/\1/p' last.txt)
[ -n "$done_before" ] || fail "no report line: $(cat last.txt)"
[ "$done_before" -gt 0 ] || fail "the last resume started from nothing: earlier runs' work was lost"
diff -r straight killed > diff.txt || fail "after $kills kills and a resume, the outputs differ: $(head -5 diff.txt)"
ls killed | grep -q '\.part' && fail "temporary images left behind"

# Resuming with other flags is refused, and says so.
set +e
"$bin/ich-window" --input ph/dicom --size 64 --threads 2 --chunk 8 --out killed --resume > other.txt 2>&1
rc=$?
set -e
[ $rc = 1 ] && grep -q "belongs to another run (size=.* there, size=64 here)" other.txt ||
  fail "a resume with another --size was not refused naming the size: $(cat other.txt)"
# Nothing to resume (a folder that does not exist yet): a fresh run, one note line.
set +e
"$bin/ich-window" "${wargs[@]}" --out fresh --resume > fresh.txt 2>&1
rc=$?
set -e
[ $rc = 0 ] || [ $rc = 3 ] || fail "--resume with nothing to resume failed ($rc): $(cat fresh.txt)"
grep -q "nothing to resume, starting fresh" fresh.txt || fail "--resume into a new folder: no note line: $(cat fresh.txt)"
diff -r straight fresh > /dev/null || fail "--resume into a new folder did not make the uninterrupted run's outputs"

# ich-predict the same way, on a small model trained here.
"$bin/ich-split" --labels ph/labels.csv --meta straight/meta.csv --out split > /dev/null
"$bin/ich-train" --train split/train.csv --valid split/valid.csv --images straight --arch resnext_mini --size 64 \
  --batch 16 --lr 1e-3 --device cpu --seed 3 --epochs 1 --out run > /dev/null 2>&1
# kill_predict NAME ARGS...: uninterrupted into NAME_straight/, then killed
# runs resumed into NAME_killed/; the outputs must end byte for byte equal.
kill_predict() {
  local name=$1
  shift
  local pargs=("$@" --input ph/dicom --device cpu --chunk 16 --batch 16)
  mkdir -p "${name}_straight" "${name}_killed"
  local t0
  t0=$(ms)
  "$bin/ich-predict" "${pargs[@]}" --out "${name}_straight/sub.csv" > /dev/null 2>&1 || [ $? = 3 ] ||
    fail "uninterrupted ich-predict ($name) failed"
  predict_ms=$(( $(ms) - t0 ))
  pcut=0
  for ((i = 1; i <= kills; i++)); do
    "$bin/ich-predict" "${pargs[@]}" --out "${name}_killed/sub.csv" --resume > /dev/null 2>&1 &
    local pid=$!
    kill_after "$predict_ms"
    kill -9 "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    [ -e "${name}_killed/sub.csv" ] || pcut=$((pcut + 1))
    if [ -e "${name}_killed/sub.csv" ]; then
      cmp -s "${name}_killed/sub.csv" "${name}_straight/sub.csv" || fail "after kill $i: $name sub.csv is not whole"
    fi
  done
  [ "$pcut" -ge 1 ] || fail "no kill landed before ich-predict ($name) finished (an uninterrupted run takes $predict_ms ms)"
  "$bin/ich-predict" "${pargs[@]}" --out "${name}_killed/sub.csv" --resume > /dev/null 2>&1 &
  kill_after_progress $! "${name}_killed/sub.csv.journal"
  echo half > "${name}_killed/sub.csv.tmp.$dead"  # as a kill inside the submission's atomic write leaves
  [ ! -d "${name}_killed/sub.csv.features" ] || echo half > "${name}_killed/sub.csv.features/0.npy.tmp.$dead"
  set +e
  "$bin/ich-predict" "${pargs[@]}" --out "${name}_killed/sub.csv" --resume > plast.txt 2>&1
  local rc=$?
  set -e
  [ $rc = 0 ] || [ $rc = 3 ] || fail "the last ich-predict ($name) resume failed ($rc): $(cat plast.txt)"
  for f in sub.csv studies.csv; do
    [ -e "${name}_straight/$f" ] || continue
    cmp -s "${name}_killed/$f" "${name}_straight/$f" || fail "after $kills kills and a resume, $name $f differs"
  done
  find "${name}_killed" -name "*.tmp.*" | grep -q . && fail "temporary files left behind ($name): $(find "${name}_killed" -name "*.tmp.*")"
  pdone=$(sed -nE 's/.*\(([0-9]+) done by an earlier run\).*/\1/p' plast.txt)
  [ -n "$pdone" ] && [ "$pdone" -gt 0 ] || fail "the last ich-predict ($name) resume started from nothing: $(cat plast.txt)"
}
kill_predict plain --checkpoint run/last.ckpt
# and with the sequence stage: the journal keeps each slice's geometry, the
# features land in sub.csv.features/ chunk by chunk; studies.csv too
"$bin/ich-embed" --checkpoint run/last.ckpt --data split/train.csv --data split/valid.csv --images straight --out emb \
  --device cpu > /dev/null 2>&1
"$bin/ich-train-seq" --train split/train.csv --valid split/valid.csv --embeddings emb --out seqrun --hidden 8 --epochs 2 \
  --device cpu > /dev/null 2>&1
kill_predict sequence --checkpoint run/last.ckpt --sequence seqrun/last.ckpt
[ -s sequence_straight/studies.csv ] || fail "ich-predict --sequence wrote no studies.csv"
echo "kill -9 x$kills each: ich-window ($files files in $window_ms ms; $cut_short runs cut short; $done_before files" \
     "done before the last resume) and ich-predict, per slice and with --sequence (the last: $predict_ms ms; $pcut cut" \
     "short; $pdone done before the last resume) end byte for byte as uninterrupted runs"
echo "1 passed, 0 failed"
