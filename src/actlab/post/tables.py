"""The generic layer of postprocessing: finished runs -> per-unit values -> mean +- SE per group,
as one tidy table, whatever the family. A family's own aggregation (its `Family.aggregate`) builds
on these pieces; a family with nothing to pair or compare uses `aggregate_runs` as its whole
aggregation (`plain_aggregate`).

Conventions:
- Resubmissions: of several completed runs with the same (group, unit, seed) the latest
  `submitted` counts.
- A unit's value is the mean over its seeds first; the group's value is the mean over units, with
  SE = sample std (ddof=1) / sqrt(n units). A family without a unit (`RunRow.unit is None`) has one
  value per seed, so its SE is over seeds (`RunRow.unit_key` = "seed <n>").
- Runs of one unit are averaged only when they read the same inputs (`RunRow.inputs`, name ->
  SHA-256); otherwise `DataError` names the runs and the input.
- Partial groups are flagged, never silently averaged over fewer units: every tidy row carries
  `partial`, `n_units` and the ids of the missing (expected, no run), failed (started, did not
  complete, not replaced by a completed run) and mismatched (not compared with the reference:
  inputs differ) units.
- Every tidy row carries `higher_is_better`, from the family's direction rule (metric -> bool),
  so a table can mark the best value without knowing the family.

Two labels have a meaning here: `labels["variant"]` names a group in tables (`group_labels`) and
`labels["reference_group"]` names the group its runs are compared against (`report.select_experiment`
keeps it next to the experiment that refers to it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from actlab.atomic import atomic_write, atomic_write_text
from actlab.errors import DataError
from actlab.post.sources import RunRow, Runs

VARIANT_LABEL = "variant"              # what a group's runs vary, shown as its row label
REFERENCE_LABEL = "reference_group"    # the group a run is compared against ("" = none)

Direction = Callable[[str], bool]      # metric name -> higher is better

TIDY_COLUMNS = ("experiment", "group", "label", "metric", "stat", "value", "higher_is_better", "partial",
                "n_units", "missing_units", "failed_units", "mismatched_units", "reference")
PER_UNIT_COLUMNS = ("experiment", "group", "label", "unit", "metric", "value")


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """(mean, standard error) with SE = sample std (ddof=1) / sqrt(n); SE is nan for n < 2.

    n = 0 gives (nan, nan). NaNs are not dropped: a missing unit must be visible, not averaged away.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan
    return mean, float(x.std(ddof=1) / math.sqrt(x.size))


def default_direction(metric: str) -> bool:
    """Lower is better for a loss or an error (the metric's last part names one), higher otherwise."""
    last = metric.rsplit("/", 1)[-1]
    return not ("loss" in last or "error" in last)


@dataclass(frozen=True)
class GroupInfo:
    experiment: str
    group: str
    label: str                       # the row label a reader sees (group_labels)
    reference: str | None            # the group this one is compared against, if any
    units: tuple[str, ...]           # units with a completed run
    missing: tuple[str, ...] = ()    # expected, but no run at all
    failed: tuple[str, ...] = ()     # a (unit, seed) started but did not complete
    mismatched: tuple[str, ...] = () # not compared with the reference: inputs differ

    @property
    def partial(self) -> bool:
        return bool(self.missing or self.failed or self.mismatched)

    def flags(self) -> dict:
        """The columns every tidy row of this group carries."""
        return {"experiment": self.experiment, "group": self.group, "label": self.label,
                "partial": self.partial, "n_units": len(self.units),
                "missing_units": ",".join(self.missing), "failed_units": ",".join(self.failed),
                "mismatched_units": ",".join(self.mismatched), "reference": self.reference or ""}


@dataclass
class Aggregated:
    """What a family's aggregation returns: per-group info, the tidy table (TIDY_COLUMNS), the
    per-unit values (PER_UNIT_COLUMNS) and the family's own named tables, all written by
    `write_tables`."""
    groups: list[GroupInfo]
    tidy: pd.DataFrame
    per_unit: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def info(self, group: str) -> GroupInfo:
        for g in self.groups:
            if g.group == group:
                return g
        raise KeyError(f"no group {group!r}; groups: {[g.group for g in self.groups]}")


