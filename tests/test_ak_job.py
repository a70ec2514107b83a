"""The ak job on a small aktoy set: summary keys and files of issue 12 section 6, a completed run
is a no-op, preemption -> resume gives the identical summary and weights, the family's report,
and the launcher's preflight naming missing inputs."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from actlab.families.ak import aktoy

REPO_CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
KEYS = ("test/map", "test/map/head", "test/map/middle", "test/map/tail", "test/map_keep_zero", "test/n_eval",
        "train/loss")


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(os.path.abspath(os.path.join(REPO_CONFIGS, "ak")), version_base="1.3"):
        return hydra_compose("ak", overrides=overrides)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return aktoy.generate(tmp_path_factory.mktemp("aktoy"), seed=0, scale=0.05)   # 60 train, 20 test clips


def ak_cfg(root, toy, *extra):
    return compose([f"paths.root={root}", f"paths.ak_root={toy}", "epochs=2",
                    "batch_size=8", "threads=1", "submitted=20260101T000000Z", "wandb.mode=disabled", "optimizer.lr=2e-3", *extra])


def test_job_writes_the_summary_and_files(tmp_path, toy):
    from actlab.families.ak import job

    folder = job.run(ak_cfg(tmp_path, toy, "loss=ldam_drw"))
    summary = json.loads((folder / "summary.json").read_text())
    assert set(KEYS) <= set(summary)
    with np.load(folder / "test_scores.npz", allow_pickle=False) as z:
        assert set(z.files) == {"video_id", "labels", "scores", "segment"}
        assert z["labels"].dtype == np.uint8 and z["labels"].shape == (20, 140)
        assert z["scores"].dtype == np.float32 and z["segment"].dtype.kind == "U"
        from actlab.families.ak.metrics import mean_average_precision

        again = mean_average_precision(z["labels"], z["scores"], z["segment"]).metrics
        n_with_positive = int((z["labels"].sum(0) > 0).sum())
    assert {f"test/{k}": v for k, v in again.items()} == pytest.approx({k: summary[k] for k in
                                                                       (f"test/{k}" for k in again)})
    assert summary["test/n_eval"] == n_with_positive < 140
    assert (folder / "per_class_ap.csv").exists() and (folder / "final_model.pt").exists()
    identity = json.loads((folder / "identity.json").read_text())
    assert set(identity["inputs"]) == {"annotation/df_action.xlsx", "annotation/train.csv", "annotation/val.csv",
                                       "AR_metadata.xlsx", "clip_weights"}
    assert identity["labels"]["loss"] == "ldam_drw"
    stamp = (folder / "status.json").stat().st_mtime_ns
    assert job.run(ak_cfg(tmp_path, toy, "loss=ldam_drw")) == folder          # completed: a no-op
    assert (folder / "status.json").stat().st_mtime_ns == stamp


def test_preempted_run_resumes_to_the_identical_summary(tmp_path, toy, monkeypatch):
    """SIGUSR2 after the 3rd step (augmentation on, EQL upstream drawing from the loop's generator)."""
    from actlab import preemption
    from actlab.families.ak import job
    from actlab.train import loop

    extra = ["loss=eql", "loss.variant=upstream", "model=clip_temporal", "checkpoint_every=0"]
    whole = job.run(ak_cfg(tmp_path / "a", toy, *extra))
    real_fit, steps = loop.fit, []

    def signalling_fit(*args, **kw):
        def should_stop():
            steps.append(1)
            if len(steps) == 3:
                os.kill(os.getpid(), signal.SIGUSR2)
            return preemption.requested()
        return real_fit(*args, **kw | {"should_stop": should_stop})

    monkeypatch.setattr(job, "fit", signalling_fit)
    cfg = ak_cfg(tmp_path / "b", toy, *extra)
    try:
        with pytest.raises(preemption.Preempted):
            job.run(cfg)
    finally:
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    monkeypatch.setattr(job, "fit", real_fit)
    resumed = job.run(cfg)
    assert (resumed / "summary.json").read_text() == (whole / "summary.json").read_text()
    a = torch.load(whole / "final_model.pt", weights_only=True)
    b = torch.load(resumed / "final_model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_preflight_names_missing_inputs(tmp_path):
    from actlab.families.ak import FAMILY

    cfg = compose([f"paths.root={tmp_path}", "data=ak", "clip=vit_b16"])
    problems = FAMILY.check_inputs(cfg)
    text = "\n".join(problems)
    for name in ("annotation/train.csv", "annotation/val.csv", "annotation/df_action.xlsx", "dataset/video"):
        assert name in text
    assert any(p.startswith("clip.weights = ") and "ak_clip_weights" in p for p in problems)
    assert FAMILY.check_inputs(compose([f"paths.root={tmp_path}"])) == []     # aktoy: its step generates it


def test_report_groups_rows_by_loss_in_the_paper_order(tmp_path):
    from actlab.families.ak import FAMILY
    from actlab.post.sources import RunRow, Runs

    rows = []
    for i, (loss, model) in enumerate([("eql", "clip_proj"), ("bce", "clip_vision"), ("bce", "clip_proj"),
                                       ("focal", "clip_proj")]):
        for seed in (0, 1):
            rows.append(RunRow(f"r{i}{seed}", "x", f"g{i}", None, seed, "t", "ak", {}, {"loss": loss, "model": model},
                               {"test/map": 0.1 * (i + 1) + 0.01 * seed, "test/map/head": 0.5, "test/map/middle": 0.3,
                                "test/map/tail": 0.1, "test/map_random": 0.02, "train/loss": 0.1},
                               {"loss": loss, "model": model}))
    agg = FAMILY.aggregate(Runs(rows, []))
    assert list(agg.tables["paper_order"]["label"]) == ["Baseline (BCE) / clip_proj", "Baseline (BCE) / clip_vision",
                                                         "Focal / clip_proj", "EQL / clip_proj"]
    mean = agg.tidy[(agg.tidy.group == "g0") & (agg.tidy.metric == "test/map")].set_index("stat")["value"]
    assert mean["mean"] == pytest.approx(0.105) and mean["se"] == pytest.approx(0.005)
    (path,) = FAMILY.plots(agg, tmp_path)
    text = path.read_text()
    assert text.index("Baseline (BCE) / clip\\_proj") < text.index("Focal") < text.index("EQL")
    assert "10.50 $\\pm$ 0.50" in text
