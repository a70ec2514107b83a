"""The hand job as 2 data-parallel ranks (docs/hand.md, "Several ranks"): a tiny handtoy through the
launcher with `resources.tasks_per_node=2`, torchrun in the local executor, gloo on the CPU; one
FiLM pose run (condition dropout, early stopping) and one action run: the family's two trainings.

The hand networks are built in code (no `_target_` to swap for a marked one), so the signal that
both ranks trained is rank 0's last checkpoint, which the run folder keeps: written for a world of
2 (every step's gradient all-reduce needs the other rank's same step), with rank 1's own loss
generator, which the pose run's condition dropout draws from at every step of rank 1 only."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ddp_grid import run_two_ranks, summaries

from actlab import resumable

TINY = ("crop: {size: 32}\nhpe: {widths: [8, 16, 16, 16], blocks: 1, stem: 4, fc: 32, epochs: 3, batch_size: 16,"
        " patience: 1}\nhar: {epochs: 3, hidden: 16}\n")


@pytest.mark.slow
def test_two_torchrun_ranks_train_hand_pose_and_action_runs(tmp_path):
    out = run_two_ranks(tmp_path, "hand", "handtoy_ddp",
                        "seeds: [0]\nprotocols: [fpha_1to1]\neval: false\n"
                        "grid:\n  - {task: [hpe], film.enabled: [true], film.cond_dropout: [0.5]}\n"
                        "  - {task: [har], har.input: [pca]}\n"
                        "data: {root: '${paths.root}/data/handtoy', generate: true, actions: 2, workers: 1}\n" + TINY,
                        [])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert len(summaries(tmp_path)) == 2, out.stdout[-3000:]
    fresh = torch.Generator().manual_seed(0).get_state()
    for run in (s.parent for s in summaries(tmp_path)):
        state = resumable.load(run / "checkpoint")
        assert state["plan"]["world_size"] == 2 and len(state["ranks"]) == 2 and state["progress"]["steps"] > 0
        summary = json.loads((run / "summary.json").read_text())
        if "hpe/mean_mm" in summary:          # the pose run: rank 1 drew its condition dropout
            assert not torch.equal(state["ranks"][1]["generator"], fresh)
    kinds = {"hpe" if "hpe/mean_mm" in json.loads(s.read_text()) else "har" for s in summaries(tmp_path)}
    assert kinds == {"hpe", "har"}


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


def _train(state_dir: Path, lead: bool, signal_at: int | None) -> dict:
    """hand's `_fit` on a toy model: a validation metric that never improves (patience 1), and a
    preemption signal to this process at its `signal_at`-th step."""
    import os
    import signal

    import torch.nn.functional as F

    from actlab.families.hand.train import _fit

    torch.manual_seed(0)
    calls = 0

    def loss_fn(module, batch, generator):
        nonlocal calls
        calls += 1
        if calls == signal_at:
            os.kill(os.getpid(), signal.SIGUSR2)
        return F.cross_entropy(module(batch["x"]), batch["y"]), {}

    trained = _fit(torch.nn.Linear(4, 2), _Pairs(), epochs=4, batch_size=4, seed=0, lr=0.1, amsgrad=False,
                   loss_fn=loss_fn, validate=lambda m: {"val/top1": 0.5}, metric="val/top1", higher=True,
                   patience=1, state_dir=state_dir, on_epoch=None, options={"device": "cpu"}, lead=lead)
    return {"interrupted": trained.interrupted, "epochs": len(trained.history), "best": trained.best_epoch}


def _worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from actlab import preemption

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        preemption.install_handlers()
        results = {"patience": _train(Path(out) / "a", rank == 0, None),
                   "signal": _train(Path(out) / "b", rank == 0, 3 if rank == 1 else None)}
        preemption.clear()
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_agree_on_a_patience_stop_and_on_a_signal_to_one_rank(tmp_path):
    """Selection (rank 0's) stops both ranks after the same epoch, and neither takes it for a
    preemption; a signal that reaches rank 1 alone makes both ranks report a preemption (rank 0
    must not finish a run whose stop was a requeue)."""
    import tempfile

    import torch.multiprocessing as mp

    init = f"file://{tempfile.mkdtemp(dir=tmp_path)}/rendezvous"
    mp.spawn(_worker, args=(2, init, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["patience"] for r in ranks] == [{"interrupted": False, "epochs": 2, "best": 1},
                                             {"interrupted": False, "epochs": 2, "best": 0}]
    assert [r["signal"] for r in ranks] == [{"interrupted": True, "epochs": 0, "best": 0}] * 2
    assert (tmp_path / "a" / "best.json").is_file() and (tmp_path / "b" / "state.pt").is_file()
