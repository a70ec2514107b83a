"""One call from a results root to the files a person reads: tidy tables, a LaTeX table, plots."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from actlab.atomic import atomic_write_text
from actlab.post.aggregate import aggregate, write_tables
from actlab.post.latex import TableSpec, load_spec, render_table
from actlab.post.plots import all_plots
from actlab.post.sources import Runs
from actlab.post.store_source import load_store
from actlab.results import layout


def select_experiment(runs: Runs, experiment: str | None) -> Runs:
    """The experiment's runs plus every frozen group (its reference may be another experiment)."""
    if experiment is None:
        return runs
    keep = {r.group for r in runs.rows if r.experiment == experiment}
    frozen = {r.group for r in runs.rows if r.method == "frozen"}
    return Runs([r for r in runs.rows if r.group in keep | frozen],
                [r for r in runs.incomplete if r.experiment == experiment])


def group_labels(runs: Runs) -> dict[str, str]:
    """group -> a label a reader understands: the method plus the grid point's other values
    (from identity.json when the run folder is known), e.g. `replay (memory_size=64)`."""
    labels: dict[str, str] = {}
    for r in runs.rows:
        if r.group in labels:
            continue
        overrides = {}
        if r.folder is not None and (r.folder / layout.IDENTITY).exists():
            overrides = json.loads((r.folder / layout.IDENTITY).read_text()).get("overrides", {})
        extra = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in sorted(overrides.items()) if k != "method")
        labels[r.group] = f"{r.method} ({extra})" if extra else r.method
    if len(set(labels.values())) < len(labels):       # same label twice (two experiments): keep ids
        labels = {g: f"{lbl} [{g}]" for g, lbl in labels.items()}
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


@dataclass(frozen=True)
class ReportPaths:
    table_tex: Path
    plots: list[Path]
    csv: Path


def build_report(results_root: str | Path, out_dir: str | Path, experiment: str | None = None,
                 runs: Runs | None = None, spec: TableSpec | None = None,
                 reference_group: str | None = None, expected_users: list[str] | None = None) -> ReportPaths:
    """Aggregate the runs (default: the results store, optionally one experiment) into `out_dir`."""
    runs = select_experiment(runs if runs is not None else load_store(results_root), experiment)
    if not runs.rows:
        raise ValueError(f"{results_root}: no completed runs" + (f" for experiment {experiment}" if experiment else ""))
    agg = aggregate(runs, reference_group=reference_group, expected_users=expected_users)
    out = Path(out_dir)
    tables = write_tables(agg, out)
    spec = spec or load_spec(scale=100.0, precision=2, caption="Balanced top-1 gains in percentage points "
                                                              "against the frozen network: mean and SE over users")
    if spec.rows is None:
        spec = replace(spec, rows=group_labels(runs))
    tex = atomic_write_text(out / "table.tex", render_table(agg.tidy, spec))
    return ReportPaths(tex, all_plots(agg, out / "plots"), tables["aggregate_csv"])


def print_report(paths: ReportPaths) -> None:
    print(f"LaTeX table: {paths.table_tex}")
    print(f"tidy CSV:    {paths.csv}")
    for p in paths.plots:
        print(f"plot:        {p}")
