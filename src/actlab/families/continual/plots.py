"""Figures (matplotlib, Agg backend; each saved as PNG and PDF): transfer-matrix heatmaps with the
values written in, OAG along the stream per method, re-exposure forgetting vs log10(gap)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from actlab.families.continual.aggregate import transfer_matrix  # noqa: E402
from actlab.post.figures import save_figure  # noqa: E402
from actlab.post.tables import Aggregated  # noqa: E402


def transfer_heatmap(matrix: pd.DataFrame, title: str, stem: Path, precision: int = 2) -> list[Path]:
    """Rows: model user, columns: stream user (both sorted as strings); NaN cells left blank."""
    values = matrix.to_numpy(dtype=float)
    n = max(len(matrix.index), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    finite = values[np.isfinite(values)]
    lim = float(np.abs(finite).max()) if finite.size else 1.0
    im = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-lim, vmax=lim)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                dark = abs(values[i, j]) > 0.6 * lim      # the colour map's ends are dark
                ax.text(j, i, f"{values[i, j]:.{precision}f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(values.shape[0]), [str(r) for r in matrix.index])
    ax.set_xlabel("stream user")
    ax.set_ylabel("model user")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return save_figure(fig, stem)


def oag_curves(curves: pd.DataFrame, task: str, stem: Path) -> list[Path]:
    """Mean over users of the running balanced-accuracy difference at each stream position."""
    fig, ax = plt.subplots(figsize=(5, 3))
    sub = curves[curves.task == task]
    for (group, label), g in sub.groupby(["group", "label"]):
        mean = g.groupby("position")["oag"].mean()
        ax.plot(mean.index, mean.to_numpy(), label=f"{label} ({group})")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("stream position (samples)")
    ax.set_ylabel(f"OAG, balanced top-1 ({task})")
    if len(sub):
        ax.legend(fontsize=7)
    return save_figure(fig, stem)


def forgetting_plot(bins: pd.DataFrame, stem: Path, metric: str = "loss", task: str = "action") -> list[Path]:
    """The paper's re-exposure forgetting figure: mean +- SE of delta per log10(gap) bin (10
    equal-width bins per group, zero gaps excluded; aggregate.py), empty bins left out; loss of
    the action by default (delta = loss before re-exposure - loss after the last exposure)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    sub = bins[(bins.metric == metric) & (bins.task == task) & (bins.n > 0)]
    for (group, label), g in sub.groupby(["group", "label"]):
        x = (g.bin_lo + g.bin_hi) / 2
        ax.errorbar(x, g["mean"], yerr=g["se"].fillna(0.0), marker="o", capsize=2, label=f"{label} ({group})")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("log10(batches between exposures)")
    ax.set_ylabel(f"re-exposure forgetting, {task} {metric}")
    if len(sub):
        ax.legend(fontsize=7)
    return save_figure(fig, stem)


def all_plots(agg: Aggregated, out_dir: str | Path) -> list[Path]:
    """The continual family's plots of an `aggregate.aggregate` result (its transfer, oag_curves
    and forgetting tables)."""
    out = Path(out_dir)
    paths: list[Path] = []
    for info in agg.groups:
        m = transfer_matrix(agg, info.group, "gain", "action", "loss")
        if m.notna().to_numpy().any():
            paths += transfer_heatmap(m, f"{info.label} ({info.group}): action loss gain",
                                      out / f"transfer_{info.group}")
    curves, forgetting = agg.tables["oag_curves"], agg.tables["forgetting"]
    if not curves.empty:
        paths += oag_curves(curves, "action", out / "oag_along_stream")
    if not forgetting.empty:
        paths += forgetting_plot(forgetting, out / "forgetting_vs_gap")
    return paths
