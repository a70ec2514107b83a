"""The results store as a `Runs` source: completed runs via `iter_runs` (identity.json, status.json,
summary.json: never an artifact), the others by their status."""
from __future__ import annotations

from pathlib import Path

from actlab.post.sources import IncompleteRun, RunRow, Runs
from actlab.results import layout
from actlab.results.store import RunStore, iter_runs


def load_store(results_root: str | Path, experiment: str | None = None) -> Runs:
    root = Path(results_root)
    out = Runs()
    listed: set[Path] = set()
    for rec in iter_runs(root, experiment=experiment):
        listed.add(rec.folder)
        i = rec.identity
        out.rows.append(RunRow(i.run_id, i.experiment, i.group, i.unit, i.seed, i.submitted, i.family,
                               rec.inputs, rec.labels, {k: float(v) for k, v in rec.summary.items()},
                               dict(i.overrides), rec.folder))
    # A folder with an identity but no "completed" status is a run that failed or never finished.
    for ident_path in sorted(root.glob(f"{experiment or '*'}/*/*/{layout.IDENTITY}")):
        if ident_path.parent in listed:
            continue
        store = RunStore(ident_path.parent)
        if store.is_completed():
            continue
        i = store.identity()
        state = (store.status() or {}).get("state", "unknown")
        out.incomplete.append(IncompleteRun(i.run_id, i.experiment, i.group, i.unit, i.seed, str(state)))
    return out
