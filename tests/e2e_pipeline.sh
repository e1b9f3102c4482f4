#!/usr/bin/env bash
# End to end on a tiny phantom: ich-phantom -> ich-window -> ich-split ->
# ich-train -> ich-eval -> ich-predict, then ich-embed -> ich-train-seq ->
# ich-eval --sequence, checking every stage's outputs, that the training loss
# falls, and that runs resumed from a checkpoint end bitwise identical to
# uninterrupted ones (CPU).
# Usage: tests/e2e_pipeline.sh BIN_DIR WORK_DIR
set -euo pipefail
bin=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*"; exit 1; }

"$bin/ich-phantom" --difficulty easy --out ph --patients 8 --slices-per-series 25 --size 96 --corrupt-fraction 0.03 --seed 11 > phantom.txt 2>&1
[ "$(ls ph/dicom | wc -l)" = 200 ] || fail "phantom: expected 200 DICOM files"
[ "$(wc -l < ph/labels.csv)" = 1201 ] || fail "phantom: expected 1200 label rows"
corrupt=$(grep -c -E ',(truncated|garbage)$' ph/manifest.csv || true)

set +e
"$bin/ich-window" --input ph/dicom --out img 2> /dev/null > window.txt
rc=$?
set -e
if [ "$corrupt" -gt 0 ]; then [ $rc = 3 ] || fail "ich-window: exit $rc, expected 3 with corrupt files"; fi
[ "$(( $(wc -l < img/errors.csv) - 1 ))" = "$corrupt" ] || fail "ich-window: errors.csv should list the $corrupt corrupt files"
[ "$(ls img/*.npy | wc -l)" = $(( 200 - corrupt )) ] || fail "ich-window: wrong number of images"

"$bin/ich-split" --labels ph/labels.csv --meta img/meta.csv --out split > split.txt
rows=$(( $(wc -l < split/train.csv) + $(wc -l < split/valid.csv) - 2 ))
[ "$rows" = $(( 200 - corrupt )) ] || fail "ich-split: $rows rows, expected $(( 200 - corrupt ))"
comm -12 <(tail -n +2 split/train.csv | cut -d, -f8 | sort -u) <(tail -n +2 split/valid.csv | cut -d, -f8 | sort -u) | grep -q . &&
  fail "ich-split: a patient on both sides"

train() { "$bin/ich-train" --train split/train.csv --valid split/valid.csv --images img --arch resnext_mini \
            --size 64 --batch 8 --lr 1e-3 --device cpu --seed 3 "$@" 2> /dev/null; }
train --out run --epochs 2
for f in log.csv epoch1.ckpt epoch2.ckpt last.ckpt best.ckpt; do [ -f run/$f ] || fail "ich-train: no run/$f"; done
# One write per epoch: last.ckpt is a second name of epoch2.ckpt (same inode), not a copy.
[ "$(stat -c %i run/last.ckpt)" = "$(stat -c %i run/epoch2.ckpt)" ] || fail "ich-train: last.ckpt is a copy of epoch2.ckpt"
python_ok=$(awk -F, 'NR==2 {a=$3} NR==3 {b=$3} END {print (b < a) ? "yes" : "no"}' run/log.csv)
[ "$python_ok" = yes ] || fail "ich-train: train loss did not fall: $(cat run/log.csv)"

# Resume: 1 epoch, then continue to 2, must equal the straight run bit for bit.
train --out resumed --epochs 1
train --out resumed --epochs 2 --resume resumed/last.ckpt
cmp -s run/last.ckpt resumed/last.ckpt || fail "resume: 1+1 epochs differs from 2 epochs"

"$bin/ich-eval" --checkpoint run/best.ckpt --data split/valid.csv --images img --out eval --device cpu > eval.txt 2>/dev/null
for f in predictions.csv metrics.json roc.png pr.png calibration.png; do [ -s eval/$f ] || fail "ich-eval: no eval/$f"; done
grep -q "weighted log loss" eval.txt || fail "ich-eval: no table"
[ "$(( $(wc -l < eval/predictions.csv) - 1 ))" = "$(( $(wc -l < split/valid.csv) - 1 ))" ] || fail "ich-eval: row count"
# Temperature scaling: fitted on the validation split, the same AUC per label
# (the order of the slices is kept), a log loss no higher, ich-predict takes
# the temperatures too, and ich-train refuses to resume it (no optimizer state).
"$bin/ich-calibrate" --checkpoint run/best.ckpt --data split/valid.csv --images img --out run/calibrated.ckpt \
  --device cpu > cal.txt 2>/dev/null || fail "ich-calibrate"
grep -q "^weighted log loss on" cal.txt || fail "ich-calibrate: no summary"
"$bin/ich-eval" --checkpoint run/calibrated.ckpt --data split/valid.csv --images img --out evalcal --device cpu \
  > /dev/null 2>&1 || fail "ich-eval of a calibrated checkpoint"
