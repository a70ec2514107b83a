"""The pretrain family's job: the population model on the pretrain users' streams.

`run(cfg)` is what `jobs/pretrain.py` and the launcher call: pretrain split -> epochs of verb+noun
cross-entropy on the shared resumable loop (actlab.train.loop: SGD or AdamW, cosine schedule with
linear warmup, checkpoints at step boundaries, SIGUSR2/SIGTERM -> checkpoint -> requeue -> the
same result) -> validation on the train users after every epoch -> the run folder (summary,
per-epoch curves, weights) and, with `export_to`, a checkpoint the stream jobs load plus
`<checkpoint>.metrics.json`. `train_population(model, train_ds, val_ds, cfg)` needs no files,
so tests drive it with an in-memory data set.

Decoding a clip costs far more than a training step of the small egotoy model on CPU, so with
`cache: true` every clip is decoded once, before the first epoch, and kept in memory (float16).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset
import pandas as pd
from tqdm import tqdm

from actlab import device as compute, preemption
from actlab.atomic import atomic_write_json
from actlab.families.continual.data.user_streams import open_split
from actlab.families.continual.models.weights import load_checkpoint, save_checkpoint
from actlab.job import RunSession, file_sha256, run_ranked
from actlab.results import layout
from actlab.results.store import Artifact, RunStore
from actlab.train.loop import LoopConfig, fit

WEIGHTS = "model.pt"    # the run's final weights (an artifact); `export_to` gets a loadable checkpoint

log = logging.getLogger(__name__)


class MemoryDataset(Dataset):
    """Items of another map-style dataset, decoded once (videos stored as float16)."""

    def __init__(self, source: Dataset, num_workers: int = 0, desc: str = "decode") -> None:
        loader = DataLoader(source, batch_size=None, shuffle=False, num_workers=num_workers)
        self.items = []
        for item in tqdm(loader, desc=desc, total=len(source), leave=False):
            self.items.append(dict(item, video=item["video"].to(torch.float16)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        return dict(item, video=item["video"].float())


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR factor: linear warmup from 1/warmup to 1, then cosine decay to 0 at `total_steps`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def jitter(video: Tensor, aug: Any, generator: torch.Generator) -> Tensor:
    """Random per-clip lighting, colour cast and translation of a normalised batch [B,C,T,H,W].

    Validation users live in homes (lighting, camera colour cast, object position) that no
    pretrain user has; varying those during pretraining keeps the model from keying on them.
    """
    b, c = video.shape[:2]
    # Draws on the loop's CPU generator (checkpointed), applied wherever the batch lives.
    mean = torch.tensor(list(aug.mean), device=video.device).view(1, c, 1, 1, 1)
    std = torch.tensor(list(aug.std), device=video.device).view(1, c, 1, 1, 1)
    gain = 1 + float(aug.gain) * (2 * torch.rand(b, 1, 1, 1, 1, generator=generator).to(video.device) - 1)
    cast = 1 + float(aug.cast) * (2 * torch.rand(b, c, 1, 1, 1, generator=generator).to(video.device) - 1)
    x = (video * std + mean) * gain * cast
    shift = int(aug.shift)
    if shift:
        dy, dx = torch.randint(-shift, shift + 1, (2, b), generator=generator).tolist()
        x = torch.stack([torch.roll(x[i], (dy[i], dx[i]), dims=(2, 3)) for i in range(b)])
    return (x - mean) / std


def loss_of(out: dict[str, Tensor], batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
    return F.cross_entropy(out["verb"], batch["verb"]), F.cross_entropy(out["noun"], batch["noun"])


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, num_workers: int = 0,
             precision: str = "fp32") -> dict[str, float]:
    """Eval-mode top-1 (verb, noun, action = both right) and mean losses over `dataset`, computed
    where the model is (sums stay on the device; one host read at the end)."""
    model.eval()
    device = compute.module_device(model)
    keys = ("verb/top1", "noun/top1", "action/top1", "verb/loss", "noun/loss")
    n, sums = 0, torch.zeros(len(keys), dtype=torch.float64, device=device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, **compute.loader_options(device, num_workers))
    for batch in loader:
        batch = compute.to_device(batch, device)
        with compute.autocast(device, precision):
            out = model(batch["video"])
        verb_ok = out["verb"].argmax(1) == batch["verb"]
        noun_ok = out["noun"].argmax(1) == batch["noun"]
        sums += torch.stack([verb_ok.sum(), noun_ok.sum(), (verb_ok & noun_ok).sum(),
                             F.cross_entropy(out["verb"].float(), batch["verb"], reduction="sum"),
                             F.cross_entropy(out["noun"].float(), batch["noun"], reduction="sum")]).double()
        n += len(batch["verb"])
    if n == 0:
        raise ValueError("validation data set is empty")
    return dict(zip(keys, (sums / n).tolist())) | {"n_samples": n}


def train_population(model: nn.Module, train_ds: Dataset, val_ds: Dataset | None, cfg: Any, *,
                     state_dir: Path | None = None,
                     on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train `model` in place on the shared resumable loop; returns final and per-epoch metrics.

    cfg keys: epochs, batch_size, optimizer (a `_partial_` optimizer config), warmup_epochs,
    num_workers, seed, max_minutes (null = no limit: stop at the next batch once exceeded),
    augment (null, or {gain, cast, shift, mean, std}: see `jitter`), checkpoint_every (steps),
    and optionally device, precision, deterministic, prefetch_factor (configs/run.yaml).
    With `state_dir`, a run stopped by a preemption signal returns {"interrupted": True} and the
    next call continues from the checkpoint to the same result.
    """
    aug = cfg.get("augment")

    def loss_fn(model: nn.Module, batch: dict[str, Any], generator: torch.Generator):
        video = jitter(batch["video"], aug, generator) if aug else batch["video"]
        out = model(video)
        loss_verb, loss_noun = loss_of(out, batch)
        # 0-dim tensors: the loop sums them on the device, no sync per step
        return loss_verb + loss_noun, {f"{task}/top1": (out[task].argmax(1) == batch[task]).float().mean()
                                       for task in ("verb", "noun")}

    precision = str(cfg.get("precision") or "fp32")

    def validate(model: nn.Module) -> dict[str, float]:
        return {f"val/{k}": v for k, v in evaluate(model, val_ds, int(cfg.batch_size), precision=precision).items()}

    loop = LoopConfig(epochs=int(cfg.epochs), batch_size=int(cfg.batch_size), seed=int(cfg.seed),
                      checkpoint_every=int(cfg.get("checkpoint_every") or 0), num_workers=int(cfg.num_workers),
                      max_minutes=None if cfg.get("max_minutes") is None else float(cfg.max_minutes),
                      device=cfg.get("device"), precision=precision,
                      deterministic=cfg.get("deterministic"), prefetch_factor=cfg.get("prefetch_factor"))
    start = time.monotonic()
    result = fit(model, train_ds, config=loop, make_optimizer=instantiate(cfg.optimizer),
                 make_scheduler=lambda opt, per_epoch, total: torch.optim.lr_scheduler.LambdaLR(
                     opt, warmup_cosine(int(cfg.warmup_epochs) * per_epoch, total)),
                 loss_fn=loss_fn, evaluate=validate if val_ds is not None else None,
                 state_dir=state_dir, on_epoch=on_epoch)
    if result.interrupted:
        return {"interrupted": True}
    last = result.history[-1]
    if result.stopped_early:
        log.warning("pretraining stopped after %.1f min in epoch %d (max_minutes=%s)",
                    (time.monotonic() - start) / 60, last["epoch"], cfg.max_minutes)
    return {k: v for k, v in last.items() if k != "epoch"} | {
        "epochs_done": last["epoch"], "stopped_early": result.stopped_early,
        "seconds": time.monotonic() - start, "n_train": len(train_ds), "history": result.history}


