"""The action-recognition model: any video backbone that maps [B,C,T,H,W] to [B,D] + two heads.

Splitting `features` from `classify` lets head-only methods and transfer evaluation reuse backbone
features (see actlab.families.continual.engine.transfer) while `forward` stays the plain end-to-end prediction.

Unseen-class masking (docs/protocol.md, "Unseen-class masking"): once `set_allowed_labels` is
called, `classify` overwrites the logits of every other verb and noun with MASK_VALUE in every row,
as upstream's UnseenVerbNounMaskerHead. Living in `classify`, it reaches every forward (online
prediction, training loss, past evaluation, hindsight, transfer, shared-feature evaluation) without
any caller knowing. The allowed sets are non-persistent buffers: state_dicts, checkpoints and final
models keep their keys, and a loaded state_dict leaves the mask in place.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

MASK_VALUE = -1e12   # upstream's value: softmax gives exactly 0, so masked columns get no gradient


class VideoClassifier(nn.Module):
    verb_allowed: Tensor | None
    noun_allowed: Tensor | None

    def __init__(self, backbone: nn.Module, feature_dim: int, num_verbs: int, num_nouns: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.verb_head = nn.Linear(self.feature_dim, int(num_verbs))
        self.noun_head = nn.Linear(self.feature_dim, int(num_nouns))
        self.register_buffer("verb_allowed", None, persistent=False)
        self.register_buffer("noun_allowed", None, persistent=False)

    def set_allowed_labels(self, verbs: Iterable[int] | None, nouns: Iterable[int] | None) -> None:
        """Only these verb / noun labels keep their logits; None (both) removes the mask."""
        if verbs is None and nouns is None:
            self.verb_allowed = self.noun_allowed = None
            return
        if verbs is None or nouns is None:
            raise ValueError("set_allowed_labels: give both the verb and the noun set, or neither")
        self.verb_allowed = self._allowed("verb", verbs, self.verb_head)
        self.noun_allowed = self._allowed("noun", nouns, self.noun_head)

    @staticmethod
    def _allowed(task: str, labels: Iterable[int], head: nn.Linear) -> Tensor:
        labels = sorted({int(x) for x in labels})
        if not labels:
            raise ValueError(f"allowed {task} labels: empty set (every logit would be masked)")
        bad = [x for x in labels if not 0 <= x < head.out_features]
        if bad:
            raise ValueError(f"allowed {task} labels {bad} outside the head's {head.out_features} classes")
        allowed = torch.zeros(head.out_features, dtype=torch.bool, device=head.weight.device)
        allowed[labels] = True
        return allowed

    def features(self, video: Tensor) -> Tensor:
        if video.dim() != 5:
            raise ValueError(f"expected a video batch [B,C,T,H,W], got shape {tuple(video.shape)}")
        feats = self.backbone(video)
        return torch.flatten(feats, 1)

    def classify(self, features: Tensor) -> dict[str, Tensor]:
        x = self.dropout(features)
        verb, noun = self.verb_head(x), self.noun_head(x)
        if self.verb_allowed is not None:
            if verb.dtype == torch.float16:     # -1e12 overflows fp16 (fp16 autocast); bf16 holds it
                verb, noun = verb.float(), noun.float()
            verb = verb.masked_fill(~self.verb_allowed, MASK_VALUE)
            noun = noun.masked_fill(~self.noun_allowed, MASK_VALUE)
        return {"verb": verb, "noun": noun}

    def forward(self, video: Tensor) -> dict[str, Tensor]:
        return self.classify(self.features(video))
