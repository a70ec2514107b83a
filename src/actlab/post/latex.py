"""Tidy aggregate -> LaTeX tables (jinja2 templates in ./templates, booktabs).

Cells are "mean $\\pm$ SE" at a chosen precision (values multiplied by `scale`, e.g. 100 for
percentage points). The best cell per column is chosen from the numeric means, rounded to the
shown precision, by the metric's direction (`aggregate.higher_is_better`): every cell tied with it
at that precision is bold. An SE that does not exist (one user) is shown as "--". Row labels of
partial groups get a dagger and a note naming the missing / failed / mismatched users. Every label
is escaped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from actlab.post.aggregate import higher_is_better
from actlab.data.errors import DataError

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
class TableSpec:
    columns: tuple[Column, ...]
    rows: dict[str, str] | None = None     # group -> label, in this order; None = every group
    precision: int = 2
    scale: float = 1.0
    caption: str | None = None
    label: str | None = None
    row_header: str = "Method"


DEFAULT_COLUMNS = tuple(Column(f"{phase}/{task}/balanced_top1", f"{phase.upper()} {task}")
                        for phase in ("oag", "hag") for task in ("action", "verb", "noun"))


def load_spec(path: str | Path | None = None, **overrides: Any) -> TableSpec:
    """A YAML spec: {columns: [{metric, label, se}], rows: {group: label}, precision, scale,
    caption, label, row_header}; CLI values in `overrides` (None = keep) win."""
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - {"columns", "rows", "precision", "scale", "caption", "label", "row_header"}
        if unknown:
            raise DataError(f"{path}: unknown keys {sorted(unknown)}")
    data |= {k: v for k, v in overrides.items() if v is not None}
    cols = data.pop("columns", None)
    columns = DEFAULT_COLUMNS if cols is None else tuple(
        Column(c) if isinstance(c, str) else Column(**c) for c in cols)
    return TableSpec(columns=columns, **data)


def _env() -> jinja2.Environment:
    # LaTeX is full of braces and percent signs: use delimiters that never occur in it.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        block_start_string="((*", block_end_string="*))", variable_start_string="((",
        variable_end_string="))", comment_start_string="((=", comment_end_string="=))",
        trim_blocks=False, autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _fmt(x: float, precision: int) -> str:
    return "--" if x is None or math.isnan(x) else f"{x:.{precision}f}"


def render_table(tidy: pd.DataFrame, spec: TableSpec) -> str:
    lookup = {(g, m, s): v for g, m, s, v in tidy[["group", "metric", "stat", "value"]].itertuples(index=False)}
    groups = list(spec.rows) if spec.rows is not None else sorted(tidy.group.unique())
    known = set(tidy.group)
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise DataError(f"table rows name groups with no results: {unknown}; known: {sorted(known)}")
    flags = tidy.drop_duplicates("group").set_index("group")
    cells: dict[str, list[str]] = {g: [] for g in groups}
    for col in spec.columns:
        means = {g: lookup.get((g, col.metric, "mean"), math.nan) * spec.scale for g in groups}
        shown = {g: round(v, spec.precision) for g, v in means.items() if not math.isnan(v)}
        best = (max if higher_is_better(col.metric) else min)(shown.values()) if shown else None
        for g in groups:
            m = means[g]
            if math.isnan(m):
                cells[g].append("--")
                continue
            se = lookup.get((g, col.metric, col.se), math.nan) * spec.scale
            text = f"{_fmt(m, spec.precision)} $\\pm$ {_fmt(se, spec.precision)}"
            cells[g].append(f"\\textbf{{{text}}}" if shown[g] == best else text)
    rows, notes = [], []
    for g in groups:
        name = escape(spec.rows[g] if spec.rows is not None else g)
        label = name
        f = flags.loc[g]
        if bool(f.partial):
            label += r"$^\dagger$"
            why = [f"{k} users {escape(f[c])}" for k, c in (("missing", "missing_users"), ("failed", "failed_users"),
                                                            ("unpaired (stream differs)", "mismatched_users")) if f[c]]
            notes.append(f"$^\\dagger${name}: partial, {', '.join(why)}")
        rows.append({"label": label, "cells": cells[g]})
    headers = [escape(c.label or c.metric) + (" (upstream SE)" if c.se == "se_upstream" else "")
               for c in spec.columns]
    return _env().get_template("table.tex.j2").render(
        caption=escape(spec.caption) if spec.caption else None, label=spec.label, columns=headers,
        rows=rows, notes=notes, row_header=escape(spec.row_header))


def render_document(tables: list[str]) -> str:
    """A minimal compilable document around tables (for checking and previews)."""
    return _env().get_template("document.tex.j2").render(tables=tables)
