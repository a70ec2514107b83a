"""Shared command line of postprocess/{to_latex,aggregate,plots}.py."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from actlab.post import sources
from actlab.data.errors import DataError


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument("--sweep", help="sweep folder; its sweep.json/sweep.yaml names experiment and results")
    p.add_argument("--experiment", help="only this experiment (plus its frozen reference)")
    p.add_argument("--source", choices=["store", "wandb-offline", "wandb-api"], default="store")
    p.add_argument("--wandb-dir", default="wandb", help="offline W&B folder (source wandb-offline)")
    p.add_argument("--wandb-path", help="entity/project (source wandb-api)")
    p.add_argument("--groups", nargs="*", help="groups to pull (source wandb-api)")
    p.add_argument("--cache", help="JSON cache of pulled W&B runs (source wandb-api)")
    p.add_argument("--reference-group", help="the frozen reference group (default: found by method)")
    p.add_argument("--users", nargs="*", help="expected users (default: every user with a run)")
    p.add_argument("--columns", help="table spec YAML: columns, rows, precision, scale, caption")
    p.add_argument("--precision", type=int)
    p.add_argument("--out", default="tables", help="output folder (default: tables)")
    return p


def resolve_sweep(args: argparse.Namespace) -> None:
    """A sweep folder written by the launcher: take experiment / results from its manifest."""
    if not args.sweep:
        return
    folder = Path(args.sweep)
    for name in ("sweep.json", "sweep.yaml"):
        path = folder / name
        if path.exists():
            text = path.read_text()
            meta = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
            args.experiment = args.experiment or meta.get("experiment")
            args.results = meta.get("results", args.results)
            if args.users is None and meta.get("users"):
                args.users = [str(u) for u in meta["users"]]
            return
    raise DataError(f"{folder}: no sweep.json or sweep.yaml (the sweep manifest)")


def load_runs(args: argparse.Namespace) -> sources.Runs:
    resolve_sweep(args)
    return sources.load(args.source, results=args.results, wandb_dir=args.wandb_dir,
                        wandb_path=args.wandb_path, groups=args.groups, cache=args.cache)
