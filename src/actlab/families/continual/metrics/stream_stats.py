"""Descriptive statistics of one user stream (how label-correlated and how fragmented it is)."""
from __future__ import annotations

from typing import Sequence

from actlab.families.continual.data.records import StreamClip

WINDOWS = (4, 16, 64)


def _transitions(values: Sequence) -> int:
    return sum(1 for i in range(1, len(values)) if values[i] != values[i - 1])


def mean_unique_in_windows(labels: Sequence[str], w: int) -> float:
    """Mean number of distinct labels over all sliding windows of w consecutive samples
    (n - w + 1 windows); a stream shorter than w is one window. nan for an empty stream."""
    n = len(labels)
    if n == 0:
        return float("nan")
    if n <= w:
        return float(len(set(labels)))
    return sum(len(set(labels[i:i + w])) for i in range(n - w + 1)) / (n - w + 1)


def stream_statistics(clips: Sequence[StreamClip]) -> dict[str, float]:
    """Keys: n_clips, n_videos, video_transitions, clip_transitions (adjacent samples from another
    video / clip), unique_actions, unique_verbs, unique_nouns, mean_unique_actions_w{4,16,64},
    label_change_fraction (fraction of the n - 1 adjacent pairs whose action changes; nan if n < 2)."""
    actions = [c.action for c in clips]
    n = len(clips)
    out: dict[str, float] = {
        "n_clips": n,
        "n_videos": len({c.video_uid for c in clips}),
        "video_transitions": _transitions([c.video_uid for c in clips]),
        "clip_transitions": _transitions([c.clip_uid for c in clips]),
        "unique_actions": len(set(actions)),
        "unique_verbs": len({c.verb_label for c in clips}),
        "unique_nouns": len({c.noun_label for c in clips}),
    }
    for w in WINDOWS:
        out[f"mean_unique_actions_w{w}"] = mean_unique_in_windows(actions, w)
    out["label_change_fraction"] = _transitions(actions) / (n - 1) if n >= 2 else float("nan")
    return out
