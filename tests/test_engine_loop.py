"""The online loop on in-memory data: protocol order, resume equivalence, method behaviour.

These tests drive `run_stream` with a small real network on random clips, so they check the
loop's bookkeeping (what is predicted before which update, what a checkpoint restores) without
decoding video; the decoding path is covered end to end in test_engine_stream_job.py.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.methods.finetune import Finetune
from actlab.families.continual.methods.frozen import Frozen
from actlab.families.continual.methods.iid_finetune import IIDFinetune
from actlab.families.continual.methods.label_window import LabelWindow
from actlab.families.continual.methods.replay import Replay
from actlab.families.continual.metrics.forgetting import ReexposureForgetting
from actlab.families.continual.metrics.online import OnlineMetrics
from actlab.families.continual.models.video import VideoClassifier

NV, NN = 5, 7


class Clips(torch.utils.data.Dataset):
    """Random clips with label-correlated targets (runs of the same label)."""

    def __init__(self, n: int = 26, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.video = torch.randn(n, 3, 4, 8, 8, generator=g)
        self.verb = torch.randint(0, NV, (n,), generator=g).repeat_interleave(2)[:n]
        self.noun = torch.randint(0, NN, (n,), generator=g).repeat_interleave(2)[:n]

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "verb": int(self.verb[i]), "noun": int(self.noun[i]), "index": i}


def tiny_model(seed: int = 0) -> VideoClassifier:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
                             nn.AdaptiveAvgPool3d(1), nn.Flatten())
    return VideoClassifier(backbone, 8, NV, NN, dropout=0.5)


def sgd(params, **kw):
    # **kw: the method adds `nesterov` (methods/finetune.py)
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, **kw)


def no_step(params, **kw):
    """SGD with lr 0: every forward and backward runs, the weights never change."""
    return torch.optim.SGD(params, lr=0.0, **kw)


def methods():
    return {
        "frozen": lambda: Frozen(),
        "finetune": lambda: Finetune(optimizer=sgd, inner_loop_iters=2),
        "head_only": lambda: Finetune(optimizer=sgd, head_only=True),
        "iid": lambda: IIDFinetune(optimizer=sgd),
        "replay": lambda: Replay(optimizer=sgd, memory_size=6, storage_policy="reservoir"),
        "replay_cb": lambda: Replay(optimizer=sgd, memory_size=6, storage_policy="class_balanced"),
        "replay_fifo": lambda: Replay(optimizer=sgd, memory_size=6, storage_policy="fifo", inner_loop_iters=2),
        "label_window": lambda: LabelWindow(window=4, variant="per_sample"),
    }


def run(method, tmp_path=None, stop_at=None, past=True):
    return run_stream(tiny_model(), method, Clips(), metrics=OnlineMetrics(NV, NN), seed=3,
                      batch_size=4, checkpoint_dir=tmp_path, past_eval_every=1 if past else 0,
                      tracker=ReexposureForgetting() if past else None,
                      should_stop=(lambda n: n == stop_at) if stop_at else (lambda n: False))


@pytest.fixture(autouse=True)
def deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("name", sorted(methods()))
@pytest.mark.parametrize("stop_at", [1, 4, 6])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, name, stop_at):
    whole = run(methods()[name]())
    first = run(methods()[name](), tmp_path, stop_at=stop_at)
    assert first.interrupted and first.batches_done == stop_at
    rest = run(methods()[name](), tmp_path)            # a fresh process would start exactly so
    assert not rest.interrupted
    assert rest.records.equals(whole.records)
    assert rest.summary == whole.summary
    assert rest.forgetting.equals(whole.forgetting)


def test_online_predictions_come_before_the_update_on_the_batch():
    # With lr so large that one step changes every prediction, the first batch's online
    # predictions must still be those of the untouched model.
    reference = run(Frozen(), past=False).records
    learner = run(Finetune(optimizer=lambda p, **kw: torch.optim.SGD(p, lr=50.0, **kw)), past=False).records
    first = learner["step"] == 0
    assert (learner.loc[first, "pred_verb"].tolist() == reference.loc[first, "pred_verb"].tolist())
    assert not learner["pred_verb"].equals(reference["pred_verb"])


def test_iid_finetuning_visits_the_same_samples_in_a_seeded_shuffled_order():
    records = run(IIDFinetune(optimizer=sgd), past=False).records
    assert sorted(records["index"]) == list(range(len(Clips())))
    assert records["index"].tolist() != list(range(len(Clips())))
    assert records["index"].tolist() == run(IIDFinetune(optimizer=sgd), past=False).records["index"].tolist()


def test_label_window_per_sample_predicts_the_most_frequent_recent_label():
    records = run(LabelWindow(window=2, variant="per_sample", tie_break="recent"), past=False).records
    verbs = records["verb"].tolist()
    # window 2 -> the most frequent of the previous two labels; ties go to the most recent one.
    for i in range(2, len(verbs)):
        assert records["pred_verb"].iloc[i] == verbs[i - 1]


def test_label_window_batched_uses_only_labels_known_at_batch_start():
    records = run(LabelWindow(window=4, variant="batched", tie_break="recent"), past=False).records
    verbs = records["verb"].tolist()
    for b in range(1, len(verbs) // 4):
        previous = verbs[4 * (b - 1):4 * b]
        top = max(set(previous), key=lambda y: (previous.count(y), max(i for i, v in enumerate(previous) if v == y)))
        assert records["pred_verb"].iloc[4 * b:4 * b + 4].tolist() == [top] * 4


# -- one shared forward per batch (docs/protocol.md, "Per-batch protocol") --------------------------

class Scalars(torch.utils.data.Dataset):
    """Sample i is a 1x1x1x1 'video' holding the value i; every label is 0."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"video": torch.full((1, 1, 1, 1), float(i)), "verb": 0, "noun": 0, "index": i}


