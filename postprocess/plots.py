"""Results -> plots (PNG + PDF): python postprocess/plots.py --results DIR --out DIR."""
from __future__ import annotations

import sys
from pathlib import Path

from actlab.post.cli import parser, request, run


def plots(args) -> None:
    req = request(args)
    agg = req.family.aggregate(req.runs, reference_group=req.reference_group, expected_units=req.units)
    for path in req.family.plots(agg, Path(args.out) / "plots"):
        print(path)


def main(argv: list[str] | None = None) -> int:
    return run(plots, parser(__doc__).parse_args(argv), "plots.py")


if __name__ == "__main__":
    sys.exit(main())
