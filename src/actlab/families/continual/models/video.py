"""The action-recognition model: any video backbone that maps [B,C,T,H,W] to [B,D] + two heads.

Splitting `features` from `classify` lets head-only methods and transfer evaluation reuse backbone
features (see actlab.families.continual.engine.transfer) while `forward` stays the plain end-to-end prediction.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class VideoClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, feature_dim: int, num_verbs: int, num_nouns: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.verb_head = nn.Linear(self.feature_dim, int(num_verbs))
        self.noun_head = nn.Linear(self.feature_dim, int(num_nouns))

    def features(self, video: Tensor) -> Tensor:
        if video.dim() != 5:
            raise ValueError(f"expected a video batch [B,C,T,H,W], got shape {tuple(video.shape)}")
        feats = self.backbone(video)
        return torch.flatten(feats, 1)

    def classify(self, features: Tensor) -> dict[str, Tensor]:
        x = self.dropout(features)
        return {"verb": self.verb_head(x), "noun": self.noun_head(x)}

    def forward(self, video: Tensor) -> dict[str, Tensor]:
        return self.classify(self.features(video))
