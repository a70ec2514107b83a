"""Golden values of the skel family's losses, queue and metrics (issue 14 §4, §5, §9)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from actlab.families.skel import losses
from actlab.families.skel.losses import (alpha_at, itc_loss, itm_negative_probs, label_targets, momentum_itc_loss,
                                         momentum_update, pacl_logits, sample_negatives)
from actlab.families.skel.metrics import mean_class_accuracy, topk_accuracy
from actlab.families.skel.queue import MomentumQueue


@pytest.mark.parametrize("tau, expected", [(1.0, 0.3132617), (0.5, 0.1269280)])
def test_itc_on_orthonormal_pairs_is_log_1_plus_b_minus_1_exp(tau, expected):
    v = torch.eye(2)
    assert itc_loss(v, v, [0, 1], tau).item() == pytest.approx(expected, abs=1e-6)
    b = 5
    e = np.eye(b)
    assert itc_loss(e, e, list(range(b)), tau).item() == pytest.approx(math.log(1 + (b - 1) * math.exp(-1 / tau)),
                                                                       abs=1e-6)


def test_label_aware_targets():
    np.testing.assert_allclose(label_targets([0, 0, 1]).numpy(), [[.5, .5, 0], [.5, .5, 0], [0, 0, 1]])
    np.testing.assert_allclose(label_targets([3, 1, 2]).numpy(), np.eye(3))


def test_itc_with_shared_labels_uses_the_label_aware_targets():
    g = torch.Generator().manual_seed(0)
    v, t = F.normalize(torch.randn(4, 8, generator=g), dim=1), F.normalize(torch.randn(4, 8, generator=g), dim=1)
    y = torch.tensor([0, 0, 1, 2])
    s = v @ t.T / 0.1
    gt = label_targets(y)
    by_hand = 0.5 * (-(gt * s.log_softmax(1)).sum(1).mean() - (gt * s.T.log_softmax(1)).sum(1).mean())
    assert itc_loss(v, t, y, 0.1).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_itm_negative_probs_follow_the_formula():
    sim = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.3, 0.1, 0.2, 0.9], [0.0, 1.0, 2.0, 3.0], [1.5, 0.5, -0.5, 0.0]])
    y = torch.tensor([0, 0, 1, 2])
    p = itm_negative_probs(sim, y)
    for i in range(4):
        other = [j for j in range(4) if y[j] != y[i]]
        z = sum(math.exp(sim[i, j]) for j in other)
        for j in range(4):
            want = math.exp(sim[i, j]) / z if j in other else 0.0
            assert p[i, j].item() == pytest.approx(want, abs=1e-6)


def test_a_lone_other_class_sample_is_always_drawn_and_one_class_gives_nothing():
    y = torch.tensor([0, 0, 0, 1])
    p = itm_negative_probs(torch.randn(4, 4), y)
    rows, cols = sample_negatives(p, torch.Generator().manual_seed(1))
    assert rows.tolist() == [0, 1, 2, 3] and cols[:3].tolist() == [3, 3, 3] and cols[3].item() in (0, 1, 2)
    p = itm_negative_probs(torch.randn(3, 3), torch.tensor([2, 2, 2]))
    assert p.sum().item() == 0
    rows, _ = sample_negatives(p)
    assert rows.numel() == 0


def test_an_underflowing_row_draws_uniformly_over_other_classes():
    sim = torch.tensor([[0.0, -1e30, -1e30], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    sim[0, 1] = sim[0, 2] = float("-inf")
    p = itm_negative_probs(sim, torch.tensor([0, 1, 2]))
    np.testing.assert_allclose(p[0].numpy(), [0, 0.5, 0.5])


def test_batched_sampling_matches_the_probabilities():
    p = torch.tensor([[0.0, 0.7, 0.3], [0.2, 0.0, 0.8]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_negatives(p, g)[1] for _ in range(4000)])
    assert (draws[:, 0] == 1).float().mean().item() == pytest.approx(0.7, abs=0.03)
    assert (draws[:, 1] == 2).float().mean().item() == pytest.approx(0.8, abs=0.03)
    assert not (draws[:, 0] == 0).any() and not (draws[:, 1] == 1).any()


def test_momentum_after_n_steps():
    online, mom = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    theta, theta_m0 = online.weight.detach().clone(), mom.weight.detach().clone()
    for _ in range(7):
        momentum_update(mom, online, 0.995)
    np.testing.assert_allclose(mom.weight.detach().numpy(), (theta + (theta_m0 - theta) * 0.995 ** 7).numpy(),
                               atol=1e-6)


def test_queue_wraps_and_refuses_a_batch_not_dividing_k():
    q = MomentumQueue(8, 4)
    assert q.ptr == 0 and (q.labels == losses.IGNORE_LABEL).all()
    np.testing.assert_allclose(q.video.norm(dim=1).numpy(), 1, atol=1e-6)
    for step in range(5):
        v = torch.full((4, 4), float(step))
        q.enqueue(v, v, torch.full((4,), step))
    assert q.ptr == (5 * 4) % 8 == 4
    assert q.labels.tolist() == [4, 4, 4, 4, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="multiple of the global batch 3"):
        q.enqueue(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3))


def test_alpha_ramps_linearly_over_epoch_zero():
    assert [alpha_at(s, 10) for s in (0, 5, 10, 25)] == [0.0, pytest.approx(0.2), pytest.approx(0.4),
                                                          pytest.approx(0.4)]


def test_momentum_itc_with_alpha_zero_and_empty_queue_is_itc_against_the_momentum_batch():
    g = torch.Generator().manual_seed(3)
    v, t = F.normalize(torch.randn(4, 6, generator=g), dim=1), F.normalize(torch.randn(4, 6, generator=g), dim=1)
    y = torch.tensor([0, 1, 1, 2])
    empty = torch.zeros(0, 6)
    got = momentum_itc_loss(v, t, v, t, y, empty, empty, torch.zeros(0, dtype=torch.long), 0.0, 0.2)
    assert got.item() == pytest.approx(itc_loss(v, t, y, 0.2).item(), rel=1e-6)


def test_momentum_itc_by_hand_with_queue_and_alpha():
    g = torch.Generator().manual_seed(4)
    n = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1)   # noqa: E731
    v, t, vm, tm, qv, qt = n(2, 5), n(2, 5), n(2, 5), n(2, 5), n(3, 5), n(3, 5)
    y, qy = torch.tensor([0, 1]), torch.tensor([1, -100, 0])
    alpha, tau = 0.3, 0.5
    cols_y = torch.tensor([0, 1, 1, -100, 0])
    gt = label_targets(y, cols_y)
    tc, vc = torch.cat([tm, qt]), torch.cat([vm, qv])
    i2t = alpha * (vm @ tc.T / tau).softmax(1) + (1 - alpha) * gt
    t2i = alpha * (tm @ vc.T / tau).softmax(1) + (1 - alpha) * gt
    want = 0.5 * (-(i2t * (v @ tc.T / tau).log_softmax(1)).sum(1).mean()
                  - (t2i * (t @ vc.T / tau).log_softmax(1)).sum(1).mean())
    assert momentum_itc_loss(v, t, vm, tm, y, qv, qt, qy, alpha, tau).item() == pytest.approx(want.item(), rel=1e-6)


def test_pacl_hand_computed_case():
    # one clip, two frames: P = [(1,0), (0,2)]; texts T0 = (1,0), T1 = (1,1)
    frames = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    texts = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    r = 1 / math.sqrt(2)
    # class 0: c = (1, 0) -> a = softmax = (e/(e+1), 1/(e+1)); p = a0*(1,0) + a1*(0,2)
    a0, a1 = math.e / (math.e + 1), 1 / (math.e + 1)
    p0 = np.array([a0, 2 * a1])
    cos0 = p0[0] / np.linalg.norm(p0)
    # class 1: c = (r, r) -> a = (.5, .5); p = (.5, 1); cos with (1,1)/sqrt2
    p1 = np.array([0.5, 1.0])
    cos1 = (p1 @ np.array([r, r])) / np.linalg.norm(p1)
    got = pacl_logits(frames, texts, 0.5, "softmax")
    np.testing.assert_allclose(got.numpy(), [[cos0 / 0.5, cos1 / 0.5]], atol=1e-6)
    # sigmoid(10 c): class 0 weights (sigmoid(10), sigmoid(0) = .5)
    s = 1 / (1 + math.exp(-10))
    p0 = np.array([s, 2 * 0.5])
    got = pacl_logits(frames, texts, 1.0, "sigmoid10")
    assert got[0, 0].item() == pytest.approx(p0[0] / np.linalg.norm(p0), abs=1e-6)
    with pytest.raises(ValueError, match="weighting"):
        pacl_logits(frames, texts, 1.0, "max")


def test_topk_and_mean_class_accuracy():
    scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.4, 0.4, 0.2], [0.3, 0.6, 0.1]])
    labels = np.array([0, 0, 1, 1])
    # ranks: 0 -> 0 classes higher; 1 -> 2 higher; 2 -> tie counts as a hit (0 strictly higher); 3 -> 0
    assert topk_accuracy(scores, labels, 1) == 0.75
    assert topk_accuracy(scores, labels, 2) == 0.75
    assert topk_accuracy(scores, labels, 3) == 1.0
    # class 0 recall 1/2, class 1 recall 2/2 (class 2 absent from the ground truth)
    assert mean_class_accuracy(scores, labels) == pytest.approx(0.75)
    assert mean_class_accuracy(scores[[0, 1, 2]], [0, 0, 0]) == pytest.approx(2 / 3)
