"""One array task of a sweep: `python jobs/task.py <sweep>/manifest.json [--offset K | --row I]`."""
import sys

from actlab.launch.task import main

if __name__ == "__main__":
    sys.exit(main())
