"""Re-exposure forgetting as upstream's ConditionalOnlineForgettingMetric (docs/protocol.md): a
hand-traced 5-batch stream, the stale-value handling, state round trip, binning and Pearson."""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from actlab.families.continual.metrics.forgetting import (ReexposureForgetting, SampleScore, bin_by_log10_gap,
                                                          pearson, pooled_stats, run_summary)

# Actions (verb, noun): A = (0, 0), B = (1, 0), C = (2, 1), D = (3, 2). A and B share noun 0.
ACTIONS = {"A": (0, 0), "B": (1, 0), "C": (2, 1), "D": (3, 2)}


def s(action: str, verb_ok: int, noun_ok: int, verb_loss: float, noun_loss: float) -> SampleScore:
    v, n = ACTIONS[action]
    return SampleScore(v, n, bool(verb_ok), bool(noun_ok), verb_loss, noun_loss)


ANY = (1, 1, 0.1, 0.1)          # a sample whose scores no expected value reads
# Batch size 2: b0 = [A, B], b1 = [A, C], b2 = [C, B], b3 = [D, D], b4 = [A, C] (the last batch).
# Per evaluated batch c >= 1: the current batch's online (pre-update) scores, and the history
# window (every sample before b_c, oldest first) scored after the update on b_c.
# Action correct = verb AND noun correct; action loss = verb CE + noun CE.
STREAM = {
    1: ([s("A", 1, 1, 0.5, 0.5), s("C", 0, 1, 2.0, 1.0)],                    # A: ok, 1.0 | C: 3.0
        [s("A", 0, 1, 1.5, 0.5), s("B", 1, 1, 0.2, 0.3)]),                   # A: wrong, 2.0
    2: ([s("C", 1, 1, 0.4, 0.6), s("B", 0, 0, 1.0, 1.0)],                    # C: ok, 1.0 | B: wrong, 2.0
        [s("A", *ANY), s("B", *ANY), s("A", *ANY), s("C", 0, 0, 2.5, 1.5)]),  # C: wrong, 4.0
    3: ([s("D", 1, 0, 1.0, 1.0), s("D", 1, 0, 1.0, 1.0)],
        [s("A", 0, 0, 2.0, 1.0), s("B", 1, 1, 0.1, 0.1), s("A", 1, 0, 0.5, 1.5), s("C", 1, 1, 0.3, 0.2),
         s("C", 0, 1, 1.0, 0.5), s("B", 1, 1, 0.1, 0.1)]),
    4: ([s("A", 1, 1, 0.2, 0.2), s("C", 1, 1, 0.2, 0.2)],
        [s(a, *ANY) for a in "ABACCBDD"]),
}


def run(tracker: ReexposureForgetting, steps=(1, 2, 3, 4)) -> ReexposureForgetting:
    for c in steps:
        batch, history = STREAM[c]
        tracker.update(c, batch, history, last=c == 4)
    return tracker


def entries(tracker, task, metric):
    return [(e["step"], e["label"], e["prev_step"], e["gap"], e["delta"])
            for e in tracker.entries() if e["task"] == task and e["metric"] == metric]


