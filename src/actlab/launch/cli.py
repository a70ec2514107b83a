"""The command line of jobs/grid.py and jobs/run.py: `experiment=<name>` plus Hydra overrides of
configs/launch.yaml (cluster=..., resources=..., dry=1, cluster.account=...), then `--` and the
task overrides one per argument (`make grid ... TASK="data.max_clips=16"`).

`experiment` is taken here and not given to Hydra: the name is also a config group in the
family config roots. User errors come back as one line naming the key or file, exit code 2
(an unset environment variable of the cluster profile names the variable and the key).
"""
from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig

from actlab.launch.preflight import ARGS, unset_variables
from actlab.launch.submit import REPO


def launch_config(argv: list[str], default_experiment: str | None = None) -> DictConfig:
    """argv: `experiment=<name>` and launch.yaml overrides, then optionally `--` and task overrides
    (`data.max_clips=16`, one per argument: what the Makefile's TASK variable passes), which join
    launch.yaml's `task_overrides` without being parsed as part of a Hydra list."""
    argv, tasks = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    exps = [a.split("=", 1)[1] for a in argv if a.startswith("experiment=")]
    if not exps and default_experiment is None:
        raise ValueError("experiment=<name> is required (e.g. experiment=egotoy_main)")
    overrides = [a for a in argv if not a.startswith("experiment=")]
    try:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose(config_name="launch", overrides=overrides)
    except HydraException as e:   # an unknown key or option, or bad syntax: Hydra's message names it
        raise ValueError(f"launch overrides {overrides}: {e}") from e
    cfg.experiment = exps[-1] if exps else default_experiment
    cfg.task_overrides = [*cfg.task_overrides, *tasks]
    unset = unset_variables(cfg, ARGS, sections=("cluster", "resources"))
    if unset:
        raise ValueError("\n".join(unset))
    return cfg


def fail(prog: str, error: BaseException) -> int:
    print(f"{prog}: {error}", file=sys.stderr)
    return 2
