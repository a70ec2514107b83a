"""Animal Kingdom mAP on a test split of its size (6,096 clips x 140 classes, its label
prevalence: head classes common, tail rare, 13 classes without a positive, ~2.16 labels per clip):
the vectorised per-class AP (actlab.families.ak.metrics) against the per-class scikit-learn path
of the data set's `get_map` (one `average_precision_score` per class with a positive).

Reported: the largest difference over the per-class APs (must be <= 1e-12) and the time ratio
sklearn / ours (target >= 3).
"""
from __future__ import annotations

import numpy as np
from common import Record, interleaved, median
from sklearn.metrics import average_precision_score

from actlab.families.ak.metrics import average_precision

N, C = 6096, 140


def ak_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # 17 head / 29 middle / 94 tail classes with AK-like test prevalences; 13 tail classes empty
    prevalence = np.concatenate([rng.uniform(0.02, 0.14, 17), rng.uniform(0.006, 0.03, 29),
                                 rng.uniform(0.0003, 0.006, 81), np.zeros(13)])
    labels = (rng.random((N, C)) < prevalence).astype(np.uint8)
    # logits with some signal, rounded so ties occur as in low-precision outputs
    scores = np.round(rng.normal(size=(N, C)) + 1.5 * labels, 2).astype(np.float32)
    return labels, scores


def sklearn_path(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.array([average_precision_score(labels[:, c], scores[:, c]) if labels[:, c].any() else np.nan
                     for c in range(labels.shape[1])])


def main() -> None:
    labels, scores = ak_like()
    ours, ref = average_precision(labels, scores), sklearn_path(labels, scores)
    ok = ~np.isnan(ref)
    assert (np.isnan(ours) == ~ok).all()
    diff = float(np.abs(ours[ok] - ref[ok]).max())
    times = interleaved({"ours": lambda: average_precision(labels, scores),
                         "sklearn": lambda: sklearn_path(labels, scores)}, repeats=5)
    ratio = median(times["sklearn"]) / median(times["ours"])
    Record("ak_map", figures={"max_abs_difference": diff, "speedup_vs_sklearn": ratio,
                              "meets_3x": bool(ratio >= 3), "identical_1e-12": bool(diff <= 1e-12)},
           raw={"ours_s": median(times["ours"]), "sklearn_s": median(times["sklearn"]), "clips": N, "classes": C,
                "evaluable_classes": int(ok.sum()), "labels_per_clip": float(labels.sum(1).mean())}).write()


if __name__ == "__main__":
    main()
