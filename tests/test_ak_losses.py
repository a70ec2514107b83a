"""The long-tail losses (golden values of issue 12, section 5) and the warmup-cosine schedule."""
from __future__ import annotations

import math

import pytest
import torch

from actlab.families.ak.losses import (BCELoss, EQLLoss, FocalLoss, LDAMDRWLoss, bce, drw_weights, eql_weights,
                                       focal, ldam_margins, ldam_shift)
from actlab.families.ak.schedule import warmup_cosine

Z = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
Y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])


class Scaled:
    """A classifier with head = identity: logits = scale * cos."""
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def logits(self, cos, scale=None):
        return (self.scale if scale is None else scale) * cos


def test_bce_and_focal_golden():
    assert bce(Z, Y).item() == pytest.approx(1.365714, abs=1e-6)
    assert focal(Z, Y, gamma=2).item() == pytest.approx(0.961841, abs=1e-6)


def test_focal_gamma_zero_is_bce_exactly():
    z, y = torch.randn(8, 5), (torch.rand(8, 5) < .3).float()
    assert torch.equal(focal(z, y, gamma=0.0), bce(z, y))


def test_ldam_margins_and_drw_weights_golden():
    torch.testing.assert_close(ldam_margins([1, 16, 10000]), torch.tensor([0.5, 0.25, 0.05]))
    torch.testing.assert_close(drw_weights([1, 16, 10000]), torch.tensor([2.8230, 0.17657, 4.4658e-4]),
                               rtol=1e-4, atol=0)


def test_ldam_shift_variants():
    m = torch.tensor([0.5, 0.25, 0.05])
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(ldam_shift(y, m, "per_class"), torch.tensor([[0.5, 0.25, 0.0], [0.0, 0.0, 0.05]]))
    torch.testing.assert_close(ldam_shift(y, m, "sum_positives"), torch.tensor([[0.75, 0.75, 0.0], [0.0, 0.0, 0.05]]))
    with pytest.raises(ValueError, match="margin"):
        LDAMDRWLoss([1, 2], epochs=10, margin="bogus")


def test_ldam_drw_loss_by_hand_and_drw_switch():
    counts, cos = [1, 16, 10000], torch.tensor([[0.2, -0.1, 0.4], [0.0, 0.3, -0.2]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss = LDAMDRWLoss(counts, epochs=10, scale=30.0)          # drw_start = 8, as 0.8 * epochs
    assert loss.drw_start == 8
    expect_z = 30.0 * (cos - y * torch.tensor([0.5, 0.25, 0.05]))
    before = loss(cos, y, Scaled(100.0), epoch=7)
    assert before.item() == pytest.approx(bce(expect_z, y).item(), abs=1e-6)
    after = loss(cos, y, Scaled(100.0), epoch=8)
    w = torch.tensor([2.8230, 0.17657, 4.4658e-4])
    by_hand = (w * torch.nn.functional.binary_cross_entropy_with_logits(expect_z, y, reduction="none")).mean()
    assert after.item() == pytest.approx(by_hand.item(), rel=1e-4)
    # far past any "step": upstream indexed a 2-item beta list by epoch // step and crashed here
    assert torch.isfinite(loss(cos, y, Scaled(100.0), epoch=1000))


def test_eql_masks_and_variants():
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    tail = torch.tensor([False, True, True])
    torch.testing.assert_close(eql_weights(y, tail), torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    drop = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(eql_weights(y, tail, drop), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))
    counts = [500, 100, 101]                        # tail = count <= 100: only class 1
    eql = EQLLoss(counts, epochs=1)
    assert eql.tail.tolist() == [False, True, False]
    cos = torch.randn(2, 3)
    z = 5.0 * cos
    ce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert eql(cos, y, Scaled(5.0), 0).item() == pytest.approx((mask * ce).mean().item(), abs=1e-6)
    upstream = EQLLoss(counts, epochs=1, variant="upstream")
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = upstream(cos, y, Scaled(5.0), 0, g1), upstream(cos, y, Scaled(5.0), 0, g2)
    assert a.item() == b.item()                     # seeded by the run's generator
    assert a.item() == pytest.approx(bce(z, y).item(), abs=1e-6)   # drop probability 1.76e-3: ~BCE


def test_loss_modules_match_functions():
    cos, y = torch.randn(4, 3), (torch.rand(4, 3) < .4).float()
    assert BCELoss([1, 2, 3], 1)(cos, y, Scaled(2.0), 0).item() == pytest.approx(bce(2 * cos, y).item())
    assert FocalLoss([1, 2, 3], 1, gamma=2)(cos, y, Scaled(2.0), 0).item() == pytest.approx(focal(2 * cos, y).item())


def test_warmup_cosine_golden():
    f = warmup_cosine(10, 100)
    for t, want in [(0, 0.0), (5, 0.5), (10, 1.0), (55, 0.5), (100, 0.0), (120, 0.0)]:
        assert f(t) == pytest.approx(want, abs=1e-12), t
    assert f(32) == pytest.approx(0.5 * (1 + math.cos(math.pi * 22 / 90)))
    with pytest.raises(ValueError):
        warmup_cosine(20, 10)
