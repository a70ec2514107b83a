"""Resumable loop state at a batch boundary, one torch file written atomically.

Holds the model, optimizer, method (replay memory, label history), metric and forgetting-tracker
states, the RNG states (torch, numpy, python), the stream position and the per-sample records so
far. Engine-private format; only `stream_loop` reads it.
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actlab.atomic import atomic_write_bytes

STATE_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save(folder: Path, state: dict[str, Any]) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(Path(folder) / STATE_FILE, buf.getvalue())


def load(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    # Our own file (written by `save`), holding numpy RNG state and python tuples: not weights-only.
    return torch.load(path, map_location="cpu", weights_only=False)
