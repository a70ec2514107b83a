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


@pytest.mark.parametrize("extra, stop_at", [
    (["loss=eql", "loss.variant=upstream", "model=clip_temporal", "checkpoint_every=0"], 3),
    # early stopping: stopped inside epoch 2, after epoch 1's weights were kept as the best
    (["val_fraction=0.25", "patience=1", "epochs=5", "augment=false", "cache_features=true", "seed=3",
      "checkpoint_every=0"], 8)], ids=["augmented_eql_upstream", "validation_patience"])
def test_preempted_run_resumes_to_the_identical_summary(tmp_path, toy, monkeypatch, extra, stop_at):
    """SIGUSR2 after step `stop_at` (augmentation on, EQL upstream drawing from the loop's
    generator; or early stopping on a validation part): the resumed run ends identical."""
    from actlab import preemption
    from actlab.families.ak import job
    from actlab.train import loop

    whole = job.run(ak_cfg(tmp_path / "a", toy, *extra))
    real_fit, steps = loop.fit, []

    def signalling_fit(*args, **kw):
        own = kw.get("should_stop") or preemption.requested

        def should_stop():
            steps.append(1)
            if len(steps) == stop_at:
                os.kill(os.getpid(), signal.SIGUSR2)
            return own()
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
    (path,) = FAMILY.tables(agg, tmp_path, FAMILY.table())
    assert path.name == "table_paper.tex"
    text = path.read_text()
    assert text.index("Baseline (BCE) / clip\\_proj") < text.index("Focal") < text.index("EQL")
    assert "10.50 $\\pm$ 0.50" in text


def test_k_test_views_score_the_max_of_the_single_view_logits(toy):
    """test.views = 2 on 16-frame clips: each of the 8 chunks is 2 frames, so view 0 is frames
    0, 2, ..., 14 and view 1 frames 1, 3, ..., 15 (chunk_positions: floor(2c + 2(j + 0.5)/2));
    one view (the middle frame, floor(2c + 1)) is view 1. Worked out here from decoded frames."""
    from omegaconf import OmegaConf

    from actlab.families.ak import data as ak_data
    from actlab.families.ak.job import FeatureDataset, predict
    from actlab.families.ak.model import ProjOnly, VideoTextClassifier, load_clip
    from actlab.families.ak.video import ClipDataset, VideoSpec, center_view, decode, resize_short

    data = ak_data.load(OmegaConf.create({"root": str(toy), "num_classes": 140, "on_missing": "error",
                                          "metadata": None}))
    clip, _ = load_clip(aktoy.CLIP_NAME, toy / "clip" / "ak_tiny.pt", toy / "clip" / "ak_tiny.json")
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(140, 32), dim=1)
    model = VideoTextClassifier(ProjOnly(clip.visual), text, float(clip.logit_scale.detach())).eval()
    spec = VideoSpec(frames=8, candidates=2, decode_size=40, image_size=32)
    clips, labels = data.clips["test"][:6], data.labels["test"][:6]

    def single_view(frame_ids: list[int]) -> np.ndarray:
        out = []
        for c in clips:
            raw = decode(data.video_dir / f"{c.video}.mp4")
            assert len(raw) == 16
            x = torch.from_numpy(raw[frame_ids]).permute(0, 3, 1, 2).float()
            x = resize_short(x, 40).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            with torch.no_grad():
                out.append(model.logits(model(center_view(x[None, :, None], spec))).numpy()[0])
        return np.stack(out)

    view0, view1 = single_view(list(range(0, 16, 2))), single_view(list(range(1, 16, 2)))
    expected = np.maximum(view0, view1)
    assert (view0 > view1).any() and (view1 > view0).any()          # the max takes from both views
    two = ClipDataset(clips, labels, data.video_dir, spec, train=False, views=2)
    np.testing.assert_allclose(predict(model, two, spec, 4), expected, atol=1e-5, rtol=1e-6)   # batch-order rounding
    # the feature cache holds both views and gives the same scores
    cached = FeatureDataset(two, model, 4)
    assert cached.feats.shape[:3] == (6, 2, 8)
    np.testing.assert_allclose(predict(model, cached, spec, 4), expected, atol=1e-5, rtol=1e-6)   # batch-order rounding
    # k = 1 is the middle frame of each chunk, as before
    one = ClipDataset(clips, labels, data.video_dir, spec, train=False)
    np.testing.assert_allclose(predict(model, one, spec, 4), view1, atol=1e-5, rtol=1e-6)


def test_job_with_test_views_on_cached_features(tmp_path, toy):
    from actlab.families.ak import job

    folder = job.run(ak_cfg(tmp_path, toy, "test.views=3", "augment=false", "cache_features=true"))
    assert json.loads((folder / "details.json").read_text())["test_views"] == 3
    assert 0 < json.loads((folder / "summary.json").read_text())["test/map"] <= 1


