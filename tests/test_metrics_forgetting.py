"""Re-exposure forgetting: a hand-traced 5-step scenario, state round trip, gap binning, Pearson."""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from actlab.families.continual.metrics import ReexposureTracker, bin_by_log10_gap, pearson

# (step, batch labels, window labels oldest first, window correctness). Tracker window = 2, so a
# label's accuracy uses only its 2 most recent samples in the evaluated window.
SCENARIO = [
    (1, ["A", "A"], ["A", "A"], [1, 0]),
    (2, ["B", "A"], ["A", "A", "B", "A"], [1, 1, 0, 1]),
    (3, ["C", "C"], ["A", "A", "B", "A", "C", "C"], [0, 1, 1, 1, 1, 1]),
    (4, ["C", "B"], ["A", "A", "B", "A", "C", "C", "C", "B"], [0, 0, 1, 0, 1, 0, 1, 1]),
    (5, ["A", "D"], ["B", "A", "C", "C", "C", "B", "A", "D"], [1, 0, 1, 1, 0, 1, 1, 1]),
]
# Per-label accuracy after each step (2 newest samples of the label):
#   step 1: A = (0+1)/2 = .5
#   step 2: A = (1+1)/2 = 1 (positions 3, 1), B = 0
#   step 3: A = 1 (pos 3, 1; the 0 at pos 0 is past the cap), B = 1, C = 1
#   step 4: A = 0 (pos 3, 1), B = 1 (pos 7, 2), C = (1+0)/2 = .5 (pos 6, 5; pos 4 past the cap)
#   step 5: A = (1+0)/2 = .5, B, C, D = 1
# Events (a label of the batch that occurred in an earlier batch t):
#   step 2, A: t = 1, after = acc(A)@1 = .5, before = acc(A)@1 = .5 -> delta 0
#   step 4, C: t = 3, after = acc(C)@3 = 1,  before = acc(C)@3 = 1  -> delta 0
#   step 4, B: t = 2, after = acc(B)@2 = 0,  before = acc(B)@3 = 1  -> delta +1
#   step 5, A: t = 2, after = acc(A)@2 = 1,  before = acc(A)@4 = 0  -> delta -1 (forgotten)
EXPECTED = [
    {"label": "A", "step": 2, "gap": 1, "acc_after": 0.5, "acc_before": 0.5, "delta": 0.0},
    {"label": "C", "step": 4, "gap": 1, "acc_after": 1.0, "acc_before": 1.0, "delta": 0.0},
    {"label": "B", "step": 4, "gap": 2, "acc_after": 0.0, "acc_before": 1.0, "delta": 1.0},
    {"label": "A", "step": 5, "gap": 3, "acc_after": 1.0, "acc_before": 0.0, "delta": -1.0},
]


def _run(tracker: ReexposureTracker, steps) -> ReexposureTracker:
    for step, batch, labels, correct in steps:
        tracker.update(step, batch, labels, [bool(c) for c in correct])
    return tracker


def test_five_step_golden_events():
    t = _run(ReexposureTracker(window=2), SCENARIO)
    assert t.events() == EXPECTED
    assert t.n_undefined == 0


def test_window_cap_matters():
    """After step 3 label A has 3 samples in the window (correct 0, 1, 1): the cap of 2 keeps the
    two newest."""
    t = _run(ReexposureTracker(window=64), SCENARIO[:3])
    assert t.state_dict()["prev_acc"]["A"] == pytest.approx(2 / 3)    # (0 + 1 + 1) / 3
    t2 = _run(ReexposureTracker(window=2), SCENARIO[:3])
    assert t2.state_dict()["prev_acc"]["A"] == 1.0


def test_label_out_of_window_gives_no_event():
    t = _run(ReexposureTracker(), [(1, ["A"], ["A"], [1]), (2, ["B"], ["B"], [1]), (3, ["A"], ["A"], [0])])
    assert t.events() == [] and t.n_undefined == 1


