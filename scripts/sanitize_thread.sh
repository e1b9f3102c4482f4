#!/usr/bin/env bash
# The DICOM node under ThreadSanitizer (gcc): ich-serve built with
# -fsanitize=thread into build-tsan/, then the hostile-network test
# (tests/serve_security.py: allow-list, 2,200 hostile connections while a
# study arrives, TLS, audit, metrics) and the DICOMweb test
# (tests/serve_dicomweb.py: STOW-RS both ways, FHIR, kill -9) run against
# it, with the release build's other tools (scripts/build.sh first). Any report ends the node
# (halt_on_error) and fails the test; the reports are printed.
# OpenMP and OpenBLAS run one thread: their runtimes are not instrumented,
# and the node's own threads (acceptor, connections, workers, sender,
# syslog, HTTP) are what this checks.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
  -DICH_SANITIZE_THREAD=ON -DICH_ENABLE_CUDA=OFF -DICH_BUILD_TESTS=OFF > build-tsan.log 2>&1 || { cat build-tsan.log; exit 1; }
cmake --build build-tsan --target ich-serve
venv=build/venv_pynetdicom
tests/reference/make_pynetdicom_venv.sh "$venv"
work=build-tsan/serve_security
status=0
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  "$venv/bin/python" tests/serve_security.py "$PWD/build/bin" "$PWD/$work" "$PWD/build-tsan/bin" || status=$?
if grep -l "ThreadSanitizer" "$work"/node*.log 2>/dev/null; then
  grep -h -A40 "WARNING: ThreadSanitizer" "$work"/node*.log | head -200
  status=1
fi
# The HTTP side taking studies (STOW-RS) and the FHIR and STOW-RS senders, under the same build.
work=build-tsan/serve_dicomweb
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  "$venv/bin/python" tests/serve_dicomweb.py "$PWD/build/bin" "$PWD/$work" "$PWD/build-tsan/bin" || status=$?
if grep -l "ThreadSanitizer" "$work"/*.log 2>/dev/null; then
  grep -h -A40 "WARNING: ThreadSanitizer" "$work"/*.log | head -200
  status=1
fi
exit $status
