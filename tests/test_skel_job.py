"""The skel job end to end on a tiny ntutoy subset (every variant; preemption -> identical
predictions), the family's input checks, the aggregation's Table 1, and a dry cluster sweep."""
from __future__ import annotations

import json
import os
import pickle
import signal

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import REPO
from actlab.families.skel import ntutoy

TINY = ["pipeline.clip_len=4", "pipeline.short_side=20", "pipeline.train_size=16", "pipeline.test_size=16",
        "pipeline.num_test_clips=1", "model.base=4", "model.hidden=16", "model.embed=8", "model.queue_size=16",
        "text.layers=1", "epochs=2", "batch_size=8", "eval_batch_size=8", "warmup_epochs=1",
        "wandb.mode=disabled", "checkpoint_every=0"]


@pytest.fixture(scope="module")
def tiny_toy(tmp_path_factory):
    """ntutoy cut to 2 train and 1 test clip per class (the job reads a real pickle)."""
    full = tmp_path_factory.mktemp("full")
    ntutoy.generate(full, seed=0)
    data = pickle.loads((full / ntutoy.PICKLE).read_bytes())
    by_dir = {a["frame_dir"]: a for a in data["annotations"]}
    keep = {}
    for split, per_class in (("xsub_train", 2), ("xsub_val", 1)):
        count: dict[int, int] = {}
        keep[split] = []
        for fd in data["split"][split]:
            label = by_dir[fd]["label"]
            if count.get(label, 0) < per_class:
                count[label] = count.get(label, 0) + 1
                keep[split].append(fd)
    out = tmp_path_factory.mktemp("ntutoy")
    used = set(keep["xsub_train"]) | set(keep["xsub_val"])
    (out / ntutoy.PICKLE).write_bytes(pickle.dumps(
        {"split": keep, "annotations": [a for a in data["annotations"] if a["frame_dir"] in used]}))
    (out / ntutoy.LABELS).write_bytes((full / ntutoy.LABELS).read_bytes())
    return out


def skel_cfg(tmp_path, toy, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs" / "skel"), version_base="1.3"):
        cfg = compose("skel", overrides=["experiment=ntutoy_main", "split=ntutoy_xsub", f"paths.ntutoy={toy}",
                                         f"paths.root={tmp_path}", f"paths.results={tmp_path}/results",
                                         *TINY, *overrides])
    cfg.overrides = {o.split("=")[0]: o.split("=")[1] for o in overrides if o.startswith("loss=")}
    cfg.submitted = "20260101T000000Z"     # as the launcher fixes it: a rerun is the same run
    return cfg


@pytest.mark.slow
def test_every_variant_runs_end_to_end_and_writes_its_outputs(tmp_path, tiny_toy):
    from actlab.families.skel import job

    for loss in ("ce", "itc", "itc_itm", "itc_mom", "pacl"):
        folder = job.run(skel_cfg(tmp_path, tiny_toy, f"loss={loss}"))
        summary = json.loads((folder / "summary.json").read_text())
        assert {"val/top1", "val/top5", "val/mean_class_acc", "val/top1_best", "best_epoch", "last_epoch"} <= set(summary)
        assert 0 <= summary["val/top1"] <= summary["val/top5"] <= 1 and summary["last_epoch"] == 2
        scores = np.load(folder / "scores.npy")
        assert scores.shape == (10, 10)
        np.testing.assert_allclose(scores.sum(1), 1, atol=1e-5)
        preds = pd.read_parquet(folder / "predictions.parquet")
        assert len(preds) == 10 and (preds.pred == scores.argmax(1)).all()
        curves = pd.read_parquet(folder / "curves.parquet")
        assert list(curves.epoch) == [1, 2] and "val/top1" in curves
        if loss == "itc_itm":
            assert "train/itm_loss" in curves and "itm_skips" in curves
        identity = json.loads((folder / "identity.json").read_text())
        assert set(identity["inputs"]) == {"pickle", "labels"} and identity["labels"]["variant"] == loss
        assert job.run(skel_cfg(tmp_path, tiny_toy, f"loss={loss}")) == folder    # completed: a no-op


@pytest.mark.slow
def test_a_preempted_momentum_run_resumes_to_identical_predictions(tmp_path, tiny_toy, monkeypatch):
    from actlab import preemption
    from actlab.families.skel import job
    from actlab.train import loop

    whole = job.run(skel_cfg(tmp_path / "a", tiny_toy, "loss=itc_mom"))
    real_fit, steps = loop.fit, []

    def signalling_fit(*args, **kw):     # a real SIGUSR2 after the 3rd step (epoch 2: queue, momentum, alpha ramp)
        def should_stop():
            steps.append(1)
            if len(steps) == 3:
                os.kill(os.getpid(), signal.SIGUSR2)
            return preemption.requested()
        return real_fit(*args, **kw | {"should_stop": should_stop})

    monkeypatch.setattr(job, "fit", signalling_fit)
    cfg = skel_cfg(tmp_path / "b", tiny_toy, "loss=itc_mom")
    try:
        with pytest.raises(preemption.Preempted):
            job.run(cfg)
    finally:
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    monkeypatch.setattr(job, "fit", real_fit)
    resumed = job.run(cfg)
    np.testing.assert_array_equal(np.load(whole / "scores.npy"), np.load(resumed / "scores.npy"))
    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(resumed / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a) and int(b["queue.pointer"]) == int(a["queue.pointer"])
    pd.testing.assert_frame_equal(pd.read_parquet(whole / "predictions.parquet"),
                                  pd.read_parquet(resumed / "predictions.parquet"))


def test_eval_every_scores_only_every_nth_and_the_last_epoch(tmp_path, tiny_toy, monkeypatch):
    from actlab.families.skel import job

    cfg = skel_cfg(tmp_path, tiny_toy, "loss=ce")
    cfg.epochs, cfg.eval_every = 5, 2          # scored after epochs 2, 4 and the last, 5
    real, scored = job.test_scores, []

    def counting(model, dataset, *args, **kw):
        scored.append(int(model.step))
        return real(model, dataset, *args, **kw)

    monkeypatch.setattr(job, "test_scores", counting)
    folder = job.run(cfg)
    steps_per_epoch = 20 // 8                  # 2 train clips x 10 classes, batch 8, last partial batch dropped
    assert scored == [2 * steps_per_epoch, 4 * steps_per_epoch, 5 * steps_per_epoch]
    curves = pd.read_parquet(folder / "curves.parquet")
    assert list(curves.epoch) == [1, 2, 3, 4, 5]
    val = curves.set_index("epoch")["val/top1"]
    assert val.notna().tolist() == [False, True, False, True, True]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best_epoch"] in (2.0, 4.0, 5.0) and summary["last_epoch"] == 5.0
    assert summary["val/top1_best"] == val.max() and summary["val/top1"] == val[5]
    assert val[int(summary["best_epoch"])] == summary["val/top1_best"]
