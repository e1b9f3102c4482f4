#!/usr/bin/env bash
# Makes the venv the DICOM node tests run in: pynetdicom (PyPI), which can
# send a file's bytes as they are (a truncated instance, a non-DICOM payload)
# where DCMTK's storescu refuses to, highdicom (PyPI), which reads the
# node's SR as a TID 1500 Measurement Report, and fhir.resources (PyPI),
# whose R4 models validate its FHIR Bundles; Debian's pydicom and numpy
# underneath (system site packages). For tests only, never for the product.
# Idempotent.
#   tests/reference/make_pynetdicom_venv.sh DIR
set -euo pipefail
dir=$1
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import pynetdicom, pydicom, highdicom, fhir.resources" 2>/dev/null; then
  exit 0
fi
rm -rf "$dir"
/usr/bin/python3 -m venv --system-site-packages "$dir"
# pinned: highdicom 0.22.0 works with Debian 12's pydicom 2.3.1 and numpy 1.24 (pip keeps them)
# fhir.resources 6.4.0 is FHIR R4 (4.0.1), on pydantic 1
if ! "$dir/bin/pip" install --quiet --disable-pip-version-check pynetdicom==2.0.2 highdicom==0.22.0 \
    fhir.resources==6.4.0 "pydantic>=1.10,<2"; then
  echo "make_pynetdicom_venv: pip could not install pynetdicom, highdicom and fhir.resources from PyPI into $dir" >&2
  exit 1
fi
"$dir/bin/python" -c "import pynetdicom, highdicom; print('venv: pynetdicom', pynetdicom.__version__, 'highdicom', highdicom.__version__)"