/usr/bin/python3 - eval/metrics.json evalcal/metrics.json cal.txt <<'PY' || fail "ich-calibrate: AUC or log loss"
import json, re, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k, v in a["labels"].items():
    if v["auc"] != b["labels"][k]["auc"]:
        sys.exit(f"{k}: AUC {v['auc']} -> {b['labels'][k]['auc']}")
if b["weighted_log_loss"] > a["weighted_log_loss"] + 1e-6:
    sys.exit(f"log loss rose: {a['weighted_log_loss']} -> {b['weighted_log_loss']}")
after = float(re.search(r"([0-9.]+) after", open(sys.argv[3]).read()).group(1))
if abs(after - b["weighted_log_loss"]) > 1e-4:
    sys.exit(f"ich-calibrate says {after}, ich-eval {b['weighted_log_loss']}")
PY
set +e
"$bin/ich-predict" --checkpoint run/best.ckpt --input ph/dicom --out subplain.csv --device cpu > /dev/null 2>&1
"$bin/ich-predict" --checkpoint run/calibrated.ckpt --input ph/dicom --out subcal.csv --device cpu > /dev/null 2>&1
rc=$?
set -e
[ $rc = 0 ] || [ $rc = 3 ] || fail "ich-predict with a calibrated checkpoint: exit $rc"
/usr/bin/python3 - subplain.csv subcal.csv cal.txt <<'PY' || fail "ich-predict: the temperatures not applied"
import csv, math, re, sys
t = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\| (\w+) \| ([0-9.]+)", open(sys.argv[3]).read(), re.M)}
plain = {r["ID"]: float(r["Label"]) for r in csv.DictReader(open(sys.argv[1]))}
n = 0
for r in csv.DictReader(open(sys.argv[2])):
    label = r["ID"].rsplit("_", 1)[1]
    p = plain[r["ID"]]
    if not 0.01 < p < 0.99:
        continue
    want = 1 / (1 + math.exp(-math.log(p / (1 - p)) / t[label]))
    if abs(float(r["Label"]) - want) > 1e-4:
        sys.exit(f"{r['ID']}: {r['Label']}, expected {want:.6f} (T {t[label]})")
    n += 1
if n < 100:
    sys.exit(f"only {n} probabilities checked")
PY
set +e
"$bin/ich-train" --train split/train.csv --valid split/valid.csv --images img --arch resnext_mini --size 64 --batch 8 \
  --lr 1e-3 --device cpu --seed 3 --out rescal --epochs 3 --resume run/calibrated.ckpt > rescal.txt 2>&1
rc=$?
set -e
[ $rc = 1 ] && grep -q "is a calibrated checkpoint" rescal.txt || fail "ich-train --resume of a calibrated checkpoint: exit $rc"
# External validation in CQ500's layout: a phantom whose PatientIDs are
# CQ500-CT-n, a reads.csv of three readers (one of them disagreeing), a
# labelled study with no DICOM and a DICOM study with no labels.
"$bin/ich-phantom" --difficulty easy --out cq --patients 6 --slices-per-series 10 --size 96 --seed 21 \
  --patient-prefix CQ500-CT- > /dev/null 2>&1 || fail "ich-phantom --patient-prefix"
"$bin/ich-window" --input cq/dicom --out cqimg > /dev/null 2>&1 || fail "ich-window of the CQ500-like phantom"
/usr/bin/python3 - cq/labels.csv cq/manifest.csv reads.csv <<'PY' || fail "writing reads.csv"
import csv, sys
truth = {}
pat = {r["image_id"]: r["patient_id"] for r in csv.DictReader(open(sys.argv[2]))}
names = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]
for r in csv.DictReader(open(sys.argv[1])):
    img, lab = r["ID"].rsplit("_", 1)
    t = truth.setdefault(pat[img], dict.fromkeys(names, 0))
    t[lab] |= int(r["Label"])
cq = {"any": "ICH", "intraparenchymal": "IPH", "intraventricular": "IVH", "subdural": "SDH", "epidural": "EDH",
      "subarachnoid": "SAH"}
cols = ["name", "Category"] + [f"R{k}:{f}" for k in (1, 2, 3) for f in ("ICH", "IPH", "IVH", "SDH", "EDH", "SAH", "Fracture")]
w = csv.writer(open(sys.argv[3], "w"))
w.writerow(cols)
patients = sorted(truth, key=lambda p: int(p.rsplit("-", 1)[1]))
for i, p in enumerate(patients[:-1]):  # the last patient has no row: DICOM without labels
    row = {"name": p, "Category": "B1"}
    for lab, f in cq.items():
        v = truth[p][lab]
        votes = [v, v, 1 - v] if i % 2 else [v, 1 - v, v]  # one reader disagrees: the majority is the truth
        for k in (1, 2, 3):
            row[f"R{k}:{f}"] = votes[k - 1]
    for k in (1, 2, 3):
        row[f"R{k}:Fracture"] = 0
    w.writerow([row[c] for c in cols])
