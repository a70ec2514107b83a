"""Whole-stream scoring (hindsight, transfer): the online metrics' definitions over one pass."""
from __future__ import annotations

from torch import Tensor

from actlab.families.continual.metrics.online import OnlineMetrics


def score(verb_logits: Tensor, noun_logits: Tensor, verb_y: Tensor, noun_y: Tensor,
          prefix: str = "hindsight") -> dict[str, float]:
    """`{prefix}/{action,verb,noun}/{top1,top5,balanced_top1,loss,n_samples}` over all samples.

    One `OnlineMetrics` update over the whole stream, so a number here means exactly what the
    online number of the same name means (class counts taken from the logits' widths).
    """
    m = OnlineMetrics(verb_logits.shape[1], noun_logits.shape[1], prefix=prefix)
    m.update(verb_logits, noun_logits, verb_y, noun_y)
    return m.compute()
