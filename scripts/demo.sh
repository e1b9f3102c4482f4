#!/usr/bin/env bash
# The README's main command. Until the DICOM-to-probabilities pipeline lands,
# it builds the engine and trains the toy conv net on synthetic images,
# printing the loss and the held-out accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build/bin/ich-toy "$@"
