"""Pretraining: the schedule, the training loop on an in-memory data set, the job end to end."""
from __future__ import annotations

import json
import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from actlab.families.continual.models.weights import load_checkpoint
from actlab.families.continual.models.factory import x3d_small
from actlab.families.pretrain.job import MemoryDataset, jitter, metrics_path, train_population, warmup_cosine

COLOURS = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
MOVES = [(0, 1), (0, -1), (1, 0), (-1, 0)]  # (dy, dx) per frame


class MovingSquares(Dataset):
    """noun = the square's colour, verb = its direction of motion; random start and background."""

    def __init__(self, n: int, seed: int, size: int = 32, frames: int = 8) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            verb, noun = i % 4, (i // 4 + seed) % 4
            video = 0.3 * torch.randn(3, frames, size, size, generator=g)
            y, x = (int(v) for v in torch.randint(8, size - 14, (2,), generator=g))
            dy, dx = MOVES[verb]
            for t in range(frames):
                top, left = y + dy * t, x + dx * t
                video[:, t, top:top + 6, left:left + 6] = COLOURS[noun].view(3, 1, 1)
            self.items.append({"video": video, "verb": verb, "noun": noun, "index": i})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@pytest.fixture(autouse=True)
def one_thread():
    # Several intra-op threads spin-wait badly when other processes share the 2 cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def loop_cfg(**kw):
    base = {"epochs": 6, "batch_size": 8, "warmup_epochs": 1, "num_workers": 0, "seed": 0,
            "max_minutes": None,
            "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3}}
    return OmegaConf.create(base | kw)


def test_warmup_cosine_schedule():
    f = warmup_cosine(4, 20)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(12) == pytest.approx(0.5)
    assert f(19) < 0.02 and f(20) == pytest.approx(0.0)
    values = [f(s) for s in range(4, 21)]
    assert values == sorted(values, reverse=True)
    assert math.isclose(warmup_cosine(0, 10)(0), 1.0)


def test_train_population_fits_verbs_and_nouns():
    torch.manual_seed(0)
    model = x3d_small(4, 4, num_frames=8, crop_size=32, dropout=0.0)
    data = MovingSquares(32, seed=1)
    # Validating on the training data checks that the loop fits (optimiser, schedule, both losses)
    # at a cost a unit test can afford; generalisation is the end-to-end run's business.
    metrics = train_population(model, data, data, loop_cfg(epochs=12, optimizer={
        "_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-2}))
    history = metrics["history"]
    assert [h["epoch"] for h in history] == list(range(1, 13))
    assert metrics["train/verb/top1"] >= 0.8 and metrics["train/noun/top1"] >= 0.8
    assert history[-1]["train/loss"] < 0.5 * history[0]["train/loss"]
    # chance is 0.25 for both; eval mode, so BatchNorm's running statistics must have followed
    assert metrics["val/verb/top1"] >= 0.7, metrics
    assert metrics["val/noun/top1"] >= 0.7, metrics
    assert metrics["n_train"] == 32 and metrics["val/n_samples"] == 32 and not metrics["stopped_early"]


def test_train_population_sgd_and_time_guard():
    model = x3d_small(4, 4, num_frames=8, crop_size=32)
    cfg = loop_cfg(epochs=3, max_minutes=0.0, optimizer={"_target_": "torch.optim.SGD", "_partial_": True,
                                                         "lr": 0.1, "momentum": 0.9})
    metrics = train_population(model, MovingSquares(24, seed=1), MovingSquares(8, seed=2), cfg)
    assert metrics["stopped_early"] and metrics["epochs_done"] == 1
    assert "val/verb/top1" in metrics


def test_train_population_rejects_empty_data():
    with pytest.raises(ValueError, match="empty"):
        train_population(x3d_small(4, 4, 8, 32), MovingSquares(0, 1), None, loop_cfg())


def test_jitter_changes_lighting_and_position_only():
    aug = OmegaConf.create({"gain": 0.0, "cast": 0.0, "shift": 0, "mean": [0.45] * 3, "std": [0.225] * 3})
    video = torch.stack([MovingSquares(1, seed=5)[0]["video"]] * 2)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(jitter(video, aug, g), video, atol=1e-5)
    moved = jitter(video, OmegaConf.merge(aug, {"shift": 4}), g)
    raw = video * 0.225 + 0.45
    for i in range(2):  # each clip is some translation of itself
        back = moved[i] * 0.225 + 0.45
        shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
        assert any(torch.allclose(back, torch.roll(raw[i], s, dims=(2, 3)), atol=1e-5) for s in shifts)
    lit = jitter(video, OmegaConf.merge(aug, {"gain": 0.5, "cast": 0.3}), g) * 0.225 + 0.45
    ratio = lit / raw
    assert not torch.allclose(ratio, torch.ones_like(ratio))
    # one factor per clip and channel: lighting, not per-pixel noise
    flat = ratio.flatten(2)
    assert torch.allclose(flat, flat[..., :1].expand_as(flat), rtol=1e-3)
    assert ((0.5 * 0.7 - 1e-4 <= flat) & (flat <= 1.5 * 1.3 + 1e-4)).all()


def test_memory_dataset_keeps_items():
    source = MovingSquares(5, seed=3)
    cached = MemoryDataset(source)
    assert len(cached) == 5
    item = cached[2]
    assert item["verb"] == source[2]["verb"] and item["index"] == 2
    assert item["video"].dtype == torch.float32
    assert torch.allclose(item["video"], source[2]["video"], atol=2e-3)


def pretrain_cfg(tmp_path, data_cfg, egotoy_splits, *extra):
    from conftest import compose

    # max_clips truncates every stream: this checks the wiring (split -> decode -> train -> files),
    # not the accuracy, which the full job reports in its metrics.
    return compose("pretrain", [f"paths.root={tmp_path}", f"paths.data={data_cfg.root}",
                                f"paths.splits={egotoy_splits}", "epochs=1", "num_workers=0",
                                "data.max_clips=12", "threads=1", "wandb.mode=disabled", *extra])


@pytest.mark.slow
def test_pretrain_job_end_to_end(tmp_path, data_cfg, egotoy_splits):
    from actlab.families.pretrain import job as pretrain
    from actlab.results.store import iter_runs

    cfg = pretrain_cfg(tmp_path, data_cfg, egotoy_splits)
    out = pretrain.run(cfg)
    assert out == tmp_path / "checkpoints" / "egotoy_pretrained.pt"
    metrics = json.loads(metrics_path(out).read_text())
    assert len(metrics["pretrain_users"]) >= 10 and metrics["val_users"] == ["265", "324", "68"]
    assert metrics["n_train"] == 12 * len(metrics["pretrain_users"])
    assert metrics["val/n_samples"] == 12 * 3
    for key in ("val/verb/top1", "val/noun/top1", "train/loss", "decode_seconds", "history"):
        assert key in metrics
    report = load_checkpoint(instantiate(cfg.model), out)
    assert report.clean and report.meta["metrics"]["n_train"] == metrics["n_train"]
    # the run is in the results store too, with its per-epoch curves
    (run,) = iter_runs(tmp_path / "results")
    assert run.identity.family == "pretrain" and run.identity.unit is None
    assert run.summary["val/action/top1"] == metrics["val/action/top1"]
    assert (run.folder / "curves.parquet").exists()
    # an existing checkpoint is kept unless force=true
    stamp = out.stat().st_mtime_ns
    assert pretrain.run(cfg) == out and out.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_pretrain_job_preempted_mid_epoch_resumes_to_the_same_result(tmp_path, data_cfg, egotoy_splits,
                                                                      monkeypatch):
    """SIGUSR2 -> checkpoint at the next step -> Preempted; the rerun continues to the same run."""
    import os
    import signal

    from actlab import preemption
    from actlab.families.pretrain import job as pretrain
    from actlab.results.store import iter_runs
    from actlab.train import loop

    common = ["epochs=2", "export_to=null", "batch_size=8"]
    whole = pretrain.run(pretrain_cfg(tmp_path / "a", data_cfg, egotoy_splits, *common))
    real_fit, steps = loop.fit, []

    def signalling_fit(*args, **kw):    # a real signal after the 3rd optimizer step of epoch 1
        def should_stop():
            steps.append(1)
            if len(steps) == 3:
                os.kill(os.getpid(), signal.SIGUSR2)
            return preemption.requested()
        return real_fit(*args, **kw | {"should_stop": should_stop})

    monkeypatch.setattr(pretrain, "fit", signalling_fit)
    cfg = pretrain_cfg(tmp_path / "b", data_cfg, egotoy_splits, *common)
    try:
        with pytest.raises(preemption.Preempted):
            pretrain.run(cfg)
    finally:
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    (partial,) = (tmp_path / "b" / "results").rglob("status.json")
    assert json.loads(partial.read_text())["state"] == "running"
    monkeypatch.setattr(pretrain, "fit", real_fit)
    resumed = pretrain.run(cfg)
    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(resumed / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = lambda f: {k: v for k, v in json.loads((f / "summary.json").read_text()).items()  # noqa: E731
                         if k not in ("seconds", "decode_seconds")}
    assert summary(resumed) == summary(whole)
    assert [r.folder for r in iter_runs(tmp_path / "b" / "results")] == [resumed]
