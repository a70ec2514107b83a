"""build_report and the postprocess CLIs end to end on the hand-written results folder."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd

from test_post_aggregate import FT, results  # noqa: F401  (the fixture)
from actlab.post.report import build_report

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_build_report_writes_table_plots_and_csv(results, tmp_path):  # noqa: F811
    paths = build_report(results, tmp_path / "out", experiment="exp")
    tex = paths.table_tex.read_text()
    # rows are labelled by method (+ grid values), not by group id
    assert r"\toprule" in tex and r"finetune$^\dagger$" in tex and "failed users 59" in tex
    # OAG action balanced: 0.15 +- 0.05 -> 15.00 +- 5.00 percentage points
    assert "15.00 $\\pm$ 5.00" in tex
    names = sorted(p.name for p in paths.plots)
    assert names == sorted(f"{stem}.{ext}" for stem in ("forgetting_vs_gap", "oag_along_stream", f"transfer_{FT}")
                           for ext in ("png", "pdf"))
    assert all(p.stat().st_size > 0 for p in paths.plots)
    tidy = pd.read_csv(paths.csv)
    assert set(tidy.group) == {"exp-frozen", "exp-ft"}


def test_to_latex_cli(results, tmp_path):  # noqa: F811
    cols = tmp_path / "cols.yaml"
    cols.write_text("columns:\n  - {metric: hag/action/balanced_top1, label: HAG, se: se_upstream}\n"
                    "rows: {exp-ft: SGD}\nscale: 100\n")
    out = subprocess.run([sys.executable, "postprocess/to_latex.py", "--results", str(results), "--out",
                          str(tmp_path / "t"), "--columns", str(cols), "--precision", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LaTeX table:" in out.stdout
    tex = (tmp_path / "t" / "table.tex").read_text()
    assert "HAG (upstream SE)" in tex and "30.0 $\\pm$ 15.3" in tex and "SGD$^\\dagger$" in tex
