#!/usr/bin/env bash
# Makes the venv the DICOM node test sends from: pynetdicom (PyPI), which
# can send a file's bytes as they are (a truncated instance, a non-DICOM
# payload) where DCMTK's storescu refuses to; Debian's pydicom underneath
# (system site packages). For tests only, never for the product. Idempotent.
#   tests/reference/make_pynetdicom_venv.sh DIR
set -euo pipefail
dir=$1
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import pynetdicom, pydicom" 2>/dev/null; then
  exit 0
fi
rm -rf "$dir"
/usr/bin/python3 -m venv --system-site-packages "$dir"
if ! "$dir/bin/pip" install --quiet --disable-pip-version-check pynetdicom==2.0.2; then
  echo "make_pynetdicom_venv: pip could not install pynetdicom from PyPI into $dir" >&2
  exit 1
fi
"$dir/bin/python" -c "import pynetdicom; print('pynetdicom venv:', pynetdicom.__version__)"
