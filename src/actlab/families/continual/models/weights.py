"""Loading pretrained weights from a path into a `VideoClassifier`, and saving them atomically.

Accepted layouts: a plain state_dict; `{"model": state_dict, "meta": {...}}` (what
`save_checkpoint` writes); Lightning-style `{"state_dict": {"model.<key>": ...}}` (Ego4D's released
checkpoints). A label-space change (another number of verbs or nouns) re-initialises that head at
the model's size and is reported; any other shape mismatch is an error naming the key, because
silently keeping random weights in a backbone would corrupt every result downstream.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from actlab.atomic import atomic_write
from actlab.errors import DataError

HEADS = ("verb_head", "noun_head")
_PREFIXES = ("model.", "module.")  # Lightning module attribute, DistributedDataParallel wrapper
_SHOW = 8  # names shown per list in the report's text; the attributes keep all of them


@dataclass
class LoadReport:
    path: str
    loaded: int = 0                                   # tensors copied into the model
    missing: list[str] = field(default_factory=list)  # model keys absent from the checkpoint
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model does not have
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    resized: dict[str, tuple[int, int]] = field(default_factory=dict)  # head -> (ckpt, model) classes
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        parts = [f"loaded {self.loaded} tensors from {self.path}"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                more = f", ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
                parts.append(f"{name} {len(keys)}: {', '.join(keys[:_SHOW])}{more}")
        for head, (old, new) in self.resized.items():
            parts.append(f"{head} re-initialised: checkpoint has {old} classes, model {new}")
        return "; ".join(parts)


def _strip_prefixes(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in sd.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _state_dict_of(obj: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: checkpoint is a {type(obj).__name__}, expected a dict")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd, meta = obj["state_dict"], {k: v for k, v in obj.items() if k in ("epoch", "global_step")}
    elif "model" in obj and isinstance(obj["model"], dict):
        sd, meta = obj["model"], dict(obj.get("meta") or {})
    else:
        sd, meta = obj, {}
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise DataError(f"{path}: not a state_dict (no 'state_dict' or 'model' key, and non-tensor "
                        f"entries such as {bad[:3]})")
    return _strip_prefixes(sd), meta


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = False) -> LoadReport:
    """Copy the weights at `path` into `model`; `strict` also fails on missing/unexpected keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # Lightning checkpoints pickle hyper-parameters (not only tensors), hence weights_only=False;
        # checkpoints come from this project or from the Ego4D release.
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several unrelated types for a corrupt file
        raise DataError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err
    sd, meta = _state_dict_of(obj, path)
    own = model.state_dict()
    report = LoadReport(path=str(path), meta=meta)
    report.unexpected = sorted(k for k in sd if k not in own)
    report.missing = sorted(k for k in own if k not in sd)
    usable = {}
    for key in sorted(set(sd) & set(own)):
        if sd[key].shape == own[key].shape:
            usable[key] = sd[key]
            continue
        shapes = (tuple(sd[key].shape), tuple(own[key].shape))
        head = key.split(".", 1)[0]
        if head not in HEADS:
            raise DataError(f"{path}: shape mismatch for {key}: checkpoint {shapes[0]}, model {shapes[1]}")
        report.mismatched[key] = shapes
        report.resized[head] = (shapes[0][0], shapes[1][0])
    # A head whose size changed is dropped as a whole (weight and bias) and freshly initialised.
    usable = {k: v for k, v in usable.items() if k.split(".", 1)[0] not in report.resized}
    if strict and (report.missing or report.unexpected):
        raise DataError(f"{path}: {report}")
    model.load_state_dict(usable, strict=False)
    for head in report.resized:
        getattr(model, head).reset_parameters()
    report.loaded = len(usable)
    return report


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write `{"model": state_dict, "meta": meta}` atomically (a reader never sees half a file)."""
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": dict(meta)}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))
