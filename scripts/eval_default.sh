#!/usr/bin/env bash
# Measures the embedded default model (or --model M) on held-out synthetic clips (seed 1): the figures of the
# README's "The embedded default model" section, as JSON files in $OUT (default: runs/eval-default).
#
#   scripts/eval_default.sh                      # about 11 min on a 2-core Xeon (128^2 4 min, 256^2 7 min)
#   scripts/eval_default.sh --model runs/model128.pt --res 128
#
# Needs the train extra (torch: the default encoding refines tokens with autograd). Writes:
#   gen<res>.json     nerv-rt eval gen: motion ratio, class accuracy, confusion, Frechet distance vs its floor
#   recon<res>.json   nerv-rt eval recon on held-out clips read back from .mp4 (default encoding, encoder alone)
#   stages<res>.json  scripts/motion_stages.py: motion kept at each stage, generation at guidance 1-4
#   long<res>.json    --frames 128 of the 16-frame model: motion and frame-to-frame smoothness
set -euo pipefail
MODEL=default
RESES="128 256"
while [ $# -gt 0 ]; do
  case $1 in
    --model) MODEL=$2; shift 2 ;;
    --res) RESES=$2; shift 2 ;;
    *) echo "error: unknown option $1 (use --model M, --res R)" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-runs/eval-default}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
# each output appears whole or not at all: written beside, then renamed
to() { local out=$1; shift; "$@" > "$out.part" && mv "$out.part" "$out"; }
for r in $RESES; do
  if [ ! -d "$OUT/heldout$r" ]; then
    rm -rf "$OUT/heldout$r.part"
    nerv-rt data synth --out "$OUT/heldout$r.part" --n 32 --seed 1 --res "$r" && mv "$OUT/heldout$r.part" "$OUT/heldout$r"
  fi
  to "$OUT/gen$r.json" nerv-rt eval gen --model "$MODEL" --res "$r" --n-per-class 16 --json
  to "$OUT/recon$r.json" nerv-rt eval recon "$OUT/heldout$r" --model "$MODEL" --res "$r" --json
  to "$OUT/recon${r}_encoder.json" nerv-rt eval recon "$OUT/heldout$r" --model "$MODEL" --res "$r" --refine-steps 0 --json
  "$PYTHON" scripts/motion_stages.py --model "$MODEL" --res "$r" --clips 16 --guidance 1,2,3,4 --json "$OUT/stages$r.json"
  "$PYTHON" scripts/long_clip.py --model "$MODEL" --res "$r" --frames 128 --json "$OUT/long$r.json"
done
