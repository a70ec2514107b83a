"""Realistic decoding: Ego4D-sized h264 into SlowFast clips, PyAV (pytorchvideo) against torchcodec.

Synthetic h264 (libx264, crf 23, GOP 2 s, yuv420p) at 1920x1080 and 960x540, 30 fps, SECONDS long:
a textured scene panning and a moving bright patch, so the encoder has real motion to code. Each
clip is one stream sample as the protocol cuts it on Ego4D: a 32 x 2 / 30 = 2.13 s window, decoded,
32 frames subsampled, short side scaled to 256, centre crop 224, rounded to uint8
(data/video.py `prepare_uint8`, what the decode cache stores). One worker = one process, one torch
thread (torchcodec: one FFmpeg thread). Figures, per decoder and resolution: clips per CPU second
(= clips/s of one worker on a dedicated core; CPU time counts every thread of the process; the
wall rate on this shared machine is recorded too), torchcodec / PyAV, the largest pixel difference
between the decoders, and the workers needed to feed one SlowFast R101 stream at batch 4 under an
ASSUMED GPU step time (no GPU measured here; see the notes).
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import av
import numpy as np
import torch

import _egotoy  # (its import sets one torch thread, as a stream task)
from common import Record, median

from actlab.families.continual.data.decoders import get_decoder, torchcodec_problem
from actlab.families.continual.data.video import prepare_uint8

VIDEOS = Path(__file__).resolve().parent / ".cache" / "decode"
SIZES = {"1080p": (1920, 1080), "540p": (960, 540)}
FPS, SECONDS, GOP = 30, 5, 60
NUM_FRAMES, SAMPLING_RATE, SHORT_SIDE, CROP = 32, 2, 256, 224
CLIP_SEC = NUM_FRAMES * SAMPLING_RATE / FPS
STARTS = (1.7,)                        # a window across a GOP boundary (this loaded 2-core box allows one)
BATCH = 4
EGOTOY_CLIPS = 24
# SlowFast 8x8 R101 at 32 x 224 x 224: ~80 GFLOPs forward per clip, ~3x that forward + backward, so
# ~1 TFLOP per batch-4 step; at ~10 TFLOP/s achieved on an A100/H100-class GPU in fp32 that is
# 0.1 s. An ASSUMPTION (no GPU was lent to measure it); the figures scale as 1 / step time.
ASSUMED_STEP_S = 0.1


def write_video(path: Path, width: int, height: int) -> Path:
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height + 64, width + 256, 3), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, 1) + np.roll(texture, 1, 0)) // 3).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "g": str(GOP), "preset": "veryfast"}
        for k in range(FPS * SECONDS):
            dx, dy = (3 * k) % 256, k % 64       # camera pan
            img = texture[dy:dy + height, dx:dx + width].copy()
            cx, cy = int(width * (0.2 + 0.6 * k / (FPS * SECONDS))), height // 2
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < (height // 8) ** 2] = (230, 180, 60)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.rename(path)
    return path


def clips(decoder: str, path: Path) -> list[torch.Tensor]:
    dec = get_decoder(decoder)
    return [prepare_uint8(dec.window(path, s, s + CLIP_SEC), NUM_FRAMES, SHORT_SIDE, CROP) for s in STARTS]


def egotoy_clips(decoder: str, paths: list[Path]) -> list[torch.Tensor]:
    """egotoy's own clips (64 x 64, 15 fps): 8 of 16 frames, no scaling."""
    dec = get_decoder(decoder)
    return [prepare_uint8(dec.window(p, 0.0, 16 / 15), 8, 64, 64) for p in paths]


