#!/usr/bin/env bash
# Makes the venv the export test runs ONNX models in: ONNX Runtime and the
# onnx package's checker (PyPI, with their numpy). For tests and benchmarks
# only, never for the product. PyTorch stays outside it (Debian's torch at
# /usr/bin/python3 breaks with numpy 2). Idempotent.
#   tests/reference/make_onnx_venv.sh DIR [EXTRA_PACKAGE ...]
set -euo pipefail
dir=$1
shift
probe="import onnx, onnxruntime, numpy"
[ $# -gt 0 ] && probe="$probe; import openvino"
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$probe" 2>/dev/null; then
  exit 0
fi
rm -rf "$dir"
/usr/bin/python3 -m venv "$dir"
if ! "$dir/bin/pip" install --quiet --disable-pip-version-check onnxruntime==1.32.0 onnx==1.23.2 "$@"; then
  echo "make_onnx_venv: pip could not install onnxruntime and onnx from PyPI into $dir" >&2
  exit 1
fi
"$dir/bin/python" -c "import onnx, onnxruntime; print('onnx venv: onnxruntime', onnxruntime.__version__, 'onnx', onnx.__version__)"
