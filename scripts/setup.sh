#!/usr/bin/env bash
# Installs what the build, the tests and the demo need on Debian 12
# (non-interactive, idempotent: installs only what is missing). Run as root,
# or with sudo available. CUDA, cuDNN and cuBLAS are not installed here: the
# build finds them under /usr/local/cuda when they are present.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libopenblas-dev zlib1g-dev libgtest-dev libcli11-dev libdcmtk-dev libopenjp2-7-dev
  python3-numpy python3-torch python3-torchvision python3-pydicom python3-pil
  libgloo-dev                     # data-parallel training on CPUs (Gloo, as PyTorch)
  libcairo2-dev fonts-dejavu-core # charts (report/plot.h)
  chromium                        # the report test opens report.html in headless Chromium
  orthanc dcmtk dicom3tools       # the DICOM node's tests: a real PACS, storescu/echoscu, dciodvfy
  orthanc-dicomweb                # the same PACS over DICOMweb: STOW-RS both ways, QIDO-RS
  libssl-dev openssl              # DICOM TLS (DCMTK's dcmtls on OpenSSL); test certificates
  libcpp-httplib-dev              # ich-serve's /healthz, /readyz, /metrics
  prometheus rsyslog              # promtool checks /metrics; rsyslog receives the audit trail in the tests
  rsyslog-openssl                 # ... and over TLS (RFC 5425), its ossl driver
  libopenjp2-tools python3-venv   # JPEG 2000 test references: opj_compress, a venv for pylibjpeg-openjpeg
  clang libclang-rt-14-dev libomp-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
