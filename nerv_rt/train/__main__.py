"""`python -m nerv_rt.train vae|dit ...`: the training CLI, e.g. under torchrun for DDP:

    torchrun --nproc_per_node 2 -m nerv_rt.train vae DATA --out ckpt.pt
"""
from ..cli import train_app

train_app(prog_name="python -m nerv_rt.train")