def metrics_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".metrics.json")


def run(cfg: DictConfig) -> Path:
    """One pretraining run in the results store; with `export_to`, its weights also go there
    (`make pretrain`, the continual pipeline's pretrain step), unless they exist and not `force`.

    Started as several ranks (torchrun, or srun with `resources.gpus_per_task` > 1), rank 0 holds
    the run folder's lease and alone writes the store, W&B, checkpoints and the export; the other
    ranks train on their shards of every batch (actlab.train.loop) and read the same checkpoint."""
    from actlab.families.pretrain import FAMILY

    export = Path(cfg.export_to) if cfg.get("export_to") else None
    if export is not None and export.exists() and not cfg.force:
        print(f"{export}: exists, not retraining (force=true to overwrite)")
        return export
    folder = run_ranked(cfg, FAMILY, _lead, lambda folder: _follow(cfg, folder))
    if export is None or not compute.ranks_from_env().main:
        return folder
    return _export(cfg, RunStore(folder), export)


def _lead(session: RunSession) -> Path:
    """Rank 0 (or the one process): train, write the run."""
    cfg = session.cfg
    # determinism before any CUDA call
    placement = compute.setup(cfg, workers=cfg.num_workers, local_rank=compute.ranks_from_env().local_rank)
    train_streams = open_split(cfg.data, "pretrain")
    val_streams = open_split(cfg.data, "train")
    inputs = ({f"pretrain/{s.user}": s.sha256 for s in train_streams}
              | {f"val/{s.user}": s.sha256 for s in val_streams})
    if cfg.init_from:
        inputs["init_from"] = file_sha256(cfg.init_from)
    with session.running(inputs, labels={}) as active:
        model, train_ds, val_ds, decode_seconds, loop_cfg = _build(cfg, placement, train_streams, val_streams)
        preemption.install_handlers()
        metrics = train_population(model, train_ds, val_ds, loop_cfg, state_dir=session.store.checkpoint_dir,
                                   on_epoch=lambda epoch, record: active.log(epoch, record, "epoch"))
        if metrics.get("interrupted"):
            raise preemption.Preempted(session.store.folder)
        history = metrics.pop("history")
        metrics |= {"decode_seconds": decode_seconds,
                    "chance/verb": 1 / int(cfg.data.num_verbs), "chance/noun": 1 / int(cfg.data.num_nouns)}
        summary = {k: float(v) for k, v in metrics.items()}
        return active.finish(summary, [Artifact(layout.CURVES, pd.DataFrame(history)),
                                       Artifact(WEIGHTS, model.state_dict())])


