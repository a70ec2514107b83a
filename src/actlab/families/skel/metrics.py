"""Score-based metrics on the test split (issue 14 §5): a sample is a top-k hit iff fewer than k
classes score strictly higher than its true class (ties count for the sample)."""
from __future__ import annotations

from typing import Any

import numpy as np


def ranks(scores: Any, labels: Any) -> np.ndarray:
    """#{c: s_c > s_y} per sample."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if s.ndim != 2 or len(s) != len(y):
        raise ValueError(f"scores must be [N, L] with one row per label, got {s.shape} and {y.shape}")
    return (s > s[np.arange(len(y)), y][:, None]).sum(1)


def topk_accuracy(scores: Any, labels: Any, k: int = 1) -> float:
    return float((ranks(scores, labels) < k).mean())


def mean_class_accuracy(scores: Any, labels: Any) -> float:
    """Mean per-class top-1 recall over the classes present in the ground truth."""
    y = np.asarray(labels, dtype=np.int64)
    hit = ranks(scores, y) < 1
    return float(np.mean([hit[y == c].mean() for c in np.unique(y)]))
