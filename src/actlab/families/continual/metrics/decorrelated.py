"""The decorrelated-sample mask of the OAG split (mean +- SE lives in actlab.post.tables)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def decorrelated_mask(labels: Sequence) -> np.ndarray:
    """mask[i] = (i >= 1 and labels[i] != labels[i-1]): the samples a "copy the previous label"
    predictor cannot get right. The correlated samples are `~mask` (sample 0 counts as correlated)."""
    y = list(labels)
    mask = np.zeros(len(y), dtype=bool)
    for i in range(1, len(y)):
        mask[i] = y[i] != y[i - 1]
    return mask
