"""The ak family's job: one (loss, model, seed) run of the CLIP video-text classifier.

identity -> results folder (completed = no-op) -> data (the annotation files read are the run's
inputs, SHA-256, with the CLIP weights) -> model -> epochs on the shared resumable loop (AdamW,
per-step warmup-cosine, checkpoints at step boundaries; SIGUSR2/SIGTERM -> checkpoint -> requeue
-> the same summary) -> test on the whole test split (the last epoch: no model selection on it)
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
from actlab.families.ak.metrics import mean_average_precision, random_map
from actlab.families.ak.model import build_classifier, load_clip, prompts, text_embeddings
from actlab.families.ak.schedule import warmup_cosine
from actlab.families.ak.video import ClipDataset, VideoSpec, augment, center_view
from actlab.job import RunSession, file_sha256
from actlab.results import layout
from actlab.results.store import Artifact
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
    """Frozen per-frame features of a clip data set's test view, computed once ([T, F] per item):
    training without augmentation does not need to decode or run the frozen trunk again. The trunk
    runs on the model's device; the features are kept on the CPU (the loop moves each batch)."""

    def __init__(self, clips: ClipDataset, model: nn.Module, batch_size: int) -> None:
        self.labels = clips.labels
        device = compute.module_device(model)
        feats = []
        with torch.no_grad():
            for batch in DataLoader(clips, batch_size=batch_size, shuffle=False, **compute.loader_options(device, 0)):
                video = center_view(compute.to_device(batch["frames"], device), clips.spec)
                b, t = video.shape[:2]
                feats.append(model.encoder.frame_features(video.reshape(b * t, *video.shape[2:])).reshape(b, t, -1))
        self.feats = torch.cat(feats).cpu()

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"feats": self.feats[i], "labels": torch.from_numpy(self.labels[i].astype(np.float32)), "index": i}


def cosines(model, batch: dict[str, Any], spec: VideoSpec, generator: torch.Generator | None) -> torch.Tensor:
    """The model's cosine similarities of a batch: cached features, or frames (augmented with
    `generator` in training, the centre view otherwise)."""
    if "feats" in batch:
        return model.from_features(batch["feats"])
    video = augment(batch["frames"], spec, generator) if generator is not None else center_view(batch["frames"], spec)
    return model(video)


@torch.no_grad()
def predict(model, dataset: Dataset, spec: VideoSpec, batch_size: int) -> np.ndarray:
    """Logits [N, C] float32 of a data set, in its order (computed on the model's device)."""
    model.eval()
    device = compute.module_device(model)
    out = [model.logits(cosines(model, compute.to_device(batch, device), spec, None)).float()
           for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, **compute.loader_options(device, 0))]
    return torch.cat(out).cpu().numpy().astype(np.float32)


