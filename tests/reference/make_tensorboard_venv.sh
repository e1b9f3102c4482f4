#!/usr/bin/env bash
# Makes the venv the TensorBoard test reads event files in: TensorBoard's own
# reader (tensorboard from PyPI, with its protobuf). For tests only, never
# for the product. Idempotent.
#   tests/reference/make_tensorboard_venv.sh DIR
set -euo pipefail
dir=$1
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import tensorboard.backend.event_processing.event_accumulator" 2>/dev/null; then
  exit 0
fi
rm -rf "$dir"
/usr/bin/python3 -m venv "$dir"
if ! "$dir/bin/pip" install --quiet --disable-pip-version-check tensorboard==2.21.0 protobuf==7.36.2; then
  echo "make_tensorboard_venv: pip could not install tensorboard from PyPI into $dir" >&2
  exit 1
fi
"$dir/bin/python" -c "import tensorboard; print('tensorboard venv:', tensorboard.__version__)"
