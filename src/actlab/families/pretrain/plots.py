"""The pretrain family's report additions: per-epoch validation curves of every group (mean over
seeds, shaded +- SE), read from each run's curves.parquet."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from actlab.post.figures import plt, save_figure
from actlab.post.sources import Runs
from actlab.post.tables import Aggregated, latest
from actlab.results import layout
from actlab.results.store import RunStore

CURVE_METRICS = ("val/action/top1", "train/loss")


def curves_table(runs: Runs, labels: dict[str, str]) -> pd.DataFrame:
    """group, label, seed, epoch, metric, value: the latest run of every (group, seed)."""
    frames = []
    for r in latest(runs.rows):
        if r.folder is None or not (r.folder / layout.CURVES).exists():
            continue
        curves = RunStore(r.folder).read(layout.CURVES)
        cols = [m for m in CURVE_METRICS if m in curves]
        long = curves.melt(id_vars=["epoch"], value_vars=cols, var_name="metric", value_name="value")
        frames.append(long.assign(group=r.group, label=labels.get(r.group, r.group), seed=r.seed))
    return (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=["epoch", "metric", "value", "group", "label", "seed"]))


def validation_curves(agg: Aggregated, out_dir: str | Path) -> list[Path]:
    curves = agg.tables.get("curves")
    if curves is None or curves.empty:
        return []
    paths = []
    for metric in CURVE_METRICS:
        sub = curves[curves.metric == metric]
        if sub.empty:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for label, g in sub.groupby("label", sort=True):
            stats = g.groupby("epoch")["value"].agg(["mean", "sem"]).reset_index()
            ax.plot(stats["epoch"], stats["mean"], marker="o", label=label)
            ax.fill_between(stats["epoch"], stats["mean"] - stats["sem"].fillna(0),
                            stats["mean"] + stats["sem"].fillna(0), alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
        paths += save_figure(fig, Path(out_dir) / metric.replace("/", "_"))
    return paths