def test_state_dict_round_trip():
    first = _run(ReexposureTracker(window=2), SCENARIO[:3])
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = ReexposureTracker(window=2)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert _run(resumed, SCENARIO[3:]).events() == EXPECTED
    with pytest.raises(ValueError, match="window"):
        ReexposureTracker(window=3).load_state_dict(first.state_dict())


def test_bad_updates():
    t = _run(ReexposureTracker(), SCENARIO[:2])
    with pytest.raises(ValueError, match="steps must increase"):
        t.update(2, ["A"], ["A"], [True])
    with pytest.raises(ValueError, match="differ in length"):
        t.update(3, ["A"], ["A", "B"], [True])


def test_bin_by_log10_gap_golden():
    gaps = [1, 2, 3, 4, 10, 31, 32, 100, 1000]
    deltas = [0.0, -0.5, -1.0, 0.25, -0.2, -0.6, 1.0, -1.0, 0.5]
    out = bin_by_log10_gap(pd.DataFrame({"gap": gaps, "delta": deltas}))
    # log10: 1->0, 2->.301, 3->.477 | 4->.602 | 10->1.0, 31->1.491 | 32->1.505 | 100->2 | 1000->3
    assert out["bin_lo"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    assert out["bin_hi"].tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.5]
    assert out["n"].tolist() == [3, 1, 2, 1, 1, 1]
    # bin [0, .5): mean (0 - .5 - 1)/3 = -.5; sd = sqrt((.25 + 0 + .25)/2) = .5; se = .5/sqrt(3)
    # bin [1, 1.5): mean (-.2 - .6)/2 = -.4; sd = sqrt((.04 + .04)/1) = .2828; se = .2828/sqrt(2) = .2
    assert out["mean"].tolist() == pytest.approx([-0.5, 0.25, -0.4, 1.0, -1.0, 0.5])
    assert out["se"][0] == pytest.approx(0.5 / math.sqrt(3))
    assert out["se"][2] == pytest.approx(0.2)
    assert out[["se"]].iloc[[1, 3, 4, 5]].isna().all().all()          # n = 1: no SE
    wide = bin_by_log10_gap(pd.DataFrame({"gap": gaps, "delta": deltas}), width=1.0)
    assert wide["n"].tolist() == [4, 3, 1, 1]
    assert bin_by_log10_gap(pd.DataFrame(columns=["gap", "delta"])).empty
    with pytest.raises(ValueError, match="gap"):
        bin_by_log10_gap(pd.DataFrame({"gap": [0], "delta": [0.0]}))


def test_tracker_events_feed_the_binning():
    out = bin_by_log10_gap(_run(ReexposureTracker(window=2), SCENARIO).events())
    # gaps 1, 1, 2, 3 all fall in [0, .5): deltas 0, 0, 1, -1
    assert out["n"].tolist() == [4] and out["mean"].tolist() == [0.0]


def test_pearson_golden_and_scipy():
    ev = lambda gaps, deltas: pd.DataFrame({"gap": gaps, "delta": deltas})
    assert pearson(ev([1, 10, 100], [0, -0.5, -1])) == pytest.approx(-1.0)
    # x = 0,1,2; y - mean = 1/3, -2/3, 1/3 -> covariance -1/3 + 0 + 1/3 = 0
    assert pearson(ev([1, 10, 100], [0, -1, 0])) == pytest.approx(0.0, abs=1e-12)
    # x = 0..3, dx = -1.5,-.5,.5,1.5; y = 0,-1,-1,-3, dy = 1.25,.25,.25,-1.75
    # sum dx dy = -4.5, sum dx^2 = 5, sum dy^2 = 4.75 -> r = -4.5 / sqrt(23.75)
    assert pearson(ev([1, 10, 100, 1000], [0, -1, -1, -3])) == pytest.approx(-4.5 / math.sqrt(23.75))
    rng = np.random.default_rng(0)
    gaps, deltas = rng.integers(1, 500, 50), rng.normal(size=50)
    assert pearson(ev(gaps, deltas)) == pytest.approx(scipy.stats.pearsonr(np.log10(gaps), deltas)[0])
    assert math.isnan(pearson(ev([3], [1.0])))
    assert math.isnan(pearson(ev([3, 5], [1.0, 1.0])))
