"""User split on a hand-built Ego4D-format data set (expected values computed by hand)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actlab.errors import DataError
from actlab.families.continual.data.ego4d import load_annotations
from actlab.families.continual.data.split import NAN_USER, make_splits, user_minutes, write_splits


def row(clip_uid, video_uid, parent_start, parent_end, action_idx, start, end, verb_label, noun_label):
    return {"clip_uid": clip_uid, "video_uid": video_uid, "clip_parent_start_sec": parent_start,
            "clip_parent_end_sec": parent_end, "action_idx": action_idx, "action_clip_start_sec": start,
            "action_clip_end_sec": end, "verb": f"verb{verb_label}", "verb_label": verb_label,
            "noun": f"noun{noun_label}", "noun_label": noun_label, "clip_id": 0}  # clip_id: extra real-Ego4D key


# Clip minutes by user: nan 20 + 1 = 21 (vE null id, vF no key), "2" 10, "1" 5 + 2 = 7, "4" 3, "3" 1.
TRAIN_ROWS = [
    row("cA1", "vA", 0, 300, 0, 1, 3, 0, 0), row("cA1", "vA", 0, 300, 1, 4, 6, 1, 0),  # cA1 counts once
    row("cB1", "vB", 0, 600, 0, 1, 3, 0, 1),
    row("cC1", "vC", 0, 60, 0, 1, 3, 2, 2),
    row("cE1", "vE", 0, 1200, 0, 1, 3, 0, 0),
]
VAL_ROWS = [
    row("cA2", "vA", 300, 420, 0, 1, 3, 0, 0),
    row("cD1", "vD", 0, 180, 0, 1, 3, 1, 1),
    row("cF1", "vF", 0, 60, 0, 1, 3, 3, 3),
]
# origin_video_id: the recording's own (university-assigned) id, a string for every video.
VIDEOS = [
    {"video_uid": "vA", "fb_participant_id": 1, "duration_sec": 500.0, "scenarios": ["Cooking"],
     "origin_video_id": "subject1_video0"},
    {"video_uid": "vB", "fb_participant_id": 2, "duration_sec": 700.0, "origin_video_id": "subject2_video0"},
    {"video_uid": "vC", "fb_participant_id": 3, "origin_video_id": "subject3_video0"},
    {"video_uid": "vD", "fb_participant_id": 4, "origin_video_id": "subject4_video0"},
    {"video_uid": "vE", "fb_participant_id": None, "origin_video_id": "x_video0"},
    {"video_uid": "vF", "origin_video_id": "x_video1"},  # real ego4d.json: the participant key may be missing
]


def write_dataset(root: Path, train_rows=TRAIN_ROWS, val_rows=VAL_ROWS, videos=VIDEOS) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "ego4d.json").write_text(json.dumps({"date": "x", "version": "v1", "videos": videos}))
    for name, rows in (("train", train_rows), ("val", val_rows)):
        (root / "annotations" / f"fho_lta_{name}.json").write_text(
            json.dumps({"version": "v1", "split": name, "clips": rows}))
    return root


@pytest.fixture
def df(tmp_path):
    return load_annotations(write_dataset(tmp_path))


def test_load_joins_users_and_merges_train_val(df):
    assert len(df) == 8
    assert sorted(df["source"].unique()) == ["train", "val"]
    assert dict(zip(df["clip_uid"], df["user"])) == {
        "cA1": "1", "cA2": "1", "cB1": "2", "cC1": "3", "cD1": "4", "cE1": None, "cF1": None}
    # origin_video_id comes from the metadata, not from the annotation's video_uid
    assert dict(zip(df["clip_uid"], df["origin_video_id"])) == {
        "cA1": "subject1_video0", "cA2": "subject1_video0", "cB1": "subject2_video0", "cC1": "subject3_video0",
        "cD1": "subject4_video0", "cE1": "x_video0", "cF1": "x_video1"}
    assert df["verb_label"].dtype == np.int64 and df["action_clip_start_sec"].dtype == np.float64


@pytest.mark.parametrize("missing", [{}, {"origin_video_id": None}])
def test_video_without_origin_is_an_error_naming_file_and_video(tmp_path, missing):
    """Real metadata gives every video an origin_video_id (a string); without it the stream order
    is unknown, so loading stops instead of falling back to the video_uid."""
    videos = [dict(v) for v in VIDEOS]
    del videos[1]["origin_video_id"]
    videos[1] |= missing
    write_dataset(tmp_path, videos=videos)
    with pytest.raises(DataError, match=r"ego4d.json: videos\[1\] \(video_uid vB\) has no `origin_video_id`"
                                        r".*data.missing_origin"):
        load_annotations(tmp_path)


def test_missing_origin_last_is_upstreams_nan_origin(tmp_path):
    """data.missing_origin=last: the origin stays empty (None) and the stream sorts those rows
    after every other origin, as upstream's NaN origin does."""
    videos = [dict(v) for v in VIDEOS]
    del videos[1]["origin_video_id"]
    df = load_annotations(write_dataset(tmp_path, videos=videos), missing_origin="last")
    assert df.loc[df["video_uid"] == "vB", "origin_video_id"].tolist() == [None]
    assert df.loc[df["video_uid"] == "vA", "origin_video_id"].tolist() == ["subject1_video0"] * 3  # cA1 x2, cA2
    with pytest.raises(ValueError, match="data.missing_origin"):
        load_annotations(tmp_path, missing_origin="video_uid")


