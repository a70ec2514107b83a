"""The method API the stream loop drives, batch by batch (docs/protocol.md, "Per-batch protocol").

For each batch B_t of consecutive stream samples the loop
  1. gets the online predictions on B_t, made before any update on B_t: for a method that learns,
     with `online_forward: train`, they are the B_t rows of the first inner iteration's forward
     (`train_forward`), as upstream; otherwise `online_predict(model, batch)` (default: the
     model's forward; the label-window predictor overrides it) under no_grad;
  2. `inner_loop_iters` times: `train_forward(model, batch, fetch)` -> `Forward` (the B_t logits
     and the scalar loss to step the optimizer on); the first one is the forward of step 1;
  3. `observe(batch)`: the method's own bookkeeping after the update (replay memory, label history).
`fetch(indices) -> batch` loads past stream samples by stream index (replay keeps only indices).

Methods own their optimizer recipe (`optimizer`: a `functools.partial`-style callable from Hydra's
`_partial_: true`) and say which parameters train (`trainable_parameters`); a method without
trainable parameters gets no optimizer and never updates. `backbone_bn` says whether the
batch-norm running statistics of parameters that do not train still adapt in train-mode forwards
(`adapt`, upstream) or stay fixed (`frozen`: the sub-network is bit-identical, so transfer
evaluation can share its features). Everything that must survive a requeue is in `state_dict()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

Batch = dict[str, Any]               # {"video": [B,C,T,H,W], "verb": [B], "noun": [B], "index": [B]}
Fetch = Callable[[list[int]], Batch]
BACKBONE_BN = ("adapt", "frozen")


@dataclass
class Forward:
    """One train-mode forward of an update: the logits of the batch's own rows (its online
    predictions when it is the first) and the loss to step on."""
    logits: dict[str, Tensor]
    loss: Tensor


def cross_entropy(logits: dict[str, Tensor], batch: Batch, reduction: str = "mean") -> Tensor:
    """Loss of the protocol: CE(verb) + CE(noun)."""
    return (nn.functional.cross_entropy(logits["verb"], batch["verb"], reduction=reduction)
            + nn.functional.cross_entropy(logits["noun"], batch["noun"], reduction=reduction))


def network(model: nn.Module, batch: Batch) -> dict[str, Tensor]:
    """The model's forward on the batch: its heads on the batch's backbone features when the loop
    supplied them (a fixed backbone, engine/feature_cache.py), else the full forward of its video."""
    if "features" in batch:
        return model.classify(batch["features"])
    return model(batch["video"])


def freeze_module(module: nn.Module, backbone_bn: str = "adapt") -> None:
    """No gradients for `module`. With `backbone_bn: frozen` its batch-norm layers also stop
    tracking running statistics (a train-mode forward still normalises with the batch statistics,
    but no buffer changes), so the sub-network stays bit-identical; with `adapt` (upstream) the
    statistics keep moving in every train-mode forward."""
    for p in module.parameters():
        p.requires_grad_(False)
    if backbone_bn == "frozen":
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.track_running_stats = False


class Method:
    """Base: predict with the model's forward, learn nothing."""

    name: str = "base"
    # False for methods whose predictions come from their own state rather than the network
    # (label window): transfer evaluation has no model of theirs to run on another stream.
    transferable: bool = True
    # True for methods that read every sample's labels before the first batch (upstream's
    # hindsight label-window predictor): the loop then calls `see_stream_labels` once.
    needs_stream_labels: bool = False
    # False for methods that never forward the network on the stream's video (label window): the
    # loop then reads no video unless past evaluation needs it.
    uses_video: bool = True
    # True when every network forward sees only the batch itself (not replay's batch + memory), so
    # with a fixed backbone its features can come from the feature cache (engine/feature_cache.py).
    batch_only_forwards: bool = True

    def __init__(self, name: str | None = None, inner_loop_iters: int = 1,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 backbone_bn: str = "adapt") -> None:
        if name:
            self.name = name
        if inner_loop_iters < 1:
            raise ValueError(f"method.inner_loop_iters must be >= 1, got {inner_loop_iters}")
        if backbone_bn not in BACKBONE_BN:
            raise ValueError(f"method.backbone_bn must be one of {BACKBONE_BN}, got {backbone_bn!r}")
        self.inner_loop_iters = int(inner_loop_iters)
        self.optimizer_factory = optimizer
        self.backbone_bn = backbone_bn

    # -- set-up -------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, seed: int) -> None:
        """Called once before the stream: freeze what does not learn, seed own randomness."""
        freeze_module(model, self.backbone_bn)

    def see_stream_labels(self, labels: list[tuple[int, int]]) -> None:
        """(verb, noun) of every stream sample in stream order; only if `needs_stream_labels`."""

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
        return network(model, batch)

    def train_forward(self, model: nn.Module, batch: Batch, fetch: Fetch) -> Forward:
        raise NotImplementedError(f"method {self.name!r} has trainable parameters but no update")

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
