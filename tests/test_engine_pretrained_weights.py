"""Jobs stop, naming keys, when the pretrained backbone does not load completely."""
from __future__ import annotations

import pytest
import torch
from conftest import compose

from actlab.errors import DataError
from actlab.families.continual.engine import stream_job


def stream_cfg(stream_overrides, *extra):
    return compose("stream", [*stream_overrides, "user=68", "experiment=egotoy_main", "method=frozen",
                              "data.max_clips=8", "wandb.mode=disabled", "submitted=20260101T000000Z", *extra])


def test_a_slowfast_stream_pointed_at_the_egotoy_checkpoint_stops_naming_keys(stream_overrides):
    # the case: an Ego4D model given the egotoy checkpoint used to run from a random SlowFast
    with pytest.raises(DataError) as err:
        stream_job.run(stream_cfg(stream_overrides, "model=slowfast_r101_ego4d"))
    message = str(err.value)
    assert "backbone does not load completely" in message
    assert "backbone.net.blocks.0.multipathway_blocks.0.conv.weight" in message   # first missing key
    assert "egotoy_pretrained.pt" in message


def test_a_checkpoint_missing_one_backbone_tensor_stops_the_job(stream_overrides, pretrained, tmp_path):
    state = torch.load(pretrained, weights_only=False)
    key = sorted(k for k in state["model"] if k.startswith("backbone.") and k.endswith(".weight"))[0]
    del state["model"][key]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(DataError, match=f"missing 1 .*{key.replace('.', '[.]')}"):
        stream_job.run(stream_cfg(stream_overrides, f"paths.pretrained={tmp_path / 'partial.pt'}"))


def pretrain_cfg(tmp_path, data_cfg, egotoy_splits, *extra):
    return compose("pretrain", [f"paths.root={tmp_path}", f"paths.data={data_cfg.root}",
                                f"paths.splits={egotoy_splits}", "epochs=1", "num_workers=0", "cache=false",
                                "data.max_clips=4", "threads=1", "wandb.mode=disabled", "export_to=null", *extra])


def test_pretrain_from_a_mismatching_checkpoint_stops_naming_keys(tmp_path, data_cfg, egotoy_splits, pretrained):
    from actlab.families.pretrain import job as pretrain

    with pytest.raises(DataError, match="backbone does not load completely.*backbone.net.blocks"):
        pretrain.run(pretrain_cfg(tmp_path, data_cfg, egotoy_splits, "model=slowfast_r101_ego4d",
                                  f"init_from={pretrained}"))


class Started(Exception):
    pass


def test_pretrain_starts_from_init_from_or_from_scratch(tmp_path, data_cfg, egotoy_splits, pretrained, monkeypatch):
    from actlab.families.pretrain import job as pretrain

    seen = []

    def stop_at_start(model, *args, **kw):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        raise Started

    monkeypatch.setattr(pretrain, "train_population", stop_at_start)
    with pytest.raises(Started):
        pretrain.run(pretrain_cfg(tmp_path / "a", data_cfg, egotoy_splits, f"init_from={pretrained}", "seed=1"))
    with pytest.raises(Started):
        pretrain.run(pretrain_cfg(tmp_path / "b", data_cfg, egotoy_splits, "seed=1"))   # init_from: null
    init = torch.load(pretrained, weights_only=False)["model"]
    assert all(torch.equal(seen[0][k], v) for k, v in init.items())
    assert not torch.equal(seen[1]["verb_head.weight"], init["verb_head.weight"])
