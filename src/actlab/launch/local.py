"""The `local` cluster: the tasks of a sweep as processes on this machine, at most N at once
(`pool_width`: array_parallelism, and no more CPU-bound tasks than the machine has CPUs).

Each process gets SLURM_ARRAY_TASK_ID/SLURM_ARRAY_JOB_ID-like variables (so logs and the task
code look the same as under Slurm) and, when there are GPUs, CUDA_VISIBLE_DEVICES of its own
(shared by `resources.streams_per_gpu` processes at once; each gets resources.cpus // k threads,
`ACTLAB_CPUS_PER_STREAM`).
A task that stopped on request (exit code REQUEUE_EXIT_CODE) is started again and resumes.
`resources.tasks_per_node: r` starts a task's r ranks with torchrun (launch/ranks.py).
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from actlab.identity import submit_timestamp
from actlab.launch import manifest as mf
from actlab.launch.ranks import nodes, tasks_per_node
from actlab.launch.streams import cpus_per_stream, streams_per_gpu

from actlab.preemption import REQUEUE_EXIT_CODE


def visible_gpus() -> list[str]:
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def pool_width(resources: dict, n_gpus: int, n_cpus: int) -> int:
    """How many tasks run at once: `array_parallelism`, capped by streams_per_gpu per GPU when there
    are GPUs, else by the CPUs (each task holds `cpus` of them, per rank): more CPU-bound processes
    than cores only time-slice and hold memory (measured in docs/launch.md)."""
    width = max(1, int(resources.get("array_parallelism") or 1))
    if n_gpus:
        return min(width, n_gpus * streams_per_gpu(resources))
    per_task = max(1, int(resources.get("cpus") or 1)) * tasks_per_node(resources)
    return max(1, min(width, n_cpus // per_task))


def run_local(sweep: Path, manifest: mf.Manifest, rows: list[int]) -> dict[int, int]:
    """Run `rows`, blocking; returns row -> exit code. Logs: logs/local-<id>_<row>.out."""
    resources = manifest.resources
    ranks = tasks_per_node(resources)
    if nodes(resources) > 1:
        raise ValueError(f"resources.nodes={nodes(resources)}: the local executor runs on this machine only")
    gpus = visible_gpus() if int(resources.get("gpus") or 0) else []
    if gpus and ranks > 1:      # a data-parallel task holds one GPU per rank
        if len(gpus) < ranks:
            raise ValueError(f"resources.tasks_per_node={ranks} ranks, but this machine shows {len(gpus)} GPU(s)")
        gpus = [",".join(gpus[i:i + ranks]) for i in range(0, len(gpus) - ranks + 1, ranks)]
    threads = str(cpus_per_stream(int(resources.get("cpus") or 1), resources))
    width = pool_width(resources, len(gpus), len(os.sched_getaffinity(0)))
    slots: queue.Queue[str | None] = queue.Queue()
    for i in range(width):
        slots.put(gpus[i % len(gpus)] if gpus else None)   # spread: at most streams_per_gpu per GPU
    job_id = f"local{os.getpid()}{submit_timestamp()[-7:-1]}"
    logs = mf.logs_dir(sweep)
    logs.mkdir(parents=True, exist_ok=True)
    python = manifest.cluster.get("python") or sys.executable
    max_restarts = int(resources.get("max_requeues", 3))
    # several ranks of one data-parallel run: torchrun starts them (RANK, WORLD_SIZE, a local rendezvous);
    # a rank stopped on request makes torchrun fail, so locally such a task ends failed and
    # `make resubmit` resumes it from its checkpoint
    launcher = ([python, "-u", "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
                if ranks > 1 else [python, "-u"])

    started, finished, lock = time.monotonic(), [0], threading.Lock()

    def progress(row: int, what: str) -> None:
        with lock:   # one line per event, so `make run` is never silent for minutes
            print(f"[{finished[0]}/{len(rows)} done, {time.monotonic() - started:5.0f} s] row {row} "
                  f"{manifest.rows[row].identity['run_id']}: {what}", flush=True)

    def one(row: int) -> int:
        gpu = slots.get()
        t0 = time.monotonic()
        progress(row, "started")
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_JOB")}
            env |= {"SLURM_ARRAY_JOB_ID": job_id, "SLURM_ARRAY_TASK_ID": str(row),
                    "PYTHONPATH": str(mf.code_dir(sweep) / "src"),
                    # as Slurm's --cpus-per-task: N processes x all-core thread pools thrash a CPU box
                    "OMP_NUM_THREADS": threads, "ACTLAB_CPUS_PER_STREAM": threads}
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            elif gpus == [] and int(resources.get("gpus") or 0) == 0:
                env["CUDA_VISIBLE_DEVICES"] = ""
            for restart in range(max_restarts + 1):
                env["SLURM_RESTART_COUNT"] = str(restart)
                with open(logs / f"{job_id}_{row}.out", "a") as log:
                    rc = subprocess.run([*launcher, "-m", "actlab.launch.task", str(sweep / mf.MANIFEST),
                                         "--row", str(row)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=sweep).returncode
                if rc != REQUEUE_EXIT_CODE:
                    break
            with lock:
                finished[0] += 1
            progress(row, f"{'completed' if rc == 0 else f'FAILED (exit {rc}), log {logs}/{job_id}_{row}.out'}"
                          f" in {time.monotonic() - t0:.0f} s")
            return rc
        finally:
            slots.put(gpu)

    mf.append_jobs(sweep, [{"kind": "local", "job_id": job_id, "rows": rows, "offset": None,
                            "submitted": submit_timestamp()}])
    with ThreadPoolExecutor(max_workers=width) as pool:
        codes = dict(zip(rows, pool.map(one, rows)))
    mf.atomic_write_json(sweep / f"{job_id}.exit_codes.json", {str(k): v for k, v in codes.items()})
    failed = [r for r, c in codes.items() if c != 0]
    print(f"local run {job_id}: {len(rows) - len(failed)} of {len(rows)} tasks succeeded"
          + (f"; failed rows {failed} (logs in {logs})" if failed else "") + f"; sweep: {sweep}")
    return codes