def test_validation_part_picks_the_best_epoch_and_stops_after_patience(tmp_path, toy, monkeypatch):
    """val_fraction = 0.25 of the 60 training clips, 5 epochs, patience 1: the run trains on the
    other 45, the tested weights are those of the epoch with the best val mAP (first of equals),
    and training stops after the first epoch with no gain."""
    import pandas as pd

    from actlab.families.ak import job, selection

    kept: dict[int, dict] = {}
    real_update = selection.BestEpoch.update

    def spying_update(self, epoch, score, model):
        kept[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return real_update(self, epoch, score, model)

    monkeypatch.setattr(selection.BestEpoch, "update", spying_update)
    extra = ["val_fraction=0.25", "patience=1", "epochs=5", "augment=false", "cache_features=true", "seed=3"]
    folder = job.run(ak_cfg(tmp_path, toy, *extra))
    summary = json.loads((folder / "summary.json").read_text())
    details = json.loads((folder / "details.json").read_text())
    curve = pd.read_parquet(folder / "curves.parquet")["val/map"].tolist()
    best = int(np.argmax(curve)) + 1                      # argmax: the first of equal maxima
    stop = next((e for e in range(1, 6) if e - (int(np.argmax(curve[:e])) + 1) >= 1), 5)
    assert summary["val/best_epoch"] == best and summary["val/map"] == pytest.approx(max(curve))
    assert len(curve) == stop == summary["epochs_done"]
    assert summary["val/clips"] == 15 and summary["train/clips"] == 45
    v = details["validation"]
    assert v["clips"] == 15 and v["seed"] == [3, 7] and v["best_epoch"] == best
    assert len(set(v["held_out_video_ids"])) == 15
    saved = torch.load(folder / "final_model.pt", weights_only=True)
    assert all(torch.equal(saved[k], kept[best][k]) for k in saved)         # the best epoch's weights were tested
    if best != len(curve):
        assert not all(torch.equal(saved[k], kept[len(curve)][k]) for k in saved)


def test_to_latex_puts_the_papers_reported_rows_in_the_paper_table_and_it_compiles(tmp_path):
    """Four finished ak runs (2 losses x 2 seeds) in a results store -> postprocess/to_latex.py
    --reported configs/ak/reported/ak_paper.yaml: table_paper.tex has the measured rows (in %) and
    the paper's 12 rows as written there, and compiles with pdflatex."""
    import shutil
    import subprocess
    import sys

    from conftest import REPO, require
    from runs import write_run

    from actlab.identity import RunIdentity
    from actlab.post.latex import render_document

    results = tmp_path / "results"
    for i, loss in enumerate(("bce", "focal")):
        for seed in (0, 1):
            write_run(results, RunIdentity("aktoy_main", f"aktoy_main-g{i}", None, seed, "20260101T000000Z",
                                           overrides={"loss": loss}, family="ak"),
                      labels={"loss": loss, "model": "clip_proj", "template": "video"}, inputs={"data": "d"},
                      summary={"test/map": 0.10 + 0.02 * i + 0.01 * seed, "test/map/head": 0.2,
                               "test/map/middle": 0.15, "test/map/tail": 0.05, "test/map_random": 0.03,
                               "train/loss": 0.1})
    proc = subprocess.run([sys.executable, "postprocess/to_latex.py", "--results", str(results), "--out",
                           str(tmp_path / "report"), "--reported", "configs/ak/reported/ak_paper.yaml"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tex = (tmp_path / "report" / "table_paper.tex").read_text()
    lines = {ln.split(" & ")[0]: ln for ln in tex.splitlines() if " & " in ln}
    assert lines["Baseline (BCE) / clip\\_proj"].startswith("Baseline (BCE) / clip\\_proj & 10.50 $\\pm$ 0.50 & ")
    # the paper's rows, literally (the file's values, in %; no Random column for them)
    assert lines["Baseline (CE) / I3D$^\\ast$"] == "Baseline (CE) / I3D$^\\ast$ & 16.48 & 46.39 & 20.68 & 12.28 & -- \\\\"
    assert lines["EQL / X3D$^\\ast$"] == "EQL / X3D$^\\ast$ & 30.55 & 63.33 & 38.62 & 25.09 & -- \\\\"
    assert sum(ln.endswith("$^\\ast$") for ln in lines) == 12
    assert tex.index("Focal / clip") < tex.index("Baseline (CE) / I3D")          # under the measured rows
    assert "Animal Kingdom paper (CVPR 2022), action recognition table" in tex
    require(shutil.which("pdflatex") is not None, "pdflatex missing (bash cluster/install_debian_deps.sh)")
    (tmp_path / "doc.tex").write_text(render_document([tex]))
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
