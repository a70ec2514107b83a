"""Device placement, precision and CPU sizing (issue 11): actlab.device and the jobs that use it.

On a CPU-only machine `device=auto` must give exactly what `device=cpu` gives; with CUDA made to
look available, every model and every batch tensor the loops hand to a forward must have been
moved to the GPU (no CPU tensor would meet a CUDA tensor). The real CUDA run is a device check
(docs/gpu.md); the moves themselves are what these tests pin.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from actlab import device as compute
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.engine.transfer import StreamEvaluator
from actlab.families.continual.engine.batched_eval import MultiModelEvaluator
from actlab.families.continual.methods.finetune import Finetune
from actlab.families.continual.methods.replay import Replay
from actlab.families.continual.metrics.forgetting import ReexposureForgetting
from actlab.families.continual.metrics.online import OnlineMetrics
from actlab.families.continual.models.video import VideoClassifier
from actlab.train.loop import LoopConfig, fit, rank_batches

NV, NN = 5, 7
CUDA = torch.device("cuda", 0)


# -- actlab.device units ----------------------------------------------------------------------
def test_resolve_device_on_a_cpu_only_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compute.resolve_device("auto") == torch.device("cpu")
    assert compute.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no GPU is visible"):
        compute.resolve_device("cuda:1")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        compute.resolve_device("tpu")


def test_resolve_device_picks_the_local_rank_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compute.resolve_device("auto", local_rank=3) == torch.device("cuda", 3)
    assert compute.resolve_device("cuda:2", local_rank=3) == torch.device("cuda", 2)


@pytest.mark.parametrize("env, device, workers, expected", [
    ({"SLURM_CPUS_PER_TASK": "8"}, "cuda", "auto", (1, 7)),          # GPU: decode with all but one core
    ({"SLURM_CPUS_PER_TASK": "8"}, "cpu", "auto", (8, 0)),           # CPU: compute with all of them
    ({"SLURM_CPUS_PER_TASK": "8", "ACTLAB_CPUS_PER_STREAM": "2"}, "cuda", "auto", (1, 1)),  # 4 streams share 8
    ({"SLURM_CPUS_PER_TASK": "4"}, "cpu", 3, (1, 3)),               # explicit workers leave 1 thread
    ({}, "cpu", "auto", (1, 0)),                                    # no allocation: one core
])
def test_threads_and_workers_come_from_the_allocation(monkeypatch, env, device, workers, expected):
    for key in ("SLURM_CPUS_PER_TASK", "ACTLAB_CPUS_PER_STREAM"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plan = compute.cpu_plan(torch.device(device), None, workers)
    assert (plan.threads, plan.workers) == expected


def test_loader_options_pin_and_prefetch_only_where_they_mean_something():
    assert compute.loader_options(CUDA, 3, 4) == {"num_workers": 3, "pin_memory": True, "prefetch_factor": 4}
    assert compute.loader_options(torch.device("cpu"), 0, 4) == {"num_workers": 0, "pin_memory": False}


def test_ranks_come_from_torchrun_or_srun():
    assert compute.ranks_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == compute.Ranks(3, 4, 1)
    srun = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0"}
    assert compute.ranks_from_env(srun) == compute.Ranks(5, 8, 1)
    # an sbatch script's environment (no step) is one process, whatever SLURM_NTASKS says
    assert compute.ranks_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) == compute.Ranks()


def test_rank_batches_cut_each_global_batch_into_contiguous_shards():
    tail = list(range(10, 20))                       # 10 samples, batch 4: [4, 4, 2]
    assert rank_batches(tail, 4) == [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19]]
    assert rank_batches(tail, 4, 0, 2) == [[10, 11], [14, 15], [18]]
    assert rank_batches(tail, 4, 1, 2) == [[12, 13], [16, 17], [19]]
    assert rank_batches(tail, 4, 1, 3, drop_last=True) == [[11], [15]]


def test_determinism_switch(caplog):
    try:
        compute.set_determinism(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        import os
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (compute.CUBLAS_WORKSPACE, ":16:8")
        with caplog.at_level("WARNING"):
            compute.set_determinism(False)
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        assert "only statistically reproducible" in caplog.text
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False


# -- fake CUDA: record where tensors were sent ------------------------------------------------
@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA 'available'; `.to(cuda)` of a tensor returns a view tagged `placed`, Module.to tags every
    parameter (nothing is really copied), pinning is a no-op. The forwards below assert the tags."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "fake")
    real_tensor_to, real_module_to = torch.Tensor.to, nn.Module.to

    def is_cuda(args, kwargs) -> bool:
        targets = [*args, kwargs.get("device")]
        return any(isinstance(t, (str, torch.device)) and torch.device(t).type == "cuda" for t in targets)

    def tensor_to(self, *args, **kwargs):
        if not is_cuda(args, kwargs):
            return real_tensor_to(self, *args, **kwargs)
        view = self.view_as(self)
        view.placed = "cuda"
        return view

    def module_to(self, *args, **kwargs):
        if not is_cuda(args, kwargs):
            return real_module_to(self, *args, **kwargs)
        for t in (*self.parameters(), *self.buffers()):
            t.placed = "cuda"
        return self

    monkeypatch.setattr(torch.Tensor, "to", tensor_to)
    monkeypatch.setattr(nn.Module, "to", module_to)
    monkeypatch.setattr(compute, "loader_options",
                        lambda device, workers, prefetch=None: {"num_workers": workers, "pin_memory": False})
    checked = {"batches": 0}

    def check(model: nn.Module, tensors) -> None:
        for name, p in model.named_parameters():
            assert getattr(p, "placed", None) == "cuda", f"parameter {name} stayed on the CPU"
        for t in tensors:
            if isinstance(t, torch.Tensor):
                assert getattr(t, "placed", None) == "cuda", f"a batch tensor of shape {tuple(t.shape)} was not moved"
        checked["batches"] += 1
    return check, checked


class Synthetic(Dataset):
    def __init__(self, n: int = 10) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))


def fit_once(device: str, loss_fn=None):
    model = mlp()

    def default_loss(module, batch, generator):
        logits = module(batch["x"])
        return F.cross_entropy(logits, batch["y"]), {"acc": (logits.argmax(1) == batch["y"]).float().mean()}

    result = fit(model, Synthetic(), config=LoopConfig(epochs=2, batch_size=4, device=device),
                 make_optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                 loss_fn=loss_fn or default_loss, should_stop=lambda: False)
    return model, result


def test_fit_with_device_auto_equals_device_cpu_on_a_cpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu_model, cpu = fit_once("cpu")
    auto_model, auto = fit_once("auto")
    assert cpu.history == auto.history and cpu.steps_done == 6
    for a, b in zip(cpu_model.state_dict().values(), auto_model.state_dict().values()):
        assert torch.equal(a, b)


def test_fit_moves_the_model_and_every_batch_tensor(fake_cuda):
    check, checked = fake_cuda

    def loss_fn(module, batch, generator):
        check(module, batch.values())
        logits = module(batch["x"])
        return F.cross_entropy(logits, batch["y"]), {}

    fit_once("auto", loss_fn)
    assert checked["batches"] == 2 * math.ceil(10 / 4)


# -- the continual loop and evaluators --------------------------------------------------------
class Clips(Dataset):
    def __init__(self, n: int = 14) -> None:
        g = torch.Generator().manual_seed(0)
        self.video = torch.randn(n, 3, 4, 8, 8, generator=g)
        self.verb = torch.randint(0, NV, (n,), generator=g)
        self.noun = torch.randint(0, NN, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "verb": int(self.verb[i]), "noun": int(self.noun[i]), "index": i}


def tiny_model() -> VideoClassifier:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
                             nn.AdaptiveAvgPool3d(1), nn.Flatten())
    return VideoClassifier(backbone, 8, NV, NN, dropout=0.5)


def sgd(params, **kw):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, **kw)


def stream(device=None, precision="fp32", checkpoint_dir=None, stop_at=None, method=None):
    model = tiny_model()
    result = run_stream(model, method or Replay(optimizer=sgd, memory_size=4), Clips(), metrics=OnlineMetrics(NV, NN),
                        seed=1, batch_size=4, past_eval_every=1, tracker=ReexposureForgetting(window=6),
                        checkpoint_dir=checkpoint_dir, device=device, precision=precision,
                        should_stop=(lambda n: n == stop_at) if stop_at else (lambda n: False))
    return model, result


def test_stream_loop_with_device_auto_equals_device_cpu_on_a_cpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _, cpu = stream("cpu")
    _, auto = stream("auto")
    assert cpu.records.equals(auto.records) and cpu.summary == auto.summary
    assert cpu.forgetting.equals(auto.forgetting)


class CheckedReplay(Replay):
    """Replay whose every forward asserts that its model and inputs were moved."""

    def __init__(self, check, **kw) -> None:
        super().__init__(**kw)
        self.check = check

    def train_forward(self, model, batch, fetch):
        self.check(model, batch.values())

        def checked_fetch(indices):
            past = fetch(indices)
            self.check(model, past.values())
            return past
        return super().train_forward(model, batch, checked_fetch)


def test_stream_loop_moves_the_model_every_batch_and_every_fetched_batch(fake_cuda):
    check, checked = fake_cuda
    stream("cuda", method=CheckedReplay(check, optimizer=sgd, memory_size=4))
    # 4 stream batches, and a memory batch for each but the first (the memory is empty then)
    assert checked["batches"] == 4 + 3


def test_transfer_evaluators_move_models_and_clips(fake_cuda):
    check, checked = fake_cuda
    model = tiny_model()
    model.backbone.register_forward_pre_hook(lambda module, args: check(model, args))
    StreamEvaluator(4, 0, cache_features=False, device=CUDA).evaluate(model, "s", Clips())
    assert checked["batches"] == math.ceil(14 / 4)


def test_transfer_evaluators_with_device_auto_equal_device_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = {}
    for device in ("cpu", "auto"):
        placed = compute.resolve_device(device)
        models = [tiny_model(), tiny_model()]
        out[device] = (StreamEvaluator(4, 0, device=placed).evaluate(models[0], "s", Clips()),
                       MultiModelEvaluator(4, 0, device=placed).evaluate(models, Clips()))
    assert out["cpu"] == out["auto"]


# -- precision ---------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_stream_loop_in_reduced_precision_resumes_to_the_uninterrupted_result(tmp_path, precision):
    _, whole = stream("cpu", precision)
    _, stopped = stream("cpu", precision, checkpoint_dir=tmp_path, stop_at=2)
    assert stopped.interrupted
    state = torch.load(tmp_path / "state.pt", weights_only=False)
    # fp16's loss scale is part of the checkpoint (bf16 needs no scaler: an empty state)
    assert (state["scaler"].get("scale") is not None) == (precision == "fp16")
    model, resumed = stream("cpu", precision, checkpoint_dir=tmp_path)
    assert not resumed.interrupted
    assert resumed.records.equals(whole.records) and resumed.summary == whole.summary
    assert resumed.forgetting.equals(whole.forgetting)
    _, fp32 = stream("cpu", "fp32")
    # bf16 autocast really ran: the predictions' losses differ from fp32's, not the protocol
    assert not resumed.records["loss_verb"].equals(fp32.records["loss_verb"])
    assert resumed.records["index"].tolist() == fp32.records["index"].tolist()


# -- the jobs end to end -----------------------------------------------------------------------
@pytest.mark.slow
def test_stream_and_transfer_jobs_with_device_auto_equal_device_cpu(stream_overrides, tmp_path, monkeypatch):
    """Two users' stream jobs and the transfer matrix, once with device=cpu and once with
    device=auto (CUDA hidden): the same predictions, summaries and transfer entries."""
    import json

    import pandas as pd
    from conftest import compose

    from actlab.families.continual import artifacts
    from actlab.families.continual.engine import stream_job, transfer_job
    from actlab.results import layout
    from actlab.results.store import iter_runs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = {}
    for device in ("cpu", "auto"):
        root = tmp_path / device
        overrides = [o if not o.startswith("paths.root=") else f"paths.root={root}" for o in stream_overrides]
        for user in ("68", "265"):
            stream_job.run(compose("stream", [*overrides, f"user={user}", "experiment=egotoy_main",
                                              "data.max_clips=8", "method=finetune", f"device={device}",
                                              "wandb.mode=disabled", "submitted=20260101T000000Z"]))
        assert transfer_job.run(compose("transfer", [f"paths.root={root}", "experiment=egotoy_main", "mode=all",
                                                     f"device={device}"])) == 2
        out[device] = {r.identity.unit: (pd.read_parquet(r.folder / artifacts.PREDICTIONS),
                                         json.loads((r.folder / layout.SUMMARY).read_text()),
                                         {p.stem: json.loads(p.read_text())["metrics"]
                                          for p in (r.folder / "transfer").glob("*.json")})
                       for r in iter_runs(root / "results")}
    assert sorted(out["cpu"]) == sorted(out["auto"]) == ["265", "68"]
    for user, (predictions, summary, transfer) in out["cpu"].items():
        auto_predictions, auto_summary, auto_transfer = out["auto"][user]
        pd.testing.assert_frame_equal(predictions, auto_predictions)
        assert summary == auto_summary and transfer == auto_transfer and len(transfer) == 2
