"""Results -> tidy aggregate tables (CSV + Parquet): python postprocess/aggregate.py --results DIR."""
from __future__ import annotations

from actlab.post.aggregate import aggregate, write_tables
from actlab.post.cli import load_runs, parser
from actlab.post.report import select_experiment


def main() -> None:
    args = parser(__doc__).parse_args()
    runs = load_runs(args)
    runs = select_experiment(runs, args.experiment)
    agg = aggregate(runs, reference_group=args.reference_group, expected_users=args.users)
    for g in agg.groups:
        if g.partial:
            print(f"PARTIAL {g.group}: missing {list(g.missing)} failed {list(g.failed)} "
                  f"unpaired {list(g.mismatched)}")
    for name, path in write_tables(agg, args.out).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
