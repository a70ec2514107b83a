"""The console summary `make run` ends with: OAG and HAG per group (row label), mean +- SE over users."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from actlab.families.continual.artifacts import TASKS


def gains_table(tidy: pd.DataFrame, stat: str = "balanced_top1") -> pd.DataFrame:
    """One row per (label, group) of the tidy aggregate; columns "OAG action", ..., "HAG noun" as
    "mean +- SE" in percentage points, and the number of users."""
    rows = []
    for (label, group), g in tidy.groupby(["label", "group"], sort=True):
        values = {(r.metric, r.stat): r.value for r in g.itertuples()}
        row = {"label": label, "group": group}
        for gain in ("oag", "hag"):
            for task in TASKS:
                m = f"{gain}/{task}/{stat}"
                if (m, "mean") in values:
                    row[f"{gain.upper()} {task}"] = (f"{100 * values[(m, 'mean')]:+.2f} +- "
                                                     f"{100 * values[(m, 'se')]:.2f}")
        row["users"] = int(g["n_units"].max())
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def print_gains(aggregate_csv: str | Path, stat: str = "balanced_top1") -> None:
    table = gains_table(pd.read_csv(aggregate_csv), stat)
    print(f"\nGains over the reference network ({stat}, percentage points, mean +- SE over users):")
    print(table.to_string(index=False))
    print()
