"""Results -> plots (PNG + PDF): python postprocess/plots.py --results DIR --out DIR."""
from __future__ import annotations

from pathlib import Path

from actlab.post.aggregate import aggregate
from actlab.post.cli import load_runs, parser
from actlab.post.report import select_experiment
from actlab.post.plots import all_plots


def main() -> None:
    args = parser(__doc__).parse_args()
    runs = load_runs(args)
    runs = select_experiment(runs, args.experiment)
    for path in all_plots(aggregate(runs, reference_group=args.reference_group), Path(args.out) / "plots"):
        print(path)


if __name__ == "__main__":
    main()