def _build(cfg: DictConfig, placement: compute.Compute, train_streams: list, val_streams: list
           ) -> tuple[nn.Module, Dataset, Dataset, float, DictConfig]:
    """The model, the (decoded) data sets and the loop's config, the same on every rank."""
    # The model first: a checkpoint that does not fit stops the job before hours of decoding.
    torch.manual_seed(int(cfg.seed))
    model = instantiate(cfg.model)
    if cfg.init_from:
        # The backbone must load completely; heads of another label space (Kinetics) start afresh.
        report = load_checkpoint(model, cfg.init_from)
        (log.warning if report.new_heads else log.info)("initial weights: %s", report)
    t0 = time.monotonic()
    train_ds: Dataset = ConcatDataset([s.dataset for s in train_streams])
    val_ds: Dataset = ConcatDataset([s.dataset for s in val_streams])
    if cfg.cache:
        train_ds = MemoryDataset(train_ds, placement.workers, "decode pretrain clips")
        val_ds = MemoryDataset(val_ds, placement.workers, "decode validation clips")
    decode_seconds = time.monotonic() - t0
    # Items are already in memory when cached: worker processes would only add pickling overhead.
    loop_cfg = OmegaConf.merge(cfg, {"num_workers": 0 if cfg.cache else placement.workers,
                                     "device": str(placement.device)})
    return model, train_ds, val_ds, decode_seconds, loop_cfg


def _follow(cfg: DictConfig, folder: Path) -> None:
    """A rank > 0: train on its shards, resume from rank 0's checkpoint, write nothing."""
    placement = compute.setup(cfg, workers=cfg.num_workers, local_rank=compute.ranks_from_env().local_rank)
    model, train_ds, val_ds, _, loop_cfg = _build(cfg, placement, open_split(cfg.data, "pretrain"),
                                                  open_split(cfg.data, "train"))
    preemption.install_handlers()
    metrics = train_population(model, train_ds, val_ds, loop_cfg, state_dir=RunStore(folder).checkpoint_dir)
    if metrics.get("interrupted"):
        raise preemption.Preempted(folder)


def _export(cfg: DictConfig, store: RunStore, export: Path) -> Path:
    """The run's weights as a checkpoint the stream jobs load, and `<export>.metrics.json`."""
    model = instantiate(cfg.model)
    model.load_state_dict(store.read(WEIGHTS))
    summary, record = store.summary(), store.record()
    history = store.read(layout.CURVES).to_dict("records")
    save_checkpoint(model, export, {"metrics": summary, "run": str(store.folder)})
    atomic_write_json(metrics_path(export), summary | {
        "history": history, "run": str(store.folder),
        **{f"{split}_users": sorted(k.split("/", 1)[1] for k in record["inputs"] if k.startswith(f"{split}/"))
           for split in ("pretrain", "val")},
    })
    print(f"{export}: " + ", ".join(f"{k}={summary[k]:.3f}" for k in
                                    ("val/verb/top1", "val/noun/top1", "val/action/top1", "train/loss")))
    return export
