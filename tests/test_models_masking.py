"""Unseen-class logit masking in `VideoClassifier.classify` (upstream's UnseenVerbNounMaskerHead)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actlab.families.continual.models.factory import x3d_small
from actlab.families.continual.models.video import MASK_VALUE, VideoClassifier


def identity_heads() -> VideoClassifier:
    """5 features -> 5 verbs and 5 nouns with identity heads, no dropout: logits = features."""
    model = VideoClassifier(nn.Identity(), feature_dim=5, num_verbs=5, num_nouns=5, dropout=0.0)
    with torch.no_grad():
        for head in (model.verb_head, model.noun_head):
            head.weight.copy_(torch.eye(5))
            head.bias.zero_()
    return model.eval()


FEATURES = [[2.0, 0.5, 3.0, 0.0, 1.0],
            [0.1, -1.0, 0.2, 0.0, 5.0]]
LABELS = [1, 3]


def test_golden_two_rows_five_classes_allowed_1_and_3():
    model = identity_heads()
    model.set_allowed_labels(verbs=[1, 3], nouns=[1, 3])
    feats = torch.tensor(FEATURES, requires_grad=True)
    logits = model.classify(feats)["verb"]
    masked = torch.tensor(MASK_VALUE)        # -1e12 as float32
    # every row: columns 0, 2, 4 overwritten, 1 and 3 untouched
    assert logits[:, [0, 2, 4]].eq(masked).all()
    assert logits[:, [1, 3]].tolist() == [[0.5, 0.0], [-1.0, 0.0]]
    # top-1: unmasked the rows pick 2 (3.0) and 4 (5.0); masked, 1 (0.5 > 0.0) and 3 (0.0 > -1.0)
    assert torch.tensor(FEATURES).argmax(1).tolist() == [2, 4]
    assert logits.argmax(1).tolist() == [1, 3]
    # cross-entropy over the two allowed columns only:
    #   row 0, label 1: -log(e^0.5 / (e^0.5 + e^0))  = log(1 + e^-0.5) = 0.4740770
    #   row 1, label 3: -log(e^0 / (e^-1 + e^0))    = log(1 + e^-1)   = 0.3132617
    #   mean = 0.3936693
    loss = F.cross_entropy(logits, torch.tensor(LABELS))
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-0.5)) + math.log(1 + math.exp(-1))) / 2)
    assert loss.item() == pytest.approx(0.3936693, abs=1e-6)
    # gradient of the mean w.r.t. the logits before masking = (softmax - onehot) / 2 on the allowed
    # columns, exactly 0 on the masked ones:
    #   row 0: p1 = 1 / (1 + e^-0.5) = 0.6224593, p3 = 0.3775407 -> (-0.1887703, +0.1887703)
    #   row 1: p1 = e^-1 / (1 + e^-1) = 0.2689414, p3 = 0.7310586 -> (+0.1344707, -0.1344707)
    loss.backward()
    expected = torch.tensor([[0.0, -0.1887703, 0.0, 0.1887703, 0.0],
                             [0.0, 0.1344707, 0.0, -0.1344707, 0.0]])
    assert torch.allclose(feats.grad, expected, atol=1e-6)
    assert feats.grad[:, [0, 2, 4]].eq(0).all()
    # the classifier rows of masked classes get no gradient either
    assert model.verb_head.weight.grad[[0, 2, 4]].eq(0).all()
    assert model.verb_head.weight.grad[[1, 3]].ne(0).any()


def test_verbs_and_nouns_have_their_own_sets():
    model = identity_heads()
    model.set_allowed_labels(verbs=[4], nouns=[0, 2])
    out = model.classify(torch.tensor(FEATURES))
    assert out["verb"].argmax(1).tolist() == [4, 4]
    assert out["noun"].argmax(1).tolist() == [2, 2]   # 3.0 > 2.0 and 0.2 > 0.1
    assert out["noun"][:, [1, 3, 4]].eq(torch.tensor(MASK_VALUE)).all()


def test_no_mask_until_set_and_clearing_restores_plain_logits():
    model = identity_heads()
    feats = torch.tensor(FEATURES)
    assert torch.equal(model.classify(feats)["verb"], feats)
    model.set_allowed_labels(verbs=[1], nouns=[1])
    model.set_allowed_labels(verbs=None, nouns=None)
    assert torch.equal(model.classify(feats)["noun"], feats)


def test_mask_is_not_part_of_the_state_dict_and_survives_loading_and_copies():
    model = x3d_small(8, 16, 8, 64).eval()
    keys = set(model.state_dict())
    model.set_allowed_labels(verbs=[0, 5], nouns=[3])
    assert set(model.state_dict()) == keys          # checkpoints and final models keep their keys
    model.load_state_dict(x3d_small(8, 16, 8, 64).state_dict())
    for m in (model, copy.deepcopy(model)):
        with torch.no_grad():
            out = m(torch.randn(2, 3, 8, 64, 64))    # the end-to-end forward goes through classify
        assert set(out["verb"].argmax(1).tolist()) <= {0, 5} and out["noun"].argmax(1).tolist() == [3, 3]
        assert out["verb"][:, [1, 2, 3, 4, 6, 7]].eq(torch.tensor(MASK_VALUE)).all()


def test_bad_label_sets_are_refused():
    model = identity_heads()
    with pytest.raises(ValueError, match=r"verb.*\[7\].*5"):
        model.set_allowed_labels(verbs=[1, 7], nouns=[1])
    with pytest.raises(ValueError, match="noun.*empty"):
        model.set_allowed_labels(verbs=[1], nouns=[])
