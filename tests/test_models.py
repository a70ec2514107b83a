"""Models: shapes, the factory configs, checkpoint loading in every accepted layout."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from actlab.errors import DataError
from actlab.families.continual.models.weights import load_checkpoint, save_checkpoint
from actlab.families.continual.models.factory import x3d_small
from actlab.families.continual.models.video import VideoClassifier

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "continual"


def small(num_verbs=8, num_nouns=16):
    torch.manual_seed(0)
    return x3d_small(num_verbs, num_nouns, num_frames=8, crop_size=64)


def test_x3d_small_shapes_and_split_forward():
    model = small().eval()
    video = torch.randn(2, 3, 8, 64, 64)
    feats = model.features(video)
    assert feats.shape == (2, model.feature_dim)
    out = model(video)
    assert out["verb"].shape == (2, 8) and out["noun"].shape == (2, 16)
    assert torch.allclose(model.classify(feats)["verb"], out["verb"])
    assert isinstance(model.verb_head, torch.nn.Linear) and isinstance(model.noun_head, torch.nn.Linear)


def test_features_reject_non_video():
    with pytest.raises(ValueError, match=r"\[B,C,T,H,W\]"):
        small().features(torch.randn(3, 8, 64, 64))


def test_egotoy_model_config_instantiates():
    cfg = OmegaConf.create({"data": {"num_verbs": 8, "num_nouns": 16, "num_frames": 8, "crop_size": 64},
                            "model": OmegaConf.load(CONFIGS / "model" / "egotoy_small.yaml")})
    model = instantiate(cfg.model)
    assert isinstance(model, VideoClassifier)
    assert model.verb_head.out_features == 8 and model.noun_head.out_features == 16
    assert model.dropout.p == 0.5


@pytest.mark.slow
def test_slowfast_r101_builds_and_runs_one_forward():
    cfg = OmegaConf.create({"data": {"num_verbs": 115, "num_nouns": 478},
                            "model": OmegaConf.load(CONFIGS / "model" / "slowfast_r101_ego4d.yaml")})
    model = instantiate(cfg.model).eval()
    assert sum(p.numel() for p in model.parameters()) > 50e6  # R101, not a toy
    seen = []
    model.backbone.net.blocks[0].multipathway_blocks[0].register_forward_hook(
        lambda mod, inp, out: seen.append(inp[0].shape[2]))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 224, 224))
    assert out["verb"].shape == (1, 115) and out["noun"].shape == (1, 478)
    assert seen == [8]  # slow pathway: every 4th of 32 frames


# ---- checkpoints -------------------------------------------------------------------------------

def assert_same_weights(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        if not k.startswith(skip):
            assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("layout", ["plain", "model", "lightning", "pyslowfast", "ddp_lightning"])
def test_load_checkpoint_layouts(tmp_path, layout):
    src, dst = small(), x3d_small(8, 16, 8, 64)
    sd = src.state_dict()
    obj = {"plain": sd, "model": {"model": sd, "meta": {"epoch": 3}},
           "lightning": {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 7,
                         "hyper_parameters": {"lr": 0.1}},
           # the SlowFast library's own checkpoint layout
           "pyslowfast": {"model_state": sd, "epoch": 5, "optimizer_state": {}, "cfg": "..."},
           "ddp_lightning": {"state_dict": {f"module.model.{k}": v for k, v in sd.items()}}}[layout]
    torch.save(obj, tmp_path / "ck.pt")
    report = load_checkpoint(dst, tmp_path / "ck.pt")
    assert report.clean and report.loaded == len(sd)
    assert_same_weights(src, dst)
    assert str(tmp_path / "ck.pt") in str(report)


def test_save_then_load_keeps_meta(tmp_path):
    src, dst = small(), x3d_small(8, 16, 8, 64)
    path = save_checkpoint(src, tmp_path / "sub" / "m.pt", {"epochs": 2, "val/verb/top1": 0.5})
    report = load_checkpoint(dst, path)
    assert report.meta == {"epochs": 2, "val/verb/top1": 0.5}
    assert_same_weights(src, dst)
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary files left behind


def test_save_is_atomic_on_failure(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(small(), path, {"v": 1})
    before = path.read_bytes()

    class Broken(torch.nn.Module):
        def state_dict(self, *a, **k):
            return {"w": torch.zeros(1)}

    def fail(obj, f):
        raise OSError("disk full")

    mp = pytest.MonkeyPatch()
    mp.setattr(torch, "save", fail)
    try:
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(Broken(), path, {"v": 2})
    finally:
        mp.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_missing_head_is_reinitialised_and_reported_strict_refuses(tmp_path):
    src = small()
    sd = src.state_dict()
    dropped = "noun_head.bias"
    del sd[dropped]
    torch.save(sd, tmp_path / "ck.pt")
    dst = x3d_small(8, 16, 8, 64)
    report = load_checkpoint(dst, tmp_path / "ck.pt")
    assert report.missing == [dropped] and report.initialised == ["noun_head"]
    assert dropped in str(report) and "noun_head initialised" in str(report)
    # the incomplete head is re-initialised as a whole, not half loaded
    assert not torch.equal(dst.noun_head.weight, src.noun_head.weight)
    assert_same_weights(src, dst, skip=("noun_head",))
    with pytest.raises(DataError, match="noun_head"):
        load_checkpoint(x3d_small(8, 16, 8, 64), tmp_path / "ck.pt", strict=True)


def test_unexpected_backbone_key_fails_naming_it(tmp_path):
    # e.g. a deeper network's checkpoint: every key of ours present, plus blocks we do not have
    sd = small().state_dict()
    sd["backbone.blocks.9.conv.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "ck.pt")
    with pytest.raises(DataError, match=r"backbone does not load completely.*backbone\.blocks\.9\.conv\.weight"):
        load_checkpoint(x3d_small(8, 16, 8, 64), tmp_path / "ck.pt")


def test_incomplete_backbone_fails_naming_the_first_missing_keys(tmp_path):
    sd = small().state_dict()
    backbone = sorted(k for k in sd if k.startswith("backbone.") and not k.endswith("num_batches_tracked"))
    for key in backbone[:3]:
        del sd[key]
    torch.save(sd, tmp_path / "ck.pt")
    with pytest.raises(DataError) as err:
        load_checkpoint(x3d_small(8, 16, 8, 64), tmp_path / "ck.pt")
    assert "backbone does not load completely" in str(err.value) and "missing 3" in str(err.value)
    for key in backbone[:3]:
        assert key in str(err.value)


def test_checkpoint_of_another_architecture_fails(tmp_path):
    # the egotoy model's checkpoint given to a model with another backbone (here: no motion input)
    torch.save(small().state_dict(), tmp_path / "ck.pt")
    with pytest.raises(DataError, match="ck.pt"):
        load_checkpoint(x3d_small(8, 16, 8, 64, motion=False, depth_factor=0.4), tmp_path / "ck.pt")


def test_batch_norm_counters_may_be_absent(tmp_path):
    # Older checkpoints lack BatchNorm's num_batches_tracked (a counter that the forward pass does
    # not read with a set momentum): they load, and the absent counters are listed as missing.
    src = small()
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    counters = sorted(k for k in src.state_dict() if k.endswith("num_batches_tracked"))
    assert counters
    torch.save(sd, tmp_path / "ck.pt")
    dst = x3d_small(8, 16, 8, 64)
    report = load_checkpoint(dst, tmp_path / "ck.pt")
    assert report.missing == counters and report.initialised == [] and report.loaded == len(sd)
    assert_same_weights(src, dst, skip=tuple(counters))


def test_kinetics_like_checkpoint_loads_backbone_and_initialises_both_heads(tmp_path):
    # A Kinetics checkpoint: the same backbone, a 400-class `head.projection` and no verb/noun heads.
    src = small()
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith(("verb_head", "noun_head"))}
    sd |= {"head.projection.weight": torch.zeros(400, src.feature_dim), "head.projection.bias": torch.zeros(400)}
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}}, tmp_path / "ck.pt")
    dst = x3d_small(8, 16, 8, 64)
    report = load_checkpoint(dst, tmp_path / "ck.pt")
    assert report.initialised == ["noun_head", "verb_head"]
    assert report.unexpected == ["head.projection.bias", "head.projection.weight"]
    assert_same_weights(src, dst, skip=("verb_head", "noun_head"))
    with pytest.raises(DataError, match="head.projection"):
        load_checkpoint(x3d_small(8, 16, 8, 64), tmp_path / "ck.pt", strict=True)


def test_head_resized_when_label_space_differs(tmp_path):
    src = small(num_verbs=5, num_nouns=16)
    torch.save(src.state_dict(), tmp_path / "ck.pt")
    dst = x3d_small(8, 16, 8, 64)
    report = load_checkpoint(dst, tmp_path / "ck.pt")
    assert report.resized == {"verb_head": (5, 8)}
    assert set(report.mismatched) == {"verb_head.weight", "verb_head.bias"}
    assert "verb_head re-initialised" in str(report) and "5 classes" in str(report)
    assert dst.verb_head.weight.shape == (8, dst.feature_dim)
    assert_same_weights(src, dst, skip=("verb_head",))
    with pytest.raises(DataError, match="verb_head"):
        load_checkpoint(x3d_small(8, 16, 8, 64), tmp_path / "ck.pt", strict=True)


def test_backbone_shape_mismatch_raises_naming_key(tmp_path):
    sd = small().state_dict()
    key = next(k for k in sd if k.startswith("backbone.") and k.endswith("weight"))
    sd[key] = torch.zeros(*[s + 1 for s in sd[key].shape])
    torch.save(sd, tmp_path / "ck.pt")
    with pytest.raises(DataError, match=key.replace(".", r"\.")):
        load_checkpoint(x3d_small(8, 16, 8, 64), tmp_path / "ck.pt")


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(small(), tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        load_checkpoint(small(), tmp_path / "junk.pt")
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "odd.pt")
    with pytest.raises(DataError, match="odd.pt.*not a state_dict"):
        load_checkpoint(small(), tmp_path / "odd.pt")
