"""Training NeRV-VAE and the implicit DiT (single process or torchrun / DDP)."""
