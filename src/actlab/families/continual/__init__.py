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

from actlab.family import Family, PipelineStep


def _users(cfg: DictConfig, repo: Path) -> list[str]:
    from actlab.families.continual.data.split import experiment_users

    spec = cfg.users
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    return experiment_users(spec, cfg.paths.splits)


def _aggregate(runs, reference_group=None, expected_units=None):
    from actlab.families.continual.aggregate import aggregate

    return aggregate(runs, reference_group=reference_group, expected_units=expected_units)


def _table():
    from actlab.families.continual.aggregate import default_table

    return default_table()


def _plots(agg, out_dir):
    from actlab.families.continual.plots import all_plots

    return all_plots(agg, out_dir)


def _check_inputs(cfg: DictConfig) -> list[str]:
    from actlab.families.continual.inputs import check_continual

    return check_continual(cfg)


FAMILY = Family(
    name="continual",
    config_dir="continual",
    config_name="stream",
    job="actlab.families.continual.engine.stream_job:run",
    unit="user",
    units=_users,
    aggregate=_aggregate,
    table=_table,
    plots=_plots,
    check_inputs=_check_inputs,
    steps=(
        PipelineStep("pretrain", "jobs/pretrain.py", args=lambda experiment, cfg: [],
                     enabled=lambda cfg: bool(cfg.get("pretrain")), before=True),
        # each user stream decoded once per sweep into data.cache_dir, read by every grid point (data/clip_store.py)
        PipelineStep("decode_cache", "jobs/decode_cache.py", args=lambda experiment, cfg: [f"experiment={experiment}"],
                     enabled=lambda cfg: bool(cfg.data.get("cache_prepare")) and bool(cfg.data.get("cache_dir")),
                     before=True, gpus=False),
        PipelineStep("transfer", "jobs/transfer.py", args=lambda experiment, cfg: [f"experiment={experiment}"],
                     enabled=lambda cfg: str(cfg.get("transfer") or "none") != "none"),
    ),
)
