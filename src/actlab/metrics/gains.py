"""Aggregation over users (mean +- SE) and the decorrelated-sample mask of the OAG split."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """(mean, standard error) with SE = sample std (ddof=1) / sqrt(n); SE is nan for n < 2.

    n = 0 gives (nan, nan). NaNs are not dropped: a missing user must be visible, not averaged away.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan
    return mean, float(x.std(ddof=1) / math.sqrt(x.size))


def decorrelated_mask(labels: Sequence) -> np.ndarray:
    """mask[i] = (i >= 1 and labels[i] != labels[i-1]): the samples a "copy the previous label"
    predictor cannot get right. The correlated samples are `~mask` (sample 0 counts as correlated)."""
    y = list(labels)
    mask = np.zeros(len(y), dtype=bool)
    for i in range(1, len(y)):
        mask[i] = y[i] != y[i - 1]
    return mask
