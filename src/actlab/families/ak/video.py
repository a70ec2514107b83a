"""Clips as the model sees them: PyAV decode, segment sampling (T equal chunks), resize/crop, CLIP
normalisation.

A training item holds K candidate frames per chunk ([T, K, H, W, 3] uint8, resized so the short
side is `decode_size`); the random frame of each chunk, the random resized crop and the flip are
drawn in the training step from the loop's checkpointed generator (`augment`), so a resumed run
draws exactly what an uninterrupted one did. A test item holds each chunk's middle frame, or with
`views` = k > 1, k frames spread evenly inside each chunk ([T, k, h, w, 3]): view j is frame j of
every chunk (`center_view(frames, spec, j)`), and the job takes the max of the k views' logits.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from actlab.atomic import atomic_write
from actlab.errors import DataError
from actlab.families.ak.annotations import Clip

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def decode(path: str | Path) -> np.ndarray:
    """All frames of an mp4, [F, H, W, 3] uint8 RGB."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.FFmpegError, OSError) as e:
        raise DataError(f"{path}: cannot decode ({e})") from e
    if not frames:
        raise DataError(f"{path}: no frames")
    return np.stack(frames)


def chunk_positions(num_frames: int, chunks: int, per_chunk: int) -> np.ndarray:
    """[chunks, per_chunk] frame indices spread evenly inside each of `chunks` equal chunks; with
    per_chunk = 1 the chunk's middle frame."""
    edges = np.arange(chunks + 1) * num_frames / chunks
    width = np.diff(edges)
    offsets = (np.arange(per_chunk) + 0.5) / per_chunk
    pos = np.floor(edges[:-1, None] + width[:, None] * offsets[None, :]).astype(np.int64)
    return np.clip(pos, 0, num_frames - 1)


def resize_short(frames: Tensor, size: int) -> Tensor:
    """[N, 3, H, W] float -> short side `size` (bilinear, antialiased)."""
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    return F.interpolate(frames, size=(max(size, round(h * scale)), max(size, round(w * scale))),
                         mode="bilinear", antialias=True, align_corners=False)


@dataclass(frozen=True)
class VideoSpec:
    frames: int = 8                # T chunks
    candidates: int = 2            # K frames per chunk a training item carries
    decode_size: int = 40          # short side of the stored frames
    image_size: int = 32           # the model's input
    crop_scale: tuple[float, float] = (0.6, 1.0)


class ClipDataset(Dataset):
    """Items {"frames": [T, K, h, w, 3] uint8, "labels": C float, "index": i}: K = spec.candidates in
    training, K = `views` at test (1: each chunk's middle frame; k: k frames spread inside each chunk)."""

    def __init__(self, clips: Sequence[Clip], labels: np.ndarray, video_dir: str | Path, spec: VideoSpec,
                 train: bool, views: int = 1) -> None:
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        self.clips, self.labels, self.video_dir, self.spec, self.train = list(clips), labels, Path(video_dir), spec, train
        self.views = views
        self.cache: list[Tensor] | None = None

    def __len__(self) -> int:
        return len(self.clips)

    def frames(self, i: int) -> Tensor:
        raw = decode(self.video_dir / f"{self.clips[i].video}.mp4")
        k = self.spec.candidates if self.train else self.views
        pos = chunk_positions(len(raw), self.spec.frames, k)
        x = torch.from_numpy(raw[pos.reshape(-1)]).permute(0, 3, 1, 2).float()
        x = resize_short(x, self.spec.decode_size).round().clamp(0, 255).to(torch.uint8)
        return x.permute(0, 2, 3, 1).reshape(self.spec.frames, k, *x.shape[2:], 3)

    def fill_cache(self, desc: str, cache_dir: str | Path | None = None, inputs: str = "",
                   write: bool = True) -> "ClipDataset":
        """Decode every clip once, kept in memory as uint8. With `cache_dir`, the decoded clips are
        also a file there, shared by every run of the same clips, view and `inputs` (a digest of
        the annotation files): the first run decodes under a lock, the others load (the tasks of
        a local sweep start together and would otherwise each decode the whole set). `write=False`
        (a follower rank, which writes nothing): load the file if it is complete, else decode here."""
        if cache_dir is None:
            self.cache = [self.frames(i) for i in tqdm(range(len(self)), desc=desc, leave=False)]
            return self
        key = hashlib.sha256(json.dumps({"videos": [c.video for c in self.clips], "spec": asdict(self.spec),
                                         "train": self.train, "inputs": inputs}
                                        | ({"views": self.views} if self.views != 1 and not self.train else {}),
                                        sort_keys=True).encode()).hexdigest()
        path = Path(cache_dir) / f"clips_{key[:24]}.pt"
        if not write:
            # atomic_write: an existing file is complete
            return self.fill_cache(desc) if not path.is_file() else self._load(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.is_file():
                return self._load(path)
            self.cache = [self.frames(i) for i in tqdm(range(len(self)), desc=desc, leave=False)]
            atomic_write(path, lambda p: torch.save(self.cache, p))
        return self

    def _load(self, path: Path) -> "ClipDataset":
        self.cache = torch.load(path, weights_only=True)
        return self

    def __getitem__(self, i: int) -> dict[str, Any]:
        frames = self.cache[i] if self.cache is not None else self.frames(i)
        return {"frames": frames, "labels": torch.from_numpy(self.labels[i].astype(np.float32)), "index": i}


def normalise(x: Tensor) -> Tensor:
    """[..., 3, H, W] in 0..255 -> CLIP-normalised."""
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(3, 1, 1)
    return (x / 255.0 - mean) / std


def center_view(frames: Tensor, spec: VideoSpec, view: int = 0) -> Tensor:
    """Test view `view`: [B, T, K, h, w, 3] uint8 -> frame `view` of each chunk, [B, T, 3, S, S]
    normalised (resize + centre crop)."""
    b, t = frames.shape[:2]
    x = frames[:, :, view].permute(0, 1, 4, 2, 3).reshape(b * t, 3, *frames.shape[3:5]).float()
    x = resize_short(x, spec.image_size)
    h, w = x.shape[-2:]
    top, left = (h - spec.image_size) // 2, (w - spec.image_size) // 2
    x = x[..., top:top + spec.image_size, left:left + spec.image_size]
    return normalise(x).reshape(b, t, 3, spec.image_size, spec.image_size)


def augment(frames: Tensor, spec: VideoSpec, generator: torch.Generator) -> Tensor:
    """Training view: a random candidate per chunk, one random resized crop and flip per clip.
    [B, T, K, h, w, 3] uint8 -> [B, T, 3, S, S] normalised."""
    b, t, k, h, w = frames.shape[:5]
    pick = torch.randint(0, k, (b, t), generator=generator).to(frames.device)   # drawn on the loop's CPU generator
    at = {"device": frames.device}
    chosen = frames[torch.arange(b, **at)[:, None], torch.arange(t, **at)[None, :], pick]   # [B, T, h, w, 3]
    out = []
    for i in range(b):
        area = h * w * float(torch.empty(1).uniform_(*spec.crop_scale, generator=generator))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)))
        cw = min(w, max(1, round(math.sqrt(area * ratio))))
        ch = min(h, max(1, round(math.sqrt(area / ratio))))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        flip = bool(torch.rand(1, generator=generator) < 0.5)
        x = chosen[i, :, top:top + ch, left:left + cw].permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(spec.image_size, spec.image_size), mode="bilinear", antialias=True,
                          align_corners=False)
        out.append(x.flip(-1) if flip else x)
    return normalise(torch.stack(out))
