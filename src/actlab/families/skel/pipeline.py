"""PoseC3D's input pipeline for 2D joints (pyskl), in numpy: UniformSampleFrames, PoseCompact,
resize / random resized crop / flip of the keypoints, and Gaussian joint heatmaps.

Train: one clip, augmented with a `np.random.Generator` the caller derives from (seed, epoch,
sample index) only. Test: `num_clips` clips from a sampler seeded with 255 (as pyskl), resized
to the test size, each also flipped: [2 * num_clips, V, T, H, W] views.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEFT = (1, 3, 5, 7, 9, 11, 13, 15)     # COCO-17 left joints; their right partners are +1
RIGHT = (2, 4, 6, 8, 10, 12, 14, 16)
FLIP_ORDER = np.arange(17)
FLIP_ORDER[list(LEFT)], FLIP_ORDER[list(RIGHT)] = list(RIGHT), list(LEFT)
TEST_SEED = 255


@dataclass(frozen=True)
class PipelineConfig:
    clip_len: int = 48
    short_side: int = 64          # train: resize the short side to this before the crop
    train_size: int = 56          # train: the crop is resized to train_size x train_size
    test_size: int = 64           # test: the compacted box resized to test_size x test_size
    num_test_clips: int = 10
    sigma: float = 0.6
    crop_area: tuple[float, float] = (0.56, 1.0)
    flip_p: float = 0.5
    compact_padding: float = 0.25
    compact_threshold: float = 10.0


# -- frame sampling ---------------------------------------------------------------------------------
def _mid_regime(num_frames: int, clip_len: int, rng: np.random.RandomState | np.random.Generator) -> np.ndarray:
    # L <= T < 2L: every frame once in order, T - L of them skipped at random positions
    skip = rng.choice(clip_len + 1, num_frames - clip_len, replace=False)
    offset = np.zeros(clip_len + 1, dtype=np.int64)
    offset[skip] = 1
    return np.arange(clip_len) + np.cumsum(offset)[:-1]


def _segments(num_frames: int, clip_len: int) -> tuple[np.ndarray, np.ndarray]:
    bids = np.array([i * num_frames // clip_len for i in range(clip_len + 1)])
    return bids[:clip_len], np.diff(bids)


def sample_train(num_frames: int, clip_len: int, rng: np.random.Generator) -> np.ndarray:
    """pyskl UniformSampleFrames, one training clip (indices mod T)."""
    if num_frames < clip_len:
        start = rng.integers(0, num_frames)
        inds = np.arange(start, start + clip_len)
    elif num_frames < 2 * clip_len:
        inds = _mid_regime(num_frames, clip_len, rng)
    else:
        start, size = _segments(num_frames, clip_len)
        inds = start + rng.integers(0, size)
    return np.mod(inds, num_frames)


def sample_test(num_frames: int, clip_len: int, num_clips: int, seed: int = TEST_SEED) -> np.ndarray:
    """pyskl UniformSampleFrames in test mode: [num_clips, clip_len], deterministic per video."""
    rng = np.random.RandomState(seed)
    if num_frames < clip_len:
        starts = (range(num_clips) if num_frames < num_clips
                  else [i * num_frames // num_clips for i in range(num_clips)])
        inds = np.stack([np.arange(s, s + clip_len) for s in starts])
    elif num_frames < 2 * clip_len:
        inds = np.stack([_mid_regime(num_frames, clip_len, rng) for _ in range(num_clips)])
    else:
        start, size = _segments(num_frames, clip_len)
        inds = np.stack([start + rng.randint(size) for _ in range(num_clips)])
    return np.mod(inds, num_frames)


# -- geometry ---------------------------------------------------------------------------------------
def pose_compact(kp: np.ndarray, img_shape: tuple[int, int], padding: float = 0.25,
                 threshold: float = 10.0) -> tuple[np.ndarray, tuple[float, float]]:
    """Shift keypoints [M,T,V,2] into the square, 25 %-padded tight box of the non-zero ones over
    all frames (it may extend past the image); unchanged when the box is under `threshold` px."""
    present = np.abs(kp).sum(-1) > 0
    if not present.any():
        return kp, (float(img_shape[0]), float(img_shape[1]))
    pts = kp[present]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    if x1 - x0 < threshold or y1 - y0 < threshold:
        return kp, (float(img_shape[0]), float(img_shape[1]))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) / 2 * (1 + padding)
    out = kp.copy()
    out[..., 0] -= cx - half
    out[..., 1] -= cy - half
    return out, (2 * half, 2 * half)


def random_resized_crop(kp: np.ndarray, shape: tuple[float, float], area: tuple[float, float],
                        rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """mmaction's RandomResizedCrop on keypoints: area fraction in `area`, aspect 3/4-4/3,
    10 tries, else the whole image."""
    h, w = shape
    for _ in range(10):
        target = rng.uniform(*area) * h * w
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = np.sqrt(target * aspect), np.sqrt(target / aspect)
        if cw <= w and ch <= h:
            x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            out = kp.copy()
            out[..., 0] -= x0
            out[..., 1] -= y0
            return out, (ch, cw)
    return kp, shape


def resize(kp: np.ndarray, shape: tuple[float, float], size: tuple[float, float]) -> np.ndarray:
    """Scale keypoints of an image of `shape` (h, w) to one of `size` (h, w)."""
    return kp * np.array([size[1] / shape[1], size[0] / shape[0]], dtype=kp.dtype)


def flip(kp: np.ndarray, score: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip: x -> width - x, left and right joints swapped (pyskl Flip)."""
    out = kp[..., FLIP_ORDER, :].copy()
    out[..., 0] = width - out[..., 0]
    return out, score[..., FLIP_ORDER]


