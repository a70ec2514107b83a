"""egotoy generator: Ego4D v1 schema, determinism, decodable mp4s, user ranking, stream shape."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pytest

from actlab.families.continual.data.egotoy import (CLIP_SECONDS, POOL_USERS, PRETRAIN_USERS, generate, plan,
                                summary)
from actlab.families.continual.data.egotoy_render import (FPS, NOUNS, SIZE, VERBS, ClipJob, Home, Segment,
                                       render_frames)
from actlab.families.continual.data.records import LTA_COLUMNS

SCALE = 0.2
JSON_FILES = ("ego4d.json", "taxonomy.json", "annotations/fho_lta_train.json",
              "annotations/fho_lta_val.json")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("egotoy_small"), seed=0, scale=SCALE, workers=2)


def _rows(root: Path) -> list[dict]:
    return [r for name in ("train", "val")
            for r in json.loads((root / "annotations" / f"fho_lta_{name}.json").read_text())["clips"]]


def _videos(root: Path) -> dict[str, dict]:
    return {v["video_uid"]: v for v in json.loads((root / "ego4d.json").read_text())["videos"]}


def test_schema_and_columns(small):
    taxonomy = json.loads((small / "taxonomy.json").read_text())
    assert taxonomy["verbs"] == list(VERBS) and taxonomy["nouns"] == list(NOUNS)
    assert len(VERBS) == 8 and len(NOUNS) == 16
    videos = _videos(small)
    for v in videos.values():
        assert {"video_uid", "fb_participant_id", "duration_sec"} <= set(v)
    for name in ("train", "val"):
        doc = json.loads((small / "annotations" / f"fho_lta_{name}.json").read_text())
        assert doc["split"] == name and doc["version"] and doc["clips"]
    rows = _rows(small)
    train_clips = {r["clip_uid"] for r in json.loads(
        (small / "annotations" / "fho_lta_train.json").read_text())["clips"]}
    val_clips = {r["clip_uid"] for r in json.loads(
        (small / "annotations" / "fho_lta_val.json").read_text())["clips"]}
    assert not train_clips & val_clips, "train/val are split by clip"
    for r in rows:
        assert set(LTA_COLUMNS) <= set(r), set(LTA_COLUMNS) - set(r)
        assert r["verb"] == VERBS[r["verb_label"]] and r["noun"] == NOUNS[r["noun_label"]]
        assert isinstance(r["verb_label"], int) and isinstance(r["action_idx"], int)
        clip_len = r["clip_parent_end_sec"] - r["clip_parent_start_sec"]
        assert 0 <= r["action_clip_start_sec"] < r["action_clip_end_sec"] <= clip_len + 1e-6
        assert r["clip_parent_end_sec"] <= videos[r["video_uid"]]["duration_sec"]
        assert (small / "clips" / f"{r['clip_uid']}.mp4").is_file()


def test_same_seed_same_json_bytes_other_seed_differs(small, tmp_path):
    # One worker here, two in the fixture: the output must not depend on the schedule either.
    again = generate(tmp_path / "again", seed=0, scale=SCALE, workers=1)
    for name in JSON_FILES:
        assert (small / name).read_bytes() == (again / name).read_bytes(), name
    other = plan(seed=1, scale=SCALE)
    assert summary(other) != summary(plan(seed=0, scale=SCALE))


def test_mp4_decodes_to_64x64_at_15fps(small):
    rows = _rows(small)
    clip_uids = sorted({r["clip_uid"] for r in rows})[:3]
    for uid in clip_uids:
        row = next(r for r in rows if r["clip_uid"] == uid)
        expected = round((row["clip_parent_end_sec"] - row["clip_parent_start_sec"]) * FPS)
        with av.open(str(small / "clips" / f"{uid}.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.average_rate == FPS
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == expected
        assert frames[0].shape == (SIZE, SIZE, 3)


def test_pool_users_rank_top6_by_minutes_and_one_null_video(small):
    videos = _videos(small)
    minutes: dict = defaultdict(float)
    seen = set()
    for r in _rows(small):
        key = (r["clip_uid"], r["video_uid"])
        if key in seen:
            continue
        seen.add(key)
        minutes[videos[r["video_uid"]]["fb_participant_id"]] += (
            r["clip_parent_end_sec"] - r["clip_parent_start_sec"]) / 60
    ranked = sorted((u for u in minutes if u is not None), key=lambda u: -minutes[u])
    assert tuple(ranked[:6]) == POOL_USERS
    assert set(ranked[6:]) == set(PRETRAIN_USERS)
    assert max(minutes[u] for u in PRETRAIN_USERS) < minutes[POOL_USERS[-1]]
    assert [v["fb_participant_id"] for v in videos.values()].count(None) == 1


def test_streams_follow_the_recordings_origin_order_not_the_video_uid(small):
    """Each video has its own recording id (origin_video_id, numbered in recording order, unlike
    the random video_uid); a stream built from the generated files visits videos in origin order,
    which for some user differs from the video_uid order, so a wrong sort key changes a stream."""
    from actlab.families.continual.data.ego4d import load_annotations
    from actlab.families.continual.data.stream_builder import StreamSpec, build_stream

    videos = _videos(small)
    assert all(isinstance(v["origin_video_id"], str) and v["origin_video_id"] != uid for uid, v in videos.items())
    df = load_annotations(small)
    spec = StreamSpec(num_frames=8, sampling_rate=2, target_fps=FPS, drop_unseen=False)
    differs = 0
    for uid in POOL_USERS:
        clips, _ = build_stream(df[df["user"] == str(uid)], spec)
        visited = list(dict.fromkeys(c.video_uid for c in clips))          # videos in stream order
        assert [videos[v]["origin_video_id"] for v in visited] == sorted(videos[v]["origin_video_id"] for v in visited)
        differs += visited != sorted(visited)
    assert differs > 0


def test_overlapping_annotations_exist_of_both_kinds(small):
    by_clip = defaultdict(list)
    for r in _rows(small):
        by_clip[r["clip_uid"]].append(r)
    partial = inside = 0
    for rows in by_clip.values():
        cursor = -1.0
        for r in sorted(rows, key=lambda r: r["action_idx"]):
            if r["action_clip_start_sec"] < cursor:
                if r["action_clip_end_sec"] > cursor:
                    partial += 1
                else:
                    inside += 1
            cursor = max(cursor, r["action_clip_end_sec"])
    assert partial > 0 and inside > 0


def test_default_scale_stream_sizes_and_habits():
    users = plan(seed=0, scale=1.0)
    stats = summary(users)
    for uid in POOL_USERS:
        assert 120 <= stats[str(uid)]["samples"] <= 220, (uid, stats[str(uid)])
        assert 2 <= stats[str(uid)]["videos"] <= 3
    pool = {str(u) for u in POOL_USERS}
    pretrain = sum(s["samples"] for u, s in stats.items() if u not in pool)
    assert 1400 <= pretrain <= 2500
    seen = {(a["verb"], a["noun"]) for u in users if u.user not in POOL_USERS
            for v in u.videos for c in v.clips for a in c.annotations}
    assert len(seen) > 64, "the population covers most of the 128 actions"
    for u in users:
        if u.user not in POOL_USERS:
            continue
        labels = [(a["verb"], a["noun"]) for v in u.videos for c in v.clips for a in c.annotations]
        assert sum(lab in seen for lab in labels) / len(labels) > 0.8
        repeats = np.mean([a == b for a, b in zip(labels, labels[1:])])
        assert repeats > 0.3, "habit chains are sticky, so streams are label-correlated"
        assert len(set(labels)) < 20


def test_scale_multiplies_samples_and_rejects_nonpositive():
    small = sum(s["samples"] for s in summary(plan(0, 0.5)).values())
    full = sum(s["samples"] for s in summary(plan(0, 1.0)).values())
    assert 0.4 < small / full < 0.6
    with pytest.raises(ValueError, match="scale"):
        plan(0, 0.0)


def _job(verb: int) -> ClipJob:
    home = Home(background=(0.4, 0.4, 0.4), texture_amp=0.0, texture_freq=0.2, texture_angle=0.0,
                vignette_centre=(32.0, 32.0), gain=1.0, cast=(1.0, 1.0, 1.0), object_size=1.0,
                position=(32.0, 32.0), noise=0.0)
    seg = Segment(start_frame=0, end_frame=48, verb=verb, noun=4, cx=32.0, cy=32.0, phase=0.3)
    return ClipJob(path="unused.mp4", seed=0, n_frames=48, home=home, video_gain=1.0,
                   texture_phase=0.0, segments=(seg,), codec="mpeg4")


@pytest.mark.parametrize("verb", range(len(VERBS)))
def test_every_window_of_an_action_shows_motion(verb):
    frames = render_frames(_job(verb)).astype(float)
    window = round(CLIP_SECONDS * FPS)
    for start in range(0, len(frames) - window + 1):
        sampled = frames[start:start + window:2]
        assert np.abs(np.diff(sampled, axis=0)).max() > 60, (VERBS[verb], start)


def test_opposite_motions_differ():
    def centroid_x(verb):
        f = render_frames(_job(verb)).astype(float)[:6]
        mask = (np.abs(f - f[0, 0, 0]).sum(-1) > 0.3 * 255)
        return [np.nonzero(m)[1].mean() for m in mask]
    left, right = np.diff(centroid_x(0)), np.diff(centroid_x(1))
    assert np.median(left) < 0 < np.median(right)
