"""ActivityNet detection mAP (the official `compute_average_precision_detection` rule), rewritten.

Per class: npos = GT count; predictions by score descending (ties keep file order: stable sort);
a prediction in a video without GT of its class is an FP at every threshold; otherwise it visits
the video's GT of its class by decreasing tIoU and, per threshold t: tIoU < t -> FP; GT already
matched at t -> next GT; else TP (the GT is locked at t); walk ended undecided -> FP. AP is the
VOC-2011 all-point interpolation. Not a port of the official file (Python 2, np.float, a network
call for blocked videos, pandas row iteration): arrays per video, one Python pass per prediction.

    python -m actlab.families.zstal.evaluate --gt G --pred P --subset S --dataset {thumos,anet} [--classes LIST]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from actlab.errors import DataError

THRESHOLDS = {"thumos": tuple(np.round(np.arange(0.3, 0.71, 0.1), 2)),
              "anet": tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))}


@dataclass(frozen=True)
class Detection:
    video: str
    start: float
    end: float
    score: float
    label: str


def tiou(segment: Sequence[float], segments: np.ndarray) -> np.ndarray:
    """Temporal IoU of one [start, end] with each row of `segments` (seconds, no +1, overlap >= 0)."""
    inter = np.clip(np.minimum(segment[1], segments[:, 1]) - np.maximum(segment[0], segments[:, 0]), 0, None)
    union = (segment[1] - segment[0]) + (segments[:, 1] - segments[:, 0]) - inter
    return inter / union


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 all-point interpolation: precision envelope from the right, summed over recall steps."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mprec[steps]))


def average_precision(gt: dict[str, np.ndarray], preds: Sequence[tuple[str, float, float, float]],
                      thresholds: Sequence[float]) -> np.ndarray:
    """AP at each threshold for one class: gt video -> [n, 2] segments; preds (video, start, end, score)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    npos = sum(len(g) for g in gt.values())
    if npos == 0:
        raise DataError("average_precision: the class has no ground truth")
    if not preds:
        return np.zeros(len(thresholds))
    scores = np.array([p[3] for p in preds], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    tp = np.zeros((len(thresholds), len(preds)))
    locked = {v: np.zeros((len(thresholds), len(g)), dtype=bool) for v, g in gt.items()}
    for rank, i in enumerate(order):
        video, start, end, _ = preds[i]
        segs = gt.get(video)
        if segs is None or len(segs) == 0:
            continue                                        # FP at every threshold
        ious = tiou((start, end), segs)
        visit = np.argsort(-ious, kind="stable")
        for k, t in enumerate(thresholds):
            for j in visit:
                if ious[j] < t:
                    break
                if locked[video][k, j]:
                    continue
                locked[video][k, j] = True
                tp[k, rank] = 1
                break
    cum_tp = np.cumsum(tp, axis=1)
    cum_fp = np.cumsum(1 - tp, axis=1)
    precision = cum_tp / (cum_tp + cum_fp)
    recall = cum_tp / npos
    return np.array([interpolated_ap(precision[k], recall[k]) for k in range(len(thresholds))])


@dataclass(frozen=True)
class MapResult:
    thresholds: tuple[float, ...]
    ap: dict[str, np.ndarray]          # class -> AP per threshold

    @property
    def map(self) -> np.ndarray:
        return np.mean(np.stack(list(self.ap.values())), axis=0)

    @property
    def average_map(self) -> float:
        return float(self.map.mean())

    def summary(self, prefix: str = "map") -> dict[str, float]:
        out = {f"{prefix}@{t:.2f}": float(m) for t, m in zip(self.thresholds, self.map)}
        return out | {f"{prefix.replace('map', 'average_map')}": self.average_map}


def mean_ap(gt: Iterable[Detection], preds: Iterable[Detection], thresholds: Sequence[float],
            classes: Sequence[str] | None = None) -> MapResult:
    """mAP over `classes` (default: the labels in `gt`); a prediction of another label is an error;
    a class with GT and no prediction has AP 0 and still counts."""
    gt, preds = list(gt), list(preds)
    classes = sorted({g.label for g in gt}) if classes is None else list(classes)
    known = set(classes)
    by_class_gt: dict[str, dict[str, list]] = {c: {} for c in classes}
    for g in gt:
        if g.label in known:
            by_class_gt[g.label].setdefault(g.video, []).append((g.start, g.end))
    by_class_pred: dict[str, list] = {c: [] for c in classes}
    for i, p in enumerate(preds):
        if p.label not in known:
            raise DataError(f"prediction {i} (video {p.video}): label {p.label!r} is not a scored class {sorted(known)}")
        by_class_pred[p.label].append((p.video, p.start, p.end, p.score))
    ap = {c: average_precision({v: np.asarray(s, dtype=np.float64) for v, s in by_class_gt[c].items()},
                               by_class_pred[c], thresholds) for c in classes}
    return MapResult(tuple(float(t) for t in thresholds), ap)


def proposal_map(gt: Iterable[Detection], preds: Iterable[Detection], thresholds: Sequence[float]) -> MapResult:
    """Class-agnostic: every label counts as one ("action")."""
    one = lambda d: Detection(d.video, d.start, d.end, d.score, "action")  # noqa: E731
    return mean_ap([one(g) for g in gt], [one(p) for p in preds], thresholds, ["action"])


# -- files ------------------------------------------------------------------------------------------
def read_gt(path: str | Path, subset: str) -> list[Detection]:
    """GT of `subset` from an annotation file ({"database": {video: {"subset", "annotations"}}})."""
    path = Path(path)
    data = json.loads(path.read_text())
    if "database" not in data:
        raise DataError(f"{path}: no key 'database'")
    out = []
    for video, entry in data["database"].items():
        if entry.get("subset") != subset:
            continue
        for k, a in enumerate(entry.get("annotations", [])):
            try:
                out.append(Detection(video, float(a["segment"][0]), float(a["segment"][1]), 1.0, str(a["label"])))
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise DataError(f"{path}: video {video}, annotation {k}: bad segment/label ({e})") from e
    return out


def read_predictions(path: str | Path) -> list[Detection]:
    """ActivityNet results format {"results": {video: [{"label", "score", "segment"}]}}, in file order."""
    path = Path(path)
    data = json.loads(path.read_text())
    if "results" not in data:
        raise DataError(f"{path}: no key 'results'")
    out = []
    for video, items in data["results"].items():
        for k, p in enumerate(items):
            try:
                out.append(Detection(video, float(p["segment"][0]), float(p["segment"][1]), float(p["score"]),
                                     str(p["label"])))
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise DataError(f"{path}: video {video}, prediction {k}: bad segment/score/label ({e})") from e
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gt", required=True)
    p.add_argument("--pred", required=True)
    p.add_argument("--subset", required=True)
    p.add_argument("--dataset", choices=sorted(THRESHOLDS), required=True)
    p.add_argument("--classes", default=None, help="a class list file (one name per line); default: the GT's labels")
    args = p.parse_args(argv)
    try:
        gt = read_gt(args.gt, args.subset)
        classes = None
        if args.classes:
            classes = [line.strip() for line in Path(args.classes).read_text().splitlines() if line.strip()]
            gt = [g for g in gt if g.label in set(classes)]   # the scored videos have GT of these classes
        videos = {g.video for g in gt}
        preds = [d for d in read_predictions(args.pred) if d.video in videos]
        result = mean_ap(gt, preds, THRESHOLDS[args.dataset], classes)
    except (DataError, OSError, json.JSONDecodeError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary() | {"n_classes": len(result.ap)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
