"""The method API the stream loop drives, batch by batch.

For each batch B_t of consecutive stream samples the loop calls
  1. `online_predict(model, batch)` -> {"verb", "noun"} logits: the online predictions, made before
     any update on B_t (default: the model's forward; the label-window predictor overrides it);
  2. `inner_loop_iters` times: `loss(model, batch, fetch)` -> a scalar Tensor to step the
     optimizer on, or None for "no update" (frozen network, label window);
  3. `observe(batch)`: the method's own bookkeeping after the update (replay memory, label history).
`fetch(indices) -> batch` loads past stream samples by stream index (replay keeps only indices).

Methods own their optimizer recipe (`optimizer`: a `functools.partial`-style callable from Hydra's
`_partial_: true`) and say which parameters train (`trainable_parameters`). Everything that must
survive a requeue is in `state_dict()`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

Batch = dict[str, Any]               # {"video": [B,C,T,H,W], "verb": [B], "noun": [B], "index": [B]}
Fetch = Callable[[list[int]], Batch]


def cross_entropy(logits: dict[str, Tensor], batch: Batch, reduction: str = "mean") -> Tensor:
    """Loss of the protocol: CE(verb) + CE(noun)."""
    return (nn.functional.cross_entropy(logits["verb"], batch["verb"], reduction=reduction)
            + nn.functional.cross_entropy(logits["noun"], batch["noun"], reduction=reduction))


def freeze_module(module: nn.Module) -> None:
    """Make a sub-network truly constant: no gradients, and batch-norm layers stop tracking running
    statistics (a train-mode forward still normalises with the batch statistics, as upstream, but
    no buffer changes), so a frozen backbone stays bit-identical and its features can be shared
    between models."""
    for p in module.parameters():
        p.requires_grad_(False)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False


class Method:
    """Base: predict with the model's forward, learn nothing."""

    name: str = "base"
    # False for methods whose predictions come from their own state rather than the network
    # (label window): transfer evaluation has no model of theirs to run on another stream.
    transferable: bool = True

    def __init__(self, name: str | None = None, inner_loop_iters: int = 1,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        if name:
            self.name = name
        if inner_loop_iters < 1:
            raise ValueError(f"method.inner_loop_iters must be >= 1, got {inner_loop_iters}")
        self.inner_loop_iters = int(inner_loop_iters)
        self.optimizer_factory = optimizer

    # -- set-up -------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, seed: int) -> None:
        """Called once before the stream: freeze what does not learn, seed own randomness."""
        freeze_module(model)

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer | None:
        params = self.trainable_parameters(model)
        if self.optimizer_factory is None or not params:
            return None
        return self.optimizer_factory(params)

    def order(self, n: int, seed: int) -> list[int]:
        """Order in which the stream's samples are visited (the stream order, except i.i.d.)."""
        return list(range(n))

    # -- per batch ----------------------------------------------------------------------------
    def online_predict(self, model: nn.Module, batch: Batch) -> dict[str, Tensor]:
        return model(batch["video"])

    def loss(self, model: nn.Module, batch: Batch, fetch: Fetch) -> Tensor | None:
        return None

    def observe(self, batch: Batch) -> None:
        pass

    def hindsight_predict(self, model: nn.Module, n: int) -> dict[str, Tensor] | None:
        """Predictions of the final method for the n samples of its whole stream, or None to use
        the final model in eval mode (the default hindsight evaluation)."""
        return None

    # -- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
