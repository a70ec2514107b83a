"""The per-step learning-rate factor: linear warmup, then cosine decay to 0 at the last step.

f(t) = t / W for t < W, else 0.5 (1 + cos(pi min(1, (t - W) / (T - W)))), T = the run's number of
optimizer steps. Unlike the common library version, f stays 0 after T instead of rising again.
"""
from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    if warmup_steps < 0 or total_steps < 1 or warmup_steps > total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, 1 <= total_steps; got {warmup_steps}, {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor
