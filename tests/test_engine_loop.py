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
from actlab.families.continual.methods.replay import Replay, ReplayMemory
from actlab.families.continual.metrics.forgetting import ReexposureTracker
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


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def methods():
    return {
        "frozen": lambda: Frozen(),
        "finetune": lambda: Finetune(optimizer=sgd, inner_loop_iters=2),
        "head_only": lambda: Finetune(optimizer=sgd, head_only=True),
        "iid": lambda: IIDFinetune(optimizer=sgd),
        "replay": lambda: Replay(optimizer=sgd, memory_size=6, storage_policy="reservoir"),
        "replay_cb": lambda: Replay(optimizer=sgd, memory_size=6, storage_policy="class_balanced"),
        "label_window": lambda: LabelWindow(window=4, variant="per_sample"),
    }


def run(method, tmp_path=None, stop_at=None, past=True):
    return run_stream(tiny_model(), method, Clips(), metrics=OnlineMetrics(NV, NN), seed=3,
                      batch_size=4, checkpoint_dir=tmp_path, past_eval_every=1 if past else 0,
                      tracker=ReexposureTracker() if past else None,
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
    learner = run(Finetune(optimizer=lambda p: torch.optim.SGD(p, lr=50.0)), past=False).records
    first = learner["step"] == 0
    assert (learner.loc[first, "pred_verb"].tolist() == reference.loc[first, "pred_verb"].tolist())
    assert not learner["pred_verb"].equals(reference["pred_verb"])


def test_frozen_network_never_changes_its_weights():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_stream(model, Frozen(), Clips(), metrics=OnlineMetrics(NV, NN), batch_size=4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_head_only_finetuning_keeps_the_backbone_bit_identical():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    run_stream(model, Finetune(optimizer=sgd, head_only=True), Clips(), metrics=OnlineMetrics(NV, NN),
               batch_size=4)
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    assert not torch.equal(model.verb_head.weight, tiny_model().verb_head.weight)


def test_iid_finetuning_visits_the_same_samples_in_a_seeded_shuffled_order():
    records = run(IIDFinetune(optimizer=sgd), past=False).records
    assert sorted(records["index"]) == list(range(len(Clips())))
    assert records["index"].tolist() != list(range(len(Clips())))
    assert records["index"].tolist() == run(IIDFinetune(optimizer=sgd), past=False).records["index"].tolist()


def test_label_window_per_sample_predicts_the_most_frequent_recent_label():
    records = run(LabelWindow(window=2, variant="per_sample"), past=False).records
    verbs = records["verb"].tolist()
    # window 2 -> the most frequent of the previous two labels; ties go to the most recent one.
    for i in range(2, len(verbs)):
        assert records["pred_verb"].iloc[i] == verbs[i - 1]


def test_label_window_batched_uses_only_labels_known_at_batch_start():
    records = run(LabelWindow(window=4, variant="batched"), past=False).records
    verbs = records["verb"].tolist()
    for b in range(1, len(verbs) // 4):
        previous = verbs[4 * (b - 1):4 * b]
        top = max(set(previous), key=lambda y: (previous.count(y), max(i for i, v in enumerate(previous) if v == y)))
        assert records["pred_verb"].iloc[4 * b:4 * b + 4].tolist() == [top] * 4


@pytest.mark.parametrize("policy", ["fifo", "reservoir", "class_balanced"])
def test_replay_memory_respects_its_size_and_policy(policy):
    memory = ReplayMemory(5, policy, seed=0)
    labels = ["a"] * 30 + ["b"] * 3 + ["c"] * 2
    for i, label in enumerate(labels):
        memory.add(i, label)
    assert len(memory.items) == 5 and len(set(memory.indices)) == 5
    if policy == "fifo":
        assert memory.indices == list(range(30, 35))
    if policy == "class_balanced":
        # the majority class must not dominate: every class keeps a slot
        assert {lbl for _, lbl in memory.items} == {"a", "b", "c"}
    assert memory.sample(3) != [] and len(memory.sample(3)) == 3
    full = ReplayMemory("full", policy)
    for i, label in enumerate(labels):
        full.add(i, label)
    assert full.indices == list(range(len(labels)))


def test_replay_memory_rejects_bad_sizes_and_policies():
    with pytest.raises(ValueError, match="memory_size"):
        ReplayMemory(0, "fifo")
    with pytest.raises(ValueError, match="storage_policy"):
        ReplayMemory(4, "lru")
