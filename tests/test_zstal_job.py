"""The zstal job on the embedded set (capped): files of §6, preemption -> resume to the identical
summary; the family's input check and bluecrystal dry run; its tables, with reported rows, compile."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import require
from actlab import preemption
from actlab.errors import DataError
from actlab.families.zstal import FAMILY
from actlab.families.zstal import job as zjob
from actlab.families.zstal.report import block_rows, reported_ratio
from actlab.families.zstal.zstaltoy import generate
from actlab.post.latex import ReportedRow, render_document

REPO = Path(__file__).resolve().parents[1]
CAP = ["data.max_videos=4", "data.epochs=2", "model.d_model=16", "model.heads=2", "model.ffn=32", "checkpoint_every=1"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("zstaltoy"), seed=0)


def job_cfg(toy, results, *overrides):
    with initialize_config_dir(str(REPO / "configs" / "zstal"), version_base="1.3"):
        return compose("zstal", ["experiment=zstaltoy_main", "data=zstaltoy_thumos", f"paths.zstaltoy={toy}",
                                 f"paths.results={results}", "wandb.mode=disabled", "split_id=0", "seed=0",
                                 *CAP, *overrides])


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_job_files_and_preemption_resume_to_the_same_summary(toy, tmp_path, monkeypatch):
    whole = zjob.run(job_cfg(toy, tmp_path / "a"))
    s = summary(whole)
    for key in ("test/map@0.30", "test/map@0.70", "test/average_map", "test/proposal_map@0.50",
                "test/proposal_average_map", "test/n_videos", "test/n_classes", "oracle/average_map"):
        assert key in s, key
    pred = json.loads((whole / "predictions.json").read_text())
    assert set(pred) == {"version", "results", "external_data"}
    first = next(iter(pred["results"].values()))[0]
    assert set(first) == {"label", "score", "segment"} and first["segment"][0] <= first["segment"][1]
    gt = json.loads((whole / "eval_gt.json").read_text())
    assert {v["subset"] for v in gt["database"].values()} == {"test"}
    assert len(gt["database"]) == s["test/n_videos"]
    assert json.loads((whole / "status.json").read_text())["state"] == "completed"
    record = json.loads((whole / "identity.json").read_text())
    assert {"annotations", "info", "split_train", "split_test", "clip_weights"} <= set(record["inputs"])
    # the evaluator's command line scores the written files to the summary's numbers
    out = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "actlab.families.zstal.evaluate",
                          "--gt", str(whole / "eval_gt.json"), "--pred", str(whole / "predictions.json"),
                          "--subset", "test", "--dataset", "thumos"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["average_map"] == pytest.approx(s["test/average_map"], abs=1e-12)

    real_fit, steps = zjob.fit, []

    def signalling_fit(*args, **kw):           # a real SIGUSR2 after the 2nd optimizer step
        def should_stop():
            steps.append(1)
            if len(steps) == 2:
                os.kill(os.getpid(), signal.SIGUSR2)
            return preemption.requested()
        return real_fit(*args, **kw | {"should_stop": should_stop})

    monkeypatch.setattr(zjob, "fit", signalling_fit)
    cfg = job_cfg(toy, tmp_path / "b")
    try:
        with pytest.raises(preemption.Preempted):
            zjob.run(cfg)
    finally:
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    (status,) = (tmp_path / "b").rglob("status.json")
    assert json.loads(status.read_text())["state"] == "running"
    monkeypatch.setattr(zjob, "fit", real_fit)
    resumed = zjob.run(cfg)
    assert summary(resumed) == s
    a, b = (torch.load(f / "final_model.pt", weights_only=True) for f in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)



def test_to_latex_reported_rows_land_in_their_ratio_block_and_the_tables_compile(toy, tmp_path):
    """Capped runs of both split ratios -> postprocess/to_latex.py --reported configs/zstal/reported/
    zero_shot.yaml: table.tex holds every reported row, paper_table.tex each in its ratio's block
    (tag dropped), split0_table.tex none; all three compile."""
    for ratio in (75, 50):
        zjob.run(job_cfg(toy, tmp_path / "results", f"split_ratio={ratio}", f"+overrides.split_ratio={ratio}",
                         "data.epochs=1"))
    reported = REPO / "configs" / "zstal" / "reported" / "zero_shot.yaml"
    out = subprocess.run([sys.executable, "postprocess/to_latex.py", "--results", str(tmp_path / "results"),
                          "--out", str(tmp_path / "report"), "--reported", str(reported)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = tmp_path / "report"
    assert f"LaTeX table: {report / 'paper_table.tex'}" in out.stdout
    table, paper, split0 = ((report / f).read_text() for f in ("table.tex", "paper_table.tex", "split0_table.tex"))
    rows = lambda tex: [ln for ln in tex.splitlines() if "$^\\ast$ &" in ln]   # noqa: E731
    assert [r.split(" & ")[0] for r in rows(table)] == [
        "EffPrompt (75/25)$^\\ast$", "STALE (75/25)$^\\ast$", "EffPrompt (50/50)$^\\ast$", "STALE (50/50)$^\\ast$"]
    block75, block50 = paper.split("\\end{table}")[:2]
    assert "Split 75/25" in block75 and "Split 50/50" in block50
    # the YAML's numbers, literally, in the columns TH 0.3 .. TH Avg | AN 0.5 .. AN Avg
    assert rows(block75) == ["EffPrompt$^\\ast$ & 39.7 & -- & -- & -- & 7.5 & 23.5 & 37.6 & 22.9 & 3.8 & 23.1 \\\\",
                             "STALE$^\\ast$ & -- & -- & -- & -- & -- & 23.8 & 38.2 & 25.2 & 6.0 & 24.9 \\\\"]
    assert rows(block50) == ["EffPrompt$^\\ast$ & -- & -- & -- & -- & -- & 21.9 & -- & -- & -- & 19.6 \\\\",
                             "STALE$^\\ast$ & -- & -- & -- & -- & -- & 22.2 & -- & -- & -- & 20.5 \\\\"]
    assert "to be confirmed against the papers' tables" in block75 and rows(split0) == []
    require(shutil.which("pdflatex") is not None, "pdflatex missing (bash cluster/install_debian_deps.sh)")
    (tmp_path / "doc.tex").write_text(render_document([table, paper, split0]))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:]


def test_reported_rows_by_ratio_tag():
    rows = (ReportedRow("A (75/25)", {}), ReportedRow("B", {}), ReportedRow("C (50/50)", {}))
    assert [r.label for r in block_rows(rows, "75")] == ["A", "B"]
    assert [r.label for r in block_rows(rows, "50")] == ["B", "C"]
    assert reported_ratio(rows[1]) is None
    with pytest.raises(DataError, match=r"'D \(75/50\)': the split ratio tag"):
        block_rows((ReportedRow("D (75/50)", {}),), "75")


def test_check_inputs_names_missing_files(toy, tmp_path):
    root = tmp_path / "thumos"
    shutil.copytree(toy / "thumos", root)
    shutil.copytree(toy / "splits", tmp_path / "splits")
    with initialize_config_dir(str(REPO / "configs" / "zstal"), version_base="1.3"):
        cfg = compose("zstal", ["data=thumos14", f"paths.thumos14={root}", f"paths.zstal_splits={tmp_path / 'splits'}",
                                f"paths.clip_weights={toy / 'clip' / 'tiny_clip.pt'}", "data.annotations=${data.root}/annotations.json",
                                "data.info=${data.root}/info.json", "split_ids=[0,1]"])
    assert FAMILY.check_inputs(cfg) == []
    (root / "info.json").unlink()
    (tmp_path / "splits" / "train_75_test_25" / "THUMOS14" / "test" / "split_1.list").unlink()
    problems = FAMILY.check_inputs(cfg)
    assert problems[0] == f"data.info = {root / 'info.json'}: no such file (set TASK=\"paths.thumos14=...\")"
    assert problems[1].startswith(f"data.splits = {tmp_path}/splits/train_75_test_25/THUMOS14/test/split_1.list: no such file")
    assert len(problems) == 2


@pytest.mark.slow    # composes and checks 120 task configs: 72-89 s measured on the loaded shared 2-core machine
def test_make_grid_dry_bluecrystal(toy, tmp_path):
    """zstal_main's 2 data sets x 2 ratios x 10 splits x 3 seeds, dry, with its inputs in place."""
    tree = tmp_path / "scratch"
    for name, src in (("thumos14", "thumos"), ("anet13", "anet")):
        (tree / name / "annotations").mkdir(parents=True)
        shutil.copy(toy / src / "annotations.json", tree / name / "annotations" /
                    ("thumos14.json" if name == "thumos14" else "activity_net.v1-3.min.json"))
        shutil.copy(toy / src / "info.json", tree / name / "video_info.json")
        (tree / name / "features").mkdir()
    shutil.copytree(toy / "splits", tree / "zstal_splits")
    (tree / "checkpoints" / "clip").mkdir(parents=True)
    shutil.copy(toy / "clip" / "tiny_clip.pt", tree / "checkpoints" / "clip" / "ViT-B-16.pt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTLAB_")}
    env |= {"ACTLAB_SCRATCH": str(tree), "ACTLAB_ROOT": str(tmp_path / "root"), "PATH": "/usr/bin:/bin",
            # the shared preflight asks for every unset variable of the profile, the continual family's too
            "ACTLAB_EGO4D": str(tmp_path / "unused"), "ACTLAB_EGO4D_CHECKPOINT": str(tmp_path / "unused.pt")}
    run = lambda: subprocess.run(["make", "-s", "grid", "EXP=zstal_main", "CLUSTER=bluecrystal", "DRY=1"],  # noqa: E731
                                 cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = run()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "#SBATCH --array=0-" in out.stdout and "dry run, nothing submitted" in out.stdout
    assert "step zstaltoy" not in out.stdout            # real data: no preparation step
    shutil.rmtree(tree / "anet13" / "features")
    out = run()
    assert out.returncode == 2
    assert f"data.features = {tree}/anet13/features: no such folder (set ACTLAB_ANET13 or TASK=\"paths.anet13=...\")" in out.stderr + out.stdout
