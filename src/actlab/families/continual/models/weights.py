"""Loading pretrained weights into a `VideoClassifier`, and saving them atomically.

Accepted layouts: a plain state_dict; `{"model": state_dict, "meta": {...}}` (what
`save_checkpoint` writes); Lightning-style `{"state_dict": {"model.<key>": ...}}` (Ego4D's released
checkpoints); the SlowFast library's `{"model_state": state_dict}`. SlowFast-library tensor names
are translated to ours (`slowfast_keys`).

The backbone must load completely: a backbone tensor of the model absent from the checkpoint, a
non-head checkpoint tensor the model lacks, or a shape mismatch in the backbone is an error naming
the first keys, because a backbone left partly random corrupts every number downstream without
any other sign (docs/protocol.md, "Pretrained weights"). The heads are where a checkpoint may
legitimately differ (another label space; a Kinetics checkpoint has neither verb nor noun head):
such a head is initialised afresh, as a whole, and reported; `strict=True` refuses that too.
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
from actlab.families.continual.models.slowfast_keys import translate

HEADS = ("verb_head", "noun_head")
# Checkpoint-only names of heads: the SlowFast library's (e.g. a Kinetics `head.projection`).
_FOREIGN_HEADS = ("head",)
_PREFIXES = ("model.", "module.")  # Lightning module attribute, DistributedDataParallel wrapper
# BatchNorm's update counter: not read by the forward pass with a set momentum, and absent from
# older checkpoints, so its absence alone does not make a backbone incomplete (it stays reported).
_OPTIONAL = ("num_batches_tracked",)
_SHOW = 8  # names shown per list in a message; the report's attributes keep all of them


def _names(keys: list[str]) -> str:
    more = f", ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return f"{', '.join(keys[:_SHOW])}{more}"


@dataclass
class LoadReport:
    path: str
    loaded: int = 0                                   # tensors copied into the model
    missing: list[str] = field(default_factory=list)  # model keys absent from the checkpoint
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model does not have
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    resized: dict[str, tuple[int, int]] = field(default_factory=dict)  # head -> (ckpt, model) classes
    initialised: list[str] = field(default_factory=list)  # heads absent or incomplete in the checkpoint
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def new_heads(self) -> list[str]:
        """Heads that do not come from the checkpoint (freshly initialised)."""
        return sorted(set(self.resized) | set(self.initialised))

    def __str__(self) -> str:
        parts = [f"loaded {self.loaded} tensors from {self.path}"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{name} {len(keys)}: {_names(keys)}")
        for head, (old, new) in self.resized.items():
            parts.append(f"{head} re-initialised: checkpoint has {old} classes, model {new}")
        for head in self.initialised:
            parts.append(f"{head} initialised: not (completely) in the checkpoint")
        return "; ".join(parts)


def _strip_prefixes(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in sd.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _state_dict_of(obj: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: checkpoint is a {type(obj).__name__}, expected a dict")
    if isinstance(obj.get("state_dict"), dict):
        sd, meta = obj["state_dict"], {k: v for k, v in obj.items() if k in ("epoch", "global_step")}
    elif isinstance(obj.get("model_state"), dict):
        sd, meta = obj["model_state"], {k: v for k, v in obj.items() if k == "epoch"}
    elif isinstance(obj.get("model"), dict):
        sd, meta = obj["model"], dict(obj.get("meta") or {})
    else:
        sd, meta = obj, {}
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise DataError(f"{path}: not a state_dict (no 'state_dict', 'model_state' or 'model' key, and "
                        f"non-tensor entries such as {bad[:3]})")
    try:
        return translate(_strip_prefixes(sd)), meta
    except ValueError as err:
        raise DataError(f"{path}: {err}") from err


def _head_of(key: str) -> str | None:
    first = key.split(".", 1)[0]
    return first if first in HEADS + _FOREIGN_HEADS else None


def load_state(model: nn.Module, sd: dict[str, Tensor], source: str, strict: bool = False,
               meta: dict[str, Any] | None = None) -> LoadReport:
    """Copy `sd` (our key names) into `model` under the rules above; `source` names it in errors."""
    own = model.state_dict()
    report = LoadReport(path=source, meta=dict(meta or {}))
    report.unexpected = sorted(k for k in sd if k not in own)
    report.missing = sorted(k for k in own if k not in sd)
    for key in sorted(set(sd) & set(own)):
        if sd[key].shape == own[key].shape:
            continue
        shapes = (tuple(sd[key].shape), tuple(own[key].shape))
        head = _head_of(key)
        if head is None:
            raise DataError(f"{source}: shape mismatch for {key}: checkpoint {shapes[0]}, model {shapes[1]}")
        report.mismatched[key] = shapes
        report.resized[head] = (shapes[0][0], shapes[1][0])
    missing = [k for k in report.missing if _head_of(k) is None and not k.endswith(_OPTIONAL)]
    unexpected = [k for k in report.unexpected if _head_of(k) is None]
    if missing or unexpected:
        parts = [f"{name} {len(keys)} ({what}): {_names(keys)}" for name, keys, what in (
            ("missing", missing, "model tensors not in the checkpoint"),
            ("unexpected", unexpected, "checkpoint tensors the model lacks")) if keys]
        raise DataError(f"{source}: the backbone does not load completely; {'; '.join(parts)}. "
                        f"Is it a checkpoint of this model (`model` config)?")
    report.initialised = sorted({h for k in report.missing if (h := _head_of(k)) and h not in report.resized})
    if strict and (report.new_heads or report.unexpected):
        raise DataError(f"{source}: not loadable as it is (strict): {report}")
    # A head that changed size or is incomplete is initialised afresh as a whole (weight and bias).
    usable = {k: v for k, v in sd.items() if k in own and _head_of(k) not in report.new_heads}
    model.load_state_dict(usable, strict=False)
    for head in report.new_heads:
        getattr(model, head).reset_parameters()
    report.loaded = len(usable)
    return report


def read_state_dict(path: str | os.PathLike, mmap: bool = False) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state_dict (in this project's key names) and metadata of a checkpoint in any accepted
    layout. `mmap`: tensors stay on disk until read (a pre-submit check reads two heads)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # Lightning checkpoints pickle hyper-parameters (not only tensors), hence weights_only=False;
        # checkpoints come from this project or from the Ego4D release.
        obj = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as err:  # torch raises several unrelated types for a corrupt file
        raise DataError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err
    return _state_dict_of(obj, path)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = False) -> LoadReport:
    """Copy the weights at `path` into `model`; `strict`: the heads must load as they are, too."""
    sd, meta = read_state_dict(path)
    return load_state(model, sd, str(path), strict=strict, meta=meta)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write `{"model": state_dict, "meta": meta}` atomically (a reader never sees half a file)."""
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": dict(meta)}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))
