"""Label-window predictor: no learning; predict the most frequent label among recent samples.

Verb and noun are predicted independently, each as the most frequent label in its window; ties
go to the most recent label. Logits are window counts (+ a recency tie-breaker below one count),
so top-5 ranks labels by frequency. Variants (`variant`):
  per_sample  window = the W samples before this one in stream order (earlier samples of the
              same batch included: their labels are revealed one at a time);
  batched     window = the last W labels known when the batch starts (W = batch size: the previous batch);
  hindsight   window = this sample and the W-1 before it (an oracle upper bound).
An empty window predicts class 0 with all-equal logits. The end-of-stream hindsight evaluation
of this method predicts every sample from the final window (the last W labels of the stream).
"""
from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import Tensor, nn

from actlab.families.continual.methods.base import Batch, Method

VARIANTS = ("per_sample", "batched", "hindsight")
TASKS = ("verb", "noun")


def window_logits(window: list[int], num_classes: int) -> Tensor:
    """Counts of each label in the window, plus a bonus below one count for how recently the
    label last occurred, so ties go to the most recent label and top-5 ranks by frequency."""
    logits = torch.zeros(num_classes)
    last_seen = {label: age for age, label in enumerate(window)}   # oldest first: later ages win
    for label in window:
        logits[label] += 1.0
    for label, age in last_seen.items():
        logits[label] += 1e-3 * (age + 1) / (len(window) + 1)
    return logits


class LabelWindow(Method):
    name = "label_window"
    transferable = False

    def __init__(self, window: int = 4, variant: str = "batched", **kw) -> None:
        super().__init__(**kw)
        if variant not in VARIANTS:
            raise ValueError(f"method.variant must be one of {VARIANTS}, got {variant!r}")
        if window < 1:
            raise ValueError(f"method.window must be >= 1, got {window}")
        self.window, self.variant = int(window), variant
        self.history: dict[str, deque[int]] = {t: deque(maxlen=self.window) for t in TASKS}

    def _sizes(self, model: nn.Module) -> dict[str, int]:
        return {"verb": model.verb_head.out_features, "noun": model.noun_head.out_features}

    def online_predict(self, model: nn.Module, batch: Batch) -> dict[str, Tensor]:
        sizes, out = self._sizes(model), {}
        for t in TASKS:
            labels = batch[t].tolist()
            rows = []
            for k, y in enumerate(labels):
                if self.variant == "batched":
                    win = list(self.history[t])
                elif self.variant == "per_sample":
                    win = (list(self.history[t]) + labels[:k])[-self.window:]
                else:
                    win = (list(self.history[t]) + labels[:k + 1])[-self.window:]
                rows.append(window_logits(win, sizes[t]))
            out[t] = torch.stack(rows)
        return out

    def observe(self, batch: Batch) -> None:
        for t in TASKS:
            self.history[t].extend(batch[t].tolist())

    def hindsight_predict(self, model: nn.Module, n: int) -> dict[str, Tensor]:
        sizes = self._sizes(model)
        return {t: window_logits(list(self.history[t]), sizes[t]).expand(n, -1).clone() for t in TASKS}

    def state_dict(self) -> dict[str, Any]:
        return {"history": {t: list(h) for t, h in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t in TASKS:
            self.history[t] = deque(state["history"][t], maxlen=self.window)
