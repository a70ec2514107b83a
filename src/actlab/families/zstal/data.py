"""Readers of the real formats (docs/zstal.md): THUMOS14 / ActivityNet-1.3 annotation JSON, per-video
`.npy` features [T, D], the feature info JSON and the class split lists. Every defect names the file,
the video or line and the key (`DataError`).

`Ambiguous` is not a class and is dropped everywhere. Videos on the exclusion list are skipped before
any check (THUMOS: one without features, one with a segment past its duration).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from actlab.errors import DataError

AMBIGUOUS = "Ambiguous"
DURATION_SLACK_S = 1.0      # a segment may end this far past the video's duration (rounding of fps)


@dataclass(frozen=True)
class Instance:
    start: float      # seconds
    end: float
    label: str


@dataclass(frozen=True)
class Video:
    name: str         # the annotation id (ANet: without the feature files' prefix)
    subset: str
    duration: float
    fps: float | None
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class Annotations:
    path: Path
    classes: tuple[str, ...]
    videos: dict[str, Video]
    excluded: tuple[str, ...]       # on the exclusion list and present in the file

    def subset(self, name: str) -> list[Video]:
        return [v for v in self.videos.values() if v.subset == name]


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e


def read_annotations(path: str | Path, exclude: Iterable[str] = ()) -> Annotations:
    """THUMOS14 (`classes` + `database`) or ActivityNet (`taxonomy` + `database`) annotations."""
    path = Path(path)
    data = _load_json(path)
    if "database" not in data:
        raise DataError(f"{path}: no key 'database'")
    exclude = set(exclude)
    videos, labels = {}, set()
    for name, entry in data["database"].items():
        if name in exclude:
            continue
        for key in ("subset", "duration"):
            if key not in entry:
                raise DataError(f"{path}: video {name}: no key {key!r}")
        duration = float(entry["duration"])
        instances = []
        for k, a in enumerate(entry.get("annotations", [])):
            if "label" not in a or "segment" not in a:
                raise DataError(f"{path}: video {name}, annotation {k}: needs keys 'segment' and 'label'")
            if a["label"] == AMBIGUOUS:
                continue
            start, end = (float(x) for x in a["segment"][:2])
            if start >= end or end > duration + DURATION_SLACK_S:
                raise DataError(f"{path}: video {name}, annotation {k}, key 'segment': [{start}, {end}] "
                                f"(start must be < end <= duration {duration} + {DURATION_SLACK_S} s; "
                                f"or put the video on the exclusion list)")
            instances.append(Instance(start, end, str(a["label"])))
            labels.add(str(a["label"]))
        videos[name] = Video(name, str(entry["subset"]), duration, entry.get("fps"), tuple(instances))
    classes = tuple(c for c in data["classes"] if c != AMBIGUOUS) if "classes" in data else tuple(sorted(labels))
    unknown = sorted(labels - set(classes))
    if unknown:
        raise DataError(f"{path}: key 'classes' lacks labels used in 'database': {unknown[:5]}")
    return Annotations(path, classes, videos, tuple(sorted(exclude & set(data["database"]))))


def read_split(path: str | Path, classes: Iterable[str]) -> list[str]:
    """Class names, one per line, stripped (a file may lack the final newline); each must be annotated."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such split file")
    known, out = set(classes), []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name not in known:
            raise DataError(f"{path}: line {i}: class {name!r} is not in the annotations")
        out.append(name)
    if not out:
        raise DataError(f"{path}: no classes")
    return out


def split_path(root: str | Path, ratio: int, dataset_dir: str, part: str, split_id: int) -> Path:
    """splits/train_75_test_25/THUMOS14/train/split_0.list and train_50_test_50/..."""
    return Path(root) / f"train_{ratio}_test_{100 - ratio}" / dataset_dir / part / f"split_{split_id}.list"


def read_info(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected {{video: {{frame_length, ..., snippet_length}}}}")
    return data


def load_features(features_dir: str | Path, video: str, prefix: str, info: dict[str, dict],
                  info_path: str | Path, dim: int | None = None) -> np.ndarray:
    """`<dir>/<prefix><video>.npy` as float32 [T, D]; T must equal the info file's snippet_length."""
    key = prefix + video
    entry = info.get(key, info.get(video))
    if entry is None:
        raise DataError(f"{info_path}: video {key}: missing from the feature info file")
    if "snippet_length" not in entry:
        raise DataError(f"{info_path}: video {key}: no key 'snippet_length'")
    path = Path(features_dir) / f"{key}.npy"
    if not path.is_file():
        raise DataError(f"{path}: video {key}: no feature file (or put the video on the exclusion list)")
    try:
        x = np.load(path, mmap_mode="r")
    except ValueError as e:
        raise DataError(f"{path}: video {key}: not a .npy array ({e})") from e
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise DataError(f"{path}: video {key}: shape {x.shape}, expected [T, {dim or 'D'}]")
    if x.shape[0] != int(entry["snippet_length"]):
        raise DataError(f"{path}: video {key}: {x.shape[0]} rows, but {info_path} key 'snippet_length' "
                        f"says {entry['snippet_length']}")
    return np.array(x, dtype=np.float32)    # a copy: closes the memory map, fp16 -> fp32