def split_validation(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: a seeded `fraction` of the training clips held out."""
    if fraction <= 0:
        return list(range(n)), []
    order = np.random.default_rng([seed, 7]).permutation(n)
    k = max(1, round(fraction * n))
    return sorted(order[k:].tolist()), sorted(order[:k].tolist())


def train_and_test(cfg: DictConfig, data: ak_data.AKData, inputs: dict[str, str], state_dir: Path | None,
                   on_epoch=None) -> dict[str, Any]:
    """Everything between the data and the run's files; returns {"interrupted": True} when stopped."""
    torch.set_num_threads(max(1, int(cfg.threads)))
    options = loop_options(cfg)
    device = compute.resolve_device(options["device"])
    log.info("ak: device %s (device=%s, precision=%s)", device, options["device"], options["precision"])
    spec = video_spec(cfg)
    table = data.table
    clip, tokenizer = load_clip(str(cfg.clip.name), str(cfg.clip.weights), cfg.clip.get("config_file"))
    clip.to(device)     # the text tower encodes the prompts there; the visual tower is the model's trunk
    texts = prompts(str(cfg.template), table.action, table.segment, table.description)
    text = text_embeddings(clip, tokenizer, texts, inputs["clip_weights"], cfg.get("text_cache"))
    torch.manual_seed(int(cfg.seed))
    encoder_cfg = {k: v for k, v in plain(cfg.model).items() if k != "name"}
    model = build_classifier(encoder_cfg, clip, text, str(cfg.head), spec.frames)
    del clip
    model.to(device)    # before the feature cache, which runs the frozen trunk
    loss_cfg = {k: v for k, v in plain(cfg.loss).items() if k != "name"}
    # its class-count buffers (margins, DRW weights, tail mask) meet the batch on the device
    criterion = instantiate(loss_cfg, counts=table.count, epochs=int(cfg.epochs)).to(device)

    t0 = time.monotonic()
    train_set = ClipDataset(data.clips["train"], data.labels["train"], data.video_dir, spec, train=bool(cfg.augment))
    test_set = ClipDataset(data.clips["test"], data.labels["test"], data.video_dir, spec, train=False)
    if cfg.cache and cfg.data.get("decode_cache"):
        digest = ",".join(f"{k}={v}" for k, v in sorted(inputs.items()) if k != "clip_weights")
        train_set.fill_cache("decode train clips", cfg.data.decode_cache, digest)
        test_set.fill_cache("decode test clips", cfg.data.decode_cache, digest)
    if cfg.cache_features:
        if cfg.augment or model.encoder.trains_frozen_part:
            raise ValueError("cache_features needs augment=false and a model with a frozen trunk (clip_proj, clip_temporal)")
        train_set = FeatureDataset(train_set, model, int(cfg.eval_batch_size))
        test_set = FeatureDataset(test_set, model, int(cfg.eval_batch_size))
    elif cfg.cache and train_set.cache is None:
        train_set.fill_cache("decode train clips")
        test_set.fill_cache("decode test clips")
    prepare_seconds = time.monotonic() - t0
    train_idx, val_idx = split_validation(len(train_set), float(cfg.val_fraction), int(cfg.seed))
    fit_set = Subset(train_set, train_idx) if val_idx else train_set

    holder: dict[str, Any] = {}

    def make_scheduler(optimizer, per_epoch: int, total: int):
        warmup = min(total, int(round(float(cfg.warmup_epochs) * per_epoch)))
        holder.update(per_epoch=per_epoch, total=total,
                      scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total)))
        return holder["scheduler"]

    def loss_fn(model, batch, generator):
        # the epoch from the scheduler's step count, which the loop checkpoints (DRW switches on it)
        epoch = holder["scheduler"].last_epoch // holder["per_epoch"]
        cos = cosines(model, batch, spec, generator if cfg.augment else None)
        return criterion(cos, batch["labels"], model, epoch, generator), {}

    def validate(model) -> dict[str, float]:
        held = Subset(train_set, val_idx)
        scores = predict(model, held, spec, int(cfg.eval_batch_size))
        return {"val/map": mean_average_precision(data.labels["train"][val_idx], scores).metrics["map"]}

    loop = LoopConfig(epochs=int(cfg.epochs), batch_size=int(cfg.batch_size), seed=int(cfg.seed),
                      checkpoint_every=int(cfg.checkpoint_every or 0), num_workers=int(cfg.num_workers),
                      max_minutes=None if cfg.get("max_minutes") is None else float(cfg.max_minutes), **options)
    start = time.monotonic()
    result = fit(model, fit_set, config=loop, make_optimizer=instantiate(cfg.optimizer), make_scheduler=make_scheduler,
                 loss_fn=loss_fn, evaluate=validate if val_idx else None, state_dir=state_dir, on_epoch=on_epoch)
    if result.interrupted:
        return {"interrupted": True}
    if not result.stopped_early and holder["scheduler"].last_epoch != holder["total"]:
        raise RuntimeError(f"the schedule planned {holder['total']} steps, the loop took {holder['scheduler'].last_epoch}")
    train_seconds = time.monotonic() - start
    scores = predict(model, test_set, spec, int(cfg.eval_batch_size))
    segments = np.array(table.segment, dtype="U6")
    test = mean_average_precision(data.labels["test"], scores, segments)
    chance = random_map(data.labels["test"], segments, draws=int(cfg.random_draws))
    summary = {f"test/{k}": v for k, v in test.metrics.items()} | {
        "train/loss": float(result.history[-1]["train/loss"]), "test/map_random": chance["map"],
        "train/clips": float(len(fit_set)), "test/clips": float(len(test_set)), "val/clips": float(len(val_idx)),
        "epochs_done": float(result.epochs_done)}
    if val_idx:
        summary["val/map"] = float(result.history[-1]["val/map"])
    per_class = pd.DataFrame({"index": np.arange(table.num_classes), "action": table.action, "segment": table.segment,
                              "count": table.count, "test_positives": data.labels["test"].sum(0).astype(int),
                              "ap": test.per_class})
    return {"summary": summary, "history": result.history, "model": model, "per_class": per_class,
            "scores": {"video_id": np.array([c.video for c in data.clips["test"]]),
                       "labels": data.labels["test"].astype(np.uint8), "scores": scores, "segment": segments},
            "criterion": criterion, "seconds": {"prepare": prepare_seconds, "train": train_seconds}}


def run(cfg: DictConfig) -> Path:
    from actlab.families.ak import FAMILY

    session = RunSession(cfg, FAMILY)
    with session.lease():
        if session.store.is_completed():
            print(f"{session.store.folder}: already completed, nothing to do")
            return session.store.folder
        data = ak_data.load(cfg.data)
        weights_sha = file_sha256(cfg.clip.weights)
        inputs = {name: file_sha256(path) for name, path in data.files.items()} | {"clip_weights": weights_sha}
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
            record = ({"mismatched_clip_labels": data.mismatches, "seconds": out["seconds"]}
                      | out["criterion"].describe())
            return active.finish(out["summary"], [
                Artifact(SCORES, out["scores"]), Artifact(f"{PER_CLASS}.parquet", out["per_class"]),
                Artifact(layout.CURVES, pd.DataFrame(out["history"])), Artifact("details.json", record),
                Artifact(MODEL, out["model"].state_dict())])
