"""Evaluate several models on one stream in one pass: one decode per batch, backbones batched.

Full-finetune transfer matrices hold N models whose backbones share the architecture but not the
weights (as do head-only ones whose batch-norm statistics adapted, `method.backbone_bn: adapt`),
so `StreamEvaluator`'s feature cache never hits and the naive job runs N^2 separate
backbone passes (and, without a clip cache, decodes every stream N times). `MultiModelEvaluator`
reads each batch of a stream once and runs every distinct backbone on it in one call:
`torch.func.stack_module_state` stacks the backbones' parameters and buffers (batch-norm running
stats are buffers, so eval-mode batch norm uses each model's own), and `vmap` over
`functional_call` runs them as one batched network. Models whose backbones are bit-identical
(equal `backbone_hash`: parameters and batch-norm buffers, e.g. head-only finetuning with
`method.backbone_bn: frozen`) share one backbone slot, as in `StreamEvaluator`; heads run per model.

pytorchvideo's `Swish` is a legacy `autograd.Function` that `vmap` refuses, so the stateless
template that `functional_call` runs has each `Swish` replaced by `_VmapSwish`, the same
`x * sigmoid(x)` as plain tensor ops (the weights are untouched; only the template changes).
"""
from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import actlab.compat  # noqa: F401  (must precede every pytorchvideo import)

import torch
from pytorchvideo.layers.swish import Swish
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state
from torch.utils.data import DataLoader, Dataset

from actlab import device as compute
from actlab.families.continual.engine.transfer import backbone_hash
from actlab.families.continual.metrics.evaluate import score

_SIMPLE = (bool, int, float, str, tuple, type(None))


