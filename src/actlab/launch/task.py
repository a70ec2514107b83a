"""One array task: its manifest row -> the composed config -> the job, in this process.

Row = explicit `--row`, else SLURM_ARRAY_TASK_ID + `--offset` (chunks of a big array are indexed
0..k, MaxArraySize caps the index). The config is the family's primary config in the sweep's code
snapshot + experiment + the row's overrides + the literal identity values fixed at submit time
(the unit, seed, submitted, group, code, overrides, reference group) and the sweep's task
overrides, so a requeued task is the same run (same folder, same W&B id) and resumes from
`<run folder>/checkpoint`.

Signals: the preemption handlers (SIGUSR2, SIGTERM -> checkpoint at the next batch boundary) are
installed before anything else, so a signal that comes while the task is still importing or
composing is not lost (submitit's own USR2 handler would end a job without a checkpoint method).
On `Preempted` the task asks Slurm for its own state: RUNNING means the signal was the pre-timeout
USR2 (or a SIGTERM Slurm is not acting on), so the task requeues itself; anything else (COMPLETING
after `scontrol requeue`, `scancel`, a time limit or a preemption) means Slurm is already ending
the job and decides what comes next: requeuing it again would resurrect a cancelled task.

    python -m actlab.launch.task <sweep>/manifest.json [--offset K | --row I]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from actlab import families
from actlab.slurm import job_states

from actlab.launch.grid import compose_task
from actlab.launch.manifest import Manifest, code_dir, load_manifest, sweep_dir


def row_from_env(offset: int = 0) -> int:
    task_id = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task_id is None:
        raise ValueError("SLURM_ARRAY_TASK_ID is not set: pass --row, or run inside an array job")
    return int(task_id) + offset


def task_config(manifest: Manifest, sweep: Path, index: int) -> DictConfig:
    row = manifest.row(index)
    ident = row.identity
    literals = dict(manifest.literals) | {
        # experiment: a shared reference row's is `reference`, not the sweep's (launch/reference.py)
        "experiment": ident["experiment"],
        "seed": row.seed, "submitted": ident["submitted"], "group": ident["group"], "code": ident["code"],
        "overrides": row.overrides, "reference_group": manifest.reference_group}
    if row.unit is not None:
        literals[families.get(manifest.family).unit] = row.unit
    return compose_task(code_dir(sweep) / "configs" / manifest.config_dir, manifest.config_name,
                        manifest.experiment, manifest.task_overrides | row.overrides, literals)


def requeue_self() -> bool:
    """`scontrol requeue` this task (array element when in an array); False outside Slurm."""
    target = _own_job()
    if target is None:
        return False
    subprocess.run(["scontrol", "requeue", target], check=True, timeout=60, capture_output=True)
    return True


def own_slurm_state() -> str | None:
    """This job's state as squeue sees it (RUNNING, COMPLETING, ...); None outside Slurm."""
    target = _own_job()
    if target is None:
        return None
    return job_states([target]).get(target, "gone").upper()


def _own_job() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_job}_{array_task}" if array_job and array_task else job


def run_row(manifest_path: str | Path, index: int) -> str:
    """Run one row; what submitit pickles (through `run_slurm_task`) and the local pool calls."""
    from actlab import preemption

    preemption.install_handlers()
    sweep = sweep_dir(manifest_path)
    manifest = load_manifest(sweep)
    for extra in manifest.pythonpath:
        if extra not in sys.path:
            sys.path.append(extra)
    cfg = task_config(manifest, sweep, index)
    row = manifest.row(index)
    import actlab

    print(f"actlab task: row {index} {row.identity['run_id']} -> {row.run_folder} "
          f"(restart {os.environ.get('SLURM_RESTART_COUNT', '0')}, code {Path(actlab.__file__).parent})", flush=True)
    try:
        return str(families.get(manifest.family).job_function()(cfg))
    except preemption.Preempted as stop:
        max_requeues = int(manifest.resources.get("max_requeues", 3))
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        state = own_slurm_state()
        print(f"actlab task: {stop} (restart {restarts} of {max_requeues}, Slurm state {state})", flush=True)
        if state == "RUNNING" and restarts < max_requeues:
            try:
                requeue_self()
                print("actlab task: requeued", flush=True)
                return "requeued"
            except subprocess.SubprocessError as e:
                print(f"actlab task: scontrol requeue failed ({e}); the checkpoint stays for a resubmit", flush=True)
        raise


def run_slurm_task(manifest_path: str, offset: int) -> str:
    """submitit entry point: the row is this array element's id + the chunk's offset."""
    return run_row(manifest_path, row_from_env(offset))


def main(argv: list[str] | None = None) -> int:
    from actlab.preemption import REQUEUE_EXIT_CODE, Preempted

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--row", type=int, default=None)
    args = ap.parse_args(argv)
    index = args.row if args.row is not None else row_from_env(args.offset)
    try:
        print(run_row(args.manifest, index))
    except Preempted:
        return REQUEUE_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
