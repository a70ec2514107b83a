"""The pyskl 2D-keypoint pickle (`ntu60_hrnet.pkl`, `ntu120_hrnet.pkl`, the toy's
`ntutoy_hrnet.pkl`), its class-name CSV, and the torch data sets the job trains and tests on.

Every problem with the files is a `DataError` naming the file and the key, frame_dir or line.
"""
from __future__ import annotations

import csv
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from actlab.errors import DataError
from actlab.families.skel.pipeline import PipelineConfig, eval_views, train_view
from actlab.train.loop import epoch_seed

NUM_JOINTS = 17


@dataclass(frozen=True)
class Sample:
    frame_dir: str
    label: int
    img_shape: tuple[int, int]
    keypoint: np.ndarray          # [M, T, 17, 2] float16/32, pixels; (0, 0) = missing
    keypoint_score: np.ndarray    # [M, T, 17]


@dataclass(frozen=True)
class Split:
    samples: list[Sample]
    class_names: list[str]


def load_class_names(path: str | Path) -> list[str]:
    """`id,name` rows with ids 0..L-1 in order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class-name CSV not found")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["id", "name"]:
        raise DataError(f"{path}: line 1: header must be 'id,name', got {','.join(rows[0]) if rows else '(empty)'!r}")
    names = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0].strip().isdigit() or int(row[0]) != len(names):
            raise DataError(f"{path}: line {line}: expected '{len(names)},<name>', got {','.join(row)!r}")
        names.append(row[1].strip())
    if not names:
        raise DataError(f"{path}: no class names")
    return names


def _check_annotation(path: Path, ann: dict, num_classes: int) -> Sample:
    fd = ann.get("frame_dir", "?")
    where = f"{path}: annotation {fd}"
    for key in ("frame_dir", "total_frames", "label", "keypoint", "keypoint_score"):
        if key not in ann:
            raise DataError(f"{where}: key {key!r} missing")
    kp, score = np.asarray(ann["keypoint"]), np.asarray(ann["keypoint_score"])
    if kp.ndim != 4:
        raise DataError(f"{where}: key 'keypoint' must be 4-D [M,T,V,C], got shape {kp.shape}")
    m, t, v, c = kp.shape
    if t != int(ann["total_frames"]):
        raise DataError(f"{where}: key 'keypoint' has T={t} frames but total_frames={ann['total_frames']}")
    if v != NUM_JOINTS:
        raise DataError(f"{where}: key 'keypoint' has V={v} joints, expected COCO-17")
    if c != 2:
        raise DataError(f"{where}: key 'keypoint' has C={c} coordinates, expected 2 (2D keypoints)")
    if score.shape != kp.shape[:3]:
        raise DataError(f"{where}: key 'keypoint_score' has shape {score.shape}, keypoint needs {kp.shape[:3]}")
    label = int(ann["label"])
    if not 0 <= label < num_classes:
        raise DataError(f"{where}: key 'label' = {label} is not below the number of class names ({num_classes})")
    shape = ann.get("img_shape", ann.get("original_shape"))
    if shape is None:
        raise DataError(f"{where}: key 'img_shape' missing")
    return Sample(str(fd), label, (int(shape[0]), int(shape[1])), kp, score)


def load_split(pickle_path: str | Path, split: str, labels_csv: str | Path) -> Split:
    """The annotations of one split of a pyskl 2D pickle, checked, and the class names."""
    path = Path(pickle_path)
    if path.name.endswith("_3danno.pkl"):
        raise DataError(f"{path}: a 3D pickle (25 joints, C=3, no scores); this family reads the 2D HRNet "
                        f"pickles (ntu60_hrnet.pkl, ntu120_hrnet.pkl)")
    if not path.is_file():
        raise DataError(f"{path}: pickle not found")
    names = load_class_names(labels_csv)
    with open(path, "rb") as f:
        data = pickle.load(f)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict with keys 'split' and 'annotations', got {type(data).__name__}")
    for key in ("split", "annotations"):
        if key not in data:
            raise DataError(f"{path}: key {key!r} missing")
    if split not in data["split"]:
        raise DataError(f"{path}: key 'split': unknown split {split!r}; present: {sorted(data['split'])}")
    by_dir = {a.get("frame_dir"): a for a in data["annotations"]}
    samples = []
    for fd in data["split"][split]:
        if fd not in by_dir:
            raise DataError(f"{path}: split {split!r} lists frame_dir {fd} with no annotation")
        samples.append(_check_annotation(path, by_dir[fd], len(names)))
    if not samples:
        raise DataError(f"{path}: split {split!r} is empty")
    return Split(samples, names)


class TrainClips(Dataset):
    """Training clips, `repeat` passes per epoch (RepeatDataset). The augmentation of item i is a
    function of (seed, epoch, i) only: `epoch` is set before each epoch's loader forks workers."""

    def __init__(self, samples: list[Sample], cfg: PipelineConfig, seed: int, repeat: int = 1) -> None:
        self.samples, self.cfg, self.seed, self.repeat, self.epoch = samples, cfg, seed, repeat, 0

    def __len__(self) -> int:
        return len(self.samples) * self.repeat

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i % len(self.samples)]
        rng = np.random.default_rng([epoch_seed(self.seed, self.epoch), i])
        x = train_view(s.keypoint, s.keypoint_score, s.img_shape, self.cfg, rng)
        return {"heatmap": torch.from_numpy(x), "label": s.label, "index": i}


class TestClips(Dataset):
    """Every test view of a sample [views, V, T, H, W] (deterministic)."""

    def __init__(self, samples: list[Sample], cfg: PipelineConfig) -> None:
        self.samples, self.cfg = samples, cfg

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        return {"heatmap": torch.from_numpy(eval_views(s.keypoint, s.keypoint_score, s.img_shape, self.cfg)),
                "label": s.label, "index": i}
