#!/usr/bin/env bash
# The recipe's ensemble against one fold, as a claim about a distribution:
# scripts/recipe-rsna.sh --tiny on three phantom seeds (the first with the
# whole recipe, sequence stage included; the others without it, which the
# comparison does not use), and the folds' ensemble with the mirror view must
# beat fold 0 alone in weighted log loss on the held-out patients on at
# least two of the three. One tiny run alone is not a law: its three models
# of 40 patients differ by about what averaging gains (README, "The recipe").
# The first seeds, as many as the verdict needs wins, always run, two at a time side by side (the tiny runs
# keep 1.3 of 2 cores busy: 99 s for seeds 1 and 2 together against 153 s one after the other, on 2 cores;
# each keeps its thread count, so its numbers are the same bits). The rest run in order and the test stops
# once the verdict is decided (two wins, or too many losses for two): the verdict is the one all three would
# give, and the third run (a minute and a half) is spent only when it counts.
# Usage: tests/recipe_gain.sh BIN_DIR WORK_DIR [SEEDS...] (default 1 2 3)
set -uo pipefail
bin=$1
work=$2
shift 2
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
need=$(( (2 * ${#seeds[@]} + 2) / 3 ))
# One seed's recipe, its output and exit status left in WORK_DIR/seedS.out and .rc.
start_seed() {  # SEED FIRST(1|0)
  local extra=()
  [ "$2" = 1 ] || extra=(--bags 0)
  "$here/scripts/recipe-rsna.sh" --tiny --bin "$bin" --work "$work/seed$1" --seed "$1" "${extra[@]}" \
    > "$work/seed$1.out" 2>&1
  echo $? > "$work/seed$1.rc"
}
wins=0
ran=0
# Its verdict printed; 350 MB of phantoms, images and checkpoints go.
finish_seed() {  # SEED
  local out rc line
  out=$(cat "$work/seed$1.out")
  rc=$(cat "$work/seed$1.rc" 2>/dev/null || echo 1)
  line=$(grep "^weighted log loss on the held-out patients" <<< "$out")
  [ -n "$line" ] || { echo "FAIL: seed $1: the recipe did not finish (exit $rc)"; tail -5 <<< "$out"; exit 1; }
  echo "seed $1: ${line#weighted log loss on the held-out patients: }"
  rm -rf "${work:?}/seed$1" "$work/seed$1.out" "$work/seed$1.rc"
  ran=$((ran + 1))
  [ "$rc" = 0 ] && wins=$((wins + 1))
  return 0
}
i=0
while [ $i -lt $need ]; do  # the runs every verdict needs, two at a time
  start_seed "${seeds[$i]}" $(( i == 0 )) &
  pair=("${seeds[$i]}")
  if [ $((i + 1)) -lt $need ]; then
    start_seed "${seeds[$((i + 1))]}" 0 &
    pair+=("${seeds[$((i + 1))]}")
  fi
  wait
  for s in "${pair[@]}"; do finish_seed "$s"; done
  i=$((i + ${#pair[@]}))
done
for s in "${seeds[@]:$need}"; do  # the rest, only while the verdict is open
  if [ $wins -ge $need ] || [ $(( wins + ${#seeds[@]} - ran )) -lt $need ]; then
    echo "seed $s: not run, the verdict is decided"
    continue
  fi
  start_seed "$s" 0
  finish_seed "$s"
done
echo "the ensemble beat fold 0 alone on $wins of the $ran phantom seeds run (${#seeds[@]} in the test, at least $need needed)"
[ $wins -ge $need ] || { echo "FAIL"; exit 1; }
