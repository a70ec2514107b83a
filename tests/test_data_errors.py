"""Bad input: each error names the file / column / user at fault; skips are counted."""
from __future__ import annotations

import json
import re

import pytest
from omegaconf import OmegaConf

from actlab.families.continual.data.ego4d import load_annotations
from actlab.errors import DataError
from actlab.families.continual.data.split import make_splits, write_splits
from actlab.families.continual.data.user_streams import open_user_stream
from test_data_split import TRAIN_ROWS, VAL_ROWS, write_dataset
from test_data_video import write_mp4


def data_config(root, **over):
    cfg = {"root": str(root), "clips_dir": str(root / "clips"), "splits_dir": str(root / "splits"),
           "num_frames": 8, "sampling_rate": 2, "target_fps": 15, "short_side": 64, "crop_size": 64,
           "mean": [0.45] * 3, "std": [0.225] * 3, "drop_unseen": True, "max_clips": None,
           "on_bad_video": "raise"}
    return OmegaConf.create(cfg | over)


@pytest.fixture
def root(tmp_path):
    """Hand-built set with splits (train 2, test 1) and an mp4 for every clip of user 1."""
    write_dataset(tmp_path)
    splits = make_splits(load_annotations(tmp_path), criterion="paper", pool_size=2, train_users=[2],
                         test_users=[1])
    write_splits(splits, tmp_path / "splits")
    for uid in ("cA1", "cA2"):
        write_mp4(tmp_path / "clips" / f"{uid}.mp4")
    return tmp_path


def test_malformed_json_names_the_file(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "ego4d.json").write_text('{"videos": [')
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "ego4d.json"))):
        load_annotations(tmp_path)
    write_dataset(tmp_path)
    (tmp_path / "annotations" / "fho_lta_val.json").write_text("not json")
    with pytest.raises(DataError, match="malformed JSON in .*fho_lta_val.json"):
        load_annotations(tmp_path)


def test_missing_annotation_file_and_key(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "annotations" / "fho_lta_train.json").unlink()
    with pytest.raises(DataError, match="missing file: .*fho_lta_train.json"):
        load_annotations(tmp_path)
    (tmp_path / "annotations" / "fho_lta_train.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(DataError, match="fho_lta_train.json: expected an object with a `clips` list"):
        load_annotations(tmp_path)


def test_missing_column_names_column_and_file(tmp_path):
    val = [{k: v for k, v in r.items() if k != "noun_label"} for r in VAL_ROWS]
    write_dataset(tmp_path, val_rows=val)
    with pytest.raises(DataError, match=r"fho_lta_val.json: missing column `noun_label`"):
        load_annotations(tmp_path)
    val = [dict(r) for r in VAL_ROWS]
    del val[1]["noun_label"]
    write_dataset(tmp_path, val_rows=val)
    with pytest.raises(DataError, match=r"fho_lta_val.json: clips\[1\] has no value for column `noun_label`"):
        load_annotations(tmp_path)
    train = [dict(r) for r in TRAIN_ROWS]
    train[0]["action_clip_end_sec"] = "late"
    write_dataset(tmp_path, train_rows=train, val_rows=VAL_ROWS)
    with pytest.raises(DataError, match="fho_lta_train.json: non-numeric value in column `action_clip_end_sec`"):
        load_annotations(tmp_path)


def test_video_missing_from_metadata_is_the_nan_user(tmp_path):
    write_dataset(tmp_path, videos=[{"video_uid": "vA", "fb_participant_id": 1, "origin_video_id": "oA"}])
    df = load_annotations(tmp_path)
    assert set(df.loc[df["video_uid"] != "vA", "user"]) == {None}
    # no metadata, no origin (upstream's right join leaves it NaN); not an error: the video has no entry
    assert set(df.loc[df["video_uid"] != "vA", "origin_video_id"]) == {None}


def test_unknown_user_names_user_and_split_files(root):
    files = r"\(.*train.json, .*test.json, .*pretrain.json\)"
    with pytest.raises(DataError, match=r"user `4242` is in no split file " + files):
        open_user_stream(data_config(root), 4242)


def test_missing_split_file_is_named(root):
    (root / "splits" / "train.json").unlink()
    with pytest.raises(DataError, match="missing file: .*train.json"):
        open_user_stream(data_config(root), 1)


def test_missing_mp4_raises_naming_the_clip_file(root):
    (root / "clips" / "cA2.mp4").unlink()
    with pytest.raises(DataError, match=re.escape(str(root / "clips" / "cA2.mp4"))):
        open_user_stream(data_config(root), 1)


def test_corrupt_mp4_raises_on_decode_naming_the_file(root):
    (root / "clips" / "cA1.mp4").write_bytes(bytes(range(256)) * 40)
    stream = open_user_stream(data_config(root), 1)
    assert [c.clip_uid for c in stream.clips] == ["cA1", "cA2"]
    with pytest.raises(DataError, match=re.escape(f"cannot decode {root / 'clips' / 'cA1.mp4'}")):
        stream.dataset[0]
    assert stream.dataset[1]["video"].shape == (3, 8, 64, 64)


def test_bad_videos_skipped_and_counted(root):
    (root / "clips" / "cA2.mp4").unlink()
    cfg = data_config(root, on_bad_video="skip")
    stream = open_user_stream(cfg, 1)
    assert [(c.index, c.clip_uid) for c in stream.clips] == [(0, "cA1")]
    assert stream.stats["n_skipped_bad_video"] == 1 and stream.stats["n_clips"] == 1
    (root / "clips" / "cA1.mp4").write_bytes(b"\x00garbage" * 100)
    stream = open_user_stream(cfg, 1)
    assert stream.clips == [] and stream.stats["n_skipped_bad_video"] == 2
    assert stream.stats["n_bad_video_files"] == 2
    with pytest.raises(DataError, match="on_bad_video=`ignore`"):
        open_user_stream(data_config(root, on_bad_video="ignore"), 1)
