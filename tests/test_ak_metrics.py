"""Animal Kingdom mAP: golden cases, scikit-learn agreement with ties, the drop rule, segment
means, the sigmoid-saturation trap, and the --npz command."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from actlab.families.ak.metrics import average_precision, mean_average_precision, random_map


def ap1(labels, scores) -> float:
    return float(average_precision(np.array(labels)[:, None], np.array(scores)[:, None])[0])


def test_golden_cases():
    assert ap1([1, 0, 1, 0], [.9, .8, .7, .6]) == pytest.approx(5 / 6, abs=1e-15)
    # the tie at .8 is one threshold: (1/2) * (1/3) ... precision 1/3 at recall 1 -> 5/12
    assert ap1([0, 1, 0, 1], [.9, .8, .8, .1]) == pytest.approx(5 / 12, abs=1e-15)
    # all scores equal -> one threshold -> the prevalence
    assert ap1([1, 0, 0, 1, 0], [.3] * 5) == pytest.approx(2 / 5, abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_random_cases_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((300, 20)) < 0.1).astype(np.uint8)
    y[0, :] = 1                                   # every class has a positive
    s = rng.integers(0, 7, size=y.shape) / 7.0    # heavy ties
    ours = average_precision(y, s)
    ref = [average_precision_score(y[:, c], s[:, c]) for c in range(y.shape[1])]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_drop_rule_and_segment_means_on_four_classes():
    y = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0]])
    s = np.array([[.9, .1, .2, .3], [.8, .9, .1, .2], [.7, .2, .9, .1], [.6, .3, .3, .4]])
    segments = np.array(["head", "middle", "tail", "tail"])    # class 3 (tail) has no positive
    result = mean_average_precision(y, s, segments)
    ap = [ap1(y[:, c], s[:, c]) for c in range(3)]           # 1, 1, 1 ... computed below by hand
    assert ap == pytest.approx([(1 / 1 + 2 / 3) / 2, 1.0, 1.0])
    assert np.isnan(result.per_class[3])
    m = result.metrics
    assert m["n_eval"] == 3
    assert m["map"] == pytest.approx(np.mean(ap))            # class 3 dropped, not scored 0
    assert m["map_keep_zero"] == pytest.approx(sum(ap) / 4)
    assert m["map/head"] == pytest.approx(ap[0])
    assert m["map/middle"] == pytest.approx(ap[1])
    assert m["map/tail"] == pytest.approx(ap[2])              # the tail mean over its evaluable class


def test_sigmoid_saturation_trap():
    """float32 sigmoid maps logits 20 and 18 to 1.0: a tie that changes AP; logits keep the order."""
    y = np.array([[0], [1]])
    z = np.array([[20.0], [18.0]], dtype=np.float32)
    p32 = (1 / (1 + np.exp(-z))).astype(np.float32)
    assert p32[0, 0] == p32[1, 0] == 1.0
    assert average_precision(y, z)[0] == pytest.approx(0.5)
    assert average_precision(y, p32)[0] == pytest.approx(0.5)    # tied: the prevalence, by chance equal
    y = np.array([[1], [0], [1]])
    z = np.array([[20.0], [18.0], [-3.0]], dtype=np.float32)
    p32 = (1 / (1 + np.exp(-z))).astype(np.float32)
    assert average_precision(y, z)[0] == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(y, p32)[0] == pytest.approx((1 / 2 + 2 / 3) / 2)   # the tie costs AP


def test_random_scores_are_near_prevalence():
    rng = np.random.default_rng(0)
    y = (rng.random((2000, 5)) < np.array([.5, .2, .1, .05, .02])).astype(np.uint8)
    m = random_map(y, draws=5)
    assert m["map"] == pytest.approx(y.mean(0).mean(), abs=0.02)


def test_metrics_command_prints_the_same_metrics(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random((50, 6)) < .3).astype(np.uint8)
    s = rng.normal(size=y.shape).astype(np.float32)
    seg = np.array(["head", "middle", "tail", "tail", "tail", "tail"], dtype="U6")
    np.savez(tmp_path / "t.npz", video_id=np.array([f"v{i}" for i in range(50)]), labels=y, scores=s, segment=seg)
    out = subprocess.run([sys.executable, "-m", "actlab.families.ak.metrics", "--npz", str(tmp_path / "t.npz")],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == pytest.approx(mean_average_precision(y, s, seg).metrics)
