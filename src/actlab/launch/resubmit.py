"""Resubmit the failed or missing tasks of a sweep, with their original identities.

Completed runs, and tasks still pending/running/requeued, are left alone, so nothing runs twice;
so are the reused runs of the shared reference group while their folder holds a completed run.
The rows run from the sweep's own code snapshot and manifest (same submitted time, group, run id).
"""
from __future__ import annotations

from pathlib import Path

from actlab.launch import manifest as mf
from actlab.launch.status import FAILED_STATES, sweep_status


def rows_to_resubmit(sweep: Path) -> list[int]:
    return [t.row for t in sweep_status(sweep) if t.state in FAILED_STATES]


def resubmit(sweep: str | Path, dry: bool = False) -> list[int]:
    sweep = mf.sweep_dir(Path(sweep))
    manifest = mf.load_manifest(sweep)
    rows = rows_to_resubmit(sweep)
    if not rows:
        print(f"{sweep}: nothing to resubmit")
        return []
    print(f"{sweep}: resubmitting rows {rows}")
    if manifest.cluster.get("executor") == "local":
        from actlab.launch.local import run_local

        if not dry:
            run_local(sweep, manifest, rows)
    else:
        from actlab.launch.submit import submit_rows

        submit_rows(sweep, manifest, rows, dry=dry, contiguous=False)
    return rows
