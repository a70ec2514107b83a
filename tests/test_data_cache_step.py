"""The decode-cache preparation step: which sweeps get it, and a stream job reading its entries
gives the predictions decoding gives."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
from conftest import compose

from actlab.families.continual import FAMILY, artifacts
from actlab.families.continual.data.decode_once import prepare


def step_enabled(cfg) -> bool:
    (step,) = [s for s in FAMILY.steps if s.name == "decode_cache"]
    assert step.before and not step.gpus and step.script == "jobs/decode_cache.py"
    assert step.args("ego4d_momentum", cfg) == ["experiment=ego4d_momentum"]
    return step.enabled(cfg)


def test_ego4d_sweeps_decode_once_and_egotoy_only_when_asked():
    assert step_enabled(compose("stream", ["experiment=ego4d_momentum"]))
    assert not step_enabled(compose("stream", ["experiment=egotoy_main"]))
    assert step_enabled(compose("stream", ["experiment=egotoy_main", "data.cache_prepare=true"]))
    assert not step_enabled(compose("stream", ["experiment=egotoy_main", "data.cache_prepare=true",
                                               "data.cache_dir=null"]))
    cfg = compose("stream", ["experiment=egotoy_main", "paths.root=/r"])
    assert cfg.data.cache_dir == "/r/cache"                       # paths.cache's default


@pytest.mark.slow
def test_stream_job_reads_the_prepared_cache_with_identical_predictions(stream_overrides, data_cfg, tmp_path, capsys):
    from actlab.families.continual.engine import stream_job

    clips = tmp_path / "clips"
    shutil.copytree(data_cfg.clips_dir, clips)
    common = [*stream_overrides, "experiment=egotoy_main", "data.max_clips=12", f"data.clips_dir={clips}",
              "wandb.mode=disabled", "method=finetune"]
    decoded = stream_job.run(compose("stream", [*common, "user=68", "submitted=20260101T000000Z"]))

    done = prepare(compose("decode_cache", [*common, "users=['68','265']"]), workers=0)
    assert [(p.user, p.written, p.n_clips) for p in done] == [("68", True, 12), ("265", True, 12)]
    assert "2 user stream(s), 24 clips, at most 2.4 MB" in capsys.readouterr().out   # 24 x 3 x 8 x 64 x 64 bytes
    assert not any(p.written for p in prepare(compose("decode_cache", [*common, "users=['68']"]), workers=0))
    # Same-size garbage in place of every video: the key still matches, decoding would fail, so
    # the second run can only have read the cache.
    for mp4 in clips.glob("*.mp4"):
        mp4.write_bytes(bytes(mp4.stat().st_size))
    cached = stream_job.run(compose("stream", [*common, "user=68", "submitted=20260101T000001Z"]))
    assert cached != decoded
    pd.testing.assert_frame_equal(pd.read_parquet(cached / artifacts.PREDICTIONS),
                                  pd.read_parquet(decoded / artifacts.PREDICTIONS))
