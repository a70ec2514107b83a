"""Online finetuning with SGD on each new batch (optionally the heads only)."""
from __future__ import annotations

from torch import Tensor, nn

from actlab.families.continual.methods.base import Batch, Fetch, Method, cross_entropy, freeze_module


class Finetune(Method):
    name = "finetune"

    def __init__(self, head_only: bool = False, lr: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, **kw) -> None:
        # lr/momentum/nesterov/weight_decay live at the top of the method config so a grid can
        # say `method.lr=...`; the `optimizer` partial already carries them (interpolated), so
        # they are accepted here and not kept.
        super().__init__(**kw)
        if self.optimizer_factory is None:
            raise ValueError(f"method {self.name!r} needs an `optimizer` (e.g. torch.optim.SGD)")
        self.head_only = bool(head_only)

    def prepare(self, model: nn.Module, seed: int) -> None:
        if self.head_only:
            # A frozen backbone stays bit-identical (BN statistics included), so transfer
            # evaluation can share its features between all head-only models of a stream.
            freeze_module(model.backbone)

    def loss(self, model: nn.Module, batch: Batch, fetch: Fetch) -> Tensor:
        return cross_entropy(model(batch["video"]), batch)
