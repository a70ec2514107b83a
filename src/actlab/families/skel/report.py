"""The family's aggregation and tables (issue 14 §8), on the shared post layer.

A group is a grid point (a variant); its units are benchmark splits, which are not replicates of
one another: every metric is aggregated per split over seeds (mean +- SE, SE = sd(ddof=1)/sqrt(n))
as the tidy metric `<split>/<metric>`, and the table's columns pick the splits. A group is partial
when a (split, seed) of its experiment has no completed run; the note names them. Runs of one
(group, split) that read different inputs (pickle, labels, text weights) are refused
(`runs_by_unit`).

Table 1 (`table1`): rows CE, ITC, ITC+ITM, ITC+momentum, PACL; columns top-1 % per split.
Tables 2 and 3 (`extra_tables`, written next to the report): top-5 and mean-class accuracy; top-1
against the published references (§10) with the difference.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from actlab.atomic import atomic_write_text
from actlab.errors import DataError
from actlab.post.latex import Column, TableSpec, escape, render_table
from actlab.post.sources import Runs
from actlab.post.tables import (Aggregated, GroupInfo, default_direction, group_keys, per_unit_frame,
                                runs_by_unit, stat_rows, summary_stats, tidy_frame)

SPLITS = {"ntu60_xsub": "NTU-60 XSub", "ntu60_xview": "NTU-60 XView", "ntu120_xsub": "NTU-120 XSub",
          "ntu120_xset": "NTU-120 XSet", "ntutoy_xsub": "ntutoy XSub"}
VARIANT_NAMES = {"ce": "CE", "itc": "ITC", "itc_itm": "ITC+ITM", "itc_mom": "ITC+momentum", "pacl": "PACL"}
HEADLINE = ("val/top1", "val/top5", "val/mean_class_acc")
# §10: PoseC3D SlowOnly-R50 joint (pyskl) and the source document's best single runs (NTU-60 XSub)
REFERENCES = {("CE", "ntu60_xsub"): 93.7, ("CE", "ntu60_xview"): 96.5, ("CE", "ntu120_xsub"): 85.9,
              ("CE", "ntu120_xset"): 89.7, ("ITC", "ntu60_xsub"): 92.63, ("ITC+ITM", "ntu60_xsub"): 93.05,
              ("ITC+momentum", "ntu60_xsub"): 92.66, ("PACL", "ntu60_xsub"): 92.64}


def _label(overrides: dict, variant: str) -> str:
    extra = ", ".join(f"{str(k).rsplit('.', 1)[-1]}={v}" for k, v in sorted(overrides.items()) if k != "loss")
    name = VARIANT_NAMES.get(variant, variant)
    return f"{name} ({extra})" if extra else name


def aggregate(runs: Runs, reference_group: str | None = None,
              expected_units: list[str] | None = None) -> Aggregated:
    if reference_group is not None:
        raise DataError(f"reference group {reference_group!r}: the skel family compares no group against a reference")
    groups, tidy, per_unit = [], [], []
    for experiment, group in group_keys(runs):
        rows = [r for r in runs.rows if r.group == group]
        if not rows:
            label = group
        else:
            label = _label(rows[0].overrides, rows[0].labels.get("variant", ""))
        by_unit = runs_by_unit(rows)
        everything = [r for r in [*runs.rows, *runs.incomplete] if r.experiment == experiment]
        seeds = sorted({r.seed for r in everything})
        units = sorted(expected_units) if expected_units else sorted({r.unit_key for r in everything})
        done = {(u, r.seed) for u, rs in by_unit.items() for r in rs}
        started = {(r.unit_key, r.seed) for r in runs.incomplete if r.group == group}
        missing = tuple(f"{u} seed {s}" for u in units for s in seeds if (u, s) not in done | started)
        failed = tuple(f"{u} seed {s}" for u, s in sorted(started - done))
        info = GroupInfo(experiment, group, label, None, tuple(sorted(by_unit)), missing, failed)
        groups.append(info)
        for unit, unit_runs in by_unit.items():
            for metric in sorted(set().union(*(r.summary for r in unit_runs))):
                values = [r.summary.get(metric, math.nan) for r in unit_runs]
                tidy += stat_rows(info, f"{unit}/{metric}", summary_stats(values), default_direction(metric))
                per_unit += [{"experiment": experiment, "group": group, "label": label,
                              "unit": f"{unit} seed {r.seed}", "metric": metric, "value": v}
                             for r, v in zip(unit_runs, values)]
    return Aggregated(groups, tidy_frame(tidy), per_unit_frame(per_unit))


def _spec(metric: str, what: str, caption: str, splits: list[str]) -> TableSpec:
    return TableSpec(columns=tuple(Column(f"{s}/{metric}", f"{SPLITS.get(s, s)} {what}") for s in splits),
                     scale=100.0, precision=1, caption=caption, row_header="Variant", units="")


def table1(splits: list[str] | None = None) -> TableSpec:
    """Table 1 (paper layout): top-1 % per split, mean +- SE over seeds."""
    return _spec("val/top1", "top-1", "Top-1 accuracy (%) on the test split (\"val\"), last epoch, "
                 "mean and SE over seeds", splits or list(SPLITS))


def _present_splits(agg: Aggregated) -> list[str]:
    units = sorted({m.split("/", 1)[0] for m in agg.tidy.metric})
    return [s for s in SPLITS if s in units] + [s for s in units if s not in SPLITS]


def reference_table(agg: Aggregated) -> pd.DataFrame:
    """Table 3: our top-1 % (mean over seeds) against the §10 references, with the difference."""
    rows = []
    means = agg.tidy[(agg.tidy.stat == "mean") & agg.tidy.metric.str.endswith("/val/top1")]
    for (label, metric), value in means.set_index(["label", "metric"]).value.items():
        split = metric.split("/", 1)[0]
        ref = REFERENCES.get((label, split))
        if ref is not None:
            rows.append({"variant": label, "split": split, "ours": 100 * value, "reference": ref,
                         "difference": 100 * value - ref})
    return pd.DataFrame(rows, columns=["variant", "split", "ours", "reference", "difference"])


def _reference_tex(table: pd.DataFrame) -> str:
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{llrrr}", r"\toprule",
             r"Variant & Split & Ours & Reference & Difference \\", r"\midrule"]
    lines += [f"{escape(r.variant)} & {escape(SPLITS.get(r.split, r.split))} & {r.ours:.1f} & {r.reference:.1f} & "
              f"{r.difference:+.1f} \\\\" for r in table.itertuples()]
    if table.empty:
        lines.append(r"\multicolumn{5}{c}{no split with a published reference} \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{Top-1 (\%) against PoseC3D (pyskl) and the source document's best runs.}",
              r"\end{table}", ""]
    return "\n".join(lines)


def extra_tables(agg: Aggregated, out_dir: str | Path) -> list[Path]:
    """Table 1 over the splits with results, Table 2 (top-5, mean-class accuracy) and Table 3
    (references) as LaTeX, plus Table 3 as CSV, under `out_dir`."""
    out = Path(out_dir)
    splits = _present_splits(agg)
    if not splits:
        return []
    t1 = render_table(agg.tidy, table1(splits))
    t2 = render_table(agg.tidy, TableSpec(
        columns=tuple(c for s in splits for c in (Column(f"{s}/val/top5", f"{SPLITS.get(s, s)} top-5"),
                                                  Column(f"{s}/val/mean_class_acc", f"{SPLITS.get(s, s)} mean-class"))),
        scale=100.0, precision=1, row_header="Variant", units="",
        caption="Top-5 and mean-class accuracy (%) on the test split, mean and SE over seeds"))
    ref = reference_table(agg)
    return [atomic_write_text(out / "table1.tex", t1), atomic_write_text(out / "table2.tex", t2),
            atomic_write_text(out / "table3.tex", _reference_tex(ref)),
            atomic_write_text(out / "table3.csv", ref.to_csv(index=False))]
