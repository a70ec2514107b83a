"""One user stream, one grid point: `run(cfg) -> run folder` (entry point: jobs/stream.py).

Steps: identity from the config -> the run folder's lease (a completed run is a no-op) -> stream
+ model (pretrained weights from `paths.pretrained`) + method -> the online loop (resuming from
`<folder>/checkpoint` when present) -> hindsight (final model, eval mode, whole own stream) ->
results written, status.json last (actlab.job). A preemption signal (SIGUSR2/SIGTERM) makes the
loop write a checkpoint and the job raise `Preempted`; running the same config again resumes.
Inputs recorded: the stream manifest's and the pretrained checkpoint's SHA-256.
A run whose backbone stays the initial one (frozen reference, head-only with frozen statistics,
label window) takes its backbone features from the feature cache under `data.cache_dir` and
writes what it computed (engine/feature_cache.py, docs/cache.md); the results are the same.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from actlab import device as compute, preemption
from actlab.families.continual import artifacts
from actlab.families.continual.data.user_streams import open_user_stream
from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.feature_cache import BackboneFeatures
from actlab.families.continual.engine.label_mask import apply_mask_unseen, check_mask_config
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.engine.transfer import StreamEvaluator
from actlab.families.continual.metrics.evaluate import score
from actlab.families.continual.metrics.forgetting import ReexposureForgetting, run_summary
from actlab.families.continual.metrics.online import OnlineMetrics
from actlab.families.continual.metrics.stream_stats import stream_statistics
from actlab.families.continual.models.weights import load_checkpoint
from actlab.job import RunSession, file_sha256
from actlab.results.store import Artifact

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: DictConfig) -> Path:
    from actlab.families.continual import FAMILY

    check_mask_config(cfg)
    session = RunSession(cfg, FAMILY)
    identity, store = session.identity, session.store
    with session.lease():
        if store.is_completed():
            print(f"{store.folder}: already completed, nothing to do")
            return store.folder
        # Determinism before any CUDA call; the device, threads and loader workers, logged.
        placement = compute.setup(cfg, workers=cfg.data.num_workers)
        seed_everything(identity.seed)
        stream = open_user_stream(cfg.data, identity.unit)
        stats = stream.stats | {f"stream/{k}": v for k, v in stream_statistics(stream.clips).items()}
        inputs = {artifacts.STREAM_INPUT: stream.sha256,
                  artifacts.PRETRAINED_INPUT: file_sha256(cfg.paths.pretrained)}
        reference = str(cfg.get("reference_group") or "")
        labels = {artifacts.VARIANT: str(cfg.method.name),
                  artifacts.REFERENCE_GROUP: "" if reference == identity.group else reference}
        with session.running(inputs, labels) as active:
            store.write(Artifact(artifacts.STREAM, {"user": identity.unit, "sha256": stream.sha256, "stats": stats,
                                                    "clips": [c.to_dict() for c in stream.clips]}))
            model = instantiate(cfg.model)
            # Fails, naming keys, unless the backbone loads completely (models/weights.py).
            report = load_checkpoint(model, cfg.paths.pretrained)
            (log.warning if report.new_heads else log.info)("pretrained weights: %s", report)
            apply_mask_unseen(model, cfg)
            method = instantiate(cfg.method)
            metrics = OnlineMetrics(cfg.data.num_verbs, cfg.data.num_nouns)
            tracker = ReexposureForgetting(**cfg.forgetting) if cfg.past_eval_every else None
            dataset = InMemoryClips(stream.dataset) if cfg.cache_clips else stream.dataset
            # the initial backbone's features; the loop uses them only if the backbone stays fixed
            features = BackboneFeatures(model, dataset, stream.sha256, cfg.data.get("cache_dir"),
                                        placement.device, placement.precision)
            preemption.install_handlers()
            result = run_stream(
                model, method, dataset, metrics=metrics, seed=identity.seed,
                batch_size=cfg.data.batch_size, online_forward=cfg.online_forward,
                checkpoint_dir=store.checkpoint_dir, checkpoint_every=cfg.checkpoint_every,
                past_eval_every=cfg.past_eval_every, tracker=tracker,
                num_workers=placement.workers, on_batch=active.log, device=placement.device,
                precision=placement.precision, prefetch_factor=placement.prefetch_factor, features=features)
            if result.interrupted:
                raise preemption.Preempted(store.folder)
            summary = dict(result.summary) | {k: v for k, v in stats.items() if k.startswith("stream/")}
            summary |= run_summary(result.forgetting) if tracker is not None else {}
            outputs = [Artifact(artifacts.PREDICTIONS, result.records),
                       Artifact(artifacts.FORGETTING, result.forgetting),
                       Artifact(artifacts.FINAL_MODEL, model.state_dict())]
            if cfg.hindsight:
                own = hindsight(cfg, model, method, stream, dataset, placement, features)
                summary |= own
                if method.transferable:
                    # The own-stream entry of the transfer matrix (its diagonal) comes for free.
                    outputs.append(Artifact(artifacts.transfer(identity.unit), {
                        "model_user": identity.unit, "stream_user": identity.unit, "stream_sha256": stream.sha256,
                        "metrics": {k.replace("hindsight/", "transfer/", 1): v for k, v in own.items()}}))
            if features.computed and features.still_valid():
                features.save()     # whatever this run computed, for the next run of this backbone
            return active.finish(summary, outputs)


def hindsight(cfg: DictConfig, model: torch.nn.Module, method: Any, stream: Any,
              dataset: Any, placement: compute.Compute, features: Any = None) -> dict[str, float]:
    """Final model (eval mode) on the whole own stream, in stream order -> `hindsight/*` metrics.
    `features`: the initial backbone's feature cache, used when the final backbone is still it."""
    own = method.hindsight_predict(model, len(stream.clips))
    if own is None:
        evaluator = StreamEvaluator(cfg.data.batch_size, placement.workers, cache_features=False,
                                    device=placement.device, precision=placement.precision)
        return evaluator.evaluate(model, stream.sha256, dataset, prefix="hindsight", fixed=features)
    verb_y = torch.tensor([c.verb_label for c in stream.clips])
    noun_y = torch.tensor([c.noun_label for c in stream.clips])
    return score(own["verb"], own["noun"], verb_y, noun_y, prefix="hindsight")
