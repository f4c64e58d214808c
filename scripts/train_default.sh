#!/usr/bin/env bash
# Reproduces the embedded default model (nerv_rt/assets/default): the tiny preset trained on the
# synthetic set at 128^2 and 256^2, then packaged with its exported ONNX graphs, so that the weights
# and the graphs the torch-free install runs always come from the same checkpoints.
#
#   scripts/train_default.sh                  # CPU, every stage under bf16 autocast: about 2.9 h estimated on an idle
#                                             # 2-core AMD EPYC, 4.0 h by its stage times on the 2-core Intel Xeon that
#                                             # made the shipped model, 3.9 h in a second run there (README "Reproduce")
#   scripts/train_default.sh --device cuda    # the same commands on a GPU (bf16 autocast too)
#   scripts/train_default.sh --precision fp32 # every stage in fp32, for a CPU without native bf16 (AVX512-BF16 or AMX),
#                                             # where autocast has no fast kernels to use (not measured): about 5.1 h
#                                             # estimated on the EPYC (not run with 40000-step DiTs)
#
# Run from the repository root with the train and export extras installed; writes into $RUNS (runs/).
# Rerunning continues an interrupted run: a data set is written whole or not at all and is skipped when present;
# a training stage whose checkpoint exists resumes from it (--resume; a finished one returns at once). Stage
# timings are in the README ("Reproduce").
set -euo pipefail
DEVICE=cpu
PRECISION=bf16  # the recipe of the shipped model; weights, optimizer state and checkpoints stay fp32
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=${2:?--device needs cpu or cuda}; shift 2 ;;
    --precision) PRECISION=${2:?--precision needs bf16, fp32 or auto}; shift 2 ;;
    *) echo "usage: $0 [--device cpu|cuda] [--precision bf16|fp32|auto]" >&2; exit 2 ;;
  esac
done
if [ "$DEVICE" = cpu ] && [ "$PRECISION" = bf16 ] && ! grep -qwE 'avx512_bf16|amx_bf16|bf16' /proc/cpuinfo 2>/dev/null; then
  echo "warning: no bf16 flag (avx512_bf16, amx_bf16, bf16) in /proc/cpuinfo: bf16 autocast may be slow on this CPU; consider --precision fp32" >&2
fi
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"
data() { local out=$1; shift; if [ -e "$out" ]; then echo "skip: $out exists"; else echo "+ $*"; "$@" --out "$out"; fi; }
train() {
  local out=$1; shift
  if [ -e "$out" ]; then set -- "$@" --resume; fi
  echo "+ $* --out $out"; "$@" --device "$DEVICE" --precision "$PRECISION" --out "$out"
}
# extend FROM OUT CMD...: continue the finished run FROM (checkpoint and log) as the run OUT, to CMD's larger --steps
extend() {
  local from=$1 out=$2; shift 2
  if [ ! -e "$out" ]; then
    echo "note: $out continues $from with new flags; a --resume warning that they freeze other parts is intended" >&2
    if [ -e "${from%.pt}.csv" ]; then cp "${from%.pt}.csv" "${out%.pt}.csv"; fi
    cp "$from" "$out.part"
    mv "$out.part" "$out"
  fi
  train "$out" "$@"
}

# 1. data: 512 training clips at 128^2, 256 at 256^2 (seed 0); seed 1 is held out for evaluation
data "$RUNS/synth128" nerv-rt data synth --n 512 --seed 0 --res 128
data "$RUNS/synth256" nerv-rt data synth --n 256 --seed 0 --res 256
#    and 2048 clips at 128^2 for the encoder's last stage: the same 512 and 1536 more (clip i depends only on seed, i)
data "$RUNS/synth128x" nerv-rt data synth --n 2048 --seed 0 --res 128

# dit RES BANK STEPS: the implicit DiT learns an autodecoder bank (the per-video tokens that render their clips'
# motion) with v-prediction, at lr 1e-3 (3x the first recipe's 3e-4 bought more class accuracy in 10000 steps than
# 3e-4 did in 20000), without scheduled sampling (no measurable effect; off, a step costs one forward less), for
# 40000 steps: over 10000, 20000 steps bought 6 points of class accuracy at 256^2 and 3 at 128^2; under bf16, 40000
# lifted two 128^2 banks over the 80 % target (81.6 and 81.25 %; 79.7 and 78.7 % at 20000).
# docs/default-model.md,
# "The DiT's learning rate was the next lever", "The 128^2 DiT for 20000 steps" and "The targets, in full".
dit() {
  train "$RUNS/full$1.pt" nerv-rt train dit "$RUNS/synth$1" --vae "$RUNS/$2.pt" --tokens bank --prediction v \
    --batch 64 --lr 1e-3 --scheduled-sampling 0 --ema 0.999 --steps "$3"
}

