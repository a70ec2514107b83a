"""Running online metrics of a stream: micro top-1/top-5, macro (balanced) top-1, mean loss.

Tasks: verb, noun and action (a "<verb>-<noun>" pair). Definitions, per task m:
- top1 (micro): correct / samples seen so far. Action is correct iff verb top-1 AND noun top-1 are.
- top5 (micro): label among the k = min(5, C) highest logits. Action top-5 = verb in the verb
  top-5 AND noun in the noun top-5 (the benchmark defines no joint action ranking; this is the
  upstream convention).
- balanced_top1 (macro): mean, over the classes SEEN SO FAR as targets, of per-class top-1 accuracy
  (= sklearn.metrics.balanced_accuracy_score on the samples so far). Note: torchmetrics
  MulticlassAccuracy(average="macro") averages over classes that occur in the targets OR the
  predictions (a predicted-but-never-seen class counts with accuracy 0), so it is lower whenever
  the model predicts an unseen class; the per-class recall averaged over target classes is what
  this module computes (tests/test_metrics_online.py checks both facts). The one definition is
  `metrics/balanced.py:balanced_top1`, called here on the per-class counters.
- loss: mean cross-entropy (action: CE(verb) + CE(noun), the protocol's training loss).
All accuracies are fractions in [0, 1]; a task with no samples yet reports nan.

The running state is O(classes): per task a sample count, correct counts and a float64 loss sum,
plus per-class (seen, correct) counters (action classes indexed verb * num_nouns + noun). It is a
dict of plain ints/floats/tensors, so `torch.save` / `torch.load(weights_only=True)` round-trips
it and a resumed run computes exactly what an uninterrupted one does (same additions, same order).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from actlab.families.continual.artifacts import TASKS
from actlab.families.continual.metrics.balanced import balanced_top1

TOP_K = 5


def _check(logits: Tensor, y: Tensor, num_classes: int, name: str) -> Tensor:
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"{name} logits must have shape [B, {num_classes}], got {tuple(logits.shape)}")
    y = torch.as_tensor(y).long().reshape(-1)
    if y.shape[0] != logits.shape[0]:
        raise ValueError(f"{name} labels: {y.shape[0]} labels for {logits.shape[0]} logit rows")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)].tolist()
        raise ValueError(f"{name} labels out of range [0, {num_classes}): {bad}")
    return y


def _in_top_k(logits: Tensor, y: Tensor) -> Tensor:
    k = min(TOP_K, logits.shape[1])
    return (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1)


class _TaskCounter:
    """Counters of one task: micro totals and per-class (seen, correct) for the macro average."""

    def __init__(self, num_classes: int) -> None:
        self.n = 0
        self.top1 = 0
        self.top5 = 0
        self.loss_sum = 0.0
        self.seen = torch.zeros(num_classes, dtype=torch.long)
        self.correct = torch.zeros(num_classes, dtype=torch.long)

    def update(self, cls: Tensor, top1: Tensor, top5: Tensor, loss: Tensor) -> None:
        self.n += int(cls.numel())
        self.top1 += int(top1.sum())
        self.top5 += int(top5.sum())
        # float64 sum of float64 per-sample losses, one sample at a time: the same sequence of
        # additions on resume, so compute() is bit-identical.
        for v in loss.double().tolist():
            self.loss_sum += v
        n = self.seen.numel()
        self.seen += torch.bincount(cls, minlength=n)
        self.correct += torch.bincount(cls, weights=top1.double(), minlength=n).long()

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            return {"top1": float("nan"), "top5": float("nan"), "balanced_top1": float("nan"),
                    "loss": float("nan"), "n_samples": 0}
        return {"top1": self.top1 / self.n, "top5": self.top5 / self.n,
                "balanced_top1": balanced_top1(self.seen.numpy(), self.correct.numpy()),
                "loss": self.loss_sum / self.n,
                "n_samples": self.n}

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "top1": self.top1, "top5": self.top5, "loss_sum": self.loss_sum,
                "seen": self.seen.clone(), "correct": self.correct.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seen"].shape != self.seen.shape:
            raise ValueError(f"metric state has {state['seen'].numel()} classes, expected {self.seen.numel()}")
        self.n, self.top1, self.top5 = int(state["n"]), int(state["top1"]), int(state["top5"])
        self.loss_sum = float(state["loss_sum"])
        self.seen = state["seen"].clone().long()
        self.correct = state["correct"].clone().long()


class OnlineMetrics:
    """Running metrics over all samples passed to `update` so far (see the module docstring)."""

    def __init__(self, num_verbs: int, num_nouns: int, prefix: str = "online") -> None:
        self.num_verbs, self.num_nouns, self.prefix = int(num_verbs), int(num_nouns), prefix
        self.tasks = {"action": _TaskCounter(self.num_verbs * self.num_nouns),
                      "verb": _TaskCounter(self.num_verbs), "noun": _TaskCounter(self.num_nouns)}

    def update(self, verb_logits: Tensor, noun_logits: Tensor, verb_y: Tensor, noun_y: Tensor
               ) -> dict[str, list]:
        """Add a batch; return its per-sample columns (python lists, one entry per sample)."""
        verb_logits, noun_logits = verb_logits.detach().float().cpu(), noun_logits.detach().float().cpu()
        verb_y = _check(verb_logits, torch.as_tensor(verb_y).cpu(), self.num_verbs, "verb")
        noun_y = _check(noun_logits, torch.as_tensor(noun_y).cpu(), self.num_nouns, "noun")
        pred_v, pred_n = verb_logits.argmax(1), noun_logits.argmax(1)
        c_v, c_n = pred_v == verb_y, pred_n == noun_y
        t5_v, t5_n = _in_top_k(verb_logits, verb_y), _in_top_k(noun_logits, noun_y)
        l_v = F.cross_entropy(verb_logits.double(), verb_y, reduction="none")
        l_n = F.cross_entropy(noun_logits.double(), noun_y, reduction="none")
        l_a = l_v + l_n
        self.tasks["verb"].update(verb_y, c_v, t5_v, l_v)
        self.tasks["noun"].update(noun_y, c_n, t5_n, l_n)
        self.tasks["action"].update(verb_y * self.num_nouns + noun_y, c_v & c_n, t5_v & t5_n, l_a)
        return {"pred_verb": pred_v.tolist(), "pred_noun": pred_n.tolist(),
                "correct_verb": c_v.tolist(), "correct_noun": c_n.tolist(),
                "correct_action": (c_v & c_n).tolist(),
                "top5_verb": t5_v.tolist(), "top5_noun": t5_n.tolist(),
                "top5_action": (t5_v & t5_n).tolist(),
                "loss_verb": l_v.tolist(), "loss_noun": l_n.tolist(), "loss_action": l_a.tolist()}

    def compute(self) -> dict[str, float]:
        """`{prefix}/{action,verb,noun}/{top1,top5,balanced_top1,loss,n_samples}`."""
        return {f"{self.prefix}/{task}/{stat}": value
                for task in TASKS for stat, value in self.tasks[task].compute().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"num_verbs": self.num_verbs, "num_nouns": self.num_nouns,
                "tasks": {t: c.state_dict() for t, c in self.tasks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["num_verbs"], state["num_nouns"]) != (self.num_verbs, self.num_nouns):
            raise ValueError(f"metric state is for {state['num_verbs']} verbs x {state['num_nouns']} nouns, "
                             f"these metrics are for {self.num_verbs} x {self.num_nouns}")
        for t, c in self.tasks.items():
            c.load_state_dict(state["tasks"][t])
