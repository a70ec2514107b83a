"""The batch size per epoch (`train.batch_schedule`, docs/ak.md) and training through it.

- `constant`: `batch_size` in every epoch.
- `doubling`: `batch_start` in the first `batch_every` epochs, then twice that for the next
  `batch_every`, ..., capped at `batch_max` (8, 16, ..., 512, 1024, 1024, ... by default).

The shared loop (actlab.train.loop.fit) trains at one batch size, so a schedule is a sequence of
phases, runs of epochs at one size, each one `fit` with its own checkpoint folder; the model,
the optimizer and the per-step learning-rate schedule are the same objects across phases, and
the schedule's length is the real number of optimizer steps over all epochs (sum of
ceil(N / b_e)). A finished phase leaves its history in `phases.json`; its checkpoint is kept
until the next phase has finished (it is the state the next phase starts from), so a resumed run
restores the latest checkpoint and continues where it stopped, with at most two checkpoints on disk.
"""
from __future__ import annotations

import bisect
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from actlab.atomic import atomic_write_json, read_json

SCHEDULES = ("constant", "doubling")
PHASES_FILE = "phases.json"


def batch_sizes(schedule: str, epochs: int, batch_size: int, start: int = 8, maximum: int = 1024,
                every: int = 1) -> list[int]:
    """The batch size of each of `epochs` epochs."""
    if schedule == "constant":
        return [int(batch_size)] * epochs
    if schedule != "doubling":
        raise ValueError(f"train.batch_schedule {schedule!r} is not one of {SCHEDULES}")
    if not 1 <= start <= maximum or every < 1:
        raise ValueError(f"doubling needs 1 <= batch_start <= batch_max and batch_every >= 1; "
                         f"got {start}, {maximum}, {every}")
    return [min(maximum, start * 2 ** (e // every)) for e in range(epochs)]


def epoch_steps(n: int, sizes: list[int]) -> list[int]:
    """Optimizer steps of each epoch over `n` samples (the last batch of an epoch may be short)."""
    return [math.ceil(n / b) for b in sizes]


@dataclass(frozen=True)
class Phase:
    index: int
    first_epoch: int          # epochs done before it
    epochs: int
    batch_size: int


def phases_of(sizes: list[int]) -> list[Phase]:
    out: list[Phase] = []
    for e, b in enumerate(sizes):
        if out and out[-1].batch_size == b:
            last = out[-1]
            out[-1] = Phase(last.index, last.first_epoch, last.epochs + 1, b)
        else:
            out.append(Phase(len(out), e, 1, b))
    return out


class StepClock:
    """Epoch arithmetic on the optimizer step count (which the checkpointed scheduler holds)."""

    def __init__(self, steps: list[int]) -> None:
        self.ends = np.cumsum(steps).tolist()          # steps done at the end of epoch 1, 2, ...
        self.total = int(self.ends[-1])

    def epoch_of(self, steps_done: int) -> int:
        """Complete epochs after `steps_done` steps (= the 0-based epoch the next step is in)."""
        return bisect.bisect_right(self.ends, steps_done)

    def end_of(self, epoch: int) -> int:
        """Steps done when (1-based) epoch `epoch` ends."""
        return int(self.ends[epoch - 1])

    def warmup(self, warmup_epochs: float) -> int:
        """Steps in the first `warmup_epochs` (fractional) epochs."""
        steps = np.diff([0, *self.ends])
        return int(round(sum(min(1.0, max(0.0, warmup_epochs - e)) * s for e, s in enumerate(steps))))


@dataclass
class PhasedResult:
    interrupted: bool
    history: list[dict[str, float]]
    epochs_done: int
    stopped_early: bool


def phase_seed(seed: int, phase: int) -> int:
    """The loop seed of a phase (its data order, generator): the run seed for the first."""
    if phase == 0:
        return seed
    return int(np.random.SeedSequence([seed, phase]).generate_state(1)[0] % 2 ** 31)


def fit_phases(fit: Callable[..., Any], phases: list[Phase], state_dir: str | Path | None,
               loop_for: Callable[[Phase], Any], on_epoch: Callable[[int, dict], None] | None,
               write: bool = True, **fit_kw: Any) -> PhasedResult:
    """Call `fit(..., config=loop_for(phase), state_dir=<phase folder>, on_epoch=...)` for each
    phase in turn; epochs in the history and in `on_epoch` count from the run's start. One phase
    (a constant schedule) trains in `state_dir` itself, as a single `fit` does. `write=False` (a
    follower rank): the same `fit` calls in the same folders, reading `phases.json` and the
    folders, writing and deleting nothing. Every `fit` of several ranks starts with collectives
    (the DDP wrapper's broadcast), so rank 0 writes `phases.json` after phase k only once every
    rank has read it, and deletes phase k's folder only once every rank has looked for it."""
    root = None if state_dir is None else Path(state_dir)
    if len(phases) == 1:
        r = fit(config=loop_for(phases[0]), state_dir=root, on_epoch=on_epoch, **fit_kw)
        return PhasedResult(r.interrupted, list(r.history), r.epochs_done, r.stopped_early)
    done: dict[str, list[dict]] = {}
    if root is not None and (root / PHASES_FILE).is_file():
        done = read_json(root / PHASES_FILE)
    history: list[dict[str, float]] = []
    epochs_done = 0
    for phase in phases:
        folder = None if root is None else root / f"phase{phase.index}"
        shift = phase.first_epoch

        def shifted(epoch: int, record: dict, shift: int = shift) -> None:
            if on_epoch is not None:
                on_epoch(epoch + shift, record | {"epoch": epoch + shift})

        if str(phase.index) in done and not (folder is not None and folder.exists()):
            records = done[str(phase.index)]            # finished, and superseded by a later phase
        else:
            r = fit(config=loop_for(phase), state_dir=folder, on_epoch=shifted, **fit_kw)
            records = [rec | {"epoch": rec["epoch"] + shift} for rec in r.history]
            if r.interrupted or r.stopped_early:
                return PhasedResult(r.interrupted, history + records, epochs_done + r.epochs_done, r.stopped_early)
            if root is not None and write:
                if str(phase.index) not in done:
                    done[str(phase.index)] = records
                    atomic_write_json(root / PHASES_FILE, done)
                for earlier in range(phase.index):        # this phase's end is the state to resume from
                    shutil.rmtree(root / f"phase{earlier}", ignore_errors=True)
        history += records
        epochs_done += phase.epochs
    return PhasedResult(False, history, epochs_done, False)
