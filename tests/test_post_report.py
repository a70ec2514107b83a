"""build_report and the postprocess CLIs end to end: the continual family on the hand-written
results folder, a pretrain-like family (no units: mean +- SE over seeds), sweep.json dispatch and
one-line errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_post_aggregate import EXP, FT, results  # noqa: F401  (the fixture)
from actlab import families
from actlab.family import Family
from actlab.identity import RunIdentity
from actlab.post.latex import Column, TableSpec
from actlab.post.report import build_report, select_experiment
from actlab.post.store_source import load_store
from actlab.post.tables import default_direction, plain_aggregate
from runs import continual_run, write_run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "postprocess"))
import to_latex  # noqa: E402


def continual() -> Family:
    return families.get("continual")


def test_build_report_writes_table_plots_and_csv(results, tmp_path):  # noqa: F811
    paths = build_report(continual(), select_experiment(load_store(results), EXP), tmp_path / "out")
    tex = paths.table_tex.read_text()
    # rows are labelled by the variant (+ grid values), not by group id
    assert r"\toprule" in tex and r"finetune$^\dagger$" in tex and "failed users 59" in tex
    assert "unpaired (inputs differ from the reference's) users 17" in tex
    # OAG action balanced: 0.15 +- 0.05 -> 15.00 +- 5.00 percentage points
    assert "15.00 $\\pm$ 5.00" in tex
    names = sorted(p.name for p in paths.plots)
    assert names == sorted(f"{stem}.{ext}" for stem in ("forgetting_vs_gap", "oag_along_stream", f"transfer_{FT}")
                           for ext in ("png", "pdf"))
    assert all(p.stat().st_size > 0 for p in paths.plots)
    tidy = pd.read_csv(paths.csv)
    assert set(tidy.group) == {"exp-frozen", "exp-ft"}


def test_select_experiment_keeps_the_recorded_reference(results):  # noqa: F811
    continual_run(results, RunIdentity("other", "other-ref", "68", 0, "20260101T000000Z"), "frozen",
                  {"online/action/balanced_top1": 0.1}, "sha68")
    continual_run(results, RunIdentity("other", "other-ft", "68", 0, "20260101T000000Z"), "finetune",
                  {"online/action/balanced_top1": 0.3}, "sha68", reference_group="exp-frozen")
    runs = select_experiment(load_store(results), "other")
    assert {r.group for r in runs.rows} == {"other-ref", "other-ft", "exp-frozen"}


def test_a_sweeps_report_keeps_only_the_sweeps_groups(results):  # noqa: F811
    """A group of the experiment that another sweep wrote (an older grid point, a reference group
    from before the shared references) is not part of this sweep's table."""
    continual_run(results, RunIdentity("other", "other-old", "68", 0, "20250101T000000Z"), "finetune",
                  {"online/action/balanced_top1": 0.9}, "sha68", reference_group="exp-frozen")
    continual_run(results, RunIdentity("other", "other-ft", "68", 0, "20260101T000000Z"), "finetune",
                  {"online/action/balanced_top1": 0.3}, "sha68", reference_group="exp-frozen")
    runs = select_experiment(load_store(results), "other", groups=["other-ft", "exp-frozen"])
    assert {r.group for r in runs.rows} == {"other-ft", "exp-frozen"}
    assert {r.group for r in select_experiment(load_store(results), "other").rows} == {
        "other-old", "other-ft", "exp-frozen"}


def test_the_reference_comes_from_each_points_latest_submission(results):  # noqa: F811
    """An older submission of a point that named another reference group does not pull that group in."""
    continual_run(results, RunIdentity("other", "other-ref-old", "68", 0, "20250101T000000Z"), "frozen",
                  {"online/action/balanced_top1": 0.1}, "sha68")
    continual_run(results, RunIdentity("other", "other-ft", "68", 0, "20250101T000000Z"), "finetune",
                  {"online/action/balanced_top1": 0.9}, "sha68", reference_group="other-ref-old")
    continual_run(results, RunIdentity("other", "other-ft", "68", 0, "20260101T000000Z"), "finetune",
                  {"online/action/balanced_top1": 0.3}, "sha68", reference_group="exp-frozen")
    runs = select_experiment(load_store(results), "other", groups=["other-ft"])
    assert {r.group for r in runs.rows} == {"other-ft", "exp-frozen"}


def test_to_latex_cli(results, tmp_path):  # noqa: F811
    cols = tmp_path / "cols.yaml"
    cols.write_text("columns:\n  - {metric: hag/action/balanced_top1, label: HAG, se: se_upstream}\n"
                    "rows: {exp-ft: SGD}\nscale: 100\n")
    out = subprocess.run([sys.executable, "postprocess/to_latex.py", "--results", str(results), "--out",
                          str(tmp_path / "t"), "--columns", str(cols), "--precision", "1", "--family", "continual"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LaTeX table:" in out.stdout
    tex = (tmp_path / "t" / "table.tex").read_text()
    assert "HAG (upstream SE)" in tex and "30.0 $\\pm$ 15.3" in tex and "SGD$^\\dagger$" in tex
    assert "failed users 59" in tex


def test_sweep_json_dispatches_on_its_family(results, tmp_path, capsys):  # noqa: F811
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"experiment": EXP, "family": "continual", "results": str(results),
                                                  "units": ["68", "265", "324", "17", "59", "23"],
                                                  "reference_group": None}))
    assert to_latex.main(["--sweep", str(sweep), "--out", str(tmp_path / "rep")]) == 0
    tex = (tmp_path / "rep" / "table.tex").read_text()
    assert "missing users 23" in tex and "15.00 $\\pm$ 5.00" in tex       # units from sweep.json
    assert "Method" in tex and "LaTeX table:" in capsys.readouterr().out


