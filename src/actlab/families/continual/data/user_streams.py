"""User streams from a data config: split files -> stream clips -> a decoding dataset.

A stream is rebuilt from the split files on every call (cheap), and its SHA-256 proves two sites
built the same stream. Its samples come from the decode cache (`data.cache_dir`,
data/clip_store.py) when the stream's entry is there, else they are decoded: the same tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import logging
from typing import Any

import pandas as pd
from torch.utils.data import Dataset

from actlab.atomic import read_json
from actlab.errors import DataError
from actlab.families.continual.data.records import StreamClip
from actlab.families.continual.data.split import SPLITS
from actlab.families.continual.data.stream_builder import StreamSpec, build_stream, stream_sha256
from actlab.families.continual.data.clip_store import CachedClips, find_entry
from actlab.families.continual.data.video import ClipDataset, clip_path, probe_video

log = logging.getLogger(__name__)

LOOKUP_ORDER = ("train", "test", "pretrain")
BAD_VIDEO = ("raise", "skip")


@dataclass
class UserStream:
    user: str
    clips: list[StreamClip]
    sha256: str
    stats: dict[str, int]
    dataset: Dataset = field(repr=False)     # ClipDataset, or CachedClips when the decode cache has it


def split_path(data_cfg: Any, name: str) -> Path:
    return Path(data_cfg.splits_dir) / f"{name}.json"


def load_split(data_cfg: Any, name: str) -> dict[str, Any]:
    if name not in SPLITS:
        raise DataError(f"split `{name}` unknown; expected one of {SPLITS}")
    doc = read_json(split_path(data_cfg, name))
    for key in ("users", "user_action_sets"):
        if key not in doc:
            raise DataError(f"{split_path(data_cfg, name)}: missing key `{key}`")
    return doc


def seen_actions(data_cfg: Any) -> set[str]:
    """Actions of the pretrain population (the pretrain split's user_agnostic action set)."""
    doc = load_split(data_cfg, "pretrain")
    return set(doc["user_action_sets"]["user_agnostic"]["action_to_name_dict"])


def seen_labels(data_cfg: Any) -> tuple[set[int], set[int]]:
    """Verb and noun labels of the pretrain population (the sets unseen-class masking lets through)."""
    path = split_path(data_cfg, "pretrain")
    sets = load_split(data_cfg, "pretrain")["user_action_sets"].get("user_agnostic")
    if not isinstance(sets, dict):
        raise DataError(f"{path}: missing key `user_action_sets.user_agnostic`")
    out = []
    for task in ("verb", "noun"):
        key = f"{task}_to_name_dict"
        if key not in sets:
            raise DataError(f"{path}: missing key `user_action_sets.user_agnostic.{key}`")
        try:
            out.append({int(label) for label in sets[key]})
        except ValueError as err:
            raise DataError(f"{path}: `user_action_sets.user_agnostic.{key}` has a non-integer label ({err})")
    return out[0], out[1]


def spec_of(data_cfg: Any) -> StreamSpec:
    return StreamSpec(num_frames=int(data_cfg.num_frames), sampling_rate=int(data_cfg.sampling_rate),
                      target_fps=float(data_cfg.target_fps), drop_unseen=bool(data_cfg.drop_unseen),
                      max_clips=None if data_cfg.get("max_clips") is None else int(data_cfg.max_clips))


def make_stream(data_cfg: Any, user: str, rows: list[dict[str, Any]], seen: set[str] | None,
                use_cache: bool = True) -> UserStream:
    on_bad = data_cfg.get("on_bad_video", "raise")
    if on_bad not in BAD_VIDEO:
        raise DataError(f"data.on_bad_video=`{on_bad}`: expected one of {BAD_VIDEO}")
    clips, stats = build_stream(pd.DataFrame(rows), spec_of(data_cfg), seen)
    uids = sorted({c.clip_uid for c in clips})
    if on_bad == "skip":
        bad = {u for u in uids if probe_video(clip_path(data_cfg.clips_dir, u)) is not None}
        kept = [c for c in clips if c.clip_uid not in bad]
        stats["n_skipped_bad_video"] = len(clips) - len(kept)
        stats["n_bad_video_files"] = len(bad)
        clips = [StreamClip(**(c.to_dict() | {"index": i})) for i, c in enumerate(kept)]
        stats["n_clips"] = len(clips)
    else:
        # Existence is cheap to check up front; a corrupt file raises when its sample is decoded.
        for u in uids:
            path = clip_path(data_cfg.clips_dir, u)
            if not path.is_file():
                raise DataError(f"user {user}: missing video file {path} (clip_uid {u}); "
                                f"set data.on_bad_video=skip to drop its samples")
        stats["n_skipped_bad_video"] = 0
    decoding = ClipDataset(clips, data_cfg.clips_dir, num_frames=int(data_cfg.num_frames),
                           short_side=int(data_cfg.short_side), crop_size=int(data_cfg.crop_size),
                           mean=list(data_cfg.mean), std=list(data_cfg.std),
                           decoder=str(data_cfg.get("decoder", "pyav")), pixels=str(data_cfg.get("pixels", "float")))
    sha = stream_sha256(clips)
    dataset: Dataset = decoding
    cache_dir = data_cfg.get("cache_dir") if use_cache else None
    # the cache holds uint8 clips: a float-pixel stream must decode to stay upstream's float path
    entry = find_entry(decoding, sha, cache_dir) if cache_dir and decoding.pixels == "uint8" else None
    if entry is not None:
        log.info("user %s: reading the decode cache %s", user, entry.array)
        dataset = CachedClips(clips, entry, decoding.mean, decoding.std)
    return UserStream(user=user, clips=clips, sha256=sha, stats=stats, dataset=dataset)


def open_user_stream(data_cfg: Any, user: Any, use_cache: bool = True) -> UserStream:
    """The stream of `user` (an fb_participant_id; "nan" for the NaN user), from whichever split holds it.
    `use_cache=False`: always a decoding ClipDataset (what the decode cache is written from)."""
    user = str(user)
    for name in LOOKUP_ORDER:
        doc = load_split(data_cfg, name)
        if user in doc["users"]:
            seen = seen_actions(data_cfg) if data_cfg.drop_unseen else None
            return make_stream(data_cfg, user, doc["users"][user], seen, use_cache=use_cache)
    files = ", ".join(str(split_path(data_cfg, n)) for n in LOOKUP_ORDER)
    raise DataError(f"user `{user}` is in no split file ({files})")


def open_split(data_cfg: Any, name: str) -> list[UserStream]:
    """Every user stream of one split, users sorted as strings (the split file's key order)."""
    doc = load_split(data_cfg, name)
    seen = seen_actions(data_cfg) if data_cfg.drop_unseen else None
    return [make_stream(data_cfg, user, rows, seen) for user, rows in doc["users"].items()]
