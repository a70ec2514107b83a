"""Re-exposure forgetting, with upstream's ConditionalOnlineForgettingMetric bookkeeping
(docs/protocol.md, "Re-exposure forgetting").

The stream loop (engine/past_eval.py) calls `ReexposureForgetting.update(c, batch, history, last)`
for every batch c >= 1 (batch 0 is never evaluated: nothing precedes it), after the update on
batch c, with
  batch    the current batch's online scores (the pre-update predictions of the online forward);
  history  the eval-mode scores of the updated model on the `window` samples before batch c,
           oldest first.
For each task (action, verb, noun; a sample's label is "<verb>-<noun>", the verb or the noun) and
each label x, with C = labels of batch c and N = labels of the next batch (on the last batch: of
the stream's final sample):
  x in C and N      a zero entry (gap 0, delta 0): the same model on the same data;
  x in C only       x's "after" value = its samples in batch c (online) and in the history;
  x in N only       x's "before" value = its samples in the history; if x has an after value
                    (from batch t), one entry: step c, prev_step t, gap c - t, and the after
                    value is consumed. Without one (x seen only in batch 0) nothing is recorded.
Values: acc = percent top-1 correct over the label's samples (action: verb AND noun right);
loss = cross-entropy (action: verb CE + noun CE). delta is positive for forgetting:
acc after - before, loss before - after.

`loss_reduction`:
  chunk_sum (default, upstream): the past forward runs in chunks of `eval_batch_size` samples (the
      current batch is a chunk of its own), and each chunk adds (its samples of x) x (their summed
      CE) to a meter divided by the number of samples of x, so the value depends on the chunking;
  mean: the mean CE over the label's samples.
Where upstream would keep an after value that was never consumed (x absent from the history at
the evaluation before its next exposure) and add the next exposure's samples to it, ending on its
equal-count assertion, the stale value is dropped and the latest exposure's value starts afresh;
`n_stale` counts these per task.

Entries come out one evaluation late: batch c's entries need the labels of batch c + 1, which the
next `update` brings (or `last=True` on the final batch).
"""
from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from actlab.families.continual.artifacts import TASKS
from actlab.post.tables import mean_se

METRICS = ("acc", "loss")
LOSS_REDUCTIONS = ("chunk_sum", "mean")
ENTRY_COLUMNS = ("metric", "task", "label", "step", "prev_step", "gap", "after", "before", "delta",
                 "n_after", "n_before")
BIN_COLUMNS = ("bin", "bin_lo", "bin_hi", "n", "mean", "se")


@dataclass(frozen=True)
class SampleScore:
    """One sample's labels, top-1 correctness and cross-entropy, per head."""
    verb: int
    noun: int
    verb_correct: bool
    noun_correct: bool
    verb_loss: float
    noun_loss: float

    def label(self, task: str) -> str:
        return {"action": f"{self.verb}-{self.noun}", "verb": str(self.verb), "noun": str(self.noun)}[task]

    def correct(self, task: str) -> bool:
        return {"action": self.verb_correct and self.noun_correct, "verb": self.verb_correct,
                "noun": self.noun_correct}[task]

    def loss(self, task: str) -> float:
        return {"action": self.verb_loss + self.noun_loss, "verb": self.verb_loss, "noun": self.noun_loss}[task]


@dataclass
class _Meter:
    """Upstream's AverageMeter pair: acc and loss sums over a label's samples, and their count."""
    acc: float = 0.0
    loss: float = 0.0
    n: int = 0


@dataclass
class _Step:
    step: int
    batch: list[SampleScore]
    history: list[SampleScore]


