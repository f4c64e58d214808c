"""A small video classifier of the synthetic domain, the judge of `nerv-rt eval gen`: it labels generated clips
by motion kind (class accuracy) and its penultimate features give a synthetic-domain Frechet distance.

Inference runs the shipped ONNX graph on ONNX Runtime (torch-free); `nerv-rt train classifier` (torch,
train/classifier.py) makes it. Clips are area-downsampled to 64 x 64 and fed as frames plus frame-to-frame
differences, so a small 3-D conv net sees the motion directly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NervError
from ..formats import FolderOutput

CLASSIFIER_DIR = Path(__file__).resolve().parent.parent / "assets" / "classifier"
GRAPH_FILE, META_FILE = "classifier.onnx", "classifier.json"
CLASSIFIER_FOLDER = FolderOutput("a classifier folder", lambda folder: all(
    e.is_file() and e.name in (GRAPH_FILE, META_FILE) for e in folder.iterdir()))
INPUT_RES = 64
FRAMES = 16


def prepare(clips: np.ndarray) -> np.ndarray:
    """uint8 clips [n, T, H, W, 3] (H = W a multiple of 64) -> float32 [n, 6, T, 64, 64]: the frames in [-1, 1]
    (area-downsampled) and their differences to the frame before (zero for the first)."""
    n, t, h, w, _ = clips.shape
    if t != FRAMES or h != w or h % INPUT_RES:
        raise NervError(f"the classifier reads clips of {FRAMES} frames at a multiple of {INPUT_RES}^2, got {t} x {h}x{w}")
    f = h // INPUT_RES
    x = clips.astype(np.float32).reshape(n, t, INPUT_RES, f, INPUT_RES, f, 3).mean(axis=(3, 5)) / 127.5 - 1
    x = x.transpose(0, 4, 1, 2, 3)  # (n, 3, T, 64, 64)
    diff = np.concatenate([np.zeros_like(x[:, :, :1]), np.diff(x, axis=2)], axis=2)
    return np.ascontiguousarray(np.concatenate([x, diff], axis=1))


@dataclass(frozen=True)
class ClassifierMeta:
    class_names: tuple[str, ...]
    heldout_accuracy: float  # on real clips of a seed it was not trained on
    heldout_clips: int
    train_command: str

    @classmethod
    def read(cls, folder: Path) -> ClassifierMeta:
        try:
            d = json.loads((folder / META_FILE).read_text())
            return cls(tuple(d["class_names"]), float(d["heldout_accuracy"]), int(d["heldout_clips"]), d["train_command"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise NervError(f"{folder / META_FILE}: not a classifier description ({e})") from None


class Classifier:
    """The classifier graph on ONNX Runtime CPU: uint8 clips -> (class probabilities, features)."""

    def __init__(self, folder: Path = CLASSIFIER_DIR):
        import onnxruntime as ort

        graph = folder / GRAPH_FILE
        if not graph.is_file():
            raise NervError(f"{graph}: no classifier here; make one with `nerv-rt train classifier --out {folder}`")
        self.meta = ClassifierMeta.read(folder)
        self.session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])

    def __call__(self, clips: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """uint8 clips [n, 16, H, W, 3] -> (probabilities [n, classes], features [n, D])."""
        probs, feats = [], []
        for s in range(0, len(clips), batch):
            logits, f = self.session.run(["logits", "features"], {"clips": prepare(clips[s:s + batch])})
            e = np.exp(logits - logits.max(1, keepdims=True))
            probs.append(e / e.sum(1, keepdims=True))
            feats.append(f)
        return np.concatenate(probs), np.concatenate(feats)
