"""The skel family through the shared launcher and post layer: input checks before a sweep, a
dry cluster sweep of ntu60_main, the per-split aggregation, Tables 1-3 and a LaTeX build."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import REPO, require

from actlab.errors import DataError
from actlab.families.skel import FAMILY
from actlab.families.skel.report import aggregate, extra_tables, table1
from actlab.launch.preflight import InputsError
from actlab.launch.submit import prepare
from actlab.post.latex import render_document, render_table
from actlab.post.sources import IncompleteRun, RunRow, Runs

LOCAL = {"executor": "local"}


def _compose(experiment, root, *extra):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs" / "skel"), version_base="1.3"):
        return compose("skel", overrides=[f"experiment={experiment}", f"paths.root={root}", *extra])


def test_check_inputs_names_key_and_path_and_exempts_the_generated_toy(tmp_path):
    problems = FAMILY.check_inputs(_compose("ntu60_main", tmp_path))
    text = "\n".join(problems)
    assert len(problems) == 3, problems
    assert f"datasets.ntu60.pickle = {tmp_path}/data/ntu/ntu60_hrnet.pkl: no such file" in text
    assert 'TASK="paths.ntu_root=..."' in text and "paths.clip_text_weights" in text and "ntu120" not in text
    assert FAMILY.check_inputs(_compose("ntu60_main", tmp_path, "loss=ce")) == problems[:2]   # CE reads no text weights
    assert FAMILY.check_inputs(_compose("ntutoy_main", tmp_path / "fresh")) == []             # the step writes it
    with pytest.raises(InputsError, match="datasets.ntu60.pickle"):
        prepare("ntu60_main", LOCAL, {"cpus": 1}, dry=True, task_overrides=[f"paths.root={tmp_path}"])


def test_ntu60_main_prepares_30_tasks_when_its_inputs_exist(tmp_path):
    (tmp_path / "data/ntu/labels").mkdir(parents=True)
    (tmp_path / "checkpoints/clip").mkdir(parents=True)
    for f in ("data/ntu/ntu60_hrnet.pkl", "data/ntu/labels/ntu60_labels.csv", "checkpoints/clip/ViT-B-16.pt"):
        (tmp_path / f).touch()
    sweep, manifest = prepare("ntu60_main", LOCAL, {"cpus": 1}, dry=True, task_overrides=[f"paths.root={tmp_path}"])
    assert manifest.family == "skel" and len(manifest.rows) == 5 * 2 * 3
    assert {r.unit for r in manifest.rows} == {"ntu60_xsub", "ntu60_xview"}
    shutil.rmtree(sweep, ignore_errors=True)


def _row(loss, split, seed, top1, inputs=None):
    return RunRow(run_id=f"{loss}-{split}-{seed}", experiment="e", group=f"e-{loss}", unit=split, seed=seed,
                  submitted="t", family="skel", inputs=inputs or {"pickle": split[:5]}, labels={"variant": loss},
                  summary={"val/top1": top1, "val/top5": 1.0, "val/mean_class_acc": top1 - 0.01},
                  overrides={"loss": loss})


def test_aggregation_is_per_split_over_seeds_and_flags_partial_groups(tmp_path):
    rows = [_row("ce", s, seed, v) for s, vals in (("ntu60_xsub", (0.90, 0.92, 0.94)), ("ntu60_xview", (0.95, 0.97, 0.96)))
            for seed, v in enumerate(vals)]
    rows += [_row("itc", "ntu60_xsub", seed, v) for seed, v in enumerate((0.80, 0.82, 0.84))]
    rows += [_row("itc", "ntu60_xview", 0, 0.9)]
    incomplete = [IncompleteRun(run_id="x", experiment="e", group="e-itc", unit="ntu60_xview", seed=1,
                                state="failed")]
    agg = aggregate(Runs(rows, incomplete))
    tidy = agg.tidy.set_index(["group", "metric", "stat"]).value
    assert tidy["e-ce", "ntu60_xsub/val/top1", "mean"] == pytest.approx(0.92)
    assert tidy["e-ce", "ntu60_xsub/val/top1", "se"] == pytest.approx(0.02 / 3 ** 0.5)   # sd(ddof=1)/sqrt(3)
    itc = agg.info("e-itc")
    assert itc.label == "ITC" and itc.failed == ("ntu60_xview seed 1",) and itc.missing == ("ntu60_xview seed 2",)
    tex = render_table(agg.tidy, table1(["ntu60_xsub", "ntu60_xview"]))
    assert r"\textbf{92.0 $\pm$ 1.2}" in tex and "ITC$^\\dagger$" in tex and "ntu60\\_xview seed 2" in tex
    paths = extra_tables(agg, tmp_path)
    assert [p.name for p in paths] == ["table1.tex", "table2.tex", "table3.tex", "table3.csv"]
    t3 = (tmp_path / "table3.csv").read_text()
    assert "CE,ntu60_xsub,92.0" in t3 and "93.7" in t3 and "-1.7" in t3
    if shutil.which("pdflatex") is None:
        require(False, "pdflatex missing (bash cluster/install_debian_deps.sh)")
    (tmp_path / "doc.tex").write_text(render_document([tex, (tmp_path / "table2.tex").read_text(),
                                                       (tmp_path / "table3.tex").read_text()]))
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:]


def test_runs_of_one_split_with_different_data_are_refused():
    rows = [_row("ce", "ntu60_xsub", 0, 0.9, {"pickle": "aaa"}), _row("ce", "ntu60_xsub", 1, 0.9, {"pickle": "bbb"})]
    with pytest.raises(DataError, match="ce-ntu60_xsub-0 and ce-ntu60_xsub-1 read different input 'pickle'"):
        aggregate(Runs(rows, []))


def test_configs_compose_for_every_experiment(tmp_path):
    for exp in ("ntutoy_main", "ntu60_main", "ntu120_main", "ntu60_ablation"):
        cfg = _compose(exp, tmp_path)
        assert cfg.loss.optimizer.lr > 0 and cfg.splits
