"""The decode cache (data/clip_store.py): uint8 clips after the deterministic transform, keyed by
content, written atomically, read back as the very tensors decoding gives."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from actlab.errors import DataError
from actlab.families.continual.data.clip_store import (CachedClips, Entry, EntryKey, entry_key, find_entry,
                                                       write_entry)
from actlab.families.continual.data.records import StreamClip
from actlab.families.continual.data.video import ClipDataset, normalise_uint8, prepare_uint8, transform
from test_data_video import MEAN, STD, write_mp4

SHA = "ab" * 32


@pytest.fixture
def clips_dir(tmp_path):
    write_mp4(tmp_path / "clips" / "c1.mp4")            # 64 x 64, 15 fps, 3 s, frame k has grey 5k
    return tmp_path / "clips"


def clips(n: int = 2) -> list[StreamClip]:
    return [StreamClip(i, "c1", "v", 0, i * 16 / 15, (i + 1) * 16 / 15, i + 1, 2 * i) for i in range(n)]


def dataset(clips_dir, short_side=40, crop=32, pixels="uint8", num_frames=8, n=2) -> ClipDataset:
    # 64 -> 40 scales (bilinear), so the uint8 rounding is exercised, not a no-op
    return ClipDataset(clips(n), clips_dir, num_frames=num_frames, short_side=short_side, crop_size=crop,
                       mean=MEAN, std=STD, pixels=pixels)


def test_prepare_uint8_rounds_the_bilinear_average_half_to_even():
    """4 x 4 -> short side 2: bilinear (align_corners False, no antialias) samples at 0.5 and 2.5,
    i.e. each output pixel is the mean of a 2 x 2 block. Blocks of 0/1 give 0.5 -> 0 and blocks
    of 2/5 give 3.5 -> 4 (round half to even)."""
    row_a, row_b = [0, 1, 2, 5], [1, 0, 5, 2]
    frame = torch.tensor([row_a, row_b, row_a, row_b], dtype=torch.float32)
    frames = frame.expand(3, 1, 4, 4)
    out = prepare_uint8(frames, num_frames=1, short_side=2, crop_size=2)
    assert out.dtype == torch.uint8
    assert out[0, 0].tolist() == [[0, 4], [0, 4]]
    # normalised: (4 / 255 - 0.45) / 0.225
    torch.testing.assert_close(normalise_uint8(out, MEAN, STD)[0, 0, 0, 1], torch.tensor((4 / 255 - 0.45) / 0.225))


def test_uint8_pixels_stay_within_half_a_grey_level_of_the_float_path():
    frames = torch.rand(3, 8, 30, 44, generator=torch.Generator().manual_seed(0)) * 255
    exact = transform(frames, 8, 16, 16, MEAN, STD)
    rounded = normalise_uint8(prepare_uint8(frames, 8, 16, 16), MEAN, STD)
    assert float((exact - rounded).abs().max()) <= 0.5 / 255 / STD[0] + 1e-6
    assert not torch.equal(exact, rounded)                                  # rounding did happen


def test_the_key_hashes_stream_video_sizes_transform_and_decoder(clips_dir):
    ds = dataset(clips_dir)
    key = entry_key(ds, SHA)
    size = (clips_dir / "c1.mp4").stat().st_size
    expected = {"stream_sha256": SHA, "video_bytes": {"c1": size}, "num_frames": 8, "short_side": 40,
                "crop_size": 32, "decoder": "pyav", "format": 1}
    assert key.digest == hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()
    others = [entry_key(dataset(clips_dir, num_frames=4), SHA), entry_key(dataset(clips_dir, crop=40), SHA),
              entry_key(ds, "cd" * 32), EntryKey(**{**expected, "decoder": "torchcodec"})]
    assert len({key.digest, *(k.digest for k in others)}) == 5
    write_mp4(clips_dir / "c1.mp4", size=48)                       # the video replaced: another key
    assert entry_key(ds, SHA).digest != key.digest


def test_size_is_reported_before_the_entry_is_written(clips_dir, tmp_path, capsys):
    """2 clips x 3 x 8 x 32 x 32 uint8 = 49152 bytes."""
    entry, written = write_entry(dataset(clips_dir), SHA, tmp_path / "cache", label="user 1")
    out = capsys.readouterr().out
    assert written and "2 clips x [3, 8, 32, 32] uint8 = 49.2 kB" in out
    assert entry.array.stat().st_size == 49152 + 128                      # .npy header is 128 bytes
    assert entry.array.parent.parent == tmp_path / "cache" / "clips"
    assert json.loads(entry.meta.read_text())["bytes"] == 49152
    again, written = write_entry(dataset(clips_dir), SHA, tmp_path / "cache", label="user 1")
    assert again == entry and not written                                 # present: kept, not rewritten


def test_cached_items_are_the_decoded_items(clips_dir, tmp_path):
    ds = dataset(clips_dir)
    entry, _ = write_entry(ds, SHA, tmp_path / "cache")
    cached = CachedClips(ds.clips, entry, MEAN, STD)
    assert len(cached) == 2 and cached.stream_labels() == ds.stream_labels() == [(1, 0), (2, 2)]
    for i in range(2):
        a, b = ds[i], cached[i]
        assert torch.equal(a["video"], b["video"]) and a["video"].dtype == b["video"].dtype == torch.float32
        assert (a["verb"], a["noun"], a["index"]) == (b["verb"], b["noun"], b["index"])
    batch = next(iter(torch.utils.data.DataLoader(cached, batch_size=2, num_workers=1)))   # pickles, maps again
    assert torch.equal(batch["video"][1], ds[1]["video"])


def test_a_failed_write_leaves_no_entry(clips_dir, tmp_path):
    bad = ClipDataset([*clips(1), StreamClip(1, "c1", "v", 0, 10.0, 11.0, 0, 0)], clips_dir, num_frames=8,
                      short_side=40, crop_size=32, mean=MEAN, std=STD, pixels="uint8")   # 2nd clip past the end
    with pytest.raises(DataError, match="no frames"):
        write_entry(bad, SHA, tmp_path / "cache")
    assert find_entry(bad, SHA, tmp_path / "cache") is None
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []   # no temporary file left


def test_an_entry_counts_only_with_its_metadata(clips_dir, tmp_path):
    ds = dataset(clips_dir)
    entry, _ = write_entry(ds, SHA, tmp_path / "cache")
    assert find_entry(ds, SHA, tmp_path / "cache") == entry
    entry.meta.unlink()
    assert find_entry(ds, SHA, tmp_path / "cache") is None
    assert find_entry(ds, SHA, None) is None


def test_a_truncated_array_is_refused_naming_the_file(clips_dir, tmp_path):
    ds = dataset(clips_dir)
    entry, _ = write_entry(ds, SHA, tmp_path / "cache")
    np.save(entry.array, np.zeros((2, 3, 8, 32, 16), dtype=np.uint8))
    with pytest.raises(DataError, match=str(entry.array.name)):
        CachedClips(ds.clips, entry, MEAN, STD)[0]


def test_user_streams_read_the_cache_when_present(data_cfg, egotoy_splits, tmp_path):
    from omegaconf import OmegaConf

    from actlab.families.continual.data.user_streams import open_user_stream

    cfg = OmegaConf.merge(data_cfg, {"max_clips": 6, "cache_dir": str(tmp_path / "cache")})
    decoded = open_user_stream(cfg, "68")
    assert isinstance(decoded.dataset, ClipDataset)                       # no entry yet: decodes
    write_entry(decoded.dataset, decoded.sha256, cfg.cache_dir)
    cached = open_user_stream(cfg, "68")
    assert isinstance(cached.dataset, CachedClips) and cached.sha256 == decoded.sha256
    assert all(torch.equal(cached.dataset[i]["video"], decoded.dataset[i]["video"]) for i in range(6))
    # float pixels are upstream's path, which the uint8 cache cannot give: they decode
    assert isinstance(open_user_stream(OmegaConf.merge(cfg, {"pixels": "float"}), "68").dataset, ClipDataset)
    assert isinstance(open_user_stream(cfg, "68", use_cache=False).dataset, ClipDataset)


def test_entry_path_is_content_addressed(tmp_path):
    key = EntryKey(SHA, {"c1": 10}, 8, 40, 32, "pyav")
    entry = Entry.at(tmp_path, key)
    assert entry.array == tmp_path / "clips" / key.digest[:2] / f"{key.digest}.npy"
    assert entry.meta == entry.array.with_suffix(".json")
    assert Path(entry.array).stem == key.digest