def test_family_defaults_to_the_one_the_runs_record(results, tmp_path, capsys):  # noqa: F811
    # the fixture's runs record no family: the CLI names the option to use
    assert to_latex.main(["--results", str(results), "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == "to_latex.py: the runs record no family; name one with --family"
    write_run(results, RunIdentity("p", "p-1", None, 0, "20260101T000000Z", family="pretrain"),
              summary={"val/top1": 0.5})
    write_run(results, RunIdentity(EXP, "exp-x", "68", 0, "20260101T000000Z", family="continual"),
              summary={"online/action/top1": 0.5})
    assert to_latex.main(["--results", str(results), "--out", str(tmp_path / "b")]) == 2
    assert "several families (continual, pretrain); choose one with --family" in capsys.readouterr().err
    assert to_latex.main(["--results", str(results), "--experiment", EXP, "--out", str(tmp_path / "c")]) == 0


@pytest.mark.parametrize("content, message", [
    (None, "missing file: {sweep}/sweep.json"),
    ("{not json", "malformed JSON in {sweep}/sweep.json"),
    ('{"experiment": "exp", "results": "r"}', "{sweep}/sweep.json: no key 'family'"),
    ('{"experiment": "exp", "family": "nope", "results": "{results}"}', "family 'nope': no src/actlab/families/nope/"),
])
def test_bad_input_is_one_line_exit_2(results, tmp_path, content, message):  # noqa: F811
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    if content is not None:
        (sweep / "sweep.json").write_text(content.replace("{results}", str(results)))
    out = subprocess.run([sys.executable, "postprocess/to_latex.py", "--sweep", str(sweep),
                          "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert message.format(sweep=sweep) in err


# -- a family without units: seeds only ------------------------------------------------------------
PRETRAIN_LIKE = Family(
    name="pretrain_like", config_dir="pretrain", config_name="pretrain", job="x:y", unit=None, units=None,
    aggregate=plain_aggregate(default_direction),
    table=lambda: TableSpec((Column("val/action/top1", "action top-1"), Column("val/verb/loss", "verb loss")),
                            precision=1, scale=100.0, row_header="Setting"))


def test_family_without_units_reports_mean_se_over_seeds(tmp_path):
    root = tmp_path / "results"
    grid = {"lr=0.01": ({"optim.lr": 0.01}, [(0.30, 2.0), (0.40, 1.0), (0.20, 1.5)]),
            "lr=0.1": ({"optim.lr": 0.1}, [(0.50, 1.2), (0.60, 1.1)])}
    for overrides, seeds in grid.values():
        for seed, (top1, loss) in enumerate(seeds):
            identity = RunIdentity.for_point("pre", overrides, None, seed, "20260101T000000Z", family="pretrain_like")
            write_run(root, identity, summary={"val/action/top1": top1, "val/verb/loss": loss, "train/loss": loss},
                      inputs={"split": "s"})
    failed = RunIdentity.for_point("pre", {"optim.lr": 0.1}, None, 2, "20260101T000000Z", family="pretrain_like")
    write_run(root, failed, state="failed")
    paths = build_report(PRETRAIN_LIKE, load_store(root), tmp_path / "out")
    tex = paths.table_tex.read_text()
    lines = {ln.split(" & ")[0]: ln for ln in tex.splitlines() if " & " in ln}
    # lr=0.01: top1 0.3, 0.4, 0.2 -> mean 30.0, SE 100 * 0.1 / sqrt(3) = 5.8; loss 2, 1, 1.5 -> 150.0 +- 28.9
    assert "30.0 $\\pm$ 5.8" in lines["lr=0.01"] and "150.0 $\\pm$ 28.9" in lines["lr=0.01"]
    # lr=0.1: top1 0.5, 0.6 -> 55.0 +- 5.0 (best: bold); loss 1.2, 1.1 -> 115.0 +- 5.0 (lower: bold)
    assert r"\textbf{55.0 $\pm$ 5.0}" in lines[r"lr=0.1$^\dagger$"]
    assert r"\textbf{115.0 $\pm$ 5.0}" in lines[r"lr=0.1$^\dagger$"]
    assert "failed seed 2" in tex and paths.plots == []
    tidy = pd.read_csv(paths.csv)
    assert set(tidy.label) == {"lr=0.01", "lr=0.1"} and set(tidy.reference.fillna("")) == {""}