w.writerow(["CQ500-CT-99", "B2"] + [0] * (len(cols) - 2))  # labelled, no DICOM
PY
"$bin/ich-eval" --checkpoint run/best.ckpt --images cqimg --study-labels reads.csv --out cqeval --device cpu \
  --bootstrap 200 > cqeval.txt 2>/dev/null || fail "ich-eval --study-labels: $(cat cqeval.txt)"
grep -q "no DICOM: CQ500-CT-99" cqeval.txt || fail "ich-eval --study-labels: the labelled study without DICOM not named"
grep -q "no labels: CQ500-CT-5" cqeval.txt || fail "ich-eval --study-labels: the DICOM study without labels not named"
/usr/bin/python3 - cqeval cq/labels.csv cq/manifest.csv <<'PY' || fail "ich-eval --study-labels: studies.csv"
import csv, json, os, sys
d = sys.argv[1]
pat = {r["image_id"]: r["patient_id"] for r in csv.DictReader(open(sys.argv[3]))}
truth, top = {}, {}
for r in csv.DictReader(open(sys.argv[2])):
    img, lab = r["ID"].rsplit("_", 1)
    if lab == "any":
        truth[pat[img]] = truth.get(pat[img], 0) | int(r["Label"])
for r in csv.DictReader(open(os.path.join(d, "predictions.csv"))):
    top[r["patient_id"]] = max(top.get(r["patient_id"], 0.0), float(r["p_any"]))
rows = list(csv.DictReader(open(os.path.join(d, "studies.csv"))))
if len(rows) != 5:
    sys.exit(f"{len(rows)} labelled studies, expected 5")
for r in rows:
    if int(r["any"]) != truth[r["patient_id"]]:
        sys.exit(f"{r['patient_id']}: any {r['any']}, the readers' majority {truth[r['patient_id']]}")
    if abs(float(r["p_any"]) - top[r["patient_id"]]) > 1e-6:
        sys.exit(f"{r['patient_id']}: p_any {r['p_any']}, the highest slice {top[r['patient_id']]}")
m = json.load(open(os.path.join(d, "study_metrics.json")))
e = m["external"]
if e["studies_matched"] != 5 or e["labels_without_dicom"] != ["CQ500-CT-99"] or len(e["dicom_without_labels"]) != 1:
    sys.exit(f"external: {e}")
if m["labels"]["any"]["studies"] != 5:
    sys.exit("any: not 5 studies")
PY
grep -q 'id="study-level"' cqeval/report.html && ! grep -q 'id="metrics"' cqeval/report.html ||
  fail "ich-eval --study-labels: report.html should have the study level only"
# Ensembles and test-time views: a checkpoint averaged with itself is the
# checkpoint (ich-eval and ich-predict, byte for byte); with views the
# probabilities move (with --sequence: below, after the series models).
"$bin/ich-eval" --checkpoint run/best.ckpt --checkpoint run/best.ckpt --data split/valid.csv --images img --out evalens \
  --device cpu > /dev/null 2>&1 || fail "ich-eval with two checkpoints"
cmp -s eval/predictions.csv evalens/predictions.csv || fail "ich-eval: a checkpoint averaged with itself changed"
"$bin/ich-eval" --checkpoint run/best.ckpt --checkpoint run/epoch1.ckpt --tta flip+transpose --data split/valid.csv \
  --images img --out evaltta --device cpu > /dev/null 2>&1 || fail "ich-eval --tta flip+transpose"
cmp -s eval/predictions.csv evaltta/predictions.csv && fail "ich-eval --tta: the same probabilities as without views"
set +e
"$bin/ich-predict" --checkpoint run/best.ckpt --checkpoint run/best.ckpt --input ph/dicom --out subens.csv --device cpu \
  > /dev/null 2>&1
"$bin/ich-predict" --checkpoint run/best.ckpt --tta flip --input ph/dicom --out subtta.csv --device cpu > /dev/null 2>&1
set -e
cmp -s subplain.csv subens.csv || fail "ich-predict: a checkpoint averaged with itself changed"
cmp -s subplain.csv subtta.csv && fail "ich-predict --tta flip: the same probabilities as without views"
# Folds: every image in exactly one fold's validation side
"$bin/ich-split" --labels ph/labels.csv --meta img/meta.csv --out folds --folds 3 > folds.txt
[ "$(( $(wc -l < folds/fold0/valid.csv) + $(wc -l < folds/fold1/valid.csv) + $(wc -l < folds/fold2/valid.csv) - 3 ))" = $(( 200 - corrupt )) ] ||
  fail "ich-split --folds: the folds' validation sides do not cover every image once"
[ "$(( $(wc -l < folds/fold1/train.csv) + $(wc -l < folds/fold1/valid.csv) - 2 ))" = $(( 200 - corrupt )) ] ||
  fail "ich-split --folds: fold1's train and valid are not all images"
