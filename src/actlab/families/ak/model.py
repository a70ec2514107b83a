"""The CLIP video-text classifier: a video embedding from the image tower, cosine similarity to one
frozen text embedding per class, the checkpoint's frozen logit scale, and an optional C x C head.

CLIP comes from open_clip with weights from a local file only (`load_clip`); the text tower runs
once, to encode the class prompts (`text_embeddings`), and is not kept. Video encoders (the
`model` config group):
- `ProjOnly` (clip_proj): frozen image trunk; only `ln_post` and `proj` train; mean over frames.
  Its frozen part, `frame_features`, is what the feature cache stores.
- `FullVision` (clip_vision): the whole image tower trains; mean over frames.
- `Temporal` (clip_temporal): frozen per-frame CLIP embeddings + a small temporal transformer
  (learned positional embedding over T, mean pool, projection).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actlab.atomic import atomic_write

log = logging.getLogger(__name__)

TEMPLATES = ("name", "video", "with_segment", "with_description")
SEGMENT_WORDS = {"head": "common", "middle": "uncommon", "tail": "rare"}


def load_clip(name: str, weights: str | Path, config_file: str | Path | None = None):
    """(model, tokenizer) of open_clip `name` with the weights in a local file; nothing is
    downloaded. `config_file`: an open_clip model config JSON (its stem must be `name`) for a
    model open_clip does not ship (the embedded set's tiny CLIP)."""
    import open_clip

    if config_file:
        open_clip.add_model_config(str(config_file))
    model = open_clip.create_model(name, pretrained=str(weights), device="cpu")
    return model.float().eval(), open_clip.get_tokenizer(name)


def prompts(template: str, action: Sequence[str], segment: Sequence[str],
            description: Sequence[str] | None = None) -> list[str]:
    if template == "name":
        return list(action)
    base = [f"a video of an animal {a}".lower() for a in action]
    if template == "video":
        return base
    if template == "with_segment":
        return [f"{b}, a {SEGMENT_WORDS[s]} behaviour" for b, s in zip(base, segment)]
    if template == "with_description":
        if description is None:
            raise ValueError("template with_description needs the Description column of AR_metadata.xlsx")
        return [f"{b}: {d}" for b, d in zip(base, description)]
    raise ValueError(f"template {template!r} is not one of {TEMPLATES}")


@torch.no_grad()
def text_embeddings(clip: nn.Module, tokenizer, texts: list[str], weights_sha256: str,
                    cache_dir: str | Path | None = None, write: bool = True) -> Tensor:
    """L2-normalised float32 text embeddings [C, D] on the CPU, cached per (weights hash, prompts);
    the tokens are encoded where `clip` is. `write=False` (a follower rank) reads the cache, never writes it."""
    key = hashlib.sha256((weights_sha256 + "\n" + "\n".join(texts)).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"text_{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        return torch.load(path, map_location="cpu")
    tokens = tokenizer(texts).to(next(clip.parameters()).device)
    emb = F.normalize(clip.encode_text(tokens).float(), dim=-1).cpu()
    if path is not None and write:
        atomic_write(path, lambda p: torch.save(emb, p))
    return emb


class FrameEncoder(nn.Module):
    """Base of the video encoders: [B, T, 3, S, S] -> [B, D]; `frame_features` is the frozen part
    ([B*T, F], cacheable), `from_features` the rest."""
    trains_frozen_part = False

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def frame_features(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def from_features(self, feats: Tensor) -> Tensor:   # [B, T, F] -> [B, D]
        raise NotImplementedError

    def forward(self, video: Tensor) -> Tensor:
        b, t = video.shape[:2]
        images = video.reshape(b * t, *video.shape[2:])
        if self.trains_frozen_part:
            feats = self.frame_features(images)
        else:
            with torch.no_grad():
                feats = self.frame_features(images)
        return self.from_features(feats.reshape(b, t, -1))


class ProjOnly(FrameEncoder):
    def __init__(self, visual: nn.Module) -> None:
        super().__init__(visual)
        if getattr(visual, "attn_pool", None) is not None or visual.pool_type != "tok" or visual.final_ln_after_pool:
            raise ValueError("clip_proj needs a ViT with class-token pooling and ln_post before pooling")
        for p in visual.parameters():
            p.requires_grad_(False)
        for p in [*visual.ln_post.parameters(), visual.proj]:
            p.requires_grad_(True)

    def frame_features(self, images: Tensor) -> Tensor:
        # The class token before ln_post: LayerNorm acts per token, so ln_post(x)[:, 0] = ln_post(x[:, 0]).
        return self.visual.transformer(self.visual._embeds(images))[:, 0].float()

    def from_features(self, feats: Tensor) -> Tensor:
        return (self.visual.ln_post(feats) @ self.visual.proj).float().mean(dim=1)


class FullVision(FrameEncoder):
    trains_frozen_part = True

    def frame_features(self, images: Tensor) -> Tensor:
        return self.visual(images).float()

    def from_features(self, feats: Tensor) -> Tensor:
        return feats.mean(dim=1)


class Temporal(FrameEncoder):
    def __init__(self, visual: nn.Module, frames: int, embed_dim: int, layers: int = 1, heads: int = 4) -> None:
        super().__init__(visual)
        for p in visual.parameters():
            p.requires_grad_(False)
        self.position = nn.Parameter(torch.zeros(frames, embed_dim))
        layer = nn.TransformerEncoderLayer(embed_dim, heads, dim_feedforward=2 * embed_dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.project = nn.Linear(embed_dim, embed_dim)

    def frame_features(self, images: Tensor) -> Tensor:
        return self.visual(images).float()

    def from_features(self, feats: Tensor) -> Tensor:
        return self.project(self.temporal(feats + self.position).mean(dim=1))


class VideoTextClassifier(nn.Module):
    """cos(v, t_c) [B, C] from `forward`; `logits(cos, scale)` = head(scale * cos), scale defaults
    to exp(logit_scale) of the checkpoint (frozen)."""

    def __init__(self, encoder: FrameEncoder, text: Tensor, logit_scale: float, head: str = "linear") -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("text", text.float().clone())
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))
        c = text.shape[0]
        if head == "linear":
            # identity at the start: the first logits are CLIP's own zero-shot similarities
            self.head: nn.Module | None = nn.Linear(c, c)
            with torch.no_grad():
                self.head.weight.copy_(torch.eye(c))
                self.head.bias.zero_()
        elif head == "none":
            self.head = None
        else:
            raise ValueError(f"head {head!r} is not linear or none")

    def cosine(self, video_embedding: Tensor) -> Tensor:
        return F.normalize(video_embedding.float(), dim=-1) @ self.text.T

    def forward(self, video: Tensor | None = None, *, feats: Tensor | None = None, shift: Tensor | None = None,
                scale: float | None = None, logits: bool = False) -> Tensor:
        """cos [B, C] of frames `video` or of cached frame features `feats`; with `logits`, the
        logits of `cos - shift` at `scale`. Training needs the logits from this one call: under DDP
        the module is the wrapper, whose forward alone syncs the head's gradients (docs/ak.md)."""
        cos = self.cosine(self.encoder(video) if feats is None else self.encoder.from_features(feats))
        if not logits:
            return cos
        return self.logits(cos if shift is None else cos - shift.to(cos.dtype), scale)

    def from_features(self, feats: Tensor) -> Tensor:
        return self.cosine(self.encoder.from_features(feats))

    def logits(self, cos: Tensor, scale: float | None = None) -> Tensor:
        z = (self.logit_scale.exp() if scale is None else scale) * cos
        return self.head(z) if self.head is not None else z


def build_classifier(encoder_cfg, clip: nn.Module, text: Tensor, head: str, frames: int) -> VideoTextClassifier:
    """`encoder_cfg`: the model group's config (`_target_` one of the encoders above, plus its keys)."""
    from hydra.utils import instantiate

    extra = {"frames": frames, "embed_dim": text.shape[1]} if str(encoder_cfg["_target_"]).endswith(".Temporal") else {}
    encoder = instantiate(encoder_cfg, visual=clip.visual, **extra)
    return VideoTextClassifier(encoder, text, float(clip.logit_scale.detach()), head)
