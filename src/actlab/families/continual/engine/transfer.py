"""Evaluate a model (eval mode) on a whole stream; share backbone features between models.

`StreamEvaluator` computes predictions as `model.classify(model.features(video))`, which is the
model's forward, and caches the features per (stream, backbone state): models whose backbones are
bit-identical decode and run the stream's clips once. The cache key is a hash of the backbone's
full state dict, parameters and buffers (batch-norm running statistics included), so a model whose
backbone changed in any way can never receive another model's features. A frozen network or a
head-only finetuned model keeps the pretrained backbone bit-identical only with
`method.backbone_bn: frozen` (the frozen network also with `online_forward: eval`); by default
(`adapt`, upstream) its train-mode forwards move the batch-norm statistics, so each such model has
its own backbone and its own feature pass. `fixed` (the feature cache's `BackboneFeatures`,
engine/feature_cache.py) supplies the features of a backbone still equal to its run's initial one
from disk, across jobs and sweeps.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from actlab import device as compute
from actlab.families.continual.metrics.evaluate import score


def backbone_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class StreamEvaluator:
    def __init__(self, batch_size: int = 4, num_workers: int = 0, cache_features: bool = True,
                 device: torch.device | None = None, precision: str = "fp32") -> None:
        """`device`: where models run (each is moved there once; None: where it is); features
        stay on it, so the heads of models that share them never leave the device."""
        self.batch_size, self.num_workers, self.cache_features = batch_size, num_workers, cache_features
        self.device, self.precision = device, compute.check_precision(precision)
        self._cache: dict[tuple[str, str], tuple[Tensor, Tensor, Tensor]] = {}
        self.feature_passes = 0      # how many times a stream's clips went through a backbone

    def _features(self, model: nn.Module, stream_key: str, dataset: Dataset,
                  fixed: Any = None) -> tuple[Tensor, Tensor, Tensor]:
        state = backbone_hash(model) if self.cache_features or fixed is not None else None
        key = (stream_key, state) if self.cache_features else None
        if key is not None and key in self._cache:
            return self._cache[key]
        if fixed is not None and fixed.state == state and fixed.still_valid() and hasattr(dataset, "stream_labels"):
            # the feature cache (engine/feature_cache.py): the same chunks as the loader's below
            device = self._place(model)
            labels = torch.tensor(dataset.stream_labels(), dtype=torch.long).reshape(-1, 2)
            out = (fixed.stream(self.batch_size).to(device), labels[:, 0], labels[:, 1])
            if key is not None:
                self._cache[key] = out
            return out
        device = self._place(model)
        loader = DataLoader(dataset, batch_size=self.batch_size, **compute.loader_options(device, self.num_workers))
        feats, verbs, nouns = [], [], []
        model.eval()
        with torch.no_grad(), compute.autocast(device, self.precision):
            for batch in loader:
                feats.append(model.features(batch["video"].to(device, non_blocking=device.type == "cuda")))
                verbs.append(torch.as_tensor(batch["verb"]))
                nouns.append(torch.as_tensor(batch["noun"]))
        self.feature_passes += 1
        out = (torch.cat(feats), torch.cat(verbs), torch.cat(nouns))
        if key is not None:
            self._cache[key] = out
        return out

    def _place(self, model: nn.Module) -> torch.device:
        if self.device is None:
            return compute.module_device(model)
        if compute.module_device(model) != self.device:
            model.to(self.device)
        return self.device

    def logits(self, model: nn.Module, stream_key: str, dataset: Dataset, fixed: Any = None) -> dict[str, Tensor]:
        """`fixed`: the feature cache's `BackboneFeatures` of this model's backbone on this stream
        (used only while it still holds that backbone)."""
        feats, verb, noun = self._features(model, stream_key, dataset, fixed)
        device = self._place(model)
        model.eval()
        with torch.no_grad(), compute.autocast(device, self.precision):
            out = model.classify(feats)
        return {"verb": out["verb"], "noun": out["noun"], "verb_y": verb, "noun_y": noun}

    def evaluate(self, model: nn.Module, stream_key: str, dataset: Dataset,
                 prefix: str = "hindsight", fixed: Any = None) -> dict[str, Any]:
        o = self.logits(model, stream_key, dataset, fixed)
        return score(o["verb"], o["noun"], o["verb_y"], o["noun_y"], prefix=prefix)
