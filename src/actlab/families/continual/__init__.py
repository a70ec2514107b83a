"""Per-user continual adaptation on Ego4D-style streams (and the embedded egotoy set).

Job: one user's stream under one method (`engine/stream_job.py`, jobs/stream.py); unit: the user;
after the stream arrays, the transfer evaluation (`engine/transfer_job.py`, jobs/transfer.py);
optionally before them, the population pretraining (jobs/pretrain.py). Before submission, the
launcher checks that the data, split files and checkpoint exist and that the checkpoint's heads
fit the data (`inputs.py`). Aggregation: OAG / HAG paired by user against the reference group,
transfer matrices, re-exposure forgetting.
Conventions and their upstream sources: docs/protocol.md.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from actlab.family import Family, PipelineStep, lazy


def _users(cfg: DictConfig, repo: Path) -> list[str]:
    from actlab.families.continual.data.split import experiment_users

    spec = cfg.users
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    return experiment_users(spec, cfg.paths.splits)


FAMILY = Family(
    name="continual",
    config_dir="continual",
    config_name="stream",
    job="actlab.families.continual.engine.stream_job:run",
    unit="user",
    units=_users,
    aggregate=lazy("actlab.families.continual.aggregate:aggregate"),
    table=lazy("actlab.families.continual.aggregate:default_table"),
    plots=lazy("actlab.families.continual.plots:all_plots"),
    check_inputs=lazy("actlab.families.continual.inputs:check_continual"),
    steps=(
        PipelineStep("pretrain", "jobs/pretrain.py", args=lambda experiment, cfg: [],
                     enabled=lambda cfg: bool(cfg.get("pretrain")), before=True),
        # each user stream decoded once per sweep into data.cache_dir, read by every grid point (data/clip_store.py)
        PipelineStep("decode_cache", "jobs/decode_cache.py", args=lambda experiment, cfg: [f"experiment={experiment}"],
                     enabled=lambda cfg: bool(cfg.data.get("cache_prepare")) and bool(cfg.data.get("cache_dir")),
                     before=True, gpus=False, overrides=("paths.", "data.")),   # the tasks' data settings
        PipelineStep("transfer", "jobs/transfer.py", args=lambda experiment, cfg: [f"experiment={experiment}"],
                     enabled=lambda cfg: str(cfg.get("transfer") or "none") != "none"),
    ),
)
