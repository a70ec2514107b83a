"""Tidy aggregate -> LaTeX tables (jinja2 templates in ./templates, booktabs).

Cells are "mean $\\pm$ SE" at a chosen precision (values multiplied by `scale`, e.g. 100 for
percentage points). The best cell per column is chosen from the numeric means, rounded to the
shown precision, by the direction the tidy table records for the metric (its `higher_is_better`
column, set by the family's aggregation): every cell tied with it at that precision is bold. An SE
that does not exist (one unit) is shown as "--". Row labels of partial groups get a dagger and a
note naming the missing / failed / mismatched units. Every label is escaped.

Published numbers can sit under the measured rows: "reported" rows, read from a YAML file
(`load_reported`), printed literally (already in the table's units, never scaled, never bold) below a
rule, with their source in the notes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from actlab.errors import DataError

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}"}


def escape(text: Any) -> str:
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


@dataclass(frozen=True)
class Column:
    metric: str                      # tidy metric name, e.g. "oag/action/balanced_top1"
    label: str | None = None         # header (escaped); default: the metric name
    se: str = "se"                   # which SE: "se" (paired) or "se_upstream"


@dataclass(frozen=True)
class ReportedRow:
    """A published result shown literally: metric -> value (or (value, SE)) in the table's units."""
    label: str
    values: dict[str, float | tuple[float, float]]
    source: str | None = None


@dataclass(frozen=True)
class TableSpec:
    columns: tuple[Column, ...]
    rows: dict[str, str] | None = None     # group -> label, in this order; None = every group
    precision: int = 2
    scale: float = 1.0
    caption: str | None = None
    label: str | None = None
    row_header: str = "Setting"
    units: str | None = None               # what the partial-group notes call the units ("users"); None = "units"
    reported: tuple[ReportedRow, ...] = ()  # published rows under the measured ones (load_reported)


_SPEC_KEYS = {"columns", "rows", "precision", "scale", "caption", "label", "row_header", "units", "reported"}


