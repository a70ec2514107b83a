"""Stream building: ordering, overlap policy (each branch), clip sampling, filters, manifest hash."""
from __future__ import annotations

import pandas as pd
import pytest

from actlab.errors import DataError
from actlab.families.continual.data.stream_builder import StreamSpec, build_stream, manifest, stream_sha256
from test_data_split import row

ONE_SEC = StreamSpec(num_frames=5, sampling_rate=2, target_fps=10, drop_unseen=False)  # 1.0 s clips
EGOTOY = StreamSpec(num_frames=8, sampling_rate=2, target_fps=15, drop_unseen=False)   # 16/15 s clips


def frame(rows):
    return pd.DataFrame(rows).assign(origin_video_id=lambda d: d["video_uid"])


def spans(clips):
    return [(c.clip_uid, c.action_idx, c.start_sec, c.end_sec) for c in clips]


def test_clip_seconds():
    assert EGOTOY.clip_seconds == pytest.approx(16 / 15)
    assert StreamSpec(32, 2, 30).clip_seconds == pytest.approx(2.1333333)


def test_order_by_video_then_parent_start_then_action_idx():
    rows = [row("c3", "vB", 0, 10, 0, 0, 1, 3, 0), row("c2", "vA", 10, 20, 1, 2, 3, 2, 1),
            row("c2", "vA", 10, 20, 0, 0, 1, 2, 0), row("c1", "vA", 0, 10, 0, 0, 1, 1, 0)]
    clips, _ = build_stream(frame(rows), ONE_SEC)
    assert [(c.clip_uid, c.action_idx) for c in clips] == [("c1", 0), ("c2", 0), ("c2", 1), ("c3", 0)]
    assert [c.index for c in clips] == [0, 1, 2, 3]


def test_origin_video_id_not_video_uid_is_the_first_sort_key():
    # video_uid order: vA < vB; origin order: vB's recording ("rec1") before vA's ("rec2")
    rows = [row("cA", "vA", 0, 10, 0, 0, 1, 1, 0), row("cB", "vB", 50, 60, 0, 0, 1, 2, 0)]
    origins = {"vA": "rec2", "vB": "rec1"}
    df = pd.DataFrame(rows).assign(origin_video_id=lambda d: d["video_uid"].map(origins))
    clips, _ = build_stream(df, ONE_SEC)
    assert [c.clip_uid for c in clips] == ["cB", "cA"]
    assert [c.clip_uid for c in build_stream(frame(rows), ONE_SEC)[0]] == ["cA", "cB"]  # by video_uid


def test_rows_without_origin_sort_last_and_a_missing_column_is_an_error():
    # upstream: a NaN origin sorts after every origin (pandas na_position="last")
    rows = [row("cA", "vA", 0, 10, 0, 0, 1, 1, 0), row("cB", "vB", 0, 10, 0, 0, 1, 2, 0),
            row("cC", "vC", 0, 10, 0, 0, 1, 3, 0)]
    df = pd.DataFrame(rows).assign(origin_video_id=[None, "z", "a"])
    assert [c.clip_uid for c in build_stream(df, ONE_SEC)[0]] == ["cC", "cB", "cA"]
    with pytest.raises(DataError, match="origin_video_id.*make split"):
        build_stream(pd.DataFrame(rows), ONE_SEC)


