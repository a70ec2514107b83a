"""What every family's job does around its own work: the identity from the task config, one
writer per run folder (a lease), the results store, the W&B mirror, and what a completed, failed
or preempted run leaves behind. A family's job reads (docs/families.md):

    session = RunSession(cfg, FAMILY)
    with session.lease():
        if session.store.is_completed():
            return session.store.folder                   # a rerun of a finished run is a no-op
        inputs, labels = ...                              # what the run reads, hashed
        with session.running(inputs, labels) as run:      # begin; fail / requeue on exceptions
            ...                                           # run.log(step, values) along the way
            run.finish(summary, [Artifact(...), ...])     # status.json "completed" last

A family whose job may run as several ranks (Family.distributed) wraps that in `run_ranked`: rank 0
does the above, the other ranks train on their shards and write nothing (docs/gpu.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from omegaconf import DictConfig, OmegaConf

from actlab import preemption
from actlab.family import Family
from actlab.identity import RunIdentity, code_version, submit_timestamp
from actlab.errors import DataError
from actlab.results.lease import LeaseHeld, RunLease
from actlab.results.store import Artifact, RunStore

if TYPE_CHECKING:
    from actlab.device import Ranks

log = logging.getLogger(__name__)

# Config keys that name a run (its identity) or say where it writes, not what it computes: a
# hand-typed command line's other overrides define its grid point (`point_overrides`).
NOT_A_POINT = ("seed", "submitted", "group", "code", "experiment", "overrides", "reference_group",
               "paths.", "wandb.", "hydra.", "checkpoint_every", "threads", "lease_wait_s",
               "prefetch_factor")


def identity_from_cfg(cfg: DictConfig, family: Family) -> RunIdentity:
    """`submitted: null` -> now; `group: null` -> experiment + hash of `overrides`; `code: null` -> git."""
    for key in ("experiment", "seed") + ((family.unit,) if family.unit else ()):
        if OmegaConf.select(cfg, key) is None:
            raise ValueError(f"{family.name} config: `{key}` must be set (e.g. `{key}=...` on the command line)")
    overrides = OmegaConf.to_container(cfg.overrides, resolve=True) if cfg.get("overrides") else {}
    ident = RunIdentity.for_point(str(cfg.experiment), overrides,
                                  str(OmegaConf.select(cfg, family.unit)) if family.unit else None, int(cfg.seed),
                                  cfg.get("submitted") or submit_timestamp(),
                                  cfg.get("code") or code_version(Path(__file__).parent), family.name)
    if cfg.get("group"):
        ident = dataclasses.replace(ident, group=str(cfg.group))
    return ident


def point_overrides(task_overrides: list[str], unit_key: str | None) -> dict[str, Any]:
    """The grid point of a hand-typed command line: its `key=value` overrides that change results,
    typed by Hydra's grammar as the launcher types grid values (`0.1` is a float, not a string)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    skip = NOT_A_POINT + ((unit_key,) if unit_key else ())
    point = {}
    for ov in OverridesParser.create().parse_overrides(task_overrides):
        key = ov.key_or_group
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in skip):
            point[key] = ov.value()
    return point


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (an input of a run: weights, annotation files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ActiveRun:
    """A run between `begin` and `finish`: its store and W&B mirror."""

    def __init__(self, store: RunStore, mirror: Any) -> None:
        self.store, self.mirror, self.finished = store, mirror, False

    def log(self, step: int, values: dict[str, float], step_name: str = "batch") -> None:
        if self.mirror is not None:
            self.mirror.log(step, values, step_name)

    def finish(self, summary: dict[str, float], artifacts: list[Artifact] = ()) -> Path:
        self.store.finish(summary, list(artifacts))
        if self.mirror is not None:
            self.mirror.finish(summary)
        self.finished = True
        return self.store.folder


class RunSession:
    def __init__(self, cfg: DictConfig, family: Family) -> None:
        self.cfg, self.family = cfg, family
        self.identity = identity_from_cfg(cfg, family)
        self.store = RunStore.for_identity(self.identity, cfg.paths.results)

    @contextmanager
    def lease(self) -> Iterator[RunLease]:
        """Held for the whole run: a second process on the same run waits `lease_wait_s`, then stops
        with a message naming the holder (a requeue racing its dying predecessor, a hand rerun)."""
        self.store.folder.mkdir(parents=True, exist_ok=True)
        with RunLease(self.store.folder, wait_s=float(self.cfg.get("lease_wait_s") or 0)) as lease:
            yield lease

    @contextmanager
    def running(self, inputs: dict[str, str], labels: dict[str, str]) -> Iterator[ActiveRun]:
        cfg = self.cfg
        self.store.begin(self.identity, OmegaConf.to_yaml(cfg, resolve=True), inputs, labels)
        mirror = None
        if cfg.wandb.mode != "disabled":
            from actlab.results.wandb_mirror import WandbMirror

            mirror = WandbMirror(self.identity, OmegaConf.to_container(cfg, resolve=True), inputs, labels,
                                 cfg.paths.wandb, cfg.wandb.mode)
        run = ActiveRun(self.store, mirror)
        try:
            yield run
        except preemption.Preempted:
            if mirror is not None:
                mirror.finish(exit_code=preemption.REQUEUE_EXIT_CODE)
            raise
        except BaseException as e:
            self.store.fail(e)
            if mirror is not None:
                mirror.finish(exit_code=1)
            raise
        if not run.finished:
            raise RuntimeError(f"{self.family.name} job ended without finish(): {self.store.folder}")


def run_ranked(cfg: DictConfig, family: Family, lead: Callable[[RunSession], Path],
               follow: Callable[[Path], Any]) -> Path:
    """One run as one process or as the ranks torchrun/srun started (docs/gpu.md).

    Rank 0 holds the run folder's lease, returns at once when the run is complete, else calls
    `lead(session)`: the job as one process would run it, the only writer of the store, W&B and the
    checkpoints. Every other rank gets rank 0's folder (its identity carries rank 0's submit clock)
    and, unless the run is complete, calls `follow(folder)`: the same model, data and `fit` calls,
    their `state_dir` under `RunStore(folder).checkpoint_dir`, writing nothing; a follower whose fit
    was interrupted raises `preemption.Preempted` as rank 0 does (only rank 0 requeues)."""
    from actlab.device import init_distributed    # torch: not for the launcher, which imports this module

    ranks = init_distributed(str(cfg.get("device") or "auto"))
    if not ranks.main:
        folder, completed = _share_folder(ranks)
        if not completed:
            follow(folder)
        return folder
    session = RunSession(cfg, family)
    with session.lease():
        completed = session.store.is_completed()
        _share_folder(ranks, session.store.folder, completed)
        if completed:
            print(f"{session.store.folder}: already completed, nothing to do")
            return session.store.folder
        return lead(session)


def _share_folder(ranks: Ranks, folder: Path | None = None, completed: bool = False) -> tuple[Path, bool]:
    """Rank 0's run folder and whether it is complete, on every rank."""
    if ranks.world_size == 1:
        return folder, completed
    import torch.distributed as dist

    box = [str(folder) if folder is not None else None, completed]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0]), bool(box[1])


def run_by_hand(cfg: DictConfig, family: Family) -> None:
    """A family's `@hydra.main` entry point (jobs/<family>.py): run one job from a typed command line.

    Run by hand, not by the launcher, the command line's own choices define the grid point, so
    `method=frozen` and `method=replay` land in different groups. Keys listed in
    hydra.job.config.override_dirname.exclude_keys say where/how much (the launcher's
    task_overrides, e.g. data.max_clips), not which point: they stay out of the group hash.
    A preempted job exits with REQUEUE_EXIT_CODE; running the same command again resumes it.
    """
    import sys

    from hydra.core.hydra_config import HydraConfig

    if not cfg.overrides:
        hc = HydraConfig.get()
        skip = set(hc.job.config.override_dirname.exclude_keys)
        point = point_overrides(list(hc.overrides.task), family.unit)
        cfg.overrides = {k: v for k, v in point.items() if k not in skip}
    try:
        print(family.job_function()(cfg))
    except preemption.Preempted as stop:
        print(stop)
        sys.exit(preemption.REQUEUE_EXIT_CODE)
    except (LeaseHeld, DataError) as e:   # the user's to fix: one line, no traceback
        print(f"{family.name}: {e}", file=sys.stderr)
        sys.exit(2)
