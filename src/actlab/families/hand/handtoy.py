"""`handtoy`: an embedded FPHA-format data set, deterministic from a seed (the experiment's
preparation step writes it when missing).

6 subjects x N actions x sequences 1 (test) and 2 (train), 8-16 frames each. A 21-joint kinematic
hand (per-subject scale +-10 %) whose finger flexion and wrist trajectory follow an action-specific
profile (so the action carries pose information a FiLM-conditioned network can use), at 300-500 mm,
with per-sequence and per-joint noise; rendered as spheres along the bones (9 mm fingers, 15 mm palm)
z-buffered through the real depth intrinsics over a background plane at ~650 mm. The ground truth
is the rendered joints. Files: exactly those of FPHA (fpha.py), plus `.generated` written last.
"""
from __future__ import annotations

import argparse
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from actlab.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from actlab.families.hand.fpha import (ACTIONS, FX, FY, HEIGHT, NUM_ACTIONS, POSE_DIR, SPLIT_FILE, U0, V0,
                                       VIDEO_DIR, WIDTH)

MARKER = ".generated"
SUBJECTS = 6
FINGER_RADIUS, PALM_RADIUS = 4.5, 7.5           # mm: ~9 mm fingers, 15 mm palm
BACKGROUND_MM = 650.0
# hand model (mm), palm facing the camera, fingers towards -y: MCP offsets from the wrist and the
# three bone lengths of each finger (thumb, index, middle, ring, pinky)
MCP = np.array([[-32, -28, 0], [-22, -82, 0], [0, -88, 0], [19, -82, 0], [36, -70, 0]], dtype=np.float64)
BONES = np.array([[36, 30, 26], [42, 26, 21], [46, 29, 23], [43, 27, 21], [33, 21, 19]], dtype=np.float64)
SPREAD = np.array([-0.75, -0.12, 0.0, 0.1, 0.22])   # finger direction's x component (splay)
# joint index of each finger's MCP, PIP, DIP, TIP in the FPHA order
FINGER_JOINTS = ((1, 6, 7, 8), (2, 9, 10, 11), (3, 12, 13, 14), (4, 15, 16, 17), (5, 18, 19, 20))


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


def hand_joints(flex: np.ndarray, scale: float) -> np.ndarray:
    """[21, 3] joints in the hand frame (wrist at 0) for per-finger flexion angles `flex` [5] (rad)."""
    joints = np.zeros((21, 3))
    for f, chain in enumerate(FINGER_JOINTS):
        joints[chain[0]] = MCP[f] * scale
        angle = 0.0
        for b in range(3):
            angle += flex[f] * (1.0, 1.1, 0.8)[b]
            # flexion bends the finger from its rest direction towards the camera (-z)
            d = np.array([SPREAD[f], -math.cos(angle), -math.sin(angle)])
            joints[chain[b + 1]] = joints[chain[b]] + BONES[f, b] * scale * d / np.linalg.norm(d)
    return joints


def action_profiles(seed: int) -> dict[str, np.ndarray]:
    """Per action: base flexion [5], flexion amplitude [5], frequency, wrist path [3], orientation [3]."""
    rng = np.random.default_rng([seed, 1])
    n = NUM_ACTIONS
    return {"base": rng.uniform(0.0, 1.3, (n, 5)), "amp": rng.uniform(0.0, 0.5, (n, 5)),
            "freq": rng.uniform(0.5, 2.0, n), "path": rng.uniform(-25, 25, (n, 3)),
            "orient": rng.uniform(-0.5, 0.5, (n, 3))}


