"""DeepPrior++ preprocessing: a cube of side D (mm) at the centre of mass, cropped from the depth
frame, nearest-resized to size x size, depth normalised to [-1, 1]; keypoints standardised to the cube.

CoM = the ground-truth MMCP joint (the source's choice for its reported numbers, at test time too).
"""
from __future__ import annotations

import numpy as np

from actlab.families.hand.fpha import FX, FY, HEIGHT, MMCP, WIDTH, project


def crop_width(z: float, cube_mm: float) -> tuple[float, float]:
    """(width, height) in pixels of the cube's window at depth z: D * f / z."""
    return cube_mm * FX / z, cube_mm * FY / z


def normalise_depth(depth: np.ndarray, z_com: float, cube_mm: float) -> np.ndarray:
    """d' = clip((d - z_CoM) / (D/2), -1, 1); d = 0 (no reading) -> +1 (as far as the cube's back)."""
    d = np.asarray(depth, dtype=np.float32)
    out = np.clip((d - z_com) / (cube_mm / 2), -1.0, 1.0)
    out[d == 0] = 1.0
    return out


def crop_frame(depth: np.ndarray, com: np.ndarray, cube_mm: float, size: int) -> np.ndarray:
    """The [size, size] float32 normalised crop of `depth` [480, 640] around `com` (mm, camera coords).

    Pixels of the window outside the image are background (no reading -> +1).
    """
    u, v = project(com)
    z = float(com[2])
    w, h = crop_width(z, cube_mm)
    # nearest neighbour: the source pixel under each output pixel's centre
    cols = np.floor(u - w / 2 + (np.arange(size) + 0.5) * (w / size)).astype(np.int64)
    rows = np.floor(v - h / 2 + (np.arange(size) + 0.5) * (h / size)).astype(np.int64)
    inside = (rows[:, None] >= 0) & (rows[:, None] < HEIGHT) & (cols[None, :] >= 0) & (cols[None, :] < WIDTH)
    patch = depth[np.clip(rows, 0, HEIGHT - 1)[:, None], np.clip(cols, 0, WIDTH - 1)[None, :]]
    patch = np.where(inside, patch, 0)
    return normalise_depth(patch, z, cube_mm)


def com_of(joints: np.ndarray) -> np.ndarray:
    """[..., 21, 3] -> [..., 3]: the GT MMCP joint."""
    return np.asarray(joints)[..., MMCP, :]


def standardise(joints: np.ndarray, com: np.ndarray, cube_mm: float) -> np.ndarray:
    """[N, 21, 3] mm -> [N, 63]: (j - CoM) / (D/2)."""
    j = np.asarray(joints, dtype=np.float64)
    return ((j - com[:, None, :]) / (cube_mm / 2)).reshape(len(j), -1)


def unstandardise(y: np.ndarray, cube_mm: float) -> np.ndarray:
    """[N, 63] standardised -> [N, 21, 3] CoM-centred mm."""
    return np.asarray(y, dtype=np.float64).reshape(len(y), -1, 3) * (cube_mm / 2)
