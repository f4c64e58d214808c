#!/usr/bin/env bash
# Reproduces the embedded default model (nerv_rt/assets/default): the tiny preset trained on the
# synthetic set at 128^2 and 256^2, on CPU. Run from the repository root; writes into runs/.
# Stage timings on the 2-core development machine are in the README.
set -euo pipefail
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"

# 1. data: 512 training clips at 128^2, 256 at 256^2 (seed 0); seed 1 is held out for evaluation
nerv-rt data synth --out "$RUNS/synth128" --n 512 --seed 0 --res 128
nerv-rt data synth --out "$RUNS/synth256" --n 256 --seed 0 --res 256

# 2. NeRV-VAE at 128^2, then 256^2 starting from the 128^2 weights (every tensor of matching shape)
nerv-rt train vae "$RUNS/synth128" --preset tiny --res 128 --steps 4000 --batch 8 --lr 2e-3 \
  --gan-start 0.8 --gan-weight 0.02 --ckpt-every 250 --out "$RUNS/vae128.pt"
nerv-rt train vae "$RUNS/synth256" --preset tiny --res 256 --steps 300 --batch 4 --lr 1e-3 \
  --gan-start 0.8 --gan-weight 0.02 --ckpt-every 100 --init "$RUNS/vae128.pt" --out "$RUNS/vae256.pt"

# 3. 128^2 only: autodecoder fine-tuning of the decoder (free per-video tokens; the encoder is unchanged)
nerv-rt train autodecode "$RUNS/synth128" --init "$RUNS/vae128.pt" --steps 5000 --out "$RUNS/vae128_ad.pt"

# 4. implicit DiT on the frozen VAEs' tokens (it reads only the encoder, which step 3 leaves as it is)
nerv-rt train dit "$RUNS/synth128" --vae "$RUNS/vae128_ad.pt" --steps 4000 --batch 64 --lr 3e-4 --ema 0.999 \
  --out "$RUNS/full128.pt"
nerv-rt train dit "$RUNS/synth256" --vae "$RUNS/vae256.pt" --steps 4000 --batch 64 --lr 3e-4 --ema 0.999 \
  --out "$RUNS/full256.pt"

# 5. package: EMA weights as the DiT, float16 storage, no optimizer state
python - <<PY
from nerv_rt import checkpoint
for r in (128, 256):
    ck = checkpoint.slim(checkpoint.load("$RUNS/full%d.pt" % r))
    checkpoint.save_pretrained(ck, "nerv_rt/assets/default/tiny-%d" % r, dtype=__import__("torch").float16)
PY
