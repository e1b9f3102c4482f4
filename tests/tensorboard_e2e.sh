#!/usr/bin/env bash
# What people look at, read back by independent readers. ich-train's
# TensorBoard event files, read by TensorBoard's own reader
# (tests/tensorboard_check.py in the venv tests/reference/make_tensorboard_venv.sh
# makes): after a run of 2 epochs, and after a resume from the first epoch's
# checkpoint to 3 (a second event file, whose restart must make TensorBoard
# drop the first file's second epoch), every scalar, step, wall time and
# value equals log.csv's. Then ich-eval's report.html, parsed by Python's
# html.parser (tests/report_check.py): its numbers equal metrics.json's, its
# operating points the definition's on predictions.csv, its images inlined;
# and in headless Chromium (tests/report_browser.py): no console message,
# every section rendered, a full-page screenshot that is not blank.
# Usage: tests/tensorboard_e2e.sh BIN_DIR WORK_DIR VENV_DIR
set -euo pipefail
bin=$1
work=$2
py=$3/bin/python
check=$(cd "$(dirname "$0")" && pwd)/tensorboard_check.py
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*"; exit 1; }

"$bin/ich-phantom" --difficulty easy --out ph --patients 16 --slices-per-series 8 --size 64 --seed 5 > /dev/null 2>&1
"$bin/ich-window" --input ph/dicom --out img > /dev/null 2>&1
"$bin/ich-split" --labels ph/labels.csv --meta img/meta.csv --out split > /dev/null
train() { "$bin/ich-train" --train split/train.csv --valid split/valid.csv --images img --arch resnext_mini \
            --size 48 --batch 8 --lr 1e-3 --device cpu --seed 3 --max-steps-per-epoch 3 --out run "$@" 2> /dev/null; }
train --epochs 2
[ "$(ls run/tensorboard | wc -l)" = 1 ] || fail "expected one event file, got: $(ls run/tensorboard)"
"$py" "$check" run 2 || fail "after 2 epochs"
# the fixture has bleeding slices among the validation patients, so AUC columns (and tags) are there
auc=$(awk -F, 'NR == 1 {for (i = 1; i <= NF; ++i) if ($i == "valid_auc_any") c = i} NR == 2 {print $c}' run/log.csv)
[ -n "$auc" ] || fail "log.csv has no AUC(any): the fixture does not exercise the AUC tags"
sleep 1.1  # the next file's name (its start second) sorts after the first's, as TensorBoard reads them
train --epochs 3 --resume run/epoch1.ckpt
[ "$(ls run/tensorboard | wc -l)" = 2 ] || fail "expected two event files after the resume, got: $(ls run/tensorboard)"
"$py" "$check" run 3 || fail "after the resume to 3 epochs"
"$bin/ich-eval" --checkpoint run/best.ckpt --data split/valid.csv --images img --out eval --device cpu > /dev/null 2>&1 ||
  fail "ich-eval"
/usr/bin/python3 "$(dirname "$check")/report_check.py" eval || fail "report.html"
/usr/bin/python3 "$(dirname "$check")/report_browser.py" eval/report.html || fail "report.html in Chromium"
echo "1 passed, 0 failed"
