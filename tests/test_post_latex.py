"""LaTeX tables: bold best by the tidy table's direction column with ties at the shown precision,
escaping, NaN SE, partial flags, specs, and a pdflatex build of the output."""
from __future__ import annotations

import math
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import require
from actlab.errors import DataError
from actlab.post.latex import (Column, ReportedRow, TableSpec, escape, load_reported, load_spec, render_document,
                               render_table)


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def tidy(cells: dict[tuple[str, str], tuple[float, float]], partial: dict[str, str] | None = None,
         higher: dict[str, bool] | None = None, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """A tidy table as actlab.post.tables writes it; direction by hand: losses lower-better unless
    `higher` says otherwise."""
    partial, higher, labels = partial or {}, higher or {}, labels or {}
    rows = []
    for (group, metric), (mean, se) in cells.items():
        for stat, v in (("mean", mean), ("se", se)):
            rows.append({"group": group, "label": labels.get(group, group), "metric": metric, "stat": stat,
                         "value": v, "higher_is_better": higher.get(metric, not lower_is_better(metric)),
                         "partial": group in partial, "missing_units": partial.get(group, ""),
                         "failed_units": "", "mismatched_units": ""})
    return pd.DataFrame(rows)


def test_bold_by_direction_and_ties():
    t = tidy({("a", "online/action/loss"): (1.004, 0.1), ("b", "online/action/loss"): (0.996, 0.1),
              ("c", "online/action/loss"): (2.0, 0.1),
              ("a", "oag/action/top1"): (9.8, 0.1), ("b", "oag/action/top1"): (11.8, 0.2),
              ("c", "oag/action/top1"): (11.0, math.nan)})
    tex = render_table(t, TableSpec((Column("online/action/loss", "loss"), Column("oag/action/top1", "OAG")),
                                    precision=2))
    lines = {ln.split(" & ")[0]: ln for ln in tex.splitlines() if " & " in ln}
    # loss: lower is better; 1.004 and 0.996 both show as 1.00 -> both bold
    assert r"\textbf{1.00 $\pm$ 0.10}" in lines["a"] and r"\textbf{1.00 $\pm$ 0.10}" in lines["b"]
    assert r"\textbf{2.00" not in lines["c"]
    # gain: higher is better, numerically (a text comparison would pick 9.8)
    assert r"\textbf{11.80 $\pm$ 0.20}" in lines["b"] and r"\textbf{9.80" not in lines["a"]
    assert "11.00 $\\pm$ --" in lines["c"]                     # SE of one value: shown as missing
    # precision 0: 11.8 and 12.3 both show as 12 -> tied, both bold; 9.8 shows as 10
    t0 = tidy({("a", "oag/action/top1"): (9.8, 0.1), ("b", "oag/action/top1"): (11.8, 0.2),
               ("c", "oag/action/top1"): (12.3, 0.2)})
    tex0 = render_table(t0, TableSpec((Column("oag/action/top1"),), precision=0))
    assert tex0.count(r"\textbf") == 2 and r"\textbf{10" not in tex0


def test_escaping_rows_and_partial_notes():
    t = tidy({("g_1", "oag/action/top1"): (1.0, 0.5), ("g2", "oag/action/top1"): (2.0, 0.5)},
             partial={"g2": "59,23"})
    spec = TableSpec((Column("oag/action/top1", "OAG 50% & more_x"),), rows={"g2": "Replay #1 {x}", "g_1": "SGD_lr"},
                     units="users")
    tex = render_table(t, spec)
    assert r"OAG 50\% \& more\_x" in tex and r"Replay \#1 \{x\}" in tex and r"SGD\_lr &" in tex
    assert tex.index("Replay") < tex.index("SGD")              # row order from the spec
    assert r"Replay \#1 \{x\}$^\dagger$" in tex and "missing users 59,23" in tex
    assert escape("a\\b~^") == r"a\textbackslash{}b\textasciitilde{}\textasciicircum{}"
    with pytest.raises(ValueError, match="no results"):
        render_table(t, TableSpec((Column("oag/action/top1"),), rows={"nope": "x"}))
    assert "missing units 59,23" in render_table(t, TableSpec((Column("oag/action/top1"),)))


def test_bold_follows_the_higher_is_better_column_not_the_name():
    cells = {("a", "val/score"): (1.0, 0.1), ("b", "val/score"): (2.0, 0.1)}
    up = render_table(tidy(cells, higher={"val/score": True}), TableSpec((Column("val/score"),)))
    down = render_table(tidy(cells, higher={"val/score": False}), TableSpec((Column("val/score"),)))
    assert r"\textbf{2.00" in up and r"\textbf{1.00" not in up
    assert r"\textbf{1.00" in down and r"\textbf{2.00" not in down
    # the same goes for a name that looks like a loss: the recorded direction decides
    loss = {("a", "oag/action/loss"): (1.0, 0.1), ("b", "oag/action/loss"): (2.0, 0.1)}
    assert r"\textbf{2.00" in render_table(tidy(loss, higher={"oag/action/loss": True}),
                                           TableSpec((Column("oag/action/loss"),)))
    with pytest.raises(DataError, match="no higher_is_better column"):
        render_table(tidy(cells).drop(columns="higher_is_better"), TableSpec((Column("val/score"),)))


def test_rows_default_to_the_label_column_sorted_by_label():
    t = tidy({("g1", "m/top1"): (1.0, 0.1), ("g2", "m/top1"): (2.0, 0.1)}, labels={"g1": "zeta", "g2": "alpha"})
    tex = render_table(t, TableSpec((Column("m/top1"),)))
    assert tex.index("alpha &") < tex.index("zeta &") and "g1" not in tex


def test_spec_from_yaml(tmp_path):
    path = tmp_path / "cols.yaml"
    path.write_text("columns:\n  - {metric: hag/action/balanced_top1, label: HAG, se: se_upstream}\n"
                    "  - oag/verb/top1\nrows: {b: B}\nprecision: 1\nscale: 100\n")
    spec = load_spec(path, precision=3)
    assert spec.precision == 3 and spec.scale == 100 and spec.rows == {"b": "B"}
    assert spec.columns == (Column("hag/action/balanced_top1", "HAG", "se_upstream"), Column("oag/verb/top1"))
    path.write_text("colums: []\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_spec(path)
    path.write_text("precision: 1\n")
    with pytest.raises(DataError, match="no columns"):
        load_spec(path)
    with pytest.raises(DataError, match="missing table spec"):
        load_spec(tmp_path / "nope.yaml")
    # without a YAML: the family's table, CLI values on top
    base = TableSpec((Column("val/top1"),), precision=2, scale=100.0, caption="c")
    assert load_spec(None, default=base, precision=1) == TableSpec((Column("val/top1"),), precision=1,
                                                                   scale=100.0, caption="c")
    with pytest.raises(DataError, match="no table spec"):
        load_spec(None)


def test_reported_rows_from_yaml_are_literal_unscaled_never_bold(tmp_path):
    path = tmp_path / "reported.yaml"
    path.write_text("source: AK paper, Tab. 5\nrows:\n"
                    "  - {label: I3D_CE, values: {test/map: 16.48, test/map/head: [46.39, 0.5]}}\n"
                    "  - {label: X3D, values: {test/map: 99.0}, source: other}\n")
    rows = load_reported(path)
    assert rows == (ReportedRow("I3D_CE", {"test/map": 16.48, "test/map/head": (46.39, 0.5)}, "AK paper, Tab. 5"),
                    ReportedRow("X3D", {"test/map": 99.0}, "other"))
    t = tidy({("g", "test/map"): (0.1416, 0.0014), ("g", "test/map/head"): (0.2265, 0.0015)})
    spec = TableSpec((Column("test/map"), Column("test/map/head")), precision=2, scale=100.0, reported=rows)
    tex = render_table(t, spec)
    lines = {ln.split(" & ")[0]: ln for ln in tex.splitlines() if " & " in ln}
    # measured row: scaled and bold (best of the measured); reported rows: as written, 99.0 not bold
    assert lines["g"] == r"g & \textbf{14.16 $\pm$ 0.14} & \textbf{22.65 $\pm$ 0.15} \\"
    assert lines[r"I3D\_CE$^\ast$"] == r"I3D\_CE$^\ast$ & 16.48 & 46.39 $\pm$ 0.50 \\"
    assert lines[r"X3D$^\ast$"] == r"X3D$^\ast$ & 99.00 & -- \\"
    assert tex.index("\\midrule\nI3D") > tex.index("g & ")
    assert "$^\\ast$reported: AK paper, Tab. 5; other, not measured here" in tex
    # through a spec YAML, relative to it
    (tmp_path / "cols.yaml").write_text("columns: [test/map]\nreported: reported.yaml\n")
    assert load_spec(tmp_path / "cols.yaml").reported == rows
    with pytest.raises(DataError, match="not columns: \\['test/map/head'\\]"):
        render_table(t, TableSpec((Column("test/map"),), reported=rows))
    for bad, msg in (("rows: [{label: a, values: {m: x}}]\n", r"rows\[0\].values.m: 'x' is not a number"),
                     ("rows: [{label: a, values: {m: [1, 2, 3]}}]\n", r"rows\[0\].values.m: give a value or"),
                     ("rows: [{values: {m: 1}}]\n", r"rows\[0\] needs a string `label`"),
                     ("row: []\n", "a list `rows`")):
        path.write_text(bad)
        with pytest.raises(DataError, match=msg):
            load_reported(path)
    with pytest.raises(DataError, match="missing reported-rows file"):
        load_reported(tmp_path / "nope.yaml")


def test_pdflatex_compiles(tmp_path):
    require(shutil.which("pdflatex") is not None, "pdflatex missing (bash cluster/install_debian_deps.sh)")
    t = tidy({("g_1", "oag/action/top1"): (1.0, math.nan), ("g&2", "oag/action/top1"): (2.0, 0.5)},
             partial={"g&2": "5_9"})
    tex = render_table(t, TableSpec((Column("oag/action/top1", "OAG % #"),), caption="50% of $ & _",
                                    reported=(ReportedRow("paper_x", {"oag/action/top1": (3.0, 0.1)}, "a & b"),)))
    (tmp_path / "doc.tex").write_text(render_document([tex]))
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
