#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every
# test with ctest. CUDA tests skip (with the reason) where no GPU is present.
# Tests run side by side, one per core; the ones that keep every core busy
# ask ctest for all of them (tests/heavy_tests.cmake) and run alone. Side by
# side, OpenMP's threads wait passively: spinning ones took the other
# test's core (a series-model test took 99 s instead of 2); the heavy tests,
# alone, keep OpenMP's default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} ctest -j "$(nproc)" --output-on-failure "$@"
