"""The decode cache: every user stream decoded once, shared by every grid point and later sweeps.

A sweep's grid points all read the same user streams; decoding them again in every run costs
(points x users) decodes of the same video (Ego4D: 5 experiments x ~14 points x 10 users). The
preparation step (data/decode_once.py, jobs/decode_cache.py) decodes each stream once into an
entry under `data.cache_dir` (default `${paths.cache}`), and the stream and transfer jobs read an
entry whenever it is there (data/user_streams.py), else decode as before.

An entry is content-addressed: its key is the SHA-256 of what determines its bytes: the stream
manifest's SHA-256 (clip ids, times, labels: data/stream_builder.py), the byte size of each video
file it reads (a regenerated or replaced video gets a new key), the transform (num_frames,
short_side, crop_size) and the decoder. It holds the stream's clips after the deterministic
transform as uint8 (`video.prepare_uint8`): `<key>.npy`, [n_clips, 3, num_frames, crop, crop],
memory-mapped when read, and `<key>.json` (what the key hashes, shape, bytes). Both are written
atomically (actlab.atomic), the .npy first, and an entry counts as present only when its .json is,
so a reader never sees half an entry and two writers of the same key write the same bytes.
Reading normalises exactly as `ClipDataset` with `data.pixels: uint8` does: a cached sample and a
decoded one are the same tensor (tests/test_data_cache.py).
Sizes: egotoy 3 x 8 x 64 x 64 = 98 kB per clip; Ego4D 3 x 32 x 224 x 224 = 4.8 MB per clip.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from actlab.atomic import atomic_write, atomic_write_json, read_json
from actlab.errors import DataError
from actlab.families.continual.data.records import StreamClip
from actlab.families.continual.data.video import ClipDataset, clip_path, normalise_uint8

FORMAT = 1        # bump when the stored bytes change meaning; old entries are then simply not found
FREE_SPACE_MARGIN = 1.05


@dataclass(frozen=True)
class EntryKey:
    """What an entry's bytes depend on; `digest` names it."""
    stream_sha256: str
    video_bytes: dict[str, int]        # clip_uid -> file size
    num_frames: int
    short_side: int
    crop_size: int
    decoder: str
    format: int = FORMAT

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def entry_key(dataset: ClipDataset, stream_sha256: str) -> EntryKey:
    sizes = {}
    for uid in sorted({c.clip_uid for c in dataset.clips}):
        path = clip_path(dataset.clips_dir, uid)
        if not path.is_file():
            raise DataError(f"decode cache: missing video file {path} (clip_uid {uid})")
        sizes[uid] = path.stat().st_size
    return EntryKey(stream_sha256, sizes, dataset.num_frames, dataset.short_side, dataset.crop_size, dataset.decoder)


def clip_shape(dataset: ClipDataset) -> tuple[int, int, int, int]:
    return (3, dataset.num_frames, dataset.crop_size, dataset.crop_size)


def entry_bytes(dataset: ClipDataset) -> int:
    return len(dataset) * int(np.prod(clip_shape(dataset)))


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


@dataclass(frozen=True)
class Entry:
    array: Path
    meta: Path

    @classmethod
    def at(cls, cache_dir: str | Path, key: EntryKey) -> "Entry":
        base = Path(cache_dir) / "clips" / key.digest[:2] / key.digest
        return cls(base.with_suffix(".npy"), base.with_suffix(".json"))

    def present(self) -> bool:
        return self.meta.is_file() and self.array.is_file()


class _Prepared(Dataset):
    """Sample i of a ClipDataset as uint8, for decoding in DataLoader workers."""
    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.dataset.prepared(i)


def write_entry(dataset: ClipDataset, stream_sha256: str, cache_dir: str | Path, label: str = "",
                workers: int = 0) -> tuple[Entry, bool]:
    """Decode `dataset` into its entry unless present -> (entry, written). Prints the entry's size
    before writing, and refuses (DataError naming data.cache_dir) when the disk cannot hold it."""
    key = entry_key(dataset, stream_sha256)
    entry = Entry.at(cache_dir, key)
    if entry.present():
        print(f"decode cache: {label} present ({human(entry.array.stat().st_size)}): {entry.array}", flush=True)
        return entry, False
    shape = (len(dataset), *clip_shape(dataset))
    size = entry_bytes(dataset)
    print(f"decode cache: {label} {len(dataset)} clips x {list(shape[1:])} uint8 = {human(size)} -> {entry.array}",
          flush=True)
    entry.array.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(entry.array.parent).free
    if free < size * FREE_SPACE_MARGIN:
        raise DataError(f"decode cache: {label} needs {human(size)} but {entry.array.parent} has {human(free)} "
                        f"free (data.cache_dir); free space, point paths.cache elsewhere, or set data.cache_dir=null")

    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        loader = DataLoader(_Prepared(dataset), batch_size=None, num_workers=workers)
        for i, clip in enumerate(loader):   # in stream order (no shuffling), so row i is sample i
            out[i] = clip.numpy()
        out.flush()
        del out

    atomic_write(entry.array, write)
    atomic_write_json(entry.meta, {"key": asdict(key), "digest": key.digest, "shape": list(shape), "dtype": "uint8",
                                   "bytes": size, "label": label})
    return entry, True


def find_entry(dataset: ClipDataset, stream_sha256: str, cache_dir: str | Path | None) -> Entry | None:
    if cache_dir is None:
        return None
    entry = Entry.at(cache_dir, entry_key(dataset, stream_sha256))
    return entry if entry.present() else None


class CachedClips(Dataset):
    """A user stream read from its decode-cache entry: the same items as its ClipDataset."""

    def __init__(self, clips: Sequence[StreamClip], entry: Entry, mean: Sequence[float], std: Sequence[float]) -> None:
        self.clips = list(clips)
        self.entry = entry
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        meta = read_json(entry.meta)
        self.shape = tuple(int(v) for v in meta["shape"])
        if self.shape[0] != len(self.clips):
            raise DataError(f"decode cache: {entry.meta} holds {self.shape[0]} clips, the stream has {len(self.clips)}")
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def stream_labels(self) -> list[tuple[int, int]]:
        return [(c.verb_label, c.noun_label) for c in self.clips]

    def __getstate__(self) -> dict[str, Any]:     # DataLoader workers map the file themselves
        return self.__dict__ | {"_array": None}

    def array(self) -> np.ndarray:
        if self._array is None:
            arr = np.load(self.entry.array, mmap_mode="r")
            if tuple(arr.shape) != self.shape or arr.dtype != np.uint8:
                raise DataError(f"decode cache: {self.entry.array} is {arr.dtype} {list(arr.shape)}, "
                                f"its {self.entry.meta.name} says uint8 {list(self.shape)}; delete both")
            self._array = arr
        return self._array

    def prepared(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array()[i]))

    def __getitem__(self, i: int) -> dict[str, Any]:
        clip = self.clips[i]
        return {"video": normalise_uint8(self.prepared(i), self.mean, self.std),
                "verb": clip.verb_label, "noun": clip.noun_label, "index": clip.index}