NAN = math.nan
# eval_batch_size = 4: the history is forwarded in chunks of 4 (step 3: [b0, b1], [b2]); the
# current batch is a chunk of its own. Values: acc in percent; loss = sum over chunks of
# (samples of the label in the chunk) x (their summed CE), / samples of the label (upstream's
# AverageMeter fed the chunk's summed CE with the chunk's count as weight).
#
# Action task, step by step (next batch = the batch after b_c; on the last batch the final sample):
#  step 1: current {A, C}, next b2 {C, B}. C in both -> zero entry (gap 0). A: after value
#          acc (100 [b1 online] + 0 [b0]) / 2 = 50; loss (1 x 1.0 + 1 x 2.0) / 2 = 1.5.
#          B (next): found in b0, but has no after value (batch 0 is never evaluated) -> no entry.
#  step 2: current {C, B}, next b3 {D}. C after: acc (100 + 0) / 2 = 50, loss (1.0 + 4.0) / 2 = 2.5.
#          B after set. D is nowhere in the history -> nothing.
#  step 3: current {D}, next b4 {A, C}. Before values on the history:
#          A in chunk [b0, b1] twice: acc 0 / 2 = 0; loss 2 x (3.0 + 2.0) / 2 = 5.0
#            -> acc delta = after - before = 50 - 0 = +50; loss delta = before - after = 5.0 - 1.5 = +3.5
#          C once in each chunk: acc (100 + 0) / 2 = 50; loss (1 x 0.5 + 1 x 1.5) / 2 = 1.0
#            -> acc delta 50 - 50 = 0; loss delta 1.0 - 2.5 = -1.5
#  step 4: last batch {A, C}; "next" = the final sample C -> C in both -> zero entry.
ACTION_ACC = [(1, "2-1", 1, 0, 0.0), (3, "0-0", 1, 2, 50.0), (3, "2-1", 2, 1, 0.0), (4, "2-1", 4, 0, 0.0)]
ACTION_LOSS = [(1, "2-1", 1, 0, 0.0), (3, "0-0", 1, 2, 3.5), (3, "2-1", 2, 1, -1.5), (4, "2-1", 4, 0, 0.0)]
# Noun task (A, B -> 0; C -> 1; D -> 2):
#  step 1: current {0, 1}, next {1, 0}: both in both -> zero entries for 0 and 1.
#  step 2: current {1, 0}, next {2}. After values:
#          noun 0: b2 online B (wrong, CE 1.0); history chunk A, B, A (all right, CE .1 each):
#                  acc (0 + 300) / 4 = 75; loss (1 x 1.0 + 3 x 0.3) / 4 = 0.475
#          noun 1: b2 online C (right, .6); history C (wrong, 1.5): acc 50; loss (0.6 + 1.5) / 2 = 1.05
#  step 3: next {0, 1}. Before values:
#          noun 0: chunk 1 A (wrong, 1.0), B (right, .1), A (wrong, 1.5) -> 3 x 2.6 = 7.8;
#                  chunk 2 B (right, .1) -> 1 x .1; acc (100 + 100) / 4 = 50; loss 7.9 / 4 = 1.975
#                  -> acc delta 75 - 50 = +25; loss delta 1.975 - 0.475 = +1.5
#          noun 1: C (right, .2), C (right, .5), one per chunk: acc 100; loss 0.35
#                  -> acc delta 50 - 100 = -50; loss delta 0.35 - 1.05 = -0.7
#  step 4: current {0, 1}, final sample noun 1 -> zero entry for 1.
NOUN_ACC = [(1, "0", 1, 0, 0.0), (1, "1", 1, 0, 0.0), (3, "0", 2, 1, 25.0), (3, "1", 2, 1, -50.0),
            (4, "1", 4, 0, 0.0)]
NOUN_LOSS = [(1, "0", 1, 0, 0.0), (1, "1", 1, 0, 0.0), (3, "0", 2, 1, 1.5), (3, "1", 2, 1, -0.7),
             (4, "1", 4, 0, 0.0)]
# Verb task (A 0, B 1, C 2, D 3):
#  step 1: current {0, 2}, next {2, 1}: 2 zero; 0 after: acc (100 + 0) / 2 = 50, loss (0.5 + 1.5) / 2 = 1.0;
#          1 (next): no after value -> nothing.
#  step 3: verb 0 before: chunk 1 has A twice (wrong .. 2.0, right .. 0.5): acc 100 / 2 = 50;
#          loss 2 x 2.5 / 2 = 2.5 -> acc delta 0, loss delta +1.5. verb 2 (after at step 2:
#          acc (100 + 0) / 2 = 50, loss (0.4 + 2.5) / 2 = 1.45; before: right .3, wrong 1.0 ->
#          acc 50, loss 0.65) -> acc 0, loss 0.65 - 1.45 = -0.8.
#  step 4: verb 2 zero.
VERB_ACC = [(1, "2", 1, 0, 0.0), (3, "0", 1, 2, 0.0), (3, "2", 2, 1, 0.0), (4, "2", 4, 0, 0.0)]
VERB_LOSS = [(1, "2", 1, 0, 0.0), (3, "0", 1, 2, 1.5), (3, "2", 2, 1, -0.8), (4, "2", 4, 0, 0.0)]


def approx_entries(expected):
    return [(step, label, prev, gap, pytest.approx(delta)) for step, label, prev, gap, delta in expected]


@pytest.mark.parametrize("task, metric, expected", [
    ("action", "acc", ACTION_ACC), ("action", "loss", ACTION_LOSS), ("noun", "acc", NOUN_ACC),
    ("noun", "loss", NOUN_LOSS), ("verb", "acc", VERB_ACC), ("verb", "loss", VERB_LOSS)])
def test_five_batch_golden_entries(task, metric, expected):
    t = run(ReexposureForgetting(eval_batch_size=4))
    assert entries(t, task, metric) == approx_entries(expected)


def test_golden_after_and_before_values_and_counts():
    t = run(ReexposureForgetting(eval_batch_size=4))
    row = next(e for e in t.entries() if (e["task"], e["metric"], e["label"]) == ("action", "loss", "0-0"))
    assert (row["after"], row["before"], row["n_after"], row["n_before"]) == (pytest.approx(1.5), pytest.approx(5.0), 2, 2)
    zero = next(e for e in t.entries() if (e["task"], e["metric"], e["step"]) == ("action", "acc", 4))
    assert math.isnan(zero["after"]) and math.isnan(zero["before"]) and zero["n_after"] == zero["n_before"] == 0


