"""The stream job end to end on egotoy: decoded mp4s, the results store, W&B offline, resume."""
from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest
from conftest import REPO, compose

from actlab import preemption
from actlab.families.continual.engine import stream_job, transfer_job
from actlab.families.continual.methods.finetune import Finetune
from actlab.families.continual.methods.replay import Replay
from actlab.families.continual import artifacts
from actlab.results import layout
from actlab.results.store import iter_runs

USER = "68"


class SignalAfter(Replay):
    """Replay that sends itself a real SIGUSR2 (Slurm's pre-timeout signal) after batch 3."""

    def __init__(self, after: int = 3, **kw) -> None:
        super().__init__(**kw)
        self.after, self.batches = after, 0

    def observe(self, batch) -> None:
        super().observe(batch)
        self.batches += 1
        if self.batches == self.after:
            os.kill(os.getpid(), signal.SIGUSR2)


class WaitForGate(Finetune):
    """Finetune that holds its first batch until the file `gate` exists."""

    def __init__(self, gate: str, **kw) -> None:
        super().__init__(**kw)
        self.gate = gate

    def observe(self, batch) -> None:
        import time
        from pathlib import Path

        while not Path(self.gate).exists():
            time.sleep(0.05)
        super().observe(batch)


class CrashAt(Finetune):
    def __init__(self, at: int = 2, **kw) -> None:
        super().__init__(**kw)
        self.at, self.batches = at, 0

    def observe(self, batch) -> None:
        self.batches += 1
        if self.batches == self.at:
            raise RuntimeError("simulated crash in the middle of the stream")


def cfg_for(overrides, *extra):
    return compose("stream", [*overrides, f"user={USER}", "experiment=egotoy_main", "data.max_clips=24",
                              "submitted=20260101T000000Z", "wandb.mode=offline", *extra])


