"""OnlineMetrics / evaluate.score: hand-computed golden values, sklearn and torchmetrics agreement,
and a state round trip through torch.save that resumes to identical numbers."""
from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from torchmetrics.classification import MulticlassAccuracy, MulticlassRecall

from actlab.families.continual.metrics import OnlineMetrics, score


def ranked(*orders: list[int]) -> torch.Tensor:
    """Logits from rankings: the class listed first gets score C-1, the last gets 0."""
    rows = []
    for order in orders:
        row = torch.empty(len(order))
        for pos, c in enumerate(order):
            row[c] = len(order) - 1 - pos
        rows.append(row)
    return torch.stack(rows)


# Golden case: 6 verbs (top-5 is a real cut), 3 nouns (top-k uses k = min(5, 3) = 3: always a hit).
VERB_Y = torch.tensor([0, 0, 1, 1, 2, 0])
NOUN_Y = torch.tensor([0, 1, 1, 1, 0, 0])
VERB_LOGITS = ranked([0, 1, 2, 3, 4, 5],   # s1 target 0 rank 1: correct
                     [0, 1, 2, 3, 4, 5],   # s2 target 0 rank 1: correct
                     [2, 1, 0, 3, 4, 5],   # s3 target 1 rank 2: wrong, in top-5
                     [1, 0, 2, 3, 4, 5],   # s4 target 1 rank 1: correct
                     [1, 0, 3, 4, 5, 2],   # s5 target 2 rank 6: wrong, NOT in top-5
                     [3, 0, 1, 2, 4, 5])   # s6 target 0 rank 2: wrong (predicts 3, never a target)
NOUN_LOGITS = ranked([0, 1, 2],   # s1 target 0 rank 1: correct
                     [2, 1, 0],   # s2 target 1 rank 2: wrong
                     [1, 0, 2],   # s3 target 1 rank 1: correct
                     [1, 0, 2],   # s4 target 1 rank 1: correct
                     [0, 1, 2],   # s5 target 0 rank 1: correct
                     [2, 1, 0])   # s6 target 0 rank 3: wrong
LSE6 = math.log(sum(math.exp(k) for k in range(6)))   # logsumexp of verb scores 5..0
LSE3 = math.log(sum(math.exp(k) for k in range(3)))   # logsumexp of noun scores 2..0

GOLDEN = {
    # verb correct: s1 s2 s4 -> 3/6; top-5 misses only s5 -> 5/6
    "verb/top1": 3 / 6, "verb/top5": 5 / 6,
    # per verb class: 0 -> s1,s2,s6 = 2/3; 1 -> s3,s4 = 1/2; 2 -> s5 = 0/1; mean = (2/3+1/2+0)/3 = 7/18
    "verb/balanced_top1": 7 / 18,
    # CE = LSE6 - score(target); target scores 5,5,4,5,0,4 (sum 23)
    "verb/loss": LSE6 - 23 / 6,
    # noun correct: s1 s3 s4 s5 -> 4/6; k = 3 = all classes -> 6/6
    "noun/top1": 4 / 6, "noun/top5": 1.0,
    # per noun class: 0 -> s1,s5,s6 = 2/3; 1 -> s2,s3,s4 = 2/3; mean 2/3
    "noun/balanced_top1": 2 / 3,
    # target scores 2,1,2,2,2,0 (sum 9)
    "noun/loss": LSE3 - 9 / 6,
    # action correct iff both: s1 and s4 -> 2/6; top-5 = verb top-5 and noun top-5 -> all but s5 = 5/6
    "action/top1": 2 / 6, "action/top5": 5 / 6,
    # per action: 0-0 -> s1,s6 = 1/2; 0-1 -> s2 = 0; 1-1 -> s3,s4 = 1/2; 2-0 -> s5 = 0; mean 1/4
    "action/balanced_top1": 1 / 4,
    "action/loss": (LSE6 - 23 / 6) + (LSE3 - 9 / 6),
    "verb/n_samples": 6, "noun/n_samples": 6, "action/n_samples": 6,
}


