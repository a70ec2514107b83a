"""Table of a sweep's tasks: `python jobs/status.py [SWEEP]` (default: the latest sweep)."""
import sys

from actlab.launch.manifest import latest_sweep
from actlab.launch.status import format_table, sweep_status
from actlab.launch.submit import REPO

if __name__ == "__main__":
    sweep = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else latest_sweep(REPO / "sweeps")
    print(sweep)
    print(format_table(sweep_status(sweep)))