@pytest.fixture(autouse=True)
def clean_flag():
    preemption.clear()
    yield
    preemption.clear()
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_completed_run_holds_every_result_and_a_rerun_is_a_no_op(stream_overrides, tmp_path):
    folder = stream_job.run(cfg_for(stream_overrides, "method=replay"))
    for name in (layout.IDENTITY, layout.CONFIG, artifacts.STREAM, layout.SUMMARY, artifacts.PREDICTIONS,
                 artifacts.FORGETTING, artifacts.FINAL_MODEL, layout.STATUS):
        assert (folder / name).exists(), name
    assert json.loads((folder / layout.STATUS).read_text())["state"] == "completed"
    summary = json.loads((folder / layout.SUMMARY).read_text())
    predictions = pd.read_parquet(folder / artifacts.PREDICTIONS)
    assert summary["online/action/n_samples"] == len(predictions) == 24
    assert predictions["index"].tolist() == list(range(24))
    assert {"hindsight/action/balanced_top1", "online/verb/top5"} <= set(summary)
    assert (folder / "transfer" / f"{USER}.json").exists()
    identity = json.loads((folder / layout.IDENTITY).read_text())
    assert identity["unit"] == USER and identity["submitted"] == "20260101T000000Z"
    assert identity["family"] == "continual" and identity["labels"]["variant"] == "replay"
    assert set(identity["inputs"]) == {"stream", "pretrained"}
    assert identity["inputs"]["stream"] == json.loads((folder / artifacts.STREAM).read_text())["sha256"]
    # the W&B mirror: an offline run folder whose id is the run identity
    assert list((tmp_path / "wandb").rglob(f"run-{identity['run_id']}.wandb"))
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert stream_job.run(cfg_for(stream_overrides, "method=replay")) == folder
    assert before == {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_a_crashed_run_never_looks_complete_and_a_rerun_completes_it(stream_overrides, tmp_path):
    crash = cfg_for(stream_overrides, "method=finetune",
                    "method._target_=test_engine_stream_job.CrashAt", "+method.at=2")
    with pytest.raises(RuntimeError, match="simulated crash"):
        stream_job.run(crash)
    folder = next((tmp_path / "results").rglob(layout.STATUS)).parent
    assert json.loads((folder / layout.STATUS).read_text())["state"] == "failed"
    assert not (folder / layout.SUMMARY).exists()
    assert list(iter_runs(tmp_path / "results")) == []
    assert stream_job.run(cfg_for(stream_overrides, "method=finetune")) == folder
    assert [r.folder for r in iter_runs(tmp_path / "results")] == [folder]


def test_preemption_signal_checkpoints_and_the_resumed_run_equals_an_uninterrupted_one(stream_overrides):
    whole = stream_job.run(cfg_for(stream_overrides, "method=replay", "submitted=20260101T000001Z"))
    signalled = cfg_for(stream_overrides, "method=replay", "method._target_=test_engine_stream_job.SignalAfter",
                        "checkpoint_every=0")
    with pytest.raises(preemption.Preempted):
        stream_job.run(signalled)
    preemption.clear()
    folder = stream_job.run(cfg_for(stream_overrides, "method=replay", "checkpoint_every=0"))
    assert folder != whole
    pd.testing.assert_frame_equal(pd.read_parquet(folder / artifacts.PREDICTIONS),
                                  pd.read_parquet(whole / artifacts.PREDICTIONS))
    assert json.loads((folder / layout.SUMMARY).read_text()) == json.loads((whole / layout.SUMMARY).read_text())


def test_transfer_job_fills_the_matrix_and_skips_pairs_already_done(stream_overrides, tmp_path):
    for user in ("68", "265"):
        stream_job.run(compose("stream", [*stream_overrides, f"user={user}", "experiment=egotoy_main",
                                          "data.max_clips=12", "method=finetune", "method.head_only=true",
                                          "wandb.mode=disabled", "submitted=20260101T000000Z"]))
    cfg = compose("transfer", [f"paths.root={tmp_path}", "experiment=egotoy_main", "mode=all"])
    assert transfer_job.run(cfg) == 2            # the diagonal was written by the stream jobs
    assert transfer_job.run(cfg) == 0
    one_by_one = {}
    for run in iter_runs(tmp_path / "results"):
        assert sorted(p.stem for p in (run.folder / "transfer").glob("*.json")) == ["265", "68"]
        for p in (run.folder / "transfer").glob("*.json"):
            one_by_one[p] = json.loads(p.read_text())["metrics"]
            p.unlink()
    # all backbones in one vmapped call per batch: the same numbers
    batched = compose("transfer", [f"paths.root={tmp_path}", "experiment=egotoy_main", "mode=all",
                                   "batch_models=true"])
    assert transfer_job.run(batched) == 4
    for p, expected in one_by_one.items():
        got = json.loads(p.read_text())["metrics"]
        assert got.keys() == expected.keys()
        assert all(got[k] == pytest.approx(v, abs=1e-5) for k, v in expected.items()), p


def test_transfer_uses_the_latest_submission_of_each_user_and_seed(stream_overrides, tmp_path):
    """An older run of the same grid point (here: a shorter stream, as after regenerating the data)
    is superseded, as in aggregation: transfer neither evaluates nor checks it."""
    def stream(user, clips, submitted):
        return stream_job.run(compose("stream", [*stream_overrides, f"user={user}", "experiment=egotoy_main",
                                                 f"data.max_clips={clips}", "method=finetune",
                                                 "method.head_only=true", "wandb.mode=disabled",
                                                 f"submitted={submitted}"]))
    old = stream("265", 8, "20250101T000000Z")
    new = [stream(user, 12, "20260101T000000Z") for user in ("68", "265")]
    cfg = compose("transfer", [f"paths.root={tmp_path}", "experiment=egotoy_main", "mode=all"])
    assert transfer_job.run(cfg) == 2            # 68 -> 265 and 265 -> 68; the diagonals came with the streams
    assert sorted(p.stem for p in (old / "transfer").glob("*.json")) == ["265"]     # its own diagonal only
    for folder in new:
        assert sorted(p.stem for p in (folder / "transfer").glob("*.json")) == ["265", "68"]


def test_two_processes_on_the_same_run_never_both_write(stream_overrides, tmp_path):
    """A second process started on a run that another one is writing (a requeue racing its dying
    predecessor, a hand rerun beside the array) stops naming the holder, or waits for it."""
    import subprocess
    import sys
    import time

    gate = tmp_path / "gate"
    argv = [sys.executable, str(REPO / "jobs" / "stream.py"), *stream_overrides, f"user={USER}",
            "experiment=egotoy_main", "data.max_clips=24", "method=finetune", "submitted=20260101T000000Z",
            "method._target_=test_engine_stream_job.WaitForGate", f"+method.gate={gate}", "wandb.mode=disabled",
            "hydra.job.config.override_dirname.exclude_keys=[data.max_clips]"]
    env = os.environ | {"PYTHONPATH": str(REPO / "tests")}
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "results").rglob(layout.LEASE)):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
        time.sleep(0.05)
    refused = subprocess.run([*argv, "lease_wait_s=0"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0, refused.stdout + refused.stderr[-3000:]
    assert "is in use by host" in refused.stderr and f"pid {first.pid}" in refused.stderr
    waiter = subprocess.Popen([*argv, "lease_wait_s=300"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env)
    gate.touch()
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    waited, _ = waiter.communicate(timeout=300)
    assert waiter.returncode == 0 and "already completed, nothing to do" in waited, waited
    (folder,) = [r.folder for r in iter_runs(tmp_path / "results")]
    assert len(pd.read_parquet(folder / artifacts.PREDICTIONS)) == 24
    assert not (folder / layout.LEASE).exists()
