"""The skel family's job: one (benchmark split, variant, seed) run on the shared resumable loop.

`run(cfg)` (jobs/skel.py, the launcher): load the split's train and val ("val" is the test split)
annotations -> the variant's model -> `actlab.train.loop.fit` (checkpoints at step boundaries;
SIGUSR2/SIGTERM -> checkpoint -> requeue; the model's state_dict carries the momentum model, the
queues with labels and pointer, the step counter) -> test-split scores after every epoch -> the run
folder: summary.json, predictions.parquet, scores.npy, curves.parquet. `prepare(cfg)` is the
pipeline's step before the arrays: it writes the embedded `ntutoy` set when it is missing.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch import nn

from actlab.device import loop_options
from actlab import preemption, resumable
from actlab.atomic import atomic_write
from actlab.device import resolve_device
from actlab.errors import DataError
from actlab.families.skel import ntutoy
from actlab.families.skel.data import TestClips, TrainClips, load_split
from actlab.families.skel.model import VARIANTS, CEModel, ModelConfig, SkelTextModel
from actlab.families.skel.pipeline import PipelineConfig
from actlab.families.skel.text import TextTower
from actlab.families.skel.train import make_optimizer, metrics_of, step_loss, test_scores, warmup_cosine
from actlab.job import RunSession, file_sha256
from actlab.results import layout
from actlab.results.store import Artifact
from actlab.train.loop import LoopConfig, fit

SCORES = "scores.npy"
log = logging.getLogger(__name__)


def dataset_of(cfg: DictConfig, split: str) -> tuple[DictConfig, str]:
    """(the dataset's config, the pickle's protocol) of a benchmark split such as `ntu60_xsub`."""
    name, _, protocol = split.partition("_")
    if name not in cfg.datasets or not protocol:
        raise DataError(f"split: {split!r} is not <dataset>_<protocol> with a dataset in {sorted(cfg.datasets)}")
    return cfg.datasets[name], protocol


def prepare(cfg: DictConfig) -> list[Path]:
    """Generate every embedded data set the experiment's splits read, unless it is complete."""
    written = []
    for split in cfg.splits:
        ds, _ = dataset_of(cfg, str(split))
        if not ds.get("generate"):
            continue
        root = Path(ds.pickle).parent
        if ntutoy.is_complete(root):
            print(f"{root}: ntutoy present, not regenerating")
            continue
        written.append(ntutoy.generate(root, seed=int(ds.generate_seed)))
        print(f"{written[-1]}: ntutoy written")
    return written


def pipeline_config(p: DictConfig) -> PipelineConfig:
    return PipelineConfig(clip_len=int(p.clip_len), short_side=int(p.short_side), train_size=int(p.train_size),
                          test_size=int(p.test_size), num_test_clips=int(p.num_test_clips), sigma=float(p.sigma))


def build_model(cfg: DictConfig, class_names: list[str]) -> nn.Module:
    m = cfg.model
    mcfg = ModelConfig(loss=str(cfg.loss.name), base=int(m.base), blocks=tuple(m.blocks), hidden=int(m.hidden),
                       embed=int(m.embed), dropout=float(m.dropout), temp=float(m.temp),
                       fusion_layers=int(m.fusion_layers), queue_size=int(m.queue_size),
                       momentum=float(m.momentum), pacl_embedder=str(m.pacl_embedder),
                       pacl_weighting=str(m.pacl_weighting), seed=int(cfg.seed))
    if mcfg.loss not in VARIANTS:
        raise ValueError(f"loss.name must be one of {VARIANTS}, got {mcfg.loss!r}")
    if mcfg.loss == "ce":
        return CEModel(mcfg, len(class_names))
    t = cfg.text
    tower = (TextTower.pretrained(str(t.arch), cfg.paths.clip_text_weights) if t.pretrained
             else TextTower(width=int(t.width), layers=int(t.layers), heads=int(t.heads),
                            context_length=int(t.context_length), embed_dim=int(t.embed_dim)))
    if t.frozen:
        tower.requires_grad_(False)
    model = SkelTextModel(mcfg, tower, class_names)
    if mcfg.loss == "itc_mom":
        # the momentum copies start equal to the (freshly built) online model
        model.video_m.load_state_dict(model.video.state_dict())
        model.text_m.load_state_dict(model.text.state_dict())
    return model