def test_golden_six_samples():
    m = OnlineMetrics(6, 3)
    cols = m.update(VERB_LOGITS, NOUN_LOGITS, VERB_Y, NOUN_Y)
    out = m.compute()
    assert set(out) == {f"online/{k}" for k in GOLDEN}
    for key, expected in GOLDEN.items():
        assert out[f"online/{key}"] == pytest.approx(expected, abs=1e-12), key
    assert cols["pred_verb"] == [0, 0, 2, 1, 1, 3]
    assert cols["pred_noun"] == [0, 2, 1, 1, 0, 2]
    assert cols["correct_verb"] == [True, True, False, True, False, False]
    assert cols["correct_noun"] == [True, False, True, True, True, False]
    assert cols["correct_action"] == [True, False, False, True, False, False]
    assert cols["top5_verb"] == [True, True, True, True, False, True]
    assert cols["top5_noun"] == [True] * 6
    assert cols["top5_action"] == [True, True, True, True, False, True]
    assert cols["loss_verb"] == pytest.approx([LSE6 - s for s in (5, 5, 4, 5, 0, 4)])
    assert cols["loss_noun"] == pytest.approx([LSE3 - s for s in (2, 1, 2, 2, 2, 0)])
    assert cols["loss_action"] == pytest.approx([a + b for a, b in zip(cols["loss_verb"], cols["loss_noun"])])


def test_balanced_is_over_seen_classes_not_torchmetrics_macro():
    """torchmetrics' macro accuracy also averages over predicted-only classes (verb 3 here)."""
    m = OnlineMetrics(6, 3)
    m.update(VERB_LOGITS, NOUN_LOGITS, VERB_Y, NOUN_Y)
    ours = m.compute()["online/verb/balanced_top1"]
    pred = VERB_LOGITS.argmax(1)
    tm_macro = float(MulticlassAccuracy(num_classes=6, average="macro")(pred, VERB_Y))
    assert tm_macro == pytest.approx((2 / 3 + 1 / 2 + 0 + 0) / 4)      # 7/24: class 3 counted
    assert ours == pytest.approx(7 / 18) and ours != pytest.approx(tm_macro)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # sklearn warns that y_pred has a class not in y_true
        assert ours == pytest.approx(balanced_accuracy_score(VERB_Y.numpy(), pred.numpy()))


@pytest.mark.parametrize("seed", range(5))
def test_random_streams_match_sklearn_and_torchmetrics(seed):
    g = torch.Generator().manual_seed(seed)
    V, N, n = 7, 11, 203
    vl, nl = torch.randn(n, V, generator=g), torch.randn(n, N, generator=g)
    # skewed labels, so some classes are unseen and per-class counts differ
    vy = torch.randint(0, V, (n,), generator=g) % 5
    ny = torch.randint(0, N, (n,), generator=g) // 2
    m = OnlineMetrics(V, N)
    for i in range(0, n, 4):      # batches of 4, the last one partial
        m.update(vl[i:i + 4], nl[i:i + 4], vy[i:i + 4], ny[i:i + 4])
    out = m.compute()
    pv, pn = vl.argmax(1), nl.argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task, y, p, logits, C in (("verb", vy, pv, vl, V), ("noun", ny, pn, nl, N)):
            assert out[f"online/{task}/top1"] == pytest.approx(accuracy_score(y, p))
            assert out[f"online/{task}/balanced_top1"] == pytest.approx(balanced_accuracy_score(y, p))
            top5 = MulticlassAccuracy(num_classes=C, top_k=5, average="micro")(logits, y)
            assert out[f"online/{task}/top5"] == pytest.approx(float(top5))
            recall = MulticlassRecall(num_classes=C, average=None)(p, y)
            present = torch.bincount(y, minlength=C) > 0
            assert out[f"online/{task}/balanced_top1"] == pytest.approx(float(recall[present].mean()))
            ce = torch.nn.functional.cross_entropy(logits.double(), y)
            assert out[f"online/{task}/loss"] == pytest.approx(float(ce))
        ya = [f"{a}-{b}" for a, b in zip(vy.tolist(), ny.tolist())]
        pa = [f"{a}-{b}" for a, b in zip(pv.tolist(), pn.tolist())]
        assert out["online/action/top1"] == pytest.approx(accuracy_score(ya, pa))
        assert out["online/action/balanced_top1"] == pytest.approx(balanced_accuracy_score(ya, pa))
    in5 = lambda lg, y: (lg.topk(5, 1).indices == y[:, None]).any(1)
    assert out["online/action/top5"] == pytest.approx(float((in5(vl, vy) & in5(nl, ny)).double().mean()))
    assert out["online/action/n_samples"] == n


def test_state_dict_round_trip_resumes_identically():
    g = torch.Generator().manual_seed(3)
    V, N, n = 5, 9, 40
    vl, nl = torch.randn(n, V, generator=g), torch.randn(n, N, generator=g)
    vy, ny = torch.randint(0, V, (n,), generator=g), torch.randint(0, N, (n,), generator=g)
    full = OnlineMetrics(V, N)
    for i in range(0, n, 4):
        full.update(vl[i:i + 4], nl[i:i + 4], vy[i:i + 4], ny[i:i + 4])
    first = OnlineMetrics(V, N)
    for i in range(0, 20, 4):
        first.update(vl[i:i + 4], nl[i:i + 4], vy[i:i + 4], ny[i:i + 4])
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = OnlineMetrics(V, N)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.compute() == first.compute()
    for i in range(20, n, 4):
        resumed.update(vl[i:i + 4], nl[i:i + 4], vy[i:i + 4], ny[i:i + 4])
    assert resumed.compute() == full.compute()          # exact, not approx
    with pytest.raises(ValueError, match="verbs"):
        OnlineMetrics(V + 1, N).load_state_dict(full.state_dict())


