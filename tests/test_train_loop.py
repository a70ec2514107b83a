"""The generic supervised loop: resume equivalence, crash recovery, time budget, data order, bad input.

A tiny MLP with dropout on synthetic tensors, a random augmentation drawn from the loop's generator,
SGD with momentum and a cosine LambdaLR: every source of state a resume must restore. Expected
values come from an uninterrupted run or from the definitions, never from recorded output.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from actlab import resumable
from actlab.train.loop import FitResult, LoopConfig, epoch_order, fit, is_main_process

N, BS, EPOCHS = 22, 4, 3            # 6 steps per epoch, the last batch of each epoch holds 2 samples
STEPS_PER_EPOCH = math.ceil(N / BS)
TOTAL = EPOCHS * STEPS_PER_EPOCH
LR = 0.1


class Synthetic(Dataset):
    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, 0] > 0).long() + (self.x[:, 1] > 0).long()   # 3 classes

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "index": i}


VAL = Synthetic(16, seed=99)


class Crash(Exception):
    pass


class Task:
    """loss_fn that logs what it saw (sample indices, batch losses, logits dtype) and can crash."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.crash_at, self.calls = crash_at, 0
        self.indices: list[int] = []
        self.losses: list[tuple[float, int]] = []
        self.dtypes: set[torch.dtype] = set()

    def __call__(self, model, batch, generator):
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash
        x = batch["x"] + 0.1 * torch.randn(batch["x"].shape, generator=generator)
        logits = model(x)
        self.dtypes.add(logits.dtype)
        loss = F.cross_entropy(logits.float(), batch["y"])
        self.indices += batch["index"].tolist()
        self.losses.append((loss.item(), len(batch["y"])))
        return loss, {"acc": (logits.argmax(1) == batch["y"]).float().mean().item()}


class Evaluate:
    def __init__(self) -> None:
        self.calls = 0

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        assert not model.training
        self.calls += 1
        logits = model(VAL.x)
        return {"val/loss": F.cross_entropy(logits, VAL.y).item(),
                "val/acc": (logits.argmax(1) == VAL.y).float().mean().item()}


def cosine(optimizer, steps_per_epoch, total_steps):  # noqa: ARG001 - make_scheduler signature
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))


def make_model() -> nn.Module:
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def run(state_dir=None, *, task=None, evaluate=None, data=None, caller_seed=None,
        **overrides) -> tuple[nn.Module, FitResult]:
    """One fit in a 'fresh process': a new model, optimizer and scheduler.

    `caller_seed`: the global RNG state the caller leaves behind (the model's init seeds it too).
    """
    model = make_model()
    if caller_seed is not None:
        torch.manual_seed(caller_seed)
    config = LoopConfig(**({"epochs": EPOCHS, "batch_size": BS} | overrides.pop("config", {})))
    result = fit(model, Synthetic(N) if data is None else data, config=config,
                 make_optimizer=lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9), make_scheduler=cosine,
                 loss_fn=task or Task(), evaluate=evaluate or Evaluate(), state_dir=state_dir,
                 should_stop=overrides.pop("should_stop", lambda: False), **overrides)
    return model, result


def stop_after(k: int):
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls == k
    return should_stop


def assert_same_model(a: nn.Module, b: nn.Module) -> None:
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("stops", [(3,), (STEPS_PER_EPOCH,), (4, 8, 6)],
                         ids=["mid-epoch", "epoch-end", "thrice-to-last-step"])
