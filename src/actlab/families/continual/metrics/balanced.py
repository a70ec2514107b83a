"""Balanced (macro) top-1 accuracy: the mean, over the classes seen as targets, of per-class top-1
accuracy (= sklearn.metrics.balanced_accuracy_score). One definition, `balanced_top1`, on per-class
counts; the online counters (online.py), whole-sample and running (prefix) versions all call it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_ROWS = 1024    # running_balanced: rows of the cumulative count matrix held at once


def balanced_top1(seen: Any, correct: Any) -> Any:
    """Per-class counts (last axis: classes) -> mean over classes with seen > 0 of correct / seen.

    1-D counts give a float; 2-D counts (one row per prefix) give one value per row. nan where no
    class was seen.
    """
    seen = np.asarray(seen, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    present = seen > 0
    ratio = np.divide(correct, seen, out=np.zeros_like(seen), where=present)
    n = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ratio.sum(axis=-1) / n
    return float(out) if np.ndim(out) == 0 else out


def _class_ids(labels: Any) -> tuple[np.ndarray, int]:
    _, ids = np.unique(np.asarray(labels), return_inverse=True)
    return ids.reshape(-1), int(ids.max()) + 1 if len(ids) else 0


def balanced_accuracy(labels: Any, correct: Any) -> float:
    """Balanced top-1 over samples (label, correct); nan for no samples."""
    ids, n_classes = _class_ids(labels)
    hits = np.asarray(correct, dtype=np.float64).reshape(-1)
    if len(ids) == 0:
        return float("nan")
    return balanced_top1(np.bincount(ids, minlength=n_classes), np.bincount(ids, hits, minlength=n_classes))


def running_balanced(labels: Any, correct: Any) -> np.ndarray:
    """Balanced top-1 over samples 0..k (classes seen so far), for every k."""
    ids, n_classes = _class_ids(labels)
    hits = np.asarray(correct, dtype=np.float64).reshape(-1)
    out = np.empty(len(ids))
    seen0, correct0 = np.zeros(n_classes), np.zeros(n_classes)
    for start in range(0, len(ids), _ROWS):
        block = slice(start, start + _ROWS)
        onehot = np.zeros((len(ids[block]), n_classes))
        onehot[np.arange(len(ids[block])), ids[block]] = 1.0
        seen = seen0 + np.cumsum(onehot, axis=0)
        right = correct0 + np.cumsum(onehot * hits[block, None], axis=0)
        out[block] = balanced_top1(seen, right)
        seen0, correct0 = seen[-1], right[-1]
    return out
