#!/usr/bin/env bash
# The recipe that placed near the top of RSNA 2019 (2nd place: the seed's
# backbone), end to end on ich's tools:
#   window -> K folds by patient -> a CNN per fold -> out-of-fold predictions
#   -> embeddings (averaged over the test-time views) and bagged sequence models per fold (--bags 0: none)
#   -> the folds' ensemble with test-time views (--tta; flip+transpose trains with transposes too)
#   -> study-level evaluation -> submission: the folds' pipelines (each CNN with its sequence models,
#      averaged), or with --bags 0 the folds' CNNs with the views.
#
#   scripts/recipe-rsna.sh --tiny [--work DIR] [--seed N] [--bin DIR]
#       On the phantom (easy; ICH_RECIPE_DIFFICULTY=realistic for the other) in minutes on 2 cores: 60 training
#       patients in 3 folds, 24 held-out patients of another phantom seed.
#       Prints the single fold-0 model's and the ensemble's scores on the
#       held-out patients and exits 1 unless the ensemble's weighted log loss
#       is lower (tests run it).
#   scripts/recipe-rsna.sh --train-dicom DIR --labels stage_2_train.csv --test-dicom DIR --weights wsl.ichw
#                          [--work DIR] [--folds 5] [--size 256] [--epochs 3] [--bags 3] [--tta flip+transpose]
#                          [--device cuda]
#       The real thing (README, "The recipe"): a GPU machine, the RSNA data
#       and the WSL weights converted by ich-convert.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bin
work=""
tiny=0
seed=1
difficulty=${ICH_RECIPE_DIFFICULTY:-easy}
folds=5 size=256 epochs=3 bags=3 device=auto
# test-time views: the real mode's default is the 2nd place's (the image, its mirror, its transpose; the
# CNNs then train with transposes too, ich-train --transpose); --tiny keeps the image and its mirror, the
# setting its test's distribution was measured with (README, "The recipe")
tta=""
bags_given=0
train_dicom="" labels="" test_dicom="" weights=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=1 ;;
    --work) work=$2; shift ;;
    --bin) bin=$2; shift ;;
    --seed) seed=$2; shift ;;
    --folds) folds=$2; shift ;;
    --size) size=$2; shift ;;
    --epochs) epochs=$2; shift ;;
    --bags) bags=$2; bags_given=1; shift ;;
    --device) device=$2; shift ;;
    --tta) tta=$2; shift ;;
    --train-dicom) train_dicom=$2; shift ;;
    --labels) labels=$2; shift ;;
    --test-dicom) test_dicom=$2; shift ;;
    --weights) weights=$2; shift ;;
    *) echo "recipe-rsna: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$tta" ]; then if [ $tiny = 1 ]; then tta=flip; else tta=flip+transpose; fi; fi
transpose=()
[ "$tta" != flip+transpose ] || transpose=(--transpose)
[ -x "$bin/ich-train" ] || { echo "recipe-rsna: no $bin/ich-train: build first (scripts/build.sh)" >&2; exit 2; }
step() { echo "== $*"; }
quiet() { "$@" > /dev/null 2>&1 || { echo "recipe-rsna: failed: $*" >&2; "$@" 2>&1 | tail -5 >&2; exit 1; }; }
# all rows of several split CSVs of one header, as one
cat_csv() { local out=$1; shift; head -1 "$1" > "$out"; for f in "$@"; do tail -n +2 "$f" >> "$out"; done; }

if [ $tiny = 1 ]; then
  work=${work:-recipe-tiny}
  folds=3 size=64 epochs=16 device=cpu
  [ $bags_given = 1 ] || bags=2
  arch=(--arch resnext_mini --batch 16 --lr 1e-3 --lr-schedule cosine)
  rm -rf "$work" && mkdir -p "$work" && cd "$work"
  step "phantoms: 60 training patients (seed $seed), 24 held-out patients (seed $((seed + 100)))"
  quiet "$bin/ich-phantom" --out train_ph --difficulty "$difficulty" --patients 60 --slices-per-series 24 --size 128 --seed "$seed"
  quiet "$bin/ich-phantom" --out test_ph --difficulty "$difficulty" --patients 24 --slices-per-series 24 --size 128 --seed $((seed + 100))
  train_dicom=train_ph/dicom labels=train_ph/labels.csv test_dicom=test_ph/dicom test_labels=test_ph/labels.csv
else
  for v in train_dicom labels test_dicom weights; do
    [ -n "${!v}" ] || { echo "recipe-rsna: --${v//_/-} is required without --tiny" >&2; exit 2; }
  done
  work=${work:-recipe}
  mkdir -p "$work" && cd "$work"
  arch=(--arch resnext101_32x8d --weights "$weights" --batch 32 --lr 2e-5 --precision bf16 --channels-last)
  test_labels=""
fi

step "1. window the training slices (brain, subdural, soft tissue), $size px"
[ -f images/meta.csv ] || quiet "$bin/ich-window" --input "$train_dicom" --out images --size "$size" --resume
step "2. $folds folds by patient, stratified by subtype"
"$bin/ich-split" --labels "$labels" --meta images/meta.csv --out folds --folds "$folds" | tail -n $((folds + 1))

