"""Table of a sweep's tasks: `python jobs/status.py [SWEEP]` (default: the latest sweep)."""
import sys

from actlab.launch.cli import fail
from actlab.launch.manifest import default_sweeps_root, latest_sweep
from actlab.launch.status import format_table, sweep_status


def main(argv: list[str]) -> int:
    try:
        sweep = argv[0] if argv and argv[0] else latest_sweep(default_sweeps_root())
        table = sweep_status(sweep)
    except (ValueError, OSError) as e:
        return fail("status", e)
    print(sweep)
    print(format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
