"""Inference runtime: model sources, the Pipeline, video I/O. Torch is imported only by torch backends."""
