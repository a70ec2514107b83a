"""Online finetuning with SGD on each new batch (optionally the heads only).

SGD as upstream (docs/protocol.md, "Methods"): Nesterov whenever momentum > 0 (`nesterov: auto`;
true/false force it; torch refuses Nesterov without momentum). Head-only trains the verb and noun
heads; the backbone's batch-norm statistics keep adapting in the train-mode forwards
(`backbone_bn: adapt`, upstream) or stay fixed (`frozen`, a bit-identical backbone whose features
transfer evaluation can share between models).
"""
from __future__ import annotations

import torch
from torch import nn

from actlab.families.continual.methods.base import Batch, Fetch, Forward, Method, cross_entropy, freeze_module, network

NESTEROV = ("auto", True, False)


def resolve_nesterov(nesterov: bool | str, momentum: float) -> bool:
    """`auto` -> momentum > 0 (upstream's rule); an explicit true needs momentum > 0."""
    if not (nesterov == "auto" or isinstance(nesterov, bool)):
        raise ValueError(f"method.nesterov must be one of {NESTEROV}, got {nesterov!r}")
    if nesterov == "auto":
        return momentum > 0
    if nesterov and momentum <= 0:
        raise ValueError(f"method.nesterov=true needs method.momentum > 0 (got {momentum}); "
                         "torch's SGD refuses Nesterov without momentum")
    return bool(nesterov)


class Finetune(Method):
    name = "finetune"

    def __init__(self, head_only: bool = False, lr: float = 0.01, momentum: float = 0.0,
                 nesterov: bool | str = "auto", weight_decay: float = 0.0, **kw) -> None:
        # lr/momentum/weight_decay live at the top of the method config so a grid can say
        # `method.lr=...`; the `optimizer` partial already carries them (interpolated). Nesterov
        # depends on the momentum, so it is resolved here and given to the optimizer at build time.
        super().__init__(**kw)
        if self.optimizer_factory is None:
            raise ValueError(f"method {self.name!r} needs an `optimizer` (e.g. torch.optim.SGD)")
        self.head_only = bool(head_only)
        if self.backbone_bn == "frozen" and not self.head_only:
            raise ValueError("method.backbone_bn=frozen freezes the statistics of a backbone that does not "
                             "train: it needs method.head_only=true")
        self.nesterov = resolve_nesterov(nesterov, float(momentum))

    def prepare(self, model: nn.Module, seed: int) -> None:
        if self.head_only:
            freeze_module(model.backbone, self.backbone_bn)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer | None:
        params = self.trainable_parameters(model)
        return self.optimizer_factory(params, nesterov=self.nesterov) if params else None

    def train_forward(self, model: nn.Module, batch: Batch, fetch: Fetch) -> Forward:
        logits = network(model, batch)
        return Forward(logits, cross_entropy(logits, batch))
