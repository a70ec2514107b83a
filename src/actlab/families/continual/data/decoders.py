"""Video decoders behind one interface: the frames of one clip window, [C, T, H, W] uint8 RGB.

`data.decoder` selects one:
- `pyav`: pytorchvideo's `EncodedVideo` with PyAV (upstream's decoder, bundled FFmpeg);
- `torchcodec`: torchcodec's `VideoDecoder` (CPU), which needs the system FFmpeg libraries
  (Debian: `apt-get install ffmpeg`, cluster/install_debian_deps.sh) and torchcodec itself.
Both keep the frames whose presentation time lies in [start, end) (seconds from the stream's
start): pytorchvideo keeps integer pts with ceil(start / tb) <= pts < ceil(end / tb), which is the
same set; torchcodec's frames are filtered by the same rule on their pts in seconds (shifted by the
stream's start time, as pytorchvideo's pts are). Which
one is faster is measured by benchmarks/bench_decode.py (docs/cache.md); the tests check that
both return the same frames within codec tolerance (tests/test_decode_backends.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

import actlab.compat  # noqa: F401  (must precede the pytorchvideo imports)
from pytorchvideo.data.encoded_video import EncodedVideo

from actlab.errors import DataError

DECODERS = ("pyav", "torchcodec")


class WindowDecoder(Protocol):
    name: str

    def window(self, path: Path, start_sec: float, end_sec: float) -> torch.Tensor | None:
        """Frames with presentation time in [start_sec, end_sec): uint8 [C, T, H, W]; None if none."""


class PyAVDecoder:
    name = "pyav"

    def window(self, path: Path, start_sec: float, end_sec: float) -> torch.Tensor | None:
        video = EncodedVideo.from_path(str(path), decode_audio=False, decoder="pyav")
        try:
            frames = video.get_clip(start_sec, end_sec)["video"]
        finally:
            video.close()
        # pytorchvideo hands back float32 0..255 holding the decoder's uint8 values: exact to cast
        return None if frames is None else frames.to(torch.uint8)


class TorchCodecDecoder:
    name = "torchcodec"

    def window(self, path: Path, start_sec: float, end_sec: float) -> torch.Tensor | None:
        from torchcodec.decoders import VideoDecoder   # here: it loads only with the system FFmpeg

        decoder = VideoDecoder(str(path), num_ffmpeg_threads=1, seek_mode="exact")
        t0 = decoder.metadata.begin_stream_seconds_from_header or 0.0
        end = min(end_sec + t0, decoder.metadata.end_stream_seconds)
        if end <= start_sec + t0:
            return None
        batch = decoder.get_frames_played_in_range(start_sec + t0, end)
        # "played in range" also returns the frame on screen at `start` (pts before it): keep only
        # the frames whose pts lies in the window, pytorchvideo's rule
        keep = (batch.pts_seconds >= start_sec + t0) & (batch.pts_seconds < end_sec + t0)
        frames = batch.data[keep]                                                 # [T, C, H, W] uint8
        return None if frames.shape[0] == 0 else frames.permute(1, 0, 2, 3).contiguous()


def torchcodec_problem() -> str | None:
    """None if torchcodec imports here, else why not (its message names the missing FFmpeg libraries)."""
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception as e:  # an OSError / RuntimeError listing every FFmpeg major it tried
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def get_decoder(name: str) -> WindowDecoder:
    if name == "pyav":
        return PyAVDecoder()
    if name == "torchcodec":
        problem = torchcodec_problem()
        if problem is not None:
            raise DataError(f"data.decoder=torchcodec cannot load here ({problem}); install torchcodec and "
                            f"the system FFmpeg libraries (cluster/install_debian_deps.sh) or set data.decoder=pyav")
        return TorchCodecDecoder()
    raise DataError(f"data.decoder=`{name}`: expected one of {DECODERS}")
