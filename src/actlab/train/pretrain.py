"""Pretraining the population model on the pretrain users' streams (issue 2, "Model and pretraining").

`run(cfg)` is what `jobs/pretrain.py` calls: pretrain split -> shuffled epochs of verb+noun
cross-entropy (SGD or AdamW, cosine schedule with linear warmup) -> validation on the train users
-> `cfg.paths.pretrained` and `<pretrained>.metrics.json`. The loop itself is
`train_population(model, train_ds, val_ds, cfg)`, which needs no files, so tests drive it with an
in-memory data set.

Decoding a clip costs far more than a training step of the small egotoy model on CPU, so with
`cache: true` every clip is decoded once, before the first epoch, and kept in memory (float16).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm import tqdm

from actlab.atomic import atomic_write_json
from actlab.data.streams import open_split
from actlab.models.checkpoint import save_checkpoint

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
    mean = torch.tensor(list(aug.mean)).view(1, c, 1, 1, 1)
    std = torch.tensor(list(aug.std)).view(1, c, 1, 1, 1)
    gain = 1 + float(aug.gain) * (2 * torch.rand(b, 1, 1, 1, 1, generator=generator) - 1)
    cast = 1 + float(aug.cast) * (2 * torch.rand(b, c, 1, 1, 1, generator=generator) - 1)
    x = (video * std + mean) * gain * cast
    shift = int(aug.shift)
    if shift:
        dy, dx = torch.randint(-shift, shift + 1, (2, b), generator=generator).tolist()
        x = torch.stack([torch.roll(x[i], (dy[i], dx[i]), dims=(2, 3)) for i in range(b)])
    return (x - mean) / std


def loss_of(out: dict[str, Tensor], batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
    return F.cross_entropy(out["verb"], batch["verb"]), F.cross_entropy(out["noun"], batch["noun"])


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, num_workers: int = 0) -> dict[str, float]:
    """Eval-mode top-1 (verb, noun, action = both right) and mean losses over `dataset`."""
    model.eval()
    n, sums = 0, {"verb/top1": 0.0, "noun/top1": 0.0, "action/top1": 0.0, "verb/loss": 0.0, "noun/loss": 0.0}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        out = model(batch["video"])
        verb_ok = out["verb"].argmax(1) == batch["verb"]
        noun_ok = out["noun"].argmax(1) == batch["noun"]
        sums["verb/top1"] += verb_ok.sum().item()
        sums["noun/top1"] += noun_ok.sum().item()
        sums["action/top1"] += (verb_ok & noun_ok).sum().item()
        sums["verb/loss"] += F.cross_entropy(out["verb"], batch["verb"], reduction="sum").item()
        sums["noun/loss"] += F.cross_entropy(out["noun"], batch["noun"], reduction="sum").item()
        n += len(batch["verb"])
    if n == 0:
        raise ValueError("validation data set is empty")
    return {k: v / n for k, v in sums.items()} | {"n_samples": n}


def train_population(model: nn.Module, train_ds: Dataset, val_ds: Dataset | None, cfg: Any) -> dict[str, Any]:
    """Train `model` in place; returns final and per-epoch metrics.

    cfg keys: epochs, batch_size, optimizer (a `_partial_` optimizer config), warmup_epochs,
    num_workers, seed, max_minutes (null = no limit: stop at the next batch once exceeded),
    augment (null, or {gain, cast, shift, mean, std}: see `jitter`).
    """
    if len(train_ds) == 0:
        raise ValueError("pretraining data set is empty")
    generator = torch.Generator().manual_seed(int(cfg.seed))
    loader = DataLoader(train_ds, batch_size=int(cfg.batch_size), shuffle=True, drop_last=False,
                        num_workers=int(cfg.num_workers), generator=generator)
    epochs = int(cfg.epochs)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(int(cfg.warmup_epochs) * len(loader), epochs * len(loader)))
    aug = cfg.get("augment")
    deadline = None if cfg.get("max_minutes") is None else time.monotonic() + 60 * float(cfg.max_minutes)
    history, stopped_early, start = [], False, time.monotonic()
    for epoch in range(epochs):
        model.train()
        total, seen, right = 0.0, 0, {"verb": 0, "noun": 0}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for batch in bar:
            video = jitter(batch["video"], aug, generator) if aug else batch["video"]
            out = model(video)
            loss_verb, loss_noun = loss_of(out, batch)
            loss = loss_verb + loss_noun
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch["verb"])
            seen += len(batch["verb"])
            for task in right:
                right[task] += (out[task].argmax(1) == batch[task]).sum().item()
            bar.set_postfix(loss=f"{total / seen:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if deadline is not None and time.monotonic() > deadline:
                stopped_early = True
                break
        record = {"epoch": epoch + 1, "train/loss": total / max(1, seen), "lr": scheduler.get_last_lr()[0]}
        record |= {f"train/{task}/top1": n_right / max(1, seen) for task, n_right in right.items()}
        if val_ds is not None:
            record |= {f"val/{k}": v for k, v in evaluate(model, val_ds, int(cfg.batch_size)).items()}
        history.append(record)
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in record.items()})
        if stopped_early:
            log.warning("pretraining stopped after %.1f min in epoch %d (max_minutes=%s)",
                        (time.monotonic() - start) / 60, epoch + 1, cfg.max_minutes)
            break
    return {k: v for k, v in history[-1].items() if k != "epoch"} | {
        "epochs_done": history[-1]["epoch"], "stopped_early": stopped_early,
        "seconds": time.monotonic() - start, "n_train": len(train_ds),
        "history": history}


def metrics_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".metrics.json")


def run(cfg: DictConfig) -> Path:
    out = Path(cfg.paths.pretrained)
    if out.exists() and not cfg.force:
        print(f"{out}: exists, not retraining (force=true to overwrite)")
        return out
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    t0 = time.monotonic()
    train_streams = open_split(cfg.data, "pretrain")
    val_streams = open_split(cfg.data, "train")
    train_ds: Dataset = ConcatDataset([s.dataset for s in train_streams])
    val_ds: Dataset = ConcatDataset([s.dataset for s in val_streams])
    if cfg.cache:
        train_ds = MemoryDataset(train_ds, int(cfg.num_workers), "decode pretrain clips")
        val_ds = MemoryDataset(val_ds, int(cfg.num_workers), "decode validation clips")
    decode_seconds = time.monotonic() - t0
    model = instantiate(cfg.model)
    # Items are already in memory when cached: worker processes would only add pickling overhead.
    loop_cfg = OmegaConf.merge(cfg, {"num_workers": 0}) if cfg.cache else cfg
    metrics = train_population(model, train_ds, val_ds, loop_cfg)
    metrics |= {"decode_seconds": decode_seconds,
                "pretrain_users": [s.user for s in train_streams],
                "val_users": [s.user for s in val_streams],
                "chance/verb": 1 / int(cfg.data.num_verbs), "chance/noun": 1 / int(cfg.data.num_nouns)}
    final = {k: v for k, v in metrics.items() if k != "history"}
    save_checkpoint(model, out, {"metrics": final, "config": OmegaConf.to_container(cfg, resolve=True)})
    atomic_write_json(metrics_path(out), metrics)
    print(f"{out}: " + ", ".join(f"{k}={metrics[k]:.3f}" for k in
                                 ("val/verb/top1", "val/noun/top1", "val/action/top1", "train/loss")))
    return out