def test_empty_and_bad_input():
    out = OnlineMetrics(3, 4, prefix="x").compute()
    assert out["x/verb/n_samples"] == 0 and math.isnan(out["x/action/top1"])
    m = OnlineMetrics(3, 4)
    with pytest.raises(ValueError, match=r"verb labels out of range .*\[3\]"):
        m.update(torch.zeros(1, 3), torch.zeros(1, 4), torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(ValueError, match="noun logits"):
        m.update(torch.zeros(1, 3), torch.zeros(1, 5), torch.tensor([0]), torch.tensor([0]))
    assert m.compute()["online/verb/n_samples"] == 0      # a rejected batch leaves no trace


def test_score_is_the_online_metric_over_the_whole_stream():
    g = torch.Generator().manual_seed(1)
    vl, nl = torch.randn(30, 6, generator=g), torch.randn(30, 8, generator=g)
    vy, ny = torch.randint(0, 6, (30,), generator=g), torch.randint(0, 8, (30,), generator=g)
    online = OnlineMetrics(6, 8)
    for i in range(0, 30, 4):
        online.update(vl[i:i + 4], nl[i:i + 4], vy[i:i + 4], ny[i:i + 4])
    whole = score(vl, nl, vy, ny, prefix="hindsight")
    assert set(whole) == {k.replace("online/", "hindsight/") for k in online.compute()}
    for k, v in online.compute().items():
        assert whole[k.replace("online/", "hindsight/")] == pytest.approx(v)
    golden = score(VERB_LOGITS, NOUN_LOGITS, VERB_Y, NOUN_Y, prefix="transfer")
    assert golden["transfer/action/balanced_top1"] == pytest.approx(1 / 4)
    assert np.isclose(golden["transfer/noun/loss"], LSE3 - 1.5)


# -- the one balanced-accuracy definition (metrics/balanced.py) ------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_balanced_accuracy_and_running_balanced_match_sklearn(seed):
    from actlab.families.continual.metrics import balanced_accuracy, running_balanced

    rng = np.random.default_rng(seed)
    y = np.array([f"{a}-{b}" for a, b in zip(rng.integers(0, 4, 300), rng.integers(0, 3, 300))])
    pred = np.where(rng.random(300) < 0.4, y, "0-0")
    correct = pred == y
    assert balanced_accuracy(y, correct) == pytest.approx(balanced_accuracy_score(y, pred))
    running = running_balanced(y, correct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # a prefix may predict a class it never saw as a target
        for k in (0, 1, 7, 150, 299):
            assert running[k] == pytest.approx(balanced_accuracy_score(y[:k + 1], pred[:k + 1]))
    assert running[-1] == pytest.approx(balanced_accuracy(y, correct))


def test_running_balanced_spans_blocks_and_matches_the_online_counters():
    """Longer than one block of running_balanced; the streaming counters give the same final value."""
    from actlab.families.continual.metrics import running_balanced

    g = torch.Generator().manual_seed(7)
    n, V, N = 2600, 6, 4
    vl, nl = torch.randn(n, V, generator=g), torch.randn(n, N, generator=g)
    vy, ny = torch.randint(0, V, (n,), generator=g), torch.randint(0, N, (n,), generator=g)
    m = OnlineMetrics(V, N)
    correct = []
    for i in range(0, n, 4):
        correct += m.update(vl[i:i + 4], nl[i:i + 4], vy[i:i + 4], ny[i:i + 4])["correct_verb"]
    running = running_balanced(vy.numpy(), np.array(correct))
    assert running[-1] == pytest.approx(m.compute()["online/verb/balanced_top1"], abs=1e-12)
    half = OnlineMetrics(V, N)
    half.update(vl[:1300], nl[:1300], vy[:1300], ny[:1300])
    assert running[1299] == pytest.approx(half.compute()["online/verb/balanced_top1"], abs=1e-12)


def test_balanced_of_nothing_is_nan():
    from actlab.families.continual.metrics import balanced_accuracy, balanced_top1, running_balanced

    assert math.isnan(balanced_accuracy([], []))
    assert math.isnan(balanced_top1([0, 0], [0, 0]))
    assert running_balanced([], []).shape == (0,)
