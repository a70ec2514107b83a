"""One array task: its manifest row -> the composed config -> the job, in this process.

Row = explicit `--row`, else SLURM_ARRAY_TASK_ID + `--offset` (chunks of a big array are indexed
0..k, MaxArraySize caps the index). The config is configs/<config_name>.yaml of the sweep's code
snapshot + experiment + the row's overrides + the literal identity values fixed at submit time
(user, seed, submitted, group, code, overrides), so a requeued task is the same run.
On `Preempted` (the job checkpointed after SIGUSR2/SIGTERM) a Slurm task requeues itself.

    python -m actlab.launch.task <sweep>/manifest.json [--offset K | --row I]
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

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
        "user": row.user, "seed": row.seed, "submitted": ident["submitted"], "group": ident["group"],
        "code": ident["code"], "overrides": row.overrides}
    return compose_task(code_dir(sweep) / "configs", manifest.config_name, manifest.experiment,
                        row.overrides, literals)


def load_job(spec: str) -> Callable[[DictConfig], Any]:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"job {spec!r}: expected 'package.module:function'")
    return getattr(importlib.import_module(module), name)


def requeue_self() -> bool:
    """`scontrol requeue` this task (array element when in an array); False outside Slurm."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    target = f"{array_job}_{array_task}" if array_job and array_task else job
    subprocess.run(["scontrol", "requeue", target], check=True, timeout=60)
    return True


def run_row(manifest_path: str | Path, index: int) -> str:
    """Run one row; what submitit pickles (through `run_slurm_task`) and the local pool calls."""
    from actlab.engine.preemption import Preempted

    sweep = sweep_dir(manifest_path)
    manifest = load_manifest(sweep)
    cfg = task_config(manifest, sweep, index)
    row = manifest.row(index)
    print(f"actlab task: row {index} {row.identity['run_id']} -> {row.run_folder}", flush=True)
    try:
        return str(load_job(manifest.job)(cfg))
    except Preempted as stop:
        max_requeues = int(manifest.resources.get("max_requeues", 3))
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        print(f"actlab task: {stop} (restart {restarts} of {max_requeues})", flush=True)
        if restarts < max_requeues and requeue_self():
            return "requeued"
        raise


def run_slurm_task(manifest_path: str, offset: int) -> str:
    """submitit entry point: the row is this array element's id + the chunk's offset."""
    return run_row(manifest_path, row_from_env(offset))


def main(argv: list[str] | None = None) -> int:
    from actlab.engine.preemption import REQUEUE_EXIT_CODE, Preempted

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
