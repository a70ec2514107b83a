"""Past evaluation after the update on a batch, for re-exposure forgetting (docs/protocol.md).

For batch c >= 1 (batch 0 is never evaluated): the updated model, in eval mode, scores the
`tracker.window` samples processed before batch c (all of them for window "full"), forwarded
oldest first in chunks of `tracker.eval_batch_size` (upstream's past-stream loader); the current
batch contributes its online scores, i.e. the pre-update logits of the online forward.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from actlab.families.continual.methods.base import Batch, Fetch
from actlab.families.continual.metrics.forgetting import ReexposureForgetting, SampleScore


def sample_scores(logits: dict[str, Tensor], verb: Tensor, noun: Tensor) -> list[SampleScore]:
    """Per-sample top-1 correctness and cross-entropy of both heads."""
    v, n = logits["verb"].detach().float(), logits["noun"].detach().float()
    verb, noun = verb.to(v.device), noun.to(n.device)
    v_loss = nn.functional.cross_entropy(v, verb, reduction="none").tolist()
    n_loss = nn.functional.cross_entropy(n, noun, reduction="none").tolist()
    v_ok, n_ok = (v.argmax(1) == verb).tolist(), (n.argmax(1) == noun).tolist()
    return [SampleScore(int(a), int(b), bool(c), bool(d), float(e), float(f))
            for a, b, c, d, e, f in zip(verb.tolist(), noun.tolist(), v_ok, n_ok, v_loss, n_loss)]


def history_indices(records: Sequence[dict[str, Any]], step: int, window: int | None) -> list[int]:
    """Stream indices of the samples processed before batch `step` (records' "step"), the last
    `window` of them (all for None), oldest first."""
    out: list[int] = []
    for r in reversed(records):
        if r["step"] >= step:
            continue
        if window is not None and len(out) == window:
            break
        out.append(int(r["index"]))
    return out[::-1]


def evaluate_past(model: nn.Module, fetch: Fetch, records: Sequence[dict[str, Any]], batch: Batch,
                  online_logits: dict[str, Tensor], tracker: ReexposureForgetting, step: int, last: bool,
                  features: Callable[[list[int], bool], Tensor] | None = None) -> None:
    """Feed batch `step` (0-based) to the tracker: its online scores and the updated model's
    eval-mode scores on the history window. `records`: the loop's per-sample rows so far.
    `features(chunk, train)`: a fixed backbone's features (engine/feature_cache.py); then only the
    heads run on each chunk."""
    if step == 0:
        return
    n = len(batch["verb"])
    if online_logits["verb"].shape[0] != n or online_logits["noun"].shape[0] != n:
        raise ValueError(f"past evaluation: online logits have {online_logits['verb'].shape[0]} rows, "
                         f"the batch {n} (pass the current batch's rows only)")
    current = sample_scores(online_logits, torch.as_tensor(batch["verb"]), torch.as_tensor(batch["noun"]))
    indices = history_indices(records, step, tracker.window)
    history: list[SampleScore] = []
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        for i in range(0, len(indices), tracker.eval_batch_size):
            chunk = indices[i:i + tracker.eval_batch_size]
            past = fetch(chunk)
            out = model.classify(features(chunk, False)) if features is not None else model(past["video"].to(device))
            history += sample_scores(out, torch.as_tensor(past["verb"]), torch.as_tensor(past["noun"]))
    tracker.update(step, current, history, last=last)
