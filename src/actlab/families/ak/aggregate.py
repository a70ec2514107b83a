"""The ak family's report: mean +- SE over seeds of every summary metric (the shared plain
aggregation), rows labelled "<loss> / <model>" (plus any other grid value), and the paper's
layout: rows grouped by loss in the paper's order, one per model, Overall / Head / Middle / Tail
mAP in percent, the chance level of random scores beside them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from actlab.atomic import atomic_write_text
from actlab.post.latex import Column, TableSpec, render_table
from actlab.post.tables import Aggregated, aggregate_runs, latest
from actlab.errors import DataError

LOSS_LABELS = {"bce": "Baseline (BCE)", "focal": "Focal", "ldam_drw": "LDAM-DRW", "eql": "EQL"}
MODEL_ORDER = ("clip_proj", "clip_vision", "clip_temporal")
COLUMNS = (Column("test/map", "Overall"), Column("test/map/head", "Head"), Column("test/map/middle", "Middle"),
           Column("test/map/tail", "Tail"), Column("test/map_random", "Random"))
POINT_KEYS = ("loss", "model")      # shown by the label's first part, not repeated in its tail


def higher_is_better(metric: str) -> bool:
    return not (metric.endswith("loss") or metric.endswith("seconds"))


def label_of(loss: str, model: str, overrides: dict) -> str:
    extra = ", ".join(f"{str(k).rsplit('.', 1)[-1]}={v}" for k, v in sorted(overrides.items()) if k not in POINT_KEYS)
    return f"{LOSS_LABELS.get(loss, loss)} / {model}" + (f" ({extra})" if extra else "")


def sort_key(loss: str, model: str, label: str) -> tuple:
    losses = list(LOSS_LABELS)
    return (losses.index(loss) if loss in losses else len(losses), loss,
            MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), label)


def aggregate(runs, reference_group=None, expected_units=None) -> Aggregated:
    if reference_group is not None:
        raise DataError(f"reference group {reference_group!r}: the ak family compares no group against a reference")
    agg = aggregate_runs(runs, higher_is_better, expected_units)
    first = {r.group: r for r in latest(runs.rows)}
    labels, order = {}, {}
    for group, r in first.items():
        loss, model = r.labels.get("loss", "?"), r.labels.get("model", "?")
        labels[group] = label_of(loss, model, r.overrides)
        order[group] = sort_key(loss, model, labels[group])
    agg.groups = [dataclasses.replace(g, label=labels.get(g.group, g.label)) for g in agg.groups]
    agg.tidy["label"] = agg.tidy["group"].map(labels).fillna(agg.tidy["label"])
    agg.per_unit["label"] = agg.per_unit["group"].map(labels).fillna(agg.per_unit["label"])
    agg.tables["paper_order"] = (agg.tidy[["group", "label"]].drop_duplicates()
                                 .assign(order=lambda d: d["group"].map(lambda g: order.get(g, (99,))))
                                 .sort_values("order").drop(columns="order"))
    return agg


def default_table() -> TableSpec:
    return TableSpec(columns=COLUMNS, scale=100.0, precision=2, row_header="Loss / model",
                     caption="Animal Kingdom action recognition: mAP in percent over the evaluable test classes "
                             "(overall, head, middle, tail; classes without a test positive dropped), mean and "
                             "SE over seeds; Random: uniform random scores on the same test split")


def paper_table(agg: Aggregated, out_dir: Path, spec: TableSpec | None = None) -> list[Path]:
    """table_paper.tex: the rows in the paper's order (Baseline, Focal, LDAM-DRW, EQL; by model),
    with the report's reported rows (e.g. configs/ak/reported/ak_paper.yaml via
    `postprocess/to_latex.py --reported`) and precision."""
    rows = dict(zip(agg.tables["paper_order"]["group"], agg.tables["paper_order"]["label"]))
    if not rows:
        return []
    given = spec if spec is not None else default_table()
    spec = dataclasses.replace(default_table(), rows=rows, units="", reported=given.reported,
                               precision=given.precision)
    return [atomic_write_text(Path(out_dir) / "table_paper.tex", render_table(agg.tidy, spec))]
