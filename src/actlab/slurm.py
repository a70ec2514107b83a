"""The one place that asks Slurm about jobs: `job_states` (sacct for finished jobs, squeue for
live ones, squeue winning), `wait_for_job` and `job_gone`. Used by status, the task's requeue
decision, `make run` on a Slurm profile and the run lease's stale check.
"""
from __future__ import annotations

import os
import re
import subprocess
import time

_PENDING_RANGE = re.compile(r"(\d+)_\[(.+?)(%\d+)?\]")   # a pending range of an array: 12_[3-9%2]


def job_states(job_ids: list[str], env: dict[str, str] | None = None) -> dict[str, str]:
    """job id ("123", or "<array>_<index>") -> lower-case state; ids Slurm no longer knows are absent.
    Raises OSError when the Slurm commands are not installed."""
    states: dict[str, str] = {}
    if not job_ids:
        return states
    run_env = os.environ | (env or {})
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(job_ids), "-o", "JobID,State"],
                         capture_output=True, text=True, timeout=60, env=run_env)
    for line in out.stdout.splitlines():
        jid, _, state = line.partition("|")
        state = state.split()[0].lower() if state.strip() else "unknown"
        m = _PENDING_RANGE.fullmatch(jid)
        if m:
            for part in m.group(2).split(","):
                lo, _, hi = part.partition("-")
                for i in range(int(lo), int(hi or lo) + 1):
                    states[f"{m.group(1)}_{i}"] = state
        else:
            states[jid] = state     # the last (latest restart) record wins
    out = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T"],
                         capture_output=True, text=True, timeout=60, env=run_env)
    for line in out.stdout.splitlines():
        jid, _, state = line.partition("|")
        states[jid.strip()] = state.strip().lower()
    return states


def wait_for_job(job_id: str, env: dict[str, str] | None = None, poll_s: float = 3.0) -> str:
    """Block until `job_id` has a final state (sacct lags squeue by seconds); returns it."""
    while True:
        state = job_states([job_id], env).get(job_id)
        if state is not None and state not in {"pending", "running", "completing", "requeued", "configuring"}:
            return state
        time.sleep(poll_s)


def job_gone(job_id: str) -> bool:
    """True only when squeue answers (exit 0) and lists nothing for the job: no squeue here, a
    time-out or an error (controller down) proves nothing and gives False."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and not out.stdout.strip()
