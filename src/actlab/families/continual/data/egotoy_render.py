"""Rendering and mp4 encoding of egotoy clips (numpy frames -> PyAV).

A clip is a 64x64 scene at 15 fps: the user's home (textured background, lighting, colour cast)
with, during each rendered action segment, one object (shape x colour) doing one periodic motion
(the verb). Every motion is periodic with a period below one stream sample (16 frames), so any
1.067 s window of an annotation shows the whole motion. Each clip is rendered from its own seed,
so the output does not depend on which worker renders it or in what order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from actlab.atomic import atomic_write

SIZE = 64
FPS = 15
VERBS = ("move_left", "move_right", "move_up", "move_down", "rotate", "grow", "shrink", "blink")
SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
RGB = np.array([[0.92, 0.15, 0.12], [0.15, 0.80, 0.22], [0.20, 0.32, 0.95], [0.95, 0.88, 0.15]],
               dtype=np.float32)
BASE_RADIUS = 9.0
MOVE_PERIOD = 0.8    # s; sawtooth, so the steady direction of motion is what tells left from right
MOVE_AMPLITUDE = 22  # px swept per period
SCALE_PERIOD = 0.8   # s; grow / shrink sawtooth between SCALE_RANGE
SCALE_RANGE = (0.55, 1.35)
ROTATE_PERIOD = 1.0  # s per turn
BLINK_PERIOD = 8 / FPS


def noun_name(noun_label: int) -> str:
    """Nouns are shape-major: label = shape_index * len(COLOURS) + colour_index."""
    shape, colour = divmod(noun_label, len(COLOURS))
    return f"{COLOURS[colour]}_{SHAPES[shape]}"


NOUNS = tuple(noun_name(i) for i in range(len(SHAPES) * len(COLOURS)))


@dataclass(frozen=True)
class Home:
    """A user's scene: what a population model has not seen and adaptation can learn."""
    background: tuple[float, float, float]
    texture_amp: float
    texture_freq: float        # rad / px
    texture_angle: float       # rad
    vignette_centre: tuple[float, float]
    gain: float                # lighting
    cast: tuple[float, float, float]  # per-channel colour cast of the camera
    object_size: float         # multiplies BASE_RADIUS
    position: tuple[float, float]     # where the user's hands usually hold objects
    noise: float               # per-frame sensor noise (std, in [0, 1] units)


@dataclass(frozen=True)
class Segment:
    """Frames [start_frame, end_frame) show `verb` applied to `noun` centred at (cx, cy)."""
    start_frame: int
    end_frame: int
    verb: int
    noun: int
    cx: float
    cy: float
    phase: float               # fraction of a period, so repeated actions do not look identical


@dataclass(frozen=True)
class ClipJob:
    path: str
    seed: int
    n_frames: int
    home: Home
    video_gain: float          # lighting of this recording session
    texture_phase: float
    segments: tuple[Segment, ...]
    codec: str


