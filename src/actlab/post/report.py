"""One call from finished runs to the files a person reads: tidy tables, a LaTeX table, plots,
whatever the family: its `aggregate`, `table()`, `tables` and `plots` (actlab.family) do the family's part."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from actlab.atomic import atomic_write_text
from actlab.errors import DataError
from actlab.family import Family
from actlab.post.latex import TableSpec, render_table
from actlab.post.sources import IncompleteRun, RunRow, Runs
from actlab.post.tables import REFERENCE_LABEL, latest, write_tables


def select_experiment(runs: Runs, experiment: str | None, units: list[str] | None = None,
                      groups: list[str] | None = None) -> Runs:
    """The experiment's runs plus the groups they name as their reference (label
    `reference_group`), which may belong to another experiment: a shared reference group
    (launch/reference.py) holds the runs of every experiment with the same setup, so of a group
    outside the experiment only the runs of the experiment's units (`units`, default: those with a
    run in the experiment) and seeds are kept. `groups` (a sweep's own, from its sweep.json) leaves
    out the experiment's groups that other sweeps wrote."""
    if experiment is None:
        return runs
    mine = (lambda r: r.experiment == experiment and (groups is None or r.group in groups))
    own = [r for r in [*runs.rows, *runs.incomplete] if mine(r)]
    keep = {r.group for r in runs.rows if mine(r)}
    # the reference each point names in its latest submission (an older run of the point may name
    # a reference group that is gone, e.g. one from before the shared references)
    refs = {r.labels.get(REFERENCE_LABEL, "") for r in latest(r for r in runs.rows if mine(r))} - {""} - keep
    wanted = set(units) if units else {r.unit_key for r in own}
    seeds = {r.seed for r in own}

    def borrowed(r: RunRow | IncompleteRun) -> bool:   # a reference run outside the experiment, of its units
        return r.group in refs and r.unit_key in wanted and r.seed in seeds
    return Runs([r for r in runs.rows if r.group in keep or borrowed(r)],
                [r for r in runs.incomplete if mine(r) or borrowed(r)])


def select_family(runs: Runs, family: str) -> Runs:
    """The runs of one family (rows that record none are kept) and the incomplete runs of their
    experiments."""
    rows = [r for r in runs.rows if r.family in (family, "")]
    experiments = {r.experiment for r in rows}
    return Runs(rows, [r for r in runs.incomplete if r.experiment in experiments])


def recorded_family(runs: Runs) -> str:
    """The family every run records; DataError when they disagree or record none."""
    names = sorted({r.family for r in runs.rows} - {""})
    if len(names) > 1:
        raise DataError(f"the runs belong to several families ({', '.join(names)}); choose one with --family")
    if not names:
        raise DataError("the runs record no family; name one with --family")
    return names[0]


@dataclass(frozen=True)
class ReportPaths:
    table_tex: Path
    plots: list[Path]
    csv: Path
    tables: list[Path] = field(default_factory=list)   # the family's other tables (Family.tables)


def build_report(family: Family, runs: Runs, out_dir: str | Path, spec: TableSpec | None = None,
                 reference_group: str | None = None, expected_units: list[str] | None = None) -> ReportPaths:
    """Aggregate `runs` with the family's aggregation into `out_dir`: tidy CSV/Parquet tables,
    table.tex (`spec`, default: the family's table), the family's other tables (given the same spec, so
    reported rows and precision reach them) and its plots under plots/."""
    if not runs.rows:
        raise DataError("no completed runs to report on")
    agg = family.aggregate(runs, reference_group=reference_group, expected_units=expected_units)
    out = Path(out_dir)
    tables = write_tables(agg, out)
    spec = spec if spec is not None else family.table()
    if spec.units is None:
        spec = replace(spec, units=f"{family.unit}s" if family.unit else "")   # seeds are named "seed <n>"
    tex = atomic_write_text(out / "table.tex", render_table(agg.tidy, spec))
    extra = list(family.tables(agg, out, spec))
    return ReportPaths(tex, list(family.plots(agg, out / "plots")), tables["aggregate_csv"], extra)


def print_report(paths: ReportPaths) -> None:
    print(f"LaTeX table: {paths.table_tex}")
    for p in paths.tables:
        print(f"LaTeX table: {p}")
    print(f"tidy CSV:    {paths.csv}")
    for p in paths.plots:
        print(f"plot:        {p}")
