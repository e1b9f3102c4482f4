#!/usr/bin/env bash
# The recipe's ensemble against one fold, as a claim about a distribution:
# scripts/recipe-rsna.sh --tiny on three phantom seeds (the first with the
# whole recipe, sequence stage included; the others without it, which the
# comparison does not use), and the folds' ensemble with the mirror view must
# beat fold 0 alone in weighted log loss on the held-out patients on at
# least two of the three. One tiny run alone is not a law: its three models
# of 40 patients differ by about what averaging gains (README, "The recipe").
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
for s in "${seeds[@]}"; do
  extra=()
  [ $first = 1 ] || extra=(--bags 0)
  first=0
  out=$("$here/scripts/recipe-rsna.sh" --tiny --bin "$bin" --work "$work/seed$s" --seed "$s" "${extra[@]}" 2>&1)
  rc=$?
  line=$(grep "^weighted log loss on the held-out patients" <<< "$out")
  [ -n "$line" ] || { echo "FAIL: seed $s: the recipe did not finish (exit $rc)"; tail -5 <<< "$out"; exit 1; }
  echo "seed $s: ${line#weighted log loss on the held-out patients: }"
  [ $rc = 0 ] && wins=$((wins + 1))
done
need=$(( (2 * ${#seeds[@]} + 2) / 3 ))
echo "the ensemble beat fold 0 alone on $wins of ${#seeds[@]} phantom seeds (at least $need needed)"
[ $wins -ge $need ] || { echo "FAIL"; exit 1; }
