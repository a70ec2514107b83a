"""Pose and action metrics, exactly as the report defines them (docs/hand.md).

Errors are per-joint Euclidean distances in mm against the raw ground truth (never a
PCA-reconstructed one). The mean error is over all frames x joints at once; PCK counts
(frame, joint) pairs, FS counts frames whose worst joint is within the threshold; AUC is the
trapezoid area over the thresholds divided by their span (0..80 mm: 81 points, / 80).
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = np.arange(0, 81, dtype=np.float64)      # mm, the AUC's 81 points


def joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[N, J, 3] predictions and ground truth (mm) -> [N, J] Euclidean errors."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ")
    return np.linalg.norm(pred - gt, axis=-1)


def mean_joint_error(errors: np.ndarray) -> float:
    """Mean over every (frame, joint) pair at once."""
    return float(np.mean(errors))


def per_joint_error(errors: np.ndarray) -> np.ndarray:
    return np.asarray(errors, dtype=np.float64).mean(axis=0)


def pck(errors: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """Fraction of (frame, joint) pairs with error <= tau, for each tau."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    return (e[None, :] <= np.asarray(thresholds, dtype=np.float64)[:, None]).mean(axis=1)


def frame_success(errors: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """Fraction of frames whose maximum joint error is <= tau, for each tau."""
    worst = np.asarray(errors, dtype=np.float64).max(axis=1)
    return (worst[None, :] <= np.asarray(thresholds, dtype=np.float64)[:, None]).mean(axis=1)


def auc(curve: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> float:
    """Trapezoid area under `curve` over `thresholds`, divided by their span."""
    t = np.asarray(thresholds, dtype=np.float64)
    c = np.asarray(curve, dtype=np.float64)
    return float(np.sum((c[1:] + c[:-1]) * np.diff(t)) / 2 / (t[-1] - t[0]))


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """A sequence is a hit iff fewer than k classes score strictly above its true class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    true = s[np.arange(len(y)), y]
    return float(((s > true[:, None]).sum(axis=1) < k).mean())


def pose_summary(errors: np.ndarray, prefix: str = "hpe/") -> dict[str, float]:
    """The summary keys of a pose evaluation: mean error (mm), PCK and FS AUC over 0..80 mm."""
    return {f"{prefix}mean_mm": mean_joint_error(errors), f"{prefix}pck_auc": auc(pck(errors)),
            f"{prefix}fs_auc": auc(frame_success(errors))}


def action_summary(scores: np.ndarray, labels: np.ndarray, prefix: str = "har/") -> dict[str, float]:
    return {f"{prefix}top1": topk_accuracy(scores, labels, 1), f"{prefix}top3": topk_accuracy(scores, labels, 3)}
