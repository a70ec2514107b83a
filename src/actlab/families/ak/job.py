"""The ak family's job: one (loss, model, seed) run of the CLIP video-text classifier.

identity -> results folder (completed = no-op) -> data (the annotation files read are the run's
inputs, SHA-256, with the CLIP weights) -> model -> epochs on the shared resumable loop (AdamW,
per-step warmup-cosine, checkpoints at step boundaries; SIGUSR2/SIGTERM -> checkpoint -> requeue
-> the same summary; the batch size per epoch from `train.batch_schedule`, batches.py) -> test on
the whole test split, max over `test.views` views (the last epoch: no model selection on it; or,
with `val_fraction`, the epoch with the best mAP on a held-out part of train, selection.py)
-> summary.json, test_scores.npz, per-class AP, final_model.pt, status.json last.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from actlab.device import loop_options
from actlab import device as compute, preemption
from actlab.atomic import atomic_write_text
from actlab.families.ak import data as ak_data
from actlab.families.ak.batches import Phase, StepClock, batch_sizes, epoch_steps, fit_phases, phase_seed, phases_of
from actlab.families.ak.metrics import mean_average_precision, random_map
from actlab.families.ak.model import build_classifier, load_clip, prompts, text_embeddings
from actlab.families.ak.schedule import warmup_cosine
from actlab.families.ak.selection import BestEpoch, split_validation, validation_seed
from actlab.families.ak.video import ClipDataset, VideoSpec, augment, center_view
from actlab.job import RunSession, file_sha256, run_ranked
from actlab.results import layout
from actlab.results.store import Artifact, RunStore
from actlab.train.loop import LoopConfig, fit

log = logging.getLogger(__name__)

SCORES, PER_CLASS, MODEL = "test_scores.npz", "per_class_ap", "final_model.pt"


def video_spec(cfg: DictConfig) -> VideoSpec:
    v = cfg.video
    return VideoSpec(frames=int(v.frames), candidates=int(v.candidates), decode_size=int(v.decode_size),
                     image_size=int(v.image_size), crop_scale=tuple(float(x) for x in v.crop_scale))


def plain(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


class FeatureDataset(Dataset):
    """Frozen per-frame features of every test view of a clip data set, computed once ([V, T, F] per
    item; V = the clips' views, 1 for a training set): training without augmentation, and testing,
    need not decode or run the frozen trunk again. The trunk runs on the model's device; the
    features are kept on the CPU (the loop moves each batch)."""

    def __init__(self, clips: ClipDataset, model: nn.Module, batch_size: int) -> None:
        self.labels = clips.labels
        device = compute.module_device(model)
        feats = []
        with torch.no_grad():
            for batch in DataLoader(clips, batch_size=batch_size, shuffle=False, **compute.loader_options(device, 0)):
                frames = compute.to_device(batch["frames"], device)
                per_view = []
                for view in range(frames.shape[2]):
                    video = center_view(frames, clips.spec, view)
                    b, t = video.shape[:2]
                    images = video.reshape(b * t, *video.shape[2:])
                    per_view.append(model.encoder.frame_features(images).reshape(b, t, -1))
                feats.append(torch.stack(per_view, dim=1))
        self.feats = torch.cat(feats).cpu()

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"feats": self.feats[i], "labels": torch.from_numpy(self.labels[i].astype(np.float32)), "index": i}


def model_inputs(batch: dict[str, Any], spec: VideoSpec, generator: torch.Generator | None,
                 view: int = 0) -> dict[str, torch.Tensor]:
    """The classifier's inputs of a batch: cached features of test view `view`, or frames
    (augmented with `generator` in training, else test view `view`: frame `view` of each chunk)."""
    if "feats" in batch:
        return {"feats": batch["feats"][:, view]}
    if generator is not None:
        return {"video": augment(batch["frames"], spec, generator)}
    return {"video": center_view(batch["frames"], spec, view)}


def cosines(model, batch: dict[str, Any], spec: VideoSpec, generator: torch.Generator | None,
            view: int = 0) -> torch.Tensor:
    """The model's cosine similarities of a batch (`model_inputs`)."""
    return model(**model_inputs(batch, spec, generator, view))


def views_of(batch: dict[str, Any]) -> int:
    return int(batch["feats"].shape[1] if "feats" in batch else batch["frames"].shape[2])


@torch.no_grad()
def predict(model, dataset: Dataset, spec: VideoSpec, batch_size: int) -> np.ndarray:
    """Logits [N, C] float32 of a data set, in its order (computed on the model's device): with k
    test views per clip, the element-wise max of the k views' logits."""
    model.eval()
    device = compute.module_device(model)
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, **compute.loader_options(device, 0)):
        batch = compute.to_device(batch, device)
        z = torch.stack([model.logits(cosines(model, batch, spec, None, v)).float() for v in range(views_of(batch))])
        out.append(z.amax(dim=0))
    return torch.cat(out).cpu().numpy().astype(np.float32)


