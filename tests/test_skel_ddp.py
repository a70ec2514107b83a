"""The skel family data-parallel (docs/skel.md, "Several ranks"): `TrainStep` is `step_loss` as a
module; every trainable parameter takes part in every step (also a one-class batch that skips
ITM, and PACL), so DDP without find_unused_parameters runs 2 gloo ranks whose shards differ in
that way; and (slow) an ntutoy run as 2 torchrun ranks through the local executor."""
from __future__ import annotations

import copy
import json
import pickle
import re

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import REPO
from test_skel_queue import _free_port

from actlab.families.skel.model import CEModel, ModelConfig, SkelTextModel
from actlab.families.skel.text import TextTower
from actlab.families.skel.train import TrainStep, step_loss

NAMES = ["drinking water", "eat meal/snack", "brushing teeth", "kicking"]
X = (17, 4, 16, 16)      # heatmap channels, T, H, W of the tiny model


def _model(loss: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(loss=loss, base=4, blocks=(1, 1, 1), hidden=16, embed=8, queue_size=8, fusion_layers=1)
    if loss == "ce":
        return CEModel(cfg, len(NAMES))
    model = SkelTextModel(cfg, TextTower(width=32, layers=1, heads=2, context_length=16, embed_dim=32), NAMES)
    if loss == "itc_mom":
        model.video_m.load_state_dict(model.video.state_dict())
        model.text_m.load_state_dict(model.text.state_dict())
    return model


def _batch(labels: list[int], seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"heatmap": torch.rand(len(labels), *X, generator=g), "label": torch.tensor(labels)}


@pytest.mark.parametrize("loss", ["ce", "itc", "itc_itm", "itc_mom", "pacl"])
def test_train_step_is_step_loss(loss):
    a = _model(loss).train()
    b = copy.deepcopy(a)
    batch = _batch([0, 1, 2, 1])
    torch.manual_seed(5)
    want, want_metrics = step_loss(a, batch, torch.Generator().manual_seed(3), 4, 0.4)
    torch.manual_seed(5)
    step = TrainStep(b, 4, 0.4)
    got, got_metrics = step(batch, torch.Generator().manual_seed(3))
    assert torch.equal(got, want) and got_metrics == want_metrics
    assert (step.steps, step.samples) == (1, 4) and int(b.step) == int(a.step) == 1
    assert set(step.state_dict()) == {f"model.{k}" for k in b.state_dict()}   # the loop's checkpoint keys


@pytest.mark.parametrize("loss,labels", [("itc_itm", [2, 2, 2]), ("itc_itm", [0, 1, 2]), ("pacl", [0, 1, 2]),
                                         ("itc", [1, 1, 1]), ("itc_mom", [0, 3, 3, 1]), ("ce", [0, 1, 1])])
def test_every_trainable_parameter_is_in_every_steps_graph(loss, labels):
    """What DDP needs: a gradient (zeros allowed) for every trainable parameter, whatever the batch."""
    model = _model(loss).train()
    step = TrainStep(model, 4, 0.4)
    loss_value, metrics = step(_batch(labels), torch.Generator().manual_seed(0))
    loss_value.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    if loss == "itc_itm" and len(set(labels)) == 1:      # the skip: L_itm = 0, counted, head in the graph
        assert metrics["itm_loss"] == 0.0 and metrics["itm_skipped"] == 1.0 and int(model.itm_skips) == 1
        assert all(p.grad is not None and not p.grad.any() for p in model.itm.parameters())
    if loss == "pacl":                                  # v is unused by PACL: its projection gets zeros
        assert not model.video.proj.weight.grad.any()


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """Two DDP steps; rank 0's shards hold one class (ITM skipped), rank 1's two."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = _model("itc_itm").train()
        ddp = torch.nn.parallel.DistributedDataParallel(TrainStep(model, 4, 0.4))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(2):      # a parameter without gradient in step 1 fails DDP at step 2
            opt.zero_grad()
            loss, metrics = ddp(_batch([1, 1] if rank == 0 else [0, 2], seed=10 * i + rank),
                                torch.Generator().manual_seed(i))
            loss.backward()
            opt.step()
        torch.save({"skips": int(model.itm_skips), "params": dict(model.named_parameters())}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_train_itm_when_one_shard_has_one_class(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    # DDP's averaged gradients: both ranks end with the same parameters, the ITM head's included
    assert r0["params"].keys() == r1["params"].keys() and any(k.startswith("itm.") for k in r0["params"])
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    # the step's buffers are rank 0's (DDP broadcasts them before each forward): rank 0 skipped twice
    assert r0["skips"] == 2


# -- slow: 2 torchrun ranks through the launcher -------------------------------------------------

@pytest.mark.slow
def test_two_torchrun_ranks_train_one_ntutoy_run_in_the_local_executor(tmp_path):
    """An ITC+momentum ntutoy run (the queue enqueues the gathered global batch) as 2 torchrun
    ranks of one local task: completed, one run folder, each rank trained on half of every global
    batch (the ranks' own lines in the task's log), and the queue advanced by the global batch."""
    from ddp_grid import run_two_ranks

    toy = (REPO / "configs/skel/experiment/ntutoy_main.yaml").read_text()
    one = (toy.replace("experiment: ntutoy_main\n", "").replace("seeds: [0, 1, 2]", "seeds: [0]")
           .replace("loss: [itc_itm, itc_mom, pacl, itc, ce]", "loss: [itc_mom]"))
    assert "seeds: [0]\n" in one and "loss: [itc_mom]" in one     # one run, not the whole experiment
    out = run_two_ranks(tmp_path, "skel", "skel_ddp", one, ["epochs=1", "wandb.mode=disabled"], timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (summary,) = list((tmp_path / "results").rglob("summary.json"))
    assert json.loads(summary.read_text())["val/top1"] >= 0
    assert json.loads((summary.parent / "identity.json").read_text())["labels"]["variant"] == "itc_mom"
    logs = "".join(p.read_text() for p in (tmp_path / "sweeps").rglob("*.out"))
    trained = {int(r): (int(w), int(s), int(n)) for r, w, s, n in
               re.findall(r"skel: rank (\d) of (\d) trained (\d+) steps on (\d+) samples", logs)}
    train_clips = len(pickle.loads(next(tmp_path.rglob("ntutoy_hrnet.pkl")).read_bytes())["split"]["xsub_train"])
    steps = train_clips // 16     # 1 epoch of global batches of 16 (the last partial one dropped)
    assert trained == {0: (2, steps, 8 * steps), 1: (2, steps, 8 * steps)}, logs[-3000:]
    # every step enqueued the 16 momentum features gathered from both ranks (8 would leave it at 8 * steps)
    state = torch.load(summary.parent / "model.pt", weights_only=True)
    k = state["queue.labels"].numel()
    assert 16 * steps % k != 8 * steps % k and int(state["queue.pointer"]) == 16 * steps % k
