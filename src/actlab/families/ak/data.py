"""The data of one run: annotations, the action table and the two splits as clip data sets."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actlab.families.ak.annotations import (SPLIT_FILES, ActionTable, Clip, cross_check, label_matrix,
                                            read_action_table, read_frame_list, with_videos)

log = logging.getLogger(__name__)


@dataclass
class AKData:
    table: ActionTable
    clips: dict[str, list[Clip]]          # "train", "test" (val.csv)
    labels: dict[str, np.ndarray]         # N x C uint8
    files: dict[str, Path]                # what was read: the run's inputs (hashed)
    mismatches: list[str]                 # frame-list labels that AR_metadata.xlsx contradicts
    video_dir: Path


def load(data: Any) -> AKData:
    """`data`: the data config (root, num_classes, on_missing, metadata)."""
    root = Path(data.root)
    c = int(data.num_classes)
    metadata = Path(data.metadata) if data.get("metadata") else None
    metadata = metadata if metadata is not None and metadata.is_file() else None
    files = {"annotation/df_action.xlsx": root / "annotation" / "df_action.xlsx"}
    table = read_action_table(files["annotation/df_action.xlsx"], c, metadata)
    video_dir = root / "dataset" / "video"
    clips: dict[str, list[Clip]] = {}
    for split, name in SPLIT_FILES.items():
        files[f"annotation/{name}"] = root / "annotation" / name
        clips[split] = with_videos(read_frame_list(files[f"annotation/{name}"], c), video_dir,
                                   str(data.on_missing), split)
    mismatches: list[str] = []
    if metadata is not None:
        files["AR_metadata.xlsx"] = metadata
        mismatches = cross_check(clips, metadata)
        for line in mismatches[:20]:
            log.warning("label mismatch: %s", line)
        if mismatches:
            log.warning("%d clips' labels differ from %s", len(mismatches), metadata)
    return AKData(table, clips, {s: label_matrix(v, c) for s, v in clips.items()}, files, mismatches, video_dir)
