#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every
# test with ctest. CUDA tests skip (with the reason) where no GPU is present.
# Tests run one at a time: each uses all cores through OpenMP.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
ctest --output-on-failure "$@"
