"""Replay's update forward: one joint batch of new + memory clips, loss (mean_new + mean_mem) / 2.

With zero heads every logit is 0, so each cross-entropy is log 2 (two classes) and the loss of
a sample is CE(verb) + CE(noun) = 2 log 2, whatever the clips: the golden values below follow.
"""
from __future__ import annotations

import math

import pytest
import torch
from test_engine_loop import Scalars, bn_model, no_step

from actlab.families.continual.methods.replay import Replay
from actlab.families.continual.engine.stream_loop import fetcher


def zero_heads():
    model = bn_model()
    with torch.no_grad():
        for head in (model.verb_head, model.noun_head):
            head.weight.zero_()
    return model.train()


def batch(data, indices):
    b = fetcher(data)(indices)
    return b | {k: torch.as_tensor(b[k]) for k in ("verb", "noun", "index")}


@pytest.mark.parametrize("option, expected", [("half", math.log(2)), ("new_only", 2 * math.log(2))])
def test_an_empty_memory_gives_upstreams_half_loss_or_the_new_only_option(option, expected):
    # half (upstream): (mean_new + 0) / 2 = 2 log 2 / 2;  new_only: mean_new = 2 log 2.
    data, model = Scalars(8), zero_heads()
    method = Replay(optimizer=no_step, memory_size=4, empty_memory_loss=option)
    method.prepare(model, seed=0)
    out = method.train_forward(model, batch(data, [0, 1, 2, 3]), fetcher(data))
    assert out.loss.item() == pytest.approx(expected)
    assert out.logits["verb"].shape == (4, 2)


def test_with_memory_one_forward_sees_new_and_memory_clips_and_the_loss_averages_the_two_means():
    data, model, sizes = Scalars(8), zero_heads(), []
    model.register_forward_hook(lambda _m, inputs, _o: sizes.append(len(inputs[0])))
    method = Replay(optimizer=no_step, memory_size=4, storage_policy="reservoir")
    method.prepare(model, seed=0)
    method.observe(batch(data, [0, 1, 2]))            # memory: 3 samples
    out = method.train_forward(model, batch(data, [4, 5, 6, 7]), fetcher(data))
    assert sizes == [4 + 3]                            # one forward: 4 new + min(4, |M| = 3) memory clips
    assert out.logits["verb"].shape == (4, 2)          # the new rows only
    assert out.loss.item() == pytest.approx((2 * math.log(2) + 2 * math.log(2)) / 2)


def test_empty_memory_loss_is_checked():
    with pytest.raises(ValueError, match="method.empty_memory_loss"):
        Replay(optimizer=no_step, empty_memory_loss="zero")