def train_and_test(cfg: DictConfig, data: ak_data.AKData, inputs: dict[str, str], state_dir: Path | None,
                   on_epoch=None, lead: bool = True) -> dict[str, Any]:
    """Everything between the data and the run's files; returns {"interrupted": True} when stopped.

    `lead=False` (a rank > 0 of several, docs/ak.md): the same model, data and `fit` calls in the
    same `state_dir`, reading its files but writing nothing (no caches, no best-epoch file, no
    phases file); returns {"trained": True} after training, without testing."""
    torch.set_num_threads(max(1, int(cfg.threads)))
    options = loop_options(cfg)
    device = compute.resolve_device(options["device"])
    log.info("ak: device %s (device=%s, precision=%s)", device, options["device"], options["precision"])
    spec = video_spec(cfg)
    table = data.table
    clip, tokenizer = load_clip(str(cfg.clip.name), str(cfg.clip.weights), cfg.clip.get("config_file"))
    clip.to(device)     # the text tower encodes the prompts there; the visual tower is the model's trunk
    texts = prompts(str(cfg.template), table.action, table.segment, table.description)
    text = text_embeddings(clip, tokenizer, texts, inputs["clip_weights"], cfg.get("text_cache"), write=lead)
    torch.manual_seed(int(cfg.seed))
    encoder_cfg = {k: v for k, v in plain(cfg.model).items() if k != "name"}
    model = build_classifier(encoder_cfg, clip, text, str(cfg.head), spec.frames)
    del clip
    model.to(device)    # before the feature cache, which runs the frozen trunk
    loss_cfg = {k: v for k, v in plain(cfg.loss).items() if k != "name"}
    # its class-count buffers (margins, DRW weights, tail mask) meet the batch on the device
    criterion = instantiate(loss_cfg, counts=table.count, epochs=int(cfg.epochs)).to(device)

    t0 = time.monotonic()
    views = int(cfg.test.views)
    train_idx, val_idx = split_validation(len(data.clips["train"]), float(cfg.val_fraction), int(cfg.seed))
    train_set = ClipDataset(data.clips["train"], data.labels["train"], data.video_dir, spec, train=bool(cfg.augment))
    test_set = ClipDataset(data.clips["test"], data.labels["test"], data.video_dir, spec, train=False, views=views)
    # the held-out part of train, seen as the test split is (its views); the training set's own
    # items are that view already when there is no augmentation and one view
    val_own = bool(val_idx) and (bool(cfg.augment) or views != 1)
    val_set = (ClipDataset([data.clips["train"][i] for i in val_idx], data.labels["train"][val_idx], data.video_dir,
                           spec, train=False, views=views) if val_own else None)
    if cfg.cache and cfg.data.get("decode_cache"):
        digest = ",".join(f"{k}={v}" for k, v in sorted(inputs.items()) if k != "clip_weights")
        train_set.fill_cache("decode train clips", cfg.data.decode_cache, digest, write=lead)
        # a follower prepares the test split too (unused): the ranks reach `fit` together, none
        # waits there on rank 0's preparation for the collectives' timeout
        test_set.fill_cache("decode test clips", cfg.data.decode_cache, digest, write=lead)
    if cfg.cache_features:
        if cfg.augment or model.encoder.trains_frozen_part:
            raise ValueError("cache_features needs augment=false and a model with a frozen trunk (clip_proj, clip_temporal)")
        train_set = FeatureDataset(train_set, model, int(cfg.eval_batch_size))
        test_set = FeatureDataset(test_set, model, int(cfg.eval_batch_size))
        val_set = FeatureDataset(val_set, model, int(cfg.eval_batch_size)) if val_set is not None else None
    elif cfg.cache:
        for name, ds in (("train", train_set), ("test", test_set), ("validation", val_set)):
            if ds is not None and ds.cache is None:
                ds.fill_cache(f"decode {name} clips")
    prepare_seconds = time.monotonic() - t0
    fit_set = Subset(train_set, train_idx) if val_idx else train_set
    if val_idx and val_set is None:
        val_set = Subset(train_set, val_idx)
    # validate runs on every rank: every rank's BestEpoch sees the same scores, so stops at the same epoch
    best = (BestEpoch(state_dir, None if cfg.get("patience") is None else int(cfg.patience), write=lead)
            if val_idx else None)

    tr = cfg.get("train") or {}
    sizes = batch_sizes(str(tr.get("batch_schedule", "constant")), int(cfg.epochs), int(cfg.batch_size),
                        int(tr.get("batch_start", 8)), int(tr.get("batch_max", 1024)), int(tr.get("batch_every", 1)))
    clock = StepClock(epoch_steps(len(fit_set), sizes))
    holder: dict[str, Any] = {}

    def make_optimizer(params):
        # one optimizer and one schedule over all phases of the batch schedule (batches.py)
        if "optimizer" not in holder:
            holder["optimizer"] = instantiate(cfg.optimizer)(params)
        return holder["optimizer"]

    def make_scheduler(optimizer, per_epoch: int, total: int):
        if "scheduler" not in holder:
            warmup = min(clock.total, clock.warmup(float(cfg.warmup_epochs)))
            holder["scheduler"] = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, clock.total))
        return holder["scheduler"]

    def steps_done() -> int:
        return holder["scheduler"].last_epoch

    def loss_fn(model, batch, generator):
        # the epoch from the scheduler's step count, which the loop checkpoints (DRW switches on it)
        epoch = clock.epoch_of(steps_done())
        y = batch["labels"]
        # one call of `model` for the logits (under DDP it is the wrapper: no `model.logits`, docs/ak.md)
        z = model(**model_inputs(batch, spec, generator if cfg.augment else None), shift=criterion.shift(y),
                  scale=criterion.scale, logits=True)
        return criterion.from_logits(z, y, epoch, generator), {}

    def validate(model) -> dict[str, float]:
        scores = predict(model, val_set, spec, int(cfg.eval_batch_size))
        val_map = mean_average_precision(data.labels["train"][val_idx], scores).metrics["map"]
        best.update(clock.epoch_of(steps_done()), val_map, model)    # called at the epoch's end
        return {"val/map": val_map}

    def should_stop() -> bool:
        return preemption.requested() or (best is not None and best.should_stop(steps_done(), clock.end_of))

    start = time.monotonic()
    budget = None if cfg.get("max_minutes") is None else float(cfg.max_minutes)

    def loop_for(phase: Phase) -> LoopConfig:
        left = None if budget is None else max(0.0, budget - (time.monotonic() - start) / 60)
        return LoopConfig(epochs=phase.epochs, batch_size=phase.batch_size, seed=phase_seed(int(cfg.seed), phase.index),
                          checkpoint_every=int(cfg.checkpoint_every or 0), num_workers=int(cfg.num_workers),
                          max_minutes=left, **options)

    result = fit_phases(fit, phases_of(sizes), state_dir, loop_for, on_epoch, write=lead, model=model,
                        train_set=fit_set, make_optimizer=make_optimizer, make_scheduler=make_scheduler,
                        loss_fn=loss_fn, evaluate=validate if val_idx else None, should_stop=should_stop)
    stopped = (result.interrupted and best is not None and best.stop_epoch is not None
               and not preemption.requested_anywhere())
    if result.interrupted and not stopped:
        return {"interrupted": True}
    if not lead:
        return {"trained": True}
    if not (result.stopped_early or stopped) and steps_done() != clock.total:
        raise RuntimeError(f"the schedule planned {clock.total} steps, the loop took {steps_done()}")
    if best is not None:
        model.load_state_dict(best.state)      # the epoch with the best validation mAP is the one tested
    train_seconds = time.monotonic() - start
    scores = predict(model, test_set, spec, int(cfg.eval_batch_size))
    segments = np.array(table.segment, dtype="U6")
    test = mean_average_precision(data.labels["test"], scores, segments)
    chance = random_map(data.labels["test"], segments, draws=int(cfg.random_draws))
    summary = {f"test/{k}": v for k, v in test.metrics.items()} | {
        "train/loss": float(result.history[-1]["train/loss"]), "test/map_random": chance["map"],
        "train/clips": float(len(fit_set)), "test/clips": float(len(test_set)), "val/clips": float(len(val_idx)),
        "epochs_done": float(result.epochs_done)}
    validation = {"fraction": float(cfg.val_fraction), "clips": len(val_idx)}
    if best is not None:
        summary |= {"val/map": best.score, "val/best_epoch": float(best.epoch)}
        validation |= {"seed": validation_seed(int(cfg.seed)), "best_epoch": best.epoch, "patience": best.patience,
                       "stopped_after_epoch": best.stop_epoch,
                       "held_out_video_ids": [data.clips["train"][i].video for i in val_idx]}
    per_class = pd.DataFrame({"index": np.arange(table.num_classes), "action": table.action, "segment": table.segment,
                              "count": table.count, "test_positives": data.labels["test"].sum(0).astype(int),
                              "ap": test.per_class})
    return {"summary": summary, "history": result.history, "model": model, "per_class": per_class,
            "scores": {"video_id": np.array([c.video for c in data.clips["test"]]),
                       "labels": data.labels["test"].astype(np.uint8), "scores": scores, "segment": segments},
            "criterion": criterion, "seconds": {"prepare": prepare_seconds, "train": train_seconds},
            "validation": validation, "test_views": views,
            "batches": {"schedule": str(tr.get("batch_schedule", "constant")), "batch_sizes": sizes,
                        "steps": clock.total}}


