"""The training-free RoI classifier: proposals -> RoI-aligned raw CLIP features -> cosine similarity
with the class text embeddings, scaled by exp(logit_scale); scores and post-processing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from actlab.families.zstal.boxes import topk_flat

FUSIONS = ("after_softmax", "before_softmax", "sigmoid", "geometric")
POSTS = ("class_agnostic", "class_one")


def roi_boxes(se: Tensor, lengths: Tensor) -> Tensor:
    """[B, Q, 2] normalized proposals -> [B*Q, 5] rois (b, x1, 0, x2, 0) in absolute snippets of each
    item's *valid* length (scaling by the padded length put RoIs on padding, which gave NaNs)."""
    b, q, _ = se.shape
    x = se * lengths.to(se.dtype)[:, None, None]
    idx = torch.arange(b, dtype=se.dtype, device=se.device).repeat_interleave(q)
    zeros = torch.zeros_like(idx)
    x = x.reshape(-1, 2)
    return torch.stack([idx, x[:, 0], zeros, x[:, 1], zeros], dim=1)


def roi_features(feats: Tensor, rois: Tensor, slots: int) -> Tensor:
    """feats [B, T, D] (raw CLIP snippet embeddings) -> [N, D, slots]: one batched roi_align over
    feat[B, D, 1, T] (spatial_scale 1, sampling_ratio -1, aligned False)."""
    grid = feats.float().transpose(1, 2)[:, :, None, :]
    return roi_align(grid, rois.float(), output_size=(1, slots), spatial_scale=1.0, sampling_ratio=-1,
                     aligned=False)[:, :, 0, :]


def class_logits(pooled: Tensor, text: Tensor, logit_scale: float, pool: str = "before",
                 exp_scale: bool = True) -> Tensor:
    """[N, D, S] RoI features, [C, D] normalized text -> [N, C] = scale * cos(v, t_c), scale =
    exp(logit_scale) (100 for CLIP; the raw log value 4.6 when `exp_scale` is off: an ablation).
    pool `before`: mean over the slots, then similarity; `after`: similarity per slot, then mean."""
    scale = float(torch.tensor(logit_scale).exp()) if exp_scale else float(logit_scale)
    text = text.float()
    if pool == "before":
        return scale * F.normalize(pooled.mean(-1), dim=-1) @ text.T
    if pool == "after":
        return scale * torch.einsum("nds,cd->ncs", F.normalize(pooled, dim=1), text).mean(-1)
    raise ValueError(f"pool must be before | after, got {pool!r}")


def fuse(actionness: Tensor, logits: Tensor, mode: str) -> Tensor:
    """[..., Q] actionness logits and [..., Q, C] class logits -> [..., Q, C] scores.
    after_softmax sigma(a) softmax(l); before_softmax softmax(sigma(a) l); sigmoid sigma(a) sigma(l);
    geometric sqrt(sigma(a) softmax(l)) (sigma first: the raw logit gave NaNs)."""
    a = actionness.sigmoid()[..., None]
    if mode == "after_softmax":
        return a * logits.softmax(-1)
    if mode == "before_softmax":
        return (a * logits).softmax(-1)
    if mode == "sigmoid":
        return a * logits.sigmoid()
    if mode == "geometric":
        return (a * logits.softmax(-1)).sqrt()
    raise ValueError(f"fusion must be one of {FUSIONS}, got {mode!r}")


def decode(prob: Tensor, post: str, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """[Q, C] scores -> (scores, query, class). class_agnostic: top-k over the flattened Q x C;
    class_one: every query gets the argmax class of the query-mean scores."""
    if post == "class_agnostic":
        return topk_flat(prob, k)
    if post == "class_one":
        c = prob.mean(0).argmax()
        queries = torch.arange(prob.shape[0])
        return prob[:, c], queries, torch.full_like(queries, int(c))
    raise ValueError(f"post must be one of {POSTS}, got {post!r}")
