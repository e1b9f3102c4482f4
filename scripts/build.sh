#!/usr/bin/env bash
# Configures and builds into build/ (executables in build/bin/), warnings as
# errors. Extra arguments go to cmake, e.g. -DICH_ENABLE_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DICH_WERROR=ON "$@" > build.log 2>&1 || { cat build.log; exit 1; }
grep -E "^-- ich:" build.log || true
cmake --build build -j "$(nproc)"
