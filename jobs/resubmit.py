"""Resubmit failed or missing tasks of a sweep: `python jobs/resubmit.py [SWEEP] [--dry]`."""
import sys

from actlab.launch.cli import fail
from actlab.launch.manifest import default_sweeps_root, latest_sweep
from actlab.launch.resubmit import resubmit


def main(argv: list[str]) -> int:
    args = [a for a in argv if a and a != "--dry"]
    try:
        resubmit(args[0] if args else latest_sweep(default_sweeps_root()), dry="--dry" in argv)
    except (ValueError, RuntimeError, OSError) as e:
        return fail("resubmit", e)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
