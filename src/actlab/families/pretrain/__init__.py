"""Population pretraining of the continual family's model on its pretrain users, as a grid-able
job of its own (e.g. learning rate x seeds): no unit, the seeds are the replicates.

Job: `job.py` (jobs/pretrain.py), on the shared resumable training loop (actlab.train.loop).
Config: `configs/continual/pretrain.yaml`, beside the continual family's data and model groups,
whose model it trains; experiments say `family: pretrain`. Report: validation top-1 (verb, noun,
action) mean +- SE over seeds, and the validation curves per epoch.
"""
from __future__ import annotations

from actlab.family import Family, lazy

METRICS = ("val/action/top1", "val/verb/top1", "val/noun/top1")


def higher_is_better(metric: str) -> bool:
    return not metric.endswith("loss")


def _aggregate(runs, reference_group=None, expected_units=None):
    from actlab.families.pretrain.plots import curves_table
    from actlab.post.tables import group_labels, plain_aggregate

    agg = plain_aggregate(higher_is_better)(runs, reference_group, expected_units)
    agg.tables["curves"] = curves_table(runs, group_labels(runs.rows))
    return agg


def _table():
    from actlab.post.latex import Column, TableSpec

    return TableSpec(columns=tuple(Column(m, m.split("/")[1]) for m in METRICS), scale=100.0, precision=1,
                     caption="Population pretraining: validation top-1 in percent on the train users, "
                             "mean and SE over seeds", row_header="Grid point")


FAMILY = Family(
    name="pretrain",
    config_dir="continual",
    config_name="pretrain",
    job="actlab.families.pretrain.job:run",
    unit=None,
    units=None,
    aggregate=_aggregate,
    table=_table,
    plots=lazy("actlab.families.pretrain.plots:validation_curves"),
    check_inputs=lazy("actlab.families.continual.inputs:check_pretrain"),
    distributed=True,             # job.py: rank 0 holds the run folder, the others follow   # its data and the pretrain + train split files (before submission)
)