# Study level: operating points chosen on the training split (7 studies; the
# validation split has one), then carried to a fold's patients (as to
# external data) with --thresholds; both recomputed from the CSVs.
"$bin/ich-eval" --checkpoint run/best.ckpt --data split/train.csv --images img --out evalst --device cpu --studies \
  --prevalence 0.06 --bootstrap 200 > evalst.txt 2>/dev/null || fail "ich-eval --studies"
grep -q "| study level |" evalst.txt || fail "ich-eval --studies: no study-level table"
/usr/bin/python3 "$here/study_check.py" evalst split/train.csv > /dev/null || fail "ich-eval --studies: $(/usr/bin/python3 "$here/study_check.py" evalst split/train.csv)"
"$bin/ich-eval" --checkpoint run/best.ckpt --data folds/fold1/valid.csv --images img --out evalst2 --device cpu --studies \
  --thresholds evalst/study_thresholds.csv --bootstrap 200 > /dev/null 2>&1 || fail "ich-eval --studies --thresholds"
/usr/bin/python3 "$here/study_check.py" evalst2 folds/fold1/valid.csv evalst/study_thresholds.csv > /dev/null ||
  fail "ich-eval --thresholds: $(/usr/bin/python3 "$here/study_check.py" evalst2 folds/fold1/valid.csv evalst/study_thresholds.csv)"
grep -q '^any,0.90000000000000002,[0-9]' evalst/study_thresholds.csv || fail "ich-eval --studies: no threshold for any at 90%"
set +e
"$bin/ich-eval" --checkpoint run/best.ckpt --data split/valid.csv --images img --out evalbad --device cpu \
  --prevalence 0.06 > bad.txt 2>&1
rc=$?
set -e
[ $rc = 1 ] && grep -q "add --studies" bad.txt || fail "ich-eval: --prevalence without --studies: exit $rc, $(cat bad.txt)"

set +e
"$bin/ich-predict" --checkpoint run/best.ckpt --input ph/dicom --out submission.csv --device cpu 2> /dev/null > predict.txt
rc=$?
set -e
if [ "$corrupt" -gt 0 ]; then [ $rc = 3 ] || fail "ich-predict: exit $rc, expected 3"; fi
[ "$(( $(wc -l < submission.csv) - 1 ))" = $(( 6 * (200 - corrupt) )) ] || fail "ich-predict: row count"
head -1 submission.csv | grep -q '^ID,Label$' || fail "ich-predict: header"
# The second stage: embeddings (both splits, one folder), the sequence model,
# its resume, and the evaluation with series context.
"$bin/ich-embed" --checkpoint run/best.ckpt --data split/train.csv --data split/valid.csv --images img --out emb \
  --device cpu > embed.txt 2> /dev/null
[ "$(( $(wc -l < emb/index.csv) - 1 ))" = "$rows" ] || fail "ich-embed: index.csv should list the $rows slices"
for s in $(tail -n +2 emb/index.csv | cut -d, -f5 | uniq); do  # each series together, in order along the normal
  tail -n +2 emb/index.csv | awk -F, -v s="$s" '$5 == s {print $6}' | sort -g -c ||
    fail "ich-embed: series $s is not in order of position"
done
[ "$(tail -n +2 emb/index.csv | cut -d, -f5 | uniq | wc -l)" = "$(tail -n +2 emb/index.csv | cut -d, -f5 | sort -u | wc -l)" ] ||
  fail "ich-embed: a series' slices are not together"
seq_train() { "$bin/ich-train-seq" --train split/train.csv --valid split/valid.csv --embeddings emb --hidden 8 \
                --batch 2 --device cpu --seed 4 "$@" > /dev/null 2> seq_err.txt; }
seq_train --out seqrun --epochs 3
for f in log.csv last.ckpt best.ckpt; do [ -f seqrun/$f ] || fail "ich-train-seq: no seqrun/$f"; done
seq_train --out seqres --epochs 2
seq_train --out seqres --epochs 3 --resume
cmp -s seqrun/last.ckpt seqres/last.ckpt || fail "ich-train-seq: resume (2+1 epochs) differs from 3 epochs"
"$bin/ich-eval" --checkpoint run/best.ckpt --sequence seqrun/best.ckpt --data split/valid.csv --images img --out evalseq \
  --device cpu > evalseq.txt 2> /dev/null
for f in predictions.csv metrics.json per_slice/predictions.csv report.html per_slice/report.html; do
  [ -s evalseq/$f ] || fail "ich-eval --sequence: no $f"
done
/usr/bin/python3 "$here/report_check.py" evalseq > /dev/null || fail "ich-eval --sequence: report.html"
grep -q 'id="studies"' evalseq/report.html || fail "ich-eval --sequence: report.html has no per-series section"
grep -q 'id="studies"' evalseq/per_slice/report.html && fail "ich-eval --sequence: a per-series section in the per-slice report"
# several sequence models are averaged: one model twice is that model
"$bin/ich-eval" --checkpoint run/best.ckpt --sequence seqrun/best.ckpt --sequence seqrun/best.ckpt --data split/valid.csv \
  --images img --out evalseq2 --device cpu > /dev/null 2> /dev/null