def _number(path: Path, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{path}: {where}: {value!r} is not a number")
    return float(value)


def load_reported(path: str | Path) -> tuple[ReportedRow, ...]:
    """Reported rows from YAML: `{source: str, rows: [{label, values: {metric: v | [v, se]}, source}]}`;
    a row's `source` defaults to the file's."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing reported-rows file: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise DataError(f"{path}: reported rows are a mapping with a list `rows` (and an optional `source`)")
    unknown = set(data) - {"source", "rows"}
    if unknown:
        raise DataError(f"{path}: unknown keys {sorted(unknown)}")
    out = []
    for i, row in enumerate(data["rows"]):
        where = f"rows[{i}]"
        if not isinstance(row, dict) or not isinstance(row.get("label"), str) or not isinstance(row.get("values"), dict):
            raise DataError(f"{path}: {where} needs a string `label` and a mapping `values`")
        bad = set(row) - {"label", "values", "source"}
        if bad:
            raise DataError(f"{path}: {where}: unknown keys {sorted(bad)}")
        values: dict[str, float | tuple[float, float]] = {}
        for metric, v in row["values"].items():
            at = f"{where}.values.{metric}"
            if isinstance(v, list):
                if len(v) != 2:
                    raise DataError(f"{path}: {at}: give a value or [value, SE], got {v!r}")
                values[str(metric)] = (_number(path, at, v[0]), _number(path, at, v[1]))
            else:
                values[str(metric)] = _number(path, at, v)
        out.append(ReportedRow(row["label"], values, row.get("source", data.get("source"))))
    return tuple(out)


def load_spec(path: str | Path | None = None, default: TableSpec | None = None, **overrides: Any) -> TableSpec:
    """A YAML spec {columns: [{metric, label, se} or metric], rows: {group: label}, precision, scale,
    caption, label, row_header, units}, or without `path` the family's `default`; CLI values in
    `overrides` (None = keep) win."""
    if path is None:
        if default is None:
            raise DataError("no table spec: give a columns YAML (--columns) or a family whose table() has one")
        return replace(default, **{k: v for k, v in overrides.items() if v is not None})
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing table spec: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: a table spec is a mapping with keys {sorted(_SPEC_KEYS)}")
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise DataError(f"{path}: unknown keys {sorted(unknown)}")
    data |= {k: v for k, v in overrides.items() if v is not None}
    if isinstance(data.get("reported"), str):       # a path, relative to the spec file
        data["reported"] = load_reported(path.parent / data["reported"])
    cols = data.pop("columns", None)
    if not cols:
        raise DataError(f"{path}: no columns")
    try:
        columns = tuple(Column(c) if isinstance(c, str) else Column(**c) for c in cols)
        return TableSpec(columns=columns, **data)
    except TypeError as e:
        raise DataError(f"{path}: bad column or value ({e})") from e


def _env() -> jinja2.Environment:
    # LaTeX is full of braces and percent signs: use delimiters that never occur in it.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        block_start_string="((*", block_end_string="*))", variable_start_string="((",
        variable_end_string="))", comment_start_string="((=", comment_end_string="=))",
        trim_blocks=False, autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _fmt(x: float, precision: int) -> str:
    return "--" if x is None or math.isnan(x) else f"{x:.{precision}f}"


def _direction(tidy: pd.DataFrame, metric: str) -> bool | None:
    """The metric's direction as the tidy table records it; None when the metric has no rows."""
    if "higher_is_better" not in tidy.columns:
        raise DataError("the tidy table has no higher_is_better column (aggregate with actlab.post.tables)")
    found = {bool(v) for v in tidy.loc[tidy.metric == metric, "higher_is_better"]}
    if len(found) > 1:
        raise DataError(f"metric {metric}: the tidy rows disagree on higher_is_better")
    return found.pop() if found else None


def render_table(tidy: pd.DataFrame, spec: TableSpec) -> str:
    """Rows: `spec.rows` (group -> label, in order), else every group of `tidy` labelled by its
    `label` column (the group id without one), sorted by label."""
    lookup = {(g, m, s): v for g, m, s, v in tidy[["group", "metric", "stat", "value"]].itertuples(index=False)}
    flags = tidy.drop_duplicates("group").set_index("group")
    if spec.rows is not None:
        rows_spec = dict(spec.rows)
    else:
        names = flags["label"] if "label" in flags.columns else pd.Series(flags.index, index=flags.index)
        rows_spec = dict(sorted(((g, str(n)) for g, n in names.items()), key=lambda kv: (kv[1], kv[0])))
    groups = list(rows_spec)
    known = set(tidy.group)
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise DataError(f"table rows name groups with no results: {unknown}; known: {sorted(known)}")
    cells: dict[str, list[str]] = {g: [] for g in groups}
    for col in spec.columns:
        means = {g: lookup.get((g, col.metric, "mean"), math.nan) * spec.scale for g in groups}
        shown = {g: round(v, spec.precision) for g, v in means.items() if not math.isnan(v)}
        higher = _direction(tidy, col.metric)
        best = (max if higher else min)(shown.values()) if shown else None
        for g in groups:
            m = means[g]
            if math.isnan(m):
                cells[g].append("--")
                continue
            se = lookup.get((g, col.metric, col.se), math.nan) * spec.scale
            text = f"{_fmt(m, spec.precision)} $\\pm$ {_fmt(se, spec.precision)}"
            cells[g].append(f"\\textbf{{{text}}}" if shown[g] == best else text)
    units = "units" if spec.units is None else spec.units      # "" when the ids say it ("seed 2")
    rows, notes = [], []
    for g in groups:
        name = escape(rows_spec[g])
        label = name
        f = flags.loc[g]
        if bool(f.partial):
            label += r"$^\dagger$"
            why = [" ".join(filter(None, (k, escape(units), escape(f[c])))) for k, c in (
                ("missing", "missing_units"), ("failed", "failed_units"),
                ("unpaired (inputs differ from the reference's)", "mismatched_units")) if f[c]]
            notes.append(f"$^\\dagger${name}: partial, {', '.join(why)}")
        rows.append({"label": label, "cells": cells[g]})
    reported = []
    for r in spec.reported:
        unknown = set(r.values) - {c.metric for c in spec.columns}
        if unknown:
            raise DataError(f"reported row {r.label!r} names metrics that are not columns: {sorted(unknown)}")
        row_cells = []
        for col in spec.columns:
            v = r.values.get(col.metric)
            mean, se = (v if isinstance(v, tuple) else (v, None)) if v is not None else (None, None)
            row_cells.append("--" if mean is None else _fmt(mean, spec.precision)
                             + ("" if se is None else f" $\\pm$ {_fmt(se, spec.precision)}"))
        reported.append({"label": escape(r.label) + r"$^\ast$", "cells": row_cells})
    sources = sorted({r.source for r in spec.reported if r.source})
    if spec.reported:
        notes.append(r"$^\ast$reported" + (f": {'; '.join(escape(s) for s in sources)}" if sources else "")
                     + ", not measured here")
    headers = [escape(c.label or c.metric) + (" (upstream SE)" if c.se == "se_upstream" else "")
               for c in spec.columns]
    return _env().get_template("table.tex.j2").render(
        caption=escape(spec.caption) if spec.caption else None, label=spec.label, columns=headers,
        rows=rows, reported=reported, notes=notes, row_header=escape(spec.row_header))


def render_document(tables: list[str]) -> str:
    """A minimal compilable document around tables (for checking and previews)."""
    return _env().get_template("document.tex.j2").render(tables=tables)
