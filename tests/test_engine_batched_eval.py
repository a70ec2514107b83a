"""Batched evaluation of several models on one stream equals evaluating each model on its own."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from actlab.families.continual.engine.batched_eval import MultiModelEvaluator, StackedBackbones, group_by_architecture

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "continual"
NV, NN = 8, 16


def egotoy_model(**overrides):
    cfg = OmegaConf.create({"data": {"num_verbs": NV, "num_nouns": NN, "num_frames": 8, "crop_size": 64},
                            "model": OmegaConf.load(CONFIGS / "model" / "egotoy_small.yaml")})
    cfg.model.update(overrides)
    torch.manual_seed(0)
    return instantiate(cfg.model)


def perturbed(base, k: int):
    """Another full-finetune result: every weight and batch-norm running stat moved, seeded by k."""
    m = copy.deepcopy(base)
    g = torch.Generator().manual_seed(100 + k)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                b.add_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.mul_(1 + torch.rand(b.shape, generator=g))
    return m.eval()


class RandomClips(Dataset):
    def __init__(self, n: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.video = torch.randn(n, 3, 8, 64, 64, generator=g)
        self.verb = torch.randint(0, NV, (n,), generator=g)
        self.noun = torch.randint(0, NN, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "verb": int(self.verb[i]), "noun": int(self.noun[i])}


def separate(model, dataset) -> dict:
    model.eval()
    with torch.no_grad():
        out = model(dataset.video)
    return {"verb": out["verb"], "noun": out["noun"]}


def test_batched_models_give_each_models_own_logits():
    base = egotoy_model()
    models = [perturbed(base, k) for k in range(3)]
    # The perturbation reaches the batch-norm running stats, so stacking only parameters would fail.
    bn = [dict(m.named_buffers())["backbone.blocks.1.norm.running_var"] for m in models]
    assert not torch.equal(bn[0], bn[1])
    clips = RandomClips()
    evaluator = MultiModelEvaluator(batch_size=4)
    got = evaluator.logits(models, clips)
    assert evaluator.decode_passes == 1 and evaluator.backbone_calls == 3   # ceil(10 / 4) batches, one stack
    own = [separate(m, clips) for m in models]
    for g, o in zip(got, own):
        assert torch.allclose(g.verb, o["verb"], atol=1e-5) and torch.allclose(g.noun, o["noun"], atol=1e-5)
        assert torch.equal(g.verb_y, clips.verb) and torch.equal(g.noun_y, clips.noun)
    assert not torch.allclose(own[0]["verb"], own[1]["verb"], atol=1e-3)     # the models do differ
    assert [m.training for m in models] == [False] * 3


def test_head_only_models_share_a_backbone_slot_and_keep_their_heads():
    base = egotoy_model()
    tuned = perturbed(base, 0)
    head_only = copy.deepcopy(tuned)
    with torch.no_grad():
        head_only.verb_head.weight.mul_(-1)
    clips = RandomClips(n=4)
    evaluator = MultiModelEvaluator(batch_size=4)
    got = evaluator.logits([tuned, head_only], clips)
    assert evaluator.backbone_calls == 1                     # one batch, one distinct backbone
    for g, m in zip(got, (tuned, head_only)):
        assert torch.allclose(g.verb, separate(m, clips)["verb"], atol=1e-5)


def test_different_architectures_are_never_stacked():
    small, other = egotoy_model(), egotoy_model(motion=False)
    assert group_by_architecture([small, other, copy.deepcopy(small)]) == [[0, 2], [1]]
    with pytest.raises(ValueError, match="architectures"):
        StackedBackbones([small.backbone, other.backbone])
    clips = RandomClips(n=4)
    got = MultiModelEvaluator(batch_size=4).logits([small, other], clips)
    for g, m in zip(got, (small, other)):
        assert torch.allclose(g.noun, separate(m, clips)["noun"], atol=1e-5)


def test_stacking_is_chunked_by_max_backbones():
    base = egotoy_model()
    models = [perturbed(base, k) for k in range(3)]
    clips = RandomClips(n=4)
    evaluator = MultiModelEvaluator(batch_size=4, max_backbones=2)
    got = evaluator.logits(models, clips)
    assert evaluator.backbone_calls == 2
    assert torch.allclose(got[2].verb, separate(models[2], clips)["verb"], atol=1e-5)
    with pytest.raises(ValueError, match="max_backbones"):
        MultiModelEvaluator(max_backbones=0)
