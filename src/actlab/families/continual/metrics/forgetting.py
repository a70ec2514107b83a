"""Re-exposure forgetting: how much a label's accuracy dropped between two exposures.

The stream loop calls `ReexposureTracker.update(step, batch_labels, window_labels, window_correct)`
after the update on batch `step`, with the eval-mode correctness of recently seen samples
(`window_labels` / `window_correct`, oldest first). The accuracy on label a at that evaluation is
the mean correctness over the <= `window` most recent of those samples whose label is a
(the benchmark's "<= 64 most recent past samples with label a"; when the loop passes only the 64
most recent samples overall, the per-label cap never binds and a label that left that window has
no accuracy).

For each distinct label a of batch `step` that occurred in an earlier reported batch, the last
one being t, one event is recorded:
    gap        = step - t
    acc_after  = accuracy on a at the evaluation right after the update on t
    acc_before = accuracy on a at the last evaluation before `step` (the previous `update` call)
    delta      = acc_before - acc_after      (negative = forgotten since the last exposure)
Events whose acc_after or acc_before is undefined (a not in the evaluated samples) are not
recorded; `n_undefined` counts them. Only steps passed to `update` count as exposures, so the
loop should evaluate after every batch (past_eval_every = 1) for this metric.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from actlab.post.tables import mean_se

EVENT_COLUMNS = ("label", "step", "gap", "acc_after", "acc_before", "delta")


class ReexposureTracker:
    def __init__(self, window: int = 64) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self._last: dict[str, tuple[int, float | None]] = {}   # label -> (last exposure step, acc after it)
        self._prev_acc: dict[str, float] = {}                 # per-label accuracy at the previous update
        self._prev_step: int | None = None
        self._events: list[dict[str, Any]] = []
        self.n_undefined = 0

    def _accuracies(self, labels: Sequence[str], correct: Sequence[bool]) -> dict[str, float]:
        hits: dict[str, list[bool]] = {}
        for label, ok in zip(reversed(labels), reversed(correct)):   # newest first
            kept = hits.setdefault(label, [])
            if len(kept) < self.window:
                kept.append(bool(ok))
        return {label: sum(v) / len(v) for label, v in hits.items()}

    def update(self, step: int, batch_labels: Sequence[str], window_labels: Sequence[str],
               window_correct: Sequence[bool]) -> None:
        step = int(step)
        if self._prev_step is not None and step <= self._prev_step:
            raise ValueError(f"steps must increase: got step {step} after step {self._prev_step}")
        if len(window_labels) != len(window_correct):
            raise ValueError(f"window_labels ({len(window_labels)}) and window_correct "
                             f"({len(window_correct)}) differ in length")
        labels = list(dict.fromkeys(str(a) for a in batch_labels))   # distinct, in batch order
        for a in labels:
            if a not in self._last:
                continue
            t, acc_after = self._last[a]
            acc_before = self._prev_acc.get(a)
            if acc_after is None or acc_before is None:
                self.n_undefined += 1
                continue
            self._events.append({"label": a, "step": step, "gap": step - t, "acc_after": acc_after,
                                 "acc_before": acc_before, "delta": acc_before - acc_after})
        acc = self._accuracies([str(a) for a in window_labels], window_correct)
        for a in labels:
            self._last[a] = (step, acc.get(a))
        self._prev_acc, self._prev_step = acc, step

    def events(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._events]

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window, "n_undefined": self.n_undefined, "prev_step": self._prev_step,
                "last": {a: [t, acc] for a, (t, acc) in self._last.items()},
                "prev_acc": dict(self._prev_acc), "events": self.events()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["window"]) != self.window:
            raise ValueError(f"tracker state has window {state['window']}, this tracker {self.window}")
        self.n_undefined = int(state["n_undefined"])
        self._prev_step = state["prev_step"]
        self._last = {a: (int(t), acc) for a, (t, acc) in state["last"].items()}
        self._prev_acc = dict(state["prev_acc"])
        self._events = [dict(e) for e in state["events"]]


def _clean(events: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    df = pd.DataFrame(events, columns=list(EVENT_COLUMNS)) if not isinstance(events, pd.DataFrame) else events
    missing = {"gap", "delta"} - set(df.columns)
    if missing:
        raise ValueError(f"forgetting events lack columns {sorted(missing)}")
    df = df[["gap", "delta"]].astype(float).dropna()
    if (df["gap"] < 1).any():
        raise ValueError(f"forgetting events: gap must be >= 1, got {sorted(df.loc[df['gap'] < 1, 'gap'])}")
    return df


def bin_by_log10_gap(events: pd.DataFrame | Sequence[dict], width: float = 0.5) -> pd.DataFrame:
    """Mean delta per bin [bin_lo, bin_hi) of log10(gap), bins k*width, non-empty bins only.

    se = std(ddof=1) / sqrt(n) (nan for n = 1). Computed with numpy/pandas.
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    df = _clean(events)
    cols = ["bin_lo", "bin_hi", "n", "mean", "se"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    # The epsilon keeps exact powers of ten (log10(1000) = 2.9999999999999996) in their own bin.
    k = np.floor(np.log10(df["gap"].to_numpy()) / width + 1e-9).astype(int)
    rows = []
    for b in sorted(set(k.tolist())):
        mean, se = mean_se(df["delta"].to_numpy()[k == b])
        rows.append({"bin_lo": b * width, "bin_hi": (b + 1) * width, "n": int((k == b).sum()),
                     "mean": mean, "se": se})
    return pd.DataFrame(rows, columns=cols)


def pearson(events: pd.DataFrame | Sequence[dict]) -> float:
    """Pearson correlation between log10(gap) and delta (numpy.corrcoef); nan when fewer than two
    events or either variable is constant."""
    df = _clean(events)
    if len(df) < 2:
        return math.nan
    x, y = np.log10(df["gap"].to_numpy()), df["delta"].to_numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])
