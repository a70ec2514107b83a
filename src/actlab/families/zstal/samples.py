"""A split's training windows and test videos, from the files of one data set (protocol §3).

Train: the split's `train` classes on the train subset; GT = seen-class instances (unseen ones are
background); instances shorter than one snippet (THUMOS) or `min_instance_s` (ANet) dropped.
Test: the `test` classes on the test subset; GT = their instances; scored videos = those with at
least one (`videos: all` keeps every test video). THUMOS: sliding windows of snippets; ANet: the whole
video resized to `rescale_to` snippets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import Dataset

from actlab.errors import DataError
from actlab.families.zstal.data import Annotations, Video, load_features, read_annotations, read_info, read_split, split_path
from actlab.families.zstal.evaluate import Detection
from actlab.families.zstal.windows import Window, cut_instances, inference_windows, training_windows


@dataclass(frozen=True)
class TestVideo:
    name: str
    feats: np.ndarray           # [T, D] (ANet: resized)
    windows: tuple[Window, ...]
    seconds_per_unit: float     # one snippet of `feats` in seconds


@dataclass
class Prepared:
    train_classes: list[str]
    test_classes: list[str]
    train: "WindowSet"
    test: list[TestVideo]
    gt: list[Detection]                     # the scored GT (test classes, scored videos)
    scored: dict[str, Video]                # the scored videos' annotations (eval_gt.json)
    files: dict[str, Path] = field(default_factory=dict)    # name -> file read (hashed into inputs)
    excluded: tuple[str, ...] = ()


class WindowSet(Dataset):
    """Training items: (video features, window, normalized target segments); features held once per video."""

    def __init__(self, feats: dict[str, np.ndarray], items: list[tuple[str, Window, np.ndarray]], size: int) -> None:
        self.feats, self.items, self.size = feats, items, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        video, w, target = self.items[i]
        return {"feats": torch.from_numpy(self.feats[video][w.start:w.start + w.length]),
                "target": torch.from_numpy(target).float(), "size": self.size}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad to the window size; mask True on valid snippets."""
    size = max(items[0]["size"], max(len(it["feats"]) for it in items))
    d = items[0]["feats"].shape[1]
    feats = torch.zeros(len(items), size, d)
    mask = torch.zeros(len(items), size, dtype=torch.bool)
    for i, it in enumerate(items):
        feats[i, :len(it["feats"])] = it["feats"]
        mask[i, :len(it["feats"])] = True
    return {"feats": feats, "mask": mask, "targets": [it["target"] for it in items]}