def run(cfg: DictConfig) -> Path:
    """One run; started as several ranks (torchrun, srun), rank 0 does what one process does and
    the others train on their shards of every batch and write nothing (`run_ranked`, docs/ak.md)."""
    from actlab.families.ak import FAMILY

    return run_ranked(cfg, FAMILY, _lead, lambda folder: _follow(cfg, folder))


def load_inputs(cfg: DictConfig) -> tuple[ak_data.AKData, dict[str, str]]:
    """The run's data and its inputs (SHA-256 of the annotation files and the CLIP weights)."""
    data = ak_data.load(cfg.data)
    inputs = {name: file_sha256(path) for name, path in data.files.items()}
    return data, inputs | {"clip_weights": file_sha256(cfg.clip.weights)}


def _lead(session: RunSession) -> Path:
    """Rank 0 (or the one process): train, test, write the run."""
    cfg = session.cfg
    data, inputs = load_inputs(cfg)
    labels = {"loss": str(cfg.loss.name), "model": str(cfg.model.name), "template": str(cfg.template)}
    with session.running(inputs, labels) as active:
        preemption.install_handlers()
        out = train_and_test(cfg, data, inputs, session.store.checkpoint_dir,
                             on_epoch=lambda epoch, record: active.log(epoch, record, "epoch"))
        if out.get("interrupted"):
            raise preemption.Preempted(session.store.folder)
        folder = session.store.folder
        # CSV for people (the store's artifact kinds have no CSV); Parquet as the typed artifact
        atomic_write_text(folder / f"{PER_CLASS}.csv", out["per_class"].to_csv(index=False))
        # timings and details stay out of summary.json, so a resumed run's summary is identical
        record = ({"mismatched_clip_labels": data.mismatches, "seconds": out["seconds"],
                   "validation": out["validation"], "test_views": out["test_views"], "batches": out["batches"]}
                  | out["criterion"].describe())
        return active.finish(out["summary"], [
            Artifact(SCORES, out["scores"]), Artifact(f"{PER_CLASS}.parquet", out["per_class"]),
            Artifact(layout.CURVES, pd.DataFrame(out["history"])), Artifact("details.json", record),
            Artifact(MODEL, out["model"].state_dict())])


def _follow(cfg: DictConfig, folder: Path) -> None:
    """A rank > 0: the same training in rank 0's checkpoint folders, writing nothing."""
    data, inputs = load_inputs(cfg)
    preemption.install_handlers()
    if train_and_test(cfg, data, inputs, RunStore(folder).checkpoint_dir, lead=False).get("interrupted"):
        raise preemption.Preempted(folder)
