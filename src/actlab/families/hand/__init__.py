"""Family D (hand): first-person 3D hand pose estimation from depth (DeepPrior++ with a 30-d PCA
prior), LSTM action recognition from pose sequences, and FiLM action conditioning, on FPHA or the
embedded `handtoy` set (docs/hand.md).

Job: `job.py` (jobs/hand.py), `task` = hpe | har on the shared resumable loop; unit: the protocol
(`protocol.name`: fpha_1to1, fpha_xsub), seeds the replicates. Steps: before the arrays, `task=data`
writes handtoy when the experiment says `data.generate` (skipped when complete) and builds the
protocols' crop caches; after them,
`task=eval` runs the evaluation modes (a)-(f) of Table 1 on the runs of each seed (evaluate.py).
Aggregation: mean +- SE over seeds per (group, protocol); Table 1 from the eval runs (report.py).
"""
from __future__ import annotations

from omegaconf import DictConfig

from actlab.family import Family, PipelineStep


def _units(cfg: DictConfig, repo) -> list[str]:
    return [str(p) for p in cfg.protocols]


def _aggregate(runs, reference_group=None, expected_units=None):
    from actlab.families.hand.report import aggregate

    return aggregate(runs, reference_group, expected_units)


def _table():
    from actlab.families.hand.report import table1

    return table1()


def _plots(agg, out_dir):
    from actlab.families.hand.report import plots

    return plots(agg, out_dir)


def _check_inputs(cfg: DictConfig) -> list[str]:
    from actlab.families.hand.inputs import check_hand

    return check_hand(cfg)


FAMILY = Family(
    name="hand",
    config_dir="hand",
    config_name="hand",
    job="actlab.families.hand.job:run",
    unit="protocol.name",
    units=_units,
    aggregate=_aggregate,
    table=_table,
    plots=_plots,
    check_inputs=_check_inputs,
    steps=(
        PipelineStep("prepare", "jobs/hand.py", args=lambda experiment, cfg: ["task=data", f"experiment={experiment}"],
                     before=True, gpus=False),
        PipelineStep("eval", "jobs/hand.py", args=lambda experiment, cfg: ["task=eval", f"experiment={experiment}"],
                     enabled=lambda cfg: bool(cfg.get("eval"))),
    ),
)
