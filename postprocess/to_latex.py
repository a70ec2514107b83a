"""Results -> LaTeX table, tidy CSV/Parquet and plots: python postprocess/to_latex.py [--sweep DIR]."""
from __future__ import annotations

from actlab.post.cli import load_runs, parser
from actlab.post.latex import load_spec
from actlab.post.report import build_report, print_report


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--upload", action="store_true",
                   help="also log the aggregate to W&B (offline under --wandb-dir unless WANDB_MODE says otherwise)")
    args = p.parse_args()
    runs = load_runs(args)
    spec = load_spec(args.columns, precision=args.precision, **({} if args.columns else {"scale": 100.0}))
    paths = build_report(args.results, args.out, args.experiment, runs=runs, spec=spec,
                         reference_group=args.reference_group, expected_users=args.users)
    print_report(paths)
    if args.upload:
        from actlab.post.upload import upload_aggregate

        print(f"W&B run:     {upload_aggregate(paths.csv, args.experiment or 'all', args.wandb_dir)}")


if __name__ == "__main__":
    main()