# 2. 128^2: a short VAE run (more steps did not raise held-out PSNR), then the autodecoder stage: the
#    decoder and a bank of per-video tokens fitted to their clips, the encoder regressing the bank (5000 steps; the
#    256^2 VAE starts here), then the same run continued to 10000 steps with the encoder frozen (a step costs half):
#    its bank renders more of its clips' camera motion (docs/default-model.md, "A longer autodecoder stage"); then its DiT
train "$RUNS/vae128.pt" nerv-rt train vae "$RUNS/synth128" --preset tiny --res 128 --steps 1500 --batch 8 \
  --lr 2e-3 --gan-start 0.8 --gan-weight 0.02 --ckpt-every 250
train "$RUNS/ad128.pt" nerv-rt train autodecode "$RUNS/synth128" --init "$RUNS/vae128.pt" --steps 5000
extend "$RUNS/ad128.pt" "$RUNS/ad128b.pt" nerv-rt train autodecode "$RUNS/synth128" --init "$RUNS/vae128.pt" \
  --steps 10000 --encoder-weight 0
#    then 3000 steps more from it with Gaussian noise of 0.3 times the bank's per-value std on the tokens the decoder
#    renders from, so that points between two entries of a class (where the DiT's samples land) still render that
#    class (docs/default-model.md, "Noise on the bank's tokens")
train "$RUNS/ad128n.pt" nerv-rt train autodecode "$RUNS/synth128" --init "$RUNS/ad128b.pt" --steps 3000 \
  --encoder-weight 0 --token-noise 0.3
#    and continued to 6000 steps (a warm restart of its cosine schedule): the bank reads as its class more often, and
#    so do its DiT's clips (docs/default-model.md, "A longer noise stage"); the DiT learns this bank
extend "$RUNS/ad128n.pt" "$RUNS/ad128n2.pt" nerv-rt train autodecode "$RUNS/synth128" --init "$RUNS/ad128b.pt" \
  --steps 6000 --encoder-weight 0 --token-noise 0.3
dit 128 ad128n2 40000
#    last, the encoder alone against the finished decoder (decoder, bank and DiT frozen), rendering its own tokens on
#    the 2048 clips (on the bank's 512 it overfits), the temporal term weighted 3; refinement from its tokens needs
#    100 steps to match what 80 gave from the encoder before (docs/default-model.md, "The encoder fitted last, on more clips")
train "$RUNS/model128.pt" nerv-rt train encoder "$RUNS/synth128x" --init "$RUNS/full128.pt" --steps 4000 --lr 1e-3 \
  --temporal-weight 3 --refine-steps 100

# 3. 256^2: the VAE starts from the 128^2 weights (every tensor of matching shape); its autodecoder stage
#    keeps the encoder frozen (at 4x the patches the encoder's share of a step would double its cost), and is
#    continued as at 128^2, from 1500 to 3000 steps (docs/default-model.md, "The 256^2 stage continued")
train "$RUNS/vae256.pt" nerv-rt train vae "$RUNS/synth256" --preset tiny --res 256 --steps 300 --batch 4 --lr 1e-3 \
  --gan-start 0.8 --gan-weight 0.02 --ckpt-every 100 --init "$RUNS/ad128.pt"
train "$RUNS/ad256.pt" nerv-rt train autodecode "$RUNS/synth256" --init "$RUNS/vae256.pt" --steps 1500 \
  --encoder-weight 0
extend "$RUNS/ad256.pt" "$RUNS/ad256b.pt" nerv-rt train autodecode "$RUNS/synth256" --init "$RUNS/vae256.pt" \
  --steps 3000 --encoder-weight 0
dit 256 ad256b 40000

# 4. package: EMA weights as the DiT, float16 storage, and the exported ONNX graphs beside them
python -m nerv_rt.export.package "$RUNS/model128.pt" "$RUNS/full256.pt"
