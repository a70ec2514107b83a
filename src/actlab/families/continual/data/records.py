"""Typed records that cross module boundaries in the data pipeline."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Columns every LTA `clips` row must have (fho_lta_{train,val}.json, key "clips").
LTA_COLUMNS = (
    "clip_uid", "video_uid", "clip_parent_start_sec", "clip_parent_end_sec", "action_idx",
    "action_clip_start_sec", "action_clip_end_sec", "verb", "verb_label", "noun", "noun_label",
)


def action_key(verb_label: int, noun_label: int) -> str:
    """Action id as in the split file's action sets: "<verb_label>-<noun_label>"."""
    return f"{int(verb_label)}-{int(noun_label)}"


@dataclass(frozen=True)
class StreamClip:
    """One sample of a user stream: a fixed-length clip cut from one annotation.

    start_sec / end_sec are in the time of the clip's mp4 (`clips/<clip_uid>.mp4`), i.e. the
    same frame of reference as `action_clip_start_sec`.
    """
    index: int            # position in the user's stream (stable: the dataset is map-style)
    clip_uid: str
    video_uid: str
    action_idx: int       # annotation index within its clip
    start_sec: float
    end_sec: float
    verb_label: int
    noun_label: int

    @property
    def action(self) -> str:
        return action_key(self.verb_label, self.noun_label)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
