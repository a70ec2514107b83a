"""The CLIP text tower (open_clip) with its bundled tokenizer: no network.

`TextTower(...)` builds a random-init tower of a given size (tests, the toy); `TextTower.pretrained`
loads `open_clip.create_model(arch, pretrained=<file>)` and drops the vision tower. Both return the
pooled end-of-text embedding (after `text_projection`) and the token states [B, context, width].
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from actlab.errors import DataError


class TextTower(nn.Module):
    def __init__(self, width: int = 32, layers: int = 2, heads: int = 2, context_length: int = 16,
                 embed_dim: int = 32, vocab_size: int = 49408) -> None:
        super().__init__()
        from open_clip.model import CLIPTextCfg, _build_text_tower

        cfg = CLIPTextCfg(context_length=context_length, vocab_size=vocab_size, width=width, heads=heads,
                          layers=layers)
        self._adopt(_build_text_tower(embed_dim, cfg), context_length)

    def _adopt(self, tower: nn.Module, context_length: int) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        # the attributes a CLIP model and a bare TextTransformer share
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)
        self.width = self.token_embedding.weight.shape[1]
        proj = self.text_projection
        self.embed_dim = proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]
        self.context_length = context_length
        self.tokenizer = SimpleTokenizer(context_length=context_length)   # the BPE vocabulary ships with open_clip

    @classmethod
    def pretrained(cls, arch: str, weights: str | Path, key: str = "paths.clip_text_weights") -> "TextTower":
        import open_clip

        weights = Path(weights)
        if not weights.is_file():
            raise DataError(f"{key}: CLIP weights not found at {weights}")
        model = open_clip.create_model(arch, pretrained=str(weights))
        del model.visual                        # the text side only
        tower = cls.__new__(cls)
        nn.Module.__init__(tower)
        tower._adopt(model, model.context_length)
        return tower

    def tokenize(self, texts: list[str]) -> Tensor:
        return self.tokenizer(texts)

    def keep_tokens(self, tokens: Tensor) -> Tensor:
        """Keep only the token-embedding rows that `tokens` use; return `tokens` renumbered to them.

        A model reads only its class names' tokens, so the other rows of the 49,408-token table
        never change its outputs; they cost an AdamW state (3 copies of the table in every
        checkpoint: 19 MB for the toy's width 32, 300 MB for ViT-B-16), an optimizer step over them
        and a dense gradient per step. The ids keep their order (the end-of-text token stays the
        largest, which `forward` looks for) and the kept rows are the same tensors' values, copied
        without drawing from the RNG, so training is unchanged."""
        used = torch.unique(tokens)                     # sorted
        old = self.token_embedding.weight
        self.token_embedding = nn.Embedding(len(used), old.shape[1], _weight=old.detach()[used].clone(),
                                            _freeze=not old.requires_grad)
        renumber = torch.full((old.shape[0],), -1, dtype=tokens.dtype)
        renumber[used] = torch.arange(len(used), dtype=tokens.dtype)
        return renumber[tokens]

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(pooled [B, embed], token states [B, ctx, width], padding mask [B, ctx] True = pad)."""
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        eot = tokens.argmax(-1)                 # the end-of-text token has the largest id
        pooled = x[torch.arange(len(x), device=x.device), eot]
        proj = self.text_projection
        pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
        pad = torch.arange(tokens.shape[1], device=tokens.device)[None] > eot[:, None]
        return pooled, x, pad
