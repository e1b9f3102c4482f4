#!/usr/bin/env bash
# How fast ich-explore reads DICOM headers (no pixel decoding), on RSNA-like
# 512 x 512 phantom files, all cores, page cache warm (a second pass) and,
# where the caller may drop caches (root), cold.
# Usage: bench/header_scan.sh [BIN_DIR] [PATIENTS]
set -euo pipefail
bin=${1:-build/bin}
patients=${2:-40}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/ich-phantom" --out "$work/ph" --patients "$patients" --size 512 > /dev/null 2>&1
n=$(ls "$work/ph/dicom" | wc -l)
if [ -w /proc/sys/vm/drop_caches ]; then
  sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && cold=1 || cold=0
else
  cold=0
fi
for pass in 1 2; do
  start=$(date +%s.%N)
  "$bin/ich-explore" --labels "$work/ph/labels.csv" --dicom "$work/ph/dicom" --out "$work/report$pass" > /dev/null 2>&1
  end=$(date +%s.%N)
  what=$([ "$pass" = 1 ] && [ "$cold" = 1 ] && echo "cold cache" || echo "warm cache")
  echo "$n files of 512 x 512, $what: $(echo "$n / ($end - $start)" | bc -l | xargs printf '%.0f') files/s (whole ich-explore run)"
done
