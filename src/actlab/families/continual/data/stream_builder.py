"""One user's stream: annotation rows -> ordered, non-overlapping fixed-length clips.

Protocol (docs/protocol.md): order by (origin_video_id, clip_parent_start_sec,
action_idx); first-come-first-served overlap policy within a clip; each kept annotation cut into
consecutive clips of `clip_seconds`, sampled in annotation-relative time (the fixed version of
upstream's untrimmed sampler, whose 2nd+ clips went out of range); actions unseen in pretraining
dropped when `drop_unseen`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from actlab.errors import DataError
from actlab.families.continual.data.records import LTA_COLUMNS, StreamClip, action_key

ORDER = ("origin_video_id", "clip_parent_start_sec", "action_idx")
# Float tolerance when counting whole clips in an annotation (3 x 1.0667 s must give 3, not 2).
EPS = 1e-6
DECIMALS = 6  # manifest times are rounded so the hash does not depend on float noise


@dataclass(frozen=True)
class StreamSpec:
    num_frames: int
    sampling_rate: int
    target_fps: float
    drop_unseen: bool = True
    max_clips: int | None = None

    @property
    def clip_seconds(self) -> float:
        return self.num_frames * self.sampling_rate / self.target_fps


def order_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Stream order; clip_uid breaks remaining ties so the order never depends on input order.
    A missing (None) origin sorts after every origin, as upstream's NaN does."""
    if "origin_video_id" not in rows.columns:
        raise DataError("stream rows have no column `origin_video_id` (the first key of the stream order, "
                        "from ego4d.json): split files written before it was read; re-run `make split`")
    return rows.sort_values([*ORDER, "clip_uid"], kind="mergesort", na_position="last").reset_index(drop=True)


def clip_offsets(duration: float, clip_seconds: float) -> list[float]:
    """Annotation-relative start times of the consecutive clips that fit in `duration`.

    An annotation shorter than one clip still gives one clip from its start (it was kept by the
    overlap policy, and upstream samples it too).
    """
    n = max(1, int(math.floor(duration / clip_seconds + EPS)))
    return [k * clip_seconds for k in range(n)]


def build_stream(rows: pd.DataFrame, spec: StreamSpec,
                 seen_actions: set[str] | None = None) -> tuple[list[StreamClip], dict[str, int]]:
    """Rows of one user -> (stream clips, stats).

    stats: n_annotations, n_dropped_overlap (ends at/before the cursor), n_trimmed,
    n_dropped_short (remainder after the cursor shorter than one clip), n_dropped_unseen (stream
    samples whose action is not in `seen_actions`; only with drop_unseen), n_clips.
    """
    missing = [c for c in LTA_COLUMNS if c not in rows.columns]
    if missing:
        raise DataError(f"stream rows: missing column(s) {missing}")
    if spec.drop_unseen and seen_actions is None:
        raise DataError("drop_unseen needs the pretrain action set (seen_actions)")
    clip_s = spec.clip_seconds
    stats = {"n_annotations": len(rows), "n_dropped_overlap": 0, "n_trimmed": 0, "n_dropped_short": 0,
             "n_dropped_unseen": 0, "n_clips": 0}
    cursors: dict[str, float] = {}  # clip_uid -> end of its last kept annotation
    clips: list[StreamClip] = []
    for r in order_rows(rows).itertuples(index=False):
        start, end = float(r.action_clip_start_sec), float(r.action_clip_end_sec)
        cursor = cursors.get(r.clip_uid)
        if cursor is not None and start < cursor:
            if end <= cursor:
                stats["n_dropped_overlap"] += 1
                continue
            if end - cursor < clip_s - EPS:
                stats["n_dropped_short"] += 1
                continue
            start = cursor
            stats["n_trimmed"] += 1
        cursors[r.clip_uid] = end
        action = action_key(r.verb_label, r.noun_label)
        for offset in clip_offsets(end - start, clip_s):
            if spec.drop_unseen and action not in seen_actions:
                stats["n_dropped_unseen"] += 1
                continue
            clips.append(StreamClip(
                index=len(clips), clip_uid=str(r.clip_uid), video_uid=str(r.video_uid),
                action_idx=int(r.action_idx), start_sec=round(start + offset, DECIMALS),
                end_sec=round(start + offset + clip_s, DECIMALS),
                verb_label=int(r.verb_label), noun_label=int(r.noun_label)))
    if spec.max_clips is not None:
        clips = clips[:spec.max_clips]
    stats["n_clips"] = len(clips)
    return clips, stats


def manifest(clips: list[StreamClip]) -> list[dict[str, Any]]:
    """index -> clip_uid, video_uid, action_idx, start/end (s, clip time), verb/noun labels."""
    return [c.to_dict() for c in clips]


def stream_sha256(clips: list[StreamClip]) -> str:
    """SHA-256 of the canonical manifest JSON: equal streams at two sites give equal hashes."""
    text = json.dumps(manifest(clips), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
