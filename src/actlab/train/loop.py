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

Device (`config.device`, docs/gpu.md): `auto|cpu|cuda[:i]` moves the model once and every batch as
it arrives (pinned memory and non-blocking copies on CUDA); None keeps the model where the caller
put it. Loss and metric sums stay on the device (float64) and are read once per epoch.

Several processes (DDP): when a process group is initialised (`actlab.device.init_distributed`,
torchrun or srun), each global batch of the epoch permutation is split into contiguous,
near-equal shards, one per rank; every rank's loss is weighted by its shard's share, so the
averaged gradient is the gradient of the global batch's mean loss, as one process computes it.
The permutation, the position and every rank's RNG and generator state are in the checkpoint,
which only rank 0 writes; the stop decision (preemption, time budget) is agreed by all ranks.
Random draws inside `loss_fn` (dropout, augmentation) are per rank, so one process and several
give the same result for a deterministic `loss_fn` and models without batch statistics.
"""
from __future__ import annotations

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
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from actlab import device as compute, preemption, resumable
from actlab.device import PRECISIONS

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
    device: str | None = None          # auto | cpu | cuda | cuda:<i>; None = where the model already is
    deterministic: bool | None = None  # True: deterministic kernels; False: cuDNN benchmark; None: as set
    prefetch_factor: int | None = None # batches each loader worker prepares ahead (None: torch's 2)
    # DDP sends rank 0's buffers (BatchNorm statistics) to every rank before each forward; False
    # where that traffic is large and the ranks keep equal buffers themselves (a momentum queue)
    broadcast_buffers: bool = True

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
    sums: dict[str, Tensor] = field(default_factory=dict)  # sample-weighted sums of loss, metrics (float64, on device)
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


def rank_batches(tail: list[int], batch_size: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> list[list[int]]:
    """This rank's share of each global batch of `tail` (the epoch permutation from the current
    position): global batch b = tail[b*bs:(b+1)*bs], cut into `world_size` contiguous shards whose
    sizes differ by at most one; rank r takes shard r. One process gets the global batches."""
    batches = [tail[i:i + batch_size] for i in range(0, len(tail), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return [b[rank * len(b) // world_size:(rank + 1) * len(b) // world_size] for b in batches]


def fit(model: nn.Module, train_set: Dataset, *, config: LoopConfig,
        make_optimizer: Callable[[Any], Optimizer],
        make_scheduler: Callable[[Optimizer, int, int], LRScheduler | None] | None = None,
        loss_fn: LossFn, evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        state_dir: str | Path | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None) -> FitResult:
    """Train `model` in place, from the start or from the checkpoint in `state_dir`.

    `loss_fn(module, batch, generator)` gets the batch on the loop's device (tensors of nested
    dicts/lists moved; a CUDA-aware loss_fn may still move it, a no-op) and returns the loss and
    sample-averaged metrics of the batch, as floats or 0-dim tensors (tensors keep the step free
    of device syncs); under DDP `module` is the DistributedDataParallel wrapper: call it, do not
    reach into its attributes. `make_scheduler(optimizer, steps_per_epoch, total_steps)` builds a
    scheduler stepped after every optimizer step; `evaluate(model)` runs in eval mode after each
    epoch (on every rank, on the unwrapped model) and owns its no_grad and its batches' device;
    `on_epoch(epoch, record)` runs on rank 0.
    """
    n, bs = len(train_set), config.batch_size
    if n == 0:
        raise ValueError("train_set is empty: nothing to train on")
    steps_per_epoch = n // bs if config.drop_last else math.ceil(n / bs)
    if steps_per_epoch == 0:
        raise ValueError(f"train_set has {n} samples, fewer than batch_size={bs} with drop_last: no batch")
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    smallest = bs if config.drop_last or n % bs == 0 else n % bs
    if smallest < world:
        raise ValueError(f"{world} ranks but a global batch of {smallest} sample(s) (n={n}, batch_size={bs}): "
                         f"every rank needs a sample of every batch; use drop_last or another batch size")
    should_stop = should_stop or preemption.requested
    main = is_main_process()
    if config.deterministic is not None:
        compute.set_determinism(config.deterministic)    # before the first CUDA call
    if config.device is None:
        device = compute.module_device(model)
    else:
        device = compute.resolve_device(config.device, compute.ranks_from_env().local_rank if distributed else None)
        model.to(device)
    trained: nn.Module = model
    control = None
    if distributed:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                                      broadcast_buffers=config.broadcast_buffers)
        # Stop decisions and checkpoint gathering are CPU-side; a gloo group keeps them off the GPU stream.
        control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    optimizer = make_optimizer(model.parameters())
    scheduler = make_scheduler(optimizer, steps_per_epoch, config.epochs * steps_per_epoch) if make_scheduler else None
    scaler = compute.grad_scaler(device, config.precision)
    generator = torch.Generator().manual_seed(config.seed)
    # What the data order and the schedule depend on: a checkpoint of another plan cannot continue.
    plan = {"samples": n, "batch_size": bs, "drop_last": config.drop_last, "seed": config.seed,
            "epochs": config.epochs, "precision": config.precision, "world_size": world}
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
        own = state["ranks"][rank] if distributed else state
        generator.set_state(own["generator"])
        _set_rng_state(own["rng"])
        progress = _Progress(**state["progress"])
    # Sample-weighted sums live on the device (float64: the same additions as python floats).
    progress.sums = {k: torch.as_tensor(v, dtype=torch.float64).to(device) for k, v in progress.sums.items()}

    def agree(*flags: bool) -> list[bool]:
        """Every rank's decision is the OR over ranks, so all stop (and checkpoint) at one step."""
        if not distributed:
            return list(flags)
        t = torch.tensor([int(f) for f in flags])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=control)
        return [bool(x) for x in t.tolist()]

    def save() -> None:
        if state_dir is None:
            return
        own = {"generator": generator.get_state(), "rng": _rng_state()}
        ranks = None
        if distributed:
            ranks = [None] * world
            dist.all_gather_object(ranks, own, group=control)
        if main:
            resumable.save(Path(state_dir), {
                "plan": plan, "progress": asdict(progress) | {"sums": {k: v.cpu() for k, v in progress.sums.items()}},
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None, **own, "ranks": ranks})
        if distributed:
            dist.barrier(group=control)   # no rank leaves (and exits for a requeue) before the file exists

    def result(interrupted: bool) -> FitResult:
        return FitResult(interrupted, list(progress.history), progress.steps, progress.epoch, progress.stopped_early)

    deadline = None if config.max_minutes is None else time.monotonic() + 60 * config.max_minutes
    cast = compute.autocast(device, config.precision)
    loader_kw = compute.loader_options(device, config.num_workers, config.prefetch_factor)
    model.train()
    while progress.epoch < config.epochs and not progress.stopped_early:
        p = progress
        # The permutation's tail from the current position: a resumed epoch gets exactly the
        # batches an uninterrupted one had left. The loader's own generator (worker seeds) keeps
        # building the iterator from drawing on the global RNG.
        tail = epoch_order(n, config.seed, p.epoch)[p.position * bs:]
        loader = DataLoader(train_set, batch_sampler=rank_batches(tail, bs, rank, world, config.drop_last),
                            collate_fn=collate_fn, **loader_kw,
                            generator=torch.Generator().manual_seed(epoch_seed(config.seed, p.epoch)))
        with tqdm(loader, desc=f"epoch {p.epoch + 1}/{config.epochs}", total=steps_per_epoch,
                  initial=p.position, leave=False, disable=not main) as bar:
            for batch in bar:
                # Batches are full except the epoch's last, so the batch size follows from the position.
                size = min(bs, n - p.position * bs)
                local = size * (rank + 1) // world - size * rank // world
                batch = compute.to_device(batch, device)
                optimizer.zero_grad(set_to_none=True)
                with cast:
                    loss, metrics = loss_fn(trained, batch, generator)
                # DDP averages the ranks' gradients; weighting each by its shard's share makes the
                # average the gradient of the global batch's mean loss.
                scaler.scale(loss * (local * world / size) if distributed else loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                values = {"loss": loss, **metrics}
                sums = torch.stack([_scalar(v, device) for v in values.values()]) * (local if distributed else size)
                if distributed:
                    dist.all_reduce(sums)
                for key, value in zip(values, sums):
                    p.sums[key] = p.sums[key] + value if key in p.sums else value
                p.seen += size
                p.position += 1
                p.steps += 1
                over = deadline is not None and time.monotonic() >= deadline
                stop, over = agree(should_stop(), over)
                if stop:
                    save()
                    return result(interrupted=True)
                if over and p.steps < config.epochs * steps_per_epoch:
                    p.stopped_early = True
                    break
                if config.checkpoint_every and p.steps % config.checkpoint_every == 0:
                    save()
        # The one host read of the sums per epoch.
        record = {"epoch": p.epoch + 1} | {f"train/{k}": float(v) / max(1, p.seen) for k, v in p.sums.items()}
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


def _scalar(value: Tensor | float, device: torch.device) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().to(device=device, dtype=torch.float64).reshape(())
    return torch.tensor(float(value), dtype=torch.float64, device=device)


def _rng_state() -> dict[str, Any]:
    cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}
    return resumable.rng_state() | cuda


def _set_rng_state(state: dict[str, Any]) -> None:
    resumable.set_rng_state(state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
