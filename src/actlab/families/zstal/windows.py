"""THUMOS sliding windows over snippet features, and instances cut by them.

Training: stride = size * (1 - overlap), windows that fit, plus the last one shifted left to end at
T; an instance is kept iff >= `keep` of its length lies inside (then clipped and shifted).
Inference: the same stride, every window until one reaches T; the last partial one kept as is.
Golden (T = 300, size 128): training starts 0, 32, 64, 96, 128, 160, 172 (overlap 0.75);
inference [0, 127], [96, 223], [192, 299] (overlap 0.25).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    start: int        # first snippet
    length: int       # valid snippets (<= size; shorter only at a video's end at inference or for T < size)


def _stride(size: int, overlap: float) -> int:
    stride = int(round(size * (1 - overlap)))
    if stride < 1:
        raise ValueError(f"window overlap {overlap} leaves no stride for size {size}")
    return stride


def training_windows(t: int, size: int, overlap: float) -> list[Window]:
    if t <= size:
        return [Window(0, t)]
    stride = _stride(size, overlap)
    starts = list(range(0, t - size + 1, stride))
    if starts[-1] + size < t:
        starts.append(t - size)
    return [Window(s, size) for s in starts]


def inference_windows(t: int, size: int, overlap: float) -> list[Window]:
    stride = _stride(size, overlap)
    out, start = [], 0
    while True:
        out.append(Window(start, min(size, t - start)))
        if start + size >= t:
            return out
        start += stride


def cut_instances(segments: np.ndarray, window: Window, keep: float) -> np.ndarray:
    """Instances ([n, 2] in snippets) with >= `keep` of their length inside the window, clipped and
    shifted to the window's frame; [m, 2]."""
    if len(segments) == 0:
        return np.zeros((0, 2))
    lo, hi = window.start, window.start + window.length
    inside = np.clip(np.minimum(segments[:, 1], hi) - np.maximum(segments[:, 0], lo), 0, None)
    length = segments[:, 1] - segments[:, 0]
    kept = segments[inside >= keep * length - 1e-9]
    return np.clip(kept, lo, hi) - lo


def to_video(se: np.ndarray, window: Window) -> np.ndarray:
    """Normalized (start, end) in a window (fractions of its valid length) -> video snippets."""
    return window.start + se * window.length
