"""`make run [EXP=...]`: an embedded experiment end to end, to a LaTeX table and plots.

    python jobs/run.py [experiment=egotoy_main] [cluster=local|local_slurm] [launch overrides]

The pipeline of actlab.launch.pipeline (the family's steps, the arrays, the aggregation), the
same one `make grid` submits. `local`: a process pool on this machine, step after step, with a
line per task. A Slurm profile: every step is a Slurm job with dependencies; this script waits
for the aggregation job. Prints the state of every task, the LaTeX table and the paths of what
the report wrote.
"""
import re
import sys
from pathlib import Path

from actlab.launch.cli import fail, launch_config
from actlab.launch.pipeline import Pipeline, run_pipeline
from actlab.launch.submit import cluster_env


def report_paths(pipe: Pipeline) -> dict[str, list[str]]:
    """`LaTeX table: ...`, `tidy CSV: ...`, `plot: ...` lines of the aggregation step's log."""
    found: dict[str, list[str]] = {}
    log = Path(pipe.aggregate.log) if pipe.aggregate.log else None
    if log is None or not log.exists():
        return found
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"^(LaTeX table|tidy CSV|plot):\s+(\S.*)$", line.strip())
        if m:
            found.setdefault(m.group(1), []).append(m.group(2))
    return found


def main(argv: list[str]) -> int:
    try:
        launch_cfg = launch_config(argv, default_experiment="egotoy_main")
        pipe = run_pipeline(launch_cfg)
        if launch_cfg.dry:
            return 0
        if launch_cfg.cluster.executor != "local":
            from actlab.slurm import wait_for_job

            state = wait_for_job(pipe.aggregate.job_id, cluster_env(dict(launch_cfg.cluster)))
            print(f"aggregation job {pipe.aggregate.job_id}: {state}")
    except (ValueError, RuntimeError, OSError) as e:
        return fail("run", e)

    from actlab.launch.status import format_table, sweep_status

    table = sweep_status(pipe.sweep)
    print(format_table(table))
    paths = report_paths(pipe)
    if paths.get("LaTeX table"):
        print("\n" + Path(paths["LaTeX table"][0]).read_text())
    for kind, items in paths.items():
        for item in items:
            print(f"{kind}: {item}")
    if not paths.get("LaTeX table"):
        print(f"run: no report was written; see {pipe.aggregate.log}", file=sys.stderr)
        return 1
    failed = [t for t in table if t.state != "completed"]
    if failed:
        print(f"run: {len(failed)} task(s) did not complete; see the logs above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