def test_overlap_policy_every_branch():
    rows = [
        row("c1", "v", 0, 10, 0, 0.0, 2.0, 0, 0),  # kept whole -> 2 clips, cursor 2
        row("c1", "v", 0, 10, 1, 0.5, 1.5, 1, 0),  # ends before cursor -> dropped (overlap)
        row("c1", "v", 0, 10, 2, 1.5, 2.5, 2, 0),  # remainder 0.5 s < 1 clip -> dropped (short)
        row("c1", "v", 0, 10, 3, 1.0, 4.0, 3, 0),  # trimmed to [2, 4] -> 2 clips, cursor 4
        row("c1", "v", 0, 10, 4, 4.0, 5.0, 4, 0),  # starts at the cursor -> kept whole
        row("c2", "v", 10, 20, 0, 0.0, 1.0, 5, 0),  # other clip: its own cursor -> kept whole
    ]
    clips, stats = build_stream(frame(rows), ONE_SEC)
    assert spans(clips) == [("c1", 0, 0.0, 1.0), ("c1", 0, 1.0, 2.0), ("c1", 3, 2.0, 3.0), ("c1", 3, 3.0, 4.0),
                            ("c1", 4, 4.0, 5.0), ("c2", 0, 0.0, 1.0)]
    assert stats == {"n_annotations": 6, "n_dropped_overlap": 1, "n_trimmed": 1, "n_dropped_short": 1,
                     "n_dropped_unseen": 0, "n_clips": 6}


def test_multi_clip_annotation_sampled_in_annotation_time():
    """3.5 clip lengths -> 3 clips at annotation start + k * clip (upstream's bug broke clips 2 and 3)."""
    c = 16 / 15
    start = 10.0
    clips, _ = build_stream(frame([row("c1", "v", 0, 30, 0, start, start + 3.5 * c, 1, 2)]), EGOTOY)
    assert len(clips) == 3
    for k, clip in enumerate(clips):
        assert clip.start_sec == pytest.approx(start + k * c, abs=1e-6)
        assert clip.end_sec == pytest.approx(start + (k + 1) * c, abs=1e-6)
        assert clip.end_sec <= start + 3.5 * c
    # exactly 3 clip lengths in float arithmetic still gives 3 clips
    clips, _ = build_stream(frame([row("c1", "v", 0, 30, 0, 0.0, 3 * c, 1, 2)]), EGOTOY)
    assert len(clips) == 3


def test_short_annotation_gives_one_clip_from_its_start():
    clips, _ = build_stream(frame([row("c1", "v", 0, 30, 0, 2.0, 2.5, 1, 2)]), ONE_SEC)
    assert spans(clips) == [("c1", 0, 2.0, 3.0)]


def test_drop_unseen_on_and_off():
    rows = [row("c1", "v", 0, 10, 0, 0, 2, 1, 1), row("c1", "v", 0, 10, 1, 2, 3, 2, 2),
            row("c1", "v", 0, 10, 2, 3, 4, 1, 1)]
    on = StreamSpec(5, 2, 10, drop_unseen=True)
    clips, stats = build_stream(frame(rows), on, seen_actions={"1-1"})
    assert [c.action for c in clips] == ["1-1", "1-1", "1-1"] and [c.index for c in clips] == [0, 1, 2]
    assert stats["n_dropped_unseen"] == 1 and stats["n_clips"] == 3
    clips, stats = build_stream(frame(rows), ONE_SEC, seen_actions={"1-1"})
    assert [c.action for c in clips] == ["1-1", "1-1", "2-2", "1-1"] and stats["n_dropped_unseen"] == 0
    with pytest.raises(DataError, match="seen_actions"):
        build_stream(frame(rows), on, seen_actions=None)


def test_max_clips_truncates():
    rows = [row("c1", "v", 0, 10, 0, 0, 5, 1, 1)]
    clips, stats = build_stream(frame(rows), StreamSpec(5, 2, 10, drop_unseen=False, max_clips=2))
    assert [c.start_sec for c in clips] == [0.0, 1.0] and stats["n_clips"] == 2


