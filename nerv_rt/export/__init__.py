"""Export a checkpoint to validated ONNX graphs plus a manifest (and, with TensorRT, engines)."""