cmp -s evalseq/predictions.csv evalseq2/predictions.csv || fail "ich-eval: a model averaged with itself changed"
"$bin/ich-eval" --checkpoint run/best.ckpt --sequence seqrun/best.ckpt --sequence seqres/best.ckpt --data split/valid.csv \
  --images img --out evalseq3 --device cpu > /dev/null 2> /dev/null
[ -s evalseq3/predictions.csv ] || fail "ich-eval: two sequence models"

grep -q "^weighted log loss (competition metric): per-slice [0-9.]*, with series context [0-9.]*$" evalseq.txt ||
  fail "ich-eval --sequence: no comparison line"
# ich-predict with the sequence stage: every slice, a row per series in studies.csv; a resumed run (all
# chunks recorded: the features come back from OUT.features/) writes the same bytes
set +e
"$bin/ich-predict" --checkpoint run/best.ckpt --sequence seqrun/best.ckpt --input ph/dicom --out seqsub/submission.csv \
  --chunk 64 --device cpu > predict_seq.txt 2> /dev/null
rc=$?
set -e
if [ "$corrupt" -gt 0 ]; then [ $rc = 3 ] || fail "ich-predict --sequence: exit $rc, expected 3"; fi
[ "$(( $(wc -l < seqsub/submission.csv) - 1 ))" = $(( 6 * (200 - corrupt) )) ] || fail "ich-predict --sequence: row count"
[ "$(( $(wc -l < seqsub/studies.csv) - 1 ))" = 8 ] || fail "ich-predict --sequence: studies.csv should have the 8 series"
head -1 seqsub/studies.csv | grep -q '^patient_id,study_uid,series_uid,slices,p_any,' || fail "studies.csv: header"
cmp -s seqsub/submission.csv submission.csv && fail "ich-predict --sequence: the same probabilities as per slice"
cp seqsub/submission.csv seqsub/first.csv
set +e
"$bin/ich-predict" --checkpoint run/best.ckpt --sequence seqrun/best.ckpt --input ph/dicom --out seqsub/submission.csv \
  --chunk 64 --device cpu --resume > /dev/null 2> /dev/null
set -e
cmp -s seqsub/submission.csv seqsub/first.csv || fail "ich-predict --sequence --resume: other bytes"
# Pipelines (infer/apply.h): each slice model with the series models trained on its embeddings, matched
# by the weights ich-embed records. A checkpoint given twice with its series model is the run with one,
# byte for byte; epoch 1's CNN with its own series model (embeddings over the image, its mirror and its
# transpose) beside best.ckpt's gives the mean of the two pipelines (ich-predict and ich-eval); a series
# model whose CNN is not given, and --tta with --sequence, are refused.
"$bin/ich-embed" --checkpoint run/epoch1.ckpt --data split/train.csv --data split/valid.csv --images img --out emb1 \
  --tta flip+transpose --device cpu > /dev/null 2>&1 || fail "ich-embed --tta flip+transpose"
grep -q "^views,flip+transpose$" emb1/info.csv && grep -q "^cnn,[0-9a-f]*/[0-9]*$" emb1/info.csv ||
  fail "ich-embed: info.csv should say the views and the CNN's fingerprint"
"$bin/ich-train-seq" --train split/train.csv --valid split/valid.csv --embeddings emb1 --hidden 8 --batch 2 \
  --device cpu --seed 5 --out seqrun1 --epochs 2 > /dev/null 2>&1 || fail "ich-train-seq on emb1"
seq_predict() { local out=$1; shift; "$bin/ich-predict" "$@" --input ph/dicom --out "$out" --chunk 64 --device cpu \
                  > /dev/null 2> "$out.err"; local rc=$?; [ $rc = 0 ] || [ $rc = 3 ] || fail "ich-predict $*: exit $rc, $(tail -2 "$out.err")"; }
set +e
seq_predict seqtwice.csv --checkpoint run/best.ckpt --checkpoint run/best.ckpt --sequence seqrun/best.ckpt
seq_predict seqone.csv --checkpoint run/epoch1.ckpt --sequence seqrun1/best.ckpt
seq_predict seqpair.csv --checkpoint run/best.ckpt --checkpoint run/epoch1.ckpt --sequence seqrun1/best.ckpt \
  --sequence seqrun/best.ckpt
"$bin/ich-predict" --checkpoint run/best.ckpt --sequence seqrun1/best.ckpt --input ph/dicom --out seqbad.csv \
  --device cpu > /dev/null 2> seqbad.txt
rc_other=$?
"$bin/ich-predict" --checkpoint run/best.ckpt --sequence seqrun/best.ckpt --tta flip --input ph/dicom --out seqbad.csv \
  --device cpu > /dev/null 2> seqbad2.txt
