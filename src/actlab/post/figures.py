"""Saving figures (matplotlib, Agg backend): every plot of every family as PNG and PDF, atomically."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from actlab.atomic import atomic_write  # noqa: E402


def save_figure(fig: plt.Figure, stem: Path) -> list[Path]:
    out = []
    for ext in ("png", "pdf"):
        out.append(atomic_write(stem.with_suffix(f".{ext}"),
                                lambda p, e=ext: fig.savefig(p, format=e, dpi=150, bbox_inches="tight")))
    plt.close(fig)
    return out
