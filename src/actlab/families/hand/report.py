"""The hand family's report: mean +- SE over seeds per (group, protocol), Table 1 (the evaluation
modes, the paper layout), Table 2 (crop size and FiLM condition dropout), Table 3 (ours against
the source's numbers) and the PCK / FS curves of modes (a), (d), (e), (f).

Seeds are the replicates within a protocol, so the rows handed to the generic aggregation
(`actlab.post.tables.aggregate_runs`) merge one seed's runs over the protocols, each metric named
`<protocol>/<metric>`; fractions become percent so one table scale fits mm and %. The eval runs of a
sweep live in a group of their own, written after the arrays: they are found next to the sweep's
runs by the run ids they record (`sources`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from actlab.atomic import atomic_write_text
from actlab.post.latex import Column, TableSpec, render_table
from actlab.post.sources import IncompleteRun, RunRow, Runs
from actlab.post.tables import Aggregated, aggregate_runs

PROTOCOLS = {"fpha_1to1": "1:1", "fpha_xsub": "x-sub"}
MODE_LABELS = {"hpe": "(a) HPE standalone", "har_gt": "(b) HAR on GT pose (oracle)",
               "hpe_har": "(c) HPE to HAR", "film_gt": "(d) FiLM-HPE, GT action (oracle)",
               "film_uniform": "(e) FiLM-HPE, uniform action", "film_2pass": "(f) FiLM-HPE, two passes"}
PERCENT = ("pck_auc", "fs_auc", "top1", "top3", "val_top1")
# §10 of the issue: the source's single runs on the 1:1 split, early-stopped on test
SOURCE = {"hpe": {"hpe/mean_mm": 14.49}, "har_gt": {"har/top1": 72.3, "har/top3": 86.0},
          "hpe_har": {"hpe/mean_mm": 14.49, "har/top1": 59.0}}


def lower_is_better(metric: str) -> bool:
    return metric.endswith("_mm") or "loss" in metric.rsplit("/", 1)[-1]


def _value(metric: str, v: float) -> float:
    return 100.0 * v if metric.rsplit("/", 1)[-1] in PERCENT else v


def _merged(rows: list[RunRow], group_of, label_of, metrics_of) -> list[RunRow]:
    """One row per (group, seed): the protocols' metrics side by side as `<protocol>/<metric>`."""
    merged: dict[tuple[str, int], dict] = {}
    for r in rows:
        key = (group_of(r), r.seed)
        m = merged.setdefault(key, {"row": r, "summary": {}, "inputs": {}, "label": label_of(r)})
        for k, v in metrics_of(r).items():
            m["summary"][f"{r.unit}/{k}"] = _value(k, v)
        m["inputs"] |= {f"{r.unit}/{k}": v for k, v in r.inputs.items()}
        if r.submitted > m["row"].submitted:
            m["row"] = r
    return [RunRow(m["row"].run_id, m["row"].experiment, g, None, seed, m["row"].submitted, m["row"].family,
                   {}, {"variant": m["label"]}, m["summary"], {}, m["row"].folder)
            for (g, seed), m in merged.items()]


def eval_runs(runs: Runs) -> list[RunRow]:
    """The eval runs of `runs`' HPE and HAR runs: among `runs`, or else beside them in the store."""
    from actlab.post.store_source import load_store

    mine = {r.run_id for r in runs.rows}
    found = {r.run_id: r for r in runs.rows if r.labels.get("task") == "eval"}
    for root, experiment in {(r.folder.parents[2], r.experiment) for r in runs.rows if r.folder is not None}:
        for r in load_store(root, experiment).rows:
            if r.labels.get("task") == "eval" and set(r.labels.get("sources", "").split(",")) <= mine:
                found.setdefault(r.run_id, r)
    return list(found.values())


def aggregate(runs: Runs, reference_group=None, expected_units=None) -> Aggregated:
    """Table 1 rows (one group per evaluation mode) when the runs have eval runs, else one row per
    grid point; the per-grid-point aggregate is always in `tables["runs"]`."""
    trained = [r for r in runs.rows if r.labels.get("task") != "eval"]
    incomplete = [IncompleteRun(i.run_id, i.experiment, i.group, None, i.seed, i.state) for i in runs.incomplete]
    per_point = aggregate_runs(Runs(_merged(trained, lambda r: r.group, lambda r: r.labels.get("variant", r.group),
                                            lambda r: r.summary), incomplete),
                               lambda m: not lower_is_better(m))
    evals = eval_runs(runs)
    if not evals:
        per_point.tables["runs"] = per_point.tidy
        return per_point
    mode_rows = []
    for mode, label in MODE_LABELS.items():
        prefix = f"eval/{mode}/"
        mode_rows += _merged(evals, lambda r, m=mode: f"{r.experiment}-eval-{m}", lambda r, l=label: l,
                             lambda r, p=prefix: {k[len(p):]: v for k, v in r.summary.items() if k.startswith(p)})
    agg = aggregate_runs(Runs(mode_rows), lambda m: not lower_is_better(m))
    agg.tables["runs"] = per_point.tidy
    agg.tables["curves"] = curves(evals)
    return agg


