"""PyAV (pytorchvideo) and torchcodec behind `data.decoder`: the same frames of the same windows."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import require

from actlab.errors import DataError
from actlab.families.continual.data.decoders import get_decoder, torchcodec_problem
from actlab.families.continual.data.records import StreamClip
from actlab.families.continual.data.video import WINDOW_SHIFT_SEC, ClipDataset
from test_data_video import MEAN, STD, write_mp4

# Both wrap FFmpeg's h264 decoder, which is bit-exact by the standard; the RGB conversion could
# differ by a rounding step, so a grey level of slack is allowed (measured here: 0).
CODEC_TOLERANCE = 1


@pytest.fixture(autouse=True)
def torchcodec_loads():
    require(torchcodec_problem() is None, f"torchcodec cannot load: {torchcodec_problem()}")


def write_textured(path: Path, fps: int = 30, seconds: int = 2, gop: int = 12) -> Path:
    """Lossy h264 (crf 23, B-frames) of a panning noise texture: frames differ, decoding is real work."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (64, 160, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"crf": "23", "g": str(gop)}
        for k in range(fps * seconds):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, k % 64:k % 64 + 96]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_lossless_window_gives_the_frames_of_its_times(tmp_path):
    """15 fps, frame k grey 5k: [1.0, 1.0 + 16/15) holds frames 15..30 (16 frames), by both."""
    path = write_mp4(tmp_path / "c.mp4")
    for name in ("pyav", "torchcodec"):
        frames = get_decoder(name).window(path, 1.0 - WINDOW_SHIFT_SEC, 1.0 + 16 / 15 - WINDOW_SHIFT_SEC)
        assert frames.dtype == torch.uint8 and frames.shape == (3, 16, 64, 64), name
        np.testing.assert_allclose(frames.float().mean(dim=(0, 2, 3)).numpy(), 5.0 * np.arange(15, 31), atol=1.5)


@pytest.mark.parametrize("start", [0.0, 0.25, 0.4, 0.5 - WINDOW_SHIFT_SEC, 0.55, 1.0])
def test_both_decoders_give_the_same_frames(tmp_path, start):
    """Windows starting on a keyframe, mid-GOP, at a frame time and just before the end."""
    path = write_textured(tmp_path / "t.mp4")
    a = get_decoder("pyav").window(path, start, start + 0.9)
    b = get_decoder("torchcodec").window(path, start, start + 0.9)
    assert a.shape == b.shape and a.shape[1] == len([k for k in range(60) if start <= k / 30 < start + 0.9])
    assert int((a.int() - b.int()).abs().max()) <= CODEC_TOLERANCE


def test_a_window_past_the_end_has_no_frames(tmp_path):
    path = write_mp4(tmp_path / "c.mp4")                              # 3 s
    assert get_decoder("pyav").window(path, 3.5, 4.5) is None
    assert get_decoder("torchcodec").window(path, 3.5, 4.5) is None


def test_clip_datasets_agree_across_decoders(tmp_path):
    write_textured(tmp_path / "clips" / "t.mp4")
    clips = [StreamClip(i, "t", "v", 0, 0.3 * i, 0.3 * i + 0.8, 0, 0) for i in range(3)]

    def items(decoder):
        ds = ClipDataset(clips, tmp_path / "clips", num_frames=8, short_side=48, crop_size=40, mean=MEAN, std=STD,
                         decoder=decoder, pixels="uint8")
        return torch.stack([ds[i]["video"] for i in range(3)])

    a, b = items("pyav"), items("torchcodec")
    assert float((a - b).abs().max()) <= CODEC_TOLERANCE / 255 / STD[0] + 1e-6


def test_an_unknown_decoder_is_refused_naming_the_key():
    with pytest.raises(DataError, match="data.decoder=`opencv`"):
        get_decoder("opencv")
