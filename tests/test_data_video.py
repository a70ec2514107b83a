"""Decoding: a tiny PyAV-written mp4 whose frame k has brightness 5k, so frame times are checkable."""
from __future__ import annotations

import pickle
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from actlab.families.continual.data.records import StreamClip
from actlab.families.continual.data.stream_builder import StreamSpec, build_stream
from actlab.families.continual.data.video import ClipDataset, transform
from test_data_split import row

FPS, SECONDS, SIZE = 15, 3, 64
MEAN, STD = [0.45] * 3, [0.225] * 3


def write_mp4(path: Path, fps: int = FPS, seconds: int = SECONDS, size: int = SIZE) -> Path:
    """Frame k is uniformly grey with value 5k (0..220 for 45 frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0"}  # lossless: decoded brightness identifies the frame
        for k in range(fps * seconds):
            img = np.full((size, size, 3), 5 * k, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def brightness(video: torch.Tensor) -> np.ndarray:
    """Per-frame mean brightness (0..255) of a normalised [C,T,H,W] clip."""
    raw = video * torch.tensor(STD).view(-1, 1, 1, 1) + torch.tensor(MEAN).view(-1, 1, 1, 1)
    return (raw.mean(dim=(0, 2, 3)) * 255).numpy()


def frames_at(indices) -> np.ndarray:
    return 5.0 * np.asarray(indices)


@pytest.fixture
def clips_dir(tmp_path):
    write_mp4(tmp_path / "clips" / "c1.mp4")
    return tmp_path / "clips"


def dataset(clips, clips_dir, crop=SIZE, short_side=SIZE):
    return ClipDataset(clips, clips_dir, num_frames=8, short_side=short_side, crop_size=crop, mean=MEAN, std=STD)


def test_item_shape_labels_and_frame_times(clips_dir):
    clip = StreamClip(index=0, clip_uid="c1", video_uid="v", action_idx=0, start_sec=1.0,
                      end_sec=1.0 + 16 / 15, verb_label=3, noun_label=7)
    item = dataset([clip], clips_dir)[0]
    assert item["video"].shape == (3, 8, 64, 64) and item["video"].dtype == torch.float32
    assert (item["verb"], item["noun"], item["index"]) == (3, 7, 0)
    # frames 15..30 (16 = 8 x sampling 2), subsampled uniformly: linspace(0, 15, 8) -> 0,2,..,12,15
    np.testing.assert_allclose(brightness(item["video"]), frames_at([15, 17, 19, 21, 23, 25, 27, 30]), atol=2.5)


def test_stream_clips_decode_their_own_time_window(clips_dir):
    """Second and third clip of one annotation start at 16/15 and 32/15 s: frames 16.. and 32.."""
    spec = StreamSpec(num_frames=8, sampling_rate=2, target_fps=FPS, drop_unseen=False)
    clips, _ = build_stream(pd.DataFrame([row("c1", "v", 0, 3, 0, 0.0, 2.9, 1, 2) | {"origin_video_id": "o"}]), spec)
    assert len(clips) == 2
    ds = dataset(clips, clips_dir)
    np.testing.assert_allclose(brightness(ds[1]["video"]), frames_at([16, 18, 20, 22, 24, 26, 28, 31]), atol=2.5)
    np.testing.assert_allclose(brightness(ds[0]["video"]), frames_at([0, 2, 4, 6, 8, 10, 12, 15]), atol=2.5)


def test_resize_and_centre_crop(clips_dir):
    clip = StreamClip(0, "c1", "v", 0, 0.0, 16 / 15, 0, 0)
    assert dataset([clip], clips_dir, short_side=40, crop=32)[0]["video"].shape == (3, 8, 32, 32)


@pytest.mark.parametrize("h,w", [(20, 22), (22, 20)])
def test_transform_scales_the_short_side_then_centre_crops(h, w):
    """Short side 20 -> 16, long side floor(22 / 20 * 16) = floor(17.6) = 17; centre crop 8:
    offsets round((16 - 8) / 2) = 4 and round((17 - 8) / 2) = round(4.5) = 4 (half to even, as
    torchvision's CenterCrop upstream uses; a ceil would give 5)."""
    frames = torch.rand(3, 8, h, w, generator=torch.Generator().manual_seed(0)) * 255
    out = transform(frames, num_frames=8, short_side=16, crop_size=8, mean=[0.0] * 3, std=[1.0] * 3)
    assert out.shape == (3, 8, 8, 8)
    size = (17, 16) if h > w else (16, 17)
    scaled = torch.nn.functional.interpolate(frames / 255, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, scaled[..., 4:12, 4:12])


def test_transform_normalises_with_mean_and_std():
    frames = torch.full((3, 8, 16, 16), 255.0)
    out = transform(frames, num_frames=8, short_side=16, crop_size=16, mean=[0.5] * 3, std=[0.25] * 3)
    torch.testing.assert_close(out, torch.full((3, 8, 16, 16), 2.0))   # (1 - 0.5) / 0.25


def test_data_configs_short_side():
    """Ego4D: short side 256, crop 224 (upstream); egotoy clips are stored at 64 x 64, so its
    short side equals the crop size and the transform leaves the frames as they are."""
    from omegaconf import OmegaConf

    configs = Path(__file__).resolve().parents[1] / "configs" / "continual" / "data"
    ego4d, egotoy = (OmegaConf.load(configs / f"{n}.yaml") for n in ("ego4d", "egotoy"))
    assert (ego4d.short_side, ego4d.crop_size) == (256, 224)
    assert (egotoy.short_side, egotoy.crop_size) == (SIZE, SIZE)


def test_dataset_exposes_its_labels_without_decoding(tmp_path):
    clips = [StreamClip(i, "absent", "v", 0, 0.0, 1.0, verb, noun) for i, (verb, noun) in enumerate([(3, 1), (0, 2)])]
    assert dataset(clips, tmp_path).stream_labels() == [(3, 1), (0, 2)]   # no mp4 exists: nothing decoded


def test_dataset_pickles_into_workers(clips_dir):
    clips = [StreamClip(i, "c1", "v", 0, i * 16 / 15, (i + 1) * 16 / 15, i, i) for i in range(2)]
    ds = dataset(clips, clips_dir)
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again[1]["video"], ds[1]["video"])
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=1)))
    assert batch["video"].shape == (2, 3, 8, 64, 64) and batch["index"].tolist() == [0, 1]
    assert torch.equal(batch["video"][1], ds[1]["video"])