class _VmapSwish(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


def architecture_key(module: nn.Module) -> str:
    """Equal keys <=> one template can run either module's weights.

    `repr` covers the layer hyper-parameters torch prints; plain attributes (e.g. SlowFast's
    `alpha`, which has no `extra_repr`) and the state's names, shapes and dtypes cover the rest.
    """
    parts = [repr(module)]
    for name, sub in module.named_modules():
        attrs = sorted((k, v) for k, v in vars(sub).items()
                       if not k.startswith("_") and k != "training" and isinstance(v, _SIMPLE))
        parts.append(f"{name}:{type(sub).__qualname__}:{attrs}")
    parts += [f"{k}:{tuple(t.shape)}:{t.dtype}" for k, t in module.state_dict().items()]
    return "\n".join(parts)


def group_by_architecture(models: Sequence[nn.Module]) -> list[list[int]]:
    """Indices of `models` grouped by identical backbone architecture, in first-seen order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(models):
        groups[architecture_key(m.backbone)].append(i)
    return list(groups.values())


def _vmap_template(backbone: nn.Module) -> nn.Module:
    template = copy.deepcopy(backbone)
    for parent in list(template.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Swish):
                setattr(parent, name, _VmapSwish())
    return template.to("meta").eval()


class StackedBackbones:
    """K backbones of one architecture as one callable: video [B,...] -> features [K,B,D]."""

    def __init__(self, backbones: Sequence[nn.Module]) -> None:
        if not backbones:
            raise ValueError("StackedBackbones: no backbones given")
        keys = {architecture_key(b) for b in backbones}
        if len(keys) != 1:
            raise ValueError(f"StackedBackbones: {len(keys)} different architectures among "
                             f"{len(backbones)} backbones; group them with group_by_architecture")
        for b in backbones:
            b.eval()
        self.params, self.buffers = stack_module_state(list(backbones))
        template = _vmap_template(backbones[0])

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], video: Tensor) -> Tensor:
            return functional_call(template, (params, buffers), (video,))

        self._run: Callable[..., Tensor] = torch.vmap(one, in_dims=(0, 0, None))

    def __call__(self, video: Tensor) -> Tensor:
        if video.dim() != 5:
            raise ValueError(f"expected a video batch [B,C,T,H,W], got shape {tuple(video.shape)}")
        with torch.no_grad():
            return torch.flatten(self._run(self.params, self.buffers, video), 2)


@dataclass
class StreamLogits:
    verb: Tensor      # [N, num_verbs]
    noun: Tensor      # [N, num_nouns]
    verb_y: Tensor    # [N]
    noun_y: Tensor    # [N]


class MultiModelEvaluator:
    """Logits of many models (VideoClassifier-like: `.backbone`, `.classify`) on one stream.

    `max_backbones` bounds how many backbones one vmap call stacks (activation memory grows with it).
    """

    def __init__(self, batch_size: int = 4, num_workers: int = 0, max_backbones: int = 8,
                 device: torch.device | None = None, precision: str = "fp32") -> None:
        if max_backbones < 1:
            raise ValueError(f"max_backbones must be >= 1, got {max_backbones}")
        self.batch_size, self.num_workers, self.max_backbones = batch_size, num_workers, max_backbones
        # `device`: models are moved there before their backbones are stacked (None: where they are).
        self.device, self.precision = device, compute.check_precision(precision)
        self.decode_passes = 0       # how many times a stream's clips were read
        self.backbone_calls = 0      # batched backbone calls (one per batch per stack)

    def _stacks(self, models: Sequence[nn.Module]) -> tuple[list[StackedBackbones], list[tuple[int, int]]]:
        """Distinct backbones stacked per architecture; slot[i] = (stack, index) of model i's backbone."""
        by_hash: dict[str, int] = {}
        distinct: list[nn.Module] = []
        owner: list[int] = []
        for m in models:
            h = backbone_hash(m)
            if h not in by_hash:
                by_hash[h] = len(distinct)
                distinct.append(m)
            owner.append(by_hash[h])
        stacks: list[StackedBackbones] = []
        where: dict[int, tuple[int, int]] = {}
        for group in group_by_architecture(distinct):
            for start in range(0, len(group), self.max_backbones):
                chunk = group[start:start + self.max_backbones]
                for j, d in enumerate(chunk):
                    where[d] = (len(stacks), j)
                stacks.append(StackedBackbones([distinct[d].backbone for d in chunk]))
        return stacks, [where[o] for o in owner]

    def logits(self, models: Sequence[nn.Module], dataset: Dataset) -> list[StreamLogits]:
        """One StreamLogits per model, in order; equal to each model's own eval-mode forward."""
        if not models:
            return []
        device = compute.module_device(models[0]) if self.device is None else self.device
        for m in models:
            if self.device is not None:
                m.to(device)
            m.eval()
        stacks, slots = self._stacks(models)
        loader = DataLoader(dataset, batch_size=self.batch_size, **compute.loader_options(device, self.num_workers))
        outs: list[dict[str, list[Tensor]]] = [{"verb": [], "noun": []} for _ in models]
        verbs, nouns = [], []
        with torch.no_grad(), compute.autocast(device, self.precision):
            for batch in loader:
                video = batch["video"].to(device, non_blocking=device.type == "cuda")
                feats = [stack(video) for stack in stacks]
                self.backbone_calls += len(stacks)
                for m, (s, j), out in zip(models, slots, outs):
                    o = m.classify(feats[s][j])
                    out["verb"].append(o["verb"])
                    out["noun"].append(o["noun"])
                verbs.append(torch.as_tensor(batch["verb"]))
                nouns.append(torch.as_tensor(batch["noun"]))
        self.decode_passes += 1
        verb_y, noun_y = torch.cat(verbs), torch.cat(nouns)
        return [StreamLogits(torch.cat(o["verb"]), torch.cat(o["noun"]), verb_y, noun_y) for o in outs]

    def evaluate(self, models: Sequence[nn.Module], dataset: Dataset,
                 prefix: str = "hindsight") -> list[dict[str, Any]]:
        return [score(o.verb, o.noun, o.verb_y, o.noun_y, prefix=prefix) for o in self.logits(models, dataset)]
