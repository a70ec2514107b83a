"""The ActivityNet detection-mAP evaluator: golden cases worked out by hand (issue 13, §5), random
cases against an independent formulation, threshold sets and the command line."""
import json
import subprocess
import sys

import numpy as np
import pytest

from actlab.errors import DataError
from actlab.families.zstal.evaluate import (THRESHOLDS, Detection, average_precision, interpolated_ap, mean_ap,
                                            proposal_map)


def ap(gt, preds, thresholds):
    return average_precision({v: np.asarray(s, dtype=float) for v, s in gt.items()}, preds, thresholds)


def test_threshold_sets():
    assert THRESHOLDS["thumos"] == pytest.approx((0.3, 0.4, 0.5, 0.6, 0.7))
    assert THRESHOLDS["anet"] == pytest.approx(tuple(0.5 + 0.05 * i for i in range(10)))


def test_matched_gt_falls_through_to_the_next():
    # [0,10] (0.9) takes GT [0,10]; [0,10.5] (0.8) falls through to [2,12] at tIoU 8.5/12 = 0.708
    gt = {"v": [[0, 10], [2, 12]]}
    preds = [("v", 0, 10, 0.9), ("v", 0, 10.5, 0.8)]
    a50, a75 = ap(gt, preds, [0.5, 0.75])
    assert a50 == pytest.approx(1.0)
    assert a75 == pytest.approx(0.5)
    assert ap(gt, preds, THRESHOLDS["anet"]).mean() == pytest.approx(0.75)


def test_interpolated_not_step_ap():
    # TP, FP, FP, TP, TP with npos 3: (1 + 0.6 + 0.6) / 3 interpolated; the step AP would be 0.7
    tp = np.array([1, 0, 0, 1, 1.0])
    precision = np.cumsum(tp) / np.arange(1, 6)
    assert interpolated_ap(precision, np.cumsum(tp) / 3) == pytest.approx(0.733333333333)
    gt = {"a": [[0, 1]], "b": [[0, 1]], "c": [[0, 1]]}
    preds = [("a", 0, 1, 0.9), ("x", 0, 1, 0.8), ("y", 0, 1, 0.7), ("b", 0, 1, 0.6), ("c", 0, 1, 0.5)]
    assert ap(gt, preds, [0.5])[0] == pytest.approx(2.2 / 3)


def test_tiou_exactly_at_threshold():
    # [0,10] vs GT [0,5]: tIoU 0.5 is a TP at 0.5 and an FP at 0.55
    assert list(ap({"v": [[0, 5]]}, [("v", 0, 10, 1.0)], [0.5, 0.55])) == [1.0, 0.0]


def test_fp_in_a_video_without_gt():
    gt = {"v": [[0, 1]], "w": [[0, 1]]}
    assert ap(gt, [("u", 0, 1, 0.9), ("v", 0, 1, 0.8)], [0.5])[0] == pytest.approx(0.25)


def test_unpredicted_class_counts_as_zero():
    gt = [Detection("v", 0, 10, 1, "A"), Detection("v", 20, 30, 1, "B")]
    result = mean_ap(gt, [Detection("v", 0, 10, 0.9, "A")], [0.5])
    assert result.ap["B"][0] == 0.0
    assert result.map[0] == pytest.approx(0.5)


def test_unknown_label_is_an_error():
    with pytest.raises(DataError, match="label 'C'"):
        mean_ap([Detection("v", 0, 1, 1, "A")], [Detection("v", 0, 1, 1, "C")], [0.5])


def test_ties_keep_file_order():
    gt = {"v": [[0, 10]]}
    first_tp = ap(gt, [("v", 0, 10, 0.5), ("v", 50, 60, 0.5)], [0.5])[0]
    first_fp = ap(gt, [("v", 50, 60, 0.5), ("v", 0, 10, 0.5)], [0.5])[0]
    assert (first_tp, first_fp) == (pytest.approx(1.0), pytest.approx(0.5))


def reference_ap(gt, preds, t):
    """Independent formulation: greedy matching per threshold with Python lists, and
    AP = (1/npos) * sum over TP ranks of the best precision at that rank or later."""
    npos = sum(len(s) for s in gt.values())
    order = sorted(range(len(preds)), key=lambda i: (-preds[i][3], i))
    used = {v: [False] * len(s) for v, s in gt.items()}
    hits = []
    for i in order:
        v, s, e, _ = preds[i]
        cands = []
        for j, (gs, ge) in enumerate(gt.get(v, [])):
            inter = max(0.0, min(e, ge) - max(s, gs))
            cands.append((inter / ((e - s) + (ge - gs) - inter), j))
        cands.sort(key=lambda c: -c[0])
        hit = False
        for iou, j in cands:
            if iou < t:
                break
            if not used[v][j]:
                used[v][j] = hit = True
                break
        hits.append(hit)
    precisions = [sum(hits[:k + 1]) / (k + 1) for k in range(len(hits))]
    return sum(max(precisions[k:]) for k in range(len(hits)) if hits[k]) / npos


def test_random_cases_match_an_independent_formulation():
    rng = np.random.default_rng(0)
    for case in range(30):
        gt = {}
        for v in range(rng.integers(1, 5)):
            starts = rng.uniform(0, 100, size=rng.integers(1, 6))
            gt[f"v{v}"] = [[float(s), float(s + rng.uniform(1, 20))] for s in starts]
        preds = []
        for _ in range(rng.integers(1, 40)):
            v = f"v{rng.integers(0, 6)}"         # some videos without GT
            s = float(rng.uniform(0, 100))
            preds.append((v, s, s + float(rng.uniform(0.5, 25)), float(np.round(rng.uniform(), 2))))
        thresholds = THRESHOLDS["anet"] if case % 2 else THRESHOLDS["thumos"]
        got = ap(gt, preds, thresholds)
        want = [reference_ap(gt, preds, t) for t in thresholds]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_proposal_map_merges_labels():
    gt = [Detection("v", 0, 10, 1, "A"), Detection("v", 20, 30, 1, "B")]
    preds = [Detection("v", 0, 10, 0.9, "B"), Detection("v", 20, 30, 0.8, "A")]
    assert proposal_map(gt, preds, [0.5]).average_map == pytest.approx(1.0)
    assert mean_ap(gt, preds, [0.5]).average_map == 0.0


def test_command_line(tmp_path):
    gt = {"database": {"v": {"subset": "test", "duration": 40, "annotations": [
        {"segment": [0, 10], "label": "A"}, {"segment": [2, 12], "label": "A"}, {"segment": [20, 30], "label": "B"}]},
        "w": {"subset": "val", "duration": 40, "annotations": [{"segment": [0, 10], "label": "A"}]}}}
    pred = {"version": "x", "external_data": {}, "results": {
        "v": [{"label": "A", "score": 0.9, "segment": [0, 10]}, {"label": "A", "score": 0.8, "segment": [0, 10.5]}],
        "elsewhere": [{"label": "A", "score": 1.0, "segment": [0, 10]}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    (tmp_path / "classes.txt").write_text("A")
    out = subprocess.run([sys.executable, "-m", "actlab.families.zstal.evaluate", "--gt", str(tmp_path / "gt.json"),
                          "--pred", str(tmp_path / "pred.json"), "--subset", "test", "--dataset", "anet",
                          "--classes", str(tmp_path / "classes.txt")], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["map@0.50"] == pytest.approx(1.0) and result["map@0.75"] == pytest.approx(0.5)
    assert result["average_map"] == pytest.approx(0.75) and result["n_classes"] == 1
