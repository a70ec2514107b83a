"""The hand family's job end to end on a tiny handtoy (capped config): each task, the eval step's
modes, the report's tables (compiled with pdflatex when present), no-op reruns and the
preemption -> resume equality."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import require

from actlab.families.hand import handtoy
from actlab.launch.grid import compose_task

REPO = Path(__file__).resolve().parents[1]
TINY = {"crop.size": 32, "hpe.widths": [8, 16, 16, 16], "hpe.blocks": 1, "hpe.stem": 4, "hpe.fc": 32,
        "hpe.epochs": 2, "hpe.batch_size": 16, "har.epochs": 3, "har.hidden": 16, "wandb.mode": "disabled",
        "threads": 1}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return handtoy.generate(tmp_path_factory.mktemp("hand") / "handtoy", seed=0, actions=2, workers=1)


def task_cfg(toy: Path, out: Path, point: dict, **extra):
    over = TINY | {"data.root": str(toy), "data.cache_dir": str(out / "cache"), "paths.results": str(out / "results")}
    return compose_task(REPO / "configs" / "hand", "hand", "handtoy_main", over | point | extra,
                        {"overrides": point, "seed": 0, "protocol.name": "fpha_1to1", "submitted": "20260101T000000Z",
                         "code": "test"})


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.mark.slow
def test_each_task_eval_modes_and_report_on_toy(toy, tmp_path):
    from actlab.families.hand import FAMILY
    from actlab.families.hand.job import run
    from actlab.post.latex import render_document
    from actlab.post.report import build_report
    from actlab.post.store_source import load_store

    points = [{"task": "hpe", "film.enabled": False}, {"task": "hpe", "film.enabled": True},
              {"task": "har", "har.input": "gt"}, {"task": "har", "har.input": "pca"}]
    folders = [run(task_cfg(toy, tmp_path, p)) for p in points]
    for f in folders[:2]:
        s = summary(f)
        assert {"hpe/mean_mm", "hpe/pck_auc", "hpe/fs_auc", "pca/floor_mm"} <= set(s)
        assert 0 < s["pca/floor_mm"] < s["hpe/mean_mm"] < 200
    for f in folders[2:]:
        assert 0 <= summary(f)["har/top1"] <= summary(f)["har/top3"] <= 1
    stamp = (folders[0] / "status.json").stat().st_mtime_ns
    assert run(task_cfg(toy, tmp_path, points[0])) == folders[0]          # completed: a no-op
    assert (folders[0] / "status.json").stat().st_mtime_ns == stamp

    (evaluated,) = run(task_cfg(toy, tmp_path, {"task": "eval"}))
    s = summary(evaluated)
    modes = ("hpe", "har_gt", "hpe_har", "film_gt", "film_uniform", "film_2pass")
    assert all(f"eval/{m}/hpe/mean_mm" in s for m in modes if not m.startswith("har"))
    assert all(f"eval/{m}/har/top1" in s for m in ("har_gt", "hpe_har", "film_2pass"))
    assert s["eval/hpe/hpe/mean_mm"] == pytest.approx(summary(folders[0])["hpe/mean_mm"])
    assert s["eval/film_gt/hpe/mean_mm"] == pytest.approx(summary(folders[1])["hpe/mean_mm"])
    assert s["eval/har_gt/har/top1"] == pytest.approx(summary(folders[2])["har/top1"])
    assert run(task_cfg(toy, tmp_path, {"task": "eval"})) == [evaluated]  # same sources: a no-op

    runs = load_store(tmp_path / "results", "handtoy_main")
    trained_only = type(runs)([r for r in runs.rows if r.labels["task"] != "eval"], [])
    paths = build_report(FAMILY, trained_only, tmp_path / "report")          # eval runs found by their sources
    table = paths.table_tex.read_text()
    assert "(a) HPE standalone" in table and "(d) FiLM-HPE, GT action (oracle)" in table
    assert (tmp_path / "report" / "table2.tex").exists() and (tmp_path / "report" / "table3.tex").exists()
    assert any(p.name == "pck_fs_fpha_1to1.png" for p in paths.plots)
    require(shutil.which("pdflatex") is not None, "pdflatex missing (bash cluster/install_debian_deps.sh)")
    tex = [paths.table_tex.read_text()] + [(tmp_path / "report" / n).read_text() for n in ("table2.tex", "table3.tex")]
    (tmp_path / "doc.tex").write_text(render_document(tex))
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:]


@pytest.mark.slow
def test_preempted_film_hpe_resumes_to_the_same_result(toy, tmp_path):
    """A SIGUSR2 in epoch 1 -> checkpoint -> Preempted; the rerun ends with the uninterrupted run's
    weights and summary (FiLM with condition dropout: the loop's generator is restored too)."""
    import os
    import signal

    from actlab import preemption
    from actlab.families.hand import train
    from actlab.families.hand.job import run

    point = {"task": "hpe", "film.enabled": True, "film.cond_dropout": 0.5}
    whole = run(task_cfg(toy, tmp_path / "a", point))
    real_fit, steps = train.fit, []

    def signalling_fit(*args, **kw):
        inner = kw["should_stop"]

        def should_stop():
            steps.append(1)
            if len(steps) == 3:
                os.kill(os.getpid(), signal.SIGUSR2)
            return inner()
        return real_fit(*args, **kw | {"should_stop": should_stop})

    cfg = task_cfg(toy, tmp_path / "b", point)
    train.fit = signalling_fit
    try:
        with pytest.raises(preemption.Preempted):
            run(cfg)
    finally:
        train.fit = real_fit
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    (status,) = (tmp_path / "b" / "results").rglob("status.json")
    assert json.loads(status.read_text())["state"] == "running"
    resumed = run(cfg)
    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(resumed / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert summary(resumed) == summary(whole)