def test_mean_loss_reduction_is_chunk_independent():
    """loss_reduction=mean: A's before value at step 3 is (3.0 + 2.0) / 2 = 2.5, delta 2.5 - 1.5 = 1.0."""
    t = run(ReexposureForgetting(eval_batch_size=4, loss_reduction="mean"))
    assert entries(t, "action", "loss")[1] == (3, "0-0", 1, 2, pytest.approx(1.0))
    # chunks of 1 make upstream's chunk sums per-sample means as well
    assert entries(run(ReexposureForgetting(eval_batch_size=1)), "action", "loss")[1][4] == pytest.approx(1.0)


def test_stale_after_value_is_replaced_by_the_latest_exposure():
    """A's step-1 after value is never consumed (A is absent from the history at step 2, the
    evaluation before its next exposure); at its next exposure (step 3) it is dropped, not
    accumulated as upstream's meter would (upstream then stops on its equal-count assertion)."""
    t = ReexposureForgetting()
    t.update(1, [s("A", 1, 1, 0.1, 0.1)], [s("B", *ANY)])                    # A after: acc 100
    t.update(2, [s("C", *ANY)], [s("B", *ANY)])                              # A evicted from the window
    t.update(3, [s("A", 0, 0, 1.0, 1.0)], [s("C", *ANY)])                    # A after: acc 0, loss 2.0
    t.update(4, [s("B", *ANY)], [s("A", 1, 1, 0.5, 0.5)])                    # next = b5 {A}: before acc 100, loss 1.0
    t.update(5, [s("A", *ANY)], [s("B", *ANY)], last=True)
    # A's entry at step 4: prev_step 3; acc delta = after - before = 0 - 100; loss = 1.0 - 2.0
    assert entries(t, "action", "acc") == [(4, "0-0", 3, 1, -100.0), (5, "0-0", 5, 0, 0.0)]
    assert entries(t, "action", "loss") == [(4, "0-0", 3, 1, pytest.approx(-1.0)), (5, "0-0", 5, 0, 0.0)]
    assert t.n_stale["action"] == 1


def test_state_round_trip_mid_stream_gives_the_same_entries():
    whole = run(ReexposureForgetting(eval_batch_size=4))
    first = run(ReexposureForgetting(eval_batch_size=4), steps=(1, 2))       # step 2 still pending
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = ReexposureForgetting(eval_batch_size=4)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    # compared as frames: the zero entries' NaN after/before values are equal there
    assert pd.DataFrame(run(resumed, steps=(3, 4)).entries()).equals(pd.DataFrame(whole.entries()))
    with pytest.raises(ValueError, match="eval_batch_size"):
        ReexposureForgetting(eval_batch_size=8).load_state_dict(first.state_dict())


def test_bad_updates_and_options():
    with pytest.raises(ValueError, match="batch 0"):
        ReexposureForgetting().update(0, [s("A", *ANY)], [])
    t = run(ReexposureForgetting(), steps=(1,))
    with pytest.raises(ValueError, match="past_eval_every"):
        t.update(3, *STREAM[3])
    with pytest.raises(ValueError, match="forgetting.loss_reduction"):
        ReexposureForgetting(loss_reduction="median")
    with pytest.raises(ValueError, match="forgetting.window"):
        ReexposureForgetting(window=0)
    with pytest.raises(ValueError, match="forgetting.eval_batch_size"):
        ReexposureForgetting(eval_batch_size=0)
    assert ReexposureForgetting(window="full").window is None


def test_bins_ten_equal_width_over_log10_gap_without_zero_gaps():
    gaps = [0, 0, 1, 2, 3, 10, 100, 1000]
    deltas = [9.0, 9.0, 0.4, 1.0, 2.0, -1.0, 3.0, 5.0]      # the zero-gap deltas must not show
    out = bin_by_log10_gap(pd.DataFrame({"gap": gaps, "delta": deltas}))
    # log10 of the non-zero gaps: 0, .301, .477, 1, 2, 3 -> range [0, 3], width .3:
    # edges 0, .3, .6, .9, 1.2, 1.5, 1.8, 2.1, 2.4, 2.7, 3 (the last bin is closed on the right)
    # 0 -> bin 0; .301, .477 -> bin 1; 1 -> bin 3; 2 -> bin 6; 3 -> bin 9
    assert out["bin"].tolist() == list(range(10))
    assert out["bin_lo"].tolist() == pytest.approx([0.3 * k for k in range(10)])
    assert out["bin_hi"].tolist() == pytest.approx([0.3 * (k + 1) for k in range(10)])
    assert out["n"].tolist() == [1, 2, 0, 1, 0, 0, 1, 0, 0, 1]
    # bin 1: mean (1 + 2) / 2 = 1.5; sd = sqrt((.25 + .25) / 1) = .7071; se = .7071 / sqrt(2) = .5
    assert out["mean"].tolist() == pytest.approx([0.4, 1.5, NAN, -1.0, NAN, NAN, 3.0, NAN, NAN, 5.0], nan_ok=True)
    assert out["se"][1] == pytest.approx(0.5)
    assert out["se"].drop(index=1).isna().all()             # n <= 1: no SE
    assert bin_by_log10_gap(pd.DataFrame({"gap": [0], "delta": [1.0]})).empty


