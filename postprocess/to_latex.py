"""Results -> LaTeX table, tidy CSV/Parquet and plots: python postprocess/to_latex.py [--sweep DIR]."""
from __future__ import annotations

import sys

from actlab.post.cli import parser, request, run
from actlab.post.latex import load_reported, load_spec
from actlab.post.report import build_report, print_report


def report(args) -> None:
    req = request(args)
    spec = load_spec(args.columns, default=req.family.table(), precision=args.precision,
                     reported=load_reported(args.reported) if args.reported else None)
    paths = build_report(req.family, req.runs, args.out, spec=spec, reference_group=req.reference_group,
                         expected_units=req.units)
    print_report(paths)
    if args.upload:
        from actlab.post.upload import upload_aggregate

        print(f"W&B run:     {upload_aggregate(paths.csv, req.experiment or 'all', args.wandb_dir)}")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--upload", action="store_true",
                   help="also log the aggregate to W&B (offline under --wandb-dir unless WANDB_MODE says otherwise)")
    return run(report, p.parse_args(argv), "to_latex.py")


if __name__ == "__main__":
    sys.exit(main())