# -- runs -> units ---------------------------------------------------------------------------------
def latest(rows: Iterable[RunRow]) -> list[RunRow]:
    """One run per (group, unit, seed): the latest submission; sorted by (group, unit, seed)."""
    best: dict[tuple[str, str, int], RunRow] = {}
    for r in rows:
        key = (r.group, r.unit_key, r.seed)
        if key not in best or (r.submitted, r.run_id) > (best[key].submitted, best[key].run_id):
            best[key] = r
    return [best[k] for k in sorted(best)]


def runs_by_unit(rows: Iterable[RunRow]) -> dict[str, list[RunRow]]:
    """unit -> its runs (one per seed, the latest submission), for the rows of one group.

    DataError when two runs of one unit read different inputs: they are not replicates.
    """
    out: dict[str, list[RunRow]] = {}
    for r in latest(rows):
        out.setdefault(r.unit_key, []).append(r)
    for unit, runs in out.items():
        first = runs[0]
        for other in runs[1:]:
            names = sorted(set(first.inputs) | set(other.inputs))
            differ = [k for k in names if first.inputs.get(k) != other.inputs.get(k)]
            if differ:
                k = differ[0]
                raise DataError(f"group {first.group}, unit {unit}: runs {first.run_id} and {other.run_id} "
                                f"read different input {k!r} ({first.inputs.get(k)} vs {other.inputs.get(k)}); "
                                f"refusing to average them")
    return out


def unit_values(by_unit: dict[str, list[RunRow]]) -> dict[str, dict[str, float]]:
    """unit -> metric -> mean over its seeds (a metric missing from one seed's summary is nan there)."""
    out: dict[str, dict[str, float]] = {}
    for unit, runs in by_unit.items():
        if len(runs) == 1:
            out[unit] = {k: float(v) for k, v in sorted(runs[0].summary.items())}
            continue
        keys = sorted(set().union(*(r.summary for r in runs)))
        out[unit] = {k: sum(r.summary.get(k, math.nan) for r in runs) / len(runs) for k in keys}
    return out


def unit_inputs(by_unit: dict[str, list[RunRow]]) -> dict[str, dict[str, str]]:
    """unit -> the inputs its runs read (equal across its seeds, see `runs_by_unit`)."""
    return {unit: dict(runs[0].inputs) for unit, runs in by_unit.items()}


def started_units(runs: Runs, experiment: str, groups: Iterable[str] = ()) -> set[str]:
    """Units with a run (complete or not) in `experiment` or in one of `groups`: the default
    expected units of a group."""
    groups = set(groups)
    return {r.unit_key for r in [*runs.rows, *runs.incomplete] if r.experiment == experiment or r.group in groups}


