"""Results -> tidy aggregate tables (CSV + Parquet): python postprocess/aggregate.py --results DIR."""
from __future__ import annotations

import sys

from actlab.post.cli import parser, request, run
from actlab.post.tables import write_tables


def tables(args) -> None:
    req = request(args)
    agg = req.family.aggregate(req.runs, reference_group=req.reference_group, expected_units=req.units)
    for g in agg.groups:
        if g.partial:
            print(f"PARTIAL {g.group}: missing {list(g.missing)} failed {list(g.failed)} "
                  f"unpaired {list(g.mismatched)}")
    for name, path in write_tables(agg, args.out).items():
        print(f"{name}: {path}")


def main(argv: list[str] | None = None) -> int:
    return run(tables, parser(__doc__).parse_args(argv), "aggregate.py")


if __name__ == "__main__":
    sys.exit(main())
