"""A generic, resumable supervised training loop (supervised experiment families, population pretraining).

Each epoch visits the training set once, in a permutation that depends only on (seed, epoch), so
the data order needs no state beyond the epoch and the position in it. State is checkpointed at
optimizer-step boundaries: every `checkpoint_every` steps, at each epoch end, and when
`should_stop()` becomes true (then `fit` returns `interrupted=True`). A `fit` started with a
checkpoint in `state_dir` continues from it and ends with the same parameters and history as an
uninterrupted run.

Randomness that survives a resume: torch's global RNG (dropout; seeded from `config.seed` on a
fresh start, restored on resume) and the `generator` handed to `loss_fn` (augmentations). Draws
inside a data set's `__getitem__` in worker processes are not reproduced, since a resumed epoch
deals its batches to the workers differently; augment in `loss_fn` instead.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from actlab import preemption, resumable

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

LossFn = Callable[[nn.Module, Any, torch.Generator], tuple[Tensor, dict[str, float]]]


@dataclass(frozen=True)
class LoopConfig:
    epochs: int
    batch_size: int
    seed: int = 0
    checkpoint_every: int = 0          # optimizer steps between checkpoints (0 = only on stop and at epoch ends)
    num_workers: int = 0
    drop_last: bool = False
    max_minutes: float | None = None   # stop training at the next step after this (then evaluate and finish)
    grad_clip: float | None = None     # max global gradient norm
    precision: str = "fp32"            # fp32 | bf16 | fp16 (autocast; fp16 adds a checkpointed GradScaler)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.seed < 0 or self.checkpoint_every < 0:
            raise ValueError(f"seed and checkpoint_every must be >= 0, got {self.seed} and {self.checkpoint_every}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {self.precision!r}")


@dataclass
class FitResult:
    interrupted: bool                  # stopped on request with a checkpoint written; call fit again to resume
    history: list[dict[str, float]]    # one record per epoch: {"epoch", "train/loss", "train/<metric>", "lr", **evaluate()}
    steps_done: int
    epochs_done: int                   # complete epochs (a last, partial record when stopped_early is not one)
    stopped_early: bool                # max_minutes reached


@dataclass
class _Progress:
    """Where the loop stands; checkpointed as a plain dict."""
    epoch: int = 0                     # complete epochs
    position: int = 0                  # optimizer steps done in the current epoch
    steps: int = 0
    seen: int = 0                      # samples in the current epoch so far
    sums: dict[str, float] = field(default_factory=dict)   # sample-weighted sums of loss and metrics
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def epoch_seed(seed: int, epoch: int) -> int:
    # SeedSequence hashes the pair, so nearby (seed, epoch) pairs give unrelated orders.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order in which epoch `epoch` visits range(n): a function of (n, seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).tolist()


def fit(model: nn.Module, train_set: Dataset, *, config: LoopConfig,
        make_optimizer: Callable[[Any], Optimizer],
        make_scheduler: Callable[[Optimizer, int, int], LRScheduler | None] | None = None,
        loss_fn: LossFn, evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        state_dir: str | Path | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None) -> FitResult:
    """Train `model` in place, from the start or from the checkpoint in `state_dir`.

    `loss_fn(model, batch, generator)` moves the batch to the model's device and returns the loss
    and sample-averaged metrics of the batch; `make_scheduler(optimizer, steps_per_epoch,
    total_steps)` builds a scheduler stepped after every optimizer step; `evaluate(model)` runs in
    eval mode after each epoch and owns its no_grad; `on_epoch(epoch, record)` runs on rank 0.
    """
    n, bs = len(train_set), config.batch_size
    if n == 0:
        raise ValueError("train_set is empty: nothing to train on")
    steps_per_epoch = n // bs if config.drop_last else math.ceil(n / bs)
    if steps_per_epoch == 0:
        raise ValueError(f"train_set has {n} samples, fewer than batch_size={bs} with drop_last: no batch")
    should_stop = should_stop or preemption.requested
    main = is_main_process()
    device_type = next(model.parameters()).device.type
    optimizer = make_optimizer(model.parameters())
    scheduler = make_scheduler(optimizer, steps_per_epoch, config.epochs * steps_per_epoch) if make_scheduler else None
    scaler = torch.amp.GradScaler(device_type, enabled=config.precision == "fp16")
    generator = torch.Generator().manual_seed(config.seed)
    # What the data order and the schedule depend on: a checkpoint of another plan cannot continue.
    plan = {"samples": n, "batch_size": bs, "drop_last": config.drop_last, "seed": config.seed,
            "epochs": config.epochs, "precision": config.precision}
    progress = _Progress()
    state = resumable.load(state_dir) if state_dir is not None else None
    if state is None:
        torch.manual_seed(config.seed)
    else:
        if state["plan"] != plan:
            raise RuntimeError(f"checkpoint in {state_dir} was written for {state['plan']}, not {plan}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        generator.set_state(state["generator"])
        _set_rng_state(state["rng"])
        progress = _Progress(**state["progress"])

    def save() -> None:
        if state_dir is None or not main:
            return
        resumable.save(Path(state_dir), {
            "plan": plan, "progress": asdict(progress), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "generator": generator.get_state(), "rng": _rng_state()})

    def result(interrupted: bool) -> FitResult:
        return FitResult(interrupted, list(progress.history), progress.steps, progress.epoch, progress.stopped_early)

    deadline = None if config.max_minutes is None else time.monotonic() + 60 * config.max_minutes
    autocast = (contextlib.nullcontext() if config.precision == "fp32"
                else torch.autocast(device_type, dtype=PRECISIONS[config.precision]))
    model.train()
    while progress.epoch < config.epochs and not progress.stopped_early:
        p = progress
        # The permutation's tail from the current position: a resumed epoch gets exactly the
        # batches an uninterrupted one had left. The loader's own generator (worker seeds) keeps
        # building the iterator from drawing on the global RNG.
        tail = epoch_order(n, config.seed, p.epoch)[p.position * bs:]
        loader = DataLoader(Subset(train_set, tail), batch_size=bs, shuffle=False, drop_last=config.drop_last,
                            num_workers=config.num_workers, collate_fn=collate_fn,
                            generator=torch.Generator().manual_seed(epoch_seed(config.seed, p.epoch)))
        with tqdm(loader, desc=f"epoch {p.epoch + 1}/{config.epochs}", total=steps_per_epoch,
                  initial=p.position, leave=False, disable=not main) as bar:
            for batch in bar:
                optimizer.zero_grad(set_to_none=True)
                with autocast:
                    loss, metrics = loss_fn(model, batch, generator)
                scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                # Batches are full except the epoch's last, so the batch size follows from the position.
                size = min(bs, n - p.position * bs)
                for key, value in {"loss": loss.item(), **metrics}.items():
                    p.sums[key] = p.sums.get(key, 0.0) + float(value) * size
                p.seen += size
                p.position += 1
                p.steps += 1
                bar.set_postfix(loss=f"{p.sums['loss'] / p.seen:.3f}")
                if should_stop():
                    save()
                    return result(interrupted=True)
                if deadline is not None and time.monotonic() >= deadline and p.steps < config.epochs * steps_per_epoch:
                    p.stopped_early = True
                    break
                if config.checkpoint_every and p.steps % config.checkpoint_every == 0:
                    save()
        record = {"epoch": p.epoch + 1} | {f"train/{k}": v / max(1, p.seen) for k, v in p.sums.items()}
        record["lr"] = optimizer.param_groups[0]["lr"]
        if evaluate is not None:
            model.eval()
            record |= evaluate(model)
            model.train()
        p.history.append(record)
        if p.position == steps_per_epoch:
            p.epoch, p.position, p.seen, p.sums = p.epoch + 1, 0, 0, {}
        # Callback before the checkpoint: a crash in between repeats the (identical) record on
        # resume rather than losing it.
        if on_epoch is not None and main:
            on_epoch(record["epoch"], record)
        save()
    return result(interrupted=False)


def _rng_state() -> dict[str, Any]:
    cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}
    return resumable.rng_state() | cuda


def _set_rng_state(state: dict[str, Any]) -> None:
    resumable.set_rng_state(state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
