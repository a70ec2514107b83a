"""Results -> LaTeX table, tidy CSV/Parquet and plots: python postprocess/to_latex.py [--sweep DIR]."""
from __future__ import annotations

from actlab.post.cli import load_runs, parser
from actlab.post.latex import load_spec
from actlab.post.report import build_report, print_report


def main() -> None:
    args = parser(__doc__).parse_args()
    runs = load_runs(args)
    spec = load_spec(args.columns, precision=args.precision, **({} if args.columns else {"scale": 100.0}))
    print_report(build_report(args.results, args.out, args.experiment, runs=runs, spec=spec,
                              reference_group=args.reference_group, expected_users=args.users))


if __name__ == "__main__":
    main()
