"""Protocols (the family's unit), validation split, data manifest and the crop cache.

`fpha_1to1`: the action split file's train/test lists (also for pose estimation, as the source did).
`fpha_xsub`: every listed sequence, subjects 1, 3, 4 train and 2, 5, 6 test. Sequences on disk that
no list names are never loaded. Crops are computed once per (protocol, sequences, cube, size, CoM
mode) into a float16 memmap under the cache folder: an epoch then reads arrays, not PNGs.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actlab.atomic import atomic_write_json
from actlab.errors import DataError
from actlab.families.hand import fpha
from actlab.families.hand.crop import com_of, crop_frame

PROTOCOLS = ("fpha_1to1", "fpha_xsub")
XSUB_TRAIN = (1, 3, 4)


def protocol_split(root: str | Path, protocol: str) -> tuple[list[fpha.SequenceRef], list[fpha.SequenceRef]]:
    """(train, test) sequences of a protocol under `root`."""
    train, test = fpha.read_split(Path(root) / fpha.SPLIT_FILE, root=root)
    if protocol == "fpha_1to1":
        return train, test
    if protocol == "fpha_xsub":
        every = train + test
        return ([s for s in every if s.subject in XSUB_TRAIN], [s for s in every if s.subject not in XSUB_TRAIN])
    raise DataError(f"protocol {protocol!r}: not one of {PROTOCOLS}")


def validation_split(train: list[fpha.SequenceRef], fraction: float, seed: int
                     ) -> tuple[list[fpha.SequenceRef], list[fpha.SequenceRef]]:
    """(train, validation): `fraction` of each action's training sequences (at least one when the
    action has two or more), whole sequences, chosen by `seed`."""
    rng = np.random.default_rng([seed, 7])
    val: set[str] = set()
    for label in sorted({s.label for s in train}):
        seqs = [s.path for s in train if s.label == label]
        n = min(len(seqs) - 1, max(1, int(round(fraction * len(seqs)))))
        val.update(rng.choice(seqs, n, replace=False).tolist() if n > 0 else [])
    return [s for s in train if s.path not in val], [s for s in train if s.path in val]


@dataclass
class FrameTable:
    """Every frame of a list of sequences: crops [N, S, S] (float16 memmap), GT joints [N, 21, 3] (mm),
    and where each sequence's frames start."""
    sequences: list[fpha.SequenceRef]
    starts: np.ndarray               # [n_seq + 1]
    joints: np.ndarray               # [N, 21, 3] float32
    crops: np.ndarray | None         # [N, S, S] float16

    def frames_of(self, seqs: list[fpha.SequenceRef]) -> np.ndarray:
        pos = {s.path: i for i, s in enumerate(self.sequences)}
        return np.concatenate([np.arange(self.starts[pos[s.path]], self.starts[pos[s.path] + 1]) for s in seqs])

    def frame_labels(self) -> np.ndarray:
        return np.repeat([s.label for s in self.sequences], np.diff(self.starts))

    def frame_sequence(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.sequences)), np.diff(self.starts))


def read_joints(root: str | Path, seqs: list[fpha.SequenceRef]) -> tuple[np.ndarray, np.ndarray]:
    """(joints [N, 21, 3], starts [n + 1]) of the sequences, each checked against its depth PNGs."""
    parts = [fpha.read_sequence_skeleton(root, s.path) for s in seqs]
    starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return np.concatenate(parts).astype(np.float32), starts


def manifest(protocol: str, seqs: list[fpha.SequenceRef], starts: np.ndarray) -> dict:
    """What a run read, recorded as its input SHA-256: the protocol, sequences, labels, frame counts."""
    return {"protocol": protocol,
            "sequences": [[s.path, s.label, int(n)] for s, n in zip(seqs, np.diff(starts))]}


def sha256_of(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def crop_all(root: str | Path, seqs: list[fpha.SequenceRef], joints: np.ndarray, starts: np.ndarray,
             cube_mm: float, size: int, out: np.ndarray) -> None:
    """Decode and crop every frame into `out` [N, size, size] (PNG decode + crop: the slow path)."""
    coms = com_of(joints)
    for i, s in enumerate(seqs):
        for t in range(starts[i + 1] - starts[i]):
            n = starts[i] + t
            out[n] = crop_frame(fpha.read_depth(fpha.depth_path(root, s.path, t)), coms[n], cube_mm, size)


def frame_table(root: str | Path, protocol: str, seqs: list[fpha.SequenceRef], cube_mm: float, size: int,
                cache_dir: str | Path | None, with_crops: bool = True, write: bool = True) -> FrameTable:
    """The frames of `seqs`, crops from the cache (built on first use; `cache_dir` None: in memory).
    `write=False` (a follower rank, which writes nothing): a complete cache is read, else crops in memory."""
    joints, starts = read_joints(root, seqs)
    if not with_crops:
        return FrameTable(seqs, starts, joints, None)
    key = sha256_of({"protocol": protocol, "sequences": [s.path for s in seqs], "cube_mm": float(cube_mm),
                     "size": int(size), "com": "gt_mmcp", "root": str(Path(root).resolve())})[:16]
    if cache_dir is not None and not write and not (Path(cache_dir) / key / "done.json").is_file():
        cache_dir = None
    if cache_dir is None:
        crops = np.zeros((len(joints), size, size), np.float16)
        crop_all(root, seqs, joints, starts, cube_mm, size, crops)
        return FrameTable(seqs, starts, joints, crops)
    folder = Path(cache_dir) / key
    if not (folder / "done.json").is_file():
        tmp = Path(cache_dir) / f"{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        crops = np.lib.format.open_memmap(tmp / "crops.npy", mode="w+", dtype=np.float16,
                                          shape=(len(joints), size, size))
        crop_all(root, seqs, joints, starts, cube_mm, size, crops)
        crops.flush()
        del crops
        atomic_write_json(tmp / "done.json", {"protocol": protocol, "frames": int(len(joints))})
        try:
            os.rename(tmp, folder)
        except OSError:           # another job built it meanwhile: theirs is the same
            shutil.rmtree(tmp, ignore_errors=True)
    crops = np.load(folder / "crops.npy", mmap_mode="r")
    if len(crops) != len(joints):
        raise DataError(f"{folder / 'crops.npy'}: {len(crops)} crops for {len(joints)} frames; delete the folder")
    return FrameTable(seqs, starts, joints, crops)
