#!/usr/bin/env bash
# Reproduces the embedded default model (nerv_rt/assets/default): the tiny preset trained on the
# synthetic set at 128^2 and 256^2, then packaged with its exported ONNX graphs, so that the weights
# and the graphs the torch-free install runs always come from the same checkpoints.
#
#   scripts/train_default.sh                  # CPU (about 4.3 h on an idle 2-core CPU)
#   scripts/train_default.sh --device cuda    # the same commands on a GPU
#
# Run from the repository root with the train and export extras installed; writes into $RUNS (runs/).
# A stage whose output exists is skipped, so an interrupted run continues where it stopped (a stage
# cut off mid-way resumes with --resume by hand; the DiT runs resume by themselves). Stage timings are in
# the README ("Reproduce").
set -euo pipefail
DEVICE=cpu
if [ "${1:-}" = "--device" ]; then DEVICE=${2:?--device needs cpu or cuda}; fi
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"
stage() { local out=$1; shift; if [ -e "$out" ]; then echo "skip: $out exists"; else echo "+ $*"; "$@"; fi; }

# 1. data: 512 training clips at 128^2, 256 at 256^2 (seed 0); seed 1 is held out for evaluation
stage "$RUNS/synth128" nerv-rt data synth --out "$RUNS/synth128" --n 512 --seed 0 --res 128
stage "$RUNS/synth256" nerv-rt data synth --out "$RUNS/synth256" --n 256 --seed 0 --res 256

# 2. 128^2: a short VAE run (more steps did not raise held-out PSNR), then the autodecoder stage: the
#    decoder and a bank of per-video tokens fitted to their clips, the encoder regressing the bank
stage "$RUNS/vae128.pt" nerv-rt train vae "$RUNS/synth128" --preset tiny --res 128 --steps 1500 --batch 8 \
  --lr 2e-3 --gan-start 0.8 --gan-weight 0.02 --ckpt-every 250 --device "$DEVICE" --out "$RUNS/vae128.pt"
stage "$RUNS/ad128.pt" nerv-rt train autodecode "$RUNS/synth128" --init "$RUNS/vae128.pt" --steps 5000 \
  --device "$DEVICE" --out "$RUNS/ad128.pt"

# 3. 256^2: the VAE starts from the 128^2 weights (every tensor of matching shape); its autodecoder stage
#    keeps the encoder frozen (at 4x the patches the encoder's share of a step would double its cost)
stage "$RUNS/vae256.pt" nerv-rt train vae "$RUNS/synth256" --preset tiny --res 256 --steps 300 --batch 4 --lr 1e-3 \
  --gan-start 0.8 --gan-weight 0.02 --ckpt-every 100 --init "$RUNS/ad128.pt" --device "$DEVICE" --out "$RUNS/vae256.pt"
stage "$RUNS/ad256.pt" nerv-rt train autodecode "$RUNS/synth256" --init "$RUNS/vae256.pt" --steps 1500 \
  --encoder-weight 0 --device "$DEVICE" --out "$RUNS/ad256.pt"

# 4. implicit DiTs on the autodecoder banks: the tokens that render their clips' motion; v-prediction. 10000
#    steps, then resumed to 20000 (the learning rate jumps from the end of the 10000-step cosine, 3e-5, to the
#    middle of the 20000-step one, 1.65e-4): the samples' class accuracy still rose from 4000 to 10000 to 20000
#    steps (README, "Then the DiT was the limit"). Both runs continue from their checkpoint when there is one.
resumable() { local out=$1; shift; if [ -e "$out" ]; then set -- "$@" --resume; fi; echo "+ $* --out $out"; "$@" --out "$out"; }
for r in 128 256; do
  dit=(nerv-rt train dit "$RUNS/synth$r" --vae "$RUNS/ad$r.pt" --tokens bank --prediction v --batch 64 --lr 3e-4
       --ema 0.999 --device "$DEVICE")
  resumable "$RUNS/dit$r-10k.pt" "${dit[@]}" --steps 10000
  if [ ! -e "$RUNS/full$r.pt" ]; then cp "$RUNS/dit$r-10k.pt" "$RUNS/full$r.pt.part" && mv "$RUNS/full$r.pt.part" "$RUNS/full$r.pt"; fi
  resumable "$RUNS/full$r.pt" "${dit[@]}" --steps 20000
done

# 5. package: EMA weights as the DiT, float16 storage, and the exported ONNX graphs beside them
python -m nerv_rt.export.package "$RUNS/full128.pt" "$RUNS/full256.pt"
