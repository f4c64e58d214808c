#!/usr/bin/env bash
# The prepared GPU check (nerv_rt/bench/gpu_check.py): every GPU row of the paper's table in one run, each step
# time-boxed, the whole under 9 minutes on one H100 / H200. Runs on a bare CUDA machine without network whose
# image has torch (CUDA), numpy, onnx, onnxruntime, pytest, typer, rich, safetensors, imageio and nvidia-ml-py:
# the wheels the image lacks come from .whl/ (made beforehand by scripts/gpu_wheels.sh), installed beside it,
# never over what it has. The checkout itself is on PYTHONPATH (no install).
#
#   scripts/gpu_check.sh [--out DIR] [--skip STEP ...]   # results.json + results.md, default bench/results/<gpu>/
#   scripts/gpu_check.sh --out DIR --rerun STEP ...      # only these steps again, the others kept from DIR
#   scripts/gpu_check.sh --dry-run --out DIR             # the same sequence on the CPU at tiny size (the tests run it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)  # no cd: a relative --out stays relative to where the script was called
site=${NERV_RT_GPU_SITE:-/tmp/nerv-rt-gpu-site}
py=${PYTHON:-python3}
if compgen -G "$root/.whl/*.whl" >/dev/null; then
  missing=()
  for wheel in "$root"/.whl/*.whl; do
    dist=$(basename "$wheel" | cut -d- -f1)
    "$py" -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' "$dist" 2>/dev/null || missing+=("$wheel")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    # a failed install is recorded by the steps that need those wheels (each step's error is in results.json)
    "$py" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "${missing[@]}" ||
      echo "warning: installing ${missing[*]} failed; the steps that need them will fail" >&2
  fi
fi
export PYTHONPATH="$root:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$py" -m nerv_rt.bench.gpu_check "$@"
