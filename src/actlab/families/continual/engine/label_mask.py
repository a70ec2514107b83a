"""The jobs' side of unseen-class masking: config check, and the pretrain label sets onto the model.

`mask_unseen: true` (default, as upstream) lets through only the verbs and nouns of the pretrain
population; the model applies it in every forward (models/video.py). Upstream's allowed set also
holds the labels the stream has shown so far and the current batch's; with `data.drop_unseen: true`
every stream label is a pretrain label, so the pretrain sets are exactly upstream's. Keeping
unseen samples would need that growing per-batch set, which the stream loop does not feed, so
that combination is refused rather than run with a different mask (docs/protocol.md).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from actlab.errors import DataError
from actlab.families.continual.data.user_streams import seen_labels, split_path


def check_mask_config(cfg: Any) -> None:
    if cfg.mask_unseen not in (True, False):
        raise ValueError(f"mask_unseen must be true or false, got {cfg.mask_unseen!r}")
    if cfg.mask_unseen and not cfg.data.drop_unseen:
        raise ValueError("mask_unseen=true needs data.drop_unseen=true: with unseen samples kept, upstream's mask "
                         "also lets through the stream's labels seen so far and the current batch's, which the "
                         "stream loop does not provide; set mask_unseen=false or data.drop_unseen=true")


def apply_mask_unseen(model: nn.Module, cfg: Any) -> None:
    """Give `model` the pretrain verb/noun sets when `cfg.mask_unseen` (else leave it unmasked)."""
    check_mask_config(cfg)
    if not cfg.mask_unseen:
        return
    verbs, nouns = seen_labels(cfg.data)
    try:
        model.set_allowed_labels(verbs=verbs, nouns=nouns)
    except ValueError as err:
        raise DataError(f"{split_path(cfg.data, 'pretrain')}: its user_agnostic label sets do not fit the model "
                        f"(data.num_verbs={cfg.data.num_verbs}, data.num_nouns={cfg.data.num_nouns}): {err}") from err
