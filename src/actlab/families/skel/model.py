"""The five variants' models on one SlowOnly encoder (issue 14 §3-§4).

`ce`: mean -> dropout -> linear. The text variants share the encoder, the text tower and the
projections: per frame Linear(C -> hidden) = E -> Linear(hidden -> embed) -> temporal mean -> L2 = v;
text Linear(tower embed -> embed) -> L2 = t; a learnable temperature. `itc_itm` adds the fusion
head, `itc_mom` the momentum copies and the queue, `pacl` a frame embedder on the raw frames.
Every module and buffer is in the state_dict: a checkpoint carries the momentum model and queues.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actlab.families.skel.encoder import SlowOnly
from actlab.families.skel.queue import MomentumQueue
from actlab.families.skel.text import TextTower

VARIANTS = ("ce", "itc", "itc_itm", "itc_mom", "pacl")


@dataclass(frozen=True)
class ModelConfig:
    loss: str = "itc"
    base: int = 32
    blocks: tuple[int, ...] = (4, 6, 3)
    hidden: int = 768              # the per-frame E layer
    embed: int = 256               # the joint space
    dropout: float = 0.5
    temp: float = 0.07
    fusion_layers: int = 2
    queue_size: int = 65536
    momentum: float = 0.995
    pacl_embedder: str = "linear"  # linear | residual_mlp
    pacl_weighting: str = "softmax"  # softmax | sigmoid10
    seed: int = 0


class FusionLayer(nn.Module):
    """Pre-LN: text self-attention (padding mask), cross-attention to E, MLP."""

    def __init__(self, width: int, heads: int, kdim: int) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, kdim=kdim, vdim=kdim, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor, pad: Tensor, video: Tensor) -> Tensor:
        h = self.ln1(x)
        x = x + self.self_attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        x = x + self.cross_attn(self.ln2(x), video, video, need_weights=False)[0]
        return x + self.mlp(self.ln3(x))


class ItmHead(nn.Module):
    def __init__(self, width: int, heads: int, kdim: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(width, heads, kdim) for _ in range(layers))
        self.out = nn.Linear(width, 2)

    def forward(self, tokens: Tensor, pad: Tensor, eot: Tensor, video: Tensor) -> Tensor:
        x = tokens
        for layer in self.layers:
            x = layer(x, pad, video)
        return self.out(x[torch.arange(len(x), device=x.device), eot])


class PaclEmbedder(nn.Module):
    def __init__(self, cin: int, embed: int, kind: str) -> None:
        super().__init__()
        if kind not in ("linear", "residual_mlp"):
            raise ValueError(f"pacl embedder must be linear or residual_mlp, got {kind!r}")
        self.kind = kind
        self.main = (nn.Linear(cin, embed) if kind == "linear"
                     else nn.Sequential(nn.Linear(cin, embed), nn.GELU(), nn.Linear(embed, embed)))
        self.residual = nn.Linear(cin, embed) if kind == "residual_mlp" else None

    def forward(self, frames: Tensor) -> Tensor:
        out = self.main(frames)
        return out + self.residual(frames) if self.residual is not None else out


class VideoSide(nn.Module):
    """Encoder + E + projection: what the momentum copy duplicates on the video side."""

    def __init__(self, encoder: SlowOnly, hidden: int, embed: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.frame_proj = nn.Linear(encoder.out_channels, hidden)
        self.proj = nn.Linear(hidden, embed)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(v [B, embed] unit-norm, E [B, T', hidden], F [B, T', C])."""
        frames = self.encoder.frames(x)
        e = self.frame_proj(frames)
        # projection and temporal mean commute (both linear): mean first is cheaper
        return F.normalize(self.proj(e.mean(1)), dim=-1), e, frames


class TextSide(nn.Module):
    def __init__(self, tower: TextTower, embed: int) -> None:
        super().__init__()
        self.tower = tower
        self.proj = nn.Linear(tower.embed_dim, embed)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(t [L, embed] unit-norm, token states, padding mask)."""
        pooled, states, pad = self.tower(tokens)
        return F.normalize(self.proj(pooled), dim=-1), states, pad


class CEModel(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.encoder = SlowOnly(base=cfg.base, blocks=tuple(cfg.blocks))
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.out_channels, num_classes)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))     # optimizer steps done

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.encoder(x).mean((2, 3, 4))))


class SkelTextModel(nn.Module):
    def __init__(self, cfg: ModelConfig, tower: TextTower, class_names: list[str]) -> None:
        super().__init__()
        self.cfg = cfg
        self.video = VideoSide(SlowOnly(base=cfg.base, blocks=tuple(cfg.blocks)), cfg.hidden, cfg.embed)
        self.text = TextSide(tower, cfg.embed)
        self.temp = nn.Parameter(torch.tensor(float(cfg.temp)))
        # the class names' tokens, renumbered to the rows of the tower's token table they use
        self.register_buffer("tokens", tower.keep_tokens(tower.tokenize(list(class_names))), persistent=False)
        self.itm = (ItmHead(tower.width, max(1, tower.width // 64) if tower.width >= 64 else 2, cfg.hidden,
                            cfg.fusion_layers) if cfg.loss == "itc_itm" else None)
        self.pacl = (PaclEmbedder(self.video.encoder.out_channels, cfg.embed, cfg.pacl_embedder)
                     if cfg.loss == "pacl" else None)
        if cfg.loss == "itc_mom":
            self.video_m, self.text_m = copy.deepcopy(self.video), copy.deepcopy(self.text)
            for p in [*self.video_m.parameters(), *self.text_m.parameters()]:
                p.requires_grad_(False)
            self.queue = MomentumQueue(cfg.queue_size, cfg.embed, seed=cfg.seed)
        # optimizer steps done: the alpha ramp reads it, and it is checkpointed with the model
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("itm_skips", torch.zeros((), dtype=torch.long))   # one-class batches (ITM = 0)

    def encode_texts(self, labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The class texts of `labels` (every class without): each unique label encoded once.
        Returns (t per label [N, embed], states, pad, eot) for the rows of `labels`."""
        if labels is None:
            labels = torch.arange(len(self.tokens), device=self.tokens.device)
        unique, inverse = torch.unique(labels, return_inverse=True)
        tokens = self.tokens[unique]
        t, states, pad = self.text(tokens)
        return t[inverse], states[inverse], pad[inverse], tokens.argmax(-1)[inverse]

    def pacl_cosines(self, frames: Tensor) -> Tensor:
        """[B, L] cosine logits (tau = 1) of PACL against all class texts."""
        from actlab.families.skel.losses import pacl_logits

        t_all = self.encode_texts()[0]
        return pacl_logits(self.pacl(frames), t_all, 1.0, self.cfg.pacl_weighting)

    def class_cosines(self, x: Tensor) -> Tensor:
        """[B, L] raw cosines of clips to every class text (PACL: its own pooled cosines)."""
        v, _, frames = self.video(x)
        if self.pacl is not None:
            return self.pacl_cosines(frames)
        return v @ self.encode_texts()[0].T
