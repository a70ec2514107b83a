"""The class-agnostic proposal detector: a small Conditional-DETR-style model on torch.nn layers.

Linear D -> d (+ optional Conv1D, which helped), sine positional encoding, a transformer encoder
over the snippets (padding masked), and a decoder whose Q queries each carry a learnt reference
point: a query predicts (center, width) as sigmoid(logit(reference) + offset) and one actionness
logit, after every decoder layer (the auxiliary outputs).

Deviation from Conditional DETR (docs/zstal.md): plain `nn.TransformerDecoderLayer`s with the
reference point's sine embedding added to the query before each layer, instead of the conditional
spatial cross-attention; it keeps the anchor-per-query prior that makes DETR converge in few epochs.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sine_embedding(pos: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """[..., ] positions (snippet index or normalized coordinate * 2 pi) -> [..., dim] sin/cos."""
    freqs = temperature ** (2 * torch.arange(dim // 2, device=pos.device, dtype=torch.float32) / dim)
    x = pos[..., None].float() / freqs
    return torch.cat([x.sin(), x.cos()], dim=-1)


class ProposalDETR(nn.Module):
    def __init__(self, in_dim: int, d_model: int = 256, heads: int = 8, enc_layers: int = 2, dec_layers: int = 4,
                 queries: int = 40, ffn: int = 1024, dropout: float = 0.1, conv1d: int = 1) -> None:
        super().__init__()
        self.d_model = d_model
        self.proj = nn.Linear(in_dim, d_model)
        self.conv = (nn.Sequential(nn.Conv1d(d_model, d_model, 3, padding=1), nn.ReLU())
                     if conv1d else None)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, batch_first=True), enc_layers,
            enable_nested_tensor=False)
        self.decoder = nn.ModuleList(nn.TransformerDecoderLayer(d_model, heads, ffn, dropout, batch_first=True)
                                     for _ in range(dec_layers))
        self.query = nn.Embedding(queries, d_model)
        # reference centers spread over [0, 1]: each query starts responsible for one region
        self.reference = nn.Parameter(torch.logit(torch.linspace(0.5 / queries, 1 - 0.5 / queries, queries)))
        self.ref_proj = nn.Linear(d_model, d_model)
        self.box = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 2))
        self.actionness = nn.Linear(d_model, 1)
        nn.init.constant_(self.actionness.bias, -math.log((1 - 0.01) / 0.01))   # focal-loss prior 0.01
        nn.init.zeros_(self.box[-1].weight)
        nn.init.constant_(self.box[-1].bias, 0.0)
        with torch.no_grad():
            self.box[-1].bias[1] = math.log(0.1 / 0.9)      # initial width 0.1

    def forward(self, feats: Tensor, mask: Tensor) -> list[dict[str, Tensor]]:
        """feats [B, T, D], mask [B, T] True = valid -> per decoder layer {"cw": [B, Q, 2], "logit": [B, Q]}."""
        x = self.proj(feats)
        if self.conv is not None:
            x = self.conv((x * mask[..., None]).transpose(1, 2)).transpose(1, 2)
        # positions relative to the valid length, so a padded window means what a full one does
        length = mask.sum(1, keepdim=True).clamp(min=1).float()
        pos = sine_embedding(torch.arange(x.shape[1], device=x.device)[None] / length * 2 * math.pi * 10, self.d_model)
        memory = self.encoder(x + pos, src_key_padding_mask=~mask)
        memory = memory + pos
        b = feats.shape[0]
        ref = self.reference[None].expand(b, -1)
        qpos = self.ref_proj(sine_embedding(ref.sigmoid() * 2 * math.pi * 10, self.d_model))
        h = self.query.weight[None].expand(b, -1, -1)
        out = []
        for layer in self.decoder:
            h = layer(h + qpos, memory, memory_key_padding_mask=~mask)
            delta = self.box(h)
            c = (ref + delta[..., 0]).sigmoid()
            w = delta[..., 1].sigmoid()
            out.append({"cw": torch.stack([c, w], -1), "logit": self.actionness(h)[..., 0]})
        return out
