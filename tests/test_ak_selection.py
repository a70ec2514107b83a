"""Early stopping on a seeded validation part of train (actlab.families.ak.selection): the
held-out set, the best epoch and its weights, patience, and the choice surviving a restart."""
from __future__ import annotations

import pytest
import torch

from actlab.families.ak.selection import BEST_FILE, BestEpoch, split_validation


def test_held_out_part_is_disjoint_deterministic_and_seeded():
    train, val = split_validation(100, 0.2, seed=0)
    assert len(val) == 20 and len(train) == 80
    assert not set(train) & set(val) and sorted(train + val) == list(range(100))
    assert split_validation(100, 0.2, seed=0) == (train, val)
    assert split_validation(100, 0.2, seed=1)[1] != val
    assert split_validation(100, 0.0, seed=0) == (list(range(100)), [])
    assert len(split_validation(10, 0.01, seed=0)[1]) == 1          # at least one clip
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="val_fraction"):
            split_validation(10, bad, seed=0)


def model_at(value: float) -> torch.nn.Module:
    m = torch.nn.Linear(1, 1)
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def test_best_epoch_is_the_argmax_of_the_curve_with_its_weights():
    curve = [0.1, 0.3, 0.2, 0.3, 0.25]
    best = BestEpoch(None, patience=None)
    for epoch, score in enumerate(curve, 1):
        best.update(epoch, score, model_at(epoch))
    assert best.epoch == 2 and best.score == 0.3                    # the first of equal maxima
    assert best.state["weight"].item() == 2.0
    assert best.stop_epoch is None and not best.should_stop(10 ** 6, lambda e: 10 * e)


def test_patience_stops_after_the_epoch_without_a_gain():
    best = BestEpoch(None, patience=2)
    for epoch, score in enumerate([0.1, 0.5, 0.4, 0.45, 0.9], 1):
        best.update(epoch, score, model_at(epoch))
        if best.stop_epoch is not None:
            break
    assert best.stop_epoch == 4 and best.epoch == 2                 # epochs 3 and 4 without a gain
    ends = lambda e: 10 * e                                         # noqa: E731  10 steps per epoch
    assert not best.should_stop(40, ends) and best.should_stop(41, ends)
    with pytest.raises(ValueError, match="patience"):
        BestEpoch(None, patience=0)


def test_the_choice_survives_a_restart(tmp_path):
    first = BestEpoch(tmp_path, patience=1)
    first.update(1, 0.2, model_at(1.0))
    first.update(2, 0.1, model_at(2.0))
    assert (tmp_path / BEST_FILE).is_file()
    again = BestEpoch(tmp_path, patience=1)
    assert (again.epoch, again.score, again.stop_epoch) == (1, 0.2, 2)
    assert again.state["weight"].item() == 1.0
    again.update(2, 0.1, model_at(2.0))                             # a replayed epoch changes nothing
    assert (again.epoch, again.stop_epoch) == (1, 2) and again.state["weight"].item() == 1.0