def test_manifest_hash_deterministic_and_sensitive():
    rows = [row("c1", "v", 0, 10, 0, 0, 2, 1, 1), row("c2", "v", 10, 20, 0, 1, 2, 2, 2)]
    clips, _ = build_stream(frame(rows), ONE_SEC)
    sha = stream_sha256(clips)
    assert len(sha) == 64 and int(sha, 16) >= 0
    assert stream_sha256(build_stream(frame(rows[::-1]), ONE_SEC)[0]) == sha  # input order irrelevant
    assert manifest(clips)[0] == {"index": 0, "clip_uid": "c1", "video_uid": "v", "action_idx": 0,
                                  "start_sec": 0.0, "end_sec": 1.0, "verb_label": 1, "noun_label": 1}
    relabelled = [dict(r) for r in rows]
    relabelled[1]["noun_label"] = 3
    assert stream_sha256(build_stream(frame(relabelled), ONE_SEC)[0]) != sha
    shifted = [dict(r) for r in rows]
    shifted[0]["action_clip_start_sec"] = 0.01
    assert stream_sha256(build_stream(frame(shifted), ONE_SEC)[0]) != sha
    assert stream_sha256(clips[:-1]) != sha


def test_open_user_stream_and_split(tmp_path):
    import dataclasses

    from actlab.families.continual.data.ego4d import load_annotations
    from actlab.families.continual.data.split import make_splits, write_splits
    from actlab.families.continual.data.user_streams import UserStream, open_split, open_user_stream
    from test_data_errors import data_config
    from test_data_split import write_dataset
    from test_data_video import write_mp4

    write_dataset(tmp_path)
    write_splits(make_splits(load_annotations(tmp_path), criterion="paper", pool_size=2, train_users=[2],
                             test_users=[1]), tmp_path / "splits")
    for uid in ("cA1", "cA2", "cB1"):
        write_mp4(tmp_path / "clips" / f"{uid}.mp4")
    before = sorted(p for p in tmp_path.rglob("*"))
    # user 1: cA1 idx0 0-0, cA1 idx1 1-0 (unseen: pretrain has 0-0 1-1 2-2 3-3), cA2 idx0 0-0; 2 s -> 1 clip each
    stream = open_user_stream(data_config(tmp_path), 1)
    assert dataclasses.is_dataclass(stream) and isinstance(stream, UserStream) and stream.user == "1"
    assert [(c.clip_uid, c.action_idx) for c in stream.clips] == [("cA1", 0), ("cA2", 0)]
    assert stream.stats["n_dropped_unseen"] == 1 and stream.stats["n_skipped_bad_video"] == 0
    assert stream.sha256 == stream_sha256(stream.clips) and len(stream.dataset) == 2
    assert stream.dataset[1]["video"].shape == (3, 8, 64, 64)
    everything = open_user_stream(data_config(tmp_path, drop_unseen=False), "1")
    assert [(c.clip_uid, c.action_idx) for c in everything.clips] == [("cA1", 0), ("cA1", 1), ("cA2", 0)]
    assert everything.sha256 != stream.sha256
    assert [s.user for s in open_split(data_config(tmp_path), "train")] == ["2"]
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing cached on disk


@pytest.mark.slow
def test_egotoy_paper_split_streams(data_cfg, egotoy_splits):
    """The shared generated set: paper users present, stream sizes as the generator promises."""
    import json

    from actlab.families.continual.data.user_streams import open_split, open_user_stream

    test = json.loads((egotoy_splits / "test.json").read_text())
    assert sorted(test["users"]) == ["17", "23", "59"] and test["absent_users"] == []
    streams = open_split(data_cfg, "train")
    assert [s.user for s in streams] == ["265", "324", "68"]
    for s in streams:
        assert 120 <= len(s.clips) <= 210, (s.user, len(s.clips))
    # the generator overlaps annotations now and then, so the overlap policy acts on real streams
    assert sum(s.stats["n_dropped_overlap"] + s.stats["n_trimmed"] for s in streams) > 0
    again = open_user_stream(data_cfg, 68)
    assert again.sha256 == next(s.sha256 for s in streams if s.user == "68")
    assert again.dataset[len(again.clips) - 1]["video"].shape == (3, 8, 64, 64)
