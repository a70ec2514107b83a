"""Skeleton-text contrastive action recognition on NTU RGB+D (issue 14).

A PoseC3D SlowOnly encoder on joint heatmaps and an open_clip text tower, trained so that a clip
matches its class name: CE baseline, ITC, ITC+ITM (hard negatives), ITC+momentum queue, PACL.
Job: `job.py` (jobs/skel.py); unit: the benchmark split (`ntu60_xsub`, ..., `ntutoy_xsub`); the
seeds are the replicates within it. Before the arrays, a step writes the embedded `ntutoy` set when
an experiment reads it and it is missing. Report: Table 1 (top-1 per split), Tables 2-3 (`report.py`).
Data-parallel: a run may be several ranks (`resources.tasks_per_node`; rank 0 writes, docs/skel.md).
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from actlab.family import Family, PipelineStep, lazy


def _units(cfg: DictConfig, repo: Path) -> list[str]:
    return [str(s) for s in cfg.splits]


def _generates(cfg: DictConfig) -> bool:
    from actlab.families.skel.job import dataset_of

    return any(bool(dataset_of(cfg, str(s))[0].get("generate")) for s in cfg.splits)


FAMILY = Family(
    name="skel",
    config_dir="skel",
    config_name="skel",
    job="actlab.families.skel.job:run",
    unit="split",
    units=_units,
    aggregate=lazy("actlab.families.skel.report:aggregate"),
    table=lazy("actlab.families.skel.report:table1"),
    plots=lazy("actlab.families.skel.report:extra_tables"),
    check_inputs=lazy("actlab.families.skel.inputs:check_inputs"),
    steps=(PipelineStep("ntutoy", "jobs/skel.py", args=lambda experiment, cfg: [f"experiment={experiment}",
                                                                              "prepare=true"],
                        enabled=_generates, before=True, gpus=False),),
    distributed=True,        # job.run: actlab.job.run_ranked, the step a TrainStep module DDP wraps
)
