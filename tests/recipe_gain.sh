#!/usr/bin/env bash
# The recipe's ensemble against one fold, as a claim about a distribution:
# scripts/recipe-rsna.sh --tiny on three phantom seeds (the first with the
# whole recipe, sequence stage included; the others without it, which the
# comparison does not use), and the folds' ensemble with the mirror view must
# beat fold 0 alone in weighted log loss on the held-out patients on at
# least two of the three. One tiny run alone is not a law: its three models
# of 40 patients differ by about what averaging gains (README, "The recipe").
# The seeds run in order and the test stops once the verdict is decided (two
# wins, or too many losses for two): the verdict is the one all three would
# give, and the third run (a minute and a half) is spent only when it counts.
# Usage: tests/recipe_gain.sh BIN_DIR WORK_DIR [SEEDS...] (default 1 2 3)
set -uo pipefail
bin=$1
work=$2
shift 2
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
here=$(cd "$(dirname "$0")/.." && pwd)
wins=0
first=1
need=$(( (2 * ${#seeds[@]} + 2) / 3 ))
ran=0
for s in "${seeds[@]}"; do
  if [ $wins -ge $need ] || [ $(( wins + ${#seeds[@]} - ran )) -lt $need ]; then
    echo "seed $s: not run, the verdict is decided"
    continue
  fi
  ran=$((ran + 1))
  extra=()
  [ $first = 1 ] || extra=(--bags 0)
  first=0
  out=$("$here/scripts/recipe-rsna.sh" --tiny --bin "$bin" --work "$work/seed$s" --seed "$s" "${extra[@]}" 2>&1)
  rc=$?
  line=$(grep "^weighted log loss on the held-out patients" <<< "$out")
  [ -n "$line" ] || { echo "FAIL: seed $s: the recipe did not finish (exit $rc)"; tail -5 <<< "$out"; exit 1; }
  echo "seed $s: ${line#weighted log loss on the held-out patients: }"
  rm -rf "${work:?}/seed$s"  # its verdict is printed; 350 MB of phantoms, images and checkpoints go
  [ $rc = 0 ] && wins=$((wins + 1))
done
echo "the ensemble beat fold 0 alone on $wins of the $ran phantom seeds run (${#seeds[@]} in the test, at least $need needed)"
[ $wins -ge $need ] || { echo "FAIL"; exit 1; }
