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

Several ranks (`resources.tasks_per_node`, `nodes`; launch/ranks.py): srun runs this on every rank;
the job decides who writes, and only rank 0 asks for the requeue.

Several streams per GPU (`resources.streams_per_gpu: k`): a task of k rows (`run_rows`) starts one
process per row (`--row I --stream`) at once, each with its own run folder, checkpoint and log
(`logs/<job>_row<I>.out`), and `ACTLAB_CPUS_PER_STREAM` = `OMP_NUM_THREADS` = SLURM_CPUS_PER_TASK // k
(actlab.device sizes torch threads and loader workers from it).
It forwards SIGUSR2/SIGTERM to every stream, so all k checkpoint; a stream stops with
REQUEUE_EXIT_CODE and leaves the requeue to the task, which decides for all k as above.

    python -m actlab.launch.task <sweep>/manifest.json [--offset K | --row I [--stream]]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from actlab import families
from actlab.device import ranks_from_env
from actlab.slurm import job_states

from actlab.launch.grid import compose_task
from actlab.launch.manifest import MANIFEST, Manifest, code_dir, load_manifest, stream_log, sweep_dir


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


def run_row(manifest_path: str | Path, index: int, requeue: bool = True) -> str:
    """Run one row; what submitit pickles (through `run_slurm_task`) and the local pool calls.
    requeue=False: a stream of a `run_rows` task, whose task decides about the requeue."""
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
        rank = ranks_from_env().rank
        if rank > 0:    # one rank of a data-parallel task: rank 0 checkpointed and decides about the requeue
            print(f"actlab task: rank {rank} stopped with rank 0 ({stop})", flush=True)
            return "stopped"
        if not requeue:
            print(f"actlab task: {stop}", flush=True)
            raise
        if _requeued(manifest, stop):
            return "requeued"
        raise


def _requeued(manifest: Manifest, stop: BaseException) -> bool:
    """After a stop on request: requeue this task if Slurm is not already ending it (see above)."""
    max_requeues = int(manifest.resources.get("max_requeues", 3))
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    state = own_slurm_state()
    print(f"actlab task: {stop} (restart {restarts} of {max_requeues}, Slurm state {state})", flush=True)
    if state == "RUNNING" and restarts < max_requeues:
        try:
            requeue_self()
            print("actlab task: requeued", flush=True)
            return True
        except subprocess.SubprocessError as e:
            print(f"actlab task: scontrol requeue failed ({e}); the checkpoint stays for a resubmit", flush=True)
    return False


STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


def _ignore_stop_signals() -> None:
    # until the stream installs its handlers (actlab.preemption), a signal would kill it while it
    # imports; ignored instead, and forwarded again by the task until the stream has stopped
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def run_rows(manifest_path: str | Path, rows: list[int], resend_s: float = 2.0) -> str:
    """submitit entry point of a task of several rows (resources.streams_per_gpu = k): one process
    per row at once on the task's GPU; signals forwarded to all; requeued once all have stopped."""
    from actlab.launch.streams import cpus_per_stream
    from actlab.preemption import REQUEUE_EXIT_CODE, Preempted

    sweep = sweep_dir(manifest_path)
    manifest = load_manifest(sweep)
    received: list[int] = []
    procs: list[subprocess.Popen] = []

    def forward(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        received.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for s in STOP_SIGNALS:   # before the streams start: no signal may end this task without them
        signal.signal(s, forward)
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or manifest.resources.get("cpus") or 1)
    per_stream = str(cpus_per_stream(cpus, manifest.resources))
    src = str(code_dir(sweep) / "src")
    env = os.environ | {"ACTLAB_CPUS_PER_STREAM": per_stream, "OMP_NUM_THREADS": per_stream,
                        "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    job = _own_job() or f"local{os.getpid()}"
    logs = {}
    print(f"actlab task: rows {rows} as {len(rows)} streams, {per_stream} CPU(s) each "
          f"(restart {os.environ.get('SLURM_RESTART_COUNT', '0')})", flush=True)
    for index in rows:
        logs[index] = stream_log(sweep, job, index)
        logs[index].parent.mkdir(parents=True, exist_ok=True)
        with open(logs[index], "a") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-u", "-m", "actlab.launch.task", str(sweep / MANIFEST),
                 "--row", str(index), "--stream"], env=env, cwd=sweep, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_ignore_stop_signals))
    last_sent = time.monotonic()
    while any(p.poll() is None for p in procs):
        time.sleep(0.2)
        if received and time.monotonic() - last_sent >= resend_s:   # a stream still importing ignored it
            forward(received[-1], None)
            last_sent = time.monotonic()
    codes = {index: p.returncode for index, p in zip(rows, procs)}
    for index, code in codes.items():
        print(f"actlab task: row {index} exit {code}, log {logs[index]}", flush=True)
    failed = {i: c for i, c in codes.items() if c not in (0, REQUEUE_EXIT_CODE)}
    if failed:
        raise RuntimeError(f"rows {sorted(failed)} failed (exit codes {failed}); logs: "
                           + ", ".join(str(logs[i]) for i in sorted(failed)))
    stopped = [i for i, c in codes.items() if c == REQUEUE_EXIT_CODE]
    if not stopped:
        return f"rows {rows} completed"
    stop = Preempted(", ".join(manifest.row(i).run_folder for i in stopped))
    if _requeued(manifest, stop):
        return "requeued"
    raise stop


def run_slurm_task(manifest_path: str, offset: int) -> str:
    """submitit entry point: the row is this array element's id + the chunk's offset."""
    return run_row(manifest_path, row_from_env(offset))


def main(argv: list[str] | None = None) -> int:
    from actlab.preemption import REQUEUE_EXIT_CODE, Preempted

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--row", type=int, default=None)
    ap.add_argument("--stream", action="store_true",
                    help="one stream of a task of several rows: stop with REQUEUE_EXIT_CODE, never requeue")
    args = ap.parse_args(argv)
    index = args.row if args.row is not None else row_from_env(args.offset)
    try:
        print(run_row(args.manifest, index, requeue=not args.stream))
    except Preempted:
        return REQUEUE_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
