"""aktoy: a small, deterministic stand-in for Animal Kingdom's action-recognition split, written in
the real formats (annotations.py) so every loader and job runs on it unchanged.

    python jobs/make_aktoy.py --out data/aktoy [--seed 0] [--scale 1]

140 synthetic actions with categories, the real 17 / 29 / 94 head / middle / tail split and a
long-tailed `count`; ~1,200 train and ~400 test clips (x `scale`) of 16 frames at 64 x 64, about
two labels each. Each class is a sprite with its own shape, colour and motion, so the task is
learnable; `UNSEEN_IN_TEST` tail classes never occur in the test split (the drop rule runs).
Also a random-init tiny open_clip CLIP (`clip/ak_tiny.json` + `clip/ak_tiny.pt`) that the jobs
load from its path, as they load real CLIP weights on the cluster.
"""
from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pandas as pd

from actlab.atomic import atomic_write, atomic_write_text

NUM_CLASSES = 140
SEGMENT_SIZES = {"head": 17, "middle": 29, "tail": 94}
UNSEEN_IN_TEST = 8                 # tail classes with no test positive
FRAMES, SIZE, FPS = 16, 64, 8
DONE = ".generated"                # written last: the set is complete
VERSION = 2                        # of the generator: a set written by another version is regenerated
CLIP_NAME = "ak_tiny"
CLIP_CONFIG = {"embed_dim": 32,
               "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
               "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
VERBS = ["running", "walking", "swimming", "flying", "eating", "drinking", "sleeping", "grooming",
         "climbing", "jumping", "digging", "hunting", "calling", "fighting", "playing", "nesting",
         "preening", "chasing", "resting", "diving"]
MANNERS = ["slowly", "quickly", "alone", "in a group", "at night", "in water", "on a branch"]
CATEGORIES = ["locomotion", "feeding", "social", "maintenance", "communication", "rest", "predation"]


def actions(rng: np.random.Generator) -> pd.DataFrame:
    """The AR_count sheet: names, categories, segments (random class ids) and long-tailed counts."""
    names = [f"{v} {m}" for v in VERBS for m in MANNERS][:NUM_CLASSES]
    ids = rng.permutation(NUM_CLASSES)
    segment = np.empty(NUM_CLASSES, dtype=object)
    count = np.zeros(NUM_CLASSES, dtype=np.int64)
    start = 0
    ranges = {"head": (511, 4000), "middle": (111, 499), "tail": (1, 96)}
    for name, size in SEGMENT_SIZES.items():
        members = ids[start:start + size]
        lo, hi = ranges[name]
        segment[members] = name
        count[members] = np.round(np.exp(rng.uniform(math.log(lo), math.log(hi), size))).astype(np.int64)
        start += size
    return pd.DataFrame({"S/N": np.arange(1, NUM_CLASSES + 1), "action_category": [CATEGORIES[c % 7] for c in range(NUM_CLASSES)],
                         "action": names, "index": np.arange(NUM_CLASSES), "segment": segment, "count": count})


def sample_labels(rng: np.random.Generator, n: int, weights: np.ndarray) -> list[list[int]]:
    """~2 labels per clip (1, 2 or 3), drawn without replacement with probability ~ weights."""
    sizes = rng.choice([1, 2, 3], size=n, p=[0.3, 0.45, 0.25])
    p = weights / weights.sum()
    return [sorted(rng.choice(NUM_CLASSES, size=k, replace=False, p=p).tolist()) for k in sizes]


# -- rendering ----------------------------------------------------------------------------------
def _palette() -> np.ndarray:
    import colorsys

    return np.array([[int(255 * v) for v in colorsys.hsv_to_rgb(h / 12, sat, val)]
                     for sat, val in ((0.9, 0.95), (0.5, 1.0), (1.0, 0.55)) for h in range(12)], np.uint8)


PALETTE = _palette()
_R = 9
_yy, _xx = np.mgrid[-_R:_R + 1, -_R:_R + 1]
SHAPES = [np.ones_like(_yy, bool),                                   # square
          _yy ** 2 + _xx ** 2 <= _R ** 2,                            # disc
          (np.abs(_xx) <= (_yy + _R) / 2),                           # triangle
          (np.abs(_xx) <= 2) | (np.abs(_yy) <= 2)]                   # cross


def signature(c: int) -> tuple[int, int, int]:
    """(shape, colour, motion) of class c: unique for the 140 classes (36 colours x 4 shapes).
    The colour (12 hues x 3 saturation/brightness levels) tells most classes apart, because a
    frozen random-init image tower keeps colour far better than shape or motion."""
    return c // 36, c % 36, c % 3


def render(labels: list[int], rng: np.random.Generator) -> np.ndarray:
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    # a dark, nearly constant background: the sprites carry the variance between clips
    frames[:] = rng.integers(50, 60)
    frames += rng.integers(0, 6, size=(1, SIZE, SIZE, 1), dtype=np.uint8)
    for c in labels:
        shape, colour, motion = signature(c)
        y0, x0 = rng.integers(_R + 2, SIZE - _R - 2, size=2)
        phase = rng.uniform(0, 2 * math.pi)
        for t in range(FRAMES):
            d = int(round(16 * math.sin(phase + 2 * math.pi * t / FRAMES)))
            y, x = (y0, x0 + d) if motion == 0 else (y0 + d, x0) if motion == 1 else (y0, x0)
            y, x = min(max(int(y), _R), SIZE - _R - 1), min(max(int(x), _R), SIZE - _R - 1)
            patch = frames[t, y - _R:y + _R + 1, x - _R:x + _R + 1]
            patch[SHAPES[shape]] = PALETTE[colour]
    return frames


def encode_mp4(frames: np.ndarray) -> bytes:
    """mpeg4 at a generous bit rate, in memory: byte-stable for the same frames (libx264 is not)
    and 2.5x faster to encode here."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.bit_rate = 400_000
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def frame_list(videos: list[str], labels: list[list[int]], offset: int) -> str:
    """The SlowFast frame list; the first frame lists only the first label, so a clip's labels are
    the union over its frames, as the loader must compute them."""
    lines = ["original_vido_id video_id frame_id path labels"]
    for i, (video, ls) in enumerate(zip(videos, labels)):
        for f in range(FRAMES):
            shown = ls[:1] if f == 0 else ls
            text = ",".join(map(str, shown))
            lines.append(f"{video} {offset + i} {f} {video}/{video}_{f + 1:06d}.jpg "
                         + (f'"{text}"' if len(shown) > 1 else text))
    return "\n".join(lines) + "\n"


def write_clip_model(out: Path, seed: int) -> tuple[Path, Path]:
    """A seeded random-init tiny CLIP: its open_clip model config and its weights."""
    import open_clip
    import torch

    config = out / f"{CLIP_NAME}.json"
    atomic_write_text(config, json.dumps(CLIP_CONFIG, indent=1) + "\n")
    torch.manual_seed(seed)
    model = open_clip.CLIP(**CLIP_CONFIG)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))    # OpenAI CLIP's trained value
        # At random init the class token is dominated by its constant embedding (features varied
        # by 0.07 around 0.9 between clips), which a frozen tower's linear readout barely
        # separates; starting it at zero makes the class token a function of the image alone.
        model.visual.class_embedding.zero_()
        model.visual.positional_embedding[0].zero_()
    weights = out / f"{CLIP_NAME}.pt"
    atomic_write(weights, lambda p: torch.save(model.state_dict(), p))
    return config, weights


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def generate(out: str | Path, seed: int = 0, scale: float = 1.0) -> Path:
    out = Path(out)
    (out / DONE).unlink(missing_ok=True)              # complete again only when this run finishes
    for stale in (out / "dataset").glob(".video.*"):   # staging folders of an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    rng = np.random.default_rng(seed)
    table = actions(rng)
    counts = table["count"].to_numpy(np.float64)
    weights = counts ** 0.5
    tail = np.flatnonzero(table["segment"].to_numpy() == "tail")
    unseen = rng.choice(tail, size=UNSEEN_IN_TEST, replace=False)
    test_weights = weights.copy()
    test_weights[unseen] = 0
    n_train, n_test = max(40, round(1200 * scale)), max(20, round(400 * scale))
    splits = {"train": sample_labels(rng, n_train, weights), "val": sample_labels(rng, n_test, test_weights)}
    (out / "annotation").mkdir(parents=True, exist_ok=True)
    clip_writer = _start_clip_writer(out / "clip", seed)
    try:
        _write_rest(out, table, splits, rng)
    except BaseException:
        if clip_writer is not None:
            clip_writer.terminate()
            clip_writer.join()
        raise
    if clip_writer is None:
        write_clip_model(out / "clip", seed)
    else:
        clip_writer.join()
        if clip_writer.exitcode != 0:
            raise RuntimeError(f"{out / 'clip'}: writing the tiny CLIP failed (exit code {clip_writer.exitcode}; "
                               f"see above)")
    atomic_write_text(out / DONE, json.dumps({"version": VERSION, "seed": seed, "scale": scale, "train": n_train,
                                                 "test": n_test}) + "\n")
    return out


def _start_clip_writer(folder: Path, seed: int):
    """`write_clip_model` in a forked process, which imports open_clip (torch, torchvision: as long
    as rendering and encoding every clip) while this one renders on the other core; None (write
    it here afterwards) when torch is loaded already: a fork of a process that has run OpenMP
    threads may hang in them."""
    if "torch" in sys.modules:
        return None
    writer = multiprocessing.get_context("fork").Process(target=write_clip_model, args=(folder, seed),
                                                         name="aktoy-clip")
    writer.start()
    return writer


def _write_rest(out: Path, table: pd.DataFrame, splits: dict[str, list[list[int]]], rng: np.random.Generator) -> None:
    """The clips, the frame lists, df_action.xlsx and AR_metadata.xlsx."""
    # The clips go into a staging folder, written plainly (1,600 fsyncs cost more than encoding
    # them), that replaces dataset/video in one rename: a reader sees the old folder or the
    # complete new one, and DONE (written last, synced) says the set is complete.
    video_dir = out / "dataset" / "video"
    staging = Path(tempfile.mkdtemp(prefix=".video.", dir=_mkdir(out / "dataset")))
    rows, offset = [], 0
    for split, labels in splits.items():
        videos = [f"AKT{split[0].upper()}{i:05d}" for i in range(len(labels))]
        for video, ls in zip(videos, labels):
            (staging / f"{video}.mp4").write_bytes(encode_mp4(render(ls, rng)))
            rows.append({"video_id": video, "type": "train" if split == "train" else "test",
                         "labels": ",".join(map(str, ls)),
                         "list_animal_action": "; ".join(table["action"].iloc[c] for c in ls)})
        atomic_write_text(out / "annotation" / f"{split}.csv", frame_list(videos, labels, offset))
        offset += len(videos)
    os.chmod(staging, 0o777 & ~_umask())
    if video_dir.exists():
        old = video_dir.with_name(f".video.old.{os.getpid()}")
        os.replace(video_dir, old)
        os.replace(staging, video_dir)
        shutil.rmtree(old)
    else:
        os.replace(staging, video_dir)

    def xlsx(path: Path, sheets: dict[str, pd.DataFrame]) -> None:
        def write(tmp: Path) -> None:
            with pd.ExcelWriter(tmp, engine="openpyxl") as w:
                for name, df in sheets.items():
                    df.to_excel(w, sheet_name=name, index=False)
        atomic_write(path, write)

    xlsx(out / "annotation" / "df_action.xlsx", {"AR_count": table})
    description = [f"the animal is {a}; shape {signature(c)[0]}, colour {signature(c)[1]}"
                   for c, a in enumerate(table["action"])]
    xlsx(out / "AR_metadata.xlsx", {
        "AR": pd.DataFrame(rows).reset_index(names="S/N").assign(**{"S/N": lambda d: d["S/N"] + 1}),
        "Action": pd.DataFrame({"Label": table["index"], "Category": table["action_category"],
                                "Action": table["action"], "Description": description})})


def is_complete(root: str | Path, seed: int, scale: float) -> bool:
    """The set under `root` was fully written with these settings."""
    done = Path(root) / DONE
    if not done.is_file():
        return False
    info = json.loads(done.read_text())
    return info.get("version") == VERSION and info.get("seed") == seed and info.get("scale") == scale
