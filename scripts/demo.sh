#!/usr/bin/env bash
# The README's main command: the whole mission on a built-in default.
# Installs what is missing, builds, makes a synthetic head-CT set (2,000
# DICOM slices of 80 patients), windows it, splits it by patient, trains the
# small ResNeXt preset (on the GPU when one is present, else the CPU),
# evaluates it and prints the table. About 3 minutes after the build on 2 cores.
# Everything lands in ${ICH_DEMO_DIR:-demo/}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh > /dev/null
bin=$PWD/build/bin
out=${ICH_DEMO_DIR:-demo}
rm -rf "$out" && mkdir -p "$out"
echo "== 1. synthetic head CT: 80 patients x 25 slices, 256 x 256 DICOM"
"$bin/ich-phantom" --out "$out/phantom" --patients 80 --slices-per-series 25 --size 256 --seed 2 2> /dev/null
echo "== 2. window: brain, subdural, soft tissue as three channels, 128 x 128"
"$bin/ich-window" --input "$out/phantom/dicom" --out "$out/images" --size 128 2> /dev/null
echo "== 3. split by patient, stratified"
"$bin/ich-split" --labels "$out/phantom/labels.csv" --meta "$out/images/meta.csv" --out "$out/split"
echo "== 4. train resnext_mini, 12 epochs, Adam, BCE with logits"
"$bin/ich-train" --train "$out/split/train.csv" --valid "$out/split/valid.csv" --images "$out/images" \
  --out "$out/run" --arch resnext_mini --size 128 --epochs 12 --batch 16 --lr 1e-3 --device auto --seed 1 2>&1 |
  grep -v "batch "
echo "== 5. evaluate the best checkpoint on the validation patients"
"$bin/ich-eval" --checkpoint "$out/run/best.ckpt" --data "$out/split/valid.csv" --images "$out/images" \
  --out "$out/eval" 2> /dev/null