def sequence_joints(profiles: dict[str, np.ndarray], action: int, scale: float,
                    rng: np.random.Generator) -> np.ndarray:
    """[T, 21, 3] camera-frame joints (mm) of one sequence of `action`."""
    frames = int(rng.integers(8, 12))   # 8-11 of the 8-16 range: the 30 MB budget
    # the far part of 300-500 mm: fewer hand pixels, smaller PNGs (the 30 MB budget)
    centre = np.array([rng.uniform(-40, 40), rng.uniform(-30, 30), rng.uniform(400, 490)])
    base = profiles["base"][action] + rng.normal(0, 0.08, 5)
    phase = rng.uniform(0, 2 * math.pi)
    orient = profiles["orient"][action] + rng.normal(0, 0.08, 3)
    out = np.zeros((frames, 21, 3))
    for t in range(frames):
        s = math.sin(2 * math.pi * profiles["freq"][action] * t / frames + phase)
        flex = np.clip(base + profiles["amp"][action] * s, -0.1, 1.6)
        rot = _rotation(*(orient + 0.15 * s * np.array([1.0, 0.5, 0.3])))
        local = hand_joints(flex, scale) - MCP[2] * scale * np.array([0, 0.5, 0])   # rotate about mid-palm
        out[t] = local @ rot.T + centre + profiles["path"][action] * s
    return out + rng.normal(0, 1.0, out.shape)


