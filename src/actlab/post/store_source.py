"""The results store as a `Runs` source: completed runs via `iter_runs`, the others by status."""
from __future__ import annotations

from pathlib import Path

from actlab.post.sources import IncompleteRun, RunRow, Runs
from actlab.results import layout
from actlab.results.store import RunStore, iter_runs


def load_store(results_root: str | Path, experiment: str | None = None) -> Runs:
    root = Path(results_root)
    out = Runs()
    for rec in iter_runs(root, experiment=experiment):
        i = rec.identity
        out.rows.append(RunRow(i.run_id, i.experiment, i.group, i.user, i.seed, i.submitted, rec.method,
                               rec.stream_sha256, {k: float(v) for k, v in rec.summary.items()}, rec.folder))
    # A folder with an identity but no "completed" status is a run that failed or never finished.
    for ident_path in sorted(root.glob(f"{experiment or '*'}/*/*/{layout.IDENTITY}")):
        store = RunStore(ident_path.parent)
        if store.is_completed():
            continue
        i = store.identity()
        state = (store.status() or {}).get("state", "unknown")
        out.incomplete.append(IncompleteRun(i.run_id, i.experiment, i.group, i.user, str(state)))
    return out
