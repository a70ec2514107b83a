"""`make run`: the egotoy_main experiment end to end, to a LaTeX table and plots.

    python jobs/run_egotoy.py [cluster=local|local_slurm] [experiment=egotoy_main] [launch overrides]

Stream jobs for every (method, train user) through the launcher (`local`: a process pool on this
machine), then the transfer matrix (`jobs/transfer.py`), then the report of `postprocess/`
(aggregate tables, LaTeX, plots). Prints OAG/HAG per method and the paths of what it wrote.
"""
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from actlab.launch.submit import REPO, launch


def main(argv: list[str]) -> int:
    exps = [a.split("=", 1)[1] for a in argv if a.startswith("experiment=")]
    experiment = exps[-1] if exps else "egotoy_main"
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        launch_cfg = compose("launch", overrides=[a for a in argv if not a.startswith("experiment=")])
        transfer_cfg = compose("transfer", overrides=[f"experiment={experiment}"])
    launch_cfg.experiment = experiment
    if launch_cfg.cluster.executor != "local":
        print("run_egotoy: only cluster=local waits for its jobs; use `make grid` for Slurm", file=sys.stderr)
        return 2
    sweep, _ = launch(launch_cfg)

    from actlab.engine import transfer_job
    from actlab.launch.status import format_table, sweep_status
    from actlab.post.report import build_report, print_report
    from actlab.post.summary import print_gains

    table = sweep_status(sweep)
    failed = [t for t in table if t.state != "completed"]
    if failed:
        print(format_table(table))
        print(f"run_egotoy: {len(failed)} task(s) did not complete; see the logs above", file=sys.stderr)
        return 1
    if transfer_cfg.mode != "none":
        transfer_job.run(transfer_cfg)
    paths = build_report(transfer_cfg.paths.results, Path(transfer_cfg.paths.root) / "reports" / experiment,
                         experiment=experiment)
    print_gains(paths.csv)
    print_report(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