def _spheres(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres [M, 3] and radii [M] of the spheres along the bones and over the palm."""
    segments = []
    for chain in FINGER_JOINTS:
        segments.append((joints[0], joints[chain[0]], PALM_RADIUS))
        for a, b in zip(chain[:-1], chain[1:]):
            segments.append((joints[a], joints[b], FINGER_RADIUS))
    for a, b in ((1, 2), (2, 3), (3, 4), (4, 5)):        # palm web between the MCPs
        segments.append((joints[a], joints[b], PALM_RADIUS))
    centres, radii = [], []
    for p, q, r in segments:
        n = max(2, int(math.ceil(np.linalg.norm(q - p) / (0.8 * r))) + 1)
        w = np.linspace(0, 1, n)[:, None]
        centres.append(p + w * (q - p))
        radii.append(np.full(n, r))
    return np.concatenate(centres), np.concatenate(radii)


def render(joints: np.ndarray, background: np.ndarray) -> np.ndarray:
    """uint16 [480, 640] depth (mm) of the hand's spheres in front of `background`.

    Rendered at half resolution and repeated 2x2: a quarter of the cost, and 2x2 blocks halve the
    PNG (the set must stay under 30 MB and 40 s); a 64 or 128 px crop of the ~240 px hand window
    still samples finer than the toy network sees. Every sphere's patch is computed at once and
    z-buffered with one unbuffered minimum (a per-sphere Python loop cost ~50 ms a frame).
    """
    centres, radii = _spheres(joints)
    cz = centres[:, 2]
    fx, fy, u0, v0, height, width = FX / 2, FY / 2, U0 / 2, V0 / 2, HEIGHT // 2, WIDTH // 2
    u, v = fx * centres[:, 0] / cz + u0, fy * centres[:, 1] / cz + v0
    half = int(math.ceil(float(np.max(fx * radii / cz)))) + 1
    offs = np.arange(-half, half + 1)
    cols = np.floor(u)[:, None].astype(np.int64) + offs[None, :]           # [M, P]
    rows = np.floor(v)[:, None].astype(np.int64) + offs[None, :]
    du = (cols + 0.5 - u[:, None]) * (cz / fx)[:, None]
    dv = (rows + 0.5 - v[:, None]) * (cz / fy)[:, None]
    d2 = radii[:, None, None] ** 2 - dv[:, :, None] ** 2 - du[:, None, :] ** 2   # [M, P, P]
    ok = (d2 > 0) & (rows[:, :, None] >= 0) & (rows[:, :, None] < height) & (cols[:, None, :] >= 0) \
        & (cols[:, None, :] < width)
    depth = (cz[:, None, None] - np.sqrt(np.maximum(d2, 0)))[ok]
    flat = (np.broadcast_to(rows[:, :, None], ok.shape)[ok] * width + np.broadcast_to(cols[:, None, :], ok.shape)[ok])
    z = background[::2, ::2].copy().ravel()
    np.minimum.at(z, flat, depth)
    small = np.round(z.reshape(height, width)).astype(np.uint16)
    return np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)


def write_png16(path: Path, depth: np.ndarray) -> None:
    """A 16-bit greyscale PNG with the Up filter on every row (PIL writes 16-bit PNGs unfiltered,
    ~2x larger here: the set has a 30 MB budget)."""
    h, w = depth.shape
    raw = depth.astype(">u2").view(np.uint8).reshape(h, 2 * w)
    up = raw.copy()
    up[1:] = raw[1:] - raw[:-1]                           # Up: each byte minus the one above (mod 256)
    data = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(data, 6)) + chunk(b"IEND", b""))
    atomic_write_bytes(path, png)


def is_complete(root: str | Path, seed: int, actions: int) -> bool:
    marker = Path(root) / MARKER
    if not marker.is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except ValueError:
        return False
    return meta.get("seed") == seed and meta.get("actions") == actions


def _write_subject(root: Path, seed: int, actions: int, subject: int) -> list[tuple[str, str]]:
    """Write one subject's sequences; returns its (section, split line) pairs in order."""
    profiles = action_profiles(seed)
    rows = np.arange(HEIGHT, dtype=np.float64)[:, None]
    srng = np.random.default_rng([seed, 2, subject])
    scale = srng.uniform(0.9, 1.1)
    background = np.broadcast_to(BACKGROUND_MM + srng.uniform(-20, 20) + 0.08 * (rows - HEIGHT / 2),
                                 (HEIGHT, WIDTH)).copy()
    lines = []
    for action in range(actions):
        for seq in (1, 2):
            name = f"Subject_{subject}/{ACTIONS[action]}/{seq}"
            joints = sequence_joints(profiles, action, scale, np.random.default_rng([seed, 3, subject, action, seq]))
            depth_dir = root / VIDEO_DIR / name / "depth"
            depth_dir.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(joints):
                write_png16(depth_dir / f"depth_{t:04d}.png", render(frame, background))
            text = "".join(f"{t} " + " ".join(f"{v:.2f}" for v in frame.ravel()) + "\n"
                           for t, frame in enumerate(joints))
            atomic_write_text(root / POSE_DIR / name / "skeleton.txt", text)
            lines.append(("Test" if seq == 1 else "Training", f"{name} {action}"))
    return lines


def generate(root: str | Path, seed: int = 0, actions: int = NUM_ACTIONS, workers: int = 2) -> Path:
    """Write handtoy under `root` (skipped when a complete set of the same seed and size is there).
    Subjects are written by `workers` processes; the files do not depend on their number."""
    root = Path(root)
    if is_complete(root, seed, actions):
        return root
    if not 1 <= actions <= NUM_ACTIONS:
        raise ValueError(f"handtoy: actions must be in 1..{NUM_ACTIONS}, got {actions}")
    subjects = range(1, SUBJECTS + 1)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            per_subject = list(pool.map(_write_subject, *zip(*[(root, seed, actions, s) for s in subjects])))
    else:
        per_subject = [_write_subject(root, seed, actions, s) for s in subjects]
    split: dict[str, list[str]] = {"Training": [], "Test": []}
    for lines in per_subject:
        for section, line in lines:
            split[section].append(line)
    text = "".join(f"{k} {len(v)}\n" + "".join(f"{line}\n" for line in v) for k, v in split.items())
    atomic_write_text(root / SPLIT_FILE, text)
    atomic_write_json(root / MARKER, {"seed": seed, "actions": actions})
    return root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="write the embedded handtoy set (FPHA format)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--actions", type=int, default=NUM_ACTIONS, help="the first N actions (tests: fewer)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    print(generate(args.out, args.seed, args.actions, args.workers))


if __name__ == "__main__":
    main()