def train_and_test(cfg: DictConfig, train_samples: list, val_samples: list, class_names: list[str],
                   state_dir: Path | None, on_epoch=None) -> dict[str, Any]:
    """Train the variant, test after every epoch; {"interrupted": True} when preempted."""
    options = loop_options(cfg)
    log.info("skel: device %s (device=%s, precision=%s)", resolve_device(options["device"]),
             options["device"], options["precision"])
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg, class_names)
    pcfg = pipeline_config(cfg.pipeline)
    train_set = TrainClips(train_samples, pcfg, int(cfg.seed), int(cfg.repeat))
    test_set = TestClips(val_samples, pcfg)
    state = resumable.load(state_dir) if state_dir is not None else None
    if state is not None:
        train_set.epoch = int(state["progress"]["epoch"])    # the augmentation of the epoch being resumed
    bs = int(cfg.batch_size)
    if str(cfg.loss.name) == "itc_mom" and int(cfg.model.queue_size) % bs:
        raise ValueError(f"model.queue_size={cfg.model.queue_size} is not a multiple of batch_size={bs}")
    loop = LoopConfig(epochs=int(cfg.epochs), batch_size=bs, seed=int(cfg.seed),
                      checkpoint_every=int(cfg.get("checkpoint_every") or 0), num_workers=int(cfg.num_workers),
                      drop_last=True, grad_clip=float(cfg.grad_clip) if cfg.grad_clip else None, **options)
    steps_per_epoch = len(train_set) // bs
    evaluated: dict[str, Any] = {}

    epochs, eval_every = int(cfg.epochs), int(cfg.get("eval_every") or 1)

    def evaluate(model: nn.Module) -> dict[str, float]:
        done = train_set.epoch + 1       # the epoch just trained (epoch_done advances it after this)
        if done % eval_every and done < epochs:
            return {}                    # the toy scores every `eval_every` epochs and the last
        scores, scores_tau, labels = test_scores(model, test_set, int(cfg.eval_batch_size), int(cfg.num_workers))
        evaluated.update(scores=scores, scores_tau=scores_tau, labels=labels, step=_step(model))
        extra = {} if isinstance(model, CEModel) else {"tau": float(model.temp.detach()),
                                                       "itm_skips": float(model.itm_skips)}
        return metrics_of(scores, labels) | {"val/top1_tau": metrics_of(scores_tau, labels)["val/top1"]} | extra

    def epoch_done(epoch: int, record: dict[str, float]) -> None:
        train_set.epoch = epoch       # the next epoch's augmentation
        if on_epoch is not None:
            on_epoch(epoch, record)

    result = fit(model, train_set, config=loop, make_optimizer=lambda _: make_optimizer(model, cfg.loss.optimizer),
                 make_scheduler=lambda opt, per_epoch, total: torch.optim.lr_scheduler.LambdaLR(
                     opt, warmup_cosine(int(cfg.warmup_epochs) * per_epoch, total)),
                 loss_fn=lambda m, batch, g: step_loss(m, batch, g, steps_per_epoch, float(cfg.alpha)),
                 evaluate=evaluate, state_dir=state_dir, on_epoch=epoch_done)
    if result.interrupted:
        return {"interrupted": True}
    if evaluated.get("step") != _step(model):     # resumed after the last evaluation: score again
        model.eval()
        evaluate(model)
    return {"model": model, "history": result.history, **evaluated}


def _step(model: nn.Module) -> int:
    return int(model.step)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:      # a file object: np.save would append .npy to the temporary name
        np.save(f, array)


def summarize(history: list[dict], scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Headline = the last epoch; the best epoch is reported too (flagged: "val" is the test split)."""
    last = metrics_of(scores, labels)
    best = max((r for r in history if "val/top1" in r), key=lambda r: r["val/top1"])
    return last | {"val/top1_best": float(best["val/top1"]), "best_epoch": float(best["epoch"]),
                   "last_epoch": float(history[-1]["epoch"]), "best_is_on_test_split": 1.0,
                   "chance": 1.0 / scores.shape[1]}


def run(cfg: DictConfig) -> Path:
    from actlab.families.skel import FAMILY

    if cfg.get("split") is None:
        raise ValueError("skel config: `split` must be set (e.g. split=ntutoy_xsub)")
    session = RunSession(cfg, FAMILY)
    with session.lease():
        if session.store.is_completed():
            print(f"{session.store.folder}: already completed, nothing to do")
            return session.store.folder
        torch.set_num_threads(int(cfg.threads))
        ds, protocol = dataset_of(cfg, str(cfg.split))
        train = load_split(ds.pickle, f"{protocol}_train", ds.labels)
        val = load_split(ds.pickle, f"{protocol}_val", ds.labels)
        inputs = {"pickle": file_sha256(ds.pickle), "labels": file_sha256(ds.labels)}
        if cfg.loss.name != "ce" and cfg.text.pretrained:
            inputs["clip_text_weights"] = file_sha256(cfg.paths.clip_text_weights)
        with session.running(inputs, labels={"variant": str(cfg.loss.name)}) as active:
            preemption.install_handlers()
            out = train_and_test(cfg, train.samples, val.samples, train.class_names,
                                 session.store.checkpoint_dir,
                                 on_epoch=lambda epoch, record: active.log(epoch, record, "epoch"))
            if out.get("interrupted"):
                raise preemption.Preempted(session.store.folder)
            scores, labels = out["scores"], out["labels"]
            summary = summarize(out["history"], scores, labels)
            preds = pd.DataFrame({"frame_dir": [s.frame_dir for s in val.samples], "label": labels,
                                  "pred": scores.argmax(1), "score_true": scores[np.arange(len(labels)), labels]})
            atomic_write(session.store.folder / SCORES, lambda p: _save_npy(p, scores))   # [N, L]
            return active.finish(summary, [Artifact("predictions.parquet", preds),
                                           Artifact(layout.CURVES, pd.DataFrame(out["history"])),
                                           Artifact("model.pt", out["model"].state_dict())])
