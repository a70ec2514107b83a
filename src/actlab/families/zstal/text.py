"""The frozen CLIP text tower: the checkpoint that extracted the features, loaded from a local file
(no download), and the class targets it embeds (`name`, `prompt`, `description`)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from actlab.errors import DataError

PROMPT = "a video of a person doing {name}."


def class_phrase(name: str) -> str:
    """CamelCase split, lower case: "CliffDiving" -> "cliff diving"; "Long_Jump" -> "long jump"."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).replace("_", " ")
    return " ".join(words.lower().split())


@dataclass
class TextTower:
    model: Any                 # open_clip.CLIP
    tokenizer: Any
    logit_scale: float         # exp is applied by the RoI classifier

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Tensor:
        """L2-normalized text embeddings [N, E], float32 (the checkpoint may be fp16), where the model is."""
        tokens = self.tokenizer(list(texts)).to(next(self.model.parameters()).device)
        out = self.model.encode_text(tokens)
        return F.normalize(out.float(), dim=-1)


def load_clip(model_name: str, weights: str | Path, config_file: str | Path | None = None) -> TextTower:
    """`open_clip.create_model(model_name, pretrained=<local file>)`; `config_file` registers a model
    config first (the toy's tiny CLIP)."""
    import open_clip

    weights = Path(weights)
    if not weights.is_file():
        raise DataError(f"{weights}: no such CLIP checkpoint (paths.clip_weights / clip.weights)")
    if config_file:
        open_clip.add_model_config(str(config_file))
    model = open_clip.create_model(model_name, pretrained=str(weights), load_weights=True)
    model.eval()
    return TextTower(model, open_clip.get_tokenizer(model_name), float(model.logit_scale.detach().float()))


def read_descriptions(path: str | Path) -> dict[str, list[str]]:
    """{class: {"idx", "Elaboration": {"Description": [sub-action phrases]}}} -> class -> phrases."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such descriptions file (data.descriptions)")
    data = json.loads(path.read_text())
    try:
        return {c: list(v["Elaboration"]["Description"]) for c, v in data.items()}
    except (KeyError, TypeError) as e:
        raise DataError(f"{path}: every class needs Elaboration.Description ({e})") from e


def class_targets(tower: TextTower, classes: Sequence[str], target: str,
                  descriptions: dict[str, list[str]] | None = None) -> Tensor:
    """[C, E] normalized: `name`, `prompt` or `description` (mean of the sub-action embeddings)."""
    if target == "name":
        return tower.encode([class_phrase(c) for c in classes])
    if target == "prompt":
        return tower.encode([PROMPT.format(name=class_phrase(c)) for c in classes])
    if target == "description":
        if descriptions is None:
            raise DataError("target: description needs data.descriptions")
        missing = [c for c in classes if not descriptions.get(c)]
        if missing:
            raise DataError(f"descriptions: no sub-actions for {missing[:5]}")
        return F.normalize(torch.stack([tower.encode(descriptions[c]).mean(0) for c in classes]), dim=-1)
    raise ValueError(f"target must be name | prompt | description, got {target!r}")
