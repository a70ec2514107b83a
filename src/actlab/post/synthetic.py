"""Write run folders (and their offline W&B mirrors) by hand: fixtures for tests and benchmarks.

The files follow `actlab.results.layout` and go through `actlab.atomic`, like the engine's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from actlab.atomic import atomic_write, atomic_write_json, atomic_write_text
from actlab.identity import RunIdentity
from actlab.results import layout


def write_run(results_root: str | Path, identity: RunIdentity, method: str, summary: dict[str, float],
              stream_sha256: str, predictions: pd.DataFrame | None = None,
              forgetting: pd.DataFrame | None = None, transfer: dict[str, dict[str, Any]] | None = None,
              state: str = layout.COMPLETED) -> Path:
    """`transfer`: stream_user -> {"stream_sha256", "metrics"}. Status is written last."""
    folder = identity.folder(results_root)
    atomic_write_json(folder / layout.IDENTITY, identity.to_dict())
    atomic_write_text(folder / layout.CONFIG, yaml.safe_dump({"method": {"name": method},
                                                              "experiment": identity.experiment}))
    atomic_write_json(folder / layout.STREAM, {"user": identity.user, "sha256": stream_sha256,
                                               "stats": {}, "clips": []})
    for name, table in ((layout.PREDICTIONS, predictions), (layout.FORGETTING, forgetting)):
        if table is not None:
            atomic_write(folder / name, lambda p, t=table: t.to_parquet(p, index=False))
    for stream_user, t in (transfer or {}).items():
        atomic_write_json(folder / layout.TRANSFER_DIR / f"{stream_user}.json",
                          {"model_user": identity.user, "stream_user": stream_user} | t)
    if state == layout.COMPLETED:
        atomic_write_json(folder / layout.SUMMARY, summary)
    atomic_write_json(folder / layout.STATUS, {"state": state})
    return folder


def write_offline_mirror(wandb_dir: str | Path, identity: RunIdentity, method: str,
                         summary: dict[str, float] | None, stream_sha256: str, exit_code: int = 0) -> None:
    """One offline W&B run as `WandbMirror` writes it (config keys, fixed id, resume="allow")."""
    import wandb

    Path(wandb_dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(id=identity.run_id, group=identity.group, project="actlab", dir=str(wandb_dir),
                     mode="offline", resume="allow", name=identity.run_id,
                     config={"identity": identity.to_dict(), "cfg": {"method": {"name": method}},
                             "stream_sha256": stream_sha256},
                     settings=wandb.Settings(silent=True))
    run.log({"online/action/balanced_top1": 0.0, "batch": 0})  # running value; the summary overwrites it
    if summary:
        run.summary.update(summary)
    run.finish(exit_code=exit_code)
