"""Past evaluation for re-exposure forgetting (engine/past_eval.py): which samples, which forward,
which scores reach the tracker; and the loop's forgetting entries survive a resume."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from actlab.families.continual.engine.past_eval import evaluate_past, history_indices, sample_scores
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.methods.finetune import Finetune
from actlab.families.continual.metrics.forgetting import ENTRY_COLUMNS, ReexposureForgetting, SampleScore
from actlab.families.continual.metrics.online import OnlineMetrics
from test_engine_loop import NN, NV, Clips, sgd, tiny_model


def records(steps: list[int]) -> list[dict]:
    return [{"step": s, "index": 10 + i} for i, s in enumerate(steps)]


def test_history_is_the_window_before_the_current_batch():
    rows = records([0, 0, 1, 1, 2, 2])                    # indices 10..15, batch 2 = 14, 15
    assert history_indices(rows, 2, window=3) == [11, 12, 13]
    assert history_indices(rows, 2, window=None) == [10, 11, 12, 13]
    assert history_indices(rows[:4], 2, window=64) == [10, 11, 12, 13]   # current batch not appended yet


class Probe(nn.Module):
    """verb logits [x, 0], noun logits [0, x] for a clip whose video is the scalar x; records the
    mode and size of every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.calls: list[tuple[bool, int]] = []

    def forward(self, video):
        self.calls.append((self.training, len(video)))
        x = video.reshape(-1, 1) * self.w
        return {"verb": torch.cat([x, torch.zeros_like(x)], 1), "noun": torch.cat([torch.zeros_like(x), x], 1)}


class Capture(ReexposureForgetting):
    def update(self, step, batch, history, last=False):
        self.seen = (step, batch, history, last)


def fetch(indices):
    # sample i: video i - 10 (so 10 -> 0, 11 -> 1, ...), verb 0, noun 1
    return {"video": torch.tensor([float(i - 10) for i in indices]), "verb": torch.zeros(len(indices), dtype=torch.long),
            "noun": torch.ones(len(indices), dtype=torch.long), "index": torch.tensor(indices)}


def test_evaluate_past_scores_online_logits_and_the_eval_mode_history():
    model, tracker = Probe().train(), Capture(window=3, eval_batch_size=2)
    batch = {"verb": torch.tensor([1, 0]), "noun": torch.tensor([0, 0])}
    online = {"verb": torch.tensor([[0.0, 2.0], [0.0, 0.0]]), "noun": torch.tensor([[3.0, 0.0], [0.0, 1.0]])}
    evaluate_past(model, fetch, records([0, 0, 1, 1, 2, 2]), batch, online, tracker, step=2, last=False)
    assert model.calls == [(False, 2), (False, 1)]        # eval mode, chunks of eval_batch_size
    step, current, history, last = tracker.seen
    assert (step, last) == (2, False)
    # online sample 0: verb logits [0, 2], label 1 -> right, CE = log(1 + e^-2); noun [3, 0], label 0 -> right
    # online sample 1: verb [0, 0], label 0 -> argmax 0 right, CE log 2; noun [0, 1], label 0 -> wrong, CE log(1 + e)
    assert current == [SampleScore(1, 0, True, True, pytest.approx(math.log(1 + math.exp(-2))),
                                   pytest.approx(math.log(1 + math.exp(-3)))),
                       SampleScore(0, 0, True, False, pytest.approx(math.log(2)), pytest.approx(math.log(1 + math.e)))]
    # history = indices 11, 12, 13 -> x = 1, 2, 3; verb label 0: logits [x, 0] right, CE log(1 + e^-x);
    # noun label 1: logits [0, x] right, same CE
    assert [(h.verb_correct, h.noun_correct) for h in history] == [(True, True)] * 3
    assert [h.verb_loss for h in history] == pytest.approx([math.log(1 + math.exp(-x)) for x in (1, 2, 3)])


def test_batch_zero_is_never_evaluated():
    model, tracker = Probe(), Capture()
    evaluate_past(model, fetch, records([0, 0]), {"verb": torch.tensor([0]), "noun": torch.tensor([0])},
                  {"verb": torch.zeros(1, 2), "noun": torch.zeros(1, 2)}, tracker, step=0, last=False)
    assert model.calls == [] and not hasattr(tracker, "seen")


def test_online_logits_must_be_the_batch_rows():
    with pytest.raises(ValueError, match="online logits"):
        evaluate_past(Probe(), fetch, records([0, 1]), {"verb": torch.tensor([0]), "noun": torch.tensor([0])},
                      {"verb": torch.zeros(3, 2), "noun": torch.zeros(3, 2)}, Capture(), step=1, last=False)


def test_sample_scores_action_parts():
    out = sample_scores({"verb": torch.tensor([[1.0, 0.0]]), "noun": torch.tensor([[0.0, 1.0]])},
                        torch.tensor([1]), torch.tensor([1]))
    assert (out[0].verb_correct, out[0].noun_correct) == (False, True)
    assert out[0].loss("action") == pytest.approx(math.log(1 + math.e) + math.log(1 + math.exp(-1)))


def run(tmp_path=None, stop_at=None):
    return run_stream(tiny_model(), Finetune(optimizer=sgd), Clips(), metrics=OnlineMetrics(NV, NN), seed=3,
                      batch_size=4, checkpoint_dir=tmp_path, past_eval_every=1,
                      tracker=ReexposureForgetting(eval_batch_size=3),
                      should_stop=(lambda n: n == stop_at) if stop_at else (lambda n: False))


def test_loop_entries_cover_every_task_and_metric_and_survive_a_resume(tmp_path):
    whole = run()
    f = whole.forgetting
    assert list(f.columns) == list(ENTRY_COLUMNS)
    assert set(zip(f.metric, f.task)) == {(m, t) for m in ("acc", "loss") for t in ("action", "verb", "noun")}
    assert f.step.min() >= 1 and f.step.max() == 6        # 26 samples: batches 0..6, the last one evaluated
    assert (f.gap >= 0).all() and (f.loc[f.gap == 0, "delta"] == 0).all()
    assert run(tmp_path, stop_at=3).interrupted
    rest = run(tmp_path)
    pd.testing.assert_frame_equal(rest.forgetting, whole.forgetting)
