"""The four long-tail losses of the Animal Kingdom paper on multi-label logits (B x C), each
reduced by the mean over B * C.

A loss sees the cosine similarities (B x C) and the classifier, not just the logits, because
LDAM subtracts its margins in cosine space before the scale and the head:
z' = head(s (cos - m * y)). The others score z = classifier.logits(cos).

Upstream defects avoided here (docs/ak.md): focal's default gamma = 0 made it BCE; LDAM-DRW's
2-item beta list indexed by `epoch // step` crashed past the second step; EQL's lambda = 1.76e-3
used as a drop probability made it ~BCE (kept as the `upstream` variant, recorded).
"""
from __future__ import annotations

from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Classifier(Protocol):
    def logits(self, cos: Tensor, scale: float | None = None) -> Tensor: ...


# -- the functions (golden values in tests/test_ak_losses.py) -------------------------------------
def bce(z: Tensor, y: Tensor, weight: Tensor | None = None) -> Tensor:
    return F.binary_cross_entropy_with_logits(z, y.to(z.dtype), weight=weight)


def focal(z: Tensor, y: Tensor, gamma: float = 2.0, alpha: float = 1.0) -> Tensor:
    """mean(alpha (1 - p_t)^gamma BCE) with p_t = exp(-BCE); gamma = 0 and alpha = 1 is BCE exactly."""
    ce = F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none")
    if gamma == 0:
        return (alpha * ce).mean()
    return (alpha * (1 - torch.exp(-ce)) ** gamma * ce).mean()


def ldam_margins(counts: Sequence[int] | Tensor, max_margin: float = 0.5) -> Tensor:
    """m_c = n_c^(-1/4), rescaled so the largest margin is `max_margin`."""
    m = torch.as_tensor(counts, dtype=torch.float64) ** -0.25
    return (m * (max_margin / m.max())).float()


def drw_weights(counts: Sequence[int] | Tensor, beta: float = 0.9999) -> Tensor:
    """Class-balanced weights (1 - beta) / (1 - beta^n_c), normalised to sum to C."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    w = (1 - beta) / (1 - beta ** n)
    return (w * (len(n) / w.sum())).float()


def ldam_shift(y: Tensor, margins: Tensor, mode: str) -> Tensor:
    """What LDAM subtracts from each cosine: `per_class`: m_c on each positive; `sum_positives`
    (upstream): every positive of a sample loses the sum of its positives' margins."""
    y = y.to(margins.dtype)
    if mode == "per_class":
        return y * margins
    if mode == "sum_positives":
        return y * (y @ margins)[:, None]
    raise ValueError(f"ldam margin: {mode!r} is not per_class or sum_positives")


def eql_weights(y: Tensor, tail: Tensor, drop: Tensor | None = None) -> Tensor:
    """1 - tail_c (1 - y): negatives of tail classes are ignored; `drop` (B x C {0,1}) limits that
    to the drawn elements (the upstream variant)."""
    ignore = tail.to(y.dtype)[None, :] * (1 - y)
    return 1 - (ignore if drop is None else drop.to(y.dtype) * ignore)


# -- the losses a run instantiates (configs/ak/loss/*.yaml) ---------------------------------------
class LongTailLoss(nn.Module):
    """Every loss gets the class counts and the number of epochs; `forward` the current epoch."""

    def __init__(self, counts: Sequence[int], epochs: int) -> None:
        super().__init__()
        self.register_buffer("counts", torch.as_tensor(list(counts), dtype=torch.float64), persistent=False)
        self.epochs = int(epochs)

    scale: float | None = None    # the logit scale the head is applied at (None: the checkpoint's)

    def forward(self, cos: Tensor, y: Tensor, classifier: Classifier, epoch: int,
                generator: torch.Generator | None = None) -> Tensor:
        shift = self.shift(y)
        return self.from_logits(classifier.logits(cos if shift is None else cos - shift.to(cos.dtype), self.scale),
                                y, epoch, generator)

    # Training calls the (DDP-wrapped) classifier once for the logits of `cos - shift(y)` at `scale`
    # and scores them with `from_logits` (docs/ak.md, "Several ranks"); `forward` is the same loss.
    def shift(self, y: Tensor) -> Tensor | None:
        """What is subtracted from the cosines before the head (None: nothing)."""
        return None

    def from_logits(self, z: Tensor, y: Tensor, epoch: int, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        """Labels of the run (which variant ran)."""
        return {}


class BCELoss(LongTailLoss):
    def from_logits(self, z, y, epoch, generator=None):
        return bce(z, y)


class FocalLoss(LongTailLoss):
    def __init__(self, counts, epochs, gamma: float = 2.0, alpha: float = 1.0) -> None:
        super().__init__(counts, epochs)
        self.gamma, self.alpha = float(gamma), float(alpha)

    def from_logits(self, z, y, epoch, generator=None):
        return focal(z, y, self.gamma, self.alpha)


class LDAMDRWLoss(LongTailLoss):
    def __init__(self, counts, epochs, margin: str = "per_class", max_margin: float = 0.5,
                 scale: float | None = None, drw_start: int | None = None, beta: float = 0.9999) -> None:
        super().__init__(counts, epochs)
        ldam_shift(torch.zeros(1, len(self.counts)), torch.zeros(len(self.counts)), margin)   # validates `margin`
        self.margin, self.scale = margin, scale
        self.drw_start = int(0.8 * self.epochs) if drw_start is None else int(drw_start)
        self.register_buffer("margins", ldam_margins(self.counts, max_margin), persistent=False)
        self.register_buffer("weights", drw_weights(self.counts, beta), persistent=False)

    def class_weights(self, epoch: int) -> Tensor | None:
        """None (= 1) before `drw_start` (0-based epoch), then the class-balanced weights."""
        return None if epoch < self.drw_start else self.weights

    def shift(self, y):
        return ldam_shift(y, self.margins, self.margin)

    def from_logits(self, z, y, epoch, generator=None):
        weight = self.class_weights(epoch)
        return bce(z, y, None if weight is None else weight.to(z.dtype)[None, :])

    def describe(self):
        return {"ldam_margin": self.margin}


class EQLLoss(LongTailLoss):
    def __init__(self, counts, epochs, variant: str = "faithful", tail_max_count: int = 100,
                 drop_prob: float = 1.76e-3) -> None:
        super().__init__(counts, epochs)
        if variant not in ("faithful", "upstream"):
            raise ValueError(f"eql variant: {variant!r} is not faithful or upstream")
        self.variant, self.drop_prob = variant, float(drop_prob)
        self.register_buffer("tail", self.counts <= tail_max_count, persistent=False)

    def from_logits(self, z, y, epoch, generator=None):
        drop = None
        if self.variant == "upstream":
            # drawn on the CPU generator the training loop checkpoints, so a resumed run draws the same
            drop = torch.bernoulli(torch.full(tuple(y.shape), self.drop_prob), generator=generator).to(z.device)
        w = eql_weights(y.to(z.dtype), self.tail.to(z.device), drop)
        return (w * F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none")).mean()

    def describe(self):
        return {"eql_variant": self.variant}
