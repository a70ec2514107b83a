"""Hindsight and transfer evaluation: `run(cfg)` (entry point: jobs/transfer.py).

For every completed run of the selected group(s), its final model (eval mode) is evaluated on the
whole stream of each user of the same group: the own stream only (`mode: diagonal`, i.e. HAG) or
every user's stream (`mode: all`, the transfer matrix). Each (model, stream) pair is written to
`<model run>/transfer/<stream user>.json` as soon as it is done and skipped when it exists, so a
killed job resumes where it stopped. Models with a bit-identical backbone (frozen network,
head-only finetuning) share the stream's backbone features through `StreamEvaluator`.
"""
from __future__ import annotations

import logging
from collections import defaultdict

import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from actlab.data.streams import UserStream, open_user_stream
from actlab.engine.clip_cache import InMemoryClips
from actlab.engine.transfer import StreamEvaluator
from actlab.results.store import RunRecord, RunStore, iter_runs

log = logging.getLogger(__name__)
MODES = ("diagonal", "all")


def _run_config(record: RunRecord) -> DictConfig:
    return OmegaConf.create(yaml.safe_load((record.folder / "config.yaml").read_text()))


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
    evaluator = StreamEvaluator(cfg.batch_size, cfg.num_workers, cache_features=cfg.cache_features)
    streams: dict[str, UserStream] = {}
    clips: dict[str, Dataset] = {}   # every model of the job reads the same streams: decode once
    done = 0
    for group, records in sorted(groups.items()):
        records.sort(key=lambda r: r.identity.user)
        for model_run in records:
            run_cfg = _run_config(model_run)
            if not instantiate(run_cfg.method).transferable:
                log.info("%s: method %s has no model to transfer; skipped", group, model_run.method)
                continue
            targets = records if cfg.mode == "all" else [model_run]
            todo = [t for t in targets if not RunStore(model_run.folder).transfer_done(t.identity.user)]
            if not todo:
                continue
            model = instantiate(run_cfg.model)
            model.load_state_dict(RunStore(model_run.folder).final_model())
            for target in todo:
                user = target.identity.user
                if user not in streams:
                    streams[user] = open_user_stream(run_cfg.data, user)
                    clips[user] = (InMemoryClips(streams[user].dataset) if run_cfg.data.get("cache_clips")
                                   else streams[user].dataset)
                stream = streams[user]
                if stream.sha256 != target.stream_sha256:
                    raise ValueError(f"transfer: the stream of user {user} changed since run "
                                     f"{target.folder} ({target.stream_sha256} -> {stream.sha256})")
                metrics = evaluator.evaluate(model, stream.sha256, clips[user], prefix="transfer")
                RunStore(model_run.folder).write_transfer(user, {
                    "model_user": model_run.identity.user, "stream_user": user,
                    "stream_sha256": stream.sha256, "metrics": metrics})
                done += 1
            log.info("%s user %s: %d stream(s) evaluated", group, model_run.identity.user, len(todo))
    log.info("transfer: %d pair(s) computed, %d backbone pass(es)", done, evaluator.feature_passes)
    return done

