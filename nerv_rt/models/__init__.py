"""NeRV-VAE (hypernetwork encoder + NeRV decoder) and the implicit DiT.

This package init stays torch-free so that `nerv_rt.models.presets` can be imported by the
ONNX Runtime path; import the torch modules from their files (`nerv_rt.models.dit`, ...).
"""
