"""Decoding of stream clips: a map-style dataset, so stream index i is always the same sample.

Each item decodes `clips_dir/<clip_uid>.mp4` between the clip's start/end (`data.decoder`:
pytorchvideo's PyAV decoder or torchcodec, data/decoders.py), subsamples `num_frames` frames
uniformly, scales the short side to `short_side` (bilinear), centre-crops `crop_size` and
normalises: upstream's deterministic test-time transform (ShortSideScale 256, CenterCrop 224 on
Ego4D; docs/protocol.md), which the protocol uses for every sample. With `data.pixels: uint8` the
scaled, cropped clip is rounded to 8 bits before normalising, which is what the decode cache
stores (data/clip_store.py), so a cached and a decoded sample are the same tensor. The dataset
holds only plain data (no open file handles), so it pickles into DataLoader workers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import av
import torch
from torch.utils.data import Dataset

import actlab.compat  # noqa: F401  (must precede the pytorchvideo imports)
from pytorchvideo.transforms.functional import short_side_scale, uniform_temporal_subsample

from actlab.errors import DataError
from actlab.families.continual.data.decoders import get_decoder
from actlab.families.continual.data.records import StreamClip

PIXELS = ("uint8", "float")

# Manifest times are rounded to 1e-6 s and pytorchvideo keeps frames with ceil(t * timebase) <= pts
# < ceil(end * timebase): a start a hair above a frame boundary would drop that frame. Shifting the
# window down by far less than a frame interval puts boundary frames on the side exact times would.
WINDOW_SHIFT_SEC = 1e-4


def clip_path(clips_dir: str | Path, clip_uid: str) -> Path:
    return Path(clips_dir) / f"{clip_uid}.mp4"


def probe_video(path: Path) -> str | None:
    """None if `path` opens as a video with a decodable first frame, else why not."""
    if not path.is_file():
        return "missing file"
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream"
            next(container.decode(video=0))
    except (av.FFmpegError, StopIteration, OSError) as e:
        return f"cannot decode: {e!r}"
    return None


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """[..., H, W] -> [..., size, size] at offsets round((H - size) / 2), round((W - size) / 2),
    Python's half-to-even round as torchvision's CenterCrop (upstream), which differs from a ceil
    by one pixel when the margin is odd (e.g. a 4:3 frame scaled to 256 x 341 cropped to 224)."""
    h, w = x.shape[-2:]
    if min(h, w) < size:
        raise DataError(f"frames of {h}x{w} are smaller than the crop size {size}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def transform(frames: torch.Tensor, num_frames: int, short_side: int, crop_size: int,
              mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[C,T,H,W] float 0..255 -> [C,num_frames,crop,crop] normalised.

    Upstream normalises before scaling; bilinear weights sum to one, so the order is immaterial.
    """
    x = uniform_temporal_subsample(frames, num_frames, temporal_dim=1) / 255.0
    if min(x.shape[-2:]) != short_side:  # egotoy clips are stored at their short side: skip a no-op resample
        x = short_side_scale(x, short_side)
    x = centre_crop(x, crop_size)
    return normalise(x, mean, std)


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[C, ...] float in 0..1 -> (x - mean) / std per channel."""
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1, 1)
    return (x - m) / s


def prepare_uint8(frames: torch.Tensor, num_frames: int, short_side: int, crop_size: int) -> torch.Tensor:
    """[C,T,H,W] 0..255 -> [C,num_frames,crop,crop] uint8: the deterministic transform without the
    normalisation, rounded (half to even) to 8 bits. This is what the decode cache stores; rounding
    moves a pixel by at most 0.5 / 255 before normalising, and nothing where no scaling happens."""
    # subsample before converting: 32 of 64 full-resolution frames in float32 instead of all
    x = uniform_temporal_subsample(frames, num_frames, temporal_dim=1).float()
    if min(x.shape[-2:]) != short_side:
        x = short_side_scale(x, short_side)
    return centre_crop(x, crop_size).round().clamp(0, 255).to(torch.uint8)


def normalise_uint8(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A `prepare_uint8` clip as the model reads it (float32, normalised)."""
    return normalise(clip.float() / 255.0, mean, std)


class ClipDataset(Dataset):
    def __init__(self, clips: Sequence[StreamClip], clips_dir: str | Path, num_frames: int, short_side: int,
                 crop_size: int, mean: Sequence[float], std: Sequence[float], decoder: str = "pyav",
                 pixels: str = "float") -> None:
        # A missing or corrupt video raises here; `on_bad_video: skip` drops such clips earlier,
        # when the stream is built.
        self.clips = list(clips)
        self.clips_dir = str(clips_dir)
        self.num_frames = int(num_frames)
        if short_side < crop_size:
            raise ValueError(f"data.short_side ({short_side}) must be >= data.crop_size ({crop_size})")
        if pixels not in PIXELS:
            raise DataError(f"data.pixels=`{pixels}`: expected one of {PIXELS}")
        self.short_side = int(short_side)
        self.crop_size = int(crop_size)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.decoder = str(decoder)
        get_decoder(self.decoder)      # an unknown or unloadable decoder fails here, naming data.decoder
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.clips)

    def stream_labels(self) -> list[tuple[int, int]]:
        """(verb, noun) of every sample in stream order, from the manifest (nothing decoded)."""
        return [(c.verb_label, c.noun_label) for c in self.clips]

    def decode(self, clip: StreamClip) -> torch.Tensor:
        """The clip's frames, [C,T,H,W] uint8."""
        path = clip_path(self.clips_dir, clip.clip_uid)
        if not path.is_file():
            raise DataError(f"stream sample {clip.index}: missing video file {path}")
        try:
            frames = get_decoder(self.decoder).window(path, max(0.0, clip.start_sec - WINDOW_SHIFT_SEC),
                                                      clip.end_sec - WINDOW_SHIFT_SEC)
        except Exception as e:  # decoders raise many types for corrupt input; all mean "bad file"
            raise DataError(f"stream sample {clip.index}: cannot decode {path}: {e!r}") from e
        if frames is None:
            raise DataError(f"stream sample {clip.index}: no frames in {path} "
                            f"between {clip.start_sec} s and {clip.end_sec} s")
        return frames

    def prepared(self, i: int) -> torch.Tensor:
        """Sample i as the decode cache stores it: `prepare_uint8` of its frames."""
        return prepare_uint8(self.decode(self.clips[i]), self.num_frames, self.short_side, self.crop_size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        clip = self.clips[i]
        if self.pixels == "uint8":
            video = normalise_uint8(self.prepared(i), self.mean, self.std)
        else:
            video = transform(self.decode(clip).float(), self.num_frames, self.short_side, self.crop_size,
                              self.mean, self.std)
        return {"video": video, "verb": clip.verb_label, "noun": clip.noun_label, "index": clip.index}
