"""Submit an experiment's whole pipeline (steps, arrays, aggregation) without blocking:
`python jobs/grid.py experiment=egotoy_replay cluster=local_slurm [dry=1]` (what `make grid` runs).

Arguments are Hydra overrides of configs/launch.yaml (cluster=..., resources=..., cluster.account=...).
On `cluster=local` the same steps run here, in order.
"""
import sys

from actlab.launch.cli import fail, launch_config
from actlab.launch.pipeline import run_pipeline


def main(argv: list[str]) -> int:
    try:
        run_pipeline(launch_config(argv))
    except (ValueError, RuntimeError, OSError) as e:
        return fail("grid", e)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
