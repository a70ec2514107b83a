"""Submitting a 2,000-task grid through `make grid` on the local Slurm, against one sbatch per task.

Needs root (cluster/local_slurm/start.sh starts munged, MariaDB and the Slurm daemons); skipped
with a message otherwise. The benchmark runs its own cluster (state in /var/tmp/actlab-slurm-bench,
ports 9817..9820, MaxArraySize 1001) so it never touches a cluster someone else is using, and stops
it afterwards when it started it.
The grid: 20 users x 100 seeds of a throwaway continual experiment (configs copied to a temp dir),
submitted held (`--hold`) so nothing runs, then cancelled. `make grid` submits the whole pipeline:
the arrays and the aggregation job (no transfer step: `transfer: none`).
Launcher: `jobs/grid.py` in a subprocess (validation of every grid point, manifest, code snapshot,
submitit arrays of <= MaxArraySize); sbatch calls counted by a PATH shim in front of sbatch.
Baseline: `sbatch --hold --parsable --wrap true` once per task, for 200 tasks, extrapolated per task
to 2,000 (2,000 single submissions would take minutes of the benchmark's budget for no new
information: the cost per call is flat).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _egotoy
from common import Record

REPO = Path(__file__).resolve().parents[1]
STATE = Path("/var/tmp/actlab-slurm-bench")
ENV = {"ACTLAB_SLURM_DIR": str(STATE), "ACTLAB_SLURM_PORT": "9817", "ACTLAB_SLURM_MAX_ARRAY": "1001"}
USERS, BASELINE_TASKS = 20, 200
SEEDS = int(os.environ.get("BENCH_SUBMIT_SEEDS", "100"))   # 20 x 100 = 2,000 tasks; fewer for a quick check
# jobs/grid.py's main() with its two phases timed: prepare (validate every grid point by composing its
# config, manifest, code snapshot) and submit_rows (sbatch of the arrays).
TIMED_GRID = r"""
import json, sys, time
import actlab.launch.submit as submit
phases = {}
def timed(name, fn):
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
    return wrapper
submit.prepare = timed("prepare_s", submit.prepare)
submit.submit_rows = timed("submit_s", submit.submit_rows)
import runpy
t0 = time.perf_counter()
mod = runpy.run_path(REPO_GRID, run_name="bench")
rc = mod["main"](json.loads(sys.argv[1]))
phases["total_s"] = time.perf_counter() - t0
if rc:
    sys.exit(rc)
print(json.dumps(phases))
""".replace("REPO_GRID", repr(str(REPO / "jobs" / "grid.py")))


def _alive() -> bool:
    pid = STATE / "run" / "slurmctld.pid"
    if not pid.exists():
        return False
    try:
        os.kill(int(pid.read_text().strip()), 0)
        return True
    except (ValueError, OSError):
        return False


def _cancel(conf: str, ids: list[str]) -> None:
    for k in range(0, len(ids), 200):
        subprocess.run(["scancel", *ids[k:k + 200]], env=os.environ | {"SLURM_CONF": conf},
                       capture_output=True, timeout=120)


def main() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("[submit] skipped: the local Slurm cluster needs root on Debian (cluster/local_slurm/start.sh)")
        return
    started = not _alive()
    out = subprocess.run(["bash", str(REPO / "cluster/local_slurm/start.sh")], env=os.environ | ENV,
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"local Slurm did not start:\n{out.stderr[-3000:]}")
    conf = str(STATE / "etc" / "slurm.conf")
    env = os.environ | {"SLURM_CONF": conf}
    ids: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            shutil.copytree(REPO / "configs", tmp / "configs")
            users = ", ".join(str(1000 + u) for u in range(USERS))
            seeds = ", ".join(str(s) for s in range(SEEDS))
            (tmp / "configs" / "continual" / "experiment" / "bench_submit.yaml").write_text(
                f"# @package _global_\nexperiment: bench_submit\nusers: [{users}]\nseeds: [{seeds}]\n"
                "grid: {}\nreference: null\ntransfer: none\n")
            shim = tmp / "shim"
            shim.mkdir()
            calls = tmp / "sbatch_calls"
            calls.write_text("")
            (shim / "sbatch").write_text(f"#!/bin/sh\necho x >> {calls}\nexec {shutil.which('sbatch')} \"$@\"\n")
            (shim / "sbatch").chmod(0o755)
            # the launcher checks the inputs before it submits: the benchmarks' egotoy set has them
            _egotoy.ensure()
            argv = ["experiment=bench_submit", "cluster=local_slurm", f"cluster.env.SLURM_CONF={conf}",
                    f"configs={tmp / 'configs'}", "+cluster.sbatch.hold=true", "--", f"paths.data={_egotoy.DATA}",
                    f"paths.splits={_egotoy.SPLITS}", f"paths.pretrained={_egotoy.checkpoint_path()}"]
            grid = subprocess.run([sys.executable, "-c", TIMED_GRID, json.dumps(argv)], cwd=tmp, capture_output=True,
                                  text=True, timeout=3600,
                                  env=env | {"ACTLAB_ROOT": str(tmp), "PATH": f"{shim}:{os.environ['PATH']}"})
            ids += re.findall(r"submitted (?:array|aggregate job) (\d+)", grid.stdout)
            if grid.returncode != 0:
                raise RuntimeError(f"jobs/grid.py failed ({grid.returncode}):\n{grid.stderr[-3000:]}")
            phases = json.loads(grid.stdout.strip().splitlines()[-1])
            grid_calls = len(calls.read_text().split())
            m = re.search(r"(\d+) tasks in (\d+) array", grid.stdout)
            if not m or int(m.group(1)) != USERS * SEEDS:
                raise RuntimeError(f"expected {USERS * SEEDS} tasks, launcher said: {grid.stdout[-1000:]}")
            t0 = time.perf_counter()
            for _ in range(BASELINE_TASKS):
                r = subprocess.run(["sbatch", "--hold", "--parsable", "-p", "cpu", "-o", "/dev/null", "--wrap", "true"],
                                   env=env, capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    raise RuntimeError(f"sbatch --wrap failed: {r.stderr}")
                ids.append(r.stdout.strip().split(";")[0])
            per_task_s = (time.perf_counter() - t0) / BASELINE_TASKS
    finally:
        _cancel(conf, ids)
        if started:
            subprocess.run(["bash", str(REPO / "cluster/local_slurm/stop.sh")], env=os.environ | ENV,
                           capture_output=True, timeout=300)
    n = USERS * SEEDS
    baseline_s = per_task_s * n
    Record("submit", figures={
        "tasks": n, "launcher_sbatch_calls": grid_calls, "baseline_sbatch_calls": n,
        "launcher_wall_s": phases["total_s"], "launcher_prepare_s": phases["prepare_s"],
        "launcher_submit_s": phases["submit_s"],
        "baseline_wall_s_extrapolated": baseline_s, "baseline_over_launcher_wall": baseline_s / phases["total_s"],
        "baseline_over_launcher_submit": baseline_s / phases["submit_s"],
    }, raw={"baseline_per_task_s": per_task_s, "baseline_measured_tasks": BASELINE_TASKS,
            "grid_stdout_tail": grid.stdout[-2000:]},
        notes=[f"{USERS} users x {SEEDS} seeds, echo job, submitted with --hold and cancelled; MaxArraySize 1001",
               "launcher wall = jobs/grid.py main(): prepare (validation: one Hydra composition per grid point; "
               "manifest; code snapshot) + submit (submitit arrays)",
               f"baseline: `sbatch --hold --wrap true` x {BASELINE_TASKS}, time per call x {n}"]).write()


if __name__ == "__main__":
    main()
