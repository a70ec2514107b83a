"""The decorrelated-sample mask of the OAG split (mean +- SE lives in actlab.post.tables).

As upstream's `dump_to_decorrelated_ACC` (docs/protocol.md): sample 0 is decorrelated; sample
i >= 1 is decorrelated iff its label differs from sample i-1's. An action is a (verb, noun) pair
and counts as changed only when its verb AND its noun both changed (upstream asks whether the
pair shares any element with the previous pair).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

COMPONENTS = {"verb": ("verb",), "noun": ("noun",), "action": ("verb", "noun")}


def decorrelated_mask(*labels: Sequence) -> np.ndarray:
    """mask[0] = True (for a non-empty stream); mask[i] = every one of the given label sequences
    changes between sample i-1 and sample i. The correlated samples are `~mask`."""
    seqs = [list(y) for y in labels]
    if len({len(y) for y in seqs}) > 1:
        raise ValueError(f"label sequences must have the same length, got {[len(y) for y in seqs]}")
    n = len(seqs[0]) if seqs else 0
    mask = np.ones(n, dtype=bool)
    for i in range(1, n):
        mask[i] = all(y[i] != y[i - 1] for y in seqs)
    return mask


def task_decorrelated_mask(verbs: Sequence, nouns: Sequence, task: str) -> np.ndarray:
    """The mask of one task: verb, noun, or action (verb AND noun must change)."""
    if task not in COMPONENTS:
        raise ValueError(f"task must be one of {tuple(COMPONENTS)}, got {task!r}")
    by_name = {"verb": verbs, "noun": nouns}
    return decorrelated_mask(*(by_name[c] for c in COMPONENTS[task]))