def unit_status(runs: Runs, group: str, completed: Iterable[str],
                expected: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(missing, failed) units of a group. Failed: a (unit, seed) started but has no completed
    run; missing: expected, neither completed nor failed."""
    done = {(r.unit_key, r.seed) for r in runs.rows if r.group == group}
    failed = {r.unit_key for r in runs.incomplete if r.group == group and (r.unit_key, r.seed) not in done}
    missing = set(expected) - set(completed) - failed
    return tuple(sorted(missing)), tuple(sorted(failed))


# -- tidy rows -------------------------------------------------------------------------------------
def stat_rows(info: GroupInfo, metric: str, stats: dict[str, float], higher_is_better: bool) -> list[dict]:
    """Tidy rows of one metric of one group, one per stat."""
    return [info.flags() | {"metric": metric, "stat": stat, "value": float(v),
                            "higher_is_better": bool(higher_is_better)} for stat, v in stats.items()]


def summary_stats(values: Iterable[float]) -> dict[str, float]:
    """{"mean", "se", "n"} over units."""
    vals = list(values)
    mean, se = mean_se(vals)
    return {"mean": mean, "se": se, "n": float(len(vals))}


def summarize(info: GroupInfo, table: dict[str, dict[str, float]], direction: Direction
              ) -> tuple[list[dict], list[dict]]:
    """(tidy rows, per-unit rows) of a group from unit -> metric -> value: mean, SE and n over
    the units that have the metric, units sorted as strings."""
    metrics = sorted(set().union(*table.values())) if table else []
    units = sorted(table)
    per_unit = [{"experiment": info.experiment, "group": info.group, "label": info.label, "unit": u,
                 "metric": m, "value": table[u][m]} for u in units for m in metrics if m in table[u]]
    tidy: list[dict] = []
    for m in metrics:
        tidy += stat_rows(info, m, summary_stats(table[u][m] for u in units if m in table[u]), direction(m))
    return tidy, per_unit


def tidy_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(TIDY_COLUMNS))


def per_unit_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(PER_UNIT_COLUMNS))


def group_keys(runs: Runs) -> list[tuple[str, str]]:
    """Every (experiment, group) with a run, complete or not, sorted."""
    return sorted({(r.experiment, r.group) for r in [*runs.rows, *runs.incomplete]})


# -- the plain aggregation -------------------------------------------------------------------------
def aggregate_runs(runs: Runs, higher_is_better: Direction = default_direction,
                   expected_units: list[str] | None = None) -> Aggregated:
    """Mean +- SE over units (over seeds without units) of every summary metric of every group.
    `expected_units` defaults to every unit with a run (complete or not) in the group's experiment."""
    labels = group_labels(runs.rows)
    groups, tidy, per_unit = [], [], []
    for experiment, group in group_keys(runs):
        by_unit = runs_by_unit(r for r in runs.rows if r.group == group)
        values = unit_values(by_unit)
        expected = set(expected_units) if expected_units is not None else started_units(runs, experiment)
        missing, failed = unit_status(runs, group, values, expected)
        info = GroupInfo(experiment, group, labels.get(group, group), None, tuple(sorted(values)), missing, failed)
        groups.append(info)
        t, p = summarize(info, values, higher_is_better)
        tidy += t
        per_unit += p
    return Aggregated(groups, tidy_frame(tidy), per_unit_frame(per_unit))


def plain_aggregate(higher_is_better: Direction = default_direction) -> Callable[..., Aggregated]:
    """`aggregate_runs` with the signature of `Family.aggregate`, for a family that compares no
    group against a reference."""
    def aggregate(runs: Runs, reference_group: str | None = None,
                  expected_units: list[str] | None = None) -> Aggregated:
        if reference_group is not None:
            raise DataError(f"reference group {reference_group!r}: this family compares no group against a reference")
        return aggregate_runs(runs, higher_is_better, expected_units)
    return aggregate


# -- labels and outputs ----------------------------------------------------------------------------
def group_labels(rows: Iterable[RunRow]) -> dict[str, str]:
    """group -> a label a reader understands, sorted by label: the `variant` label plus the grid
    point's other override values, e.g. `replay (memory_size=64)`, or the override values alone,
    e.g. `lr=0.01`; the group id when there is neither. A label two groups share gets its group id."""
    labels: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: (r.group, r.run_id)):
        if r.group in labels:
            continue
        variant = r.labels.get(VARIANT_LABEL, "")
        extra = ", ".join(f"{str(k).rsplit('.', 1)[-1]}={v}" for k, v in sorted(r.overrides.items())
                          if not variant or str(v) != variant)
        if variant:
            labels[r.group] = f"{variant} ({extra})" if extra else variant
        else:
            labels[r.group] = extra or r.group
    counts = pd.Series(list(labels.values()), dtype=object).value_counts()
    labels = {g: (f"{lbl} [{g}]" if counts[lbl] > 1 else lbl) for g, lbl in labels.items()}
    return dict(sorted(labels.items(), key=lambda kv: (kv[1], kv[0])))


def write_tables(agg: Aggregated, out_dir: str | Path) -> dict[str, Path]:
    """CSV + Parquet (atomic) of the tidy table ("aggregate"), the per-unit values ("per_unit") and
    each of the family's named tables; returns {"<name>_csv": path, "<name>_parquet": path}."""
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for name, df in {"aggregate": agg.tidy, "per_unit": agg.per_unit, **agg.tables}.items():
        paths[f"{name}_csv"] = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
        paths[f"{name}_parquet"] = atomic_write(out / f"{name}.parquet",
                                                lambda p, df=df: df.to_parquet(p, index=False))
    return paths
