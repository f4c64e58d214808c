#!/usr/bin/env bash
# scripts/train_default.sh --device cuda on a bare GPU machine of the device image, time-boxed: that image has
# torch (CUDA), scipy and scikit-image but neither PyAV nor this package installed, so PyAV comes from .whl/
# (scripts/gpu_wheels.sh --train), the checkout goes on PYTHONPATH and `nerv-rt` is a shim. Writes into OUT the
# console log with each line's elapsed seconds, and whatever stages finished in the box: the checkpoints
# without optimizer state (the autodecoder's keep their bank, what `train dit` needs) and, when the last stage
# ran, the packaged default as one tar per resolution. Its checkpoints serve evaluation and `train dit`, not --resume.
# Exits with train_default.sh's status (124: the time box ended it).
#
#   scripts/gpu_train.sh OUT [SECONDS]      # OUT relative to the repository root; SECONDS: the time box (default 420)
#
# As a device call: `run` with carry [".whl"] and the command `scripts/gpu_train.sh $OUT 415`.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_train.sh OUT [SECONDS]}
box=${2:-420}
mkdir -p "$out" /tmp/nerv-rt-bin
python3 -c "import av" 2>/dev/null ||
  python3 -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/nerv-rt-site .whl/av-*.whl || exit 1
export PYTHONPATH="$PWD:/tmp/nerv-rt-site" PYTHONUNBUFFERED=1 RUNS=/tmp/nerv-rt-runs PATH="/tmp/nerv-rt-bin:$PATH"
printf '#!/bin/sh\nexec python3 -m nerv_rt "$@"\n' > /tmp/nerv-rt-bin/nerv-rt
printf '#!/bin/sh\nexec python3 "$@"\n' > /tmp/nerv-rt-bin/python
chmod +x /tmp/nerv-rt-bin/*
start=$SECONDS
timeout -k 30 "$box" scripts/train_default.sh --device cuda 2>&1 | while IFS= read -r line; do
  printf '[%4d s] %s\n' $((SECONDS - start)) "$line"
done | tee "$out/train.log"
rc=${PIPESTATUS[0]}
echo "train_default.sh: exit $rc after $((SECONDS - start)) s (124: the time box)" | tee -a "$out/train.log"

python3 - "$RUNS" "$out" <<'EOF'
import sys
from dataclasses import replace
from pathlib import Path

from nerv_rt import checkpoint as ckpt_io

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
# per resolution the latest autodecoder stage (a continued one once it has started: its step says how far it got;
# at 128^2 the token-noise stage or its continuation, whose bank the DiT learns) and the DiT (at 128^2 with the
# encoder's last stage once it has started): with the log and two tars, 7 files, under the device call's 8
def latest(*names: str) -> Path:
    """The first of these checkpoints (the later stage first) that exists; the last when none does."""
    paths = [runs / name for name in names]
    return next((p for p in paths if p.exists()), paths[-1])


for path in [latest("ad128n2.pt", "ad128n.pt", "ad128b.pt", "ad128.pt"), latest("ad256b.pt", "ad256.pt"),
             latest("model128.pt", "full128.pt"), runs / "full256.pt"]:
    if path.exists():
        ck = ckpt_io.load(path)
        keep = {k: v for k, v in ck.train_state.items() if k in ("kind", "step", "bank")}
        ckpt_io.save(replace(ck, train_state=keep), out / path.name)
        print(f"{path.name}: step {keep.get('step')}")
EOF
if [ "$rc" -eq 0 ]; then  # packaging is train_default.sh's last command
  for r in 128 256; do tar -C nerv_rt/assets/default -cf "$out/tiny-$r.tar" "tiny-$r"; done
fi
ls -la "$out"
exit "$rc"
