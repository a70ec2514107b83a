"""Label-window predictor: no learning; predict the most frequent label among W stream labels.

Verb and noun are predicted independently, each as the most frequent label in its window
(upstream's LabelWindowPredictor family; docs/protocol.md). Variants (`variant`):
  per_sample    window = the W samples before this one in stream order (earlier samples of the
                same batch included: their labels are revealed one at a time);
  batched       window = the last W labels known when the batch starts (W = batch size: the
                previous batch, upstream's BatchedLabelWindowPredictor);
  inclusive     window = this sample and the W-1 before it (an oracle upper bound; actlab only,
                called `hindsight` before it was renamed so nobody takes it for upstream's);
  final_window  every sample predicted from the stream's final W labels (upstream's
                HindsightLabelWindowPredictor: its online accuracy is the paper's LWP hindsight
                result). It reads the whole stream's labels before the first batch.
Ties (`tie_break`): `lowest` label index (default, as upstream's top-1 over the Ego4D label sets)
or `recent` (the label seen last in the window wins; actlab's former rule). Logits are window
counts plus a tie-break bonus below half a count, so top-5 ranks by frequency and the bonus
orders equal counts. An empty window predicts class 0 (every label tied at count 0).
The end-of-stream hindsight evaluation predicts every sample from the final window.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from actlab.families.continual.methods.base import Batch, Method

VARIANTS = ("per_sample", "batched", "inclusive", "final_window")
TIE_BREAKS = ("lowest", "recent")
TASKS = ("verb", "noun")
RENAMED = {"hindsight": "`hindsight` was renamed to `inclusive`; upstream's hindsight predictor is `final_window`"}


def window_logits(window: Sequence[int], num_classes: int, tie_break: str = "lowest") -> Tensor:
    """count(label) + 0.5 * (recency + index bonus) / (len(window) + 1), as float32.

    index bonus = (C - 1 - label) / C in [0, 1): lower labels rank first among equal counts.
    recency (tie_break recent only) = 1 + position of the label's last occurrence in the window
    (0 outside it): a whole step above any index bonus, so recency decides first. The bonus
    stays below half a count, and its smallest step (0.5 / (C (W + 1))) is far above float32
    resolution at these magnitudes.
    """
    counts = torch.zeros(num_classes, dtype=torch.float64)
    recency = torch.zeros(num_classes, dtype=torch.float64)
    for age, label in enumerate(window):
        counts[label] += 1.0
        if tie_break == "recent":
            recency[label] = age + 1
    index_bonus = (num_classes - 1 - torch.arange(num_classes, dtype=torch.float64)) / num_classes
    return (counts + 0.5 * (recency + index_bonus) / (len(window) + 1)).float()


class LabelWindow(Method):
    name = "label_window"
    transferable = False
    uses_video = False

    def __init__(self, window: int = 4, variant: str = "batched", tie_break: str = "lowest", **kw) -> None:
        super().__init__(**kw)
        if variant in RENAMED:
            raise ValueError(f"method.variant: {RENAMED[variant]}; expected one of {VARIANTS}")
        if variant not in VARIANTS:
            raise ValueError(f"method.variant must be one of {VARIANTS}, got {variant!r}")
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"method.tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        if window < 1:
            raise ValueError(f"method.window must be >= 1, got {window}")
        self.window, self.variant, self.tie_break = int(window), variant, tie_break
        self.needs_stream_labels = variant == "final_window"
        self.history: dict[str, deque[int]] = {t: deque(maxlen=self.window) for t in TASKS}
        self.final: dict[str, list[int]] | None = None   # final_window: the stream's last W labels

    def see_stream_labels(self, labels: Sequence[tuple[int, int]]) -> None:
        last = list(labels)[-self.window:]
        self.final = {"verb": [int(v) for v, _ in last], "noun": [int(n) for _, n in last]}

    def _sizes(self, model: nn.Module) -> dict[str, int]:
        return {"verb": model.verb_head.out_features, "noun": model.noun_head.out_features}

    def _window(self, task: str, labels: list[int], k: int) -> list[int]:
        """The window of the k-th sample of the batch whose labels are `labels`."""
        if self.variant == "batched":
            return list(self.history[task])
        if self.variant == "per_sample":
            return (list(self.history[task]) + labels[:k])[-self.window:]
        if self.variant == "inclusive":
            return (list(self.history[task]) + labels[:k + 1])[-self.window:]
        if self.final is None:
            raise RuntimeError("label window final_window: the stream labels were never given "
                               "(see_stream_labels must run before the first batch)")
        return self.final[task]

    def online_predict(self, model: nn.Module, batch: Batch) -> dict[str, Tensor]:
        sizes, out = self._sizes(model), {}
        for t in TASKS:
            labels = batch[t].tolist()
            out[t] = torch.stack([window_logits(self._window(t, labels, k), sizes[t], self.tie_break)
                                  for k in range(len(labels))])
        return out

    def observe(self, batch: Batch) -> None:
        for t in TASKS:
            self.history[t].extend(batch[t].tolist())

    def hindsight_predict(self, model: nn.Module, n: int) -> dict[str, Tensor]:
        sizes = self._sizes(model)
        return {t: window_logits(list(self.history[t]), sizes[t], self.tie_break).expand(n, -1).clone()
                for t in TASKS}

    def state_dict(self) -> dict[str, Any]:
        return {"history": {t: list(h) for t, h in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t in TASKS:
            self.history[t] = deque(state["history"][t], maxlen=self.window)
