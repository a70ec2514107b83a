"""Submit an experiment's grid x users: `python jobs/grid.py experiment=egotoy_replay cluster=local_slurm [dry=1]`.

Arguments are Hydra overrides of configs/launch.yaml (cluster=..., resources=..., cluster.account=...).
"""
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from actlab.launch.submit import REPO, launch


def main(argv: list[str]) -> int:
    # `experiment` is also a config group in configs/: take its value here, not as a Hydra override
    exps = [a.split("=", 1)[1] for a in argv if a.startswith("experiment=")]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="launch", overrides=[a for a in argv if not a.startswith("experiment=")])
    if not exps:
        print("grid: experiment=<name> is required", file=sys.stderr)
        return 2
    cfg.experiment = exps[-1]
    try:
        launch(cfg)
    except ValueError as e:
        print(f"grid: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
