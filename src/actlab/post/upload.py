"""Optional upload of an aggregate to W&B: one run per (experiment, aggregate), offline by default.

The tidy table goes up as a `wandb.Table` and every mean / SE as a summary value named
`<group>/<metric>/<stat>`, so the W&B UI can chart the same numbers as the LaTeX table. The results
store stays the source of truth; `WANDB_MODE` wins over `mode`, as for the stream runs.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from actlab.identity import group_hash
from actlab.results.wandb_mirror import PROJECT


def upload_aggregate(tidy_csv: str | Path, experiment: str, wandb_dir: str | Path,
                     mode: str | None = None) -> str:
    """Log the tidy aggregate; returns the W&B run id (stable for the same table: reruns resume it)."""
    import wandb

    table = pd.read_csv(tidy_csv)
    run_id = f"aggregate-{experiment}-{group_hash({'rows': table.to_csv(index=False)})}"
    Path(wandb_dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(id=run_id, name=run_id, group=f"{experiment}-aggregate",
                     project=PROJECT, dir=str(wandb_dir), resume="allow",
                     mode=os.environ.get("WANDB_MODE") or mode or "offline",
                     config={"experiment": experiment, "source": str(tidy_csv)},
                     settings=wandb.Settings(silent=True))
    run.log({"aggregate": wandb.Table(dataframe=table.astype({"value": float}))})
    stats = table[table["stat"].isin(["mean", "se"])]
    run.summary.update({f"{r.group}/{r.metric}/{r.stat}": float(r.value) for r in stats.itertuples()})
    run.finish()
    return run_id
