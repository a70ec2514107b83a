"""Resubmit failed or missing tasks of a sweep: `python jobs/resubmit.py [SWEEP] [--dry]`."""
import sys

from actlab.launch.manifest import latest_sweep
from actlab.launch.resubmit import resubmit
from actlab.launch.submit import REPO

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a and a != "--dry"]
    resubmit(args[0] if args else latest_sweep(REPO / "sweeps"), dry="--dry" in sys.argv)