def rescale(x: np.ndarray, length: int, mode: str) -> np.ndarray:
    """[T, D] -> [length, D] by interpolation along time (`linear`; `nearest` as the reference code)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().T[None]
    if mode == "linear":
        out = F.interpolate(t, size=length, mode="linear", align_corners=False)
    elif mode == "nearest":
        out = F.interpolate(t, size=length, mode="nearest")
    else:
        raise ValueError(f"rescale_mode must be linear | nearest, got {mode!r}")
    return out[0].T.contiguous().numpy()


def prepare(data: Any, ratio: int, split_id: int, videos: str = "scored", max_videos: int | None = None) -> Prepared:
    if isinstance(data, DictConfig):   # resolved once: per-video interpolation of data.* cost ~0.25 ms a key
        data = OmegaConf.create(OmegaConf.to_container(data, resolve=True))
    ann = read_annotations(data.annotations, data.exclude or ())
    info = read_info(data.info)
    train_file = split_path(data.splits, ratio, data.split_dir, "train", split_id)
    test_file = split_path(data.splits, ratio, data.split_dir, "test", split_id)
    train_classes = read_split(train_file, ann.classes)
    test_classes = read_split(test_file, ann.classes)
    if set(train_classes) & set(test_classes):
        raise DataError(f"{test_file}: classes also in {train_file}: {sorted(set(train_classes) & set(test_classes))[:5]}")
    load = lambda v: _features(data, v, info)   # noqa: E731
    train = _train_set(data, ann, set(train_classes), load, max_videos)
    test, gt, scored = _test_set(data, ann, test_classes, load, videos, max_videos)
    files = {"annotations": Path(data.annotations), "info": Path(data.info), "split_train": train_file,
             "split_test": test_file}
    return Prepared(train_classes, test_classes, train, test, gt, scored, files, ann.excluded)


def _features(data: Any, video: Video, info: dict) -> tuple[np.ndarray, float]:
    """(features in the model's frame, seconds per row)."""
    x = load_features(data.features, video.name, data.feature_prefix or "", info, data.info)
    if data.kind == "anet":
        return rescale(x, int(data.rescale_to), data.rescale_mode), video.duration / int(data.rescale_to)
    entry = info.get((data.feature_prefix or "") + video.name) or info[video.name]
    return x, int(data.snippet_stride) / float(entry["video_fps"])


def _train_set(data, ann: Annotations, seen: set[str], load, max_videos) -> WindowSet:
    feats, items = {}, []
    subset = [v for v in ann.subset(data.train_subset) if any(i.label in seen for i in v.instances)]
    for video in subset[:max_videos]:
        x, sec = load(video)
        segs = np.array([(i.start / sec, i.end / sec) for i in video.instances if i.label in seen])
        min_len = 1.0 if data.kind == "thumos" else float(data.min_instance_s) / sec
        segs = segs[(segs[:, 1] - segs[:, 0]) >= min_len]
        if len(segs) == 0:
            continue
        feats[video.name] = x
        if data.kind == "anet":
            windows = [Window(0, len(x))]
        else:
            windows = training_windows(len(x), int(data.window.size), float(data.window.train_overlap))
        for w in windows:
            cut = cut_instances(segs, w, float(data.window.keep))
            if len(cut):
                items.append((video.name, w, (cut / w.length).astype(np.float32)))
    if not items:
        raise DataError(f"{data.annotations}: no training instance of the seen classes in subset {data.train_subset!r}")
    size = int(data.rescale_to) if data.kind == "anet" else int(data.window.size)
    return WindowSet(feats, items, size)


def _test_set(data, ann: Annotations, test_classes: list[str], load, videos: str, max_videos):
    unseen = set(test_classes)
    candidates = ann.subset(data.test_subset)
    if videos == "scored":
        candidates = [v for v in candidates if any(i.label in unseen for i in v.instances)]
    elif videos != "all":
        raise ValueError(f"eval.videos must be scored | all, got {videos!r}")
    out, gt, scored = [], [], {}
    for video in candidates[:max_videos]:
        x, sec = load(video)
        if data.kind == "anet":
            windows = (Window(0, len(x)),)
        else:
            windows = tuple(inference_windows(len(x), int(data.window.size), float(data.window.test_overlap)))
        out.append(TestVideo(video.name, x, windows, sec))
        mine = [i for i in video.instances if i.label in unseen]
        scored[video.name] = Video(video.name, video.subset, video.duration, video.fps, tuple(mine))
        gt += [Detection(video.name, i.start, i.end, 1.0, i.label) for i in mine]
    if not gt:
        raise DataError(f"{data.annotations}: no instance of the test classes in subset {data.test_subset!r}")
    return out, gt, scored


def window_batch(video: TestVideo, size: int) -> tuple[Tensor, Tensor]:
    """All windows of a test video, padded to `size`: feats [W, size, D], mask [W, size]."""
    d = video.feats.shape[1]
    size = max(size, max(w.length for w in video.windows))
    feats = torch.zeros(len(video.windows), size, d)
    mask = torch.zeros(len(video.windows), size, dtype=torch.bool)
    for i, w in enumerate(video.windows):
        feats[i, :w.length] = torch.from_numpy(video.feats[w.start:w.start + w.length])
        mask[i, :w.length] = True
    return feats, mask
