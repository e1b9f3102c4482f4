#!/usr/bin/env bash
# The test suite under each x86-64 kernel Debian's OpenBLAS ships and under
# 1 and 2 threads: a verdict must not depend on the machine (README,
# "Standards"). Runs ctest in build/ (scripts/build.sh first) once per
# kernel x thread count, OPENBLAS_CORETYPE forcing the kernel and
# OMP_NUM_THREADS / OPENBLAS_NUM_THREADS the threads, and prints a table:
# one row per test that failed anywhere, one column per configuration, and
# the totals; every run's JUnit file and log stay under build/kernel-sweep/.
#
#   scripts/kernel-sweep.sh [-k "SkylakeX Haswell ..."] [-t "1 2"] [-R REGEX] [-E REGEX]
#
# Defaults: the eight kernels below, 1 and 2 threads, every test. A name
# OpenBLAS cannot force falls back to the machine's own kernel: Debian 12's
# OpenBLAS (0.3.21) knows no SapphireRapids and cannot force Cooperlake
# ("Core not found", with OPENBLAS_VERBOSE=2). The kernel that really runs
# is asked of OpenBLAS before each configuration; one that would repeat a
# configuration already run (same kernel, same threads) is not run again
# and is named in the log. Exit status 1 when any test failed in any
# configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
kernels="SkylakeX Cooperlake SapphireRapids Haswell Zen Sandybridge Nehalem Prescott"
threads="1 2"
include=""
exclude=""
while getopts "k:t:R:E:" opt; do
  case $opt in
    k) kernels=$OPTARG ;;
    t) threads=$OPTARG ;;
    R) include=$OPTARG ;;
    E) exclude=$OPTARG ;;
    *) echo "usage: $0 [-k KERNELS] [-t THREADS] [-R REGEX] [-E REGEX]" >&2; exit 2 ;;
  esac
done
[ -d build ] || { echo "kernel-sweep: no build/ (run scripts/build.sh first)" >&2; exit 2; }
out=build/kernel-sweep
mkdir -p "$out"
configs=()
ran=" "
for k in $kernels; do
  # the kernel OpenBLAS really runs under this name (any executable linking it will do)
  actual=$(OPENBLAS_VERBOSE=2 OPENBLAS_CORETYPE=$k build/bin/ich-toy --help 2>&1 | sed -n 's/^Core: //p' | head -n 1)
  [ "$actual" = "$k" ] || echo "kernel-sweep: OpenBLAS runs '$k' as ${actual:-?}"
  for t in $threads; do
    name="$k-$t"
    case $ran in *" ${actual:-$k}-$t "*) echo "kernel-sweep: $name is ${actual}-$t, run already"; continue ;; esac
    ran="$ran${actual:-$k}-$t "
    configs+=("$name")
    args=(--output-junit "$PWD/$out/$name.xml" --output-on-failure)
    [ -n "$include" ] && args+=(-R "$include")
    [ -n "$exclude" ] && args+=(-E "$exclude")
    start=$(date +%s)
    (cd build && OPENBLAS_CORETYPE=$k OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t ctest "${args[@]}" \
      > "$PWD/kernel-sweep/$name.log" 2>&1) || true
    echo "kernel-sweep: $name done in $(( $(date +%s) - start )) s ($(grep -Eo '[0-9]+% tests passed.*' "$out/$name.log" || echo 'no summary'))"
  done
done
# The table, from the JUnit files.
/usr/bin/python3 - "$out" "${configs[@]}" <<'PY'
import sys
import xml.etree.ElementTree as ET
out, configs = sys.argv[1], sys.argv[2:]
results = {}  # test -> config -> pass/FAIL/skip
for c in configs:
    try:
        root = ET.parse(f"{out}/{c}.xml").getroot()
    except (OSError, ET.ParseError):
        continue
    for case in root.iter("testcase"):
        status = case.get("status", "")
        if case.find("failure") is not None or status == "fail":
            v = "FAIL"
        elif case.find("skipped") is not None or status in ("notrun", "disabled"):
            v = "skip"
        else:
            v = "pass"
        results.setdefault(case.get("name"), {})[c] = v
failed = sorted(t for t, r in results.items() if "FAIL" in r.values())
width = max([len(t) for t in failed] + [20])
print("test".ljust(width), " ".join(c.rjust(max(len(c), 4)) for c in configs))
for t in failed:
    print(t.ljust(width), " ".join(results[t].get(c, "-").rjust(max(len(c), 4)) for c in configs))
counts = []
for c in configs:
    v = [r.get(c) for r in results.values()]
    counts.append(f"{v.count('pass')}/{v.count('FAIL')}/{v.count('skip')}")
print("passed/failed/skipped".ljust(width), " ".join(n.rjust(max(len(c), 4)) for n, c in zip(counts, configs)))
sys.exit(1 if failed else 0)
PY
