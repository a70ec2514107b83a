"""Zero-shot temporal action localization: a class-agnostic DETR-style proposal generator trained on
the seen classes of THUMOS14 / ActivityNet-1.3, its proposals named by a frozen CLIP text tower over
the unseen classes, scored with the ActivityNet detection mAP (docs/zstal.md).

Job: `job.py` (jobs/zstal_train.py); unit: the class split (`split_id`), seeds averaged within a split
first, SE over splits. Preparation step: the embedded set `zstaltoy` (jobs/make_zstaltoy.py) when
the experiment's data set is the toy and it is missing. Before submission, `inputs.py` names every
missing file the jobs will read.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from actlab.family import Family, PipelineStep, lazy


def _units(cfg: DictConfig, repo: Path) -> list[str]:
    return [str(i) for i in cfg.split_ids]


FAMILY = Family(
    name="zstal",
    distributed=True,          # run_ranked: rank 0 writes, the other ranks train their shards (docs/gpu.md)
    config_dir="zstal",
    config_name="zstal",
    job="actlab.families.zstal.job:run",
    unit="split_id",
    units=_units,
    aggregate=lazy("actlab.families.zstal.report:aggregate"),
    table=lazy("actlab.families.zstal.report:default_table"),
    tables=lazy("actlab.families.zstal.report:paper_tables"),   # paper_table.tex, split0_table.tex beside table.tex
    check_inputs=lazy("actlab.families.zstal.inputs:check_inputs"),
    steps=(PipelineStep("zstaltoy", "jobs/make_zstaltoy.py", args=lambda experiment, cfg: [f"experiment={experiment}"],
                        enabled=lambda cfg: bool(cfg.get("toy_data")), before=True, gpus=False),),
)
