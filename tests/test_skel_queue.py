"""The momentum queue enqueues the batch gathered across ranks (2 CPU processes on gloo) and is
unchanged by the gather in a single process."""
from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from actlab.families.skel.queue import MomentumQueue, gather_across_ranks

K, DIM, B, STEPS = 8, 3, 2, 3      # 3 global batches of 4 into K = 8: the pointer wraps


def _batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features that name their rank and step, so the queue's rows show where they came from."""
    base = 100 * rank + 10 * step
    v = torch.arange(base, base + B * DIM, dtype=torch.float32).view(B, DIM)
    return v, -v, torch.full((B,), rank * 10 + step)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        queue = MomentumQueue(K, DIM, seed=0)
        for step in range(STEPS):
            queue.enqueue(*gather_across_ranks(*_batch(rank, step)))
        torch.save(queue.state_dict(), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_enqueue_the_same_global_batch_in_rank_order(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)            # every rank holds the same queue
    # expected: step s writes [rank 0's B rows; rank 1's B rows] at (4 s) mod 8
    expected = MomentumQueue(K, DIM, seed=0)
    for step in range(STEPS):
        parts = [_batch(rank, step) for rank in range(2)]
        expected.enqueue(*(torch.cat([p[i] for p in parts]) for i in range(3)))
    assert all(torch.equal(r0[k], v) for k, v in expected.state_dict().items())
    assert r0["labels"].tolist() == [2, 2, 12, 12, 1, 1, 11, 11] and int(r0["pointer"]) == 4
    assert torch.equal(r0["video"][2:4], _batch(1, 2)[0]) and torch.equal(r0["text"][:2], -_batch(0, 2)[0])


def test_without_a_process_group_the_gather_is_the_identity():
    assert not dist.is_initialized()
    v, t, y = _batch(0, 0)
    v.requires_grad_(True)
    gv, gt, gy = gather_across_ranks(v, t, y)
    assert torch.equal(gv, v) and torch.equal(gt, t) and torch.equal(gy, y) and not gv.requires_grad
