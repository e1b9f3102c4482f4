#!/usr/bin/env bash
# The README's main command: the whole mission on a built-in default.
# Installs what is missing, builds, makes a synthetic head-CT set (2,500
# DICOM slices of 100 patients, the realistic phantom: phantom/phantom.h),
# windows it, splits it by patient, trains the small ResNeXt preset per slice
# (on the GPU when one is present, else the CPU) and evaluates it, then the
# second stage: each slice's embedding, a bidirectional LSTM over every
# series (three seeds, averaged), evaluated on the same validation patients. Prints the per-slice
# table and one line comparing the two stages. About 4 minutes after the
# build on 2 cores. Everything lands in ${ICH_DEMO_DIR:-demo/};
# ICH_DEMO_SEED (default 2) picks the phantom.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh > /dev/null
bin=$PWD/build/bin
out=${ICH_DEMO_DIR:-demo}
seed=${ICH_DEMO_SEED:-2}
rm -rf "$out" && mkdir -p "$out"
echo "== 1. synthetic head CT (realistic phantom, seed $seed): 100 patients x 25 slices, 256 x 256 DICOM"
"$bin/ich-phantom" --out "$out/phantom" --patients 100 --slices-per-series 25 --size 256 --seed "$seed" 2> /dev/null
echo "== 2. window: brain, subdural, soft tissue as three channels, 128 x 128"
"$bin/ich-window" --input "$out/phantom/dicom" --out "$out/images" --size 128 2> /dev/null
echo "== 3. split by patient, stratified; 30% for validation (about 30 patients: fewer made the metrics a draw of the seed)"
"$bin/ich-split" --labels "$out/phantom/labels.csv" --meta "$out/images/meta.csv" --out "$out/split" --valid-fraction 0.3
echo "== 4. stage 1: train resnext_mini per slice, 20 epochs, Adam (cosine schedule), BCE with logits"
"$bin/ich-train" --train "$out/split/train.csv" --valid "$out/split/valid.csv" --images "$out/images" \
  --out "$out/run" --arch resnext_mini --size 128 --epochs 20 --batch 16 --lr 1e-3 --lr-schedule cosine --device auto \
  --seed 1 2>&1 |
  grep -v "batch "
echo "== 5. evaluate the best checkpoint on the validation patients, slice by slice"
"$bin/ich-eval" --checkpoint "$out/run/best.ckpt" --data "$out/split/valid.csv" --images "$out/images" \
  --out "$out/eval" 2> /dev/null | grep -v "^charts in"
echo "== 6. stage 2: embeddings of every slice, a bidirectional LSTM over each series"
"$bin/ich-embed" --checkpoint "$out/run/best.ckpt" --data "$out/split/train.csv" --data "$out/split/valid.csv" \
  --images "$out/images" --out "$out/embeddings" --device auto > /dev/null 2>&1
for s in 1 2 3; do  # three seeds, averaged: a better calibrated second stage for seconds of work
  "$bin/ich-train-seq" --train "$out/split/train.csv" --valid "$out/split/valid.csv" --embeddings "$out/embeddings" \
    --out "$out/seqrun$s" --cell lstm --layers 2 --hidden 64 --epochs 25 --device auto --seed $s > /dev/null
done
"$bin/ich-eval" --checkpoint "$out/run/best.ckpt" --sequence "$out/seqrun1/best.ckpt" --sequence "$out/seqrun2/best.ckpt" \
  --sequence "$out/seqrun3/best.ckpt" --data "$out/split/valid.csv" --images "$out/images" --out "$out/eval_sequence" \
  2> /dev/null | grep "^weighted log loss (competition metric): per-slice"
echo "report: open $out/eval/report.html (per slice) and $out/eval_sequence/report.html (with series context) in a browser;" \
  "training curves: tensorboard --logdir $out/run"
