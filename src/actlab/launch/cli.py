"""The command line of jobs/grid.py and jobs/run.py: `experiment=<name>` plus Hydra overrides of
configs/launch.yaml (cluster=..., resources=..., dry=1, cluster.account=...), then `--` and the
task overrides one per argument (`make grid ... TASK="data.max_clips=16"`).

`experiment` is taken here and not given to Hydra: the name is also a config group in the
family config roots. User errors come back as one line naming the key or file, exit code 2.
"""
from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from actlab.launch.submit import REPO


def launch_config(argv: list[str], default_experiment: str | None = None) -> DictConfig:
    """argv: `experiment=<name>` and launch.yaml overrides, then optionally `--` and task overrides
    (`data.max_clips=16`, one per argument: what the Makefile's TASK variable passes), which join
    launch.yaml's `task_overrides` without being parsed as part of a Hydra list."""
    argv, tasks = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    exps = [a.split("=", 1)[1] for a in argv if a.startswith("experiment=")]
    if not exps and default_experiment is None:
        raise ValueError("experiment=<name> is required (e.g. experiment=egotoy_main)")
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="launch", overrides=[a for a in argv if not a.startswith("experiment=")])
    cfg.experiment = exps[-1] if exps else default_experiment
    cfg.task_overrides = [*cfg.task_overrides, *tasks]
    return cfg


def fail(prog: str, error: BaseException) -> int:
    print(f"{prog}: {error}", file=sys.stderr)
    return 2