def table1() -> TableSpec:
    cols = []
    for p, name in PROTOCOLS.items():
        cols += [Column(f"{p}/hpe/mean_mm", f"{name} mm"), Column(f"{p}/hpe/pck_auc", f"{name} PCK-AUC (%)"),
                 Column(f"{p}/har/top1", f"{name} top-1 (%)"), Column(f"{p}/har/top3", f"{name} top-3 (%)")]
    return TableSpec(columns=tuple(cols), scale=1.0, precision=1, row_header="Mode",
                     caption="Hand pose error (mm, lower is better), PCK AUC over 0-80 mm and action top-1/top-3 "
                             "(%) per protocol, mean and SE over seeds. Oracle rows use ground truth at test time; "
                             "the CoM is the GT MMCP joint (as the source).")


def table2(tidy: pd.DataFrame) -> str:
    """The crop-size and condition-dropout ablation: pose error and PCK AUC per grid point."""
    spec = TableSpec(columns=tuple(c for p, n in PROTOCOLS.items() for c in (
        Column(f"{p}/hpe/mean_mm", f"{n} mm"), Column(f"{p}/hpe/pck_auc", f"{n} PCK-AUC (%)"))),
        scale=1.0, precision=1, row_header="Grid point", units="",
        caption="HPE ablation: cube side D and FiLM condition dropout p, mean and SE over seeds")
    hpe = tidy[tidy.metric.str.contains("/hpe/")]
    return render_table(hpe, spec) if len(hpe) else ""


def table3(tidy: pd.DataFrame) -> str:
    """Ours (1:1 protocol) next to the source's single runs (§10 of the issue, selected on test)."""
    rows = []
    for mode, ref in SOURCE.items():
        for metric, value in ref.items():
            ours = tidy[(tidy.label == MODE_LABELS[mode]) & (tidy.metric == f"fpha_1to1/{metric}")]
            for stat in ("mean", "se"):
                v = ours[ours.stat == stat].value
                rows.append({"group": mode, "label": MODE_LABELS[mode], "metric": f"ours/{metric}", "stat": stat,
                             "value": float(v.iloc[0]) if len(v) else np.nan,
                             "higher_is_better": not lower_is_better(metric), "partial": False, "n_units": 0,
                             "missing_units": "", "failed_units": "", "mismatched_units": ""})
            rows.append(rows[-2] | {"metric": f"source/{metric}", "stat": "mean", "value": value})
    frame = pd.DataFrame(rows)
    cols = tuple(Column(f"{who}/{m}", f"{who} {m.split('/')[1]}") for m in ("hpe/mean_mm", "har/top1", "har/top3")
                 for who in ("ours", "source"))
    return render_table(frame, TableSpec(columns=cols, scale=1.0, precision=1, row_header="Mode", units="",
                                         caption="Ours (fpha 1:1, selected on validation unless flagged) against "
                                                 "the source's single runs (selected on test)"))


def curves(evals: list[RunRow]) -> pd.DataFrame:
    """PCK and FS curves per (protocol, mode), mean over seeds."""
    from actlab.results.store import RunStore

    parts = []
    for r in evals:
        c = RunStore(r.folder).read("curves.parquet")
        parts.append(c.assign(protocol=r.unit, seed=r.seed))
    if not parts:
        return pd.DataFrame()
    return (pd.concat(parts).groupby(["protocol", "mode", "threshold_mm"], as_index=False)[["pck", "fs"]].mean())


def plots(agg: Aggregated, out_dir: str | Path) -> list[Path]:
    """PCK / FS curves of modes (a), (d), (e), (f), and Tables 2 and 3 beside the report's table.tex."""
    from actlab.post.figures import save_figure
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = []
    runs = agg.tables.get("runs")
    if runs is not None and len(runs):
        text = table2(runs)
        if text:
            paths.append(atomic_write_text(out.parent / "table2.tex", text))
    if any(agg.tidy.label.isin(list(MODE_LABELS.values()))):
        paths.append(atomic_write_text(out.parent / "table3.tex", table3(agg.tidy)))
    c = agg.tables.get("curves")
    if c is None or not len(c):
        return paths
    for protocol, part in c.groupby("protocol"):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for mode in ("hpe", "film_gt", "film_uniform", "film_2pass"):
            m = part[part["mode"] == mode]
            for ax, key in zip(axes, ("pck", "fs")):
                ax.plot(m.threshold_mm, 100 * m[key], label=MODE_LABELS[mode])
        for ax, title in zip(axes, ("PCK: joints within tau (%)", "FS: frames with every joint within tau (%)")):
            ax.set_xlabel("tau (mm)")
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        paths += save_figure(fig, out / f"pck_fs_{protocol}")
        plt.close(fig)
    return paths
