"""Hindsight and transfer evaluation: `run(cfg)` (entry point: jobs/transfer.py).

For every completed run of the selected group(s), its final model (eval mode) is evaluated on the
whole stream of each user of the same group: the own stream only (`mode: diagonal`, i.e. HAG) or
every user's stream (`mode: all`, the transfer matrix). Each (model, stream) pair is written to
`<model run>/transfer/<stream user>.json` as soon as it is done and skipped when it exists, so a
killed job resumes where it stopped. The job goes stream by stream (each stream decoded once for
all models of a group). Models whose backbones hash equal (full state, batch-norm statistics
included: a frozen network or head-only finetuning with `method.backbone_bn: frozen`; with the
default `adapt` the statistics differ per run) share the stream's backbone features through
`StreamEvaluator`; `batch_models: true` runs all backbones of an architecture in one vmapped call
per batch instead (`batched_eval`: measured 2.2x slower than one model at a time on CPU,
benchmarks/bench_transfer.py; meant for GPUs). A model whose backbone is still its run's
pretrained one reads (and writes) that backbone's features in the feature cache under the run's
`data.cache_dir` (engine/feature_cache.py), shared with later transfer jobs; not with batch_models.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from actlab import device as compute
from actlab.errors import DataError
from actlab.families.continual.data.user_streams import open_user_stream
from actlab.families.continual.engine.batched_eval import MultiModelEvaluator
from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.label_mask import apply_mask_unseen
from actlab.families.continual.engine.feature_cache import BackboneFeatures
from actlab.families.continual.engine.transfer import StreamEvaluator, backbone_hash
from actlab.families.continual import artifacts
from actlab.families.continual.models.weights import load_checkpoint, load_state
from actlab.results import layout
from actlab.results.store import Artifact, RunRecord, RunStore, iter_runs

log = logging.getLogger(__name__)
MODES = ("diagonal", "all")


def _run_config(record: RunRecord) -> DictConfig:
    return OmegaConf.create(yaml.safe_load((record.folder / layout.CONFIG).read_text()))


def latest_runs(records: list[RunRecord]) -> list[RunRecord]:
    """One run per (unit, seed) of a group: the latest submission, as aggregation counts it; an
    older run of the same point (e.g. before the data were regenerated) is neither evaluated nor
    a target."""
    best: dict[tuple[str | None, int], RunRecord] = {}
    for r in records:
        key, rank = (r.identity.unit, r.identity.seed), (r.identity.submitted, r.identity.run_id)
        if key not in best or rank > (best[key].identity.submitted, best[key].identity.run_id):
            best[key] = r
    return list(best.values())


def pretrained_backbone(run_cfg: DictConfig, known: dict[tuple[str, str], str | None]) -> str | None:
    """State hash of the backbone a run started from (its model config and `paths.pretrained`);
    None when the weights file is gone (its models then simply do not use the feature cache)."""
    key = (OmegaConf.to_yaml(run_cfg.model), str(run_cfg.paths.pretrained))
    if key not in known:
        known[key] = None
        if Path(key[1]).is_file():
            model = instantiate(run_cfg.model)
            load_checkpoint(model, key[1])
            known[key] = backbone_hash(model)
    return known[key]


def run(cfg: DictConfig) -> int:
    """Evaluate the missing (model, stream) pairs; returns how many were computed."""
    if cfg.mode not in MODES:
        raise ValueError(f"transfer: mode must be one of {MODES}, got {cfg.mode!r}")
    if not cfg.get("experiment"):
        raise ValueError("transfer: `experiment` must be set (e.g. experiment=egotoy_main)")
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for record in iter_runs(cfg.paths.results, cfg.experiment, cfg.get("group")):
        groups[record.identity.group].append(record)
    if not groups:
        raise FileNotFoundError(f"transfer: no completed runs under {cfg.paths.results}/{cfg.experiment}"
                                + (f"/{cfg.group}" if cfg.get("group") else ""))
    placement = compute.setup(cfg, workers=cfg.num_workers)
    evaluator = StreamEvaluator(cfg.batch_size, placement.workers, cache_features=cfg.cache_features,
                                device=placement.device, precision=placement.precision)
    batched = (MultiModelEvaluator(cfg.batch_size, placement.workers, device=placement.device,
                                   precision=placement.precision) if cfg.batch_models else None)
    pretrained: dict[tuple[str, str], str | None] = {}   # (model config, weights file) -> backbone state hash
    done = 0
    for group, all_records in sorted(groups.items()):
        records = latest_runs(all_records)
        # stream user -> the (model run, model, target run) pairs still missing for that stream
        pending: dict[str, list[tuple[RunRecord, torch.nn.Module, RunRecord]]] = defaultdict(list)
        fixed: set[int] = set()     # ids of the models whose backbone is still the pretrained one
        data_cfg = None
        for model_run in sorted(records, key=lambda r: r.identity.unit):
            run_cfg = _run_config(model_run)
            if not instantiate(run_cfg.method).transferable:
                log.info("%s: method %s has no model to transfer; skipped", group, model_run.labels.get(artifacts.VARIANT))
                continue
            targets = records if cfg.mode == "all" else [model_run]
            store = RunStore(model_run.folder)
            todo = [t for t in targets if not store.has(artifacts.transfer(t.identity.unit))]
            if not todo:
                continue
            model = instantiate(run_cfg.model)
            load_state(model, store.read(artifacts.FINAL_MODEL), f"{model_run.folder / artifacts.FINAL_MODEL}",
                       strict=True)
            if "mask_unseen" not in run_cfg:
                raise DataError(f"{model_run.folder / layout.CONFIG}: no `mask_unseen` key (a run from before "
                                f"unseen-class masking); run its stream again")
            apply_mask_unseen(model, run_cfg)
            if backbone_hash(model) == pretrained_backbone(run_cfg, pretrained):
                fixed.add(id(model))
            data_cfg = run_cfg.data
            for target in todo:
                pending[target.identity.unit].append((model_run, model, target))
        for user, pairs in sorted(pending.items()):
            stream = open_user_stream(data_cfg, user)
            for _, _, target in pairs:
                if stream.sha256 != target.inputs[artifacts.STREAM_INPUT]:
                    raise ValueError(f"transfer: the stream of user {user} changed since run "
                                     f"{target.folder} ({target.inputs[artifacts.STREAM_INPUT]} -> {stream.sha256})")
            # every model of the group reads this stream: decode it once
            clips = InMemoryClips(stream.dataset) if data_cfg.get("cache_clips") else stream.dataset
            models = [model for _, model, _ in pairs]
            if batched is not None:
                results = batched.evaluate(models, clips, prefix="transfer")
            else:
                # a fixed backbone's features come from (and go to) the feature cache under data.cache_dir
                cached = [BackboneFeatures(m, clips, stream.sha256, data_cfg.get("cache_dir"), placement.device,
                                           placement.precision) if id(m) in fixed else None for m in models]
                results = [evaluator.evaluate(m, stream.sha256, clips, prefix="transfer", fixed=f)
                           for m, f in zip(models, cached)]
                for f in cached:
                    if f is not None:
                        f.save()
            for (model_run, _, _), metrics in zip(pairs, results):
                RunStore(model_run.folder).write(Artifact(artifacts.transfer(user), {
                    "model_user": model_run.identity.unit, "stream_user": user,
                    "stream_sha256": stream.sha256, "metrics": metrics}))
                done += 1
            log.info("%s stream %s: %d model(s) evaluated", group, user, len(pairs))
    log.info("transfer: %d pair(s) computed, %d backbone pass(es)", done, evaluator.feature_passes)
    return done
