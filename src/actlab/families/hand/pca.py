"""The 30-d PCA pose prior of DeepPrior++: fit on standardised training keypoints only.

z = W (y - mu), y_hat = W^T z + mu, with W the top-k right-singular vectors of the centred data
(no whitening). The decoder is a frozen Linear(k -> 63) with weight W^T and bias mu, the last
layer of the pose network; the network is trained in z-space.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class PCAPrior:
    components: np.ndarray      # W [k, D]
    mean: np.ndarray            # mu [D]

    @classmethod
    def fit(cls, Y: np.ndarray, k: int, max_frames: int | None = None, seed: int = 0) -> "PCAPrior":
        """Fit on `Y` [N, D] (a seeded subset of `max_frames` rows when there are more)."""
        Y = np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
        if max_frames is not None and len(Y) > max_frames:
            Y = Y[np.sort(np.random.default_rng(seed).choice(len(Y), max_frames, replace=False))]
        if not 0 < k <= min(Y.shape):
            raise ValueError(f"PCA: k={k} must be in 1..{min(Y.shape)} for data {Y.shape}")
        mean = Y.mean(axis=0)
        _, _, vt = np.linalg.svd(Y - mean, full_matrices=False)
        return cls(vt[:k].copy(), mean)

    @property
    def k(self) -> int:
        return self.components.shape[0]

    def encode(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return (y - self.mean) @ self.components.T

    def decode(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) @ self.components + self.mean

    def decoder(self) -> nn.Linear:
        """The frozen Linear(k -> D) layer: weight W^T, bias mu."""
        layer = nn.Linear(self.k, self.components.shape[1])
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(self.components.T, dtype=torch.float32))
            layer.bias.copy_(torch.as_tensor(self.mean, dtype=torch.float32))
        layer.requires_grad_(False)
        return layer

    def fit_hash(self) -> str:
        """SHA-256 of the fitted parameters (recorded with the run: which prior it trained on)."""
        h = hashlib.sha256(np.ascontiguousarray(self.components, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.mean, dtype=np.float64).tobytes())
        return h.hexdigest()

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"components": self.components, "mean": self.mean}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "PCAPrior":
        return cls(np.asarray(arrays["components"]), np.asarray(arrays["mean"]))