class ReexposureForgetting:
    def __init__(self, window: int | str = 64, eval_batch_size: int = 8, loss_reduction: str = "chunk_sum") -> None:
        if window == "full":
            self.window: int | None = None
        elif isinstance(window, int) and window >= 1:
            self.window = window
        else:
            raise ValueError(f"forgetting.window must be an int >= 1 or 'full', got {window!r}")
        if not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise ValueError(f"forgetting.eval_batch_size must be an int >= 1, got {eval_batch_size!r}")
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"forgetting.loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
        self.eval_batch_size = eval_batch_size
        self.loss_reduction = loss_reduction
        self._after: dict[str, dict[str, _Meter]] = {t: {} for t in TASKS}
        self._after_step: dict[str, dict[str, int]] = {t: {} for t in TASKS}
        self.n_stale: dict[str, int] = {t: 0 for t in TASKS}
        self._pending: _Step | None = None
        self._last_step: int | None = None
        self._entries: list[dict[str, Any]] = []

    # -- per batch ----------------------------------------------------------------------------
    def update(self, step: int, batch: Sequence[SampleScore], history: Sequence[SampleScore],
               last: bool = False) -> None:
        step = int(step)
        if step < 1:
            raise ValueError(f"re-exposure forgetting: batch 0 is never evaluated (got step {step})")
        if self._last_step is not None and step != self._last_step + 1:
            raise ValueError(f"re-exposure forgetting needs an evaluation after every batch (past_eval_every: 1); "
                             f"got batch {step} after batch {self._last_step}")
        if not batch:
            raise ValueError(f"re-exposure forgetting: batch {step} has no samples")
        current = _Step(step, list(batch), list(history))
        if self._pending is not None:
            self._process(self._pending, current.batch)
        self._pending = None
        if last:
            self._process(current, current.batch[-1:])     # the "next batch" clamps to the final sample
        else:
            self._pending = current
        self._last_step = step

    def _chunks(self, s: _Step) -> tuple[list[SampleScore], list[list[SampleScore]]]:
        k = self.eval_batch_size
        return s.batch, [s.history[i:i + k] for i in range(0, len(s.history), k)]

    def _meter(self, task: str, label: str, chunks: Iterable[list[SampleScore]]) -> _Meter | None:
        m = _Meter()
        for chunk in chunks:
            hits = [x for x in chunk if x.label(task) == label]
            if not hits:
                continue
            n, summed = len(hits), sum(x.loss(task) for x in hits)
            m.acc += 100.0 * sum(x.correct(task) for x in hits)
            m.loss += n * summed if self.loss_reduction == "chunk_sum" else summed
            m.n += n
        return m if m.n else None

    def _process(self, s: _Step, next_samples: list[SampleScore]) -> None:
        batch_chunk, history_chunks = self._chunks(s)
        for task in TASKS:
            after, after_step = self._after[task], self._after_step[task]
            cur = {x.label(task) for x in s.batch}
            nxt = {x.label(task) for x in next_samples}
            both = cur & nxt
            entries = []
            for label in both:
                if after.pop(label, None) is not None:
                    self.n_stale[task] += 1
                after_step.pop(label, None)
                entries += [self._entry(metric, task, label, s.step, s.step, math.nan, math.nan, 0.0, 0, 0)
                            for metric in METRICS]
            for label in cur - both:
                if after.pop(label, None) is not None:
                    self.n_stale[task] += 1
                after[label] = self._meter(task, label, [batch_chunk, *history_chunks])
                after_step[label] = s.step
            for label in nxt - both:
                before = self._meter(task, label, history_chunks)
                if before is None or label not in after:
                    continue
                a, t = after.pop(label), after_step.pop(label)
                for metric in METRICS:
                    va, vb = getattr(a, metric) / a.n, getattr(before, metric) / before.n
                    delta = va - vb if metric == "acc" else vb - va
                    entries.append(self._entry(metric, task, label, s.step, t, va, vb, delta, a.n, before.n))
            self._entries += sorted(entries, key=lambda e: (e["metric"], e["label"]))

    @staticmethod
    def _entry(metric: str, task: str, label: str, step: int, prev: int, after: float, before: float,
               delta: float, n_after: int, n_before: int) -> dict[str, Any]:
        return {"metric": metric, "task": task, "label": label, "step": step, "prev_step": prev,
                "gap": step - prev, "after": after, "before": before, "delta": delta,
                "n_after": n_after, "n_before": n_before}

    def entries(self) -> list[dict[str, Any]]:
        """Entries so far, ordered by step, then metric, task and label."""
        order = {t: i for i, t in enumerate(TASKS)}
        return sorted((dict(e) for e in self._entries),
                      key=lambda e: (e["step"], e["metric"], order[e["task"]], e["label"]))

    # -- checkpoint ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain Python values only (loads with torch.load(weights_only=True))."""
        pending = None if self._pending is None else {
            "step": self._pending.step, "batch": [list(astuple(x)) for x in self._pending.batch],
            "history": [list(astuple(x)) for x in self._pending.history]}
        return {"window": self.window, "eval_batch_size": self.eval_batch_size,
                "loss_reduction": self.loss_reduction, "last_step": self._last_step, "pending": pending,
                "after": {t: {k: [m.acc, m.loss, m.n] for k, m in d.items()} for t, d in self._after.items()},
                "after_step": {t: dict(d) for t, d in self._after_step.items()},
                "n_stale": dict(self.n_stale), "entries": [dict(e) for e in self._entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("window", "eval_batch_size", "loss_reduction"):
            if state[key] != getattr(self, key):
                raise ValueError(f"forgetting state has {key} {state[key]!r}, this run forgetting.{key} "
                                 f"{getattr(self, key)!r}")
        p = state["pending"]
        self._pending = None if p is None else _Step(p["step"], [SampleScore(*x) for x in p["batch"]],
                                                     [SampleScore(*x) for x in p["history"]])
        self._last_step = state["last_step"]
        self._after = {t: {k: _Meter(*v) for k, v in d.items()} for t, d in state["after"].items()}
        self._after_step = {t: dict(d) for t, d in state["after_step"].items()}
        self.n_stale = dict(state["n_stale"])
        self._entries = [dict(e) for e in state["entries"]]


# -- reading the entries ---------------------------------------------------------------------------
def entries_frame(entries: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    """Entries as a frame; no entries give an empty frame with the entry columns."""
    if isinstance(entries, pd.DataFrame):
        return entries if len(entries) else pd.DataFrame(columns=list(ENTRY_COLUMNS))
    return pd.DataFrame(list(entries), columns=list(ENTRY_COLUMNS))


def _gap_delta(entries: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    df = entries_frame(entries)
    missing = {"gap", "delta"} - set(df.columns)
    if missing:
        raise ValueError(f"forgetting entries lack columns {sorted(missing)}")
    df = df[["gap", "delta"]].astype(float)
    if (df["gap"] < 0).any():
        raise ValueError(f"forgetting entries: gap must be >= 0, got {sorted(df.loc[df['gap'] < 0, 'gap'])}")
    return df


def bin_by_log10_gap(entries: pd.DataFrame | Sequence[dict], bins: int = 10) -> pd.DataFrame:
    """The paper's figure: entries with gap > 0, `bins` equal-width bins of log10(gap) over
    [min, max] (one distinct value: [v - .5, v + .5]), the last bin closed on the right; per bin
    n, mean delta and SE = std(ddof=1) / sqrt(n) (nan for n < 2), empty bins included (as
    upstream's scipy.stats.binned_statistic, computed here with numpy). Empty without entries."""
    df = _gap_delta(entries)
    df = df[df["gap"] > 0]
    if df.empty:
        return pd.DataFrame(columns=list(BIN_COLUMNS))
    x, y = np.log10(df["gap"].to_numpy()), df["delta"].to_numpy()
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    k = np.clip(np.digitize(x, edges) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        vals = y[k == b]
        mean, se = mean_se(vals)
        rows.append({"bin": b, "bin_lo": float(edges[b]), "bin_hi": float(edges[b + 1]), "n": int(vals.size),
                     "mean": mean, "se": se})
    return pd.DataFrame(rows, columns=list(BIN_COLUMNS))


def pearson(entries: pd.DataFrame | Sequence[dict]) -> float:
    """Pearson r between the gap (in batches, not its log) and delta, zero-gap entries included
    (as upstream's figure notebook); nan for fewer than two entries or a constant variable."""
    df = _gap_delta(entries)
    if len(df) < 2:
        return math.nan
    x, y = df["gap"].to_numpy(), df["delta"].to_numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def pooled_stats(entries: pd.DataFrame | Sequence[dict]) -> dict[str, float]:
    """Upstream's printed figures for one (metric, task): mean +- SE and Pearson r over all entries,
    and mean +- SE without the zero-gap entries."""
    df = _gap_delta(entries)
    mean, se = mean_se(df["delta"])
    nonzero = df.loc[df["gap"] > 0, "delta"]
    mean_nz, se_nz = mean_se(nonzero)
    return {"mean": mean, "se": se, "pearson": pearson(df), "n": float(len(df)),
            "mean_nonzero_gap": mean_nz, "se_nonzero_gap": se_nz, "n_nonzero_gap": float(len(nonzero))}


def select(entries: pd.DataFrame | Sequence[dict], metric: str, task: str) -> pd.DataFrame:
    df = entries_frame(entries)
    return df[(df["metric"] == metric) & (df["task"] == task)]


def run_summary(entries: pd.DataFrame | Sequence[dict]) -> dict[str, float]:
    """One run's scalars: forgetting/<task>/<metric>_{mean,pearson,n} over its entries (zero gaps
    included)."""
    out: dict[str, float] = {}
    for task in TASKS:
        for metric in METRICS:
            st = pooled_stats(select(entries, metric, task))
            out |= {f"forgetting/{task}/{metric}_{k}": st[k] for k in ("mean", "pearson", "n")}
    return out