def test_origin_must_be_a_string(tmp_path):
    videos = [dict(v) for v in VIDEOS]
    videos[2]["origin_video_id"] = 7
    with pytest.raises(DataError, match=r"videos\[2\] \(video_uid vC\): `origin_video_id` must be a string"):
        load_annotations(write_dataset(tmp_path, videos=videos))


def test_ranking_by_clip_minutes_counts_each_clip_once(df):
    minutes = user_minutes(df)
    assert list(minutes.index) == [NAN_USER, "2", "1", "4", "3"]
    assert minutes.to_dict() == pytest.approx({NAN_USER: 21.0, "2": 10.0, "1": 7.0, "4": 3.0, "3": 1.0})


def test_paper_split_nan_user_to_pretrain_and_absent_users_reported(df):
    s = make_splits(df, criterion="paper", pool_size=2, train_users=[2], test_users=[1, 999])
    assert s["train"].users == ["2"] and s["test"].users == ["1"]
    assert s["pretrain"].users == [NAN_USER, "4", "3"]  # NaN user never enters the pool
    assert s["test"].absent_users == ["999"] and s["train"].absent_users == []
    assert sorted(s["pretrain"].rows["clip_uid"].unique()) == ["cC1", "cD1", "cE1", "cF1"]
    assert s["test"].counts() == {"users": 1, "clips": 2, "annotations": 3}


def test_paper_split_rejects_user_in_both_lists(df):
    with pytest.raises(ValueError, match="both"):
        make_splits(df, criterion="paper", pool_size=2, train_users=[2], test_users=[2])


def test_random_split_permutes_pool_with_seed(df):
    pool = ["2", "1", "4"]
    for seed in range(4):
        s = make_splits(df, criterion="random", seed=seed, pool_size=3, n_train=1, n_test=1)
        perm = [pool[i] for i in np.random.default_rng(seed).permutation(3)]
        assert (s["train"].users, s["test"].users) == ([perm[0]], [perm[1]])
        assert s["train"].unassigned_pool_users == [u for u in pool if u == perm[2]]
        assert s["pretrain"].users == [NAN_USER, "3"]  # outside the pool only
    trains = {make_splits(df, criterion="random", seed=k, pool_size=3, n_train=1, n_test=1)["train"].users[0]
              for k in range(10)}
    assert len(trains) > 1
    with pytest.raises(ValueError, match="pool has 3"):
        make_splits(df, criterion="random", pool_size=3, n_train=2, n_test=2)
    with pytest.raises(ValueError, match="criterion `best`"):
        make_splits(df, criterion="best")


def test_write_splits_schema_and_action_sets(df, tmp_path):
    splits = make_splits(df, criterion="paper", pool_size=2, train_users=[2], test_users=[1, 999])
    paths = write_splits(splits, tmp_path / "splits")
    assert sorted(p.name for p in paths.values()) == ["pretrain.json", "test.json", "train.json"]
    test = json.loads((tmp_path / "splits" / "test.json").read_text())
    assert test["split"] == "test" and test["absent_users"] == ["999"]
    assert list(test["users"]) == ["1"] and len(test["clips"]) == 3 == len(test["users"]["1"])
    assert {r["clip_uid"] for r in test["clips"]} == {"cA1", "cA2"}
    sets = test["user_action_sets"]
    assert set(sets) == {"user_agnostic", "1"}
    # user 1: actions 0-0 (x2: cA1 idx 0, cA2), 1-0 (x1)
    assert sets["1"]["action_to_name_dict"] == {"0-0": {"name": "verb0-noun0", "count": 2},
                                                 "1-0": {"name": "verb1-noun0", "count": 1}}
    assert sets["1"]["verb_to_name_dict"] == {"0": {"name": "verb0", "count": 2}, "1": {"name": "verb1", "count": 1}}
    assert sets["1"]["noun_to_name_dict"] == {"0": {"name": "noun0", "count": 3}}
    pre = json.loads((tmp_path / "splits" / "pretrain.json").read_text())
    assert set(pre["users"]) == {NAN_USER, "3", "4"}
    assert {r["fb_participant_id"] for r in pre["users"][NAN_USER]} == {None}
    # pretrain actions: cC1 2-2, cD1 1-1, cE1 0-0, cF1 3-3
    assert sorted(pre["user_action_sets"]["user_agnostic"]["action_to_name_dict"]) == ["0-0", "1-1", "2-2", "3-3"]
    # same input, same bytes
    first = (tmp_path / "splits" / "pretrain.json").read_bytes()
    write_splits(splits, tmp_path / "splits")
    assert (tmp_path / "splits" / "pretrain.json").read_bytes() == first