rc_tta=$?
set -e
cmp -s seqtwice.csv seqsub/first.csv || fail "ich-predict: a pipeline given twice is not the pipeline"
[ $rc_other = 1 ] && grep -q "none of the --checkpoints" seqbad.txt && [ ! -e seqbad.csv ] ||
  fail "ich-predict: a series model without its CNN: exit $rc_other, $(cat seqbad.txt)"
[ $rc_tta = 1 ] && grep -q "views it was trained on" seqbad2.txt || fail "ich-predict --tta --sequence: exit $rc_tta"
"$bin/ich-eval" --checkpoint run/epoch1.ckpt --sequence seqrun1/best.ckpt --data split/valid.csv --images img \
  --out evalone --device cpu > /dev/null 2>&1 || fail "ich-eval with epoch 1's pipeline"
"$bin/ich-eval" --checkpoint run/best.ckpt --checkpoint run/epoch1.ckpt --sequence seqrun/best.ckpt \
  --sequence seqrun1/best.ckpt --data split/valid.csv --images img --out evalpair --device cpu > /dev/null 2>&1 ||
  fail "ich-eval with two pipelines"
/usr/bin/python3 - <<'PY' || fail "two pipelines are not the mean of each"
import csv, sys
def sub(p): return {r["ID"]: float(r["Label"]) for r in csv.DictReader(open(p))}
def ev(p): return {(r["image_id"], k): float(v) for r in csv.DictReader(open(p)) for k, v in r.items() if k.startswith("p_")}
for pair, a, b in ((sub("seqpair.csv"), sub("seqsub/first.csv"), sub("seqone.csv")),
                   (ev("evalpair/predictions.csv"), ev("evalseq/predictions.csv"), ev("evalone/predictions.csv"))):
    assert pair.keys() == a.keys() == b.keys() and len(pair) > 50, "other rows"
    worst = max(abs(pair[k] - (a[k] + b[k]) / 2) for k in pair)  # each rounded to 6 digits
    apart = max(abs(a[k] - b[k]) for k in pair)
    if worst > 1.01e-6 or apart < 1e-4:
        sys.exit(f"{len(pair)} probabilities: {worst} from the pipelines' mean (the two {apart} apart)")
PY
# Across machines: three shards (chunks of 16 files), then one merge: the shards' rows exactly, in the
# unsharded run's order, and its numbers to float32 rounding (other batches round other ways), per slice
# and with the series models over whole series (each shard holds a third of every series)
set +e
for k in 0 1 2; do
  "$bin/ich-predict" --checkpoint run/best.ckpt --input ph/dicom --out shard$k/sub.csv --shard $k/3 --chunk 16 \
    --device cpu > /dev/null 2>&1
  "$bin/ich-predict" --checkpoint run/best.ckpt --sequence seqrun/best.ckpt --input ph/dicom --out seqshard$k/sub.csv \
    --shard $k/3 --chunk 16 --device cpu > /dev/null 2>&1
done
"$bin/ich-predict" --checkpoint run/best.ckpt --input ph/dicom --out merged.csv --merge shard2/sub.csv \
  --merge shard0/sub.csv --merge shard1/sub.csv --device cpu > /dev/null 2>&1
"$bin/ich-predict" --checkpoint run/best.ckpt --sequence seqrun/best.ckpt --input ph/dicom --out seqmerged/sub.csv \
  --merge seqshard0/sub.csv --merge seqshard1/sub.csv --merge seqshard2/sub.csv --device cpu > /dev/null 2>&1
"$bin/ich-predict" --checkpoint run/best.ckpt --input ph/dicom --out halfmerged.csv --merge shard0/sub.csv \
  --merge shard0/sub.csv --merge shard1/sub.csv --device cpu > mergebad.txt 2>&1
rc=$?
set -e
/usr/bin/python3 - <<'PY' || fail "ich-predict --merge"
import csv, sys
def rows(p):
    return [(r["ID"], float(r["Label"])) for r in csv.DictReader(open(p))]
def lines(p):
    return open(p).read().splitlines()[1:]
shard_lines = set(l for k in range(3) for l in lines(f"shard{k}/sub.csv"))
if sorted(lines("merged.csv")) != sorted(shard_lines):
    sys.exit("merged.csv is not the shards' rows")
for merged, whole in (("merged.csv", "submission.csv"), ("seqmerged/sub.csv", "seqsub/first.csv")):
    a, b = rows(merged), rows(whole)
    if [i for i, _ in a] != [i for i, _ in b]:
        sys.exit(f"{merged}: not the order of {whole}")
    worst = max(abs(x - y) for (_, x), (_, y) in zip(a, b))
    if worst > 2e-5:
        sys.exit(f"{merged}: {worst} from {whole}")
s1, s2 = list(csv.DictReader(open("seqmerged/studies.csv"))), list(csv.DictReader(open("seqsub/studies.csv")))
if [(r["series_uid"], r["slices"]) for r in s1] != [(r["series_uid"], r["slices"]) for r in s2]:
    sys.exit("studies.csv: other series")
