"""Animal Kingdom's action-recognition annotations, read as the data set ships them.

- `annotation/{train,val}.csv`: Charades/SlowFast frame lists, space-separated, header exactly
  `original_vido_id video_id frame_id path labels` (sic); one row per frame; `labels` are
  comma-separated class ids, possibly in double quotes, possibly empty. A clip's labels are the
  union over its frames. `val.csv` is the test split (there is no validation split).
- `annotation/df_action.xlsx`, sheet `AR_count`: `S/N, action_category, action, index, segment,
  count`; `index` is the class id, `segment` one of head / middle / tail, `count` the per-class
  count the long-tail losses use.
- `AR_metadata.xlsx` (optional): sheet `AR` (`video_id, type, labels`) to cross-check clip labels;
  sheet `Action` (`Label, Description`) for the `with_description` prompts.
Every problem is a DataError naming the file, the line or row and the key.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from actlab.errors import DataError

HEADER = ["original_vido_id", "video_id", "frame_id", "path", "labels"]
ACTION_COLUMNS = ["S/N", "action_category", "action", "index", "segment", "count"]
SEGMENT_NAMES = ("head", "middle", "tail")
SPLIT_FILES = {"train": "train.csv", "test": "val.csv"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    video: str                       # original_vido_id: dataset/video/<video>.mp4
    labels: tuple[int, ...]          # sorted class ids, the union over the clip's frames


@dataclass(frozen=True)
class ActionTable:
    action: list[str]                # by class id
    category: list[str]
    segment: list[str]               # head | middle | tail, as the file says (never recomputed)
    count: list[int]
    description: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.action)


def parse_labels(text: str, path: Path, line: int, num_classes: int) -> list[int]:
    text = text.strip().strip('"').strip()
    if not text:
        return []
    out = []
    for part in text.split(","):
        try:
            c = int(part)
        except ValueError:
            raise DataError(f"{path}: line {line}: key labels: {part!r} is not a class id") from None
        if not 0 <= c < num_classes:
            raise DataError(f"{path}: line {line}: key labels: class {c} outside 0..{num_classes - 1}")
        out.append(c)
    return out


def read_frame_list(path: str | Path, num_classes: int) -> list[Clip]:
    """Clips in order of first appearance, labels = union over their frames."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing frame list")
    labels: dict[str, set[int]] = {}
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n")
        if header.split(" ") != HEADER:
            raise DataError(f"{path}: line 1: header {header!r} is not {' '.join(HEADER)!r}")
        for line, row in enumerate(f, start=2):
            row = row.rstrip("\r\n")
            if not row:
                continue
            fields = row.split(" ")
            if len(fields) != 5:
                raise DataError(f"{path}: line {line}: {len(fields)} fields, not 5 ({' '.join(HEADER)})")
            labels.setdefault(fields[0], set()).update(parse_labels(fields[4], path, line, num_classes))
    return [Clip(video, tuple(sorted(ls))) for video, ls in labels.items()]


def read_action_table(path: str | Path, num_classes: int, metadata: str | Path | None = None) -> ActionTable:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing action table")
    try:
        df = pd.read_excel(path, sheet_name="AR_count")
    except ValueError as e:   # pandas: "Worksheet named 'AR_count' not found"
        raise DataError(f"{path}: sheet AR_count: {e}") from e
    missing = [c for c in ACTION_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: sheet AR_count: missing column(s) {missing}")
    index = pd.to_numeric(df["index"], errors="coerce")
    if index.isna().any() or sorted(index.astype(int)) != list(range(num_classes)):
        raise DataError(f"{path}: sheet AR_count: key index is not a permutation of 0..{num_classes - 1} "
                        f"({len(df)} rows)")
    bad = ~df["segment"].astype(str).str.strip().str.lower().isin(SEGMENT_NAMES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: sheet AR_count: row {row + 2}: key segment: unknown segment "
                        f"{df['segment'].iloc[row]!r} (not one of {SEGMENT_NAMES})")
    df = df.assign(index=index.astype(int)).sort_values("index")
    description = read_descriptions(metadata, num_classes) if metadata and Path(metadata).is_file() else None
    return ActionTable(action=df["action"].astype(str).tolist(), category=df["action_category"].astype(str).tolist(),
                       segment=df["segment"].astype(str).str.strip().str.lower().tolist(),
                       count=df["count"].astype(int).tolist(), description=description)


def read_descriptions(path: str | Path, num_classes: int) -> list[str]:
    df = pd.read_excel(path, sheet_name="Action")
    for key in ("Label", "Description"):
        if key not in df.columns:
            raise DataError(f"{path}: sheet Action: missing column {key}")
    by_label = dict(zip(pd.to_numeric(df["Label"], errors="coerce"), df["Description"].astype(str)))
    return [by_label.get(c, "") for c in range(num_classes)]


def cross_check(clips: dict[str, list[Clip]], metadata: str | Path) -> list[str]:
    """Clips whose frame-list labels differ from AR_metadata.xlsx's sheet AR, one line each."""
    df = pd.read_excel(metadata, sheet_name="AR")
    for key in ("video_id", "type", "labels"):
        if key not in df.columns:
            raise DataError(f"{metadata}: sheet AR: missing column {key}")
    expected = {str(v): tuple(sorted(int(x) for x in str(ls).replace('"', "").split(",") if x.strip()))
                for v, ls in zip(df["video_id"], df["labels"].fillna(""))}
    problems = []
    for split, items in clips.items():
        for clip in items:
            want = expected.get(clip.video)
            if want is None:
                problems.append(f"{split} clip {clip.video}: not in {metadata}")
            elif want != clip.labels:
                problems.append(f"{split} clip {clip.video}: frame lists say {list(clip.labels)}, "
                                f"{Path(metadata).name} says {list(want)}")
    return problems


def with_videos(clips: list[Clip], video_dir: str | Path, on_missing: str, split: str) -> list[Clip]:
    """Clips whose mp4 exists; a missing one is an error, or with `on_missing: skip` counted and logged."""
    video_dir = Path(video_dir)
    present = [c for c in clips if (video_dir / f"{c.video}.mp4").is_file()]
    missing = len(clips) - len(present)
    if missing:
        first = next(c for c in clips if not (video_dir / f"{c.video}.mp4").is_file())
        if on_missing != "skip":
            raise DataError(f"{video_dir / (first.video + '.mp4')}: missing video of {split} clip {first.video} "
                            f"(key original_vido_id; {missing} missing in all; data.on_missing=skip to skip them)")
        log.warning("%s: %d of %d %s clips have no mp4 and are skipped (first: %s)", video_dir, missing,
                    len(clips), split, first.video)
    return present


def label_matrix(clips: list[Clip], num_classes: int) -> np.ndarray:
    y = np.zeros((len(clips), num_classes), dtype=np.uint8)
    for i, clip in enumerate(clips):
        y[i, list(clip.labels)] = 1
    return y
