"""1-D segment geometry of the detector: normalized (center, width) <-> (start, end), gIoU, top-k decoding."""
from __future__ import annotations

import torch
from torch import Tensor


def cw_to_se(cw: Tensor) -> Tensor:
    """(c, w) -> (c - w/2, c + w/2), clamped to [0, 1]: unclamped starts went negative."""
    c, w = cw.unbind(-1)
    return torch.stack([c - w / 2, c + w / 2], dim=-1).clamp(0.0, 1.0)


def se_to_cw(se: Tensor) -> Tensor:
    s, e = se.unbind(-1)
    return torch.stack([(s + e) / 2, e - s], dim=-1)


def pairwise_iou_giou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and 1-D gIoU (IoU - (hull - union) / hull) of every segment in a [N, 2] with every one in b [M, 2]."""
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    hull = torch.maximum(a[:, None, 1], b[None, :, 1]) - torch.minimum(a[:, None, 0], b[None, :, 0])
    iou = inter / union.clamp(min=1e-9)
    return iou, iou - (hull - union) / hull.clamp(min=1e-9)


def topk_flat(prob: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k of a [Q, C] score matrix flattened row-major: (scores, query = i div C, class = i mod C)."""
    q, c = prob.shape
    scores, flat = prob.reshape(-1).topk(min(k, q * c))
    return scores, torch.div(flat, c, rounding_mode="floor"), flat % c
