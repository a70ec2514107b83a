"""Stream statistics and the decorrelated-sample mask, on hand-built inputs (mean +- SE:
tests/test_post_tables.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from actlab.families.continual.data.records import StreamClip
from actlab.families.continual.metrics import decorrelated_mask, stream_statistics
from actlab.families.continual.metrics.decorrelated import task_decorrelated_mask
from actlab.families.continual.metrics.stream_stats import mean_unique_in_windows


def clip(i: int, clip_uid: str, video_uid: str, verb: int, noun: int) -> StreamClip:
    return StreamClip(index=i, clip_uid=clip_uid, video_uid=video_uid, action_idx=0,
                      start_sec=float(i), end_sec=float(i) + 1.0, verb_label=verb, noun_label=noun)


# actions: a = 0-0, b = 1-0, c = 1-2; stream a a a b b c a
CLIPS = [clip(0, "c1", "v1", 0, 0), clip(1, "c1", "v1", 0, 0), clip(2, "c2", "v1", 0, 0),
         clip(3, "c2", "v1", 1, 0), clip(4, "c3", "v2", 1, 0), clip(5, "c3", "v2", 1, 2),
         clip(6, "c4", "v1", 0, 0)]


def test_stream_statistics_golden():
    s = stream_statistics(CLIPS)
    assert s == pytest.approx({
        "n_clips": 7,
        "n_videos": 2,                  # v1, v2
        "video_transitions": 2,         # v1 v1 v1 v1 | v2 v2 | v1
        "clip_transitions": 3,          # c1 c1 | c2 c2 | c3 c3 | c4
        "unique_actions": 3, "unique_verbs": 2, "unique_nouns": 2,
        # sliding windows of 4: aaab 2, aabb 2, abbc 3, bbca 3 -> 10/4
        "mean_unique_actions_w4": 2.5,
        # streams shorter than the window are one window: {a, b, c}
        "mean_unique_actions_w16": 3.0, "mean_unique_actions_w64": 3.0,
        # adjacent pairs aa aa ab bb bc ca -> 3 changes of 6
        "label_change_fraction": 0.5,
    })


def test_windows_and_empty_stream():
    assert mean_unique_in_windows(list("abab"), 2) == 2.0
    assert mean_unique_in_windows(list("aabb"), 2) == pytest.approx(4 / 3)   # aa 1, ab 2, bb 1
    s = stream_statistics([])
    assert s["n_clips"] == 0 and math.isnan(s["mean_unique_actions_w4"])
    assert math.isnan(s["label_change_fraction"])


def test_decorrelated_mask_one_label_sequence():
    # Sample 0 is decorrelated (upstream keeps it); then "differs from the previous label".
    m = decorrelated_mask(["a", "a", "b", "b", "a"])
    assert m.dtype == np.bool_ and m.tolist() == [True, False, True, False, True]
    assert decorrelated_mask([3, 4, 4]).tolist() == [True, True, False]
    assert decorrelated_mask([]).tolist() == []


# (verb, noun) per sample:  (0,0) (0,0) (1,0) (1,1) (2,1) (3,2)
VERBS, NOUNS = [0, 0, 1, 1, 2, 3], [0, 0, 0, 1, 1, 2]


def test_decorrelated_action_needs_verb_and_noun_to_change():
    # sample 0: first -> True; 1: same pair -> False; 2: verb 0->1 but noun 0->0 -> False;
    # 3: verb 1->1 -> False; 4: verb 1->2 but noun 1->1 -> False; 5: verb 2->3 AND noun 1->2 -> True.
    # (The old rule, "the action key differs", would mark samples 2, 3 and 4 as well.)
    assert decorrelated_mask(VERBS, NOUNS).tolist() == [True, False, False, False, False, True]
    assert task_decorrelated_mask(VERBS, NOUNS, "action").tolist() == [True, False, False, False, False, True]
    # verb alone: 0 0 1 1 2 3 -> changes at 2, 4, 5; noun alone: 0 0 0 1 1 2 -> changes at 3, 5
    assert task_decorrelated_mask(VERBS, NOUNS, "verb").tolist() == [True, False, True, False, True, True]
    assert task_decorrelated_mask(VERBS, NOUNS, "noun").tolist() == [True, False, False, True, False, True]
    with pytest.raises(ValueError, match="task"):
        task_decorrelated_mask(VERBS, NOUNS, "scene")
    with pytest.raises(ValueError, match="same length"):
        decorrelated_mask([0, 1], [0])
