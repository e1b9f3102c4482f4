#!/usr/bin/env bash
# Makes the venv the JPEG 2000 reference generator runs in: Debian's Python
# with its pydicom and numpy (system site packages), plus pylibjpeg and
# pylibjpeg-openjpeg from PyPI, versions that pydicom 2.3 works with. For
# tests only, never for the product. Idempotent.
#   tests/reference/make_j2k_venv.sh DIR
set -euo pipefail
dir=$1
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import openjpeg, pylibjpeg" 2>/dev/null; then
  exit 0
fi
rm -rf "$dir"
/usr/bin/python3 -m venv --system-site-packages "$dir"
if ! "$dir/bin/pip" install --quiet --disable-pip-version-check pylibjpeg==1.4.0 pylibjpeg-openjpeg==1.3.2; then
  echo "make_j2k_venv: pip could not install pylibjpeg and pylibjpeg-openjpeg from PyPI into $dir" >&2
  exit 1
fi
"$dir/bin/python" -c "import openjpeg, pylibjpeg, pydicom; print('j2k venv:', pydicom.__version__, openjpeg.__version__)"
