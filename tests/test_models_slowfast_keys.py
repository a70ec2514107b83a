"""Released SlowFast checkpoints (SlowFast-library names) load completely into `slowfast_r101`.

tests/data/slowfast_r101_8x8_keys.json is the full state_dict key list (names, shapes) of upstream's
Ego4D recognition model, produced by instantiating upstream's own model code (its `about` field
says how); the tests check our translation against it, not against itself.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actlab.families.continual.models.factory import slowfast_r101
from actlab.families.continual.models.slowfast_keys import to_actlab, translate
from actlab.families.continual.models.weights import HEADS, load_checkpoint

KEYS = Path(__file__).parent / "data" / "slowfast_r101_8x8_keys.json"


@pytest.fixture(scope="module")
def upstream_keys() -> list[tuple[str, tuple[int, ...]]]:
    doc = json.loads(KEYS.read_text())
    assert "MultiTaskSlowFast" in doc["about"]
    return [(name, tuple(shape)) for name, shape in doc["keys"]]


@pytest.fixture(scope="module")
def ours() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in slowfast_r101().state_dict().items()}


def is_head(key: str) -> bool:
    return key.split(".", 1)[0] in HEADS


def test_examples_worked_by_hand():
    # stage k of the SlowFast library = pytorchvideo's blocks.(k-1); fusion after stage k = that block's fusion
    bb = "backbone.net.blocks."
    assert to_actlab("s1.pathway0_stem.conv.weight") == bb + "0.multipathway_blocks.0.conv.weight"
    assert to_actlab("s1.pathway1_stem.bn.running_mean") == bb + "0.multipathway_blocks.1.norm.running_mean"
    assert to_actlab("s1_fuse.conv_f2s.weight") == bb + "0.multipathway_fusion.conv_fast_to_slow.weight"
    assert to_actlab("s4_fuse.bn.running_var") == bb + "3.multipathway_fusion.norm.running_var"
    res = bb + "1.multipathway_blocks.0.res_blocks.0."
    assert to_actlab("s2.pathway0_res0.branch1.weight") == res + "branch1_conv.weight"
    assert to_actlab("s2.pathway0_res0.branch1_bn.bias") == res + "branch1_norm.bias"
    assert (to_actlab("s4.pathway1_res22.branch2.b.weight")
            == bb + "3.multipathway_blocks.1.res_blocks.22.branch2.conv_b.weight")
    assert (to_actlab("s5.pathway1_res2.branch2.c_bn.num_batches_tracked")
            == bb + "4.multipathway_blocks.1.res_blocks.2.branch2.norm_c.num_batches_tracked")
    # upstream's MODEL.NUM_CLASSES = [115, 478]: projection 0 = verbs, 1 = nouns
    assert to_actlab("head.projections.0.weight") == "verb_head.weight"
    assert to_actlab("head.projections.1.bias") == "noun_head.bias"
    # the head wrapped by upstream's unseen-class masker (a checkpoint saved after a stream)
    assert to_actlab("head.0.projections.1.weight") == "noun_head.weight"
    for other in ("verb_head.weight", "head.projection.weight", "s6.pathway0_res0.branch1.weight",
                  "s1.pathway0_stem.conv.weight.x", "s5_fuse.bn.weight", "s1.pathway0_res0.branch1.weight"):
        assert to_actlab(other) is None, other


def test_translate_keeps_other_keys_and_refuses_collisions():
    assert translate({"head.projection.bias": 1, "s1_fuse.bn.bias": 2}) == {
        "head.projection.bias": 1, "backbone.net.blocks.0.multipathway_fusion.norm.bias": 2}
    with pytest.raises(ValueError, match="verb_head.weight"):
        translate({"head.projections.0.weight": 1, "head.0.projections.0.weight": 2})


def test_every_upstream_tensor_maps_onto_ours_with_its_shape(upstream_keys, ours):
    assert len(upstream_keys) == 1276 and len(ours) == 1276
    mapped = {}
    for name, shape in upstream_keys:
        target = to_actlab(name)
        assert target in ours, f"{name} -> {target}: not a key of slowfast_r101"
        assert ours[target] == shape, f"{name} -> {target}: {shape} vs {ours[target]}"
        mapped[target] = name
    # a bijection: no two upstream keys share a target, and nothing of ours is left uncovered
    assert len(mapped) == len(upstream_keys)
    backbone = {k for k in ours if not is_head(k)}
    assert backbone <= set(mapped) and len(backbone) == 1272
    assert {k for k in ours if is_head(k)} == {"verb_head.weight", "verb_head.bias", "noun_head.weight",
                                              "noun_head.bias"} <= set(mapped)


def test_synthetic_lightning_checkpoint_in_slowfast_naming_loads_completely(upstream_keys, tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in upstream_keys:
        if name.endswith("num_batches_tracked"):
            state[name] = torch.randint(0, 1000, shape, generator=g)
        else:
            state[name] = torch.randn(shape, generator=g)
    # saved like Ego4D's released Lightning checkpoints: the task holds the network as `model`
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 29,
                "hyper_parameters": {"cfg": "..."}}, tmp_path / "ego4d.ckpt")
    model = slowfast_r101()
    report = load_checkpoint(model, tmp_path / "ego4d.ckpt", strict=True)
    assert report.clean and report.loaded == 1276 and not report.resized and not report.initialised
    loaded = model.state_dict()
    for name, value in state.items():
        assert torch.equal(loaded[to_actlab(name)], value), name
