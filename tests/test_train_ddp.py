"""actlab.train.loop.fit under DDP: 2 CPU processes (gloo) against 1 process, and resume.

The model has no dropout or batch statistics and the loss no random draws, so one process and two
compute the same gradients of the same global batches (up to float summation order); the
interrupted two-process run must resume to exactly the uninterrupted two-process result.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from actlab.train.loop import LoopConfig, fit

N, BS, EPOCHS = 22, 5, 2     # global batches of 5 (shards of 2 and 3: the loss weights matter) and a last of 2


class Synthetic(Dataset):
    def __init__(self, n: int = N) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x[:, 0] > 0).long() + (self.x[:, 1] > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


def loss_fn(module, batch, generator):  # noqa: ARG001 - LossFn signature
    logits = module(batch["x"])
    return F.cross_entropy(logits, batch["y"]), {"acc": (logits.argmax(1) == batch["y"]).float().mean()}


def train(state_dir: str | None, stop_at: int | None, n: int = N) -> tuple[dict, list, bool]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        # rank 0 alone is signalled: the ranks must agree to stop at the same step
        return calls == stop_at and (not dist.is_initialized() or dist.get_rank() == 0)

    result = fit(model, Synthetic(n), config=LoopConfig(epochs=EPOCHS, batch_size=BS, seed=5, device="cpu"),
                 make_optimizer=lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9),
                 make_scheduler=lambda opt, per_epoch, total: torch.optim.lr_scheduler.LambdaLR(
                     opt, lambda s: 1 - s / total),
                 loss_fn=loss_fn, state_dir=state_dir, should_stop=should_stop)
    return model.state_dict(), result.history, result.interrupted


def _worker(rank: int, world: int, init: str, out: str) -> None:
    """Every two-process scenario in one spawn (starting processes is the expensive part): an
    uninterrupted run, a run stopped on rank 0's signal, its resumption (a fresh model and
    optimizer, as after a requeue), and a data set whose last batch cannot feed both ranks."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        state_dir = str(Path(out) / "ckpt")
        results = {"whole": train(None, None), "stopped": train(state_dir, 4)}
        results["state_file"] = (Path(state_dir) / "state.pt").exists()
        results["resumed"] = train(state_dir, None)
        try:
            train(None, None, n=21)
            results["refused"] = None
        except ValueError as e:
            results["refused"] = str(e)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_equal_one_and_resume_after_a_checkpoint(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_state, one_history, _ = train(None, None)
    finally:
        torch.set_num_threads(threads)
    init = f"file://{tempfile.mkdtemp(dir=tmp_path)}/rendezvous"
    mp.spawn(_worker, args=(2, init, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # same final weights and metrics as one process on the same global batches
    for rank in ranks:
        state, history, interrupted = rank["whole"]
        assert not interrupted and len(history) == EPOCHS
        for key, value in one_state.items():
            torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(ranks[0]["whole"][1], one_history):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key
    # rank 0 alone was signalled, both stopped at the same step; rank 0 wrote the checkpoint
    assert all(rank["stopped"][2] for rank in ranks) and ranks[0]["state_file"]
    assert len(torch.load(tmp_path / "ckpt" / "state.pt", weights_only=False)["ranks"]) == 2
    for rank in ranks:
        state, history, interrupted = rank["resumed"]
        assert not interrupted and history == ranks[0]["whole"][1]
        for key, value in ranks[0]["whole"][0].items():
            assert torch.equal(state[key], value), key
    # 21 samples: the last global batch holds 1 sample, and a rank without a sample cannot step
    assert all("every rank needs a sample of every batch" in rank["refused"] for rank in ranks)