# -- heatmaps ---------------------------------------------------------------------------------------
def _axis_gauss(mu: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """exp(-(x - mu)^2 / 2 sigma^2) on x in [0, size), zero outside pyskl's +-3 sigma patch
    [max(int(mu - 3s), 0), min(int(mu + 3s) + 1, size))."""
    x = np.arange(size, dtype=np.float32)
    lo = np.maximum((mu - 3 * sigma).astype(np.int64), 0)
    hi = np.minimum((mu + 3 * sigma).astype(np.int64) + 1, size)
    inside = (x >= lo[..., None]) & (x < hi[..., None])
    return np.exp(-((x - mu[..., None]) ** 2) / (2 * sigma ** 2)).astype(np.float32) * inside


def heatmaps(kp: np.ndarray, score: np.ndarray, size: tuple[int, int], sigma: float = 0.6,
             eps: float = 1e-3) -> np.ndarray:
    """Joint heatmaps [V, T, H, W] from keypoints [M,T,V,2] (pixels) and scores [M,T,V]: a Gaussian
    of peak `score` in a +-3 sigma patch per joint (skipped below `eps`), maximum over persons."""
    h, w = size
    # joints before frames, so the product is already [M, V, T, H, W]: no transposed copy
    kp = kp.astype(np.float32).transpose(0, 2, 1, 3)
    amp = np.where(score >= eps, score, 0).astype(np.float32).transpose(0, 2, 1)
    gx = _axis_gauss(kp[..., 0], w, sigma)                            # [M,V,T,W]
    gy = _axis_gauss(kp[..., 1], h, sigma) * amp[..., None]           # [M,V,T,H], the peak folded in
    maps = gy[..., :, None] * gx[..., None, :]                        # [M,V,T,H,W]
    return maps[0] if len(maps) == 1 else maps.max(0)


def heatmaps_loop(kp: np.ndarray, score: np.ndarray, size: tuple[int, int], sigma: float = 0.6,
                  eps: float = 1e-3) -> np.ndarray:
    """pyskl's GeneratePoseTarget, joint by joint: the reference `heatmaps` is checked against."""
    h, w = size
    m, t, v = score.shape
    out = np.zeros((v, t, h, w), dtype=np.float32)
    for p in range(m):
        for f in range(t):
            for j in range(v):
                value = float(score[p, f, j])
                if value < eps:
                    continue
                mu_x, mu_y = float(kp[p, f, j, 0]), float(kp[p, f, j, 1])
                st_x, ed_x = max(int(mu_x - 3 * sigma), 0), min(int(mu_x + 3 * sigma) + 1, w)
                st_y, ed_y = max(int(mu_y - 3 * sigma), 0), min(int(mu_y + 3 * sigma) + 1, h)
                if st_x >= ed_x or st_y >= ed_y:
                    continue
                x = np.arange(st_x, ed_x, dtype=np.float32)[None, :]
                y = np.arange(st_y, ed_y, dtype=np.float32)[:, None]
                patch = np.exp(-((x - mu_x) ** 2 + (y - mu_y) ** 2) / (2 * sigma ** 2)) * value
                out[j, f, st_y:ed_y, st_x:ed_x] = np.maximum(out[j, f, st_y:ed_y, st_x:ed_x], patch)
    return out


# -- whole samples ----------------------------------------------------------------------------------
def train_view(kp: np.ndarray, score: np.ndarray, img_shape: tuple[int, int], cfg: PipelineConfig,
               rng: np.random.Generator) -> np.ndarray:
    """One augmented training clip [V, clip_len, train_size, train_size]."""
    inds = sample_train(kp.shape[1], cfg.clip_len, rng)
    k, s = kp[:, inds].astype(np.float32), score[:, inds].astype(np.float32)
    k, shape = pose_compact(k, img_shape, cfg.compact_padding, cfg.compact_threshold)
    short = min(shape)
    scaled = (shape[0] * cfg.short_side / short, shape[1] * cfg.short_side / short)
    k = resize(k, shape, scaled)
    k, shape = random_resized_crop(k, scaled, cfg.crop_area, rng)
    size = (cfg.train_size, cfg.train_size)
    k = resize(k, shape, size)
    if rng.random() < cfg.flip_p:
        k, s = flip(k, s, cfg.train_size)
    return heatmaps(k, s, size, cfg.sigma)


def eval_views(kp: np.ndarray, score: np.ndarray, img_shape: tuple[int, int], cfg: PipelineConfig) -> np.ndarray:
    """[2 * num_test_clips, V, clip_len, test_size, test_size]: each clip, then its flip."""
    size = (cfg.test_size, cfg.test_size)
    views = []
    for inds in sample_test(kp.shape[1], cfg.clip_len, cfg.num_test_clips):
        k, s = kp[:, inds].astype(np.float32), score[:, inds].astype(np.float32)
        k, shape = pose_compact(k, img_shape, cfg.compact_padding, cfg.compact_threshold)
        k = resize(k, shape, size)
        views.append(heatmaps(k, s, size, cfg.sigma))
        views.append(heatmaps(*flip(k, s, cfg.test_size), size, cfg.sigma))
    return np.stack(views)