def test_interrupted_runs_resume_to_the_uninterrupted_result(tmp_path, precision, stops):
    cfg = {"precision": precision}
    ref_task = Task()
    ref_model, ref = run(task=ref_task, config=cfg)
    assert not ref.interrupted and ref.steps_done == TOTAL and ref.epochs_done == EPOCHS
    assert ref_task.dtypes == {{"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]}

    seen: list[int] = []
    done = 0
    for k in stops:
        task = Task()
        _, part = run(tmp_path, task=task, config=cfg, should_stop=stop_after(k))
        done += k
        assert part.interrupted and part.steps_done == done and not part.stopped_early
        seen += task.indices
    if precision == "fp16":                     # the loss scale travels with the checkpoint
        assert "scale" in resumable.load(tmp_path)["scaler"]
    task = Task()
    model, final = run(tmp_path, task=task, config=cfg)
    seen += task.indices

    assert not final.interrupted and final.steps_done == TOTAL and final.epochs_done == EPOCHS
    assert final.history == ref.history
    assert seen == ref_task.indices             # exactly the remaining batches, none twice
    assert_same_model(model, ref_model)


def test_crash_resumes_from_the_periodic_checkpoint(tmp_path):
    ref_model, ref = run()
    crash_at, every = 11, 4                    # last periodic checkpoint before the crash: step 8
    with pytest.raises(Crash):
        run(tmp_path, task=Task(crash_at=crash_at), config={"checkpoint_every": every})
    saved = resumable.load(tmp_path)["progress"]["steps"]
    assert saved == (crash_at - 1) // every * every

    task = Task()
    model, final = run(tmp_path, task=task, config={"checkpoint_every": every})
    assert task.calls == TOTAL - saved
    assert final.history == ref.history and final.steps_done == TOTAL
    assert_same_model(model, ref_model)


def test_a_fresh_fit_depends_on_the_seed_not_on_the_callers_rng():
    model_a, a = run(caller_seed=1)
    model_b, b = run(caller_seed=2)
    assert a.history == b.history
    assert_same_model(model_a, model_b)


def test_history_records_follow_their_definition():
    task, records = Task(), []
    model, result = run(task=task, on_epoch=lambda epoch, record: records.append((epoch, record)))
    assert records == [(r["epoch"], r) for r in result.history]
    assert [r["epoch"] for r in result.history] == list(range(1, EPOCHS + 1))
    for e, record in enumerate(result.history):
        batches = task.losses[e * STEPS_PER_EPOCH:(e + 1) * STEPS_PER_EPOCH]
        assert record["train/loss"] == pytest.approx(sum(l * n for l, n in batches) / N)
        steps = (e + 1) * STEPS_PER_EPOCH
        assert record["lr"] == pytest.approx(LR * 0.5 * (1 + math.cos(math.pi * steps / TOTAL)))
        assert 0 <= record["train/acc"] <= 1
    assert model.training                       # evaluate put it in eval mode; the loop puts it back
    model.eval()
    assert {k: v for k, v in result.history[-1].items() if k.startswith("val/")} == Evaluate()(model)


def test_max_minutes_zero_stops_after_one_step_and_still_evaluates(tmp_path):
    task, evaluate = Task(), Evaluate()
    _, result = run(tmp_path, task=task, evaluate=evaluate, config={"max_minutes": 0})
    assert result.stopped_early and not result.interrupted
    assert (result.steps_done, result.epochs_done, task.calls, evaluate.calls) == (1, 0, 1, 1)
    [record] = result.history
    assert record["epoch"] == 1 and "val/acc" in record
    assert record["train/loss"] == pytest.approx(task.losses[0][0])

    again = Task()                              # a finished run started again trains no further
    _, rerun = run(tmp_path, task=again, config={"max_minutes": 0})
    assert again.calls == 0 and rerun == result


def test_each_epoch_sees_every_sample_once_in_a_fresh_order():
    def epochs_seen(seed: int) -> list[list[int]]:
        task = Task()
        run(task=task, config={"seed": seed})
        return [task.indices[e * N:(e + 1) * N] for e in range(EPOCHS)]

    seed0, seed1 = epochs_seen(0), epochs_seen(1)
    assert all(sorted(order) == list(range(N)) for order in seed0 + seed1)
    assert len({tuple(order) for order in seed0}) == EPOCHS
    assert seed0[0] != seed1[0]
    assert seed0 == [epoch_order(N, 0, e) for e in range(EPOCHS)]


def test_drop_last_skips_the_short_batch():
    task = Task()
    _, result = run(task=task, config={"drop_last": True})
    per_epoch = N // BS * BS
    assert result.steps_done == EPOCHS * (N // BS)
    for e in range(EPOCHS):
        order = task.indices[e * per_epoch:(e + 1) * per_epoch]
        assert order == epoch_order(N, 0, e)[:per_epoch]


def test_worker_processes_do_not_change_the_result():
    model0, r0 = run(config={"epochs": 1})
    model2, r2 = run(config={"epochs": 1, "num_workers": 2})
    assert r0.history == r2.history
    assert_same_model(model0, model2)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="train_set is empty"):
        run(data=Synthetic(0))
    with pytest.raises(ValueError, match="fewer than batch_size"):
        run(data=Synthetic(BS - 1), config={"drop_last": True})
    with pytest.raises(ValueError, match="precision"):
        LoopConfig(epochs=1, batch_size=1, precision="fp8")
    run(tmp_path, should_stop=stop_after(2))
    with pytest.raises(RuntimeError, match="written for"):
        run(tmp_path, config={"seed": 1})       # a checkpoint of another data order cannot continue


def test_single_process_is_main():
    assert is_main_process()