def pick_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _background(home: Home, video_gain: float, texture_phase: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    wave = np.sin(home.texture_freq * (xx * np.cos(home.texture_angle) + yy * np.sin(home.texture_angle))
                  + texture_phase)
    vx, vy = home.vignette_centre
    light = 1.0 - 0.35 * ((xx - vx) ** 2 + (yy - vy) ** 2) / (SIZE ** 2)
    base = np.asarray(home.background, dtype=np.float32)
    bg = (base[None, None, :] * (1.0 + home.texture_amp * wave)[..., None]) * light[..., None]
    return bg * video_gain


def _shape_sdf(shape: int, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance (px, negative inside) of a shape of radius r in its own frame (u, v)."""
    name = SHAPES[shape]
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85 * r
    if name == "circle":
        return np.sqrt(u * u + v * v) - r
    if name == "triangle":
        # Equilateral: three half-planes at inradius 0.55 r, apex down.
        d = None
        for k in range(3):
            a = np.pi / 2 + k * 2 * np.pi / 3
            dk = -(u * np.cos(a) + v * np.sin(a)) - 0.55 * r
            d = dk if d is None else np.maximum(d, dk)
        return d
    arm = 0.32 * r  # cross
    return np.minimum(np.maximum(np.abs(u) - r, np.abs(v) - arm),
                      np.maximum(np.abs(u) - arm, np.abs(v) - r))


def _draw_segment(frames: np.ndarray, seg: Segment, home: Home) -> None:
    n = seg.end_frame - seg.start_frame
    t = np.arange(n, dtype=np.float32) / FPS
    verb = VERBS[seg.verb]
    cx = np.full(n, seg.cx, np.float32)
    cy = np.full(n, seg.cy, np.float32)
    scale = np.ones(n, np.float32)
    angle = np.zeros(n, np.float32)
    alpha = np.ones(n, np.float32)
    saw = (t / MOVE_PERIOD + seg.phase) % 1.0 - 0.5
    if verb == "move_left":
        cx -= MOVE_AMPLITUDE * saw
    elif verb == "move_right":
        cx += MOVE_AMPLITUDE * saw
    elif verb == "move_up":
        cy -= MOVE_AMPLITUDE * saw
    elif verb == "move_down":
        cy += MOVE_AMPLITUDE * saw
    elif verb in ("grow", "shrink"):
        ramp = (t / SCALE_PERIOD + seg.phase) % 1.0
        lo, hi = SCALE_RANGE
        scale = (lo + (hi - lo) * (ramp if verb == "grow" else 1.0 - ramp)).astype(np.float32)
    elif verb == "rotate":
        angle = (2 * np.pi * (t / ROTATE_PERIOD + seg.phase)).astype(np.float32)
    elif verb == "blink":
        on = ((t / BLINK_PERIOD + seg.phase) % 1.0) < 0.5
        alpha = np.where(on, 1.0, 0.12).astype(np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    r = (BASE_RADIUS * home.object_size * scale)[:, None, None]
    body = np.clip(0.5 - _shape_sdf(seg.noun // len(COLOURS), u, v, r), 0.0, 1.0)
    # An off-centre dark mark makes rotation visible on symmetric shapes (circle, square).
    mark = np.clip(0.5 - (np.sqrt((u - 0.4 * r) ** 2 + v ** 2) - 0.2 * r), 0.0, 1.0) * body
    colour = RGB[seg.noun % len(COLOURS)]
    obj = colour[None, None, None, :] * (1.0 - 0.7 * mark[..., None])
    a = (body * alpha[:, None, None])[..., None]
    view = frames[seg.start_frame:seg.end_frame]
    view[:] = view * (1.0 - a) + obj * a


def render_frames(job: ClipJob) -> np.ndarray:
    """uint8 [n_frames, 64, 64, 3] RGB."""
    rng = np.random.default_rng(job.seed)
    bg = _background(job.home, job.video_gain, job.texture_phase)
    frames = np.repeat(bg[None], job.n_frames, axis=0)
    for seg in job.segments:
        _draw_segment(frames, seg, job.home)
    cast = np.asarray(job.home.cast, np.float32) * job.home.gain
    flicker = 1.0 + 0.04 * rng.standard_normal((job.n_frames, 1, 1, 1)).astype(np.float32)
    frames = frames * cast * flicker
    frames += job.home.noise * rng.standard_normal(frames.shape).astype(np.float32)
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode_mp4(path: Path, frames: np.ndarray, codec: str) -> None:
    """Write `frames` (uint8 RGB) as an mp4 with one frame per pts tick of 1/15 s.

    The JSON files are the reproducible part of egotoy: libx264 (even single-threaded) was seen
    to give slightly different bytes for the same frames from one call to the next; mpeg4 is
    byte-stable but 7x larger and twice as lossy at 64x64, so libx264 stays the first choice.
    """
    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=FPS)
            stream.width, stream.height = SIZE, SIZE
            stream.pix_fmt = "yuv420p"
            # One thread per encoder: clips are already encoded in parallel processes.
            stream.codec_context.thread_count = 1
            if codec == "libx264":
                stream.options = {"crf": "30", "preset": "veryfast"}
            else:
                stream.bit_rate = 64_000
            for i, img in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(path, write)


def render_clip(job: ClipJob) -> str:
    encode_mp4(Path(job.path), render_frames(job), job.codec)
    return job.path
