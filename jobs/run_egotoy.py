"""`make run`: the egotoy_main experiment end to end, to a LaTeX table and plots.

    python jobs/run_egotoy.py [cluster=local|local_slurm] [experiment=egotoy_main] [launch overrides]

The pipeline of actlab.launch.pipeline: stream jobs for every (method, train user) (the frozen
reference included), then the transfer matrix (`jobs/transfer.py`), then the report of
`postprocess/to_latex.py` (aggregate tables, LaTeX, plots). `local`: a process pool on this
machine, step after step. `local_slurm` (or any Slurm profile): every step is a Slurm job with
dependencies; this script waits for the aggregation job. Prints OAG/HAG per method, the state of
every task and the paths of what it wrote.
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from actlab.launch.pipeline import Pipeline, run_pipeline
from actlab.launch.submit import REPO, cluster_env


def wait_for_job(job_id: str, env: dict[str, str], poll_s: float = 3.0) -> str:
    """Block until Slurm job `job_id` has left the queue; its final state from sacct (lags squeue)."""
    run_env = os.environ | env
    while subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                         env=run_env).stdout.strip():
        time.sleep(poll_s)
    for _ in range(20):
        state = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                               text=True, env=run_env).stdout.strip()
        if state and state.split()[0] not in {"PENDING", "RUNNING", "COMPLETING"}:
            return state.split()[0].lower()
        time.sleep(poll_s)
    return "unknown"


def report_paths(pipe: Pipeline) -> dict[str, list[str]]:
    """`LaTeX table: ...`, `tidy CSV: ...`, `plot: ...` lines of the aggregation step's log."""
    found: dict[str, list[str]] = {}
    log = Path(pipe.aggregate.log) if pipe.aggregate and pipe.aggregate.log else None
    if log is None or not log.exists():
        return found
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"^(LaTeX table|tidy CSV|plot):\s+(\S.*)$", line.strip())
        if m:
            found.setdefault(m.group(1), []).append(m.group(2))
    return found


def main(argv: list[str]) -> int:
    exps = [a.split("=", 1)[1] for a in argv if a.startswith("experiment=")]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        launch_cfg = compose("launch", overrides=[a for a in argv if not a.startswith("experiment=")])
    launch_cfg.experiment = exps[-1] if exps else "egotoy_main"
    try:
        pipe = run_pipeline(launch_cfg)
    except (ValueError, RuntimeError) as e:
        print(f"run_egotoy: {e}", file=sys.stderr)
        return 1
    if launch_cfg.cluster.executor != "local":
        state = wait_for_job(pipe.aggregate.job_id, cluster_env(dict(launch_cfg.cluster)))
        print(f"aggregation job {pipe.aggregate.job_id}: {state}")

    from actlab.launch.status import format_table, sweep_status
    from actlab.post.summary import print_gains

    table = sweep_status(pipe.sweep)
    print(format_table(table))
    paths = report_paths(pipe)
    if paths.get("tidy CSV"):
        print_gains(paths["tidy CSV"][0])
    for kind, items in paths.items():
        for item in items:
            print(f"{kind}: {item}")
    if not paths.get("LaTeX table"):
        print(f"run_egotoy: no report was written; see {pipe.aggregate.log}", file=sys.stderr)
        return 1
    failed = [t for t in table if t.state != "completed"]
    if failed:
        print(f"run_egotoy: {len(failed)} task(s) did not complete; see the logs above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
