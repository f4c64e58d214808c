#!/usr/bin/env bash
# Run on a machine with the package index, before a GPU window: downloads into .whl/ (ignored by git) the wheels
# that scripts/gpu_check.sh needs and the GPU machines' image lacks (device README: CPython 3.12, manylinux x86_64):
# diffusers for the SD-VAE baseline and what it needs beyond the image. No step writes video, so no PyAV.
#   scripts/gpu_wheels.sh            # for scripts/gpu_check.sh
#   scripts/gpu_wheels.sh --train    # for scripts/gpu_train.sh: PyAV alone (35 MB; with the checkout it nearly
#                                    # fills the 64 MiB a device call carries, so not beside the others)
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=("diffusers==0.42.1" "importlib-metadata==8.7.0")
if [ "${1:-}" = "--train" ]; then wheels=("av==19.0.2"); fi
rm -rf .whl && mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "${wheels[@]}"
size=$(du -sm .whl | cut -f1)
if [ "$size" -gt 60 ]; then echo "error: .whl/ holds $size MB, more than 60 MB" >&2; exit 1; fi
ls .whl && echo ".whl/: $size MB"