@pytest.mark.filterwarnings("ignore:One or more sample")   # scipy's sem of a 1-sample bin
def test_bins_match_scipy_binned_statistic():
    rng = np.random.default_rng(0)
    gaps, deltas = rng.integers(0, 900, 200), rng.normal(size=200)
    out = bin_by_log10_gap(pd.DataFrame({"gap": gaps, "delta": deltas}))
    keep = gaps > 0
    x, y = np.log10(gaps[keep]), deltas[keep]
    for stat, col in (("mean", "mean"), ("count", "n"), (scipy.stats.sem, "se")):
        ref, edges, _ = scipy.stats.binned_statistic(x, y, statistic=stat, bins=10)
        assert out[col].to_numpy(dtype=float) == pytest.approx(ref, nan_ok=True)
    assert out["bin_hi"].to_numpy() == pytest.approx(edges[1:])
    # one distinct gap: scipy widens the range by 0.5 on each side
    one = bin_by_log10_gap(pd.DataFrame({"gap": [10, 10], "delta": [1.0, 2.0]}))
    assert one["bin_lo"][0] == pytest.approx(0.5) and one["n"].tolist() == [0] * 5 + [2] + [0] * 4


def test_pearson_uses_the_raw_gap_including_zero_gaps():
    ev = lambda gaps, deltas: pd.DataFrame({"gap": gaps, "delta": deltas})
    # x = 0..3, dx = -1.5, -.5, .5, 1.5; y = 0, 1, 0, 1, dy = -.5, .5, -.5, .5
    # sum dx dy = .75 - .25 - .25 + .75 = 1; sum dx^2 = 5; sum dy^2 = 1 -> r = 1 / sqrt(5)
    assert pearson(ev([0, 1, 2, 3], [0, 1, 0, 1])) == pytest.approx(1 / math.sqrt(5))
    rng = np.random.default_rng(1)
    gaps, deltas = rng.integers(0, 500, 50), rng.normal(size=50)
    assert pearson(ev(gaps, deltas)) == pytest.approx(scipy.stats.pearsonr(gaps, deltas)[0])
    assert math.isnan(pearson(ev([3], [1.0])))
    assert math.isnan(pearson(ev([3, 5], [1.0, 1.0])))


def test_pooled_stats_and_run_summary():
    frame = pd.DataFrame({"metric": "loss", "task": "action", "label": "x", "gap": [0, 1, 3],
                          "delta": [0.0, 1.0, 2.0]})
    # with zero-gap entries: mean (0 + 1 + 2) / 3 = 1, sd 1, se 1 / sqrt(3); without: mean 1.5, se .5
    # pearson: dx = -4/3, -1/3, 5/3, dy = -1, 0, 1 -> sum dx dy = 3, sum dx^2 = 42/9, sum dy^2 = 2
    r = 3 / math.sqrt(42 / 9 * 2)
    assert pooled_stats(frame) == {"mean": pytest.approx(1.0), "se": pytest.approx(1 / math.sqrt(3)),
                                   "pearson": pytest.approx(r), "n": 3.0, "mean_nonzero_gap": pytest.approx(1.5),
                                   "se_nonzero_gap": pytest.approx(0.5), "n_nonzero_gap": 2.0}
    summary = run_summary(run(ReexposureForgetting(eval_batch_size=4)).entries())
    # action loss entries: 0, 3.5, -1.5, 0 -> mean 0.5
    assert summary["forgetting/action/loss_mean"] == pytest.approx(0.5)
    assert summary["forgetting/noun/acc_n"] == 5.0
    assert {f"forgetting/{t}/{m}_{k}" for t in ("action", "verb", "noun") for m in ("acc", "loss")
            for k in ("mean", "pearson", "n")} == set(summary)


def test_no_entries_give_nan_summaries():
    summary = run_summary(pd.DataFrame())
    assert summary["forgetting/action/loss_n"] == 0.0 and math.isnan(summary["forgetting/action/loss_mean"])
