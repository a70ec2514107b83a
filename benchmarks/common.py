"""What every benchmark shares: timing by repetition, ratios, and the JSON record.

These machines are noisy, so a benchmark never reports an absolute time alone: it measures the
thing and its baseline in the same process, interleaved, and reports the ratio of medians.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from actlab.atomic import atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "gpu": gpu}


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Run each callable `repeats` times, round-robin, so drift in machine load hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@dataclass
class Record:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)   # ratios and derived numbers
    raw: dict[str, Any] = field(default_factory=dict)       # medians / counts behind them
    notes: list[str] = field(default_factory=list)

    def write(self) -> Path:
        path = RESULTS / f"{self.name}.json"
        atomic_write_json(path, {"name": self.name, "machine": machine(),
                                 "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "figures": self.figures, "raw": self.raw, "notes": self.notes})
        print(f"[{self.name}]")
        for k, v in self.figures.items():
            print(f"  {k:48s} {v:.3f}" if isinstance(v, float) else f"  {k:48s} {v}")
        for n in self.notes:
            print(f"  note: {n}")
        print(f"  -> {path}")
        return path