oof=()
all_seqs=()  # every fold's sequence models: each goes with its fold's CNN (ich-embed recorded which)
for k in $(seq 0 $((folds - 1))); do
  step "3.$k fold $k: CNN, out-of-fold predictions, embeddings, $bags bagged sequence models"
  f=folds/fold$k
  [ -f "cnn$k/best.ckpt" ] || quiet "$bin/ich-train" --train $f/train.csv --valid $f/valid.csv --images images \
    --out "cnn$k" --size "$size" --epochs "$epochs" --device "$device" --seed $((seed + k)) "${arch[@]}" "${transpose[@]}"
  quiet "$bin/ich-eval" --checkpoint "cnn$k/best.ckpt" --data $f/valid.csv --images images --out "oof$k" --device "$device"
  oof+=("oof$k/predictions.csv")
  [ "$bags" -gt 0 ] || continue  # --bags 0: no sequence stage
  quiet "$bin/ich-embed" --checkpoint "cnn$k/best.ckpt" --data $f/train.csv --data $f/valid.csv --images images \
    --out "emb$k" --device "$device" --tta "$tta"
  seqs=()
  for b in $(seq 1 "$bags"); do
    quiet "$bin/ich-train-seq" --train $f/train.csv --valid $f/valid.csv --embeddings "emb$k" --out "seq$k.$b" \
      --cell lstm --layers 2 --hidden 64 --epochs 25 --device "$device" --seed "$b"
    seqs+=(--sequence "seq$k.$b/best.ckpt")
    all_seqs+=(--sequence "seq$k.$b/best.ckpt")
  done
  quiet "$bin/ich-eval" --checkpoint "cnn$k/best.ckpt" "${seqs[@]}" --data $f/valid.csv --images images \
    --out "oofseq$k" --device "$device"
done
cat_csv oof.csv "${oof[@]}"
echo "out-of-fold predictions of every training slice: $work/oof.csv ($(($(wc -l < oof.csv) - 1)) slices)"

members=()
for k in $(seq 0 $((folds - 1))); do members+=(--checkpoint "cnn$k/best.ckpt"); done
score() { sed -n 's/.*"weighted_log_loss": \([0-9.]*\).*/\1/p' "$1/metrics.json"; }
if [ -n "$test_labels" ]; then
  step "4. the held-out patients: fold 0's CNN alone, and the $folds folds with test-time views"
  quiet "$bin/ich-window" --input "$test_dicom" --out test_images --size "$size"
  quiet "$bin/ich-split" --labels "$test_labels" --meta test_images/meta.csv --out test_split --folds 2
  cat_csv test.csv test_split/fold0/valid.csv test_split/fold1/valid.csv
  quiet "$bin/ich-eval" --checkpoint cnn0/best.ckpt --data test.csv --images test_images --out test_fold0 \
    --device "$device" --studies --bootstrap 500
  quiet "$bin/ich-eval" "${members[@]}" --tta "$tta" --data test.csv --images test_images --out test_ensemble \
    --device "$device" --studies --bootstrap 500
  one=$(score test_fold0) ens=$(score test_ensemble)
  sed -n 's/.*"Any": {[^}]*"auc": \([0-9.]*\).*/AUC(any) per slice: \1/p' test_fold0/metrics.json | sed 's/^/fold 0 alone: /'
  sed -n 's/.*"Any": {[^}]*"auc": \([0-9.]*\).*/AUC(any) per slice: \1/p' test_ensemble/metrics.json | sed 's/^/ensemble:     /'
  echo "weighted log loss on the held-out patients: fold 0 alone $one, ensemble of $folds folds with test-time views $ens"
  if [ ${#all_seqs[@]} -gt 0 ]; then
    quiet "$bin/ich-eval" "${members[@]}" "${all_seqs[@]}" --data test.csv --images test_images --out test_pipelines \
      --device "$device" --studies --bootstrap 500
    echo "the $folds folds' pipelines (CNN and its $bags sequence models each): weighted log loss $(score test_pipelines)"
  fi
  echo "study level: test_ensemble/study_metrics.json; reports: test_fold0/report.html, test_ensemble/report.html"
fi

set +e
if [ ${#all_seqs[@]} -gt 0 ]; then
  step "5. submission: the $folds folds' pipelines (each CNN with its sequence models) on the test DICOM"
  "$bin/ich-predict" "${members[@]}" "${all_seqs[@]}" --input "$test_dicom" --out submission/submission.csv \
    --device "$device" --resume > /dev/null 2>&1
else
  step "5. submission: the $folds folds with test-time views on the test DICOM"
  "$bin/ich-predict" "${members[@]}" --tta "$tta" --input "$test_dicom" --out submission/submission.csv \
    --device "$device" --resume > /dev/null 2>&1
fi
rc=$?
set -e
[ $rc = 0 ] || [ $rc = 3 ] || { echo "recipe-rsna: ich-predict failed (exit $rc)" >&2; exit 1; }
echo "submission: $work/submission/submission.csv ($(($(wc -l < submission/submission.csv) - 1)) rows)"
if [ -n "$test_labels" ]; then
  awk -v a="$one" -v b="$ens" 'BEGIN { exit !(b < a) }' ||
    { echo "recipe-rsna: the ensemble ($ens) is not better than fold 0 alone ($one)" >&2; exit 1; }
fi
