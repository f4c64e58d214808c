"""Training data: any folder of videos (UCF-101 layout gives labels) and a synthetic set."""
