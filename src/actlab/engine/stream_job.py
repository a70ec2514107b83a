"""One user stream, one grid point: `run(cfg) -> run folder` (entry point: jobs/stream.py).

Steps: identity from the config -> results folder (a completed run is a no-op) -> stream + model
(pretrained weights from `paths.pretrained`) + method -> the online loop (resuming from
`<folder>/checkpoint` when present) -> hindsight (final model, eval mode, whole own stream) ->
results written, status.json last. A preemption signal (SIGUSR2/SIGTERM) makes the loop write a
checkpoint and the job raise `Preempted`; running the same config again resumes.
"""
from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from actlab.data.streams import open_user_stream
from actlab.engine import preemption
from actlab.engine.clip_cache import InMemoryClips
from actlab.engine.stream_loop import run_stream
from actlab.engine.transfer import StreamEvaluator
from actlab.identity import RunIdentity, code_version, submit_timestamp
from actlab.metrics.evaluate import score
from actlab.metrics.forgetting import ReexposureTracker
from actlab.metrics.online import OnlineMetrics
from actlab.metrics.stream_stats import stream_statistics
from actlab.models.checkpoint import load_checkpoint
from actlab.results.store import RunStore
from actlab.results.wandb_mirror import WandbMirror

log = logging.getLogger(__name__)


def identity_from_cfg(cfg: DictConfig) -> RunIdentity:
    """`submitted: null` -> now; `group: null` -> experiment + hash of `overrides`; `code: null` -> git."""
    for key in ("experiment", "user", "seed"):
        if OmegaConf.select(cfg, key) is None:
            raise ValueError(f"stream config: `{key}` must be set (e.g. `{key}=...` on the command line)")
    overrides = OmegaConf.to_container(cfg.overrides, resolve=True) if cfg.get("overrides") else {}
    ident = RunIdentity.for_point(cfg.experiment, overrides, str(cfg.user), int(cfg.seed),
                                  cfg.get("submitted") or submit_timestamp(),
                                  cfg.get("code") or code_version(Path(__file__).parent))
    if cfg.get("group"):
        ident = dataclasses.replace(ident, group=str(cfg.group))
    return ident


# Command-line keys that name a run (its identity) or where it writes, not what it computes.
NOT_A_POINT = ("user", "seed", "submitted", "group", "code", "experiment", "overrides", "paths.",
               "wandb.", "hydra.", "checkpoint_every", "threads")


def point_overrides(task_overrides: list[str]) -> dict[str, Any]:
    """The grid point of a hand-typed command line: its `key=value` overrides that change results,
    typed by Hydra's grammar as the launcher types grid values (`0.1` is a float, not a string)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    point = {}
    for ov in OverridesParser.create().parse_overrides(task_overrides):
        key = ov.key_or_group
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in NOT_A_POINT):
            point[key] = ov.value()
    return point


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: DictConfig) -> Path:
    identity = identity_from_cfg(cfg)
    store = RunStore.for_identity(identity, cfg.paths.results)
    if store.is_completed():
        print(f"{store.folder}: already completed, nothing to do")
        return store.folder
    torch.set_num_threads(int(cfg.threads))
    seed_everything(identity.seed)
    stream = open_user_stream(cfg.data, identity.user)
    stats = stream.stats | {f"stream/{k}": v for k, v in stream_statistics(stream.clips).items()}
    store.begin(identity, OmegaConf.to_yaml(cfg, resolve=True),
                {"user": identity.user, "sha256": stream.sha256, "stats": stats,
                 "clips": [c.to_dict() for c in stream.clips]})
    model = instantiate(cfg.model)
    report = load_checkpoint(model, cfg.paths.pretrained)
    log.info("pretrained weights %s: %s", cfg.paths.pretrained, report)
    method = instantiate(cfg.method)
    metrics = OnlineMetrics(cfg.data.num_verbs, cfg.data.num_nouns)
    tracker = ReexposureTracker() if cfg.past_eval_every else None
    mirror = None
    if cfg.wandb.mode != "disabled":
        mirror = WandbMirror(identity, OmegaConf.to_container(cfg, resolve=True), stream.sha256,
                             cfg.paths.wandb, cfg.wandb.mode)
    dataset = InMemoryClips(stream.dataset) if cfg.cache_clips else stream.dataset
    preemption.install_handlers()
    try:
        result = run_stream(
            model, method, dataset, metrics=metrics, seed=identity.seed,
            batch_size=cfg.data.batch_size, online_forward=cfg.online_forward,
            checkpoint_dir=store.checkpoint_dir, checkpoint_every=cfg.checkpoint_every,
            past_eval_every=cfg.past_eval_every, tracker=tracker,
            num_workers=cfg.data.num_workers,
            on_batch=(lambda step, values: mirror.log(step, values)) if mirror else None)
        if result.interrupted:
            if mirror:
                mirror.finish(exit_code=preemption.REQUEUE_EXIT_CODE)
            raise preemption.Preempted(store.folder)
        summary = dict(result.summary) | {k: v for k, v in stats.items() if k.startswith("stream/")}
        if cfg.hindsight:
            own = hindsight(cfg, model, method, stream, dataset)
            summary |= own
        if cfg.hindsight and method.transferable:
            # The own-stream entry of the transfer matrix (its diagonal) comes for free.
            store.write_transfer(identity.user, {
                "model_user": identity.user, "stream_user": identity.user, "stream_sha256": stream.sha256,
                "metrics": {k.replace("hindsight/", "transfer/", 1): v for k, v in own.items()}})
        store.finish(summary, result.records, result.forgetting, model.state_dict())
    except preemption.Preempted:
        raise
    except BaseException as e:
        store.fail(e)
        if mirror:
            mirror.finish(exit_code=1)
        raise
    if mirror:
        mirror.finish(summary)
    return store.folder


def hindsight(cfg: DictConfig, model: torch.nn.Module, method: Any, stream: Any,
              dataset: Any) -> dict[str, float]:
    """Final model (eval mode) on the whole own stream, in stream order -> `hindsight/*` metrics."""
    own = method.hindsight_predict(model, len(stream.clips))
    if own is None:
        evaluator = StreamEvaluator(cfg.data.batch_size, cfg.data.num_workers, cache_features=False)
        return evaluator.evaluate(model, stream.sha256, dataset, prefix="hindsight")
    verb_y = torch.tensor([c.verb_label for c in stream.clips])
    noun_y = torch.tensor([c.noun_label for c in stream.clips])
    return score(own["verb"], own["noun"], verb_y, noun_y, prefix="hindsight")
