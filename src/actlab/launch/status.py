"""State of every task of a sweep: results store (status.json) first, then squeue/sacct.

A run whose status.json says completed is completed, whatever Slurm says; otherwise the latest
submission of its row decides: pending, running, requeued, failed, timeout, cancelled,
node_fail, out_of_memory; `missing` = never submitted, or Slurm forgot it without a result.
A row the manifest marks `reused` (a completed run of the shared reference group, which this sweep
did not submit) shows job `reused`; its state is read from its run folder like any other row, so
it is completed, or missing (and resubmitted) should that run folder have been removed.
A task of several rows (`resources.streams_per_gpu`, jobs.json `tasks`) gives each of its rows its
job id; a failed row's log is its own stream's (`<job>_row<I>.out`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actlab.atomic import read_json
from actlab.launch import manifest as mf
from actlab.slurm import job_states

FAILED_STATES = {"failed", "timeout", "cancelled", "node_fail", "out_of_memory", "boot_fail",
                 "deadline", "preempted", "missing"}


@dataclass(frozen=True)
class TaskStatus:
    row: int
    point: str
    unit: str | None
    seed: int
    state: str
    job: str | None      # "<array>_<index>" of the latest submission; "reused" for a reused reference run
    log: str | None      # its log file, for failures


def _local_codes(sweep: Path, job_id: str) -> dict[str, int]:
    path = sweep / f"{job_id}.exit_codes.json"
    return read_json(path) if path.exists() else {}


def sweep_status(sweep: str | Path) -> list[TaskStatus]:
    sweep = mf.sweep_dir(Path(sweep))
    manifest = mf.load_manifest(sweep)
    latest: dict[int, tuple[dict, int]] = {}       # row -> (submission, array index)
    for sub in mf.load_jobs(sweep):
        for i, task in enumerate(sub.get("tasks") or [[row] for row in sub["rows"]]):
            for row in task:
                latest[row] = (sub, i if sub["kind"] == "slurm" else row)
    slurm_ids = sorted({s["job_id"] for s, _ in latest.values() if s["kind"] == "slurm"})
    states = job_states(slurm_ids, {str(k): str(v) for k, v in (manifest.cluster.get("env") or {}).items()})
    logs = mf.logs_dir(sweep)
    table = []
    for row in manifest.rows:
        status_file = Path(row.run_folder) / "status.json"
        done = status_file.exists() and read_json(status_file).get("state") == "completed"
        sub, idx = latest.get(row.index, (None, None))
        job = "reused" if row.reused and sub is None else None
        if sub:   # a one-task Slurm submission is a plain job, not an array element
            job = f"{sub['job_id']}_{idx}" if sub["kind"] == "local" or sub.get("array", True) else sub["job_id"]
        if done:
            state = "completed"
        elif sub is None:
            state = "missing"
        elif sub["kind"] == "local":
            code = _local_codes(sweep, sub["job_id"]).get(str(row.index))
            state = "running" if code is None else ("failed" if code != 0 else "missing")
        else:
            state = states.get(job, "missing")
            if state == "completed":   # Slurm says done but no completed status.json: the run failed
                state = "failed"
        log = None
        if state in FAILED_STATES and sub:
            own = mf.stream_log(sweep, job, row.index)   # a task of several rows: the row's own stream
            cands = (([own] if sub.get("tasks") and own.exists() else [])
                     + sorted(logs.glob(f"{job}_*.err")) + sorted(logs.glob(f"{job}_*.out"))
                     + sorted(logs.glob(f"{job}.out")))
            log = str(cands[0]) if cands else None
        point = ",".join(f"{k}={v}" for k, v in row.overrides.items()) or "<defaults>"
        table.append(TaskStatus(row.index, point, row.unit, row.seed, state, job, log))
    return table


def format_table(table: list[TaskStatus]) -> str:
    head = ("row", "grid point", "unit", "seed", "state", "job", "log")
    lines = [head] + [(str(t.row), t.point, t.unit or "-", str(t.seed), t.state, t.job or "-", t.log or "")
                      for t in table]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    out = ["  ".join(c.ljust(w) for c, w in zip(line[:-1], widths)) + "  " + line[-1] for line in lines]
    counts: dict[str, int] = {}
    for t in table:
        counts[t.state] = counts.get(t.state, 0) + 1
    out.append("total: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(out)
