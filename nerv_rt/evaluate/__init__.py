"""Model evaluation: reconstruction (recon.py), generation (gen.py) with a small classifier of the synthetic
domain (classifier.py), and the metrics they share (metrics.py: numpy, so the torch-free install runs them)."""