if max(abs(float(x["p_any"]) - float(y["p_any"])) for x, y in zip(s1, s2)) > 2e-5:
    sys.exit("studies.csv: p_any moved")
PY
[ $rc = 1 ] && grep -q "given twice" mergebad.txt || fail "ich-predict --merge: a shard given twice: exit $rc, $(cat mergebad.txt)"
set +e
"$bin/ich-eval" --checkpoint run/best.ckpt --sequence run/best.ckpt --data split/valid.csv --images img --out bad \
  --device cpu > /dev/null 2> bad.txt
rc=$?
set -e
[ $rc = 1 ] && grep -q "not a sequence checkpoint" bad.txt || fail "ich-eval: an ich-train checkpoint as --sequence: exit $rc, $(cat bad.txt)"

# Adjacent slices as channels: ich-train --context 1 (conv1 of 9 channels), evaluated and embedded with
# the neighbours read from img/meta.csv; its resume without --context is refused clearly. ich-predict reads
# the neighbours from the DICOM headers (series order by geometry) and gives ich-eval's probabilities on the
# same slices; in chunks of 16 files the series straddle chunks and the neighbours outside a chunk are read
# too. With a series model on its embeddings: ich-predict gives ich-eval's probabilities, and three
# shards (whole series each) merged give the unsharded run's.
train --out ctx --epochs 1 --context 1
[ -f ctx/last.ckpt ] || fail "ich-train --context: no ctx/last.ckpt"
set +e
"$bin/ich-train" --train split/train.csv --valid split/valid.csv --images img --arch resnext_mini --size 64 --batch 8 \
  --lr 1e-3 --device cpu --seed 3 --out ctx --epochs 2 --resume ctx/last.ckpt 2> ctxresume.txt > /dev/null
rc_resume=$?
"$bin/ich-predict" --checkpoint ctx/last.ckpt --input ph/dicom --out ctxsub.csv --device cpu --chunk 16 > /dev/null 2>&1
set -e
[ $rc_resume != 0 ] && grep -q "context 1" ctxresume.txt ||
  fail "ich-train --resume of a --context 1 run without --context: exit $rc_resume, $(cat ctxresume.txt)"
"$bin/ich-eval" --checkpoint ctx/last.ckpt --data split/valid.csv --images img --out ctxeval --device cpu > /dev/null 2>&1 ||
  fail "ich-eval of a --context 1 checkpoint"
[ "$(( $(wc -l < ctxeval/predictions.csv) - 1 ))" = "$(( $(wc -l < split/valid.csv) - 1 ))" ] || fail "ich-eval --context: rows"
/usr/bin/python3 - ctxsub.csv ctxeval/predictions.csv <<'PY' || fail "ich-predict --context: not ich-eval's probabilities"
import csv, sys
sub = {r["ID"]: float(r["Label"]) for r in csv.DictReader(open(sys.argv[1]))}
names = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]
worst, n = 0.0, 0
for r in csv.DictReader(open(sys.argv[2])):
    for k in names:
        worst = max(worst, abs(sub[r["image_id"] + "_" + k] - float(r["p_" + k])))
        n += 1
if worst > 2e-5 or n < 60:
    sys.exit(f"{n} probabilities, the worst {worst} apart")
PY
"$bin/ich-embed" --checkpoint ctx/last.ckpt --data split/train.csv --data split/valid.csv --images img --out ctxemb \
  --device cpu > /dev/null 2>&1 || fail "ich-embed of a --context 1 checkpoint"
"$bin/ich-train-seq" --train split/train.csv --valid split/valid.csv --embeddings ctxemb --hidden 8 --batch 2 \
  --device cpu --seed 6 --out ctxseq --epochs 2 > /dev/null 2>&1 || fail "ich-train-seq on a --context model's embeddings"
"$bin/ich-eval" --checkpoint ctx/last.ckpt --sequence ctxseq/best.ckpt --data split/valid.csv --images img \
  --out ctxevalseq --device cpu > /dev/null 2>&1 || fail "ich-eval --sequence of a --context 1 checkpoint"
set +e
"$bin/ich-predict" --checkpoint ctx/last.ckpt --sequence ctxseq/best.ckpt --input ph/dicom --out ctxseq.csv --chunk 16 \
  --device cpu > /dev/null 2>&1
for k in 0 1 2; do
  "$bin/ich-predict" --checkpoint ctx/last.ckpt --sequence ctxseq/best.ckpt --input ph/dicom --out ctxshard$k/sub.csv \
    --shard $k/3 --chunk 16 --device cpu > /dev/null 2>&1
done
"$bin/ich-predict" --checkpoint ctx/last.ckpt --sequence ctxseq/best.ckpt --input ph/dicom --out ctxmerged.csv \
  --merge ctxshard0/sub.csv --merge ctxshard1/sub.csv --merge ctxshard2/sub.csv --device cpu > /dev/null 2>&1
