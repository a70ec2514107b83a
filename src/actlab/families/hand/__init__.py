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

from actlab.family import Family, PipelineStep, lazy


def _units(cfg: DictConfig, repo) -> list[str]:
    return [str(p) for p in cfg.protocols]


FAMILY = Family(
    name="hand",
    distributed=True,          # run_ranked: rank 0 writes, the other ranks train their shards (docs/gpu.md)
    config_dir="hand",
    config_name="hand",
    job="actlab.families.hand.job:run",
    unit="protocol.name",
    units=_units,
    aggregate=lazy("actlab.families.hand.report:aggregate"),
    table=lazy("actlab.families.hand.report:table1"),
    plots=lazy("actlab.families.hand.report:plots"),
    check_inputs=lazy("actlab.families.hand.inputs:check_hand"),
    steps=(
        PipelineStep("prepare", "jobs/hand.py", args=lambda experiment, cfg: ["task=data", f"experiment={experiment}"],
                     before=True, gpus=False),
        PipelineStep("eval", "jobs/hand.py", args=lambda experiment, cfg: ["task=eval", f"experiment={experiment}"],
                     enabled=lambda cfg: bool(cfg.get("eval"))),
    ),
)