def bn_model() -> VideoClassifier:
    """feature z = batch norm of the value (momentum 0.5, no affine change at init, eps 1e-10:
    below float32 resolution next to the variances here, so z = (x - mean) / sqrt(var));
    verb and noun logits = [z, -z]; no dropout."""
    backbone = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(1, eps=1e-10, momentum=0.5))
    model = VideoClassifier(backbone, 1, 2, 2, dropout=0.0)
    with torch.no_grad():
        for head in (model.verb_head, model.noun_head):
            head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            head.bias.zero_()
    return model


class Recorded(OnlineMetrics):
    """OnlineMetrics that also keeps the verb logits of every online prediction."""

    def __init__(self, num_verbs: int = 2, num_nouns: int = 2) -> None:
        super().__init__(num_verbs, num_nouns)
        self.verb_logits: list[torch.Tensor] = []

    def update(self, verb_logits, noun_logits, verb_y, noun_y):
        self.verb_logits.append(verb_logits.detach().clone())
        return super().update(verb_logits, noun_logits, verb_y, noun_y)


def running_mean(model) -> float:
    return float(model.backbone[1].running_mean)


def test_the_online_forward_is_the_first_updates_forward_so_batch_norm_moves_once():
    # Batch 0..3: mean 1.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
    # One train-mode forward: running mean = 0.5 * 0 + 0.5 * 1.5 = 0.75 (a separate online
    # forward before the update's would give 0.5 * 0.75 + 0.5 * 1.5 = 1.125).
    model, metrics = bn_model(), Recorded()
    run_stream(model, Finetune(optimizer=no_step), Scalars(4), metrics=metrics, batch_size=4)
    assert running_mean(model) == pytest.approx(0.75)
    assert metrics.verb_logits[0][:, 0].tolist() == pytest.approx([(x - 1.5) / 1.25 ** 0.5 for x in range(4)])


def test_later_inner_iterations_forward_again():
    # Two inner iterations = two forwards of batch 0..3: 0.75, then 0.5 * 0.75 + 0.5 * 1.5 = 1.125.
    model = bn_model()
    run_stream(model, Finetune(optimizer=no_step, inner_loop_iters=2), Scalars(4), metrics=Recorded(), batch_size=4)
    assert running_mean(model) == pytest.approx(1.125)


def test_an_eval_mode_online_forward_stays_a_separate_forward():
    # online_forward=eval: the online forward uses the running statistics (mean 0, var 1: z = x)
    # and moves nothing; the update's own forward moves the running mean once, to 0.75.
    model, metrics = bn_model(), Recorded()
    run_stream(model, Finetune(optimizer=no_step), Scalars(4), metrics=metrics, batch_size=4, online_forward="eval")
    assert metrics.verb_logits[0][:, 0].tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert running_mean(model) == pytest.approx(0.75)


def test_replay_predicts_the_new_rows_of_one_joint_new_plus_memory_forward():
    # Batch 0 (0..3): empty memory, forward of the new clips only -> running mean 0.75; then the
    # reservoir (M = 4) stores 0..3 without a draw. Batch 1 (4..7): the memory batch is all of
    # memory (4 of 4), forwarded with the new clips as one batch [4..7, 0..3]: mean 3.5, biased
    # variance 2 * (0.25 + 2.25 + 6.25 + 12.25) / 8 = 5.25; the online predictions are the new
    # rows, z = (x - 3.5) / sqrt(5.25); running mean = 0.5 * 0.75 + 0.5 * 3.5 = 2.125.
    model, metrics = bn_model(), Recorded()
    run_stream(model, Replay(optimizer=no_step, memory_size=4, storage_policy="reservoir"), Scalars(8),
               metrics=metrics, batch_size=4)
    assert metrics.verb_logits[1][:, 0].tolist() == pytest.approx([(x - 3.5) / 5.25 ** 0.5 for x in range(4, 8)])
    assert running_mean(model) == pytest.approx(2.125)


@pytest.mark.parametrize("make", [lambda: Finetune(optimizer=no_step, inner_loop_iters=2),
                                  lambda: Replay(optimizer=no_step, inner_loop_iters=2, memory_size=4)])
def test_the_online_predictions_are_the_first_forwards_rows_dropout_mask_included(make):
    # tiny_model has dropout 0.5: only the very forward the update uses gives these logits.
    model, metrics, outputs = tiny_model(), Recorded(NV, NN), []
    model.register_forward_hook(lambda _m, _i, out: outputs.append(out["verb"].detach().clone()))
    run_stream(model, make(), Clips(), metrics=metrics, batch_size=4)
    assert len(outputs) == 2 * len(metrics.verb_logits)             # inner_loop_iters forwards per batch
    for b, online in enumerate(metrics.verb_logits):
        assert torch.equal(online, outputs[2 * b][:len(online)])
