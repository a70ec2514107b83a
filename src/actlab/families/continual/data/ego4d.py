"""Read Ego4D v1 long-term-anticipation annotations (real files or the egotoy set) into one table.

Layout (defaults, relative to `root`): `ego4d.json` (video metadata) and
`annotations/fho_lta_{train,val}.json` (key `clips`: one row per action annotation). Real Ego4D
metadata has many more keys per video; only `video_uid`, `fb_participant_id` and
`origin_video_id` are read. A missing or null participant id makes the row belong to the one
"NaN user". `origin_video_id` (the recording's own id, a string for every real video) is the first
key of the stream order (docs/protocol.md); a video without one stops loading
(`missing_origin: error`) or, as upstream's NaN origin, sorts last (`missing_origin: last`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from actlab.atomic import read_json
from actlab.errors import DataError
from actlab.families.continual.data.records import LTA_COLUMNS

ANNOTATION_FILES = ("fho_lta_train.json", "fho_lta_val.json")
INT_COLUMNS = ("action_idx", "verb_label", "noun_label")
FLOAT_COLUMNS = ("clip_parent_start_sec", "clip_parent_end_sec", "action_clip_start_sec", "action_clip_end_sec")
MISSING_ORIGIN = ("error", "last")


@dataclass(frozen=True)
class VideoMeta:
    user: str | None             # None = the NaN user
    origin_video_id: str | None  # None only with missing_origin="last"


def user_id(participant: Any) -> str | None:
    """fb_participant_id -> user id string; None for a missing/null/NaN id (the NaN user)."""
    if participant is None or (isinstance(participant, float) and math.isnan(participant)):
        return None
    if isinstance(participant, float) and participant.is_integer():
        participant = int(participant)
    return str(participant)


def load_videos(path: Path, missing_origin: str = "error") -> dict[str, VideoMeta]:
    """video_uid -> (user id, origin_video_id) from ego4d.json (`{"videos": [...]}`)."""
    if missing_origin not in MISSING_ORIGIN:
        raise ValueError(f"data.missing_origin must be one of {MISSING_ORIGIN}, got {missing_origin!r}")
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), list):
        raise DataError(f"{path}: expected an object with a `videos` list")
    out: dict[str, VideoMeta] = {}
    for i, video in enumerate(meta["videos"]):
        if not isinstance(video, dict) or "video_uid" not in video:
            raise DataError(f"{path}: videos[{i}] has no key `video_uid`")
        where = f"{path}: videos[{i}] (video_uid {video['video_uid']})"
        origin = video.get("origin_video_id")
        if origin is None and missing_origin == "error":
            raise DataError(f"{where} has no `origin_video_id`, the first key of the stream order; "
                            f"set data.missing_origin=last to sort such videos last, as upstream does")
        if origin is not None and not isinstance(origin, str):
            raise DataError(f"{where}: `origin_video_id` must be a string, got {origin!r}")
        out[video["video_uid"]] = VideoMeta(user=user_id(video.get("fb_participant_id")), origin_video_id=origin)
    return out


def load_clip_rows(path: Path) -> pd.DataFrame:
    """The `clips` rows of one LTA annotation file, with the LTA columns checked and typed."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("clips"), list):
        raise DataError(f"{path}: expected an object with a `clips` list")
    df = pd.DataFrame(data["clips"])
    for col in LTA_COLUMNS:
        if col not in df.columns:
            raise DataError(f"{path}: missing column `{col}` in `clips` rows")
        if df[col].isna().any():
            raise DataError(f"{path}: clips[{int(df[col].isna().argmax())}] has no value for column `{col}`")
    try:
        for col in INT_COLUMNS:
            df[col] = df[col].astype("int64")
        for col in FLOAT_COLUMNS:
            df[col] = df[col].astype("float64")
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: non-numeric value in column `{col}`: {e}") from e
    return df


def load_annotations(root: str | Path, metadata: str | Path | None = None,
                     annotations_dir: str | Path | None = None, missing_origin: str = "error") -> pd.DataFrame:
    """Train + val LTA rows joined to their video's metadata: adds `user` (str, None = NaN user),
    `fb_participant_id` (as in the metadata), `origin_video_id` (from the metadata; None for a
    video the metadata lacks) and `source` (the annotation file's split name)."""
    root = Path(root)
    metadata = Path(metadata) if metadata is not None else root / "ego4d.json"
    annotations_dir = Path(annotations_dir) if annotations_dir is not None else root / "annotations"
    videos = load_videos(metadata, missing_origin)
    frames = []
    for name in ANNOTATION_FILES:
        df = load_clip_rows(annotations_dir / name)
        df["source"] = name.removeprefix("fho_lta_").removesuffix(".json")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    # A video absent from the metadata has no known participant or origin: it joins the NaN user,
    # as a right join of the metadata on video_uid does upstream.
    meta = [videos.get(v, VideoMeta(None, None)) for v in df["video_uid"]]
    df["user"] = pd.Series([m.user for m in meta], dtype=object, index=df.index)
    df["fb_participant_id"] = pd.Series([int(u) if u is not None and u.isdigit() else u for u in df["user"]],
                                        dtype=object, index=df.index)
    df["origin_video_id"] = pd.Series([m.origin_video_id for m in meta], dtype=object, index=df.index)
    return df
