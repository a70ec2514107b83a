"""Shared command line of postprocess/{to_latex,aggregate,plots}.py.

`--sweep S` reads `S/sweep.json` (experiment, family, results, units, reference_group, groups: what the
launcher recorded) and dispatches on its family; without a sweep, `--family` names it (default:
the family every loaded run records). Options given on the command line win over sweep.json.
Bad input ends the script with a one-line error naming the file or key (exit status 2).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from actlab.atomic import read_json
from actlab.errors import DataError
from actlab.family import Family
from actlab.post import sources
from actlab.post.report import recorded_family, select_experiment, select_family

SWEEP_FILE = "sweep.json"
SWEEP_KEYS = ("experiment", "family", "results")   # required; "units", "reference_group", "groups" optional


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--results", help="results root (default: the sweep's, else results)")
    p.add_argument("--sweep", help=f"sweep folder, or `latest` (the last submitted under $ACTLAB_ROOT/sweeps, "
                                   f"else ./sweeps); its {SWEEP_FILE} names experiment, family, results, units")
    p.add_argument("--experiment", help="only this experiment (plus the runs of its units in the groups its runs "
                                         "name as reference)")
    p.add_argument("--family", help="the runs' family (default: the sweep's, else the one the runs record)")
    p.add_argument("--source", choices=["store", "wandb-offline", "wandb-api"], default="store")
    p.add_argument("--wandb-dir", default="wandb", help="offline W&B folder (source wandb-offline)")
    p.add_argument("--wandb-path", help="entity/project (source wandb-api)")
    p.add_argument("--groups", nargs="*", help="groups to pull (source wandb-api)")
    p.add_argument("--cache", help="JSON cache of pulled W&B runs (source wandb-api)")
    p.add_argument("--reference-group",
                   help="compare every group with this one (default: the reference each run recorded)")
    p.add_argument("--units", nargs="*", help="expected units, e.g. user ids (default: every unit with a run)")
    p.add_argument("--columns", help="table spec YAML: columns, rows, precision, scale, caption")
    p.add_argument("--precision", type=int)
    p.add_argument("--reported", help="YAML of published rows shown under the measured ones "
                                      "({source, rows: [{label, values: {metric: value}}]}; docs/postprocess.md)")
    p.add_argument("--out", help="output folder (default: <sweep>/report with --sweep, else tables)")
    return p


def read_sweep(folder: str | Path) -> dict[str, Any]:
    """The sweep's `sweep.json`, checked for the keys postprocessing needs."""
    path = Path(folder) / SWEEP_FILE
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise DataError(f"{path}: not a JSON object")
    for key in SWEEP_KEYS:
        if not meta.get(key):
            raise DataError(f"{path}: no key {key!r}")
    for key in ("units", "groups"):
        if meta.get(key) is not None and not isinstance(meta[key], list):
            raise DataError(f"{path}: key {key!r} must be a list, got {type(meta[key]).__name__}")
    return meta


@dataclass(frozen=True)
class Request:
    """What the scripts act on: the family, its runs and how to compare them."""
    family: Family
    runs: sources.Runs
    experiment: str | None
    reference_group: str | None
    units: list[str] | None


def request(args: argparse.Namespace) -> Request:
    from actlab import families

    meta = read_sweep(args.sweep) if args.sweep else {}
    experiment = args.experiment or meta.get("experiment")
    results = args.results or meta.get("results") or "results"
    units = args.units if args.units is not None else meta.get("units")
    reference = args.reference_group or meta.get("reference_group") or None
    runs = sources.load(args.source, results=results, wandb_dir=args.wandb_dir, wandb_path=args.wandb_path,
                        groups=args.groups, cache=args.cache)
    runs = select_experiment(runs, experiment, [str(u) for u in units] if units is not None else None,
                             meta.get("groups") if not args.experiment else None)
    if not runs.rows:
        where = {"store": results, "wandb-offline": args.wandb_dir}.get(args.source, args.wandb_path)
        raise DataError(f"{where} ({args.source}): no completed runs" + (f" of experiment {experiment}" if experiment else ""))
    name = args.family or meta.get("family") or recorded_family(runs)
    family = families.get(name)
    runs = select_family(runs, family.name)
    return Request(family, runs, experiment, reference, [str(u) for u in units] if units is not None else None)


def run(main: Callable[[argparse.Namespace], None], args: argparse.Namespace, prog: str) -> int:
    """Call `main(args)`; bad input (DataError / ValueError) -> one line on stderr, exit status 2."""
    try:
        if args.sweep == "latest":
            from actlab.launch.manifest import default_sweeps_root, latest_sweep

            args.sweep = str(latest_sweep(default_sweeps_root()))
        if args.out is None:
            args.out = str(Path(args.sweep) / "report") if args.sweep else "tables"
        main(args)
    except ValueError as e:          # DataError is a ValueError
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    return 0
