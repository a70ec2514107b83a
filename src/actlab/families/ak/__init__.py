"""Long-tailed multi-label animal action recognition on Animal Kingdom with a CLIP video-text
classifier, under four long-tail losses (BCE, focal, LDAM-DRW, EQL) and three ways to train the
video embedding (clip_proj, clip_vision, clip_temporal).

Job: `job.py` (jobs/ak_train.py), on the shared resumable loop; no unit, the seeds are the
replicates. Preparation step of the `aktoy_*` experiments: jobs/make_aktoy.py (the embedded set
and its tiny CLIP). Report: Overall / Head / Middle / Tail mAP in percent, mean +- SE over seeds,
rows by loss and model (aggregate.py). Data formats and metric rules: docs/ak.md.
"""
from __future__ import annotations

from actlab.family import Family, PipelineStep


def _aggregate(runs, reference_group=None, expected_units=None):
    from actlab.families.ak.aggregate import aggregate

    return aggregate(runs, reference_group, expected_units)


def _table():
    from actlab.families.ak.aggregate import default_table

    return default_table()


def _plots(agg, out_dir):
    from actlab.families.ak.aggregate import paper_table

    return paper_table(agg, out_dir)


def _check_inputs(cfg):
    from actlab.families.ak.inputs import check_ak

    return check_ak(cfg)


def _generate_args(experiment, cfg) -> list[str]:
    return ["--out", str(cfg.data.root), "--seed", str(cfg.data.generator_seed), "--scale", str(cfg.data.scale)]


FAMILY = Family(
    name="ak",
    config_dir="ak",
    config_name="ak",
    job="actlab.families.ak.job:run",
    unit=None,
    units=None,
    aggregate=_aggregate,
    table=_table,
    plots=_plots,
    check_inputs=_check_inputs,
    steps=(PipelineStep("make_aktoy", "jobs/make_aktoy.py", args=_generate_args,
                        enabled=lambda cfg: bool(cfg.data.get("generate")), before=True, gpus=False),),
)
