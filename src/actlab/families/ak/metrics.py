"""Animal Kingdom's mAP: per-class average precision over the whole test split, classes without a
positive dropped, and the head / middle / tail means over each segment's evaluable classes.

AP = sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds in decreasing order (tied scores
form one threshold, no interpolation): scikit-learn's `average_precision_score`, vectorised here
over classes (one sort of the N x C matrix instead of C calls). Scores are taken as float64: pass
logits, not float32 sigmoids, which saturate to 1.0 above z ~ 17 and create ties that change AP.

    python -m actlab.families.ak.metrics --npz test_scores.npz [--segments df_action.csv]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

SEGMENTS = ("head", "middle", "tail")


def average_precision(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class AP of N x C {0,1} labels and real scores; nan for a class without a positive."""
    y = np.asarray(labels).astype(np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 2:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be the same N x C shape")
    n = y.shape[0]
    # One row per class (contiguous), sorted by decreasing score. The order inside a group of
    # tied scores does not matter: each position takes the precision at the end of its group
    # (the threshold that admits the whole group at once), so no stable sort is needed.
    s, y = np.ascontiguousarray(s.T), np.ascontiguousarray(y.T)
    order = np.argsort(-s, axis=1)
    s_sorted = np.take_along_axis(s, order, axis=1)
    y_sorted = np.take_along_axis(y, order, axis=1)
    precision = np.cumsum(y_sorted, axis=1) / np.arange(1, n + 1)
    ends = np.ones_like(s_sorted, dtype=bool)
    ends[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
    end_index = np.where(ends, np.arange(n), n)
    end_index = np.minimum.accumulate(end_index[:, ::-1], axis=1)[:, ::-1]
    positives = y.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (y_sorted * np.take_along_axis(precision, end_index, axis=1)).sum(axis=1) / positives
    return np.where(positives > 0, ap, np.nan)


@dataclass(frozen=True)
class MapResult:
    per_class: np.ndarray            # C, nan where the class has no positive
    metrics: dict[str, float]        # map, map/head, map/middle, map/tail, map_keep_zero, n_eval


def mean_average_precision(labels: np.ndarray, scores: np.ndarray, segments: np.ndarray | None = None) -> MapResult:
    """Overall mAP over the evaluable classes, segment means, and `map_keep_zero` (zero-positive
    classes scored 0: scikit-learn / torchmetrics macro rule, for comparison only)."""
    ap = average_precision(labels, scores)
    evaluable = ~np.isnan(ap)
    if not evaluable.any():
        raise ValueError("no class has a positive: mAP is undefined")
    metrics = {"map": float(ap[evaluable].mean()), "map_keep_zero": float(np.nan_to_num(ap, nan=0.0).mean()),
               "n_eval": float(evaluable.sum())}
    if segments is not None:
        segments = np.asarray(segments).astype(str)
        if segments.shape != ap.shape:
            raise ValueError(f"segments has {segments.shape[0]} entries, scores {ap.shape[0]} classes")
        for name in SEGMENTS:
            member = (segments == name) & evaluable
            metrics[f"map/{name}"] = float(ap[member].mean()) if member.any() else float("nan")
    return MapResult(ap, metrics)


def random_map(labels: np.ndarray, segments: np.ndarray | None = None, draws: int = 10, seed: int = 0) -> dict[str, float]:
    """The mAP of uniform random scores on these labels, averaged over `draws` (the chance level)."""
    rng = np.random.default_rng(seed)
    results = [mean_average_precision(labels, rng.random(np.shape(labels)), segments).metrics for _ in range(draws)]
    return {k: float(np.mean([r[k] for r in results])) for k in results[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--npz", required=True, help="test_scores.npz of a run (video_id, labels, scores, segment)")
    p.add_argument("--segments", help="CSV with columns index, segment (default: the npz's `segment`)")
    args = p.parse_args(argv)
    with np.load(args.npz, allow_pickle=False) as z:
        labels, scores = z["labels"], z["scores"]
        segments = z["segment"] if "segment" in z.files else None
    if args.segments:
        import pandas as pd

        table = pd.read_csv(args.segments).sort_values("index")
        segments = table["segment"].to_numpy(dtype=str)
    json.dump(mean_average_precision(labels, scores, segments).metrics, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
