"""The batch-size schedule (actlab.families.ak.batches): sizes per epoch, phases, the step clock,
and a run through it whose per-step learning-rate schedule ends exactly at the real step count
and that resumes from a preemption inside its second phase to the identical summary."""
from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest
import torch

from actlab.families.ak import aktoy
from actlab.families.ak.batches import Phase, StepClock, batch_sizes, epoch_steps, phases_of
from test_ak_job import ak_cfg


def test_doubling_from_8_to_1024_and_constant():
    assert batch_sizes("doubling", 10, 1024) == [8, 16, 32, 64, 128, 256, 512, 1024, 1024, 1024]
    assert batch_sizes("doubling", 5, 0, start=4, maximum=12, every=2) == [4, 4, 8, 8, 12]
    assert batch_sizes("constant", 3, 1024) == [1024, 1024, 1024]
    with pytest.raises(ValueError, match="batch_start <= batch_max"):
        batch_sizes("doubling", 3, 0, start=16, maximum=8)
    with pytest.raises(ValueError, match="'halving' is not one of"):
        batch_sizes("halving", 3, 8)


def test_phases_and_steps():
    sizes = [8, 16, 32, 32, 32]
    assert phases_of(sizes) == [Phase(0, 0, 1, 8), Phase(1, 1, 1, 16), Phase(2, 2, 3, 32)]
    assert epoch_steps(60, sizes) == [8, 4, 2, 2, 2]                # ceil(60 / b)
    clock = StepClock(epoch_steps(60, sizes))
    assert clock.total == 18 and clock.end_of(2) == 12
    assert [clock.epoch_of(s) for s in (0, 7, 8, 11, 12, 17, 18)] == [0, 0, 1, 1, 2, 4, 5]
    assert clock.warmup(1) == 8 and clock.warmup(1.5) == 10 and clock.warmup(0) == 0


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return aktoy.generate(tmp_path_factory.mktemp("aktoy"), seed=0, scale=0.05)   # 60 train clips


DOUBLING = ["train.batch_schedule=doubling", "train.batch_start=8", "train.batch_max=32", "epochs=3",
            "augment=false", "cache_features=true", "checkpoint_every=0"]


def test_doubling_run_schedules_over_the_real_step_count(tmp_path, toy):
    """Batches 8, 16, 32 over 60 clips: 8 + 4 + 2 = 14 steps; warmup = the first epoch's 8 steps.
    lr (2e-3) at the end of epoch 2 (step 12): 0.5 (1 + cos(pi (12 - 8) / (14 - 8))) = 0.25 of it;
    at the end, step 14 = T: 0."""
    from actlab.families.ak import job

    folder = job.run(ak_cfg(tmp_path, toy, *DOUBLING))
    batches = json.loads((folder / "details.json").read_text())["batches"]
    assert batches == {"schedule": "doubling", "batch_sizes": [8, 16, 32], "steps": 14}
    curve = pd.read_parquet(folder / "curves.parquet")
    assert curve["epoch"].tolist() == [1, 2, 3]
    assert curve["lr"].tolist() == pytest.approx([2e-3 * 1.0, 2e-3 * 0.25, 0.0])
    assert json.loads((folder / "summary.json").read_text())["epochs_done"] == 3


def test_doubling_run_resumes_inside_its_second_phase(tmp_path, toy, monkeypatch):
    """SIGUSR2 at the 10th step (the second epoch, batch 16): the next start restores the first
    phase's end from its checkpoint, continues the second from its own, and ends identical."""
    from actlab import preemption
    from actlab.families.ak import job

    whole = job.run(ak_cfg(tmp_path / "a", toy, *DOUBLING))
    real_fit, steps = job.fit, []

    def signalling_fit(*args, **kw):
        def should_stop():
            steps.append(1)
            if len(steps) == 10:
                os.kill(os.getpid(), signal.SIGUSR2)
            return preemption.requested()
        return real_fit(*args, **kw | {"should_stop": should_stop})

    monkeypatch.setattr(job, "fit", signalling_fit)
    cfg = ak_cfg(tmp_path / "b", toy, *DOUBLING)
    try:
        with pytest.raises(preemption.Preempted) as stopped:
            job.run(cfg)
    finally:
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    state = stopped.value.folder / "checkpoint"
    assert sorted(p.name for p in state.iterdir() if p.is_dir()) == ["phase0", "phase1"]
    assert list(json.loads((state / "phases.json").read_text())) == ["0"]
    monkeypatch.setattr(job, "fit", real_fit)
    resumed = job.run(cfg)
    assert (resumed / "summary.json").read_text() == (whole / "summary.json").read_text()
    pd.testing.assert_frame_equal(pd.read_parquet(resumed / "curves.parquet"),
                                  pd.read_parquet(whole / "curves.parquet"))
    a = torch.load(whole / "final_model.pt", weights_only=True)
    b = torch.load(resumed / "final_model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
