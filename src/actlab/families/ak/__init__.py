"""Long-tailed multi-label animal action recognition on Animal Kingdom with a CLIP video-text
classifier, under four long-tail losses (BCE, focal, LDAM-DRW, EQL) and three ways to train the
video embedding (clip_proj, clip_vision, clip_temporal).

Job: `job.py` (jobs/ak_train.py), on the shared resumable loop; no unit, the seeds are the
replicates. Preparation step of the `aktoy_*` experiments: jobs/make_aktoy.py (the embedded set
and its tiny CLIP). Report: Overall / Head / Middle / Tail mAP in percent, mean +- SE over seeds,
rows by loss and model (aggregate.py), and table_paper.tex in the paper's order (the `tables`
hook, with the report's reported rows, e.g. configs/ak/reported/ak_paper.yaml). Data formats and
metric rules: docs/ak.md.
"""
from __future__ import annotations

from actlab.family import Family, PipelineStep, lazy


def _generate_args(experiment, cfg) -> list[str]:
    return ["--out", str(cfg.data.root), "--seed", str(cfg.data.generator_seed), "--scale", str(cfg.data.scale)]


FAMILY = Family(
    name="ak",
    distributed=True,          # run_ranked: rank 0 writes, the other ranks train their shards (docs/gpu.md)
    config_dir="ak",
    config_name="ak",
    job="actlab.families.ak.job:run",
    unit=None,
    units=None,
    aggregate=lazy("actlab.families.ak.aggregate:aggregate"),
    table=lazy("actlab.families.ak.aggregate:default_table"),
    tables=lazy("actlab.families.ak.aggregate:paper_table"),
    check_inputs=lazy("actlab.families.ak.inputs:check_ak"),
    steps=(PipelineStep("make_aktoy", "jobs/make_aktoy.py", args=_generate_args,
                        enabled=lambda cfg: bool(cfg.data.get("generate")), before=True, gpus=False),),
)