def timed(fns, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process CPU time of each callable, round-robin (common.interleaved, plus CPU time)."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return wall, cpu


def main() -> None:
    warnings.filterwarnings("ignore")
    problem = torchcodec_problem()
    decoders = ["pyav"] + ([] if problem else ["torchcodec"])
    paths = {name: write_video(VIDEOS / f"synthetic_{name}_{FPS}fps_{SECONDS}s.mp4", *wh) for name, wh in SIZES.items()}
    toy = sorted(Path(_egotoy.data_cfg().clips_dir).glob("*.mp4"))[:EGOTOY_CLIPS]
    fns = {f"{d}_{name}": (lambda d=d, p=p: clips(d, p)) for name, p in paths.items() for d in decoders}
    fns |= {f"{d}_egotoy": (lambda d=d: egotoy_clips(d, toy)) for d in decoders}
    times, cpu = timed(fns, repeats=2)
    med = {k: median(v) for k, v in times.items()}
    med_cpu = {k: median(v) for k, v in cpu.items()}
    need = BATCH / ASSUMED_STEP_S
    fig: dict[str, float | int | str] = {}
    for name in SIZES:
        for d in decoders:
            # per worker = per dedicated core: CPU time, as the wall time here is inflated by other jobs
            rate = len(STARTS) / med_cpu[f"{d}_{name}"]
            fig[f"{d}_{name}_clips_per_cpu_s"] = rate
            fig[f"{d}_{name}_clips_per_wall_s_loaded"] = len(STARTS) / med[f"{d}_{name}"]
            fig[f"{d}_{name}_workers_to_feed_slowfast_r101_b4"] = math.ceil(need / rate)
        if "torchcodec" in decoders:
            fig[f"torchcodec_over_pyav_{name}"] = med_cpu[f"pyav_{name}"] / med_cpu[f"torchcodec_{name}"]
            a, b = clips("pyav", paths[name]), clips("torchcodec", paths[name])
            fig[f"max_abs_diff_uint8_{name}"] = max(int((x.int() - y.int()).abs().max()) for x, y in zip(a, b))
            fig[f"same_frame_count_{name}"] = all(x.shape == y.shape for x, y in zip(a, b))
    for d in decoders:
        fig[f"{d}_egotoy_clips_per_cpu_s"] = len(toy) / med_cpu[f"{d}_egotoy"]
    if "torchcodec" in decoders:
        fig["torchcodec_over_pyav_egotoy"] = med_cpu["pyav_egotoy"] / med_cpu["torchcodec_egotoy"]
        a, b = egotoy_clips("pyav", toy), egotoy_clips("torchcodec", toy)
        fig["max_abs_diff_uint8_egotoy"] = max(int((x.int() - y.int()).abs().max()) for x, y in zip(a, b))
    fig["assumed_step_s_slowfast_r101_b4"] = ASSUMED_STEP_S
    fig["clips_per_s_needed"] = need
    notes = [f"{len(STARTS)} clips of {NUM_FRAMES} x {SAMPLING_RATE} frames ({CLIP_SEC:.2f} s) from {SECONDS} s "
             f"synthetic h264 (crf 23, GOP {GOP}, veryfast) at {FPS} fps, -> 32 x 224 x 224 uint8; one process, "
             f"torch threads {torch.get_num_threads()}, torchcodec num_ffmpeg_threads=1",
             f"workers needed = ceil({BATCH} clips / {ASSUMED_STEP_S} s ASSUMED SlowFast R101 batch-4 step on a GPU "
             f"(not measured: no GPU lent) / clips per CPU s)",
             f"egotoy: {EGOTOY_CLIPS} of the benchmark egotoy clips, 16 frames (64 x 64, 15 fps) -> 8 x 64 x 64",
             "GPU (NVDEC) decoding: not measured (no GPU lent)"]
    if problem:
        notes.append(f"torchcodec not measured: it cannot load here ({problem})")
    raw = {"median_s": med, "times_s": times, "median_cpu_s": med_cpu, "cpu_s": cpu,
           "videos": {k: str(p) for k, p in paths.items()}, "video_bytes": {k: p.stat().st_size for k, p in paths.items()}}
    Record("decode", figures=fig, raw=raw, notes=notes).write()


if __name__ == "__main__":
    main()
