#!/bin/bash
# ich-window against the seed's pipeline (pydicom + numpy + np.save), per
# core, on the same RSNA-like files in the same run: once on a disk folder
# (where ich-window's outputs are made durable before its journal records
# them, and the seed's are not) and once in tmpfs (the converters' own work).
# Prints bench/window_throughput.py's table for each and the ratios last.
#
# Usage: bench/window_vs_seed.sh [BIN=build/bin] [PATIENTS=8 (25 slices each)] [DISK_DIR=${TMPDIR:-/tmp}]
# Needs Debian's python3-pydicom and python3-numpy under /usr/bin/python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-build/bin}
patients=${2:-8}
disk=${3:-${TMPDIR:-/tmp}}
run() {  # $1: folder; prints the table, remembers the one-window ratio
  /usr/bin/python3 "$here/window_throughput.py" --bin "$bin" --patients "$patients" --workdir "$1" | tee /dev/stderr |
    awk -F'|' '/--windows dicom/ {gsub(/[ x]/, "", $5); one=$5} /\(default\)/ {gsub(/[ x]/, "", $5); three=$5}
               END {print one, three}'
}
read -r disk_one disk_three < <(run "$disk")
shm_one=; shm_three=
if [ -d /dev/shm ]; then read -r shm_one shm_three < <(run /dev/shm); fi
echo
echo "ich-window / seed, files per second per core (target >= 5x with the seed's work, one window):"
echo "  disk ($disk): one window ${disk_one}x, three windows ${disk_three}x"
[ -z "$shm_one" ] || echo "  tmpfs (/dev/shm): one window ${shm_one}x, three windows ${shm_three}x"
