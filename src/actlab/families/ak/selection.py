"""Early stopping on a validation part of train (`val_fraction`, `patience`; docs/ak.md).

The test split is Animal Kingdom's only held-out split, so no choice is ever made on it. With
`val_fraction` > 0 a seeded part of the training clips is held out (`split_validation`), its mAP is
measured after every epoch, and the weights of the epoch with the best validation mAP (the first
of equal ones) are the ones tested. `patience` = p stops training once p epochs have passed
without a gain (None: all epochs run, the best is still the one tested).

`BestEpoch` keeps the best weights, in memory and, given a folder, in a file there, so a run that
is preempted and resumed ends with the same choice: the loop replays an epoch it had not
checkpointed identically, the file keeps the first of equal scores, and the stop is tied to the
step count (a resumed run stops at the same step, however far back its checkpoint is).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from actlab.atomic import atomic_write

BEST_FILE = "best_val.pt"


def validation_seed(seed: int) -> list[int]:
    """The generator seed of the held-out part: a function of the run seed only."""
    return [int(seed), 7]


def split_validation(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices of range(n): a seeded `fraction` of the training clips (at least
    one) held out; (all, []) for fraction 0."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(range(n)), []
    order = np.random.default_rng(validation_seed(seed)).permutation(n)
    k = max(1, round(fraction * n))
    if k >= n:
        raise ValueError(f"val_fraction={fraction} of {n} training clips leaves none to train on")
    return sorted(order[k:].tolist()), sorted(order[:k].tolist())


class BestEpoch:
    """The epoch with the best validation score so far and its weights (a CPU copy)."""

    def __init__(self, folder: str | Path | None, patience: int | None, write: bool = True) -> None:
        """`write=False` (a follower rank): read `folder`'s file on resume, never write it; the same
        validation scores on every rank (evaluate runs on each) give every rank the same choices."""
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or null, got {patience}")
        self.path = Path(folder) / BEST_FILE if folder is not None else None
        self.patience, self.write = patience, write
        self.epoch, self.score, self.state = 0, -math.inf, None
        self.stop_epoch: int | None = None     # the epoch after which patience ran out
        if self.path is not None and self.path.is_file():
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            self.epoch, self.score, self.state = int(saved["epoch"]), float(saved["score"]), saved["state"]
            self.stop_epoch = None if int(saved["stop_epoch"]) < 0 else int(saved["stop_epoch"])

    def update(self, epoch: int, score: float, model: nn.Module) -> None:
        """Record epoch `epoch`'s score; keep the weights when it beats every earlier epoch."""
        changed = False
        if score > self.score:
            self.epoch, self.score, changed = epoch, float(score), True
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if self.patience is not None and self.stop_epoch is None and epoch - self.epoch >= self.patience:
            self.stop_epoch, changed = epoch, True
        if changed and self.path is not None and self.write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record: dict[str, Any] = {"epoch": self.epoch, "score": self.score, "state": copy.copy(self.state),
                                      "stop_epoch": -1 if self.stop_epoch is None else self.stop_epoch}
            atomic_write(self.path, lambda p: torch.save(record, p))

    def should_stop(self, steps_done: int, steps_at_end_of: Callable[[int], int]) -> bool:
        """True from the first step after the epoch at which patience ran out (`steps_at_end_of(e)`:
        the optimizer steps done when epoch e ends)."""
        return self.stop_epoch is not None and steps_done > steps_at_end_of(self.stop_epoch)
