"""The skel family's job: one (benchmark split, variant, seed) run on the shared resumable loop.

`run(cfg)` (jobs/skel.py, the launcher): load the split's train and val ("val" is the test split)
annotations -> the variant's model -> `actlab.train.loop.fit` (checkpoints at step boundaries;
SIGUSR2/SIGTERM -> checkpoint -> requeue; the model's state_dict carries the momentum model, the
queues with labels and pointer, the step counter) -> test-split scores every `eval_every` epochs ->
the run folder: summary.json, predictions.parquet, scores.npy, curves.parquet, model.pt. As several
ranks (torchrun/srun, `resources.tasks_per_node`; `actlab.job.run_ranked`) rank 0 does all of that
and the others train on their shards of each global batch, score nothing and write nothing
(docs/skel.md). `prepare(cfg)` is the pipeline's step before the arrays: it writes the embedded
`ntutoy` set when it is missing.
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

from actlab import preemption, resumable
from actlab.atomic import atomic_write
from actlab.device import loop_options, ranks_from_env, resolve_device
from actlab.errors import DataError
from actlab.families.skel import ntutoy
from actlab.families.skel.data import TestClips, TrainClips, load_split
from actlab.families.skel.model import VARIANTS, CEModel, ModelConfig, SkelTextModel
from actlab.families.skel.pipeline import PipelineConfig
from actlab.families.skel.text import TextTower
from actlab.families.skel.train import TrainStep, make_optimizer, metrics_of, test_scores, warmup_cosine
from actlab.job import RunSession, file_sha256, run_ranked
from actlab.results import layout
from actlab.results.store import Artifact, RunStore
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
                   state_dir: Path | None, on_epoch=None, score: bool = True) -> dict[str, Any]:
    """Train the variant, scoring the test split every `eval_every` epochs and after the last (only
    with `score`: a follower rank scores nothing); {"interrupted": True} when preempted."""
    options = loop_options(cfg)
    device = resolve_device(options["device"])
    log.info("skel: device %s (device=%s, precision=%s)", device, options["device"], options["precision"])
    if device.type == "cpu":
        _keep_freed_memory()
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
                      drop_last=True, grad_clip=float(cfg.grad_clip) if cfg.grad_clip else None,
                      # every rank enqueues the same gathered batch, so the queues (128 MB at K=65,536)
                      # are equal without DDP re-sending them each step; rank 0's BN statistics are
                      # the ones checkpointed and scored either way
                      broadcast_buffers=False, **options)
    steps_per_epoch = len(train_set) // bs
    trained = TrainStep(model, steps_per_epoch, float(cfg.alpha))
    evaluated: dict[str, Any] = {}

    epochs, eval_every = int(cfg.epochs), int(cfg.get("eval_every") or 1)

    def evaluate(model: nn.Module) -> dict[str, float]:
        scores, scores_tau, labels = test_scores(model, test_set, int(cfg.eval_batch_size), int(cfg.num_workers))
        evaluated.update(scores=scores, scores_tau=scores_tau, labels=labels, step=_step(model))
        extra = {} if isinstance(model, CEModel) else {"tau": float(model.temp.detach()),
                                                       "itm_skips": float(model.itm_skips)}
        return metrics_of(scores, labels) | {"val/top1_tau": metrics_of(scores_tau, labels)["val/top1"]} | extra

    def epoch_end(_: nn.Module) -> dict[str, float]:
        """fit's `evaluate`, which runs on every rank (its on_epoch only on rank 0): the next epoch's
        augmentation, then the test scores when due."""
        done = train_set.epoch + 1       # the epoch just trained
        train_set.epoch = done
        if not score or (done % eval_every and done < epochs):
            return {}                    # the toy scores every `eval_every` epochs and the last
        return evaluate(model)

    result = fit(trained, train_set, config=loop, make_optimizer=lambda _: make_optimizer(model, cfg.loss.optimizer),
                 make_scheduler=lambda opt, per_epoch, total: torch.optim.lr_scheduler.LambdaLR(
                     opt, warmup_cosine(int(cfg.warmup_epochs) * per_epoch, total)),
                 loss_fn=lambda step, batch, g: step(batch, g), evaluate=epoch_end, state_dir=state_dir,
                 on_epoch=on_epoch)
    ranks = ranks_from_env()
    if ranks.world_size > 1:     # each rank's share of the global batches, in the task's log
        print(f"skel: rank {ranks.rank} of {ranks.world_size} trained {trained.steps} steps on "
              f"{trained.samples} samples", flush=True)
    if result.interrupted:
        return {"interrupted": True}
    if score and evaluated.get("step") != _step(model):     # resumed after the last evaluation: score again
        model.eval()
        evaluate(model)
    return {"model": model, "history": result.history, **evaluated}


def _keep_freed_memory() -> None:
    """glibc's allocator: serve blocks up to 1 GiB from the heap and keep what is freed (mmap and trim
    thresholds). By default every activation-sized CPU tensor is mmap'd and unmapped again, so each
    step faults its pages back in: 1.5 million page faults and 5 s of system time in a toy ITC run,
    1.3 s with this (docs/skel.md, Speed). The process keeps its peak memory instead. No-op off glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)       # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)       # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


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
    """One run, as one process or as the ranks torchrun/srun started (`actlab.job.run_ranked`)."""
    from actlab.families.skel import FAMILY

    if cfg.get("split") is None:
        raise ValueError("skel config: `split` must be set (e.g. split=ntutoy_xsub)")
    return run_ranked(cfg, FAMILY, lambda session: _lead(cfg, session), lambda folder: _follow(cfg, folder))


def _splits(cfg: DictConfig):
    ds, protocol = dataset_of(cfg, str(cfg.split))
    return ds, load_split(ds.pickle, f"{protocol}_train", ds.labels), load_split(ds.pickle, f"{protocol}_val", ds.labels)


def _lead(cfg: DictConfig, session: RunSession) -> Path:
    """Rank 0 (or the one process): train, score, write the run."""
    torch.set_num_threads(int(cfg.threads))
    ds, train, val = _splits(cfg)
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


def _follow(cfg: DictConfig, folder: Path) -> None:
    """A rank > 0: train on its shards (resuming from rank 0's checkpoint), score and write nothing."""
    torch.set_num_threads(int(cfg.threads))
    _, train, val = _splits(cfg)
    preemption.install_handlers()
    out = train_and_test(cfg, train.samples, val.samples, train.class_names, RunStore(folder).checkpoint_dir,
                         score=False)
    if out.get("interrupted"):
        raise preemption.Preempted(folder)