rc=$?
set -e
[ $rc = 0 ] || [ $rc = 3 ] || fail "ich-predict --merge of --context shards: exit $rc"
/usr/bin/python3 - <<'PY' || fail "ich-predict --context --sequence"
import csv, sys
names = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]
rows = lambda p: [(r["ID"], float(r["Label"])) for r in csv.DictReader(open(p))]
sub, merged = rows("ctxseq.csv"), rows("ctxmerged.csv")
if [i for i, _ in sub] != [i for i, _ in merged]:
    sys.exit("the merged shards are not in the unsharded run's order")
worst = max(abs(a - b) for (_, a), (_, b) in zip(sub, merged))
d = dict(sub)
n, worst_eval = 0, 0.0
for r in csv.DictReader(open("ctxevalseq/predictions.csv")):
    for k in names:
        worst_eval = max(worst_eval, abs(d[r["image_id"] + "_" + k] - float(r["p_" + k])))
        n += 1
if worst > 2e-5 or worst_eval > 2e-5 or n < 60:
    sys.exit(f"merged {worst} from the unsharded run; {n} probabilities, {worst_eval} from ich-eval's")
PY

# --precision bf16: the CPU's bf16 inference (layers/resnext_compiled.h) in ich-predict, ich-eval and ich-embed,
# against their fp32 results; refused in one line where the CPU has no bf16 kernels (ICH_CPU_BF16=none
# plays such a CPU here, and ich-serve refuses at start the same way).
bf16_kernels=$(grep -qw -e amx_bf16 -e avx512_bf16 /proc/cpuinfo && echo yes || echo no)
set +e
ICH_CPU_BF16=none "$bin/ich-predict" --checkpoint run/best.ckpt --input ph/dicom --out nobf16.csv --device cpu \
  --precision bf16 > /dev/null 2> nobf16.txt
rc=$?
set -e
[ $rc = 1 ] && [ "$(wc -l < nobf16.txt)" = 1 ] && grep -q "precision bf16" nobf16.txt && [ ! -e nobf16.csv ] ||
  fail "ich-predict --precision bf16 without bf16 kernels: exit $rc, $(cat nobf16.txt)"
if [ -x "$bin/ich-serve" ]; then
  set +e
  ICH_CPU_BF16=none "$bin/ich-serve" --aet ICH --port 41917 --checkpoint run/best.ckpt --work servebf16 --device cpu \
    --precision bf16 --allow X@127.0.0.1 --dest-aet PACS --dest-host 127.0.0.1 --dest-port 41918 > /dev/null 2> servebf16.txt
  rc=$?
  set -e
  [ $rc != 0 ] && grep -q "precision bf16" servebf16.txt || fail "ich-serve --precision bf16 without bf16 kernels: exit $rc"
fi
if [ "$bf16_kernels" = yes ]; then
  set +e
  "$bin/ich-predict" --checkpoint run/best.ckpt --input ph/dicom --out subbf16.csv --device cpu --precision bf16 \
    > /dev/null 2>&1
  rc=$?
  set -e
  [ $rc = 3 ] || fail "ich-predict --precision bf16: exit $rc"
  "$bin/ich-eval" --checkpoint run/best.ckpt --data split/valid.csv --images img --out evalbf16 --device cpu \
    --precision bf16 > evalbf16.txt 2> /dev/null || fail "ich-eval --precision bf16"
  "$bin/ich-embed" --checkpoint run/best.ckpt --data split/train.csv --data split/valid.csv --images img \
    --out embbf16 --device cpu --precision bf16 > /dev/null 2>&1 || fail "ich-embed --precision bf16"
  /usr/bin/python3 - <<'PY' || fail "--precision bf16 against fp32"
import csv, json, sys
import numpy as np
rows = lambda p: {r["ID"]: float(r["Label"]) for r in csv.DictReader(open(p))}
a, b = rows("submission.csv"), rows("subbf16.csv")
dp = max(abs(a[k] - b[k]) for k in a)
wll = lambda p: json.load(open(p))["weighted_log_loss"]
e32, e16 = np.load("emb/embeddings.npy"), np.load("embbf16/embeddings.npy")
de = float(np.linalg.norm(e16 - e32) / np.linalg.norm(e32))
print(f"bf16 against fp32: probabilities {dp:.2e} apart at most, embeddings {de:.2e} relative (L2), "
      f"weighted log loss {wll('eval/metrics.json'):.5f} and {wll('evalbf16/metrics.json'):.5f}")
if len(a) != len(b) or dp > 0.02 or de > 2 ** -5:
    sys.exit("bf16 inference too far from fp32")
PY
fi

echo "e2e: 200 slices ($corrupt corrupt), train loss $(cut -d, -f3 run/log.csv | tail -2 | tr '\n' ' '), resume identical," \
  "sequence stage and its resume, --context 1"
echo "1 passed, 0 failed"
